"""Cisco ASA: blocks are network-objects of the object group SOC-BLOCKLIST, which the admin references from the
outside interface's ACL (``access-list outside_in line 1 extended deny ip object-group SOC-BLOCKLIST any``). An ASA
refuses to empty a group an ACL uses, so the admin keeps one placeholder member (a documentation address).
Null routes are ``route Null0`` entries."""

from __future__ import annotations

import ipaddress
import re

from playbooks.drivers.base import Driver, Observed, Operation, UnsupportedOperation
from playbooks.values import Network
from soc import linear_re

GROUP = "SOC-BLOCKLIST"


def _member(net: Network) -> str:
    if net.is_host:
        return f"network-object host {net.address}"
    if net.version == 6:
        return f"network-object {net.cidr}"
    return f"network-object {net.address} {net.netmask}"


def _members(answer: str) -> list:
    found = []
    for line in answer.splitlines():
        words = line.split()
        if not words or words[0] != "network-object":
            continue
        try:
            if words[1] == "host":
                found.append(ipaddress.ip_network(words[2]))
            elif len(words) == 3:
                found.append(ipaddress.ip_network(f"{words[1]}/{words[2]}"))
            else:
                found.append(ipaddress.ip_network(words[1], strict=False))
        except (ValueError, IndexError):
            continue
    return found


class CiscoAsaDriver(Driver):
    name = "cisco_asa"
    operations = frozenset({"block", "unblock", "null_route", "remove_null_route"})
    error_patterns = (linear_re.compile(r"^(ERROR:|% Invalid|% Incomplete)", linear_re.MULTILINE),)

    def commands_for(self, op: Operation, observed: Observed | None) -> list[str]:
        net = op.network
        if op.kind in ("block", "unblock"):
            no = "" if op.kind == "block" else "no "
            return [f"object-group network {GROUP}", f" {no}{_member(net)}"]
        if net.version == 6:  # ASA's Null0 routes are IPv4 only
            raise UnsupportedOperation("the cisco_asa driver null-routes IPv4 destinations only")
        no = "" if op.kind == "null_route" else "no "
        return [f"{no}route Null0 {net.address} {net.netmask}"]

    def show_commands(self, op: Operation) -> list[str]:
        if op.kind in ("block", "unblock"):
            return [f"show running-config object-group id {GROUP}"]
        return ["show running-config route | include Null0"]

    def parse(self, op: Operation, answers: list[str]) -> Observed:
        net = op.network.net
        if op.kind in ("block", "unblock"):
            members = _members(answers[0])
            exact = net in members
            covering = next((str(m) for m in members if m != net and m.version == net.version
                             and net.subnet_of(m)), None)
            blocked = exact or covering is not None
            return Observed(blocked if op.kind == "block" else not exact, {"exact": exact, "covered_by": covering})
        present = re.search(rf"^route Null0 {re.escape(str(net.network_address))} {re.escape(str(net.netmask))}\b",
                            answers[0], re.M) is not None
        return Observed(present if op.kind == "null_route" else not present)
