"""One device transaction behind the driver contract, in the spirit of NAPALM: compare, load, commit, roll back.

For one :class:`Operation` on one managed device, under the device's lock (locks.py) and on a pooled session
(connections.py, host keys pinned):

    prepare   the driver makes sure the objects it relies on exist (idempotent)
    compare   observe: is the intended state already in force? Then nothing is sent
    load      render the exact commands, and their undo, against what was observed
    commit    send the commands
    verify    observe again: is it in force now?
    rollback  if it is not, or the device refused the commit: send the undo at once and read the previous state back

Every caller runs the same transaction in one of three modes: ``CHANGE`` (a run's change: every step),
``RESTORE`` (undo and expiry put back what a change took: compare, load, commit, verify; no prepare, and no
rollback, since the state before is the one being removed) and ``READ`` (recovery after a restart: compare only).
The result is typed: a status, what was observed before and after, the change, a message, and every command sent
with the device's answer (secrets masked). A device that cannot be locked, reached (an unpinned or changed host key
included), read or changed is a result, never an exception; anything else (a bug, the store) goes up to the caller.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Callable

from inventory.model import ManagedDevice
from playbooks.connections import ConnectionPool, CredentialError, DeviceUnreachable
from playbooks.drivers import Change, Driver, DriverError, Observed, Operation, get_driver
from playbooks.locks import DeviceLocks, LockTimeout

# What a device (or the way to it) can do wrong: these end a transaction as FAILED, with the reason.
DEVICE_FAILURES = (DriverError, DeviceUnreachable, CredentialError, LockTimeout, OSError, EOFError)


class Mode(StrEnum):
    CHANGE = "change"  # prepare, compare, load, commit, verify, roll back at once if not in force
    RESTORE = "restore"  # compare, load, commit, verify
    READ = "read"  # compare only


class TransactionStatus(StrEnum):
    UNCHANGED = "unchanged"  # already in force: nothing sent
    CHANGED = "changed"  # committed and read back in force
    NOT_IN_FORCE = "not_in_force"  # READ: not in force (nothing sent)
    UNVERIFIED = "unverified"  # RESTORE: committed, but not in force when read back (left as it is)
    ROLLED_BACK = "rolled_back"  # CHANGE: refused, or not in force when read back, and rolled back at once
    FAILED = "failed"  # the lock, the session or the device failed; nothing more was tried


@dataclass
class TransactionResult:
    device: str
    operation: Operation
    mode: Mode
    status: TransactionStatus = TransactionStatus.FAILED
    message: str = ""
    before: Observed | None = None  # compare
    after: Observed | None = None  # verify
    change: Change | None = None  # load
    error: Exception | None = None  # what failed (or what the device refused before a rollback)
    restored: bool | None = None  # after a rollback: the previous state read back (None: the rollback was refused)
    lock_wait_ms: float | None = None
    exchanges: list[dict[str, Any]] = field(default_factory=list)  # every command and answer, secrets masked

    @property
    def in_force(self) -> bool:
        return self.status in (TransactionStatus.UNCHANGED, TransactionStatus.CHANGED)


_S = TransactionStatus
# What each outcome says. A failure (or a refusal that was rolled back) says "{device}: {error}".
MESSAGES = {
    (Mode.CHANGE, _S.UNCHANGED): "{action} {target} is already in force on {device}{covered}; nothing changed",
    (Mode.CHANGE, _S.CHANGED): "{device}: {description}",
    (Mode.CHANGE, _S.ROLLED_BACK): "{device}: verification failed: the change is not in force after apply; "
                                   "{rollback}",
    (Mode.RESTORE, _S.UNCHANGED): "{kind} {target}: already so on {device}",
    (Mode.RESTORE, _S.CHANGED): "{kind} {target} on {device}: done and verified",
    (Mode.RESTORE, _S.UNVERIFIED): "{kind} {target} on {device}: NOT in force after apply",
    (Mode.READ, _S.UNCHANGED): "{action} {target} is in force on {device}",
    (Mode.READ, _S.NOT_IN_FORCE): "{action} {target} is not in force on {device}",
}


class DeviceTransaction:
    """One operation on one device. ``run`` takes the lock and a pooled session and calls the steps below in order;
    ``before_commit(change)`` is called under the lock before the commands are sent (a run records its block then,
    so a crash never leaves a block without an expiry), ``settle(result)`` under the lock once the outcome is known
    (it may add to the message)."""

    def __init__(self, device: ManagedDevice, operation: Operation, *, locks: DeviceLocks, pool: ConnectionPool,
                 driver: Driver | None = None):
        self.device = device
        self.operation = operation
        self.driver = driver or get_driver(device.driver)
        self.locks = locks
        self.pool = pool
        self.session: Any = None  # open only inside run()

    # --- the steps, on the open session ------------------------------------------------------------------------
    def prepare(self) -> None:
        self.driver.prepare(self.session)

    def compare(self, *, phase: str = "check") -> Observed:
        return self.driver.observe(self.session, self.operation, phase=phase)

    def load(self, observed: Observed) -> Change:
        return self.driver.render(self.device.id, self.operation, observed)

    def commit(self, change: Change, *, phase: str, comment: str = "") -> None:
        self.driver.apply(self.session, change.commands, phase=phase, comment=comment)

    def rollback(self, change: Change, before: Observed) -> tuple[bool | None, str]:
        """Send the change's undo and read back the state observed before: (restored, in words)."""
        try:
            self.driver.apply(self.session, change.rollback, phase="rollback")
            restored = self.driver.observe(self.session, self.operation.inverse(before), phase="rollback").in_force
        except DriverError as exc:
            return None, f"rollback refused by the device: {exc}"
        return restored, "rolled back" if restored else "rollback did NOT restore the previous state"

    # --- the whole transaction ---------------------------------------------------------------------------------
    def run(self, mode: Mode = Mode.CHANGE, *, phase: str = "apply", comment: str = "",
            before_commit: Callable[[Change], None] | None = None,
            settle: Callable[[TransactionResult], None] | None = None) -> TransactionResult:
        """``phase`` names the commit in the transcript (apply; rollback or revert when undoing); ``comment`` is what
        a device that keeps one records beside the commit (Junos)."""
        result = TransactionResult(self.device.id, self.operation, Mode(mode))
        try:
            with self.locks.hold(self.device.id) as waited:
                result.lock_wait_ms = round(waited * 1000, 1)
                # A session that fails mid-use leaves through the pool (closed, not pooled): failures are caught
                # out here.
                with self.pool.session(self.device, self.driver) as session:
                    self.session = session
                    try:
                        self._steps(result, phase, comment, before_commit)
                        if settle is not None:
                            settle(result)
                    finally:
                        result.exchanges = [e.as_dict() for e in session.take()]
        except DEVICE_FAILURES as exc:
            result.error = exc
            self._end(result, TransactionStatus.FAILED)
        finally:
            self.session = None
        return result

    def _steps(self, result: TransactionResult, phase: str, comment: str,
               before_commit: Callable[[Change], None] | None) -> None:
        mode = result.mode
        if mode is Mode.CHANGE:
            self.prepare()
        result.before = before = self.compare()
        if before.in_force:
            return self._end(result, TransactionStatus.UNCHANGED)
        if mode is Mode.READ:
            return self._end(result, TransactionStatus.NOT_IN_FORCE)
        result.change = change = self.load(before)
        if before_commit is not None:
            before_commit(change)
        try:
            self.commit(change, phase=phase, comment=comment)
            result.after = self.compare(phase="verify")
        except DriverError as exc:
            if mode is not Mode.CHANGE:
                raise
            result.error = exc  # refused: undone at once, and the refusal is what the result says
            result.restored, _ = self.rollback(change, before)
            return self._end(result, TransactionStatus.ROLLED_BACK)
        if result.after.in_force:
            return self._end(result, TransactionStatus.CHANGED)
        if mode is not Mode.CHANGE:
            return self._end(result, TransactionStatus.UNVERIFIED)
        result.restored, outcome = self.rollback(change, before)
        self._end(result, TransactionStatus.ROLLED_BACK, rollback=outcome)

    def _end(self, result: TransactionResult, status: TransactionStatus, *, rollback: str = "") -> None:
        result.status = status
        if result.error is not None:
            result.message = f"{self.device.id}: {result.error}"
            return
        op, before = self.operation, result.before
        covered = before.detail.get("covered_by") if before is not None else None
        result.message = MESSAGES[(result.mode, status)].format(
            device=self.device.id, kind=op.kind, action=op.kind.replace("_", " "), target=op.target,
            covered=f" (covered by {covered})" if covered else "",
            description=result.change.description if result.change is not None else "", rollback=rollback)
