"""What may be scanned: an address of an inventory asset, inside the configuration's allowed networks, of an allowed
agency. Anything else is refused with :class:`ScopeRefused` before a packet leaves, whoever asked (the schedule, the
API, the command line).

An address is parsed strictly (``ipaddress``; no scope id, no whitespace, no prefix) and only its canonical text is
ever handed to a tool, as one element of an argument list (never through a shell): a host name, an option-looking
value (``-oN /tmp/x``) or a network (``0.0.0.0/0``) is not an address and is refused.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from assessment.services import expected_ports
from assessment.settings import AssessmentSettings


class ScopeRefused(Exception):
    """The target is outside what the configuration allows; the message says which and why."""


@dataclass(frozen=True)
class Target:
    address: str  # canonical text of a validated IP address
    asset: str
    hostname: str
    agency: str  # organization.id, from the inventory (never from the scanned host)
    services: tuple[str, ...] = ()
    names: tuple[str, ...] = field(default_factory=tuple)  # names a certificate may carry: hostname, certificate names

    @property
    def expected(self) -> dict[int, str | None]:
        return expected_ports(list(self.services))


def strict_address(value: object) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An IP address written as exactly one, or ScopeRefused."""
    if not isinstance(value, str) or not value or len(value) > 45:
        raise ScopeRefused(f"{str(value)[:60]!r} is not an IP address")
    if value != value.strip() or any(c in value for c in "%/ \t\r\n") or value.startswith("-"):
        raise ScopeRefused(f"{value[:60]!r} is not an IP address (a host name, network, option or scope id is "
                           "never scanned)")
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        raise ScopeRefused(f"{value[:60]!r} is not an IP address (scans take inventory addresses only, never "
                           "host names)") from None
    if getattr(address, "ipv4_mapped", None) is not None:
        raise ScopeRefused(f"{value[:60]!r}: write the IPv4 address itself")
    if address.is_multicast or address.is_unspecified or (address.version == 4 and address == ipaddress.ip_address(
            "255.255.255.255")):
        raise ScopeRefused(f"{value[:60]!r} is not a host address")
    return address


def _allowed_network(settings: AssessmentSettings, address) -> bool:
    return any(address in ipaddress.ip_network(net) for net in settings.allowed_networks)


def check_allowed(settings: AssessmentSettings, address: str) -> str:
    """The last guard before a tool runs: the canonical address if it is inside the allowed networks."""
    parsed = strict_address(address)
    if not _allowed_network(settings, parsed):
        raise ScopeRefused(f"{parsed} is outside the networks assessment.allowed_networks allows")
    return str(parsed)


def _target(settings: AssessmentSettings, asset, address: str) -> Target:
    parsed = strict_address(address)
    if settings.allowed_agencies and asset.agency not in settings.allowed_agencies:
        raise ScopeRefused(f"asset {asset.id!r} belongs to agency {asset.agency!r}, which "
                           "assessment.allowed_agencies does not list")
    if not _allowed_network(settings, parsed):
        raise ScopeRefused(f"{parsed} (asset {asset.id!r}) is outside the networks assessment.allowed_networks "
                           "allows")
    names = tuple(dict.fromkeys([asset.hostname.lower(), *asset.certificate_names]))
    return Target(str(parsed), asset.id, asset.hostname, asset.agency, tuple(asset.services), names)


def resolve_targets(inventory, settings: AssessmentSettings, *, agency: str | None = None,
                    asset: str | None = None, address: str | None = None) -> list[Target]:
    """The targets a request names. A request naming one address or asset is refused if that one is not allowed; a
    request for an agency (or everything) takes the allowed addresses of its assets and leaves the rest out."""
    document = inventory.document
    assets = list(document.assets)
    if address is not None:
        parsed = str(strict_address(address))
        owners = [a for a in assets if parsed in a.addresses]
        if not owners:
            raise ScopeRefused(f"{parsed} is not an address of any inventory asset")
        if asset is not None and asset not in {a.id for a in owners}:
            raise ScopeRefused(f"{parsed} is not an address of asset {asset[:60]!r}")
        if agency is not None and agency not in {a.agency for a in owners}:
            raise ScopeRefused(f"{parsed} is not an address of agency {agency[:60]!r}")
        return [_target(settings, owners[0], parsed)]
    if asset is not None:
        found = next((a for a in assets if a.id == asset), None)
        if found is None or (agency is not None and found.agency != agency):
            raise ScopeRefused(f"{asset[:60]!r} is not an inventory asset" + (f" of agency {agency[:60]!r}"
                                                                                if agency else ""))
        if not found.addresses:
            raise ScopeRefused(f"asset {asset!r} has no address in the inventory")
        return [_target(settings, found, a) for a in found.addresses]
    known_agencies = {document.province.id} | {a.id for a in document.agencies}
    if agency is not None and agency not in known_agencies:
        raise ScopeRefused(f"{agency[:60]!r} is not an inventory agency")
    targets = []
    for item in assets:
        if agency is not None and item.agency != agency:
            continue
        for addr in item.addresses:
            try:
                targets.append(_target(settings, item, addr))
            except ScopeRefused:
                continue  # a sweep leaves out what it may not scan
    if agency is not None and not targets:
        raise ScopeRefused(f"agency {agency!r} has no asset address the configuration allows to scan")
    return targets
