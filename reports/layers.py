"""The province's four layers of protection per agency, and the KPI L3.N2.PN1.01 "information-security assurance"
(docs/four-layers.md has the formula and a worked example).

1. on-site force: the agency names a security officer (inventory), and its alerts are acknowledged quickly (the
   median time from ``first_seen`` to ``acknowledged_at`` of the period's alerts, against a target);
2. professional monitoring: the expected log sources report, and the period's high and critical alerts are
   acknowledged within the target (their share, against a target share);
3. periodic inspection and assessment: the agency's assets were assessed within the required interval before the
   period's end, and no open finding is past its due date;
4. connection and sharing with the national system: indicators received from the national centre in the period
   (and the agency's sightings of them, which go back), the posture document accepted by the national centre in the
   period, and an antivirus console (the agency's own, else the data centre's) whose log sources report.

Pure functions over what the store holds, counted by the store's aggregations (``Store.aggregate``, or
``Data.aggregate``, which keeps a tenant to its own agency), never reading documents one by one. Which assets'
sources report is decided by the caller (posture's rule as of now, the report's per-source rows for a month) and
passed in. Each check gives a machine-readable code with its figures; the report and the console put them in words.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any, Callable

from inventory.model import AgencyKind, AssetKind
from soc import ecs
from soc.storage.aggregations import AggregateQuery, AggregateResult, Metric
from soc.storage.base import StoreError

LAYERS = ("on_site", "monitoring", "assessment", "national")
STATES = ("ok", "partial", "missing")
STATE_VALUE = {"ok": 1.0, "partial": 0.5, "missing": 0.0}
KPI_ID = "L3.N2.PN1.01"
SERIOUS = ("high", "critical")
ASSESSMENT_RUNS = "assessment_runs"
FINDINGS = "findings"
INDICATORS = "indicators"
SIGHTINGS = "sightings"
POSTURE_PUSHES = "posture_pushes"
RANK_POINTS = 200  # above this many acknowledged alerts in one agency, the share in time is read from 200 percentiles
SLACK_SECONDS = 0.5  # durations are computed in floating point: within half a second of the target is within it
# A source whose name says it is the national centre, when no names are configured (as reports/collections.py reads).
NATIONAL = re.compile(r"national|ncsc|trung.?t[aâ]m|quoc.?gia|quốc gia|nc3", re.IGNORECASE)

Aggregate = Callable[[AggregateQuery], AggregateResult]


@dataclass(frozen=True)
class Targets:
    ack_median_seconds: int = 24 * 3600  # layer 1: half of the period's alerts acknowledged within a working day
    in_time_seconds: int = 4 * 3600  # layer 2: a high or critical alert acknowledged within 4 hours ...
    in_time_share: float = 0.9  # ... for at least 90 % of them
    assessment_interval_days: int = 90  # layer 3: an assessment at least once a quarter
    national_sources: tuple[str, ...] = ()  # indicator sources that are the national centre (empty: by name)
    kpi_target_percent: float = 30.0  # the 2025 target of L3.N2.PN1.01
    weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)  # of the four layers, in LAYERS order


def _safe(aggregate: Aggregate, query: AggregateQuery) -> AggregateResult:
    """An aggregation; a collection nobody has written yet (or a refused query) counts as empty, a store that is
    down is an error."""
    try:
        return aggregate(query)
    except StoreError as exc:
        if exc.transient:
            raise
        return AggregateResult(total=0, rows=[])


def _state(checks: list[dict]) -> str:
    applicable = [c["ok"] for c in checks if c["ok"] is not None]
    if applicable and all(applicable):
        return "ok"
    return "partial" if any(applicable) else "missing"


def _days(later: str, earlier: str) -> float:
    return round((ecs.parse_time(later) - ecs.parse_time(earlier)).total_seconds() / 86400, 1)


def _is_national(source: str | None, targets: Targets) -> bool:
    if not isinstance(source, str) or not source:
        return False
    return source in targets.national_sources if targets.national_sources else bool(NATIONAL.search(source))


def _in_time(aggregate: Aggregate, query: AggregateQuery, acknowledged: dict[str, int],
             limit: float) -> dict[str, tuple[int, bool]]:
    """Per agency: how many of its acknowledged alerts (``acknowledged``: agency -> n) took at most ``limit``
    seconds, from the percentiles at each rank (exact: linear interpolation lands on the values themselves); above
    RANK_POINTS alerts from evenly spaced percentiles (approximate, flagged)."""
    by_n: dict[int, list[str]] = defaultdict(list)
    for agency, n in acknowledged.items():
        if n:
            by_n[n].append(agency)
    out: dict[str, tuple[int, bool]] = {}
    for n, agencies in sorted(by_n.items()):
        exact = n <= RANK_POINTS
        if n == 1:
            percents = (100.0,)
        elif exact:
            percents = (1e-9,) + tuple(100.0 * i / (n - 1) for i in range(1, n))
        else:
            percents = tuple(100.0 * i / RANK_POINTS for i in range(1, RANK_POINTS + 1))
        metric = Metric("rank", "percentiles", "first_seen", until="acknowledged_at", percents=percents)
        terms = dict(query.terms, **{"organization.id": agencies})
        result = _safe(aggregate, AggregateQuery(**{**_fields(query), "terms": terms, "metrics": (metric,)}))
        for row in result.rows:
            values = [v for v in ((row.values.get("rank") or {}).get("percentiles") or {}).values() if v is not None]
            within = sum(1 for v in values if v <= limit + SLACK_SECONDS)
            count = within if exact else math.floor(n * within / len(values)) if values else 0
            out[row.key[0]] = (count, exact)
    return out


def _fields(query: AggregateQuery) -> dict[str, Any]:
    return {k: getattr(query, k) for k in ("collection", "start", "end", "time_field", "agency", "terms",
                                           "group_by")}


def compute(inventory, agency_ids: list[str], start: str, end: str, *, aggregate: Aggregate,
            shared_aggregate: Aggregate, reporting: dict[str, bool], now: str, scope: str | None,
            targets: Targets | None = None) -> dict[str, Any]:
    """The four layers and the KPI of each agency of ``agency_ids`` over [start, end), and the province's KPI.

    ``aggregate``: for the agencies' own records (alerts, findings, sightings; Data.aggregate keeps a tenant to its
    own); ``shared_aggregate``: for the province's shared records (assessment runs, which list their agencies;
    national indicators; posture pushes), of which only what concerns ``agency_ids`` is kept. ``reporting``: asset
    id -> whether its expected log sources report. ``scope``: the agency the caller is limited to (None: all)."""
    targets = targets or Targets()
    wanted = set(agency_ids)
    officers = {a: inventory.agencies[a].security_officer for a in agency_ids if a in inventory.agencies}
    window = {"start": start, "end": end, "agency": scope}

    # Layer 1: each agency's alerts of the period, their median time to acknowledge.
    ack = Metric("tta", "percentiles", "first_seen", until="acknowledged_at", percents=(50.0,))
    all_alerts = _safe(aggregate, AggregateQuery(collection="alerts", time_field="first_seen", **window,
                                                 group_by=("organization.id",), metrics=(ack,)))
    median: dict[str, tuple[int, int, float | None]] = {}
    for row in all_alerts.rows:
        figures = row.values.get("tta") or {}
        median[row.key[0]] = (row.count, int(figures.get("n") or 0), (figures.get("percentiles") or {}).get(50.0))

    # Layer 2: high and critical alerts due for acknowledgement (raised at least the target before the end or now),
    # and how many of them were acknowledged within the target.
    due_end = min(end, ecs.utc_iso(ecs.parse_time(now) - timedelta(seconds=targets.in_time_seconds)))
    serious = AggregateQuery(collection="alerts", time_field="first_seen", start=start, end=due_end, agency=scope,
                             terms={"severity": list(SERIOUS)}, group_by=("organization.id",))
    due: dict[str, int] = {}
    acknowledged: dict[str, int] = {}
    if due_end > start:
        for row in _safe(aggregate, AggregateQuery(**{**_fields(serious), "metrics": (ack,)})).rows:
            due[row.key[0]] = row.count
            acknowledged[row.key[0]] = int((row.values.get("tta") or {}).get("n") or 0)
    in_time = _in_time(aggregate, serious, {a: n for a, n in acknowledged.items() if a in wanted},
                       targets.in_time_seconds)

    # Layer 3: the last assessment before the period's end (the runs, and the findings it stamped), open findings
    # past due at the end (open now; or fixed after the end, so open then).
    last_assessed: dict[str, str] = {}
    runs = _safe(shared_aggregate, AggregateQuery(collection=ASSESSMENT_RUNS, time_field="finished", end=end,
                                                  terms={"state": "done"}, group_by=("agencies",),
                                                  metrics=(Metric("last", "max", "finished"),)))
    seen = _safe(aggregate, AggregateQuery(collection=FINDINGS, time_field="last_seen", end=end, agency=scope,
                                           group_by=("organization.id",), metrics=(Metric("last", "max",
                                                                                          "last_seen"),)))
    for row in runs.rows + seen.rows:
        agency, last = row.key[0], row.values.get("last")
        if agency in wanted and isinstance(last, str) and last > last_assessed.get(agency, ""):
            last_assessed[agency] = last
    end_day = ecs.parse_time(end).date().isoformat()  # due dates are days: past due when before the end's day
    open_findings: dict[str, int] = defaultdict(int)
    past_due: dict[str, int] = defaultdict(int)
    for status, query in (("open", AggregateQuery(collection=FINDINGS, time_field="first_seen", end=end,
                                                  agency=scope, terms={"status": "open"},
                                                  group_by=("organization.id", "due"))),
                          ("fixed", AggregateQuery(collection=FINDINGS, time_field="fixed_at", start=end,
                                                   agency=scope, terms={"status": "fixed"},
                                                   group_by=("organization.id", "due")))):
        for row in _safe(aggregate, query).rows:
            agency, day = row.key
            if status == "fixed" and not (isinstance(day, str) and day < end_day):
                continue  # fixed after the end and not due by then: it did not count against the period
            open_findings[agency] += row.count
            if isinstance(day, str) and day[:10] < end_day:
                past_due[agency] += row.count

    # Layer 4: national indicators received in the period (shared by every agency), each agency's sightings of
    # them, the posture pushes the national centre accepted, the antivirus console.
    received = sum(row.count for row in _safe(shared_aggregate, AggregateQuery(
        collection=INDICATORS, time_field="created", start=start, end=end, group_by=("source",))).rows
        if _is_national(row.key[0], targets))
    shared: dict[str, int] = defaultdict(int)
    for row in _safe(aggregate, AggregateQuery(collection=SIGHTINGS, time_field="last_seen", **window,
                                               group_by=("organization.id", "source"))).rows:
        if _is_national(row.key[1], targets):
            shared[row.key[0]] += row.count
    pushes = _safe(shared_aggregate, AggregateQuery(collection=POSTURE_PUSHES, time_field="accepted_at",
                                                    start=start, end=end, terms={"status": "accepted"},
                                                    metrics=(Metric("last", "max", "accepted_at"),)))
    last_push = pushes.rows[0].values.get("last") if pushes.rows and pushes.total else None
    consoles = _consoles(inventory)

    agencies: dict[str, dict] = {}
    for agency_id in agency_ids:
        agency = inventory.agencies.get(agency_id)
        if agency is None:
            continue
        officer = officers.get(agency_id)
        alerts, n_ack, med = median.get(agency_id, (0, 0, None))
        on_site = [
            {"code": "security_officer_named", "ok": True, "name": officer.name} if officer else
            {"code": "security_officer_missing", "ok": False},
            {"code": "ack_none", "ok": None, "alerts": alerts} if not n_ack else
            {"code": "ack_median_within" if med <= targets.ack_median_seconds + SLACK_SECONDS else "ack_median_over",
             "ok": med <= targets.ack_median_seconds + SLACK_SECONDS, "alerts": alerts, "acknowledged": n_ack,
             "median_seconds": round(med, 1), "target_seconds": targets.ack_median_seconds},
        ]
        assets = [a for a in inventory.assets.values() if a.agency == agency_id and a.log_sources]
        expected = sum(len(a.log_sources) for a in assets)
        reporting_n = sum(len(a.log_sources) for a in assets if reporting.get(a.id))
        n_due = due.get(agency_id, 0)
        n_in_time, exact = in_time.get(agency_id, (0, True))
        share = n_in_time / n_due if n_due else None
        monitoring = [
            {"code": "sources_none_expected", "ok": False, "expected": 0, "reporting": 0} if not expected else
            {"code": "sources_reporting" if reporting_n == expected else "sources_silent",
             "ok": reporting_n == expected, "expected": expected, "reporting": reporting_n,
             "silent_assets": sorted(a.id for a in assets if not reporting.get(a.id))},
            {"code": "alerts_none_due", "ok": None, "due": 0} if not n_due else
            {"code": "alerts_in_time" if share >= targets.in_time_share else "alerts_late",
             "ok": share >= targets.in_time_share, "due": n_due, "in_time": n_in_time,
             "acknowledged": acknowledged.get(agency_id, 0), "share_percent": round(100 * share, 1),
             "target_percent": round(100 * targets.in_time_share, 1), "target_seconds": targets.in_time_seconds,
             "exact": exact},
        ]
        last = last_assessed.get(agency_id)
        age = _days(end, last) if last else None
        late = past_due.get(agency_id, 0)
        assessment = [
            {"code": "assessment_never", "ok": False, "interval_days": targets.assessment_interval_days}
            if not last else
            {"code": "assessment_recent" if age <= targets.assessment_interval_days else "assessment_old",
             "ok": age <= targets.assessment_interval_days, "last": last, "days_before_end": age,
             "interval_days": targets.assessment_interval_days},
            {"code": "findings_not_assessed", "ok": None} if not last else
            {"code": "findings_none_past_due" if not late else "findings_past_due", "ok": not late,
             "open": open_findings.get(agency_id, 0), "past_due": late},
        ]
        own = [a for a in consoles if a.agency == agency_id]
        serving = own or [a for a in consoles if inventory.agencies[a.agency].kind == AgencyKind.datacentre]
        national = [
            {"code": "indicators_received" if received else "indicators_none_received", "ok": bool(received),
             "received": received, "sightings_shared": shared.get(agency_id, 0)},
            {"code": "posture_accepted", "ok": True, "accepted": pushes.total, "last": last_push}
            if pushes.total else {"code": "posture_not_accepted", "ok": False, "accepted": 0},
            {"code": "antivirus_none", "ok": False} if not serving else
            {"code": "antivirus_reporting" if any(reporting.get(a.id) for a in serving) else "antivirus_silent",
             "ok": any(reporting.get(a.id) for a in serving), "consoles": [a.id for a in serving],
             "central": not own},
        ]
        layers = {}
        for name, checks in zip(LAYERS, (on_site, monitoring, assessment, national)):
            layers[name] = {"state": _state(checks), "reasons": checks}
        agencies[agency_id] = {"layers": layers, "kpi": agency_kpi(layers, targets)}
    result: dict[str, Any] = {"period": {"start": start, "end": end}, "targets": _targets(targets),
                              "agencies": agencies}
    if scope is None:
        result["province"] = province_kpi([a["kpi"] for a in agencies.values()], targets)
    return result


def _consoles(inventory) -> list:
    return [a for a in inventory.assets.values() if a.kind == AssetKind.antivirus_console]


def _targets(targets: Targets) -> dict[str, Any]:
    out = asdict(targets)
    out["national_sources"] = list(targets.national_sources)
    out["weights"] = dict(zip(LAYERS, targets.weights))
    return out


def agency_kpi(layers: dict[str, dict], targets: Targets) -> dict[str, Any]:
    """KPI = Σ weight × value(state) / Σ weight, value ok 1, partial ½, missing 0; as a percentage."""
    total = sum(targets.weights)
    score = sum(w * STATE_VALUE[layers[name]["state"]] for name, w in zip(LAYERS, targets.weights)) / total
    percent = round(100 * score, 1)
    return {"id": KPI_ID, "percent": percent, "target_percent": targets.kpi_target_percent,
            "meets_target": percent >= targets.kpi_target_percent,
            "layers_ok": sum(1 for name in LAYERS if layers[name]["state"] == "ok")}


def province_kpi(kpis: list[dict], targets: Targets) -> dict[str, Any]:
    """The province's KPI: the mean of its agencies' (each agency counts once, whatever its size)."""
    percent = round(sum(k["percent"] for k in kpis) / len(kpis), 1) if kpis else 0.0
    return {"id": KPI_ID, "percent": percent, "target_percent": targets.kpi_target_percent,
            "meets_target": bool(kpis) and percent >= targets.kpi_target_percent, "agencies": len(kpis),
            "agencies_meeting_target": sum(1 for k in kpis if k["meets_target"]),
            "agencies_all_layers_ok": sum(1 for k in kpis if k["layers_ok"] == len(LAYERS))}
