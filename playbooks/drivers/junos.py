"""Juniper Junos (SRX, EX, MX): blocks are entries of the prefix list SOC-BLOCKLIST, which the admin's firewall
filter or security policy references; null routes are ``discard`` static routes; quarantine disables an interface
or moves it to a quarantine VLAN. Every change is committed (``commit comment "soc ..."``).

A null route is set only on a prefix with no static route of someone else's: ``set ... discard`` onto an existing
static route would change it, and the undo (``delete ... static route X``) would delete it. Such a route is read,
reported and the change refused; so is removing a discard route that has since been given other statements."""

from __future__ import annotations

import ipaddress
import re

from playbooks.drivers.base import Driver, DriverError, Observed, Operation
from soc import linear_re

GROUP = "SOC-BLOCKLIST"


class JunosDriver(Driver):
    name = "junos"
    operations = frozenset({"block", "unblock", "null_route", "remove_null_route", "shutdown_port", "enable_port",
                            "set_vlan"})
    needs_commit = True
    error_patterns = (linear_re.compile(r"^(error:|syntax error|unknown command|\s*\^\s*$|commit failed)",
                                        linear_re.MULTILINE | linear_re.IGNORECASE),)

    def commands_for(self, op: Operation, observed: Observed | None) -> list[str]:
        others = (observed.detail.get("existing_routes") if observed is not None else None) or []
        if others and op.kind == "null_route":
            raise DriverError(f"{op.network.cidr} already has a static route on the device ({'; '.join(others)}): "
                              f"a discard route would change it and removing it would delete it; refused")
        if others and op.kind == "remove_null_route":
            raise DriverError(f"the static route for {op.network.cidr} carries more than the suite's discard "
                              f"({'; '.join(others)}): deleting it would delete those too; refused")
        verb = "set" if op.kind in ("block", "null_route", "shutdown_port", "set_vlan") else "delete"
        if op.kind in ("block", "unblock"):
            return [f"{verb} policy-options prefix-list {GROUP} {op.network.cidr}"]
        if op.kind in ("null_route", "remove_null_route"):
            family = "rib inet6.0 " if op.network.version == 6 else ""
            tail = " discard" if verb == "set" else ""
            return [f"{verb} routing-options {family}static route {op.network.cidr}{tail}"]
        if op.kind in ("shutdown_port", "enable_port"):
            return [f"{verb} interfaces {op.interface} disable"]
        return [f"delete interfaces {op.interface} unit 0 family ethernet-switching vlan members",
                f"set interfaces {op.interface} unit 0 family ethernet-switching vlan members {op.vlan}"]

    def show_commands(self, op: Operation) -> list[str]:
        if op.kind in ("block", "unblock"):
            return [f"show configuration policy-options prefix-list {GROUP} | display set"]
        if op.kind in ("null_route", "remove_null_route"):
            return ["show configuration routing-options | display set"]
        return [f"show configuration interfaces {op.interface} | display set"]

    def parse(self, op: Operation, answers: list[str]) -> Observed:
        answer = answers[0]
        if op.kind in ("block", "unblock"):
            members = [ipaddress.ip_network(m, strict=False) for m in
                       re.findall(rf"^set policy-options prefix-list {GROUP} (\S+)\s*$", answer, re.M)]
            net = op.network.net
            exact = net in members
            covering = next((str(m) for m in members if m != net and m.version == net.version
                             and net.subnet_of(m)), None)
            blocked = exact or covering is not None
            return Observed(blocked if op.kind == "block" else not exact, {"exact": exact, "covered_by": covering})
        if op.kind in ("null_route", "remove_null_route"):
            family = r"rib inet6\.0 " if op.network.version == 6 else ""
            statements = [m.group(1) or "" for m in re.finditer(
                rf"^set routing-options {family}static route {re.escape(op.network.cidr)}(?: (.*?))?\s*$", answer,
                re.M)]
            present = "discard" in statements
            others = [f"static route {op.network.cidr} {s}".strip() for s in statements if s != "discard"]
            return Observed(present if op.kind == "null_route" else not present, {"existing_routes": others})
        disabled = re.search(rf"^set interfaces {re.escape(str(op.interface))} disable\s*$", answer, re.M) is not None
        vlan_match = re.search(r"vlan members (\S+)\s*$", answer, re.M)
        vlan = vlan_match.group(1) if vlan_match else None
        if op.kind == "shutdown_port":
            return Observed(disabled, {"vlan": vlan})
        if op.kind == "enable_port":
            return Observed(not disabled, {"vlan": vlan})
        return Observed(str(vlan) == str(op.vlan), {"vlan": vlan})
