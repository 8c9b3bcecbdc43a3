"""The one contract every device driver keeps, in the spirit of NAPALM: render, apply, verify, roll back.

A driver is pure where it can be: ``render`` turns a vendor-neutral :class:`Operation` into the exact commands (and
the commands that undo them), ``show_commands`` names what to read back, and ``parse`` reads the device's answers
into :class:`Observed`. Only ``prepare``/``observe``/``apply`` talk to a :class:`Session`, so the vendors that
cannot run here are tested on what they render and on recorded answers, and the Linux ones on a real firewall.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from playbooks.values import Comment, InterfaceName, Network, ValueRefused, VlanId, check_rendered

OperationKind = Literal["block", "unblock", "null_route", "remove_null_route", "shutdown_port", "enable_port",
                        "set_vlan"]
PORT_OPERATIONS = frozenset({"shutdown_port", "enable_port", "set_vlan"})
INVERSE = {"block": "unblock", "unblock": "block", "null_route": "remove_null_route",
           "remove_null_route": "null_route", "shutdown_port": "enable_port", "enable_port": "shutdown_port",
           "set_vlan": "set_vlan"}


class DriverError(Exception):
    """The device refused a command or answered something the driver cannot read."""


class UnsupportedOperation(DriverError):
    pass


@dataclass(frozen=True)
class Operation:
    """A vendor-neutral change. Its values are typed (playbooks/values.py) whatever the caller passed: text given
    here is parsed strictly, so an Operation that exists holds nothing a device could read as more than one token."""

    kind: OperationKind
    target: Network | InterfaceName  # a network (block, null route) or an interface name (port operations)
    vlan: VlanId | None = None
    comment: Comment = Comment("")  # a short tag the device keeps beside the change (the run's tag)

    def __post_init__(self) -> None:
        if self.kind not in INVERSE:
            raise ValueRefused(f"operation: {str(self.kind)[:40]!r} is not one of {', '.join(sorted(INVERSE))}")
        target = InterfaceName.parse(self.target, "interface") if self.kind in PORT_OPERATIONS else \
            Network.parse(self.target, "target")
        object.__setattr__(self, "target", target)
        object.__setattr__(self, "vlan", None if self.vlan is None else VlanId.parse(self.vlan))
        object.__setattr__(self, "comment", Comment.parse(self.comment or ""))
        if self.kind == "set_vlan" and self.vlan is None:
            raise ValueRefused("set_vlan needs a VLAN id")

    @property
    def network(self) -> Network:
        if not isinstance(self.target, Network):
            raise UnsupportedOperation(f"{self.kind} works on an interface, not a network")
        return self.target

    @property
    def interface(self) -> InterfaceName:
        if not isinstance(self.target, InterfaceName):
            raise UnsupportedOperation(f"{self.kind} works on a network, not an interface")
        return self.target

    def inverse(self, observed: "Observed | None" = None) -> "Operation":
        if self.kind == "set_vlan":
            previous = (observed.detail.get("vlan") if observed else None) or 1
            return Operation("set_vlan", self.target, vlan=previous, comment=self.comment)
        return Operation(INVERSE[self.kind], self.target, self.vlan, self.comment)  # type: ignore[arg-type]


@dataclass
class Change:
    """What one operation does on one device: the exact commands, how to undo them, and in words."""

    device: str
    operation: Operation
    commands: list[str]
    rollback: list[str]
    description: str
    config_mode: bool = True  # sent inside the device's configuration mode
    commit: bool = False  # the device needs a commit after the commands (Junos)

    def as_dict(self) -> dict[str, Any]:
        op = self.operation
        return {"device": self.device, "operation": op.kind, "target": str(op.target),
                "vlan": None if op.vlan is None else str(op.vlan), "commands": self.commands,
                "rollback": self.rollback, "description": self.description}


@dataclass
class Observed:
    """What the device says about the operation: is its intended state in force, and what else was seen."""

    in_force: bool
    detail: dict[str, Any] = field(default_factory=dict)


class Session(Protocol):
    device_id: str

    def send(self, command: str, *, phase: str) -> str: ...

    def configure(self, commands: list[str], *, phase: str, commit: bool = False, comment: str = "") -> str: ...


class Driver(ABC):
    name: str = "driver"
    transport: str = "netmiko"  # or "http" (Sophos XML API)
    operations: frozenset[str] = frozenset()
    # Answers that mean the device refused a command; linear-time patterns (soc.linear_re): a device's answer may be
    # hostile, and a backtracking pattern over it could hold a run for hours.
    error_patterns: tuple = ()

    def supports(self, kind: str) -> bool:
        return kind in self.operations

    # --- pure parts ---------------------------------------------------------------------------------------------
    def render(self, device: str, op: Operation, observed: Observed | None = None) -> Change:
        if not self.supports(op.kind):
            raise UnsupportedOperation(f"the {self.name} driver cannot {op.kind.replace('_', ' ')}")
        # Every command is rendered from typed values; check_rendered is the last guard against a driver bug.
        commands = check_rendered(self.commands_for(op, observed))
        undo = op.inverse(observed)
        rollback = check_rendered(self.commands_for(undo, None)) if self.supports(undo.kind) else []
        return Change(device=device, operation=op, commands=commands, rollback=rollback,
                      description=self.describe(op, observed), config_mode=self.config_mode,
                      commit=self.needs_commit)

    config_mode: bool = True
    needs_commit: bool = False

    @abstractmethod
    def commands_for(self, op: Operation, observed: Observed | None) -> list[str]:
        """The exact commands that put op's state in force."""

    @abstractmethod
    def show_commands(self, op: Operation) -> list[str]:
        """Read-only commands whose answers tell whether op's state is in force."""

    @abstractmethod
    def parse(self, op: Operation, answers: list[str]) -> Observed:
        """Read the answers to show_commands(op)."""

    def describe(self, op: Operation, observed: Observed | None = None) -> str:
        return f"{op.kind.replace('_', ' ')} {op.target}" + (f" (vlan {op.vlan})" if op.vlan else "")

    def refusal(self, answer: str) -> str | None:
        for pattern in self.error_patterns:
            found = pattern.search(answer)
            if found:
                line = answer[found.start():].splitlines()[0] if answer[found.start():] else found.group(0)
                return line.strip()
        return None

    # --- talking to the device ---------------------------------------------------------------------------------
    def prepare(self, session: Session) -> None:
        """Make sure the objects the driver relies on exist (idempotent). Most vendors expect them configured."""

    def observe(self, session: Session, op: Operation, *, phase: str = "check") -> Observed:
        answers = []
        for command in self.show_commands(op):
            answers.append(session.send(command, phase=phase))
        return self.read(op, answers)

    def read(self, op: Operation, answers: list[str]) -> Observed:
        """``parse``, with an answer it cannot read (a device that is wrong or compromised) a DriverError."""
        try:
            return self.parse(op, answers)
        except DriverError:
            raise
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
            raise DriverError(f"the device answered something the {self.name} driver cannot read: "
                              f"{type(exc).__name__}: {str(exc)[:200]}") from exc

    def apply(self, session: Session, commands: list[str], *, phase: str, comment: str = "") -> str:
        if not commands:
            return ""
        if self.config_mode:
            answer = session.configure(commands, phase=phase, commit=self.needs_commit, comment=comment)
            refused = self.refusal(answer)
        else:
            answer, refused = "", None
            for command in commands:
                one = session.send(command, phase=phase)
                answer += one
                refused = refused or self.refusal(one)
        if refused:
            raise DriverError(f"the device refused the change: {refused}")
        return answer
