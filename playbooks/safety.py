"""What no playbook can override: the never-block list and the widest range one block may cover.

The never-block list is the inventory's ``never_block`` (national centre, DNS, domain controllers, the SOC subnet,
...), the settings' extra ranges and the SOC's own addresses (configured, and every address of the host the suite
runs on), plus what the inventory already says must never be cut off: every address of every managed device (its
management address and every address of its asset, so an edge firewall's public address too), every core asset's
addresses, and every asset that serves DNS, directory (AD/LDAP/Kerberos), DHCP or a gateway. Loopback,
unspecified, multicast and link-local space is on it too. A target is refused if it overlaps any of these, so a
range that contains a DNS server is refused as surely as the server itself.

Every address is normalised before it is compared: an IPv4-mapped IPv6 address (``::ffff:10.0.1.10``) is the IPv4
host it stands for, and a scope id (``fe80::1%eth0``) or any text that is not an address is refused outright.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import shutil
import socket
import subprocess  # nosec B404 - one fixed argv (ip -j addr), no shell, no input from outside
from dataclasses import dataclass
from functools import lru_cache

from inventory.lookup import Inventory
from playbooks.settings import PlaybookSettings
from playbooks.values import IPNetwork, Network, ValueRefused, normalise_network

log = logging.getLogger(__name__)

ALWAYS = ("0.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "224.0.0.0/4", "255.255.255.255/32", "::/128", "::1/128",
          "fe80::/10", "ff00::/8")
_PROTECTED_SERVICES = {"dns", "ad", "ldap", "kerberos", "domain-controller", "dhcp", "gateway"}


class SafetyRefusal(Exception):
    """The change would touch something that must never be blocked, or is too wide."""


@dataclass(frozen=True)
class ProtectedRange:
    network: IPNetwork
    why: str


@lru_cache(maxsize=1)
def host_addresses() -> tuple[str, ...]:
    """Every address of the host the suite runs on (read once per process): the SOC must never block itself."""
    found: set[str] = set()
    ip = shutil.which("ip")
    if ip:
        try:
            out = subprocess.run([ip, "-j", "addr", "show"], capture_output=True, text=True, timeout=5,
                                 check=False).stdout  # nosec B603 - fixed argv, no shell
            for link in json.loads(out or "[]"):
                for info in link.get("addr_info", []):
                    if info.get("local"):
                        found.add(info["local"])
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            log.warning("never-block: could not list this host's addresses with ip: %s", exc)
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None):
            found.add(str(info[4][0]))
    except OSError:
        pass
    return tuple(sorted(found))


class Safety:
    def __init__(self, inventory: Inventory, settings: PlaybookSettings, *, own_addresses: tuple[str, ...] | None
                 = None):
        self.settings = settings
        ranges: list[ProtectedRange] = []

        def add(cidr: str, why: str) -> None:
            try:
                ranges.append(ProtectedRange(normalise_network(cidr.split("%")[0]), why))
            except ValueRefused:
                log.warning("never-block: %r (%s) is not an address or a range; ignored", cidr, why)

        for cidr in inventory.document.never_block:
            add(cidr, "inventory never_block")
        for cidr in settings.never_block:
            add(cidr, "playbook settings never_block")
        for cidr in settings.soc_addresses:
            add(cidr, "the SOC itself")
        for cidr in ALWAYS:
            add(cidr, "reserved address space")
        managed_assets = set()
        for device in inventory.devices.values():
            add(device.management_address, f"management address of managed device {device.id}")
            managed_assets.add(device.asset)
        for asset in inventory.assets.values():
            services = {s.lower() for s in asset.services}
            if asset.id in managed_assets:
                why = f"an address of managed device {asset.id}"
            elif asset.role == "core":
                why = f"core device {asset.id}"
            elif services & _PROTECTED_SERVICES:
                why = f"{asset.id} serves {', '.join(sorted(services & _PROTECTED_SERVICES))}"
            else:
                continue
            for address in asset.addresses:
                add(address, why)
        for address in host_addresses() if own_addresses is None else own_addresses:
            add(address, "an address of the host the SOC runs on")
        self.ranges = ranges

    def protected(self, network) -> ProtectedRange | None:
        """The protected range the network overlaps, if any. Text is normalised first (mapped IPv6 → IPv4)."""
        if not isinstance(network, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
            network = normalise_network(str(network))
        for entry in self.ranges:
            if entry.network.version == network.version and entry.network.overlaps(network):
                return entry
        return None

    def check_block(self, target) -> IPNetwork:
        """The network to block (normalised), or SafetyRefusal saying why not."""
        try:
            network = Network.parse(str(normalise_network(target, "block target"))).net  # also a device's value
        except ValueRefused as exc:
            raise SafetyRefusal(str(exc)) from exc
        widest = self.settings.max_block_prefix_v4 if network.version == 4 else self.settings.max_block_prefix_v6
        if network.prefixlen < widest:
            raise SafetyRefusal(f"{network} is wider than the largest range one block may cover (/{widest}, "
                                f"{2 ** (network.max_prefixlen - widest)} addresses)")
        hit = self.protected(network)
        if hit is not None:
            raise SafetyRefusal(f"{network} is on the never-block list ({hit.network}: {hit.why})")
        return network
