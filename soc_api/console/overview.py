"""The province overview (``/console/overview``, for analysts, the national centre and admins): every agency of the
inventory with its log sources reporting against those expected, its open alerts by severity, the mean and median
times to acknowledge and to resolve the alerts raised over a period (the last 7 or 30 days, in the user's time zone),
and the trends: alerts raised per day by severity, events and alerts per day.

Everything is read through the caller's ``Data`` (its scope: a tenant would get its own agency only) with bounded
queries, because the store has no aggregations and the page must stay fast at a million alerts:

- log sources: as ``soc_api/posture.py`` decides them (the source tracker's and the stored last-heard times, then a
  small store query per asset not heard from lately); the test holds both to the same figures;
- open alerts: the open statuses read newest first, at most OPEN_CAP in all; past it, the counts are lower bounds
  and the page says so;
- the period's alerts: read newest first by last seen, at most ALERT_SAMPLE; an alert counts on the day it was
  first seen, and its times to acknowledge and to resolve count when it was raised in the period. Past the cap, the
  days before the oldest alert read are incomplete (marked), and the times are those of the alerts read;
- events per day: each day in EVENT_WINDOWS windows, each window asked for at most its share of EVENT_BUDGET events:
  a window with fewer is counted exactly, a fuller one is estimated from the time its share took to arrive (shown "≈").

The figures are kept CACHE_SECONDS for the same scope, period and time zone (every leadership screen refreshing at
once costs one computation).
"""

from __future__ import annotations

import math
import statistics
import threading
import time as clock
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from typing import Any, Iterable

from collectors.sources.source_health import reporting_asset
from soc import ecs
from soc.storage.base import DocumentQuery, EventQuery
from soc.vocabulary import PRESENTED_OPEN_STATUSES, SEVERITIES, known_severity
from soc_api.console.alerts import agency_name, name_key
from soc_api.console.charts import Series, format_number, line_panels, stacked_bars
from soc_api.console.i18n import translate
from soc_api.data import AlertFilter, Data
from soc_api.posture import SOURCE_STATUS, arrived
from soc_api.settings import api_settings

PERIODS = (7, 30)
DEFAULT_DAYS = 7
ALERT_SAMPLE = 20_000  # alerts of the period read at most
OPEN_CAP = 20_000  # open alerts read at most
EVENT_BUDGET = 12_000  # events read at most for the events per day
EVENT_WINDOWS = 4  # windows a day is probed in
EVENT_PROBE_MIN = 20  # the least a window is asked for
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


# --- log sources ---------------------------------------------------------------------------------------------------
def log_sources(data: Data, agencies: Iterable[str], now: datetime) -> dict[str, dict]:
    """Per agency: log sources expected by the inventory, those reporting within their interval, and the silent
    assets — decided as ``soc_api.posture.build_posture`` decides them (tests hold the two to the same answer)."""
    suite = data.suite
    cfg = api_settings(suite).posture
    scope = data.scope(None)
    per = {a: {"expected": 0, "reporting": 0, "silent": []} for a in agencies}
    now_iso = ecs.utc_iso(now)
    tracker = suite.service("source_tracker")
    known: dict[str, dict] = {}
    terms = {"organization.id": scope} if scope else {}
    for doc in data.store.find_documents(SOURCE_STATUS, DocumentQuery(terms=terms, limit=10_000)):
        known[doc["id"]] = doc
    if tracker is not None:
        known.update({k: v for k, v in list(tracker.last_seen.items())
                      if scope is None or v["organization"]["id"] == scope})
    for asset in suite.inventory.assets.values():
        if asset.agency not in per or not asset.log_sources:
            continue
        entry = per[asset.agency]
        interval = min(cfg.source_intervals.get(s, cfg.default_source_interval_seconds) for s in asset.log_sources)
        since = ecs.utc_iso(now - timedelta(seconds=interval))
        last = (known.get(asset.id) or {}).get("last_seen")
        if not isinstance(last, str) or last > now_iso:
            last = None
        if not last or last < since:
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


# --- alerts --------------------------------------------------------------------------------------------------------
def open_alerts(data: Data, cap: int = OPEN_CAP) -> tuple[dict[str, Counter], int, bool]:
    """Open alerts (not suppressed) by agency and severity, however old: ({agency: Counter(severity)}, how many were
    read, whether that was all of them)."""
    counts: dict[str, Counter] = defaultdict(Counter)
    looked = 0
    for status in PRESENTED_OPEN_STATUSES:
        for alert in data.iter_alerts(AlertFilter(status=status), cap=cap - looked + 1):
            if looked == cap:
                return counts, looked, False
            looked += 1
            counts[ecs.get(alert, "organization.id") or UNKNOWN][known_severity(alert.get("severity")).value] += 1
    return counts, looked, True


def _seconds(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    try:
        return max(0.0, (ecs.parse_time(end) - ecs.parse_time(start)).total_seconds())
    except ValueError:
        return None


@dataclass
class AlertSample:
    per_day: list[Counter]  # alerts first seen on each day, by severity
    raised: Counter  # alerts raised in the period, by agency
    tta: dict[str, list[float]]  # seconds to acknowledge, by agency
    ttr: dict[str, list[float]]  # seconds to resolve (close), by agency
    looked: int
    complete: bool
    oldest: str | None  # the last_seen of the oldest alert read (where an incomplete reading stopped)


def alert_sample(data: Data, days: list[Day], zone: tzinfo, cap: int = ALERT_SAMPLE) -> AlertSample:
    """The period's alerts (last seen in it), newest first, at most ``cap``: per day by severity (the day first
    seen), and the times to acknowledge and resolve of those raised in the period, per agency."""
    start = days[0].start
    start_iso = ecs.utc_iso(start)
    sample = AlertSample([Counter() for _ in days], Counter(), defaultdict(list), defaultdict(list), 0, True, None)
    # No lower bound in the query: with one as well as the cursor's upper bound, SQLite's planner reads the whole
    # range for every page instead of walking its index newest first (see alerts.related_since). The reading stops
    # at the first alert last seen before the period instead.
    for alert in data.iter_alerts(AlertFilter(), cap=cap + 1):
        if (alert.get("last_seen") or "") < start_iso:
            break
        if sample.looked == cap:
            sample.complete = False
            break
        sample.looked += 1
        sample.oldest = alert.get("last_seen")
        try:
            first = ecs.parse_time(alert.get("first_seen") or alert["last_seen"])
        except (KeyError, ValueError):
            continue
        index = (first.astimezone(zone).date() - days[0].first).days
        if 0 <= index < len(days):
            sample.per_day[index][known_severity(alert.get("severity")).value] += 1
        raised_at = alert.get("created") or alert.get("first_seen")
        try:
            if not raised_at or ecs.parse_time(raised_at) < start:
                continue
        except ValueError:
            continue
        agency = ecs.get(alert, "organization.id") or UNKNOWN
        sample.raised[agency] += 1
        if (seconds := _seconds(raised_at, alert.get("acknowledged_at"))) is not None:
            sample.tta[agency].append(seconds)
        if (seconds := _seconds(raised_at, alert.get("closed_at"))) is not None:
            sample.ttr[agency].append(seconds)
    return sample


def day_complete(day: Day, sample: AlertSample) -> bool:
    """Whether every alert first seen on ``day`` was read (all were, unless the reading stopped at its cap after an
    alert last seen later than the day began)."""
    if sample.complete or not sample.oldest:
        return True
    try:
        return day.start > ecs.parse_time(sample.oldest)
    except ValueError:
        return False


def times(values: list[float]) -> dict[str, Any]:
    return {"n": len(values), "mean": round(sum(values) / len(values), 1) if values else None,
            "median": round(statistics.median(values), 1) if values else None}


# --- events --------------------------------------------------------------------------------------------------------
def events_per_day(data: Data, days: list[Day], now: datetime, budget: int = EVENT_BUDGET) -> list[tuple[int, bool]]:
    """(events, estimated) for each day, by event time: each day in EVENT_WINDOWS windows, each asked for at most
    its share of ``budget`` events. A window that has fewer is counted exactly; a full one is estimated from how
    long its share took to arrive (share × window length / that time). Windows still to come count 0."""
    probe = max(EVENT_PROBE_MIN, budget // max(1, len(days) * EVENT_WINDOWS))
    out = []
    for day in days:
        total, estimated = 0, False
        length = (day.end - day.start) / EVENT_WINDOWS
        for w in range(EVENT_WINDOWS):
            begin = day.start + length * w
            end = min(begin + length, now)
            if begin >= now:
                break
            found = data.search_events(start=ecs.utc_iso(begin), end=ecs.utc_iso(end), agency=None, terms={},
                                       text=None, limit=probe, cursor=None).items
            if len(found) < probe:
                total += len(found)
                continue
            try:
                took = (ecs.parse_time(found[-1]["@timestamp"]) - begin).total_seconds()
            except (KeyError, ValueError):
                took = 0.0
            span = (end - begin).total_seconds()
            total += max(len(found), round(len(found) * span / max(took, 1.0)))
            estimated = True
        out.append((total, estimated))
    return out


# --- the overview --------------------------------------------------------------------------------------------------
_CACHE: dict[tuple, tuple[float, dict]] = {}
_CACHE_LOCK = threading.Lock()


def build_overview(data: Data, days: int, zone: tzinfo, now: datetime | None = None) -> dict[str, Any]:
    """The overview's figures (no words: ``view`` puts them in the page's language)."""
    now = now or datetime.now(timezone.utc)
    period = period_days(days, zone, now)
    scope = data.scope(None)
    inventory = data.suite.inventory
    agency_ids = [a for a in inventory.agencies if scope is None or a == scope]
    sources = log_sources(data, agency_ids, now)
    opened, open_looked, open_complete = open_alerts(data, OPEN_CAP)
    sample = alert_sample(data, period, zone, ALERT_SAMPLE)
    events = events_per_day(data, period, now, EVENT_BUDGET)
    tracker = data.suite.service("source_tracker")
    known = set(agency_ids)
    for per_agency in (opened, sample.raised, sample.tta, sample.ttr):  # agencies gone from the inventory: together
        for agency_id in [a for a in per_agency if a not in known and a != UNKNOWN]:
            per_agency[UNKNOWN] += per_agency.pop(agency_id)
    rows = []
    for agency_id in agency_ids + ([UNKNOWN] if opened.get(UNKNOWN) or sample.raised.get(UNKNOWN) else []):
        src = sources.get(agency_id, {"expected": 0, "reporting": 0, "silent": []})
        counts = opened.get(agency_id, Counter())
        rows.append({
            "id": agency_id,
            "kind": inventory.agencies[agency_id].kind.value if agency_id in inventory.agencies else "",
            "sources": {"expected": src["expected"], "reporting": src["reporting"], "silent": len(src["silent"])},
            "silent_assets": src["silent"],
            "open": {s: counts.get(s, 0) for s in SEVERITY_ORDER},
            "open_total": sum(counts.values()),
            "raised": sample.raised.get(agency_id, 0),
            "tta": times(sample.tta.get(agency_id, [])),
            "ttr": times(sample.ttr.get(agency_id, [])),
        })
    every_tta = [x for values in sample.tta.values() for x in values]
    every_ttr = [x for values in sample.ttr.values() for x in values]
    province = {
        "sources": {k: sum(r["sources"][k] for r in rows) for k in ("expected", "reporting", "silent")},
        "open": {s: sum(r["open"][s] for r in rows) for s in SEVERITY_ORDER},
        "open_total": sum(r["open_total"] for r in rows),
        "raised": sum(sample.raised.values()),
        "tta": times(every_tta),
        "ttr": times(every_ttr),
        "events_per_second": tracker.events_per_second(scope) if tracker is not None else None,
    }
    per_day = []
    for day, counts, (event_count, estimated) in zip(period, sample.per_day, events):
        per_day.append({"day": day.first.isoformat(), "severities": {s: counts.get(s, 0) for s in SEVERITY_ORDER},
                        "alerts": sum(counts.values()), "complete": day_complete(day, sample),
                        "events": event_count, "events_estimated": estimated})
    return {
        "generated": ecs.utc_iso(now),
        "days": days,
        "start": ecs.utc_iso(period[0].start),
        "scope": scope,
        "agencies": rows,
        "province": province,
        "per_day": per_day,
        "open_looked": open_looked,
        "open_complete": open_complete,
        "sample_looked": sample.looked,
        "sample_complete": sample.complete,
        "sample_oldest": sample.oldest,
        "events_estimated": any(d["events_estimated"] for d in per_day),
        "limits": {"alerts": ALERT_SAMPLE, "open": OPEN_CAP, "events": EVENT_BUDGET},
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
    notes = ["" if d["complete"] else "*" for d in per_day]
    severity_series = [Series(s, t(f"overview.severity.{s}"), [d["severities"][s] for d in per_day],
                              SEVERITY_COLOURS[s]) for s in reversed(SEVERITY_ORDER)]  # least bad at the bottom
    total_alerts = sum(d["alerts"] for d in per_day)
    busiest = max(per_day, key=lambda d: d["alerts"]) if per_day else None
    desc = t("overview.chart.severity_desc", days=figures["days"], first=categories[0], last=categories[-1],
             total=format_number(total_alerts, lang),
             busiest=day_label(busiest["day"], lang) if busiest and busiest["alerts"] else "-",
             most=format_number(busiest["alerts"] if busiest else 0, lang),
             counts=", ".join(f"{s.label} {format_number(sum(s.values), lang)}" for s in reversed(severity_series)))
    if any(notes):
        desc += " " + t("overview.chart.incomplete_desc")
    by_severity = stacked_bars(
        chart_id="chart-severity", title=t("overview.chart.severity_title", days=figures["days"]), desc=desc,
        categories=categories, ticks=ticks, series=severity_series, lang=lang,
        category_header=t("overview.chart.day"), total_label=t("overview.chart.total"),
        details=t("overview.chart.table"), notes=notes,
        note_legend=[("*", t("overview.chart.incomplete"))] if any(notes) else (),
        bar_title=t("overview.chart.bar_title", category="{category}", total="{total}"))
    events = [d["events"] for d in per_day]
    estimated = [d["events_estimated"] for d in per_day]
    trend_desc = t("overview.chart.trend_desc", first=categories[0], last=categories[-1],
                   events=("≈ " if any(estimated) else "") + format_number(sum(events), lang),
                   alerts=format_number(total_alerts, lang),
                   peak=day_label(max(per_day, key=lambda d: d["events"])["day"], lang) if any(events) else "-")
    trend = line_panels(
        chart_id="chart-trend", title=t("overview.chart.trend_title", days=figures["days"]), desc=trend_desc,
        categories=categories, ticks=ticks, lang=lang, category_header=t("overview.chart.day"),
        details=t("overview.chart.table"),
        panels=[Series("events", t("overview.chart.events"), events, EVENTS_COLOUR, estimated),
                Series("alerts", t("overview.chart.alerts"), [d["alerts"] for d in per_day], ALERTS_COLOUR)],
        note_legend=[("≈", t("overview.chart.estimated"))] if any(estimated) else ())
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
