"""Alerts, the Alertmanager way: an alert is a set of labels plus a fingerprint of them.

A detection whose fingerprint matches an open alert last seen within the deduplication window updates that alert
(count, last seen, evidence) instead of raising a new one. Open alerts are cached by fingerprint; on a cache miss
the store is asked, so deduplication survives a restart.

Grouping, silences and inhibition are data, as in Alertmanager: each alert carries its ``group`` (the values of the
configured group-by labels, so related alerts can be shown together), and an alert that a silence
(detections/silences.py) or an inhibition rule (detections/inhibition.py) matches is stored with status
``suppressed`` and ``suppressed_by`` instead of being presented as new.

Analysts change alerts through :meth:`AlertManager.edit`, under the same lock the pipeline takes, so a repeat arriving
while an analyst closes the alert neither undoes the close nor gets lost.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import threading
import time
import uuid
from collections import OrderedDict
from datetime import timedelta
from typing import Any, Callable, Iterable, TypeVar

from detections.engine import Detection
from detections.inhibition import Inhibitor
from detections.silences import Silences, match_labels
from soc import ecs, metrics
from soc.storage.base import AlertQuery, DocumentQuery, Store, StoreError
from soc.vocabulary import OPEN_STATUSES, AlertStatus, known_severity

log = logging.getLogger(__name__)
T = TypeVar("T")
DEFAULT_GROUP_BY = ("organization.id", "rule.id")
UNTRUSTED_LABEL = "soc.evidence"
RULE_STATS = "rule_stats"  # document collection: when each rule last fired
_ENTITY_FIELDS = {
    "ip": ("source.ip", "destination.ip"),
    "user": ("user.name", "user.target.name"),
    "host": ("host.name",),
    "hash": ("file.hash.md5", "file.hash.sha1", "file.hash.sha256", "process.hash.sha256"),
}
# For a single-event rule the "group" is what the event is about.
_SINGLE_EVENT_LABELS = ("host.name", "source.ip", "user.name", "destination.ip")


def fingerprint(labels: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(labels, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _entities(events: Iterable[dict]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {k: [] for k in _ENTITY_FIELDS}
    for doc in events:
        for kind, fields in _ENTITY_FIELDS.items():
            for name in fields:
                value = ecs.get(doc, name)
                for v in value if isinstance(value, list) else [value]:
                    if v not in (None, "") and str(v) not in found[kind]:
                        found[kind].append(str(v))
    return {k: v for k, v in found.items() if v}


def labels_of(detection: Detection) -> dict[str, Any]:
    labels: dict[str, Any] = {"rule.id": detection.meta.id, "organization.id": detection.agency}
    if detection.kind == "rule":
        doc = detection.events[0]
        for name in _SINGLE_EVENT_LABELS:
            value = ecs.get(doc, name)
            if value not in (None, "", []):
                labels[name] = value[0] if isinstance(value, list) else value
    else:
        labels.update({k: v for k, v in detection.labels.items()})
    if detection.untrusted:
        # Evidence the suite cannot vouch for makes an alert of its own: forged lines must not be able to absorb
        # (and so hold back) the detections that trusted senders later make of the same thing.
        labels[UNTRUSTED_LABEL] = "untrusted"
    return labels


def _summary(detection: Detection, count: int, entities: dict[str, list[str]]) -> str:
    about = ", ".join(f"{k}={v}" for k, v in detection.labels.items()) if detection.labels else ""
    hosts = entities.get("host", [])
    parts = [detection.meta.title]
    if about:
        parts.append(f"({about})")
    if hosts:
        parts.append(f"on {', '.join(hosts[:3])}")
    parts.append(f"- {count} event{'s' if count != 1 else ''}")
    return " ".join(parts)


def group_of(labels: dict[str, Any], group_by: Iterable[str]) -> dict[str, Any]:
    chosen = {name: labels.get(name) for name in group_by}
    return {"key": fingerprint(chosen)[:16], "labels": chosen}


class AlertManager:
    def __init__(self, store: Store, *, dedup_window_seconds: int = 3600, max_evidence: int = 200,
                 cache_size: int = 10_000, group_by: Iterable[str] = DEFAULT_GROUP_BY,
                 silences: Silences | None = None, inhibitor: Inhibitor | None = None,
                 stats_interval_seconds: float = 5.0):
        self.store = store
        self.window = timedelta(seconds=dedup_window_seconds)
        self.max_evidence = max_evidence
        self._open: OrderedDict[str, dict] = OrderedDict()
        self._cache_size = cache_size
        self.group_by = tuple(group_by)
        self.silences = silences or Silences(store)
        self.inhibitor = inhibitor or Inhibitor(store)
        self.lock = threading.RLock()
        self.rule_stats: dict[str, dict] = {}  # rule id -> {"last_fired", "alerts", "detections"}
        self._stats_dirty: set[str] = set()
        self._stats_written = 0.0
        self._stats_interval = stats_interval_seconds

    def _find_open(self, fp: str) -> dict | None:
        alert = self._open.get(fp)
        if alert is None:
            for candidate in self.store.list_alerts(AlertQuery(fingerprint=fp, limit=5)):
                if candidate["status"] in OPEN_STATUSES:
                    alert = candidate
                    break
        return alert

    def _remember(self, alert: dict) -> None:
        self._open[alert["fingerprint"]] = alert
        self._open.move_to_end(alert["fingerprint"])
        while len(self._open) > self._cache_size:
            self._open.popitem(last=False)

    def handle(self, detections: Iterable[Detection]) -> list[dict]:
        """Fold detections into alerts, write the changed alerts, and return those presented (not suppressed)."""
        with self.lock:
            return self._handle(detections)

    def _handle(self, detections: Iterable[Detection]) -> list[dict]:
        changed: dict[str, dict] = {}
        for detection in detections:
            labels = labels_of(detection)
            fp = fingerprint(labels)
            alert = self._find_open(fp)
            if alert is not None and (
                ecs.parse_time(detection.first_seen) - ecs.parse_time(alert["last_seen"]) > self.window
                or alert["status"] not in OPEN_STATUSES
            ):
                alert = None  # too old to be the same incident: raise a new alert
            if alert is None:
                alert = self._new_alert(detection, labels, fp)
                metrics.ALERTS_RAISED.labels(rule=detection.meta.id, severity=alert["severity"]).inc()
            else:
                self._update(alert, detection)
                metrics.ALERTS_UPDATED.labels(rule=detection.meta.id).inc()
            self._suppress_or_present(alert)
            self._count(detection, alert)
            self._remember(alert)
            changed[alert["id"]] = alert
        if changed:
            self.store.upsert_alerts(list(changed.values()))
            self._write_stats()
        return [a for a in changed.values() if a["status"] != AlertStatus.suppressed]

    def _suppress_or_present(self, alert: dict) -> None:
        """Silences and inhibition decide only between "new" and "suppressed": an alert an analyst has taken up
        stays where the analyst put it."""
        if alert["status"] not in (AlertStatus.new, AlertStatus.suppressed):
            return
        labels = match_labels(alert)
        silenced = self.silences.matching(alert, labels)
        inhibited = [] if silenced else self.inhibitor.inhibited_by(alert, labels)
        before = alert["status"]
        if silenced or inhibited:
            alert["status"] = AlertStatus.suppressed.value
            alert["suppressed_by"] = {"silences": silenced, "inhibited_by": inhibited}
        else:
            alert["status"] = AlertStatus.new.value
            alert.pop("suppressed_by", None)
        if alert["status"] != before:
            muted = alert["status"] == AlertStatus.suppressed
            alert["history"].append({"at": ecs.now_iso(), "by": "detections",
                                     "action": "suppressed" if muted else "unsuppressed",
                                     **({"details": alert["suppressed_by"]} if alert.get("suppressed_by") else {})})

    def _count(self, detection: Detection, alert: dict) -> None:
        stats = self.rule_stats.setdefault(detection.meta.id, {"id": detection.meta.id, "detections": 0,
                                                               "last_fired": None})
        stats["detections"] += 1
        stats["title"] = detection.meta.title
        if stats["last_fired"] is None or detection.last_seen > stats["last_fired"]:
            stats["last_fired"] = detection.last_seen
        self._stats_dirty.add(detection.meta.id)

    def _write_stats(self, force: bool = False) -> None:
        # Rule health shows "last fired"; written at most every few seconds, it costs nothing per batch.
        if not self._stats_dirty or (not force and time.monotonic() - self._stats_written < self._stats_interval):
            return
        docs = [dict(self.rule_stats[r]) for r in self._stats_dirty]
        try:
            self.store.put_documents(RULE_STATS, docs)
        except StoreError as exc:
            log.warning("rule statistics not written (kept for the next try): %s", exc)
            return
        self._stats_dirty.clear()
        self._stats_written = time.monotonic()

    def flush_stats(self) -> None:
        with self.lock:
            self._write_stats(force=True)

    def last_fired(self) -> dict[str, str]:
        """Rule id -> when it last fired: what this process saw, over what the store kept from before."""
        found = {d["id"]: d.get("last_fired") for d in
                 self.store.find_documents(RULE_STATS, DocumentQuery(limit=10_000))}
        for rule_id, stats in self.rule_stats.items():
            if stats["last_fired"] and (found.get(rule_id) or "") < stats["last_fired"]:
                found[rule_id] = stats["last_fired"]
        return {k: v for k, v in found.items() if v}

    # --- analysts' changes -------------------------------------------------------------------------------------
    def edit(self, alert_id: str, change: Callable[[dict], T]) -> tuple[dict, T] | None:
        """Apply ``change`` to the current version of an alert and store it; None if there is no such alert.

        The change works on a copy: if it raises (a transition that is not allowed), nothing is written.
        """
        with self.lock:
            stored = self.store.get_alert(alert_id)
            if stored is None:
                return None
            cached = self._open.get(stored["fingerprint"])
            current = cached if cached is not None and cached["id"] == alert_id else stored
            alert = copy.deepcopy(current)
            result = change(alert)
            self.store.upsert_alerts([alert])
            if alert["status"] in OPEN_STATUSES:
                if cached is not None and cached["id"] == alert_id or cached is None:
                    self._remember(alert)
            elif cached is not None and cached["id"] == alert_id:
                del self._open[alert["fingerprint"]]
            return alert, result

    def _new_alert(self, detection: Detection, labels: dict[str, Any], fp: str) -> dict:
        meta = detection.meta
        entities = _entities(detection.events)
        first = detection.events[0]
        alert = {
            "id": uuid.uuid4().hex,
            "fingerprint": fp,
            "@timestamp": detection.first_seen,
            "labels": labels,
            "rule": {"id": meta.id, "name": meta.name or meta.title, "title": meta.title, "type": detection.kind,
                     "description": meta.description, "tags": meta.tags, "path": meta.path},
            "severity": known_severity(meta.level).value,
            "threat": {"tactic": meta.tactics, "technique": meta.techniques},
            "status": AlertStatus.new.value,
            "group": group_of(labels, self.group_by),
            "organization": {"id": detection.agency, "name": ecs.get(first, "organization.name")},
            "entities": entities,
            "count": detection.count,
            "first_seen": detection.first_seen,
            "last_seen": detection.last_seen,
            "evidence": [ecs.get(e, "event.id") for e in detection.events][: self.max_evidence],
            # Whether the evidence may start containment without a person: see inventory/enrich.py (sender trust).
            "trust": {"untrusted_events": detection.untrusted, "trusted": detection.untrusted == 0},
            "created": ecs.now_iso(),
            "updated": ecs.now_iso(),
            "history": [{"at": ecs.now_iso(), "by": "detections", "action": "raised"}],
        }
        alert["summary"] = _summary(detection, alert["count"], entities)
        return alert

    def _update(self, alert: dict, detection: Detection) -> None:
        alert["count"] += detection.count
        trust = alert.setdefault("trust", {"untrusted_events": 0, "trusted": False})  # older alerts: unknown
        trust["untrusted_events"] = int(trust.get("untrusted_events") or 0) + detection.untrusted
        trust["trusted"] = bool(trust.get("trusted")) and trust["untrusted_events"] == 0
        alert["last_seen"] = max(alert["last_seen"], detection.last_seen)
        alert["first_seen"] = min(alert["first_seen"], detection.first_seen)
        evidence = alert["evidence"]
        for e in detection.events:
            eid = ecs.get(e, "event.id")
            if len(evidence) >= self.max_evidence:
                alert["evidence_truncated"] = True
                break
            if eid not in evidence:
                evidence.append(eid)
        merged = _entities(detection.events)
        for kind, values in merged.items():
            have = alert["entities"].setdefault(kind, [])
            have.extend(v for v in values if v not in have)
        alert["updated"] = ecs.now_iso()
        alert["summary"] = _summary(detection, alert["count"], alert["entities"])
