"""Senders the inventory does not know: accepted and tagged ``unknown_sender`` by enrichment, and listed here so an
analyst can see who they are (address, certificate name), how much they send and when they were last heard.

The table lives in memory and is bounded: past ``limit`` senders the least recently heard one is forgotten (and
counted), so a flood of spoofed UDP sources cannot grow it. It is a lead for the analyst, not a record — the events
themselves, with their tag, are in the store.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from datetime import datetime

from prometheus_client import Gauge

from soc import ecs

UNKNOWN_SENDERS = Gauge("soc_unknown_senders", "Senders not in the inventory heard since start (up to the table's "
                        "bound; see /api/v1/inventory/unknown-senders)")


class UnknownSenders:
    def __init__(self, limit: int = 1000):
        self.limit = limit
        self.forgotten = 0
        self._entries: OrderedDict[tuple[str, str, str], dict] = OrderedDict()
        self._lock = threading.Lock()  # the pipeline worker writes, API threads read

    def record(self, address: str, certificate: str, transport: str, when: datetime, count: int = 1,
               first: datetime | None = None) -> None:
        """``count`` messages heard from one sender, the first at ``first`` (default ``when``), the last at ``when``."""
        key = (address, certificate, transport)
        at = ecs.utc_iso(when)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                entry = self._entries[key] = {"address": address, "certificate": certificate,
                                              "transport": transport, "count": 0,
                                              "first_seen": ecs.utc_iso(first) if first else at}
                if len(self._entries) > self.limit:
                    self._entries.popitem(last=False)
                    self.forgotten += 1
            else:
                self._entries.move_to_end(key)
            entry["count"] += count
            entry["last_seen"] = at
            UNKNOWN_SENDERS.set(len(self._entries))

    def snapshot(self) -> list[dict]:
        """Most recently heard first."""
        with self._lock:
            return [dict(entry) for entry in reversed(self._entries.values())]
