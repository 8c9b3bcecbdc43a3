"""What no playbook can override: the never-block list and the widest range one block may cover.

The never-block list is the inventory's ``never_block`` (national centre, DNS, domain controllers, the SOC subnet,
...), the settings' extra ranges and the SOC's own addresses, plus what the inventory already says must never be
cut off: every managed device's management address, every core asset's addresses, every DNS server and domain
controller. Loopback, unspecified, multicast and link-local space is on it too. A target is refused if it overlaps
any of these, so a range that contains a DNS server is refused as surely as the server itself.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from inventory.lookup import Inventory
from playbooks.settings import PlaybookSettings

ALWAYS = ("0.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "224.0.0.0/4", "255.255.255.255/32", "::/128", "::1/128",
          "fe80::/10", "ff00::/8")
_PROTECTED_SERVICES = {"dns", "ad", "ldap", "kerberos", "domain-controller"}


class SafetyRefusal(Exception):
    """The change would touch something that must never be blocked, or is too wide."""


@dataclass(frozen=True)
class ProtectedRange:
    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    why: str


class Safety:
    def __init__(self, inventory: Inventory, settings: PlaybookSettings):
        self.settings = settings
        ranges: list[ProtectedRange] = []

        def add(cidr: str, why: str) -> None:
            ranges.append(ProtectedRange(ipaddress.ip_network(cidr, strict=False), why))

        for cidr in inventory.document.never_block:
            add(cidr, "inventory never_block")
        for cidr in settings.never_block:
            add(cidr, "playbook settings never_block")
        for cidr in settings.soc_addresses:
            add(cidr, "the SOC itself")
        for cidr in ALWAYS:
            add(cidr, "reserved address space")
        for device in inventory.devices.values():
            add(device.management_address, f"management address of managed device {device.id}")
        for asset in inventory.assets.values():
            services = {s.lower() for s in asset.services}
            if asset.role == "core":
                why = f"core device {asset.id}"
            elif services & _PROTECTED_SERVICES:
                why = f"{asset.id} serves {', '.join(sorted(services & _PROTECTED_SERVICES))}"
            else:
                continue
            for address in asset.addresses:
                add(address, why)
        self.ranges = ranges

    def protected(self, network) -> ProtectedRange | None:
        for entry in self.ranges:
            if entry.network.version == network.version and entry.network.overlaps(network):
                return entry
        return None

    def check_block(self, target: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        """The network to block, or SafetyRefusal saying why not."""
        try:
            network = ipaddress.ip_network(target, strict=False)
        except ValueError as exc:
            raise SafetyRefusal(f"{target!r} is not an address or a range") from exc
        widest = self.settings.max_block_prefix_v4 if network.version == 4 else self.settings.max_block_prefix_v6
        if network.prefixlen < widest:
            raise SafetyRefusal(f"{network} is wider than the largest range one block may cover (/{widest}, "
                                f"{2 ** (network.max_prefixlen - widest)} addresses)")
        hit = self.protected(network)
        if hit is not None:
            raise SafetyRefusal(f"{network} is on the never-block list ({hit.network}: {hit.why})")
        return network
