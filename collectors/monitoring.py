"""Monitoring of the infrastructure and of the suite itself, as a suite extension (``extensions:
[collectors.monitoring]``):

* probes of inventory assets on a schedule (collectors/sources/probes.py), stored as ECS events and exported as
  Prometheus metrics; off unless ``monitoring.probes.enabled`` is true;
* log-source health (collectors/sources/source_health.py): every batch the pipeline stores is observed, the sources
  the inventory expects are checked on a timer, and a source that falls silent, never reports or drops sharply raises
  an alert (rule ``soc_log_source_silent`` / ``soc_log_source_dropped``) through the AlertManager, which is closed
  again when the source comes back;
* the suite's own health as gauges: collector rates, queue depth, dead letters, rule evaluation latency, store
  (cluster) health, playbook failures.

Everything lands in the default Prometheus registry, which the API serves at /metrics.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from prometheus_client import REGISTRY, Gauge

from soc import metrics as soc_metrics

from collectors.monitoring_config import (MonitoringConfig, ProbesConfig, SelfMonitorConfig,  # noqa: F401
                                          SourceHealthConfig, monitoring_config)
from collectors.sources import probes
from collectors.sources.source_health import HealthOptions, SourceHealth, Transition
from soc import ecs
from soc.storage.base import DocumentQuery, StoreError

log = logging.getLogger(__name__)


# --- the suite's own health --------------------------------------------------------------------------------------
STORE_UP = Gauge("soc_store_up", "1 when the store answers its health check")
STORE_STATUS = Gauge("soc_store_cluster_status", "1 for the store's current cluster status (green, yellow, red)",
                     ["status"])
STORE_CHECK_SECONDS = Gauge("soc_store_health_check_seconds", "How long the last store health check took")
DEAD_LETTERS_STORED = Gauge("soc_dead_letters_stored", "Dead letters kept in the store")
SPOOL_DEPTH = soc_metrics.SPOOL_DEPTH  # kept current by the intake (collectors/intake.py)
COLLECTOR_RATE = Gauge("soc_collector_events_per_second", "Messages received per second since the previous refresh",
                       ["transport"])
RULE_EVAL_SECONDS = soc_metrics.RULE_EVAL_SECONDS  # observed by the detection stage (detections/stage.py)
PLAYBOOK_RUNS_RECENT = Gauge("soc_playbook_runs_recent", "Playbook runs started in the recent window, by status",
                             ["status"])
PLAYBOOK_FAILURES_RECENT = Gauge("soc_playbook_failures_recent", "Playbook runs that failed in the recent window")
MONITOR_REFRESH = Gauge("soc_monitor_last_refresh_timestamp_seconds", "When the self-monitoring gauges were last "
                        "refreshed (Unix time)")
SOURCE_HEALTH_CHECK = Gauge("soc_source_health_last_check_timestamp_seconds", "When log-source health was last "
                            "evaluated (Unix time)")
STORE_STATUSES = ("green", "yellow", "red")
FAILED_RUN = ("failed", "error", "rolled_back", "aborted")


def _received_totals() -> dict[str, float]:
    totals: dict[str, float] = {}
    for family in REGISTRY.collect():
        if family.name == "soc_events_received":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    totals[sample.labels.get("transport", "?")] = sample.value
    return totals


@dataclass
class SelfMonitor:
    suite: Any
    config: SelfMonitorConfig
    _last_totals: dict[str, float] | None = None
    _last_time: float | None = None

    def refresh(self) -> None:
        """Read the store's health, counts and the playbook records; set the gauges. Runs off the event loop."""
        store = self.suite.store
        started = time.perf_counter()
        try:
            health = store.health()
            status = str(health.get("status", "red"))
            # The search store answers "red" with the error when the cluster cannot be reached at all.
            STORE_UP.set(0 if health.get("error") else 1)
        except Exception as exc:  # an unreachable store is exactly what this gauge is for
            log.warning("store health check failed: %s", exc)
            status = "red"
            STORE_UP.set(0)
        STORE_CHECK_SECONDS.set(time.perf_counter() - started)
        for name in STORE_STATUSES:
            STORE_STATUS.labels(name).set(1 if name == status else 0)
        try:
            DEAD_LETTERS_STORED.set(store.count_dead_letters())
        except Exception as exc:
            log.warning("dead letter count failed: %s", exc)
        now = time.monotonic()
        totals = _received_totals()
        if self._last_totals is not None and now > (self._last_time or now):
            for transport, value in totals.items():
                delta = value - self._last_totals.get(transport, 0.0)
                COLLECTOR_RATE.labels(transport).set(max(delta, 0.0) / (now - self._last_time))
        self._last_totals, self._last_time = totals, now
        self._playbooks()
        MONITOR_REFRESH.set(time.time())

    def _playbooks(self) -> None:
        since = _iso(time.time() - self.config.playbook_window_seconds)
        counts: dict[str, int] = {}
        try:
            after = None
            for _ in range(20):  # at most 20 000 runs a window: a bound, not a real limit
                page = self.suite.store.find_documents("playbook_runs", DocumentQuery(
                    ranges={"started": (since, None)}, sort="started", limit=1000, after=after))
                for run in page:
                    status = str(run.get("status", "unknown")).lower()
                    counts[status] = counts.get(status, 0) + 1
                if len(page) < 1000:
                    break
                after = (page[-1].get("started"), page[-1]["id"])
        except StoreError as exc:
            log.debug("no playbook runs to count: %s", exc)
        for status, count in counts.items():
            PLAYBOOK_RUNS_RECENT.labels(status).set(count)
        PLAYBOOK_FAILURES_RECENT.set(sum(counts.get(s, 0) for s in FAILED_RUN))


def _iso(epoch: float) -> str:
    from datetime import datetime, timezone

    return ecs.utc_iso(datetime.fromtimestamp(epoch, timezone.utc))


# --- log-source health alerts ------------------------------------------------------------------------------------
SILENT_RULE = "soc_log_source_silent"
DROPPED_RULE = "soc_log_source_dropped"
ALERTING = {"silent": SILENT_RULE, "never": SILENT_RULE, "dropped": DROPPED_RULE}


def _rule_meta(rule: str):
    from detections.sigma.loader import RuleMeta

    if rule == SILENT_RULE:
        return RuleMeta(id=SILENT_RULE, name=SILENT_RULE, title="Log Source Silent", level="high",
                        tags=["attack.defense-evasion", "attack.t1562.002", "attack.t1562.006"],
                        description="A log source the inventory expects has stopped sending (or never sent) events: "
                                    "logging may have been disabled or the link to the collector cut.",
                        path="collectors/sources/source_health.py")
    return RuleMeta(id=DROPPED_RULE, name=DROPPED_RULE, title="Log Source Rate Dropped", level="medium",
                    tags=["attack.defense-evasion", "attack.t1562"],
                    description="A log source's event rate fell far below its own baseline.",
                    path="collectors/sources/source_health.py")


def health_event(transition: Transition, inventory) -> dict:
    """The evidence of a source-health alert: a note of the transition, stored as an ECS event."""
    state = transition.state
    at = _iso(transition.at)
    doc: dict = {"@timestamp": at}
    ecs.put(doc, "event.kind", "state")
    ecs.put(doc, "event.module", "soc")
    ecs.put(doc, "event.dataset", "soc.source_health")
    ecs.put(doc, "event.action", f"log_source_{transition.new}")
    ecs.put(doc, "organization.id", state.agency)
    agency = inventory.agencies.get(state.agency)
    if agency is not None:
        ecs.put(doc, "organization.name", agency.name_en)
    asset = inventory.assets.get(state.asset)
    ecs.put(doc, "host.name", asset.hostname if asset else state.asset)
    ecs.put(doc, "soc.asset.id", state.asset)
    ecs.put(doc, "soc.log_source", {"name": state.source, "status": transition.new, "previous": transition.old,
                                    "last_seen": _iso(state.last_seen) if state.last_seen else None,
                                    "rate": state.rate, "baseline": state.baseline})
    ecs.put(doc, "message", f"log source {state.source} of {state.asset} is {transition.new} (was {transition.old})")
    ecs.put(doc, "event.created", ecs.now_iso())
    ecs.put(doc, "ecs.version", ecs.ECS_VERSION)
    ecs.put(doc, "event.id", ecs.event_id("source_health", state.asset, state.source, transition.new, at))
    return doc


class SourceHealthAlerts:
    def __init__(self, suite, config: SourceHealthConfig):
        self.suite = suite
        self.config = config

    def handle(self, transitions: list[Transition]) -> list[dict]:
        from detections.alerts import fingerprint, labels_of
        from detections.engine import Detection

        raised: list[dict] = []
        detections, evidence = [], []
        for tr in transitions:
            state = tr.state
            labels = {"soc.asset.id": state.asset, "log_source": state.source}
            if tr.new in ALERTING and (tr.new != "never" or self.config.alert_never_reported):
                doc = health_event(tr, self.suite.inventory)
                evidence.append(doc)
                # The suite's own observation: trusted evidence (untrusted=0).
                detections.append(Detection(meta=_rule_meta(ALERTING[tr.new]), kind="source_health",
                                            agency=state.agency, labels=labels, events=[doc], count=1,
                                            first_seen=doc["@timestamp"], last_seen=doc["@timestamp"],
                                            untrusted=0))
            if tr.old in ALERTING and tr.new == "ok":
                for rule in {ALERTING[tr.old]}:
                    probe = Detection(meta=_rule_meta(rule), kind="source_health", agency=state.agency,
                                      labels=labels, events=[], count=0, first_seen="", last_seen="")
                    self._resolve(fingerprint(labels_of(probe)), state)
        if evidence:
            self.suite.store.write_events(evidence)
        if detections:
            raised = self.suite.alerts.raise_alerts(detections)  # stored, and every alert hook hears of them
        return raised

    def _resolve(self, fp: str, state) -> None:
        from soc.storage.base import AlertQuery

        for alert in self.suite.store.list_alerts(AlertQuery(fingerprint=fp, limit=5)):
            if alert.get("status") == "closed":
                continue

            def close(a: dict) -> None:
                now = ecs.now_iso()
                previous = a.get("status")
                a.update(status="closed", closed_at=now, closed_by="source_health", close_reason="other")
                a.setdefault("history", []).append({"at": now, "by": "source_health", "action": "status",
                                                    "from": previous, "to": "closed", "reason": "other",
                                                    "comment": f"{state.source} of {state.asset} is reporting again"})
                a["updated"] = now

            self.suite.alerts.edit(alert["id"], close)


# --- wiring -------------------------------------------------------------------------------------------------------

def build_source_health(suite, config: SourceHealthConfig) -> SourceHealth:
    options = HealthOptions(window_seconds=config.window_seconds,
                            baseline_halflife_seconds=config.baseline_halflife_seconds,
                            drop_ratio=config.drop_ratio, min_baseline_rate=config.min_baseline_per_minute / 60,
                            warmup_seconds=config.warmup_seconds, grace_seconds=config.grace_seconds,
                            silent_after=dict(config.silent_after_seconds),
                            bucket_seconds=min(60.0, config.check_interval_seconds))
    health = SourceHealth(suite.inventory, options)
    try:
        restored = health.restore(_all(suite.store, "source_health"))
        if restored:
            log.info("source health: restored %d log sources from the store", restored)
    except StoreError as exc:
        log.info("source health: nothing to restore (%s)", exc)
    return health


def _all(store, collection: str) -> list[dict]:
    out, after = [], None
    while True:
        page = store.find_documents(collection, DocumentQuery(limit=1000, after=after))
        out.extend(page)
        if len(page) < 1000:
            return out
        after = (page[-1]["id"], page[-1]["id"])


async def probe_loop(suite, config: ProbesConfig) -> None:
    loop = asyncio.get_running_loop()
    probed = None
    while True:
        started = time.monotonic()
        inventory = suite.inventory  # the current one: an edit or a reloaded file counts from the next round
        if inventory is not probed:
            probed, target_list = inventory, probes.targets(inventory, icmp=config.icmp)
            log.info("probes: %d checks of %d assets every %.0fs", len(target_list),
                     len({t.asset for t in target_list}), config.interval_seconds)
        results = await probes.run_probes(target_list, config.timeout_seconds, config.concurrency)
        if config.store_events and results:
            docs = [probes.to_event(r, suite.inventory) for r in results]
            try:
                await loop.run_in_executor(None, suite.store.write_events, docs)
            except StoreError as exc:
                log.warning("probe results could not be stored: %s", exc)
        await asyncio.sleep(max(config.interval_seconds - (time.monotonic() - started), 0.0))


async def source_health_loop(suite, health: SourceHealth, config: SourceHealthConfig) -> None:
    alerts = SourceHealthAlerts(suite, config)
    loop = asyncio.get_running_loop()
    persisted = 0.0
    while True:
        await asyncio.sleep(config.check_interval_seconds)
        transitions = health.evaluate()
        SOURCE_HEALTH_CHECK.set(time.time())
        try:
            if transitions:
                await loop.run_in_executor(None, alerts.handle, transitions)
            if transitions or time.monotonic() - persisted >= config.persist_interval_seconds:
                await loop.run_in_executor(None, suite.store.put_documents, "source_health", health.snapshot())
                persisted = time.monotonic()
        except StoreError as exc:
            log.warning("source health could not write to the store: %s", exc)


async def self_monitor_loop(monitor: SelfMonitor) -> None:
    loop = asyncio.get_running_loop()
    while True:
        await loop.run_in_executor(None, monitor.refresh)
        await asyncio.sleep(monitor.config.refresh_seconds)


def register(services, registry, config: MonitoringConfig | None = None) -> None:
    """Suite extension (soc/plugins.py): the self-monitor, log-source health (it sees every stored batch and the
    inventory as it changes) and probes, as configured."""
    config = config or monitoring_config(services.settings)
    if config.suite.enabled:
        monitor = SelfMonitor(services, config.suite)
        registry.provide("self_monitor", monitor)
        registry.run_in_background(lambda: self_monitor_loop(monitor))
    if config.source_health.enabled:
        health = build_source_health(services, config.source_health)
        services.inventory_holder.subscribe(health.use_inventory)
        registry.on_events(health.observe)
        registry.provide("source_health", health)
        registry.run_in_background(lambda: source_health_loop(services, health, config.source_health))
    if config.probes.enabled:
        registry.run_in_background(lambda: probe_loop(services, config.probes))
