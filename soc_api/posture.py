"""Posture: per agency and rolled up for the province — log sources expected by the inventory versus reporting, the
silent ones, events per second, open alerts by severity, mean time to acknowledge and to resolve, ATT&CK techniques
covered by loaded rules versus seen, playbook runs, rule health.

Computed through the tenancy-enforcing data layer, so an agency key gets its own agency and nothing else (no
province roll-up). The alert figures are the store's aggregations (soc/storage/aggregations.py), counted where the
alerts are: exact however many there are, without reading them into Python. Where a source last reported comes from
the source tracker (an engine matcher that sees every stored event, see :class:`SourceTracker`) when the suite runs
it, else from a small store query per expected source not heard from lately.
An event counts for the asset that really sent it (its certificate or socket address), or for the asset it is about
when an agency's API key vouched for it — never for a host name it merely claims — and as of when it arrived
(``event.created``), never its own, possibly future, ``@timestamp``.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from datetime import datetime, timedelta, timezone
from typing import Any

from collectors.sources.source_health import reporting_asset
from soc import ecs
from soc.storage.aggregations import AggregateQuery, Metric
from soc.storage.base import DocumentQuery, EventQuery, StoreError, agency_values, in_scope
from soc.vocabulary import PRESENTED_OPEN_STATUSES, SEVERITIES, known_severity
from soc_api.data import Data
from soc_api.posture_findings import add_findings
from soc_api.posture_layers import add_layers
from soc_api.settings import api_settings

SOURCE_STATUS = "source_status"
OPEN = tuple(s.value for s in PRESENTED_OPEN_STATUSES)  # suppressed alerts are never counted as open
# Times to acknowledge and to resolve: seconds from when the suite raised an alert (``created``, which it stamps on
# every alert it raises) to the first analyst action and to the closing, per group: n, mean and median.
TIMES = (Metric("tta", "percentiles", "created", until="acknowledged_at", percents=(50.0,)),
         Metric("ttr", "percentiles", "created", until="closed_at", percents=(50.0,)))


def arrived(doc: dict, now: str) -> str:
    """When an event reached the suite (``event.created``, else ``event.ingested``; the suite sets both, a body
    cannot), never later than now."""
    for name in ("event.created", "event.ingested"):
        value = ecs.get(doc, name)
        if isinstance(value, str) and value:
            return min(value, now)
    return now


class SourceTracker:
    """A detection-engine matcher that finds nothing: it notes, per asset, when it last sent an event (the asset that
    really sent it, as of its arrival: see :func:`reporting_asset`), and counts events per agency per second for the
    last minute. Written to the store every few seconds."""

    def __init__(self, store, write_every: float = 10.0):
        self.store = store
        self.write_every = write_every
        self.last_seen: dict[str, dict] = {}  # asset id -> {"id", "organization": {"id"}, "last_seen", "datasets"}
        self._dirty: set[str] = set()
        self._written = 0.0
        self._seconds: dict[str | None, deque] = defaultdict(deque)  # agency -> (second, count)
        self._lock = threading.Lock()

    def evaluate(self, events: list[dict]) -> list:
        now = int(time.time())
        with self._lock:
            for doc in events:
                agency = ecs.get(doc, "organization.id")
                buckets = self._seconds[agency]
                if buckets and buckets[-1][0] == now:
                    buckets[-1][1] += 1
                else:
                    buckets.append([now, 1])
                while buckets and buckets[0][0] < now - 60:
                    buckets.popleft()
                asset = reporting_asset(doc)
                if not asset:
                    continue
                ts = arrived(doc, ecs.now_iso())
                owner = ecs.get(doc, "soc.sender.agency") or agency  # the sender's agency (a relay's, say)
                entry = self.last_seen.setdefault(asset, {"id": asset, "organization": {"id": owner},
                                                          "last_seen": ts, "datasets": {}})
                if ts > entry["last_seen"]:
                    entry["last_seen"] = ts
                dataset = ecs.get(doc, "event.dataset") or "unknown"
                if ts > entry["datasets"].get(dataset, ""):
                    entry["datasets"][dataset] = ts
                self._dirty.add(asset)
            if self._dirty and time.monotonic() - self._written > self.write_every:
                docs = [dict(self.last_seen[a]) for a in self._dirty]
                try:
                    self.store.put_documents(SOURCE_STATUS, docs)
                    self._dirty.clear()
                    self._written = time.monotonic()
                except StoreError:
                    pass  # kept dirty: written with the next batch
        return []

    def events_per_second(self, agency: str | None) -> float:
        now = int(time.time())
        with self._lock:
            agencies = [agency] if agency is not None else list(self._seconds)
            total = sum(c for a in agencies for s, c in self._seconds.get(a, ()) if s >= now - 60)
        return round(total / 60.0, 3)


def _mean(parts: list[tuple[int, float | None]]) -> float | None:
    """The mean of several groups' durations from each group's (n, mean): their sum over their number."""
    n = sum(count for count, mean in parts if mean is not None)
    if not n:
        return None
    return round(sum(count * mean for count, mean in parts if mean is not None) / n, 1)


def _duration(row_values: dict, name: str) -> tuple[int, float | None]:
    figures = row_values.get(name) or {}
    return int(figures.get("n") or 0), figures.get("mean")


def covered_techniques(suite) -> set[str]:
    ruleset = suite.ruleset
    covered = set()
    for rule in list(ruleset.rules) + list(ruleset.correlations):
        covered.update(t.upper() for t in rule.meta.techniques)
    return covered


def log_sources(data: Data, agency_ids, scope: str | None, now: datetime) -> dict[str, dict]:
    """Per agency of ``agency_ids``: every (asset, log source) the inventory expects, those that reported within
    their interval, and the silent assets (the posture's and the console overview's figures, decided here once).
    ``scope``: the caller's agency (None: every agency), which the stored last-heard times are read for."""
    suite = data.suite
    cfg = api_settings(suite).posture
    now_iso = ecs.utc_iso(now)
    per = {a: {"expected": 0, "reporting": 0, "silent": []} for a in agency_ids}
    tracker: SourceTracker | None = suite.service("source_tracker")
    known: dict[str, dict] = {}
    terms = {"organization.id": agency_values(scope)} if scope else {}
    for doc in data.store.find_documents(SOURCE_STATUS, DocumentQuery(terms=terms, limit=10_000)):
        known[doc["id"]] = doc
    if tracker is not None:
        known.update({k: v for k, v in list(tracker.last_seen.items())
                      if in_scope(scope, v["organization"]["id"])})
    for asset in suite.inventory.assets.values():
        if asset.agency not in per or not asset.log_sources:
            continue
        entry = per[asset.agency]
        interval = min(cfg.source_intervals.get(s, cfg.default_source_interval_seconds) for s in asset.log_sources)
        since = ecs.utc_iso(now - timedelta(seconds=interval))
        last = (known.get(asset.id) or {}).get("last_seen")
        if not isinstance(last, str) or last > now_iso:
            last = None  # a time to come is no time heard (an older tracker wrote events' own timestamps)
        if not last or last < since:
            # Not seen by the tracker (another process, a restart): ask the store for events of the interval that
            # this asset sent, or that a key vouched for, and take when they arrived. At most 20 events per
            # question, two questions per asset not heard from lately: bounded, whatever the store holds.
            for query_terms, agency_id in (({"soc.sender.asset": asset.id}, None),
                                           ({"soc.asset.id": asset.id, "soc.sender.trusted": True}, asset.agency)):
                for doc in data.store.search_events(EventQuery(start=since, agency=agency_id, terms=query_terms,
                                                               limit=20)):
                    if reporting_asset(doc) == asset.id:
                        last = max(last or "", arrived(doc, now_iso))
        entry["expected"] += len(asset.log_sources)
        if last and last >= since:
            entry["reporting"] += len(asset.log_sources)
        else:
            entry["silent"].append({"asset": asset.id, "hostname": asset.hostname, "sources": asset.log_sources,
                                    "interval_seconds": interval, "last_seen": last})
    return per


def build_posture(data: Data, agency: str | None = None, month: str | None = None) -> dict[str, Any]:
    suite = data.suite
    cfg = api_settings(suite).posture
    scope = data.scope(agency)
    inventory = suite.inventory
    agencies = [a for a in inventory.agencies.values() if in_scope(scope, a.id)]
    now = datetime.now(timezone.utc)
    now_iso = ecs.utc_iso(now)
    window_start = ecs.utc_iso(now - timedelta(days=cfg.window_days))
    per: dict[str, dict] = {a.id: _empty(a) for a in agencies}
    tracker: SourceTracker | None = suite.service("source_tracker")

    # Log sources: every (asset, log source) the inventory expects, and whether it reported within its interval.
    for agency_id, sources in log_sources(data, list(per), scope, now).items():
        per[agency_id]["log_sources"] = sources

    # Alerts, counted by the store (Data.aggregate keeps a tenant to its own agency): open ones by severity (however
    # old; a severity the vocabulary does not know counts as the default one, as everywhere alerts are shown).
    opened = data.aggregate(AggregateQuery(collection="alerts", agency=scope, terms={"status": list(OPEN)},
                                           group_by=("organization.id", "severity")))
    for row in opened.rows:
        a = per.get(row.key[0])
        if a is not None:
            severity = known_severity(row.key[1]).value
            a["open_alerts"][severity] += row.count
    # Over the window (alerts last seen in it): how many, and their times to acknowledge and resolve (TIMES), as
    # each agency's (n, mean), which the province's mean is made of.
    window = data.aggregate(AggregateQuery(collection="alerts", agency=scope, start=window_start,
                                           time_field="last_seen", group_by=("organization.id",), metrics=TIMES))
    tta: dict[str, tuple[int, float | None]] = {}
    ttr: dict[str, tuple[int, float | None]] = {}
    for row in window.rows:
        a = per.get(row.key[0])
        if a is not None:
            a["alerts_in_window"] += row.count
            tta[row.key[0]], ttr[row.key[0]] = _duration(row.values, "tta"), _duration(row.values, "ttr")
    # The ATT&CK techniques of the window's alerts (a list field: one group per technique).
    techniques = data.aggregate(AggregateQuery(collection="alerts", agency=scope, start=window_start,
                                               time_field="last_seen",
                                               group_by=("organization.id", "threat.technique")))
    for row in techniques.rows:
        a = per.get(row.key[0])
        if a is not None and isinstance(row.key[1], str) and row.key[1]:
            a["_seen"].add(row.key[1].upper())

    # Playbook runs (the playbook runner's collection), by state.
    runs_cfg = (cfg.playbook_runs_collection, cfg.playbook_agency_field, cfg.playbook_state_field)
    cursor = None
    while True:
        page = data.find(runs_cfg[0], DocumentQuery(ranges={"created": (window_start, None)}, limit=1000),
                         agency=scope, agency_field=runs_cfg[1], cursor=cursor)
        for run in page.items:
            a = per.get(ecs.get(run, runs_cfg[1]))
            if a is not None:
                state = str(ecs.get(run, runs_cfg[2]) or "unknown")
                a["playbook_runs"][state] = a["playbook_runs"].get(state, 0) + 1
        if not page.next_cursor:
            break
        cursor = page.next_cursor

    covered = covered_techniques(suite)
    health = suite.ruleset
    rule_health = {"sigma_loaded": health.loaded, "sigma_failed": health.failed}
    yara = suite.service("yara")
    engine = yara.engine if yara is not None else None
    if engine is not None:
        rule_health.update(yara_files_loaded=engine.pack.loaded, yara_files_failed=engine.pack.failed)
    out_agencies = []
    for agency_id, a in per.items():
        seen = a.pop("_seen")
        a["events_per_second"] = tracker.events_per_second(agency_id) if tracker is not None else None
        a["events_total"] = data.store.count_events(agency_id)
        a["_tta"], a["_ttr"] = tta.get(agency_id, (0, None)), ttr.get(agency_id, (0, None))
        a["mean_time_to_acknowledge_seconds"] = _mean([a["_tta"]])
        a["mean_time_to_resolve_seconds"] = _mean([a["_ttr"]])
        a["attack"] = {"seen": sorted(seen), "seen_not_covered": sorted(seen - covered)}
        out_agencies.append(a)
    document: dict[str, Any] = {
        "generated": now_iso,
        "window": {"start": window_start, "end": now_iso, "days": cfg.window_days},
        "scope": scope if isinstance(scope, str) else (data.principal.agency if scope else "province"),
        "attack_covered": sorted(covered),
        "rule_health": rule_health,
        "agencies": out_agencies,
    }
    if scope is None:
        document["province"] = _rollup(inventory.document.province.id, out_agencies, tracker)
    for a in out_agencies:
        a.pop("_tta")
        a.pop("_ttr")
    add_layers(data, document, now, month, log_sources)  # the four layers and the KPI (docs/four-layers.md)
    add_findings(data, document, now)  # open findings by severity and past due, per agency (docs/assessment.md)
    return document


def _empty(agency) -> dict:
    return {"id": agency.id, "name": agency.name_en, "name_vi": agency.name_vi, "kind": agency.kind.value,
            "log_sources": {"expected": 0, "reporting": 0, "silent": []},
            "open_alerts": {s.value: 0 for s in SEVERITIES}, "alerts_in_window": 0, "playbook_runs": {},
            "_seen": set()}


def _rollup(province_id: str, agencies: list[dict], tracker) -> dict:
    open_alerts = {s.value: sum(a["open_alerts"].get(s, 0) for a in agencies) for s in SEVERITIES}
    runs: dict[str, int] = defaultdict(int)
    for a in agencies:
        for state, n in a["playbook_runs"].items():
            runs[state] += n
    seen = sorted({t for a in agencies for t in a["attack"]["seen"]})
    return {
        "id": province_id,
        "agencies": len(agencies),
        "log_sources": {"expected": sum(a["log_sources"]["expected"] for a in agencies),
                        "reporting": sum(a["log_sources"]["reporting"] for a in agencies),
                        "silent": sum(len(a["log_sources"]["silent"]) for a in agencies)},
        "events_per_second": tracker.events_per_second(None) if tracker is not None else None,
        "events_total": sum(a["events_total"] for a in agencies),
        "open_alerts": open_alerts,
        "alerts_in_window": sum(a["alerts_in_window"] for a in agencies),
        "mean_time_to_acknowledge_seconds": _mean([a["_tta"] for a in agencies]),
        "mean_time_to_resolve_seconds": _mean([a["_ttr"] for a in agencies]),
        "attack_seen": seen,
        "playbook_runs": dict(runs),
    }
