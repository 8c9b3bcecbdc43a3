"""Cisco IOS / IOS-XE routers and switches.

Blocks are members of the network object group SOC-BLOCKLIST, which the admin references once from an ACL on the
outside interface (``deny ip object-group SOC-BLOCKLIST any`` first, then the usual rules). Null routes are static
routes to Null0 tagged 666. Quarantine shuts a switch port or moves it to a quarantine VLAN. The running
configuration is not saved: a containment is temporary and the suite removes it.
"""

from __future__ import annotations

import ipaddress
import re

from playbooks.drivers.base import Driver, Observed, Operation, UnsupportedOperation
from playbooks.values import Network
from soc import linear_re

GROUP = "SOC-BLOCKLIST"
GROUP6 = "SOC-BLOCKLIST6"
NULL_TAG = 666


def _group(net: Network) -> str:
    # IOS keeps IPv4 and IPv6 objects apart: "object-group network" holds IPv4 only.
    return f"object-group network {GROUP}" if net.version == 4 else f"object-group v6-network {GROUP6}"


def _member(net: Network) -> str:
    if net.is_host:
        return f"host {net.address}"
    return f"{net.address} {net.netmask}" if net.version == 4 else net.cidr


def _members(answer: str) -> list:
    found = []
    for line in answer.splitlines():
        words = line.split()
        try:
            if len(words) == 2 and words[0] == "host":
                found.append(ipaddress.ip_network(words[1]))
            elif len(words) == 2:
                found.append(ipaddress.ip_network(f"{words[0]}/{words[1]}"))
            elif len(words) == 1 and "/" in words[0]:
                found.append(ipaddress.ip_network(words[0]))
        except ValueError:
            continue
    return found


class CiscoIosDriver(Driver):
    name = "cisco_ios"
    operations = frozenset({"block", "unblock", "null_route", "remove_null_route", "shutdown_port", "enable_port",
                            "set_vlan"})
    error_patterns = (linear_re.compile(r"^% (Invalid|Incomplete|Ambiguous|Unknown|Bad|Error)",
                                        linear_re.MULTILINE),)

    def commands_for(self, op: Operation, observed: Observed | None) -> list[str]:
        if op.kind in ("block", "unblock"):
            no = "" if op.kind == "block" else "no "
            return [_group(op.network), f" {no}{_member(op.network)}"]
        if op.kind in ("null_route", "remove_null_route"):
            net = op.network
            no = "" if op.kind == "null_route" else "no "
            if net.version == 6:
                return [f"{no}ipv6 route {net.cidr} Null0 tag {NULL_TAG}"]
            return [f"{no}ip route {net.address} {net.netmask} Null0 tag {NULL_TAG}"]
        if op.kind in ("shutdown_port", "enable_port"):
            return [f"interface {op.interface}", " shutdown" if op.kind == "shutdown_port" else " no shutdown"]
        if op.vlan is None or op.vlan.number is None:  # IOS names access VLANs by number only
            raise UnsupportedOperation(f"the cisco_ios driver sets an access VLAN by number, not {op.vlan}")
        return [f"interface {op.interface}", f" switchport access vlan {op.vlan.number}"]

    def show_commands(self, op: Operation) -> list[str]:
        if op.kind in ("block", "unblock"):
            return [f"show object-group name {GROUP if op.network.version == 4 else GROUP6}"]
        if op.kind in ("null_route", "remove_null_route"):
            if op.network.version == 6:
                return [f"show running-config | include ^ipv6 route {op.network.cidr} "]
            return [f"show running-config | include ^ip route {op.network.address} "]
        return [f"show running-config interface {op.interface}"]

    def parse(self, op: Operation, answers: list[str]) -> Observed:
        answer = answers[0]
        if op.kind in ("block", "unblock"):
            members, net = _members(answer), op.network.net
            exact = net in members
            covering = next((str(m) for m in members if m != net and m.version == net.version
                             and net.subnet_of(m)), None)
            blocked = exact or covering is not None
            return Observed(blocked if op.kind == "block" else not exact,
                            {"exact": exact, "covered_by": covering})
        if op.kind in ("null_route", "remove_null_route"):
            net = op.network.net
            if net.version == 6:
                present = re.search(rf"^ipv6 route {re.escape(str(net))} Null0\b", answer, re.M) is not None
            else:
                present = re.search(rf"^ip route {re.escape(str(net.network_address))} "
                                    rf"{re.escape(str(net.netmask))} Null0\b", answer, re.M) is not None
            return Observed(present if op.kind == "null_route" else not present)
        shut = re.search(r"^\s+shutdown\s*$", answer, re.M) is not None
        vlan_match = re.search(r"^\s+switchport access vlan (\d+)", answer, re.M)
        vlan = int(vlan_match.group(1)) if vlan_match else 1
        if op.kind == "shutdown_port":
            return Observed(shut, {"vlan": vlan})
        if op.kind == "enable_port":
            return Observed(not shut, {"vlan": vlan})
        return Observed(op.vlan is not None and vlan == op.vlan.number, {"vlan": vlan})
