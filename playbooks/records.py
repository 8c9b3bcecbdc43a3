"""Playbook records: what runs, steps, device changes and blocks are (typed, with their states as enumerations), and
where they live in the store: runs (with their whole audit trail), blocks (every block and null route the suite put
in force, with its expiry) and audit events (who did what, when). All searchable.

The typed records keep exactly the stored documents' shape: ``to_doc()`` writes only the keys a record was given
(at creation, from the store, or set since), so a key the runner never set is absent, as before, and a key set to
None stays null. The states are ``StrEnum`` members: equal to their text, written as it, shown as it.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Self, cast

from pydantic import BaseModel, ConfigDict

from playbooks.drivers.base import INVERSE, OperationKind
from soc import ecs
from soc.storage.base import DocumentQuery, Store

log = logging.getLogger(__name__)

RUNS = "playbook_runs"
BLOCKS = "blocks"
AUDIT = "playbook_audit"


class RunState(StrEnum):
    """pending_approval → running → succeeded | failed; then reverted (every block expired and was removed) or
    rolled_back (an operator undid it); rejected (an approver said no)."""

    PENDING_APPROVAL = "pending_approval"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"
    REVERTED = "reverted"
    REJECTED = "rejected"


class StepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"


class DeviceChangeStatus(StrEnum):
    """One step's change on one device."""

    PENDING = "pending"
    CHANGED = "changed"  # put in force and read back
    UNCHANGED = "unchanged"  # already in force: nothing sent
    FAILED = "failed"


class BlockState(StrEnum):
    APPLYING = "applying"  # recorded, with its expiry, before the commands are sent
    ACTIVE = "active"  # read back in force
    REMOVING = "removing"  # its removal is under way
    REMOVED = "removed"
    ORPHANED = "orphaned"  # its device left the inventory


LIVE_BLOCK_STATES = (BlockState.ACTIVE, BlockState.APPLYING, BlockState.REMOVING)


class BlockKind(StrEnum):
    """What a block record holds. Its value is the operation that puts it in force; the driver contract's inverse
    (playbooks/drivers/base.py) is the one that removes it."""

    BLOCK = "block"
    NULL_ROUTE = "null_route"

    @classmethod
    def of(cls, operation: str) -> BlockKind | None:
        """The kind of record an operation puts in force; None for one that is not recorded (unblock, ports)."""
        return cls._value2member_map_.get(operation)  # type: ignore[return-value]

    @property
    def operation(self) -> OperationKind:
        return cast(OperationKind, self.value)

    @property
    def removal(self) -> OperationKind:
        return cast(OperationKind, INVERSE[self.value])


def block_id(device: str, target: str, kind: str = BlockKind.BLOCK) -> str:
    return hashlib.blake2b(f"{kind}|{device}|{target}".encode(), digest_size=12).hexdigest()


class Record(BaseModel):
    """A stored document with typed fields; keys it does not know are kept as they are."""

    model_config = ConfigDict(extra="allow")

    def to_doc(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_unset=True)

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Self:
        return cls.model_validate(doc)


class DeviceEntry(Record):
    """A step's change on one device: what was read before, the exact commands and their undo, the outcome, and
    every command sent with the device's answer (secrets masked)."""

    device: str
    driver: str
    operation: str
    target: str
    vlan: str | None = None
    comment: str = ""
    changed: bool = False
    status: DeviceChangeStatus = DeviceChangeStatus.PENDING
    started: str | None = None
    exchanges: list[dict[str, Any]] = []
    lock_wait_ms: float | None = None
    before: dict[str, Any] = {}
    commands: list[str] = []
    rollback: list[str] = []
    description: str | None = None
    message: str | None = None
    duration_ms: float | None = None


class Step(Record):
    id: str
    action: str
    on_error: str | None = None
    params: dict[str, Any] = {}
    status: StepStatus = StepStatus.PENDING
    devices: list[DeviceEntry] = []
    description: str | None = None
    impact: dict[str, Any] = {}
    plan: list[dict[str, Any]] = []
    message: str | None = None
    started: str | None = None
    finished: str | None = None
    duration_ms: float | None = None
    result: dict[str, Any] = {}


class Run(Record):
    id: str
    playbook: str
    playbook_title: str | None = None
    alert_id: str | None = None
    agency: str | None = None
    inputs: dict[str, Any] = {}
    impact: dict[str, Any] = {}
    approval: dict[str, Any] = {}
    steps: list[Step] = []
    devices: list[str] = []
    state: RunState | None = None
    created: str | None = None
    started_by: dict[str, Any] = {}
    owner: dict[str, Any] | None = None
    started: str | None = None
    finished: str | None = None
    duration_ms: float | None = None
    result: dict[str, Any] = {}
    reverts: list[dict[str, Any]] = []
    rolled_back: dict[str, Any] = {}
    reverted_at: str | None = None
    interrupted: bool = False
    updated: str | None = None

    def changes(self) -> list[DeviceEntry]:
        """Every device change the run made (for undoing it)."""
        return [entry for step in self.steps for entry in step.devices if entry.changed]

    def add_reverts(self, results: list[dict[str, Any]]) -> None:
        self.reverts = [*self.reverts, *results]


class Block(Record):
    """A block or null route the suite put in force on one device, with its expiry and history."""

    id: str
    kind: BlockKind = BlockKind.BLOCK
    device: str
    target: str
    state: BlockState
    # who asked for it: the run that put it in force, every run that found it in force since
    run_id: str | None = None
    run_ids: list[str] = []
    playbook: str | None = None
    agency: str | None = None
    alert_id: str | None = None
    # its time (recorded before its commands are sent), and what became of it
    created: str
    ttl_seconds: int | None = None
    expires_at: str
    history: list[dict[str, Any]] = []
    activated: str | None = None
    removed_at: str | None = None
    removed_by: str | None = None  # expired, rollback, rollback by NAME, not on the device after restart
    last_error: str | None = None  # why its removal (or reading it back) failed
    attempts: int = 0
    updated: str | None = None

    @classmethod
    def applying(cls, run: Run, kind: BlockKind, device: str, target: str, *, ttl_seconds: int | None,
                 expires_at: datetime, now: datetime, previous: Block | None = None) -> Block:
        """Recorded before its commands are sent, so a suite killed mid-change never leaves it without an expiry."""
        history = (previous.history if previous is not None else [])[-20:]
        history.append({"at": ecs.utc_iso(now), "state": BlockState.APPLYING.value, "run_id": run.id})
        return cls(id=block_id(device, target, kind), kind=kind, device=device, target=target,
                   state=BlockState.APPLYING, run_id=run.id, run_ids=[run.id], playbook=run.playbook,
                   agency=run.agency, alert_id=run.alert_id, created=ecs.utc_iso(now), ttl_seconds=ttl_seconds,
                   expires_at=ecs.utc_iso(expires_at), history=history)

    def activate(self) -> None:
        self.state = BlockState.ACTIVE
        self.activated = ecs.now_iso()

    def remove(self, by: str) -> None:
        self.state = BlockState.REMOVED
        self.removed_at = ecs.now_iso()
        self.removed_by = by

    def add_run(self, run_id: str) -> None:
        self.run_ids = [*self.run_ids, run_id]

    def extend_to(self, ttl_seconds: int | None, now: datetime) -> str | None:
        """A later expiry when ttl_seconds from now ends after the recorded one; the new expiry, or None."""
        new_expiry = ecs.utc_iso(now + timedelta(seconds=ttl_seconds or 0))
        if ttl_seconds and new_expiry > self.expires_at:
            self.expires_at = new_expiry
            return new_expiry
        return None


@dataclass
class RunFilter:
    state: str | list[str] | None = None
    playbook: str | None = None
    device: str | None = None
    agency: str | None = None
    alert_id: str | None = None
    since: str | None = None  # created >= since
    until: str | None = None  # created < until
    limit: int = 50
    after: tuple[Any, str] | None = None


class Records:
    """The store's side. ``get_*``/``find_*`` give the stored documents (what the API, the CLI and the reports
    show); ``load_*`` give typed records (what the runner changes), ``save_*`` store them."""

    def __init__(self, store: Store):
        self.store = store

    # --- runs ------------------------------------------------------------------------------------------------
    def save_run(self, run: Run) -> Run:
        run.updated = ecs.now_iso()
        self.store.put_documents(RUNS, [run.to_doc()])
        return run

    def get_run(self, run_id: str) -> dict | None:
        return self.store.get_document(RUNS, run_id)

    def load_run(self, run_id: str) -> Run | None:
        doc = self.get_run(run_id)
        return None if doc is None else Run.from_doc(doc)

    def find_runs(self, f: RunFilter) -> list[dict]:
        terms: dict[str, Any] = {}
        if f.state:
            terms["state"] = f.state
        if f.playbook:
            terms["playbook"] = f.playbook
        if f.device:
            terms["devices"] = f.device
        if f.agency:
            terms["agency"] = f.agency
        if f.alert_id:
            terms["alert_id"] = f.alert_id
        ranges = {"created": (f.since, f.until)} if f.since or f.until else {}
        return self.store.find_documents(RUNS, DocumentQuery(terms=terms, ranges=ranges, sort="created",
                                                             descending=True, limit=f.limit, after=f.after))

    # --- blocks ----------------------------------------------------------------------------------------------
    def save_block(self, block: Block) -> Block:
        block.updated = ecs.now_iso()
        self.store.put_documents(BLOCKS, [block.to_doc()])
        return block

    def get_block(self, block_id_: str) -> dict | None:
        return self.store.get_document(BLOCKS, block_id_)

    def load_block(self, block_id_: str) -> Block | None:
        doc = self.get_block(block_id_)
        return None if doc is None else Block.from_doc(doc)

    def find_blocks(self, *, state: str | list[str] | tuple[str, ...] | None = None, device: str | None = None,
                    expires_before: str | None = None, run_id: str | None = None, limit: int = 500) -> list[dict]:
        terms: dict[str, Any] = {}
        if state:
            terms["state"] = state
        if device:
            terms["device"] = device
        if run_id:
            terms["run_ids"] = run_id
        ranges = {"expires_at": (None, expires_before)} if expires_before else {}
        return self.store.find_documents(BLOCKS, DocumentQuery(terms=terms, ranges=ranges, sort="expires_at",
                                                               limit=limit))

    def load_blocks(self, **where: Any) -> list[Block]:
        """The blocks as records. A stored document that is not a valid block (written by an older version, or
        tampered with) is set aside as orphaned with the reason, so one bad record never stops expiry or
        recovery for the others."""
        blocks = []
        for doc in self.find_blocks(**where):
            try:
                blocks.append(Block.from_doc(doc))
            except ValueError as exc:
                log.error("block record %s is not valid and is set aside: %s", doc.get("id"), exc)
                doc.update(state=BlockState.ORPHANED.value, last_error=f"not a valid block record: {exc}"[:500])
                self.store.put_documents(BLOCKS, [doc])
        return blocks

    # --- audit events ----------------------------------------------------------------------------------------
    def audit(self, event: str, *, run: Run | dict | None = None, actor: dict | None = None, **detail: Any) -> None:
        ref = {"id": run.id, "playbook": run.playbook, "agency": run.agency} if isinstance(run, Run) else run or {}
        doc = {"id": uuid.uuid4().hex, "at": ecs.now_iso(), "event": event, "run_id": ref.get("id"),
               "playbook": ref.get("playbook"), "agency": ref.get("agency"),
               "actor": actor or {"kind": "system", "name": "soc"}}
        doc.update(detail)
        self.store.put_documents(AUDIT, [doc])

    def find_audit(self, *, run_id: str | None = None, event: str | None = None, limit: int = 200) -> list[dict]:
        terms: dict[str, Any] = {}
        if run_id:
            terms["run_id"] = run_id
        if event:
            terms["event"] = event
        return self.store.find_documents(AUDIT, DocumentQuery(terms=terms, sort="at", limit=limit))
