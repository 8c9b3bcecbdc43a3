"""The in-memory index the matcher probes on every event: never a scan over the indicators.

* addresses: one dict of exact addresses, and per IP version a dict per prefix length present (masked network
  address -> indicators), so a lookup costs one probe plus one per distinct CIDR prefix length;
* domains: a dict, probed for the name and each parent (``a.b.example.com`` -> ``b.example.com`` -> ...), so an
  indicator for a domain also matches its subdomains;
* URLs and file hashes: dicts of normalised values.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from collections import defaultdict

from detections.indicators.model import HASH_LENGTHS, too_broad

log = logging.getLogger(__name__)
_MAX_LABELS = 127


class IndicatorIndex:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.docs: dict[str, dict] = {}
        self._exact_ip: dict[str, set[str]] = defaultdict(set)
        self._cidr: dict[int, dict[int, dict[int, set[str]]]] = {4: {}, 6: {}}
        self._lengths: dict[int, list[int]] = {4: [], 6: []}
        self._domain: dict[str, set[str]] = defaultdict(set)
        self._url: dict[str, set[str]] = defaultdict(set)
        self._hash: dict[str, dict[str, set[str]]] = {k: defaultdict(set) for k in HASH_LENGTHS}

    def __len__(self) -> int:
        return len(self.docs)

    # --- building ----------------------------------------------------------------------------------------------
    def _slots(self, kind: str, value: str):
        """The set an observable lives in (created on demand)."""
        if kind in ("ipv4", "ipv6"):
            if "/" not in value:
                return self._exact_ip[value]
            net = ipaddress.ip_network(value)
            table = self._cidr[net.version].setdefault(net.prefixlen, {})
            if net.prefixlen not in self._lengths[net.version]:
                self._lengths[net.version] = sorted(self._cidr[net.version], reverse=True)
            return table.setdefault(int(net.network_address), set())
        if kind == "domain":
            return self._domain[value]
        if kind == "url":
            return self._url[value]
        return self._hash[kind][value]

    def put(self, doc: dict) -> None:
        """Add or replace an indicator (a revoked or expired one is removed)."""
        with self._lock:
            self._remove(doc["id"])
            if doc.get("revoked") or doc.get("expired"):  # expired: kept in the store for history, never matched
                return
            self.docs[doc["id"]] = doc
            for o in doc["observables"]:
                broad = too_broad(o["type"], o["value"])  # stored before imports refused them: never matched
                if broad:
                    log.warning("indicator %s: not matched on %s %s: %s", doc["id"], o["type"], o["value"], broad)
                    continue
                self._slots(o["type"], o["value"]).add(doc["id"])

    def remove(self, indicator_id: str) -> None:
        with self._lock:
            self._remove(indicator_id)

    def _remove(self, indicator_id: str) -> None:
        old = self.docs.pop(indicator_id, None)
        if old is None:
            return
        for o in old["observables"]:
            if not too_broad(o["type"], o["value"]):
                self._slots(o["type"], o["value"]).discard(indicator_id)

    # --- lookups (the hot path) ----------------------------------------------------------------------------------
    def ip(self, address: str) -> set[str]:
        found = self._exact_ip.get(address)
        hits = set(found) if found else set()
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return hits
        if not found and ip.version == 6:
            canonical = self._exact_ip.get(str(ip))
            if canonical:
                hits |= canonical
        tables = self._cidr[ip.version]
        if tables:
            bits = 32 if ip.version == 4 else 128
            value = int(ip)
            for length in self._lengths[ip.version]:
                masked = value >> (bits - length) << (bits - length) if length else 0
                hit = tables[length].get(masked)
                if hit:
                    hits |= hit
        return hits

    def domain(self, name: str) -> set[str]:
        name = name.lower().rstrip(".")
        hits: set[str] = set()
        if not self._domain:
            return hits
        labels = name.split(".")
        for i in range(min(len(labels), _MAX_LABELS)):
            hit = self._domain.get(".".join(labels[i:]))
            if hit:
                hits |= hit
        return hits

    def url(self, normalised: str) -> set[str]:
        hit = self._url.get(normalised)
        return set(hit) if hit else set()

    def hash(self, algorithm: str, value: str) -> set[str]:
        table = self._hash.get(algorithm)
        hit = table.get(value.lower()) if table else None
        return set(hit) if hit else set()

    @property
    def has_urls(self) -> bool:
        return bool(self._url)

    @property
    def has_domains(self) -> bool:
        return bool(self._domain)
