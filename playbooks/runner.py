"""Runs: plan, approve, execute with verify-and-roll-back, undo, expire.

A run is created from a playbook and an alert (or inputs given by hand), planned at once (every device change is
rendered, the never-block list and the range limit are checked) and stored. High-impact runs wait in
``pending_approval`` for a network admin; the others execute. Each device change is one device transaction
(transaction.py): under the device's lock, on a pooled session, read the state, apply if not already in force
(idempotent), read it back, and roll back at once if it is not in force. A failed step rolls back everything the run
changed. Every block and null route is recorded *before* it is sent, with its expiry, so a suite killed mid-change
never leaves a block without one. Undo and expiry put the previous state back through the same transaction, and
recovery after a restart only reads.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from inventory.holder import InventoryHolder
from inventory.lookup import Inventory
from inventory.model import ManagedDevice
from playbooks.actions import ACTIONS, DeviceTask, PerformContext, PlanContext, PlanError
from playbooks.actions.base import Impact
from playbooks.connections import ConnectionPool
from playbooks.context import InputError, check_conditions, render, resolve_inputs
from playbooks.drivers import Change, Driver, Observed, Operation
from playbooks.loader import Library
from playbooks.locks import DeviceLocks
from playbooks.model import Playbook
from playbooks.records import (LIVE_BLOCK_STATES, Block, BlockKind, BlockState, DeviceChangeStatus, DeviceEntry,
                               Records, Run, RunFilter, RunState, Step, StepStatus, block_id)
from playbooks.safety import Safety, SafetyRefusal
from playbooks.settings import PlaybookSettings
from playbooks.transaction import DEVICE_FAILURES, DeviceTransaction, Mode, TransactionResult, TransactionStatus
from playbooks.values import ValueRefused
from soc import ecs
from soc.storage.base import Store

log = logging.getLogger(__name__)
APPROVER_ROLES = ("network_admin", "admin")


class RunError(Exception):
    """A run cannot be created or changed as asked; the message says why."""


class ConditionNotMet(RunError):
    pass


class VerificationFailed(Exception):
    pass


_DEVICE_FAILURES = (*DEVICE_FAILURES, VerificationFailed)
_ENTRY_STATUS = {TransactionStatus.UNCHANGED: DeviceChangeStatus.UNCHANGED,
                 TransactionStatus.CHANGED: DeviceChangeStatus.CHANGED}  # any other outcome: failed


@dataclass
class Actor:
    kind: str  # alert | cli | api | system
    name: str
    role: str | None = None
    key_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


SYSTEM = Actor("system", "soc playbook service")


def indexable(value: Any) -> Any:
    """Free-form maps (inputs, step parameters, what a device showed) with numbers as text: a search store maps a
    field by the first value it sees, and the same name holds 3600 in one playbook and "8s" in another."""
    if isinstance(value, dict):
        return {k: indexable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [indexable(v) for v in value]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return value


def evidence_distrust(alert: dict | None) -> str | None:
    """Why the alert's evidence cannot start containment by itself, or None when it can. Evidence from an unknown
    sender, from a sender of another agency than the alert's, or over a transport whose sender can be forged (see
    inventory/enrich.py) may be an attacker's own lines: a person decides. A run without an alert (inputs given by
    a person) has no evidence to doubt."""
    if alert is None:
        return None
    if (alert.get("rule") or {}).get("type") == "indicator":
        return ("the detection rests on an indicator from an outside feed (which may be wrong or poisoned): a "
                "network admin decides")
    trust = alert.get("trust")
    if not isinstance(trust, dict):
        return "the alert carries no record of its evidence's senders: a network admin decides"
    if trust.get("trusted") is True and not trust.get("untrusted_events"):
        return None
    return (f"evidence not trusted: {trust.get('untrusted_events') or 'some'} of the alert's events came from "
            f"unknown senders, from senders outside agency {((alert.get('organization') or {}).get('id'))}, or "
            f"over UDP (whose sender can be forged): a network admin decides")


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _owner() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid()}


def _owner_gone(owner: dict | None) -> bool:
    """True if the process that was running this is certainly dead (same host, pid gone)."""
    if not owner or owner.get("host") != socket.gethostname():
        return False
    if owner.get("pid") == os.getpid():
        return False
    try:
        os.kill(int(owner["pid"]), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, ValueError, TypeError):
        return False
    return False


class _BlockBook:
    """The blocks collection's side of one change on one device, kept under the device's lock: recorded applying,
    with its expiry, before the commands are sent; active once read back; removed when rolled back. A block already
    in force takes the run (and a later expiry, if the run's ends later)."""

    def __init__(self, records: Records, settings: PlaybookSettings, run: Run, task: DeviceTask, kind: BlockKind):
        self.records, self.settings, self.run, self.task, self.kind = records, settings, run, task, kind
        self.target = str(task.operation.target)
        self.id = block_id(task.device.id, self.target, kind)
        self.block: Block | None = None

    def before_commit(self, change: Change) -> None:
        now, ttl = _now(), self.task.ttl_seconds
        self.block = self.records.save_block(Block.applying(
            self.run, self.kind, self.task.device.id, self.target, ttl_seconds=ttl, now=now,
            expires_at=now + timedelta(seconds=ttl or self.settings.default_ttl_seconds),
            previous=self.records.load_block(self.id)))

    def settle(self, result: TransactionResult) -> None:
        if result.status is TransactionStatus.UNCHANGED:
            self._already_in_force(result)
        elif self.block is not None and result.status is TransactionStatus.CHANGED:
            self.block.activate()
            self.records.save_block(self.block)
        elif self.block is not None and result.status is TransactionStatus.ROLLED_BACK:
            self.block.remove("rollback")
            self.records.save_block(self.block)

    def _already_in_force(self, result: TransactionResult) -> None:
        block = self.records.load_block(self.id)
        if block is None or block.state not in (BlockState.ACTIVE, BlockState.APPLYING):
            result.message += " (not put there by the suite: its removal is not the suite's)"
            return
        new_expiry = block.extend_to(self.task.ttl_seconds, _now())
        if new_expiry:
            result.message += f" on the device, its expiry is now {new_expiry}"
        block.add_run(self.run.id)
        self.records.save_block(block)


class Runner:
    def __init__(self, store: Store, inventory: Inventory | InventoryHolder, library: Library,
                 settings: PlaybookSettings, *,
                 pool: ConnectionPool | None = None, locks: DeviceLocks | None = None, data_dir: str = "data"):
        self.store = store
        # A holder gives the inventory current at each plan (an edit through the API counts at once); a plain
        # Inventory (tests, one-shot CLI commands) is held as it is.
        self._inventory = inventory if isinstance(inventory, InventoryHolder) else InventoryHolder(inventory)
        self._safety: tuple[Inventory, Safety] | None = None
        self.library = library
        self.settings = settings
        self.records = Records(store)
        self.pool = pool or ConnectionPool(settings)
        self.locks = locks or DeviceLocks(settings.lock_dir or Path(data_dir) / "locks", settings.lock_timeout_seconds)

    @property
    def inventory(self) -> Inventory:
        return self._inventory.current

    @property
    def safety(self) -> Safety:
        """The never-block list of the current inventory (built again when the inventory changed)."""
        inventory, cached = self.inventory, self._safety
        if cached is None or cached[0] is not inventory:
            cached = self._safety = (inventory, Safety(inventory, self.settings))
        return cached[1]

    def _transaction(self, device: ManagedDevice, operation: Operation, driver: Driver | None = None
                     ) -> DeviceTransaction:
        return DeviceTransaction(device, operation, locks=self.locks, pool=self.pool, driver=driver)

    # --- planning --------------------------------------------------------------------------------------------
    def _playbook(self, name: str) -> Playbook:
        playbook = self.library.get(name)
        if playbook is None:
            known = ", ".join(sorted(self.library.playbooks)) or "none loaded"
            raise RunError(f"no playbook {name!r} (playbooks: {known})")
        return playbook

    def _plan_step(self, step: Step, ctx: PlanContext) -> tuple[list[DeviceTask], Impact, str]:
        action = ACTIONS[step.action]
        return action.plan(action.parse_params(step.params), ctx)

    def plan(self, name: str, *, alert: dict | None = None, alert_id: str | None = None,
             overrides: dict[str, Any] | None = None, run_id: str | None = None) -> dict:
        """Everything a run would do, device by device, without touching a device. Raises RunError,
        ConditionNotMet, InputError, PlanError or SafetyRefusal."""
        return self._plan(name, alert=alert, alert_id=alert_id, overrides=overrides, run_id=run_id).to_doc()

    def _plan(self, name: str, *, alert: dict | None, alert_id: str | None, overrides: dict[str, Any] | None,
              run_id: str | None) -> Run:
        playbook = self._playbook(name)
        if alert is None and alert_id:
            alert = self.store.get_alert(alert_id)
            if alert is None:
                raise RunError(f"no alert {alert_id}")
        overrides = dict(overrides or {})
        run_id = run_id or uuid.uuid4().hex
        alert_agency = ((alert or {}).get("organization") or {}).get("id")
        agency = overrides.pop("agency", None) or alert_agency
        if alert is not None and agency != alert_agency:
            # The run's agency decides whose devices it may change without approval and who sees it: an alert's
            # run is the alert's agency's, whatever a caller names.
            raise InputError(f"agency {str(agency)[:80]!r}: a run for an alert is that alert's agency's "
                             f"({alert_agency})")
        if agency is not None and agency not in self.inventory.agencies:
            raise InputError(f"agency {str(agency)[:80]!r} is not an agency of the inventory")
        inputs = resolve_inputs(playbook, alert, overrides)
        variables = {**inputs, "alert_id": (alert or {}).get("id"), "agency": agency, "run_id": run_id,
                     "playbook": playbook.name}
        unmet = check_conditions(playbook.conditions, variables, alert, self.inventory)
        if unmet:
            raise ConditionNotMet(f"playbook {playbook.name}: {unmet}")
        ctx = PlanContext(self.inventory, self.safety, self.settings, run_id, agency, alert)
        impact = Impact()
        steps = []
        for step in playbook.steps:
            planned = Step(id=step.id, action=step.action, on_error=step.on_error,
                           params=indexable(render(step.params, variables)), status=StepStatus.PENDING, devices=[])
            skipped = check_conditions(step.when, variables, alert, self.inventory)
            if skipped:
                planned.status, planned.message, planned.description = StepStatus.SKIPPED, skipped, skipped
                steps.append(planned)
                continue
            tasks, step_impact, description = self._plan_step(planned, ctx)
            if step_impact.level == "high":
                for reason in step_impact.reasons:
                    impact.high(f"{step.id}: {reason}")
            planned.description, planned.impact = description, step_impact.as_dict()
            planned.plan = [t.change.as_dict() | {"driver": t.device.driver} for t in tasks]
            steps.append(planned)
        why_approve = [f"impact: {r}" for r in impact.reasons]
        if playbook.approval.always:
            why_approve.append(f"playbook {playbook.name} always waits for a network admin")
        elif not playbook.approval.auto_low_impact:
            why_approve.append(f"playbook {playbook.name} does not run by itself")
        distrust = evidence_distrust(alert)
        if distrust:
            why_approve.append(distrust)
        if alert is not None:
            why_approve.extend(self._outside_agency(steps, agency))
        return Run(id=run_id, playbook=playbook.name, playbook_title=playbook.title, alert_id=variables["alert_id"],
                   agency=agency, inputs=indexable(inputs), impact=impact.as_dict(),
                   approval={"required": bool(why_approve), "reasons": why_approve}, steps=steps,
                   devices=sorted({c["device"] for s in steps for c in s.plan}))

    def _outside_agency(self, steps: list[Step], agency: str | None) -> list[str]:
        """An alert of one agency changes another agency's devices only with a network admin's approval: an
        agency's key or senders must not steer containment on devices that are not that agency's."""
        reasons = []
        for device_id in sorted({c["device"] for s in steps for c in (s.plan or [])}):
            device = self.inventory.devices.get(device_id)
            asset = self.inventory.assets.get(device.asset) if device else None
            owner = asset.agency if asset else None
            if owner != agency:
                reasons.append(f"device {device_id} is agency {owner}'s, the alert agency {agency}'s: a network "
                               f"admin decides")
        return reasons

    # --- creating, approving ---------------------------------------------------------------------------------
    def create(self, name: str, *, actor: Actor, alert: dict | None = None, alert_id: str | None = None,
               overrides: dict[str, Any] | None = None) -> dict:
        """Plan and store a run: pending_approval, or running (the caller then calls execute). A run refused by
        the never-block list or the range limit is stored as failed, with the reason, and SafetyRefusal raised."""
        run_id = uuid.uuid4().hex
        now = ecs.now_iso()
        try:
            run = self._plan(name, alert=alert, alert_id=alert_id, overrides=overrides, run_id=run_id)
        except SafetyRefusal as exc:
            playbook = self._playbook(name)
            refused = Run(id=run_id, playbook=playbook.name, playbook_title=playbook.title,
                          alert_id=alert_id or (alert or {}).get("id"),
                          agency=((alert or {}).get("organization") or {}).get("id"),
                          inputs=indexable(overrides or {}), state=RunState.FAILED, created=now, finished=now,
                          started_by=actor.as_dict(), steps=[], devices=[], approval={"required": False},
                          result={"ok": False, "refused": True, "message": f"refused: {exc}"})
            self.records.save_run(refused)
            self.records.audit("run_refused", run=refused, actor=actor.as_dict(), reason=str(exc))
            exc.run_id = run_id  # type: ignore[attr-defined]
            raise
        required = run.approval["required"]
        run.created, run.started_by, run.owner = now, actor.as_dict(), _owner()
        run.state = RunState.PENDING_APPROVAL if required else RunState.RUNNING
        run.approval["policy"] = "network_admin approves" if required else "automatic"
        self.records.save_run(run)
        self.records.audit("run_created", run=run, actor=actor.as_dict(), state=run.state)
        return run.to_doc()

    def _pending(self, run_id: str, approver: Actor, deciding: str) -> Run:
        if approver.role not in APPROVER_ROLES:
            raise PermissionError(f"{deciding} needs the network_admin role ({approver.name} is {approver.role})")
        run = self._get(run_id)
        if run.state is not RunState.PENDING_APPROVAL:
            raise RunError(f"run {run_id} is {run.state}, not pending approval")
        return run

    def approve(self, run_id: str, approver: Actor) -> dict:
        run = self._pending(run_id, approver, "approving")
        run.approval.update(approved_by=approver.as_dict(), approved_at=ecs.now_iso())
        run.state, run.owner = RunState.RUNNING, _owner()
        self.records.save_run(run)
        self.records.audit("run_approved", run=run, actor=approver.as_dict())
        return run.to_doc()

    def reject(self, run_id: str, approver: Actor, reason: str = "") -> dict:
        run = self._pending(run_id, approver, "rejecting")
        run.approval.update(rejected_by=approver.as_dict(), rejected_at=ecs.now_iso(), reason=reason)
        run.state, run.finished = RunState.REJECTED, ecs.now_iso()
        run.result = {"ok": False, "message": f"rejected: {reason}"}
        self.records.save_run(run)
        self.records.audit("run_rejected", run=run, actor=approver.as_dict(), reason=reason)
        return run.to_doc()

    def _get(self, run_id: str) -> Run:
        run = self.records.load_run(run_id)
        if run is None:
            raise RunError(f"no run {run_id}")
        return run

    # --- executing -------------------------------------------------------------------------------------------
    def execute(self, run_id: str) -> dict:
        run = self._get(run_id)
        if run.state is not RunState.RUNNING:
            raise RunError(f"run {run_id} is {run.state}; only a running (approved or automatic) run executes")
        started = time.perf_counter()
        run.started, run.owner = ecs.now_iso(), _owner()
        alert = self.store.get_alert(run.alert_id) if run.alert_id else None
        ctx = PlanContext(self.inventory, self.safety, self.settings, run.id, run.agency, alert)
        applied: list[DeviceEntry] = []  # every change made, for undo
        failure: str | None = None
        for step in run.steps:
            if step.status is StepStatus.SKIPPED:
                continue
            step.status, step.started = StepStatus.RUNNING, ecs.now_iso()
            step_started = time.perf_counter()
            try:
                action = ACTIONS[step.action]
                if action.device_action:
                    tasks, _, _ = self._plan_step(step, ctx)  # re-planned: the never-block list is checked again
                    step.devices = []
                    for task in tasks:
                        entry = self._apply_task(run, task)
                        step.devices.append(entry)
                        if entry.changed:
                            applied.append(entry)
                        if entry.status is DeviceChangeStatus.FAILED:
                            raise VerificationFailed(entry.message)
                    step.status = StepStatus.DONE
                    step.message = "; ".join(e.message or "" for e in step.devices)
                else:
                    result = action.perform(action.parse_params(step.params),
                                            PerformContext(self.store, self.settings, run.to_doc(), alert))
                    step.status = StepStatus(result.pop("status", StepStatus.DONE))
                    step.message, step.result = result.pop("message", ""), result
            except (SafetyRefusal, PlanError, *_DEVICE_FAILURES, RuntimeError, ValueError) as exc:
                step.status, step.message = StepStatus.FAILED, str(exc)
                if step.on_error != "continue" or action.device_action:
                    failure = f"step {step.id} failed: {exc}"
            except Exception as exc:  # an action's bug: the run fails and says so, the service goes on
                log.exception("step %s of run %s failed", step.id, run.id)
                step.status, step.message = StepStatus.FAILED, f"{type(exc).__name__}: {exc}"
                failure = f"step {step.id} failed: {type(exc).__name__}: {exc}"
            step.finished = ecs.now_iso()
            step.duration_ms = round((time.perf_counter() - step_started) * 1000, 1)
            self.records.save_run(run)
            if failure:
                break
        if failure:
            undone = self._undo(applied, phase="rollback", by="rollback after failure")
            run.state = RunState.FAILED
            run.result = {"ok": False, "message": failure, "rolled_back": bool(applied), "rollback": undone}
        else:
            run.state = RunState.SUCCEEDED
            run.result = {"ok": True, "message": "; ".join(s.message for s in run.steps if s.message)}
        run.finished, run.duration_ms = ecs.now_iso(), round((time.perf_counter() - started) * 1000, 1)
        self.records.save_run(run)
        self.records.audit("run_finished", run=run, state=run.state, message=run.result["message"])
        return run.to_doc()

    def _apply_task(self, run: Run, task: DeviceTask) -> DeviceEntry:
        """One planned change on one device: the device transaction, its block recorded around it."""
        device, op = task.device, task.operation
        entry = DeviceEntry(device=device.id, driver=device.driver, operation=op.kind, target=str(op.target),
                            vlan=None if op.vlan is None else str(op.vlan), comment=str(op.comment), changed=False,
                            status=DeviceChangeStatus.PENDING, started=ecs.now_iso(), exchanges=[])
        started = time.perf_counter()
        book = _BlockBook(self.records, self.settings, run, task, BlockKind(task.record_kind)) \
            if task.record_kind else None
        result = self._transaction(device, op, task.driver).run(
            Mode.CHANGE, phase="apply", comment=f"soc run {run.id}",
            before_commit=book.before_commit if book else None, settle=book.settle if book else None)
        if result.lock_wait_ms is not None:
            entry.lock_wait_ms = result.lock_wait_ms
        if result.before is not None:
            entry.before = indexable(result.before.detail)
        if result.change is not None:
            change = result.change
            entry.commands, entry.rollback, entry.description = change.commands, change.rollback, change.description
        entry.status = _ENTRY_STATUS.get(result.status, DeviceChangeStatus.FAILED)
        entry.changed = result.status is TransactionStatus.CHANGED
        entry.message, entry.exchanges = result.message, result.exchanges
        entry.duration_ms = round((time.perf_counter() - started) * 1000, 1)
        return entry

    # --- undoing ---------------------------------------------------------------------------------------------
    def _undo(self, changes: list[DeviceEntry], *, phase: str, by: str) -> list[dict]:
        results = []
        for entry in reversed(changes):
            device = self.inventory.devices.get(entry.device)
            if device is None:
                results.append({"device": entry.device, "ok": False, "message": "device no longer in inventory"})
                continue
            op = Operation(entry.operation, entry.target, entry.vlan, entry.comment)  # type: ignore[arg-type]
            result = self._restore(device, op.inverse(Observed(False, entry.before)), phase=phase)
            kind = BlockKind.of(op.kind)
            if kind and result["ok"]:
                block = self.records.load_block(block_id(device.id, str(op.target), kind))
                if block is not None and block.state is not BlockState.REMOVED:
                    block.remove(by)
                    self.records.save_block(block)
            results.append(result)
        return results

    def _restore(self, device: ManagedDevice, op: Operation, *, phase: str) -> dict:
        """Put one operation in force on one device (undo, expiry): compare, load, commit, verify."""
        at = ecs.now_iso()
        result = self._transaction(device, op).run(Mode.RESTORE, phase=phase)
        return {"device": device.id, "operation": op.kind, "target": str(op.target), "ok": result.in_force,
                "at": at, "exchanges": result.exchanges, "message": result.message}

    def rollback(self, run_id: str, actor: Actor) -> dict:
        """Undo what a succeeded run changed (an operator's decision): state rolled_back."""
        run = self._get(run_id)
        if run.state not in (RunState.SUCCEEDED, RunState.REVERTED):
            raise RunError(f"run {run_id} is {run.state}; only a succeeded run can be rolled back")
        results = self._undo(run.changes(), phase="rollback", by=f"rollback by {actor.name}")
        ok = all(r["ok"] for r in results)
        run.add_reverts(results)
        if ok:
            run.state = RunState.ROLLED_BACK
        run.rolled_back = {"by": actor.as_dict(), "at": ecs.now_iso(), "ok": ok}
        self.records.save_run(run)
        self.records.audit("run_rolled_back", run=run, actor=actor.as_dict(), ok=ok)
        if not ok:
            raise RunError(f"run {run_id}: rollback incomplete: " + "; ".join(r["message"] for r in results
                                                                             if not r["ok"]))
        return run.to_doc()

    # --- expiry and recovery ---------------------------------------------------------------------------------
    def expire_due(self, now: datetime | None = None) -> list[dict]:
        """Remove every block and null route whose time is up (also those left behind by a suite that was down)."""
        due = self.records.load_blocks(state=LIVE_BLOCK_STATES, expires_before=ecs.utc_iso(now or _now()))
        results = []
        for block in due:
            run = self.records.load_run(block.run_id) if block.run_id else None
            if block.state is BlockState.APPLYING and run and run.state is RunState.RUNNING and \
                    not _owner_gone(run.owner):
                continue  # its run is still putting it in place
            results.append(self.remove_block(block, by="expired"))
        return results

    def remove_block(self, block: Block, *, by: str, actor: Actor = SYSTEM) -> dict:
        device = self.inventory.devices.get(block.device)
        if device is None:
            block.last_error, block.state = f"device {block.device} is not in the inventory", BlockState.ORPHANED
            self.records.save_block(block)
            return {"block": block.id, "ok": False, "message": block.last_error}
        try:
            removal = Operation(block.kind.removal, block.target)
        except ValueRefused as exc:  # written by an older version or tampered with: never sent to a device
            block.last_error, block.state = f"not a valid target, not sent to the device: {exc}", BlockState.ORPHANED
            self.records.save_block(block)
            return {"block": block.id, "ok": False, "message": block.last_error}
        block.state = BlockState.REMOVING
        self.records.save_block(block)
        result = self._restore(device, removal, phase="revert")
        result["block"] = block.id
        result["by"] = by
        if result["ok"]:
            block.remove(by)
            block.last_error = None
        else:
            block.state, block.last_error, block.attempts = BlockState.ACTIVE, result["message"], block.attempts + 1
        self.records.save_block(block)
        self.records.audit("block_removed" if result["ok"] else "block_removal_failed", actor=actor.as_dict(),
                           run={"id": block.run_id, "playbook": block.playbook, "agency": block.agency},
                           device=device.id, target=block.target, by=by, message=result["message"])
        for run_id in block.run_ids or [block.run_id]:
            self._note_revert(run_id, result)
        return result

    def _note_revert(self, run_id: str | None, result: dict) -> None:
        run = self.records.load_run(run_id) if run_id else None
        if run is None:
            return
        run.add_reverts([result])
        if result["ok"] and run.state is RunState.SUCCEEDED:
            remaining = [b for b in self.records.find_blocks(run_id=run_id) if b["state"] != BlockState.REMOVED]
            if not remaining:
                run.state, run.reverted_at = RunState.REVERTED, ecs.now_iso()
        self.records.save_run(run)

    def recover(self) -> dict:
        """After a restart: runs left running by a dead process are marked failed (interrupted); blocks caught
        half-way are read back from their device and recorded as they really are."""
        interrupted = []
        for doc in self.records.find_runs(RunFilter(state=RunState.RUNNING, limit=1000)):
            run = Run.from_doc(doc)
            if not _owner_gone(run.owner):
                continue
            run.state, run.interrupted, run.finished = RunState.FAILED, True, ecs.now_iso()
            run.result = {"ok": False, "message": "interrupted: the process running it stopped before it "
                                                  "finished; its blocks keep their recorded expiry"}
            self.records.save_run(run)
            self.records.audit("run_interrupted", run=run)
            interrupted.append(run.id)
        reconciled = []
        for block in self.records.load_blocks(state=[BlockState.APPLYING, BlockState.REMOVING], limit=1000):
            run = self.records.load_run(block.run_id) if block.run_id else None
            if run and run.state is RunState.RUNNING:
                continue  # a live process is on it
            device = self.inventory.devices.get(block.device)
            if device is None:
                continue
            try:
                operation = Operation(block.kind.operation, block.target)
            except ValueRefused as exc:
                block.last_error, block.state = f"not a valid target: {exc}", BlockState.ORPHANED
                self.records.save_block(block)
                continue
            read = self._transaction(device, operation).run(Mode.READ)
            if read.status is TransactionStatus.FAILED:
                block.last_error = f"could not read the device after restart: {read.error}"
                self.records.save_block(block)
                continue
            if read.in_force:
                block.state = BlockState.ACTIVE
            else:
                block.remove("not on the device after restart")
            self.records.save_block(block)
            reconciled.append({"block": block.id, "state": block.state.value})
        return {"interrupted": interrupted, "reconciled": reconciled}
