"""The province overview (``/console/overview``, for analysts, the national centre and admins): every agency of the
inventory with its log sources reporting against those expected, its open alerts by severity, the mean and median
times to acknowledge and to resolve the alerts raised over a period (the last 7 or 30 days, in the user's time zone),
and the trends: alerts raised per day by severity, events and alerts per day.

Every figure is exact, counted by the store's aggregations (soc/storage/aggregations.py) through the caller's
``Data`` (``Data.aggregate`` keeps a tenant to its own agency), so the page reads no alert or event into Python and
stays fast however many the store holds:

- log sources: as ``soc_api/posture.py`` decides them (``posture.log_sources``: the source tracker's and the stored
  last-heard times, then a small store query per asset not heard from lately);
- open alerts (new, acknowledged, in progress; however old): counted by agency and severity;
- alerts per day by severity: by when each was first seen, in day buckets starting at the user's local midnight;
- alerts raised in the period (first seen in it, as the chart counts them), per agency and for the province, with
  the number acknowledged and closed and the mean and median times to acknowledge and to resolve, from when the
  suite raised each (the ``percentiles`` duration metric; on the search engines the median is their t-digest
  estimate, exact for small groups);
- events per day: by event time, in the same local day buckets, up to now.

The figures are kept CACHE_SECONDS for the same scope, period and time zone (every leadership screen refreshing at
once costs one computation).
"""

from __future__ import annotations

import math
import threading
import time as clock
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from typing import Any, Iterable

from soc import ecs
from soc.storage.aggregations import AggregateQuery
from soc.storage.base import in_scope
from soc.vocabulary import SEVERITIES, known_severity
from soc_api.console.alerts import agency_name, name_key
from soc_api.console.charts import Series, format_number, line_panels, stacked_bars
from soc_api.console.i18n import translate
from soc_api.data import Data
from soc_api.posture import OPEN, TIMES
from soc_api.posture import log_sources as posture_log_sources

PERIODS = (7, 30)
DEFAULT_DAYS = 7
CACHE_SECONDS = 30.0
SORTS = ("name", "attention")
UNKNOWN = "-"  # alerts of no agency of the inventory
SEVERITY_ORDER = [s.value for s in reversed(SEVERITIES)]  # worst first
# Fills of the severities in the charts: at least 3:1 against white (WCAG 1.4.11), told apart by the order of the
# stack and the legend as well as by colour.
SEVERITY_COLOURS = {"critical": "#7f1d1d", "high": "#c2410c", "medium": "#a16207", "low": "#1d4ed8",
                    "informational": "#4b5563"}
EVENTS_COLOUR = "#0b5394"
ALERTS_COLOUR = "#b91c1c"
DAY_SECONDS = 86_400
MEDIAN = 50.0  # the percentile posture.TIMES asks for


# --- the period ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Day:
    first: date  # the local day
    start: datetime  # its local midnight
    end: datetime  # the next local midnight


def period_days(days: int, zone: tzinfo, now: datetime) -> list[Day]:
    """The last ``days`` local days up to today (today included, still running)."""
    today = now.astimezone(zone).date()
    out = []
    for back in range(days - 1, -1, -1):
        day = today - timedelta(days=back)
        out.append(Day(day, datetime.combine(day, time.min, zone),
                       datetime.combine(day + timedelta(days=1), time.min, zone)))
    return out


def valid_days(value: str | None) -> int:
    try:
        wanted = int(value or DEFAULT_DAYS)
    except ValueError:
        return DEFAULT_DAYS
    return wanted if wanted in PERIODS else DEFAULT_DAYS


def day_runs(days: list[Day]) -> list[tuple[list[int], bool]]:
    """The period's days as runs of consecutive 24-hour days, each run counted by one aggregation in day buckets
    aligned to its local midnight; a day of another length (a daylight-saving change: 23 or 25 hours, which no
    fixed bucket fits) is a run of its own, counted whole. (Timestamps, not datetime subtraction: two times of the
    same zone subtract as wall-clock times, which would make every day 24 hours.)"""
    runs: list[tuple[list[int], bool]] = []
    for i, day in enumerate(days):
        regular = day.end.timestamp() - day.start.timestamp() == DAY_SECONDS
        if regular and runs and runs[-1][1] and days[runs[-1][0][-1]].end.timestamp() == day.start.timestamp():
            runs[-1][0].append(i)
        else:
            runs.append(([i], regular))
    return runs


def per_local_day(data: Data, query: AggregateQuery, days: list[Day], until: datetime | None = None) -> list[Counter]:
    """``query`` counted on each local day of ``days`` (its time field in the day), up to ``until`` when given: per
    day, {the row's key without the day: count}."""
    out: list[Counter] = [Counter() for _ in days]
    for indices, regular in day_runs(days):
        begin = int(days[indices[0]].start.timestamp())
        end = int(days[indices[-1]].end.timestamp())
        if until is not None:
            end = min(end, math.ceil(until.timestamp()))
        if end <= begin:
            continue  # the run is still to come
        counted = data.aggregate(replace(
            query, start=_iso(begin), end=_iso(end), interval_seconds=DAY_SECONDS if regular else None,
            offset_seconds=begin % DAY_SECONDS if regular else 0))
        which = {int(days[i].start.timestamp()): i for i in indices}
        for row in counted.rows:
            if regular:
                index = which.get(_epoch(row.key[-1]))
                key = row.key[:-1]
            else:
                index, key = indices[0], row.key
            if index is not None:
                out[index][key] += row.count
    return out


def _iso(epoch: int) -> str:
    return ecs.utc_iso(datetime.fromtimestamp(epoch, timezone.utc))


def _epoch(bucket: Any) -> int | None:
    try:
        return int(ecs.parse_time(bucket).timestamp())
    except (TypeError, ValueError):
        return None


# --- log sources ---------------------------------------------------------------------------------------------------
def log_sources(data: Data, agencies: Iterable[str], now: datetime) -> dict[str, dict]:
    """Per agency: log sources expected by the inventory, those reporting within their interval, and the silent
    assets — ``soc_api.posture.log_sources``, which the posture document uses too."""
    return posture_log_sources(data, list(agencies), data.scope(None), now)


# --- alerts --------------------------------------------------------------------------------------------------------
def open_alerts(data: Data) -> dict[Any, Counter]:
    """Open alerts (not suppressed) by agency and severity, however old: {agency: Counter(severity)}; alerts of no
    agency under UNKNOWN, a severity the vocabulary does not know as the default one."""
    counted = data.aggregate(AggregateQuery(collection="alerts", terms={"status": list(OPEN)},
                                            group_by=("organization.id", "severity")))
    counts: dict[Any, Counter] = defaultdict(Counter)
    for row in counted.rows:
        agency, severity = row.key
        counts[UNKNOWN if agency is None else agency][known_severity(severity).value] += row.count
    return counts


def alerts_per_day(data: Data, days: list[Day]) -> list[Counter]:
    """Alerts first seen on each local day, by severity."""
    counted = per_local_day(data, AggregateQuery(collection="alerts", time_field="first_seen", group_by=("severity",)),
                            days)
    out = []
    for day in counted:
        severities: Counter = Counter()
        for (severity,), count in day.items():
            severities[known_severity(severity).value] += count
        out.append(severities)
    return out


def times(figures: dict | None) -> dict[str, Any]:
    """A duration metric's figures as the page shows them: how many alerts, mean and median seconds (a tenth)."""
    figures = figures or {}
    n = int(figures.get("n") or 0)
    mean, median = figures.get("mean"), (figures.get("percentiles") or {}).get(MEDIAN)
    return {"n": n, "mean": round(mean, 1) if n and mean is not None else None,
            "median": round(median, 1) if n and median is not None else None}


def _together(parts: list[dict | None]) -> dict[str, Any]:
    """Several groups' duration figures (as the store gives them, unrounded) as one: the numbers and the means add
    up exactly; medians do not, so none."""
    parts = [p for p in parts if p and p.get("n") and p.get("mean") is not None]
    n = sum(int(p["n"]) for p in parts)
    total = sum(int(p["n"]) * p["mean"] for p in parts)
    return {"n": n, "mean": round(total / n, 1) if n else None, "median": None}


@dataclass
class Raised:
    per_agency: dict[Any, dict]  # agency (UNKNOWN: of none of the inventory) -> {"raised", "tta", "ttr"}
    total: int  # every alert raised in the period
    tta: dict[str, Any]  # every agency's together
    ttr: dict[str, Any]


def raised_alerts(data: Data, start: str, known: set[str]) -> Raised:
    """The alerts raised since ``start`` (first seen since: the chart's alerts, and a column on SQLite, where
    ``created`` would be read out of every alert's JSON to filter), per agency and all together, with their times
    to acknowledge and resolve. Agencies not in ``known`` (gone from the inventory, or none) are one UNKNOWN row."""
    query = AggregateQuery(collection="alerts", time_field="first_seen", start=start, metrics=TIMES)
    per_agency: dict[Any, dict] = {}
    strays = []
    for row in data.aggregate(replace(query, group_by=("organization.id",))).rows:
        if row.key[0] in known:
            per_agency[row.key[0]] = {"raised": row.count, "tta": times(row.values.get("tta")),
                                      "ttr": times(row.values.get("ttr"))}
        else:
            strays.append(row)
    if len(strays) == 1:
        per_agency[UNKNOWN] = {"raised": strays[0].count, "tta": times(strays[0].values.get("tta")),
                               "ttr": times(strays[0].values.get("ttr"))}
    elif strays and all(row.key[0] is not None for row in strays):
        # Several agencies gone from the inventory: asked for together, so that their median is theirs exactly.
        together = data.aggregate(replace(query, terms={"organization.id": [row.key[0] for row in strays]}))
        values = together.rows[0].values if together.rows else {}
        per_agency[UNKNOWN] = {"raised": together.total, "tta": times(values.get("tta")),
                               "ttr": times(values.get("ttr"))}
    elif strays:
        # Alerts of no agency as well: no filter selects "none or these", so the counts and means are added up
        # (exact) and the median is left out rather than guessed.
        per_agency[UNKNOWN] = {"raised": sum(row.count for row in strays),
                               "tta": _together([row.values.get("tta") for row in strays]),
                               "ttr": _together([row.values.get("ttr") for row in strays])}
    whole = data.aggregate(query)
    values = whole.rows[0].values if whole.rows else {}
    return Raised(per_agency, whole.total, times(values.get("tta")), times(values.get("ttr")))


# --- events --------------------------------------------------------------------------------------------------------
def events_per_day(data: Data, days: list[Day], now: datetime) -> list[int]:
    """Events on each local day, by event time, up to ``now`` (a sender's clock ahead of ours adds nothing to
    today)."""
    return [day.get((), 0) for day in per_local_day(data, AggregateQuery(collection="events"), days, until=now)]


# --- the overview --------------------------------------------------------------------------------------------------
_CACHE: dict[tuple, tuple[float, dict]] = {}
_CACHE_LOCK = threading.Lock()


def build_overview(data: Data, days: int, zone: tzinfo, now: datetime | None = None) -> dict[str, Any]:
    """The overview's figures (no words: ``view`` puts them in the page's language)."""
    now = now or datetime.now(timezone.utc)
    period = period_days(days, zone, now)
    scope = data.scope(None)
    inventory = data.suite.inventory
    agency_ids = [a for a in inventory.agencies if in_scope(scope, a)]
    known = set(agency_ids)
    sources = log_sources(data, agency_ids, now)
    opened = open_alerts(data)
    for agency_id in [a for a in opened if a not in known and a != UNKNOWN]:  # agencies gone from the inventory
        opened[UNKNOWN] += opened.pop(agency_id)
    per_day = alerts_per_day(data, period)
    raised = raised_alerts(data, ecs.utc_iso(period[0].start), known)
    events = events_per_day(data, period, now)
    tracker = data.suite.service("source_tracker")
    nothing = {"raised": 0, "tta": times(None), "ttr": times(None)}
    rows = []
    for agency_id in agency_ids + ([UNKNOWN] if opened.get(UNKNOWN) or UNKNOWN in raised.per_agency else []):
        src = sources.get(agency_id, {"expected": 0, "reporting": 0, "silent": []})
        counts = opened.get(agency_id, Counter())
        mine = raised.per_agency.get(agency_id, nothing)
        rows.append({
            "id": agency_id,
            "kind": inventory.agencies[agency_id].kind.value if agency_id in inventory.agencies else "",
            "sources": {"expected": src["expected"], "reporting": src["reporting"], "silent": len(src["silent"])},
            "silent_assets": src["silent"],
            "open": {s: counts.get(s, 0) for s in SEVERITY_ORDER},
            "open_total": sum(counts.values()),
            "raised": mine["raised"],
            "tta": mine["tta"],
            "ttr": mine["ttr"],
        })
    province = {
        "sources": {k: sum(r["sources"][k] for r in rows) for k in ("expected", "reporting", "silent")},
        "open": {s: sum(r["open"][s] for r in rows) for s in SEVERITY_ORDER},
        "open_total": sum(r["open_total"] for r in rows),
        "raised": raised.total,
        "tta": raised.tta,
        "ttr": raised.ttr,
        "events_per_second": tracker.events_per_second(scope) if tracker is not None else None,
    }
    days_out = []
    for day, counts, event_count in zip(period, per_day, events):
        days_out.append({"day": day.first.isoformat(), "severities": {s: counts.get(s, 0) for s in SEVERITY_ORDER},
                         "alerts": sum(counts.values()), "events": event_count})
    return {
        "generated": ecs.utc_iso(now),
        "days": days,
        "start": ecs.utc_iso(period[0].start),
        "scope": scope,
        "agencies": rows,
        "province": province,
        "per_day": days_out,
    }


def cached_overview(data: Data, days: int, zone: tzinfo) -> dict[str, Any]:
    """``build_overview``, kept CACHE_SECONDS per suite, scope, period and time zone."""
    key = (id(data.suite), data.scope(None), days, getattr(zone, "key", str(zone)))
    now = clock.monotonic()
    with _CACHE_LOCK:
        found = _CACHE.get(key)
        if found is not None and now - found[0] < CACHE_SECONDS:
            return found[1]
    figures = build_overview(data, days, zone)
    with _CACHE_LOCK:
        if len(_CACHE) > 64:
            _CACHE.clear()
        _CACHE[key] = (now, figures)
    return figures


def forget_cached() -> None:
    with _CACHE_LOCK:
        _CACHE.clear()


# --- words ---------------------------------------------------------------------------------------------------------
def duration(seconds: float | None, lang: str) -> str:
    """3600 → "1 h" / "1 giờ"; 5400 → "1 h 30 min"; the two largest whole units ("" for none)."""
    if seconds is None:
        return ""
    parts = []
    rest = int(round(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        count, rest = divmod(rest, size)
        if count:
            parts.append(translate(lang, f"overview.unit.{unit}", n=count))
    return " ".join(parts[:2]) or translate(lang, "overview.unit.s", n=0)


def percent(part: int, whole: int) -> int | None:
    return None if not whole else int(math.floor(100 * part / whole))


def day_label(iso_day: str, lang: str, short: bool = False) -> str:
    day = date.fromisoformat(iso_day)
    if lang == "vi":
        return day.strftime("%d/%m") if short else day.strftime("%d/%m/%Y")
    return day.strftime("%d %b") if short else day.isoformat()


def attention_key(row: dict) -> tuple:
    """Agencies needing attention first: silent sources, then open critical, high, and all open alerts."""
    return (-row["sources"]["silent"], -row["open"]["critical"], -row["open"]["high"], -row["open_total"])


def agency_label(inventory, agency_id: str, lang: str) -> str:
    if agency_id == UNKNOWN:
        return translate(lang, "overview.unknown_agency")
    return agency_name(inventory, agency_id, lang)


def view(figures: dict[str, Any], inventory, lang: str, sort: str = "name") -> dict[str, Any]:
    """The page's context from ``build_overview``'s figures: agency rows named and sorted, durations and charts in
    the page's language."""
    t = lambda key, **kw: translate(lang, key, **kw)  # noqa: E731
    rows = []
    for row in figures["agencies"]:
        src = row["sources"]
        rows.append({**row, "name": agency_label(inventory, row["id"], lang),
                     "percent": percent(src["reporting"], src["expected"]),
                     "tta_text": {k: duration(row["tta"][k], lang) for k in ("mean", "median")},
                     "ttr_text": {k: duration(row["ttr"][k], lang) for k in ("mean", "median")}})
    province_id = inventory.document.province.id
    rows.sort(key=lambda r: (r["id"] == UNKNOWN, r["id"] != province_id, name_key(r["name"])))
    if sort == "attention":
        rows.sort(key=attention_key)  # stable: names in order among equals
    province = figures["province"]
    per_day = figures["per_day"]
    categories = [day_label(d["day"], lang) for d in per_day]
    ticks = [day_label(d["day"], lang, short=True) for d in per_day]
    severity_series = [Series(s, t(f"overview.severity.{s}"), [d["severities"][s] for d in per_day],
                              SEVERITY_COLOURS[s]) for s in reversed(SEVERITY_ORDER)]  # least bad at the bottom
    total_alerts = sum(d["alerts"] for d in per_day)
    busiest = max(per_day, key=lambda d: d["alerts"]) if per_day else None
    desc = t("overview.chart.severity_desc", days=figures["days"], first=categories[0], last=categories[-1],
             total=format_number(total_alerts, lang),
             busiest=day_label(busiest["day"], lang) if busiest and busiest["alerts"] else "-",
             most=format_number(busiest["alerts"] if busiest else 0, lang),
             counts=", ".join(f"{s.label} {format_number(sum(s.values), lang)}" for s in reversed(severity_series)))
    by_severity = stacked_bars(
        chart_id="chart-severity", title=t("overview.chart.severity_title", days=figures["days"]), desc=desc,
        categories=categories, ticks=ticks, series=severity_series, lang=lang,
        category_header=t("overview.chart.day"), total_label=t("overview.chart.total"),
        details=t("overview.chart.table"),
        bar_title=t("overview.chart.bar_title", category="{category}", total="{total}"))
    events = [d["events"] for d in per_day]
    trend_desc = t("overview.chart.trend_desc", first=categories[0], last=categories[-1],
                   events=format_number(sum(events), lang),
                   alerts=format_number(total_alerts, lang),
                   peak=day_label(max(per_day, key=lambda d: d["events"])["day"], lang) if any(events) else "-")
    trend = line_panels(
        chart_id="chart-trend", title=t("overview.chart.trend_title", days=figures["days"]), desc=trend_desc,
        categories=categories, ticks=ticks, lang=lang, category_header=t("overview.chart.day"),
        details=t("overview.chart.table"),
        panels=[Series("events", t("overview.chart.events"), events, EVENTS_COLOUR),
                Series("alerts", t("overview.chart.alerts"), [d["alerts"] for d in per_day], ALERTS_COLOUR)])
    return {
        "rows": rows,
        "province": {**province, "percent": percent(province["sources"]["reporting"],
                                                     province["sources"]["expected"]),
                     "tta_text": {k: duration(province["tta"][k], lang) for k in ("mean", "median")},
                     "ttr_text": {k: duration(province["ttr"][k], lang) for k in ("mean", "median")}},
        "chart_severity": by_severity,
        "chart_trend": trend,
        "first_day": categories[0],
        "last_day": categories[-1],
    }
