"""A short-lived cache of alert-list answers: many consoles refreshing the same views (the newest alerts, an agency's
new alerts) within a second cost one store query instead of one each.

Keyed by the caller's scope (an agency key's agency, or every agency) and every query parameter, so one agency never
gets another's answer. An analyst's change through this API empties it at once (the next listing shows the change);
alerts the pipeline raises meanwhile show up within the time to live (``soc_api.alert_list_cache_seconds``,
default 1 s; 0 turns it off).
"""

from __future__ import annotations

import threading
import time

from prometheus_client import Counter

LOOKUPS = Counter("soc_api_alert_list_cache", "Alert-list answers served from the cache, or built", ["result"])


class ListCache:
    def __init__(self, ttl_seconds: float, max_entries: int = 2000):
        self.ttl = ttl_seconds
        self.max_entries = max_entries
        self._entries: dict[tuple, tuple[float, int, bytes]] = {}
        self._version = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple) -> bytes | None:
        if self.ttl <= 0:
            return None
        entry = self._entries.get(key)
        if entry is None or entry[1] != self._version or time.monotonic() - entry[0] > self.ttl:
            self.misses += 1
            LOOKUPS.labels(result="miss").inc()
            return None
        self.hits += 1
        LOOKUPS.labels(result="hit").inc()
        return entry[2]

    def put(self, key: tuple, body: bytes, version: int) -> None:
        if self.ttl <= 0:
            return
        with self._lock:
            if version != self._version:
                return  # a change happened while this answer was being built: do not keep it
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[key] = (time.monotonic(), version, body)

    @property
    def version(self) -> int:
        return self._version

    def invalidate(self) -> None:
        with self._lock:
            self._version += 1
            self._entries.clear()
