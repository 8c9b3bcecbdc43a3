"""What a report says, before it is rendered: numbers, rows and, for every figure, the evidence behind it.

Evidence is kept per figure row under a stable key (``alerts_by_severity:high``): the alert ids behind the number,
a sample of event ids, and the store query that reproduces an event count. Renderers link each row to its evidence.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

MAX_EVIDENCE_EVENTS = 25  # event ids kept per figure row (the query reproduces the rest)
MAX_EVIDENCE_ALERTS = 500


@dataclass
class Evidence:
    alerts: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    query: dict[str, Any] | None = None  # EventQuery fields that reproduce the count
    other: dict[str, list[str]] = field(default_factory=dict)  # ids in other collections (playbook_runs, ...)
    truncated: bool = False

    def add_alert(self, alert_id: str) -> None:
        if alert_id in self.alerts:
            return
        if len(self.alerts) < MAX_EVIDENCE_ALERTS:
            self.alerts.append(alert_id)
        else:
            self.truncated = True

    def add_event(self, event_id: str | None) -> None:
        if not event_id or event_id in self.events:
            return
        if len(self.events) < MAX_EVIDENCE_EVENTS:
            self.events.append(event_id)
        else:
            self.truncated = True

    def add_other(self, collection: str, doc_id: str) -> None:
        ids = self.other.setdefault(collection, [])
        if doc_id not in ids:
            ids.append(doc_id)

    @property
    def empty(self) -> bool:
        return not (self.alerts or self.events or self.other or self.query)


@dataclass
class SourceRow:
    asset: str
    hostname: str
    agency: str
    source: str
    expected: bool
    events: int = 0
    first_seen: str | None = None
    last_seen: str | None = None
    gaps: list[tuple[str, str, float]] = field(default_factory=list)  # (from, to, hours)
    status: str = "never"  # ok | gaps | silent (stopped before the end) | never | unexpected

    @property
    def key(self) -> str:
        return f"sources:{self.asset}/{self.source}"

    @property
    def longest_gap_hours(self) -> float:
        return max((g[2] for g in self.gaps), default=0.0)


@dataclass
class AssetRow:
    asset: str
    hostname: str
    agency: str
    criticality: str
    alerts: int = 0
    events: int = 0  # events in those alerts (sum of alert counts)
    by_severity: Counter = field(default_factory=Counter)
    rules: Counter = field(default_factory=Counter)

    @property
    def key(self) -> str:
        return f"top_assets:{self.asset}"


@dataclass
class AttackerRow:
    address: str
    zone: str  # outside | government | unknown
    alerts: int = 0
    events: int = 0
    agencies: set[str] = field(default_factory=set)
    first_seen: str | None = None
    last_seen: str | None = None
    blocked: bool = False

    @property
    def key(self) -> str:
        return f"top_attackers:{self.address}"


@dataclass
class HandledRow:
    """An incident, or an alert handled as one when no incident records exist."""

    id: str
    kind: str  # incident | alert
    title: str
    severity: str
    status: str
    opened: str
    acknowledged: str | None
    resolved: str | None
    alert_ids: list[str] = field(default_factory=list)

    @property
    def tta_hours(self) -> float | None:
        return _hours(self.opened, self.acknowledged)

    @property
    def ttr_hours(self) -> float | None:
        return _hours(self.opened, self.resolved)


def _hours(start: str, end: str | None) -> float | None:
    if not end:
        return None
    from soc import ecs

    return max((ecs.parse_time(end) - ecs.parse_time(start)).total_seconds() / 3600, 0.0)


@dataclass
class RuleRow:
    id: str
    title: str
    level: str
    kind: str  # detection | correlation
    tactics: list[str]
    techniques: list[str]
    logsource: str
    applicable: bool  # some source of the scope reports events the rule reads
    alerts: int = 0

    @property
    def key(self) -> str:
        return f"coverage:{self.id}"


@dataclass
class Recommendation:
    kind: str  # silent_source | source_gaps | never_reported | repeated_alerts | reoffending_block | ...
    severity: str  # high | medium | low
    params: dict[str, Any]
    evidence_key: str


@dataclass
class AgencyRow:
    """One line of the province roll-up."""

    agency: str
    name: str
    events: int = 0
    alerts: int = 0
    high_alerts: int = 0  # high + critical
    sources_expected: int = 0
    sources_reporting: int = 0
    silent_sources: int = 0

    @property
    def key(self) -> str:
        return f"by_agency:{self.agency}"


@dataclass
class ReportData:
    scope: str  # an agency id, or "province" for the roll-up
    rollup: bool
    name_vi: str
    name_en: str
    period: str
    period_start: str
    period_end: str
    bucket_labels: list[str]  # local dates of chart buckets
    generated: str
    events_total: int = 0
    alerts_total: int = 0
    events_by_severity: Counter = field(default_factory=Counter)
    events_by_source: Counter = field(default_factory=Counter)
    events_over_time: dict[str, list[int]] = field(default_factory=dict)  # log source -> per bucket
    alerts_by_severity: Counter = field(default_factory=Counter)
    alerts_by_rule: Counter = field(default_factory=Counter)  # rule title
    alerts_by_tactic: Counter = field(default_factory=Counter)
    alerts_over_time: dict[str, list[int]] = field(default_factory=dict)  # tactic -> per bucket
    sources: list[SourceRow] = field(default_factory=list)
    top_assets: list[AssetRow] = field(default_factory=list)
    top_attackers: list[AttackerRow] = field(default_factory=list)
    handled: list[HandledRow] = field(default_factory=list)
    handled_kind: str = "none"  # incidents | alerts | none
    playbook_runs: list[Any] = field(default_factory=list)  # reports.collections.PlaybookRun
    rules: list[RuleRow] = field(default_factory=list)
    indicators_received: list[Any] = field(default_factory=list)  # reports.collections.Indicator
    indicators_shared: list[Any] = field(default_factory=list)
    sightings: list[Any] = field(default_factory=list)
    recommendations: list[Recommendation] = field(default_factory=list)
    by_agency: list[AgencyRow] = field(default_factory=list)
    layers: dict[str, Any] | None = None  # the four layers and the KPI (reports/layers.py), reports/layers_section.py
    evidence: dict[str, Evidence] = field(default_factory=dict)

    def ev(self, key: str) -> Evidence:
        found = self.evidence.get(key)
        if found is None:
            found = self.evidence[key] = Evidence()
        return found

    def summary(self) -> dict[str, Any]:
        """The headline numbers, stored with the report record (the API lists them)."""
        expected = [s for s in self.sources if s.expected]
        return {
            "events": self.events_total,
            "alerts": self.alerts_total,
            "alerts_by_severity": dict(self.alerts_by_severity),
            "sources_expected": len(expected),
            "sources_reporting": sum(1 for s in expected if s.events),
            "incidents": len(self.handled),
            "playbook_runs": len(self.playbook_runs),
            "indicators_received": len(self.indicators_received),
            "indicators_shared": len(self.indicators_shared),
            "recommendations": len(self.recommendations),
        }

    def evidence_json(self) -> dict[str, Any]:
        return {key: asdict(ev) for key, ev in sorted(self.evidence.items()) if not ev.empty}
