"""Linux nftables: blocks are elements of two interval sets in the suite's own table, dropped in input and forward.

    table inet soc
      set block4 { type ipv4_addr; flags interval; }      set block6 { type ipv6_addr; flags interval; }
      chain forward/input (priority -10, before the admin's own filter chains): saddr or daddr in a set -> drop

The suite owns only this table; the admin's rules are never touched. Null routes are kernel blackhole routes, added
only where the main table has no route for that prefix (``ip route add``, never ``replace``): a route the firewall
already has is reported and the null route refused, so neither the null route nor its removal can take it away.
"""

from __future__ import annotations

import json

from playbooks.drivers._linux import LinuxDriver
from playbooks.drivers.base import DriverError, Observed, Operation

TABLE = "inet soc"
# Each a short command line: a terminal wraps long ones, and the session reads the echo of what it sent.
SETUP = (
    "nft add table inet soc",
    "nft 'add set inet soc block4 { type ipv4_addr; flags interval; }'",
    "nft 'add set inet soc block6 { type ipv6_addr; flags interval; }'",
    "nft 'add chain inet soc forward { type filter hook forward priority -10; policy accept; }'",
    "nft 'add chain inet soc input { type filter hook input priority -10; policy accept; }'",
    "nft 'flush chain inet soc forward; add rule inet soc forward ip saddr @block4 drop; "
    "add rule inet soc forward ip daddr @block4 drop'",
    "nft 'add rule inet soc forward ip6 saddr @block6 drop; add rule inet soc forward ip6 daddr @block6 drop'",
    "nft 'flush chain inet soc input; add rule inet soc input ip saddr @block4 drop; "
    "add rule inet soc input ip6 saddr @block6 drop'",
)


def _set(op: Operation) -> str:
    return "block4" if op.network.version == 4 else "block6"


def _elements(answer: str) -> list:
    start, end = answer.find("{"), answer.rfind("}")
    if start < 0:
        return []
    try:
        doc = json.loads(answer[start:end + 1])
    except ValueError as exc:
        raise DriverError(f"nft answered something that is not JSON: {answer[:200]!r}") from exc
    for item in doc.get("nftables", []):
        if "set" in item:
            return item["set"].get("elem", [])
    return []


def _as_network(elem, version: int):
    import ipaddress

    if isinstance(elem, dict) and "elem" in elem:
        elem = elem["elem"].get("val")
    if isinstance(elem, str):
        return ipaddress.ip_network(elem, strict=False)
    if isinstance(elem, dict) and "prefix" in elem:
        return ipaddress.ip_network(f"{elem['prefix']['addr']}/{elem['prefix']['len']}", strict=False)
    if isinstance(elem, dict) and "range" in elem:
        low, high = (ipaddress.ip_address(a) for a in elem["range"])
        return list(ipaddress.summarize_address_range(low, high))
    return None


class NftablesDriver(LinuxDriver):
    name = "nftables"
    operations = frozenset({"block", "unblock", "null_route", "remove_null_route"})

    def prepare(self, session) -> None:
        if getattr(session, "prepared", False):
            return  # a pooled session already checked the table
        _, status = self.run(session, "nft list chain inet soc input 2>/dev/null | grep -q @block6",
                             phase="prepare", ok=(0, 1))
        if status != 0:
            for command in SETUP:
                self.run(session, command, phase="prepare")
        session.prepared = True

    def commands_for(self, op: Operation, observed: Observed | None) -> list[str]:
        net = op.network
        if op.kind in ("block", "unblock"):
            verb = "add" if op.kind == "block" else "delete"
            comment = f' comment "{op.comment}"' if str(op.comment) and op.kind == "block" else ""
            return [f"nft {verb} element {TABLE} {_set(op)} '{{ {net.text}{comment} }}'"]
        existing = (observed.detail.get("existing_routes") if observed is not None else None) or []
        if op.kind == "null_route" and existing:
            raise DriverError(f"{net.cidr} already has a route on the device ({'; '.join(existing)}): a blackhole "
                              f"route would replace it and removing it would leave the network unreachable; refused")
        if op.kind == "null_route":  # add: the kernel itself refuses it over an existing route (File exists)
            return [f"ip {'-6 ' if net.version == 6 else ''}route add blackhole {net.cidr}"]
        # IPv6 deletes the first route of the prefix whatever its type: only a blackhole is on lo.
        return [f"ip -6 route del blackhole {net.cidr} dev lo" if net.version == 6 else
                f"ip route del blackhole {net.cidr}"]

    def show_commands(self, op: Operation) -> list[str]:
        if op.kind in ("block", "unblock"):
            return [f"nft -j list set {TABLE} {_set(op)}"]
        return [f"ip {'-6 ' if op.network.version == 6 else ''}-j route show exact {op.network.cidr}"]

    def parse(self, op: Operation, answers: list[str]) -> Observed:
        net = op.network.net
        if op.kind in ("block", "unblock"):
            exact, covering = False, None
            for elem in _elements(answers[0]):
                found = _as_network(elem, net.version)
                for candidate in found if isinstance(found, list) else [found]:
                    if candidate is None or candidate.version != net.version:
                        continue
                    if candidate == net:
                        exact = True
                    elif net.subnet_of(candidate):
                        covering = str(candidate)
                    elif candidate.subnet_of(net) and op.kind == "unblock":
                        covering = covering or str(candidate)
            blocked = exact or covering is not None
            detail = {"exact": exact, "covered_by": covering}
            return Observed(in_force=blocked if op.kind == "block" else not blocked, detail=detail)
        present, existing = False, []
        for dst, route in _routes(answers[0], net.version):
            if dst != net:
                continue
            if route.get("type") == "blackhole":
                present = True
            else:
                existing.append(_route_text(dst, route))
        return Observed(in_force=present if op.kind == "null_route" else not present,
                        detail={"existing_routes": existing})

    def describe(self, op: Operation, observed: Observed | None = None) -> str:
        net = op.network.text
        return {
            "block": f"add {net} to set {TABLE} {_set(op)}: traffic from and to it is dropped (input, forward)",
            "unblock": f"remove {net} from set {TABLE} {_set(op)}: traffic from and to it passes again",
            "null_route": f"blackhole route for {op.network}: the firewall drops traffic routed to it",
            "remove_null_route": f"remove the blackhole route for {op.network}",
        }[op.kind]


def _routes(answer: str, version: int) -> list[tuple]:
    """(destination network, route) for each route of ``ip [-6] -j route show``."""
    import ipaddress

    start, end = answer.find("["), answer.rfind("]")
    if start < 0:
        return []
    try:
        routes = json.loads(answer[start:end + 1])
    except ValueError as exc:
        raise DriverError(f"ip route answered something that is not JSON: {answer[:200]!r}") from exc
    found = []
    for route in routes:
        dst = route.get("dst")
        if not dst:
            continue
        if dst == "default":
            dst = "::/0" if version == 6 else "0.0.0.0/0"
        found.append((ipaddress.ip_network(dst, strict=False), route))
    return found


def _route_text(dst, route: dict) -> str:
    """A route as ``ip route`` prints it, in short: for the plan and the refusal."""
    words = [] if route.get("type", "unicast") == "unicast" else [str(route["type"])]
    words.append(str(dst))
    hops = route.get("nexthops") or [route]
    for hop in hops:
        if hop.get("gateway"):
            words += ["via", str(hop["gateway"])]
        if hop.get("dev"):
            words += ["dev", str(hop["dev"])]
    if route.get("metric") is not None:
        words += ["metric", str(route["metric"])]
    return " ".join(words)[:200]
