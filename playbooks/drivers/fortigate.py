"""Fortinet FortiGate (FortiOS): each block is a firewall address ``soc-<addr>_<len>`` appended to the address
group SOC-BLOCKLIST, which the admin uses in a deny policy at the top. FortiOS has no configuration mode in
netmiko's sense: the ``config ... end`` blocks are sent line by line."""

from __future__ import annotations

import re

from playbooks.drivers.base import Driver, Observed, Operation
from playbooks.values import object_name
from soc import linear_re

GROUP = "SOC-BLOCKLIST"


class FortigateDriver(Driver):
    name = "fortigate"
    operations = frozenset({"block", "unblock"})
    config_mode = False
    error_patterns = (linear_re.compile(r"(Command fail\.|entry not found|node_check_object fail|value parse error|"
                                 r"Unknown action)", linear_re.IGNORECASE),)

    def commands_for(self, op: Operation, observed: Observed | None) -> list[str]:
        net, name = op.network, object_name(op.network)
        if op.kind == "block":
            address = ["config firewall address6", f'edit "{name}"', f"set ip6 {net.cidr}"] if net.version == 6 else \
                ["config firewall address", f'edit "{name}"', f"set subnet {net.address} {net.netmask}"]
            group = "addrgrp6" if net.version == 6 else "addrgrp"
            return address + [f'set comment "{str(op.comment) or "soc"}"', "next", "end",
                              f"config firewall {group}", f'edit "{GROUP}"', f'append member "{name}"', "next",
                              "end"]
        group = "addrgrp6" if net.version == 6 else "addrgrp"
        table = "address6" if net.version == 6 else "address"
        return [f"config firewall {group}", f'edit "{GROUP}"', f'unselect member "{name}"', "next", "end",
                f"config firewall {table}", f'delete "{name}"', "end"]

    def show_commands(self, op: Operation) -> list[str]:
        group = "addrgrp6" if op.network.version == 6 else "addrgrp"
        return [f"show firewall {group} {GROUP}"]

    def parse(self, op: Operation, answers: list[str]) -> Observed:
        members: list[str] = []
        for line in answers[0].splitlines():
            line = line.strip()
            if line.startswith("set member "):
                members = re.findall(r'"([^"]+)"', line)
        present = str(object_name(op.network)) in members
        return Observed(present if op.kind == "block" else not present, {"members": len(members)})
