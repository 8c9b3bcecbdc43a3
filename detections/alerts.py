"""Alerts, the Alertmanager way: an alert is a set of labels plus a fingerprint of them.

A detection whose fingerprint matches an open alert last seen within the deduplication window updates that alert
(count, last seen, evidence) instead of raising a new one. Open alerts are cached by fingerprint; on a cache miss
the store is asked, so deduplication survives a restart.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import OrderedDict
from datetime import timedelta
from typing import Any, Iterable

from detections.engine import Detection
from soc import ecs, metrics
from soc.storage.base import AlertQuery, Store

SEVERITY_ORDER = ("informational", "low", "medium", "high", "critical")
OPEN_STATUSES = ("new", "acknowledged", "in_progress")
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


class AlertManager:
    def __init__(self, store: Store, *, dedup_window_seconds: int = 3600, max_evidence: int = 200,
                 cache_size: int = 10_000):
        self.store = store
        self.window = timedelta(seconds=dedup_window_seconds)
        self.max_evidence = max_evidence
        self._open: OrderedDict[str, dict] = OrderedDict()
        self._cache_size = cache_size

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
        """Fold detections into alerts, write the changed alerts, and return them."""
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
            self._remember(alert)
            changed[alert["id"]] = alert
        if changed:
            self.store.upsert_alerts(list(changed.values()))
        return list(changed.values())

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
            "severity": meta.level if meta.level in SEVERITY_ORDER else "medium",
            "threat": {"tactic": meta.tactics, "technique": meta.techniques},
            "status": "new",
            "organization": {"id": detection.agency, "name": ecs.get(first, "organization.name")},
            "entities": entities,
            "count": detection.count,
            "first_seen": detection.first_seen,
            "last_seen": detection.last_seen,
            "evidence": [ecs.get(e, "event.id") for e in detection.events][: self.max_evidence],
            "created": ecs.now_iso(),
            "updated": ecs.now_iso(),
            "history": [{"at": ecs.now_iso(), "by": "detections", "action": "raised"}],
        }
        alert["summary"] = _summary(detection, alert["count"], entities)
        return alert

    def _update(self, alert: dict, detection: Detection) -> None:
        alert["count"] += detection.count
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
