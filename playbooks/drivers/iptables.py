"""Linux iptables (legacy or nft back end): blocks are DROP rules in the suite's own chain SOC-BLOCK, jumped to first
from INPUT and FORWARD. The admin's rules are never touched; the chain holds only what the suite added."""

from __future__ import annotations

import ipaddress
import re

from playbooks.drivers._linux import LinuxDriver
from playbooks.drivers.base import Observed, Operation

CHAIN = "SOC-BLOCK"
_RULE = re.compile(r"^-A SOC-BLOCK -([sd]) (\S+) (?:.*)?-j DROP", re.M)


def _tool(op: Operation) -> str:
    return "ip6tables" if op.network.version == 6 else "iptables"


class IptablesDriver(LinuxDriver):
    name = "iptables"
    operations = frozenset({"block", "unblock"})

    def prepare(self, session) -> None:
        if getattr(session, "prepared", False):
            return
        session.prepared = False
        for tool in ("iptables", "ip6tables"):
            _, status = self.run(session, f"{tool} -w -S {CHAIN} >/dev/null 2>&1", phase="prepare", ok=(0, 1))
            if status != 0:
                self.run(session, f"{tool} -w -N {CHAIN}", phase="prepare")
            for parent in ("INPUT", "FORWARD"):
                _, jumps = self.run(session, f"{tool} -w -C {parent} -j {CHAIN} 2>/dev/null", phase="prepare",
                                    ok=(0, 1))
                if jumps != 0:
                    self.run(session, f"{tool} -w -I {parent} 1 -j {CHAIN}", phase="prepare")
        session.prepared = True

    def commands_for(self, op: Operation, observed: Observed | None) -> list[str]:
        tool, net = _tool(op), op.network.cidr
        flag = "-I" if op.kind == "block" else "-D"
        # No comment match on the rules: -D must repeat a rule exactly, and the run that removes a block is not
        # the run that added it.
        return [f"{tool} -w {flag} {CHAIN} -s {net} -j DROP", f"{tool} -w {flag} {CHAIN} -d {net} -j DROP"]

    def show_commands(self, op: Operation) -> list[str]:
        return [f"{_tool(op)} -w -S {CHAIN}"]

    def parse(self, op: Operation, answers: list[str]) -> Observed:
        net = op.network.net
        source = dest = False
        covering = None
        for side, value in _RULE.findall(answers[0]):
            candidate = ipaddress.ip_network(value, strict=False)
            if candidate == net:
                source, dest = source or side == "s", dest or side == "d"
            elif candidate.version == net.version and net.subnet_of(candidate):
                covering = str(candidate)
        blocked = (source and dest) or covering is not None
        detail = {"exact": source and dest, "partial": source != dest, "covered_by": covering}
        return Observed(in_force=blocked if op.kind == "block" else not (source or dest), detail=detail)

    def describe(self, op: Operation, observed: Observed | None = None) -> str:
        verb = "insert DROP rules for" if op.kind == "block" else "delete the DROP rules for"
        return f"{verb} {op.network} (from and to) in chain {CHAIN}"
