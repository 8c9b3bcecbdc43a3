"""Runs: plan, approve, execute with verify-and-roll-back, undo, expire.

A run is created from a playbook and an alert (or inputs given by hand), planned at once (every device change is
rendered, the never-block list and the range limit are checked) and stored. High-impact runs wait in
``pending_approval`` for a network admin; the others execute. Each device change is made under the device's lock,
on a pooled session: read the state, apply if not already in force (idempotent), read it back, and roll back at once
if it is not in force. A failed step rolls back everything the run changed. Every block and null route is
recorded *before* it is sent, with its expiry, so a suite killed mid-change never leaves a block without one.
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
from playbooks.actions import ACTIONS, DeviceTask, PerformContext, PlanContext, PlanError
from playbooks.actions.base import Impact
from playbooks.connections import ConnectionPool, CredentialError, DeviceUnreachable
from playbooks.context import check_conditions, render, resolve_inputs
from playbooks.drivers import DriverError, Observed, Operation, get_driver
from playbooks.loader import Library
from playbooks.locks import DeviceLocks, LockTimeout
from playbooks.model import Playbook
from playbooks.records import Records, RunFilter, block_id
from playbooks.safety import Safety, SafetyRefusal
from playbooks.settings import PlaybookSettings
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


_DEVICE_FAILURES = (DriverError, DeviceUnreachable, CredentialError, LockTimeout, VerificationFailed, OSError,
                    EOFError)


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

    # --- planning --------------------------------------------------------------------------------------------
    def _playbook(self, name: str) -> Playbook:
        playbook = self.library.get(name)
        if playbook is None:
            known = ", ".join(sorted(self.library.playbooks)) or "none loaded"
            raise RunError(f"no playbook {name!r} (playbooks: {known})")
        return playbook

    def _plan_step(self, step_doc: dict, ctx: PlanContext) -> tuple[list[DeviceTask], Impact, str]:
        action = ACTIONS[step_doc["action"]]
        return action.plan(action.parse_params(step_doc["params"]), ctx)

    def plan(self, name: str, *, alert: dict | None = None, alert_id: str | None = None,
             overrides: dict[str, Any] | None = None, run_id: str | None = None) -> dict:
        """Everything a run would do, device by device, without touching a device. Raises RunError,
        ConditionNotMet, InputError, PlanError or SafetyRefusal."""
        playbook = self._playbook(name)
        if alert is None and alert_id:
            alert = self.store.get_alert(alert_id)
            if alert is None:
                raise RunError(f"no alert {alert_id}")
        overrides = dict(overrides or {})
        run_id = run_id or uuid.uuid4().hex
        agency = overrides.pop("agency", None) or ((alert or {}).get("organization") or {}).get("id")
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
            doc: dict[str, Any] = {"id": step.id, "action": step.action, "on_error": step.on_error,
                                   "params": indexable(render(step.params, variables)), "status": "pending",
                                   "devices": []}
            skipped = check_conditions(step.when, variables, alert, self.inventory)
            if skipped:
                doc.update(status="skipped", message=skipped, description=skipped)
                steps.append(doc)
                continue
            tasks, step_impact, description = self._plan_step(doc, ctx)
            if step_impact.level == "high":
                for reason in step_impact.reasons:
                    impact.high(f"{step.id}: {reason}")
            doc.update(description=description, impact=step_impact.as_dict(),
                       plan=[t.change.as_dict() | {"driver": t.device.driver} for t in tasks])
            steps.append(doc)
        why_approve = [f"impact: {r}" for r in impact.reasons]
        if playbook.approval.always:
            why_approve.append(f"playbook {playbook.name} always waits for a network admin")
        elif not playbook.approval.auto_low_impact:
            why_approve.append(f"playbook {playbook.name} does not run by itself")
        distrust = evidence_distrust(alert)
        if distrust:
            why_approve.append(distrust)
        return {"id": run_id, "playbook": playbook.name, "playbook_title": playbook.title, "alert_id":
                variables["alert_id"], "agency": agency, "inputs": indexable(inputs), "impact": impact.as_dict(),
                "approval": {"required": bool(why_approve), "reasons": why_approve}, "steps": steps,
                "devices": sorted({c["device"] for s in steps for c in s.get("plan", [])})}

    # --- creating, approving ---------------------------------------------------------------------------------
    def create(self, name: str, *, actor: Actor, alert: dict | None = None, alert_id: str | None = None,
               overrides: dict[str, Any] | None = None) -> dict:
        """Plan and store a run: pending_approval, or running (the caller then calls execute). A run refused by
        the never-block list or the range limit is stored as failed, with the reason, and SafetyRefusal raised."""
        run_id = uuid.uuid4().hex
        now = ecs.now_iso()
        try:
            run = self.plan(name, alert=alert, alert_id=alert_id, overrides=overrides, run_id=run_id)
        except SafetyRefusal as exc:
            playbook = self._playbook(name)
            refused = {"id": run_id, "playbook": playbook.name, "playbook_title": playbook.title,
                       "alert_id": alert_id or (alert or {}).get("id"),
                       "agency": ((alert or {}).get("organization") or {}).get("id"),
                       "inputs": indexable(overrides or {}),
                       "state": "failed", "created": now, "finished": now, "started_by": actor.as_dict(),
                       "steps": [], "devices": [], "approval": {"required": False},
                       "result": {"ok": False, "refused": True, "message": f"refused: {exc}"}}
            self.records.save_run(refused)
            self.records.audit("run_refused", run=refused, actor=actor.as_dict(), reason=str(exc))
            exc.run_id = run_id  # type: ignore[attr-defined]
            raise
        run.update(created=now, started_by=actor.as_dict(), owner=_owner(),
                   state="pending_approval" if run["approval"]["required"] else "running")
        run["approval"]["policy"] = "network_admin approves" if run["approval"]["required"] else "automatic"
        self.records.save_run(run)
        self.records.audit("run_created", run=run, actor=actor.as_dict(), state=run["state"])
        return run

    def approve(self, run_id: str, approver: Actor) -> dict:
        if approver.role not in APPROVER_ROLES:
            raise PermissionError(f"approving needs the network_admin role ({approver.name} is {approver.role})")
        run = self._get(run_id)
        if run["state"] != "pending_approval":
            raise RunError(f"run {run_id} is {run['state']}, not pending approval")
        run["approval"].update(approved_by=approver.as_dict(), approved_at=ecs.now_iso())
        run.update(state="running", owner=_owner())
        self.records.save_run(run)
        self.records.audit("run_approved", run=run, actor=approver.as_dict())
        return run

    def reject(self, run_id: str, approver: Actor, reason: str = "") -> dict:
        if approver.role not in APPROVER_ROLES:
            raise PermissionError(f"rejecting needs the network_admin role ({approver.name} is {approver.role})")
        run = self._get(run_id)
        if run["state"] != "pending_approval":
            raise RunError(f"run {run_id} is {run['state']}, not pending approval")
        run["approval"].update(rejected_by=approver.as_dict(), rejected_at=ecs.now_iso(), reason=reason)
        run.update(state="rejected", finished=ecs.now_iso(), result={"ok": False, "message": f"rejected: {reason}"})
        self.records.save_run(run)
        self.records.audit("run_rejected", run=run, actor=approver.as_dict(), reason=reason)
        return run

    def _get(self, run_id: str) -> dict:
        run = self.records.get_run(run_id)
        if run is None:
            raise RunError(f"no run {run_id}")
        return run

    # --- executing -------------------------------------------------------------------------------------------
    def execute(self, run_id: str) -> dict:
        run = self._get(run_id)
        if run["state"] != "running":
            raise RunError(f"run {run_id} is {run['state']}; only a running (approved or automatic) run executes")
        started = time.perf_counter()
        run.update(started=ecs.now_iso(), owner=_owner())
        alert = self.store.get_alert(run["alert_id"]) if run.get("alert_id") else None
        ctx = PlanContext(self.inventory, self.safety, self.settings, run["id"], run.get("agency"), alert)
        applied: list[tuple[dict, dict]] = []  # (step doc, device entry) of every change made, for undo
        failure: str | None = None
        for step in run["steps"]:
            if step["status"] == "skipped":
                continue
            step.update(status="running", started=ecs.now_iso())
            step_started = time.perf_counter()
            try:
                action = ACTIONS[step["action"]]
                if action.device_action:
                    tasks, _, _ = self._plan_step(step, ctx)  # re-planned: the never-block list is checked again
                    step["devices"] = []
                    for task in tasks:
                        entry = self._apply_task(run, task)
                        step["devices"].append(entry)
                        if entry["changed"]:
                            applied.append((step, entry))
                        if entry["status"] == "failed":
                            raise VerificationFailed(entry["message"])
                    step["status"] = "done"
                    step["message"] = "; ".join(e["message"] for e in step["devices"])
                else:
                    result = action.perform(action.parse_params(step["params"]),
                                            PerformContext(self.store, self.settings, run, alert))
                    step.update(status=result.pop("status", "done"), message=result.pop("message", ""),
                                result=result)
            except (SafetyRefusal, PlanError, *_DEVICE_FAILURES, RuntimeError, ValueError) as exc:
                step.update(status="failed", message=str(exc))
                if step.get("on_error") != "continue" or action.device_action:
                    failure = f"step {step['id']} failed: {exc}"
            except Exception as exc:  # an action's bug: the run fails and says so, the service goes on
                log.exception("step %s of run %s failed", step["id"], run["id"])
                step.update(status="failed", message=f"{type(exc).__name__}: {exc}")
                failure = f"step {step['id']} failed: {type(exc).__name__}: {exc}"
            step.update(finished=ecs.now_iso(), duration_ms=round((time.perf_counter() - step_started) * 1000, 1))
            self.records.save_run(run)
            if failure:
                break
        if failure:
            undone = self._undo(run, applied, phase="rollback", by="rollback after failure")
            run["state"] = "failed"
            run["result"] = {"ok": False, "message": failure, "rolled_back": bool(applied),
                             "rollback": undone}
        else:
            run["state"] = "succeeded"
            run["result"] = {"ok": True, "message": "; ".join(s.get("message", "") for s in run["steps"]
                                                              if s.get("message"))}
        run.update(finished=ecs.now_iso(), duration_ms=round((time.perf_counter() - started) * 1000, 1))
        self.records.save_run(run)
        self.records.audit("run_finished", run=run, state=run["state"], message=run["result"]["message"])
        return run

    def _apply_task(self, run: dict, task: DeviceTask) -> dict:
        device, driver, op = task.device, task.driver, task.operation
        entry: dict[str, Any] = {"device": device.id, "driver": device.driver, "operation": op.kind,
                                 "target": str(op.target), "vlan": None if op.vlan is None else str(op.vlan),
                                 "comment": str(op.comment), "changed": False,
                                 "status": "pending", "started": ecs.now_iso(), "exchanges": []}
        started = time.perf_counter()
        session = None
        try:
            with self.locks.hold(device.id) as waited:
                entry["lock_wait_ms"] = round(waited * 1000, 1)
                with self.pool.session(device, driver) as session:
                    try:
                        self._change(run, task, entry, session)
                    finally:
                        entry["exchanges"] = [e.as_dict() for e in session.take()]
        except _DEVICE_FAILURES as exc:
            entry.update(status="failed", message=f"{device.id}: {exc}")
        entry["duration_ms"] = round((time.perf_counter() - started) * 1000, 1)
        return entry

    def _change(self, run: dict, task: DeviceTask, entry: dict, session) -> None:
        device, driver, op = task.device, task.driver, task.operation
        driver.prepare(session)
        before = driver.observe(session, op, phase="check")
        entry["before"] = indexable(before.detail)
        record = self.records.get_block(block_id(device.id, str(op.target), task.record_kind)) if task.record_kind \
            else None
        if before.in_force:
            entry.update(status="unchanged", message=self._unchanged_message(run, task, before, record))
            return
        change = driver.render(device.id, op, before)
        entry.update(commands=change.commands, rollback=change.rollback, description=change.description)
        if task.record_kind:
            record = self._record_applying(run, task, record)
        try:
            driver.apply(session, change.commands, phase="apply", comment=f"soc run {run['id']}")
            after = driver.observe(session, op, phase="verify")
        except DriverError as exc:
            self._roll_back_change(session, task, change, before, record, f"the device refused: {exc}")
            raise
        if not after.in_force:
            message = self._roll_back_change(session, task, change, before, record,
                                             "verification failed: the change is not in force after apply")
            entry.update(status="failed", changed=False, message=f"{device.id}: {message}")
            return
        entry.update(status="changed", changed=True, message=f"{device.id}: {change.description}")
        if record is not None:
            record.update(state="active", activated=ecs.now_iso())
            self.records.save_block(record)

    def _unchanged_message(self, run: dict, task: DeviceTask, before: Observed, record: dict | None) -> str:
        device, op = task.device, task.operation
        what = f"{op.kind.replace('_', ' ')} {op.target} is already in force on {device.id}"
        if before.detail.get("covered_by"):
            what += f" (covered by {before.detail['covered_by']})"
        if record is not None and record.get("state") in ("active", "applying"):
            new_expiry = ecs.utc_iso(_now() + timedelta(seconds=task.ttl_seconds or 0))
            if task.ttl_seconds and new_expiry > (record.get("expires_at") or ""):
                record["expires_at"] = new_expiry
                what += f"; nothing changed on the device, its expiry is now {new_expiry}"
            else:
                what += "; nothing changed"
            record.setdefault("run_ids", []).append(run["id"])
            self.records.save_block(record)
        else:
            what += "; nothing changed" + (" (not put there by the suite: its removal is not the suite's)"
                                           if task.record_kind else "")
        return what

    def _record_applying(self, run: dict, task: DeviceTask, record: dict | None) -> dict:
        now = _now()
        target = str(task.operation.target)
        record = {"id": block_id(task.device.id, target, task.record_kind),
                  "kind": task.record_kind, "device": task.device.id, "target": target,
                  "state": "applying", "run_id": run["id"], "run_ids": [run["id"]], "playbook": run["playbook"],
                  "agency": run.get("agency"), "alert_id": run.get("alert_id"), "created": ecs.utc_iso(now),
                  "ttl_seconds": task.ttl_seconds,
                  "expires_at": ecs.utc_iso(now + timedelta(seconds=task.ttl_seconds or
                                                            self.settings.default_ttl_seconds)),
                  "history": (record or {}).get("history", [])[-20:]}
        record["history"].append({"at": ecs.utc_iso(now), "state": "applying", "run_id": run["id"]})
        return self.records.save_block(record)

    def _roll_back_change(self, session, task: DeviceTask, change, before: Observed, record: dict | None,
                          why: str) -> str:
        driver, op = task.driver, task.operation
        try:
            driver.apply(session, change.rollback, phase="rollback")
            restored = driver.observe(session, op.inverse(before), phase="rollback")
            outcome = "rolled back" if restored.in_force else "rollback did NOT restore the previous state"
        except DriverError as exc:
            outcome = f"rollback refused by the device: {exc}"
        if record is not None:
            record.update(state="removed", removed_at=ecs.now_iso(), removed_by="rollback")
            self.records.save_block(record)
        return f"{why}; {outcome}"

    # --- undoing ---------------------------------------------------------------------------------------------
    def _undo(self, run: dict, applied: list[tuple[dict, dict]], *, phase: str, by: str) -> list[dict]:
        results = []
        for _, entry in reversed(applied):
            device = self.inventory.devices.get(entry["device"])
            if device is None:
                results.append({"device": entry["device"], "ok": False, "message": "device no longer in inventory"})
                continue
            op = Operation(entry["operation"], entry["target"], entry.get("vlan"), entry.get("comment", ""))
            undo = op.inverse(Observed(False, entry.get("before") or {}))
            result = self._device_op(device, undo, phase=phase)
            kind = {"block": "block", "null_route": "null_route"}.get(op.kind)
            if kind and result["ok"]:
                record = self.records.get_block(block_id(device.id, str(op.target), kind))
                if record is not None and record["state"] != "removed":
                    record.update(state="removed", removed_at=ecs.now_iso(), removed_by=by)
                    self.records.save_block(record)
            results.append(result)
        return results

    def _device_op(self, device, op: Operation, *, phase: str) -> dict:
        """Put one operation in force on one device (lock, pooled session, check, apply, verify)."""
        driver = get_driver(device.driver)
        result: dict[str, Any] = {"device": device.id, "operation": op.kind, "target": str(op.target), "ok": False,
                                  "at": ecs.now_iso(), "exchanges": []}
        try:
            with self.locks.hold(device.id), self.pool.session(device, driver) as session:
                try:
                    if driver.observe(session, op, phase="check").in_force:
                        result.update(ok=True, message=f"{op.kind} {op.target}: already so on {device.id}")
                    else:
                        driver.apply(session, driver.render(device.id, op).commands, phase=phase)
                        ok = driver.observe(session, op, phase="verify").in_force
                        result.update(ok=ok, message=f"{op.kind} {op.target} on {device.id}: "
                                                     f"{'done and verified' if ok else 'NOT in force after apply'}")
                finally:
                    result["exchanges"] = [e.as_dict() for e in session.take()]
        except _DEVICE_FAILURES as exc:
            result["message"] = f"{device.id}: {exc}"
        return result

    def rollback(self, run_id: str, actor: Actor) -> dict:
        """Undo what a succeeded run changed (an operator's decision): state rolled_back."""
        run = self._get(run_id)
        if run["state"] not in ("succeeded", "reverted"):
            raise RunError(f"run {run_id} is {run['state']}; only a succeeded run can be rolled back")
        applied = [(s, e) for s in run["steps"] for e in s.get("devices", []) if e.get("changed")]
        results = self._undo(run, applied, phase="rollback", by=f"rollback by {actor.name}")
        ok = all(r["ok"] for r in results)
        run.setdefault("reverts", []).extend(results)
        if ok:
            run["state"] = "rolled_back"
        run["rolled_back"] = {"by": actor.as_dict(), "at": ecs.now_iso(), "ok": ok}
        self.records.save_run(run)
        self.records.audit("run_rolled_back", run=run, actor=actor.as_dict(), ok=ok)
        if not ok:
            raise RunError(f"run {run_id}: rollback incomplete: " + "; ".join(r["message"] for r in results
                                                                             if not r["ok"]))
        return run

    # --- expiry and recovery ---------------------------------------------------------------------------------
    def expire_due(self, now: datetime | None = None) -> list[dict]:
        """Remove every block and null route whose time is up (also those left behind by a suite that was down)."""
        due = self.records.find_blocks(state=["active", "applying", "removing"],
                                       expires_before=ecs.utc_iso(now or _now()))
        results = []
        for block in due:
            run = self.records.get_run(block["run_id"]) if block.get("run_id") else None
            if block["state"] == "applying" and run and run.get("state") == "running" and \
                    not _owner_gone(run.get("owner")):
                continue  # its run is still putting it in place
            results.append(self.remove_block(block, by="expired"))
        return results

    def remove_block(self, block: dict, *, by: str, actor: Actor = SYSTEM) -> dict:
        device = self.inventory.devices.get(block["device"])
        if device is None:
            block.update(last_error=f"device {block['device']} is not in the inventory", state="orphaned")
            self.records.save_block(block)
            return {"block": block["id"], "ok": False, "message": block["last_error"]}
        kind = "unblock" if block.get("kind", "block") == "block" else "remove_null_route"
        block["state"] = "removing"
        self.records.save_block(block)
        result = self._device_op(device, Operation(kind, block["target"]), phase="revert")  # type: ignore[arg-type]
        result["block"] = block["id"]
        result["by"] = by
        if result["ok"]:
            block.update(state="removed", removed_at=ecs.now_iso(), removed_by=by, last_error=None)
        else:
            block.update(state="active", last_error=result["message"], attempts=int(block.get("attempts", 0)) + 1)
        self.records.save_block(block)
        self.records.audit("block_removed" if result["ok"] else "block_removal_failed", actor=actor.as_dict(),
                           run={"id": block.get("run_id"), "playbook": block.get("playbook"),
                                "agency": block.get("agency")}, device=device.id, target=block["target"], by=by,
                           message=result["message"])
        for run_id in block.get("run_ids") or [block.get("run_id")]:
            self._note_revert(run_id, result)
        return result

    def _note_revert(self, run_id: str | None, result: dict) -> None:
        run = self.records.get_run(run_id) if run_id else None
        if run is None:
            return
        run.setdefault("reverts", []).append(result)
        if result["ok"] and run["state"] == "succeeded":
            remaining = [b for b in self.records.find_blocks(run_id=run_id) if b["state"] != "removed"]
            if not remaining:
                run["state"] = "reverted"
                run["reverted_at"] = ecs.now_iso()
        self.records.save_run(run)

    def recover(self) -> dict:
        """After a restart: runs left running by a dead process are marked failed (interrupted); blocks caught
        half-way are read back from their device and recorded as they really are."""
        interrupted = []
        for run in self.records.find_runs(RunFilter(state="running", limit=1000)):
            if not _owner_gone(run.get("owner")):
                continue
            run["state"] = "failed"
            run["interrupted"] = True
            run["finished"] = ecs.now_iso()
            run["result"] = {"ok": False, "message": "interrupted: the process running it stopped before it "
                                                     "finished; its blocks keep their recorded expiry"}
            self.records.save_run(run)
            self.records.audit("run_interrupted", run=run)
            interrupted.append(run["id"])
        reconciled = []
        for block in self.records.find_blocks(state=["applying", "removing"], limit=1000):
            run = self.records.get_run(block["run_id"]) if block.get("run_id") else None
            if run and run.get("state") == "running":
                continue  # a live process is on it
            device = self.inventory.devices.get(block["device"])
            if device is None:
                continue
            kind = "block" if block.get("kind", "block") == "block" else "null_route"
            driver = get_driver(device.driver)
            try:
                with self.locks.hold(device.id), self.pool.session(device, driver) as session:
                    in_force = driver.observe(session, Operation(kind, block["target"]), phase="check").in_force
                    session.take()
            except _DEVICE_FAILURES as exc:
                block["last_error"] = f"could not read the device after restart: {exc}"
                self.records.save_block(block)
                continue
            block["state"] = "active" if in_force else "removed"
            if not in_force:
                block.update(removed_at=ecs.now_iso(), removed_by="not on the device after restart")
            self.records.save_block(block)
            reconciled.append({"block": block["id"], "state": block["state"]})
        return {"interrupted": interrupted, "reconciled": reconciled}
