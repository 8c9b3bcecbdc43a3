"""The one contract every device driver keeps, in the spirit of NAPALM: render, apply, verify, roll back.

A driver is pure where it can be: ``render`` turns a vendor-neutral :class:`Operation` into the exact commands (and
the commands that undo them), ``show_commands`` names what to read back, and ``parse`` reads the device's answers
into :class:`Observed`. Only ``prepare``/``observe``/``apply`` talk to a :class:`Session`, so the vendors that
cannot run here are tested on what they render and on recorded answers, and the Linux ones on a real firewall.
"""

from __future__ import annotations

import ipaddress
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

OperationKind = Literal["block", "unblock", "null_route", "remove_null_route", "shutdown_port", "enable_port",
                        "set_vlan"]
INVERSE = {"block": "unblock", "unblock": "block", "null_route": "remove_null_route",
           "remove_null_route": "null_route", "shutdown_port": "enable_port", "enable_port": "shutdown_port",
           "set_vlan": "set_vlan"}


class DriverError(Exception):
    """The device refused a command or answered something the driver cannot read."""


class UnsupportedOperation(DriverError):
    pass


@dataclass(frozen=True)
class Operation:
    kind: OperationKind
    target: str  # a network (block, null route) or an interface name (port operations)
    vlan: int | str | None = None
    comment: str = ""  # a short tag the device keeps beside the change (the run id)

    @property
    def network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        return ipaddress.ip_network(self.target, strict=False)

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
        return {"device": self.device, "operation": self.operation.kind, "target": self.operation.target,
                "vlan": None if self.operation.vlan is None else str(self.operation.vlan), "commands": self.commands, "rollback": self.rollback,
                "description": self.description}


@dataclass
class Observed:
    """What the device says about the operation: is its intended state in force, and what else was seen."""

    in_force: bool
    detail: dict[str, Any] = field(default_factory=dict)


class Session(Protocol):
    device_id: str

    def send(self, command: str, *, phase: str) -> str: ...

    def configure(self, commands: list[str], *, phase: str, commit: bool = False, comment: str = "") -> str: ...


def network_text(network) -> str:
    """203.0.113.5 for a host, 198.51.100.0/24 for a range."""
    return str(network.network_address) if network.prefixlen == network.max_prefixlen else str(network)


def object_name(network) -> str:
    """A device object name for a network: soc-203.0.113.5_32 (letters, digits, dot, dash, underscore only)."""
    return f"soc-{str(network.network_address).replace(':', '-')}_{network.prefixlen}"


class Driver(ABC):
    name: str = "driver"
    transport: str = "netmiko"  # or "http" (Sophos XML API)
    operations: frozenset[str] = frozenset()
    # Answers that mean the device refused a command.
    error_patterns: tuple[re.Pattern, ...] = ()

    def supports(self, kind: str) -> bool:
        return kind in self.operations

    # --- pure parts ---------------------------------------------------------------------------------------------
    def render(self, device: str, op: Operation, observed: Observed | None = None) -> Change:
        if not self.supports(op.kind):
            raise UnsupportedOperation(f"the {self.name} driver cannot {op.kind.replace('_', ' ')}")
        commands = self.commands_for(op, observed)
        undo = op.inverse(observed)
        rollback = self.commands_for(undo, None) if self.supports(undo.kind) else []
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
        return self.parse(op, answers)

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
