"""SonicWall SonicOS 7 (NSA): each block is an address object ``soc-<addr>_<len>`` in zone WAN, member of the
address group SOC-BLOCKLIST that the admin denies in an access rule. Changes are pending until ``commit``."""

from __future__ import annotations

import re

from playbooks.drivers.base import Driver, Observed, Operation
from playbooks.values import object_name
from soc import linear_re

GROUP = "SOC-BLOCKLIST"
ZONE = "WAN"


class SonicwallDriver(Driver):
    name = "sonicwall"
    operations = frozenset({"block", "unblock"})
    error_patterns = (linear_re.compile(r"^\s*(% ?Error|Error:|% Invalid|% Unknown)",
                                        linear_re.MULTILINE | linear_re.IGNORECASE),)

    def commands_for(self, op: Operation, observed: Observed | None) -> list[str]:
        net, name = op.network, object_name(op.network)
        family = "ipv6" if net.version == 6 else "ipv4"
        if op.kind == "block":
            spec = f"host {net.address}" if net.is_host else (
                f"network {net.address} /{net.prefixlen}" if net.version == 6
                else f"network {net.address} {net.netmask}")
            return [f'address-object {family} "{name}" {spec} zone {ZONE}',
                    f'address-group {family} "{GROUP}"', f'address-object {family} "{name}"', "exit", "commit"]
        return [f'address-group {family} "{GROUP}"', f'no address-object {family} "{name}"', "exit",
                f'no address-object {family} "{name}"', "commit"]

    def show_commands(self, op: Operation) -> list[str]:
        family = "ipv6" if op.network.version == 6 else "ipv4"
        return [f'show address-group {family} "{GROUP}"']

    def parse(self, op: Operation, answers: list[str]) -> Observed:
        members = re.findall(r'^\s+address-object ipv[46] "?([^"\s]+)"?', answers[0], re.M)
        present = str(object_name(op.network)) in members
        return Observed(present if op.kind == "block" else not present, {"members": len(members)})
