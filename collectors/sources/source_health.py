"""Log-source health: for every source the inventory expects (an asset and one of its ``log_sources``), when it was
last heard from, its event rate against its own baseline, and whether it has fallen silent or dropped sharply. This
is how a SOC notices a firewall whose logging was switched off or a link that was cut.

Events are observed as they arrive (arrival time, not the event's own timestamp, which may be old or skewed). The
rate is the count over the last ``window_seconds``; the baseline is an exponentially weighted average of that rate,
updated only while the source is healthy, so an outage does not teach the baseline that silence is normal.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Iterable

from prometheus_client import Gauge

from collectors.sources.log_source_table import silent_after, sources_of
from inventory.lookup import Inventory
from soc import ecs

LAST_SEEN = Gauge("soc_log_source_last_seen_timestamp_seconds", "When an expected log source last sent an event "
                  "(Unix time, arrival)", ["agency", "asset", "source"])
RATE = Gauge("soc_log_source_rate", "Events per second from a log source over the recent window",
             ["agency", "asset", "source"])
BASELINE = Gauge("soc_log_source_baseline_rate", "A log source's usual events per second (its own baseline)",
                 ["agency", "asset", "source"])
SILENT = Gauge("soc_log_source_silent", "1 when an expected log source is silent or has never reported",
               ["agency", "asset", "source"])
DROPPED = Gauge("soc_log_source_dropped", "1 when a log source's rate fell far below its baseline",
                ["agency", "asset", "source"])

STATUSES = ("pending", "ok", "silent", "never", "dropped")


def reporting_asset(doc: dict) -> str | None:
    """The inventory asset an event proves alive: its real sender (``soc.sender.asset``, the asset of the verified
    certificate or of the socket address), or, for an event an agency's API key vouched for, the asset it is about.
    A host name in the message proves nothing: anyone can send a UDP datagram naming any host."""
    sender = ecs.get(doc, "soc.sender.asset")
    if isinstance(sender, str) and sender:
        return sender
    asset = ecs.get(doc, "soc.asset.id") if ecs.get(doc, "soc.sender.trusted") is True else None
    return asset if isinstance(asset, str) and asset else None


def _iso(timestamp: float) -> str:
    return ecs.utc_iso(datetime.fromtimestamp(timestamp, timezone.utc))


@dataclass
class HealthOptions:
    window_seconds: float = 900.0  # the rate is measured over this window
    baseline_halflife_seconds: float = 6 * 3600.0
    drop_ratio: float = 0.2  # "dropped": rate below this fraction of the baseline...
    min_baseline_rate: float = 1 / 60  # ...for sources that usually send at least one event a minute
    warmup_seconds: float = 3600.0  # no drop verdict before the baseline has this much history
    grace_seconds: float = 3600.0  # a source never heard from is "never" after this long
    silent_after: dict[str, float] = field(default_factory=dict)  # per source name; else the table's default
    # The check runs this often; the window is kept in buckets of this size.
    bucket_seconds: float = 60.0


@dataclass
class SourceState:
    agency: str
    asset: str
    source: str
    status: str = "pending"
    last_seen: float | None = None  # Unix time
    baseline: float | None = None  # events per second
    baseline_since: float | None = None
    rate: float = 0.0
    changed: float | None = None  # when the status last changed
    buckets: deque = field(default_factory=deque)  # (bucket start, count)

    @property
    def key(self) -> str:
        return f"{self.asset}/{self.source}"

    def to_doc(self) -> dict:
        return {"id": f"{self.asset}__{self.source}", "organization": {"id": self.agency}, "asset": self.asset,
                "source": self.source, "status": self.status,
                "last_seen": _iso(self.last_seen) if self.last_seen else None,
                "baseline": self.baseline, "baseline_since": self.baseline_since, "rate": self.rate,
                "changed": _iso(self.changed) if self.changed else None}


@dataclass
class Transition:
    state: SourceState
    old: str
    new: str
    at: float


class SourceHealth:
    def __init__(self, inventory: Inventory, options: HealthOptions | None = None, now: float | None = None):
        self.options = options or HealthOptions()
        self.started = time.time() if now is None else now
        self.states: dict[tuple[str, str], SourceState] = {}
        self.use_inventory(inventory)

    def use_inventory(self, inventory: Inventory) -> None:
        """Track what this inventory expects: new sources start fresh, those it no longer lists are dropped, the
        others keep their history (an asset moved to another agency is reported as that agency's)."""
        states: dict[tuple[str, str], SourceState] = {}
        for asset in inventory.assets.values():
            for source in asset.log_sources:
                state = self.states.get((asset.id, source))
                if state is None:
                    state = SourceState(asset.agency, asset.id, source)
                else:
                    state.agency = asset.agency
                states[(asset.id, source)] = state
        self.states = states

    # --- observation (called from the pipeline worker for every batch) --------------------------------------
    def observe(self, events: Iterable[dict], now: float | None = None) -> int:
        now = time.time() if now is None else now
        bucket = now - now % self.options.bucket_seconds
        seen = 0
        for doc in events:
            asset = reporting_asset(doc)  # who really sent it, not whom it names
            if not asset:
                continue
            program = ecs.get(doc, "process.name")
            for source in sources_of(ecs.get(doc, "event.dataset"), program if isinstance(program, str) else None):
                state = self.states.get((asset, source))
                if state is None:
                    continue  # a source the inventory does not expect from this asset: not tracked
                state.last_seen = now
                if state.buckets and state.buckets[-1][0] == bucket:
                    state.buckets[-1][1] += 1
                else:
                    state.buckets.append([bucket, 1])
                seen += 1
        return seen

    # --- evaluation (called on a timer) ---------------------------------------------------------------------
    def silent_threshold(self, source: str) -> float:
        return self.options.silent_after.get(source, silent_after(source))

    def evaluate(self, now: float | None = None) -> list[Transition]:
        now = time.time() if now is None else now
        o = self.options
        alpha = 1 - math.exp(-math.log(2) * o.bucket_seconds / o.baseline_halflife_seconds)
        transitions = []
        for state in self.states.values():
            while state.buckets and state.buckets[0][0] < now - o.window_seconds:
                state.buckets.popleft()
            # The window is measured from the first sighting, so a new source is not "slow" in its first minutes.
            span = min(o.window_seconds, max(now - self.started, o.bucket_seconds))
            state.rate = sum(count for _, count in state.buckets) / span
            if state.last_seen is None:
                new = "never" if now - self.started >= o.grace_seconds else "pending"
            elif now - state.last_seen > self.silent_threshold(state.source):
                new = "silent"
            elif (state.baseline is not None and state.baseline >= o.min_baseline_rate
                  and state.baseline_since is not None and now - state.baseline_since >= o.warmup_seconds
                  and state.rate < o.drop_ratio * state.baseline):
                new = "dropped"
            else:
                new = "ok"
            if new == "ok" and state.last_seen is not None:
                if state.baseline is None:
                    state.baseline, state.baseline_since = state.rate, now
                else:
                    state.baseline += alpha * (state.rate - state.baseline)
            if new != state.status:
                transitions.append(Transition(state, state.status, new, now))
                state.status, state.changed = new, now
            self._export(state)
        return transitions

    def _export(self, state: SourceState) -> None:
        labels = (state.agency, state.asset, state.source)
        if state.last_seen is not None:
            LAST_SEEN.labels(*labels).set(state.last_seen)
        RATE.labels(*labels).set(state.rate)
        BASELINE.labels(*labels).set(state.baseline or 0.0)
        SILENT.labels(*labels).set(1 if state.status in ("silent", "never") else 0)
        DROPPED.labels(*labels).set(1 if state.status == "dropped" else 0)

    # --- persistence: a restart keeps last-seen times and baselines ------------------------------------------
    def snapshot(self) -> list[dict]:
        return [state.to_doc() for state in self.states.values()]

    def restore(self, docs: Iterable[dict]) -> int:
        restored = 0
        for doc in docs:
            state = self.states.get((doc.get("asset"), doc.get("source")))
            if state is None:
                continue
            if doc.get("last_seen"):
                state.last_seen = ecs.parse_time(doc["last_seen"]).timestamp()
            state.baseline = doc.get("baseline")
            state.baseline_since = doc.get("baseline_since")
            state.status = doc.get("status") if doc.get("status") in STATUSES else "pending"
            restored += 1
        return restored
