"""Inhibition rules, the Alertmanager way, kept as data: while an open alert matches a rule's source matchers, alerts
matching its target matchers that share the values of its ``equal`` labels are muted (status ``suppressed``).

The suite's default rule is the one the province asked for: an agency whose uplink is down mutes that agency's
"log source silent" alerts (the silence is the uplink's fault, not each source's). Rules are matched on the label set
of detections.silences.match_labels (the alert's labels plus rule.id, rule.name, alertname, severity,
organization.id), so the rules only have to be *named* ``soc_uplink_down`` (a probe of the agency's uplink) and
``soc_log_source_silent`` (collectors/monitoring.py's source health).
"""

from __future__ import annotations

import threading
import time
import uuid

from detections.silences import LabelMatcher, MatcherError, all_match, match_labels, parse_matchers, stored_matchers
from soc import ecs
from soc.storage.base import AlertQuery, DocumentQuery, Store
from soc.vocabulary import PRESENTED_OPEN_STATUSES

COLLECTION = "inhibit_rules"
MARKERS = "suite_markers"
SEEDED = "inhibit_rules_defaults"
SOURCE_SCAN_LIMIT = 500  # open source alerts looked at per rule and status: sources (uplinks down) are few

DEFAULT_RULES = [
    {
        "id": "uplink-down-mutes-silent-sources",
        "source_matchers": [{"name": "rule.name", "op": "=~", "value": "(soc_)?uplink_down"}],
        "target_matchers": [{"name": "rule.name", "op": "=~", "value": "(soc_)?log_source_silent"}],
        "equal": ["organization.id"],
        "comment": "An agency whose uplink is down mutes that agency's log-source-silent alerts.",
        "created_by": "default",
    }
]


def new_rule(source: list[dict], target: list[dict], equal: list[str], *, created_by: str, comment: str) -> dict:
    if not source or not target:
        raise MatcherError("an inhibition rule needs source and target matchers")
    return {
        "id": uuid.uuid4().hex,
        "source_matchers": [m.as_dict() for m in parse_matchers(source)],
        "target_matchers": [m.as_dict() for m in parse_matchers(target)],
        "equal": [str(e) for e in equal],
        "comment": comment,
        "created_by": created_by,
        "created_at": ecs.now_iso(),
    }


class _Rule:
    def __init__(self, doc: dict, source: list[LabelMatcher], target: list[LabelMatcher]):
        self.doc = doc
        self.source, self.target = source, target
        self.equal: list[str] = list(doc.get("equal") or [])

    @classmethod
    def of(cls, doc: dict) -> "_Rule | None":
        """The rule of a stored document; None (logged) if a matcher of it is refused now (it inhibits nothing)."""
        source = stored_matchers(doc, "source_matchers", "inhibition rule")
        target = stored_matchers(doc, "target_matchers", "inhibition rule") if source is not None else None
        return None if source is None or target is None else cls(doc, source, target)

    def source_query_hints(self, target_labels: dict[str, str]) -> dict:
        """Narrow the store query for source alerts by what the matchers and equal labels pin down exactly."""
        hints: dict = {}
        for m in self.source:
            if m.op == "=" and m.name == "rule.id":
                hints["rule_id"] = m.value
        if "organization.id" in self.equal and target_labels.get("organization.id"):
            hints["agency"] = target_labels["organization.id"]
        return hints


class Inhibitor:
    def __init__(self, store: Store, ttl_seconds: float = 2.0, seed_defaults: bool = True):
        self.store = store
        self.ttl = ttl_seconds
        self._rules: list[_Rule] = []
        self._loaded_at = 0.0
        self._lock = threading.Lock()
        self._seed = seed_defaults

    def invalidate(self) -> None:
        self._loaded_at = 0.0

    def rules(self) -> list[_Rule]:
        with self._lock:
            if time.monotonic() - self._loaded_at > self.ttl:
                if self._seed and self.store.get_document(MARKERS, SEEDED) is None:
                    # First start of this store: the default rule is written as data, so it can be read, changed or
                    # removed — and, once removed, it stays removed (the marker says the defaults were written).
                    self.store.put_documents(COLLECTION, [dict(r, created_at=ecs.now_iso()) for r in DEFAULT_RULES])
                    self.store.put_documents(MARKERS, [{"id": SEEDED, "at": ecs.now_iso()}])
                self._seed = False
                docs = self.store.find_documents(COLLECTION, DocumentQuery(limit=10_000))
                self._rules = [rule for rule in map(_Rule.of, docs) if rule is not None]
                self._loaded_at = time.monotonic()
            return self._rules

    def inhibited_by(self, alert: dict, labels: dict[str, str] | None = None) -> list[str]:
        """Ids of the open alerts that inhibit this one (empty: not inhibited)."""
        labels = labels if labels is not None else match_labels(alert)
        # Evidence the suite cannot vouch for never holds back an alert from trusted senders (a forged alert would
        # otherwise inhibit the real one, and with it the containment it would start).
        trusted_target = (alert.get("trust") or {}).get("trusted") is True
        found: list[str] = []
        for rule in self.rules():
            if not all_match(rule.target, labels):
                continue
            hints = rule.source_query_hints(labels)
            for status in PRESENTED_OPEN_STATUSES:
                for source in self.store.list_alerts(AlertQuery(status=status, limit=SOURCE_SCAN_LIMIT, **hints)):
                    if source["id"] == alert.get("id"):
                        continue
                    if trusted_target and (source.get("trust") or {}).get("trusted") is not True:
                        continue
                    source_labels = match_labels(source)
                    if all_match(rule.source, source_labels) and all(
                            source_labels.get(name, "") == labels.get(name, "") for name in rule.equal):
                        found.append(source["id"])
            if found:
                break
        return found
