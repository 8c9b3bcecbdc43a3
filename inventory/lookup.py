"""Address → agency / asset lookup, by longest prefix, and hostname or certificate name → asset.

Lookups run on every event, so they are dictionary probes: per prefix length present in the inventory, a dict from
the masked network address to the network's owner. An IPv4 lookup costs at most one probe per distinct prefix
length (a handful), whatever the inventory's size.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from inventory.model import Agency, Asset, InventoryDocument, ManagedDevice


class InventoryError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class NetworkOwner:
    agency: Agency
    cidr: str
    zone: str


_MISS = object()
_CACHE_LIMIT = 65_536


class _PrefixTable:
    def __init__(self) -> None:
        self._tables: dict[int, dict[int, dict[int, object]]] = {4: {}, 6: {}}
        self._lengths: dict[int, list[int]] = {4: [], 6: []}
        # Every event asks about the same few thousand addresses several times (sender, source, destination):
        # parsing the address is most of a lookup's cost, so answers are remembered (bounded; emptied when full).
        self._answers: dict[str, object] = {}

    def add(self, cidr: str, value: object) -> None:
        self._answers.clear()
        net = ipaddress.ip_network(cidr, strict=False)
        table = self._tables[net.version].setdefault(net.prefixlen, {})
        table[int(net.network_address)] = value
        self._lengths[net.version] = sorted(self._tables[net.version], reverse=True)

    def lookup(self, address: str) -> object | None:
        answer = self._answers.get(address, _MISS)
        if answer is _MISS:
            if len(self._answers) >= _CACHE_LIMIT:
                self._answers.clear()
            answer = self._answers[address] = self._lookup(address)
        return answer

    def _lookup(self, address: str) -> object | None:
        try:
            ip = ipaddress.ip_address(address)
        except (ValueError, TypeError):
            return None
        bits = 32 if ip.version == 4 else 128
        value = int(ip)
        tables = self._tables[ip.version]
        for length in self._lengths[ip.version]:
            masked = value >> (bits - length) << (bits - length) if length else 0
            hit = tables[length].get(masked)
            if hit is not None:
                return hit
        return None


class Inventory:
    def __init__(self, document: InventoryDocument, source: str = "(memory)"):
        self.document = document
        self.source = source
        self.agencies: dict[str, Agency] = {document.province.id: document.province}
        self.agencies.update({a.id: a for a in document.agencies})
        self.assets: dict[str, Asset] = {a.id: a for a in document.assets}
        self.devices: dict[str, ManagedDevice] = {d.id: d for d in document.devices}
        self._networks = _PrefixTable()
        for agency in self.agencies.values():
            for network in agency.networks:
                self._networks.add(network.cidr, NetworkOwner(agency, network.cidr, network.zone))
        self._asset_by_ip: dict[str, Asset] = {}
        self._asset_by_name: dict[str, Asset] = {}
        self._asset_by_certificate: dict[str, Asset] = {}
        for asset in document.assets:
            for address in asset.addresses:
                self._asset_by_ip[address] = asset
            for name in {asset.hostname.lower(), asset.id.lower(), asset.hostname.split(".")[0].lower()}:
                self._asset_by_name[name] = asset
            for name in asset.certificate_names:
                self._asset_by_certificate[name] = asset
        self._government = _PrefixTable()
        for cidr in document.government_networks:
            self._government.add(cidr, True)
        self._memo: dict[tuple, object] = {}

    def memo(self, key: tuple, compute):
        """An answer derived from this inventory alone, remembered (bounded; emptied when full). A reloaded
        inventory is a new object, so nothing outlives the data it came from."""
        answer = self._memo.get(key, _MISS)
        if answer is _MISS:
            if len(self._memo) >= _CACHE_LIMIT:
                self._memo.clear()
            answer = self._memo[key] = compute()
        return answer

    @classmethod
    def load(cls, path: str | Path) -> "Inventory":
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise InventoryError(f"cannot read inventory {path}: {exc.strerror or exc}") from exc
        except yaml.YAMLError as exc:
            raise InventoryError(f"inventory {path} is not valid YAML: {exc}") from exc
        try:
            return cls(InventoryDocument.model_validate(data), str(path))
        except ValueError as exc:
            raise InventoryError(f"inventory {path} is invalid: {exc}") from exc

    def network_of(self, address: str | None) -> NetworkOwner | None:
        return self._networks.lookup(address) if address else None  # type: ignore[return-value]

    def agency_of(self, address: str | None) -> Agency | None:
        owner = self.network_of(address)
        return owner.agency if owner else None

    def asset_by_ip(self, address: str | None) -> Asset | None:
        if not address:
            return None
        asset = self._asset_by_ip.get(address)
        if asset is None and ":" in address:  # normalise IPv6 spelling
            try:
                asset = self._asset_by_ip.get(str(ipaddress.ip_address(address)))
            except ValueError:
                return None
        return asset

    def asset_by_name(self, name: str | None) -> Asset | None:
        if not name:
            return None
        name = name.lower()
        return self._asset_by_name.get(name) or self._asset_by_name.get(name.split(".")[0])

    def asset_by_certificate(self, name: str | None) -> Asset | None:
        """The asset a verified client certificate names (exact, case-insensitive; no short-name guessing)."""
        return self._asset_by_certificate.get(name.lower()) if name else None

    def is_government(self, address: str | None) -> bool:
        return bool(address) and self._government.lookup(address) is not None  # type: ignore[arg-type]


@lru_cache(maxsize=8)
def load_inventory(path: str) -> Inventory:
    return Inventory.load(path)
