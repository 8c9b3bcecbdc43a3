"""Gather a report's data from the store: one pass over the period's events, one over its alerts, then the records
other components keep (reports/collections.py), the rule set, and the recommendations derived from all of it.

The period's events are counted by the store (``Store.aggregate``: aggregations on the search engines, SQL on SQLite),
never read one by one: by source, agency and chart bucket; by severity; and per (asset, source) with first and last
times and the hours with events (for the gaps). A few sample event ids per figure are read for the evidence.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Callable

from collectors.sources.log_source_table import silent_after, sources_of
from detections.sigma.loader import RuleSet
from detections.sigma.logsource import applies, event_descriptors
from inventory.lookup import Inventory
from reports import collections as records
from reports.digest_section import gather_digest
from reports.findings_section import gather_findings
from reports.layers_section import gather_layers
from reports.model import MAX_EVIDENCE_EVENTS, AgencyRow, AssetRow, AttackerRow, HandledRow, ReportData, RuleRow, SourceRow
from reports.periods import Period
from reports.recommend import recommend
from soc import ecs
from soc.storage.aggregations import AggregateQuery, Metric
from soc.storage.base import AlertQuery, EventQuery, Store, StoreError
from soc.vocabulary import SYSLOG_SEVERITIES, Severity, severity_at_least

log = logging.getLogger(__name__)

EVENT_PAGE = 2000  # events a page when the store cannot count them (read one by one)
ALERT_PAGE = 500
TOP_N = 10
PROVINCE = "province"
OWN_DATASETS = ("soc.",)


@dataclass
class GatherOptions:
    gap_hours_min: float = 4.0  # a gap shorter than this (or than the source's silence threshold) is not listed
    top_n: int = TOP_N
    repeated_alerts_min: int = 3  # an asset with this many alerts of one rule gets a recommendation
    progress: Callable[[str, int], None] | None = None  # (what, how many so far) for a progress bar
    # The TLP levels an agency may read (soc_api's taxii.agency_tlp; reports/service.py passes the configured ones):
    # an agency's report withholds the values of indicators above them.
    agency_tlp: tuple[str, ...] = ("clear", "green")


@dataclass
class _PairState:
    events: int = 0
    first: str | None = None
    last: str | None = None
    first_id: str | None = None
    last_id: str | None = None
    hours: set[int] = field(default_factory=set)


def event_severity(doc: dict) -> str:
    name = ecs.get(doc, "log.syslog.severity.name")
    if name:
        return str(name)
    value = ecs.get(doc, "event.severity")
    if isinstance(value, int) and 0 <= value < len(SYSLOG_SEVERITIES):
        return SYSLOG_SEVERITIES[value]
    return "unknown"


def _scope_agencies(inventory: Inventory, scope: str | None) -> list[str]:
    return sorted(inventory.agencies) if scope is None else [scope]


def gather(store: Store, inventory: Inventory, ruleset: RuleSet, scope: str | None, period: Period,
           options: GatherOptions | None = None) -> ReportData:
    """scope: an agency id, or None for the province roll-up (every agency)."""
    options = options or GatherOptions()
    if scope is not None and scope not in inventory.agencies:
        raise KeyError(f"agency {scope!r} is not in the inventory")
    agency = inventory.agencies.get(scope or PROVINCE) or inventory.document.province
    data = ReportData(scope=scope or PROVINCE, rollup=scope is None, name_vi=agency.name_vi, name_en=agency.name_en,
                      period=period.label, period_start=period.start_iso, period_end=period.end_iso,
                      bucket_labels=[d.isoformat() for d in period.buckets()], generated=ecs.now_iso())
    agencies = _scope_agencies(inventory, scope)
    pairs, datasets, per_agency_events = _scan_events(store, inventory, scope, period, data, options)
    _source_rows(inventory, agencies, period, pairs, data, options)
    alerts = _scan_alerts(store, scope, period, data, options)
    attackers_of = _attack_addresses(store, alerts)
    all_assets = _top_assets(inventory, alerts, data, options)
    # Runs before the period count too: a block that expired before or during it may be re-offended.
    runs_so_far = records.playbook_runs(store, scope, "0000", period.end_iso)
    data.playbook_runs = [r for r in runs_so_far if r.started >= period.start_iso]
    for run in data.playbook_runs:
        data.ev(f"playbooks:{run.playbook}").add_other(records.PLAYBOOK_RUNS, run.id)
        for alert_id in run.alert_ids:
            data.ev(f"playbooks:{run.playbook}").add_alert(alert_id)
    _top_attackers(inventory, alerts, attackers_of, data, options)
    _handled(store, scope, period, alerts, data)
    _coverage(ruleset, datasets, alerts, data)
    readable = None if scope is None else tuple(options.agency_tlp)
    indicators = records.indicators(store, scope, period.start_iso, period.end_iso, readable)
    data.indicators_received = [i for i in indicators if i.direction == "received"]
    data.indicators_shared = [i for i in indicators if i.direction == "shared"]
    for item in indicators:
        data.ev(f"indicators:{item.direction}").add_other(records.INDICATORS, item.id)
    data.sightings = records.sightings(store, scope, period.start_iso, period.end_iso)
    for sighting in data.sightings:
        ev = data.ev("indicators:sightings")
        ev.add_other(records.SIGHTINGS, sighting.id)
        for event_id in sighting.event_ids:
            ev.add_event(event_id)
    if data.rollup:
        _by_agency(inventory, per_agency_events, alerts, data)
    gather_layers(store, inventory, scope, agencies, period, data)  # the four layers and the KPI
    gather_findings(store, inventory, scope, period, data)  # the assessment's open and past-due findings
    gather_digest(store, scope, period, data, options)  # the threat-update digest
    data.recommendations = recommend(data, alerts, attackers_of, all_assets, runs_so_far,
                                     options.repeated_alerts_min)
    return data


# --- events ------------------------------------------------------------------------------------------------------
# The store counts the period's events (Store.aggregate); only a few sample event ids per figure are read, for the
# evidence appendix (each figure's query reproduces the rest).
_PER_SOURCE = ("event.dataset", "process.name", "organization.id")
_PER_SEVERITY = ("event.dataset", "log.syslog.severity.name", "event.severity")
_PER_ASSET = ("soc.asset.id", "event.dataset", "process.name")


def _own(dataset: str | None) -> bool:
    return (dataset or "").startswith(OWN_DATASETS)  # the suite's own records (probe results, source-health notes)


def _scan_events(store: Store, inventory: Inventory, scope: str | None, period: Period, data: ReportData,
                 options: GatherOptions):
    """The period's event figures, counted by the store; if the store refuses the aggregations (more distinct
    groups than it answers: a sender naming a new program on every line can do that), read one by one instead —
    slower, the same figures, bounded memory."""
    try:
        return _count_events(store, scope, period, data, options)
    except StoreError as exc:
        if exc.transient:
            raise
        log.warning("report %s %s: the store could not count the events (%s); reading them one by one",
                    data.scope, data.period, exc)
        data.events_total = 0
        data.events_by_severity.clear()
        data.events_by_source.clear()
        return _read_events(store, scope, period, data, options)


def _read_events(store: Store, scope: str | None, period: Period, data: ReportData, options: GatherOptions):
    pairs: dict[tuple[str, str], _PairState] = defaultdict(_PairState)
    datasets: set[tuple[str, str]] = set()
    per_agency: Counter = Counter()
    over_time: dict[str, list[int]] = defaultdict(lambda: [0] * len(data.bucket_labels))
    start_epoch = period.start.timestamp()
    after = None
    while True:
        page = store.search_events(EventQuery(start=period.start_iso, end=period.end_iso, agency=scope,
                                              limit=EVENT_PAGE, after=after))
        for doc in page:
            _read_event(doc, period, start_epoch, data, pairs, datasets, per_agency, over_time)
        if options.progress:
            options.progress("events", data.events_total)
        if len(page) < EVENT_PAGE:
            break
        after = (page[-1]["@timestamp"], ecs.get(page[-1], "event.id"))
    data.events_over_time = dict(over_time)
    return pairs, datasets, per_agency


def _read_event(doc, period, start_epoch, data, pairs, datasets, per_agency, over_time) -> None:
    dataset = ecs.get(doc, "event.dataset") or ""
    if _own(dataset):
        return
    event_id = ecs.get(doc, "event.id")
    ts = doc["@timestamp"]
    moment = ecs.parse_time(ts)
    data.events_total += 1
    severity = event_severity(doc)
    data.events_by_severity[severity] += 1
    data.ev(f"events_by_severity:{severity}").add_event(event_id)
    program = ecs.get(doc, "process.name")
    program = program if isinstance(program, str) else ""
    datasets.add((dataset, program))
    bucket = period.bucket_of(moment)
    hour = int((moment.timestamp() - start_epoch) // 3600)
    asset = ecs.get(doc, "soc.asset.id")
    per_agency[ecs.get(doc, "organization.id")] += 1
    for name in sources_of(dataset, program) or frozenset({"other"}):
        data.events_by_source[name] += 1
        data.ev(f"events_by_source:{name}").add_event(event_id)
        if 0 <= bucket < len(data.bucket_labels):
            over_time[name][bucket] += 1
        if asset and name != "other":
            state = pairs[(asset, name)]
            state.events += 1
            if state.first is None or ts < state.first:
                state.first, state.first_id = ts, event_id
            if state.last is None or ts >= state.last:
                state.last, state.last_id = ts, event_id
            state.hours.add(hour)


def _count_events(store: Store, scope: str | None, period: Period, data: ReportData, options: GatherOptions):
    pairs: dict[tuple[str, str], _PairState] = defaultdict(_PairState)
    datasets: set[tuple[str, str]] = set()
    per_agency: Counter = Counter()
    buckets = len(data.bucket_labels)
    over_time: dict[str, list[int]] = defaultdict(lambda: [0] * buckets)
    start_epoch = int(period.start.timestamp())
    bucket_seconds = period.bucket_days * 86400
    window = {"start": period.start_iso, "end": period.end_iso, "agency": scope}
    biggest: dict[str, tuple[int, str, str]] = {}  # source -> (events, dataset, program) of its largest group
    by_source = store.aggregate(AggregateQuery(**window, group_by=_PER_SOURCE, interval_seconds=bucket_seconds,
                                               offset_seconds=start_epoch % bucket_seconds))
    for row in by_source.rows:
        dataset, program, agency, bucket_start = row.key
        if _own(dataset):
            continue
        dataset, program = dataset or "", program if isinstance(program, str) else ""
        data.events_total += row.count
        per_agency[agency] += row.count
        datasets.add((dataset, program))
        bucket = (int(ecs.parse_time(bucket_start).timestamp()) - start_epoch) // bucket_seconds
        for name in sources_of(dataset, program) or frozenset({"other"}):
            data.events_by_source[name] += row.count
            if 0 <= bucket < buckets:
                over_time[name][bucket] += row.count
            if row.count > biggest.get(name, (0, "", ""))[0]:
                biggest[name] = (row.count, dataset, program)
    if options.progress:
        options.progress("events", data.events_total)
    for row in store.aggregate(AggregateQuery(**window, group_by=_PER_SEVERITY)).rows:
        dataset, name, number = row.key
        if not _own(dataset):
            data.events_by_severity[_severity_name(name, number)] += row.count
    _per_asset(store, window, period, pairs)
    data.events_over_time = dict(over_time)
    _sample_ids(store, window, data, biggest)
    return pairs, datasets, per_agency


def _severity_name(name, number) -> str:
    """As event_severity() names one event's severity: the syslog name, else the number's name, else unknown."""
    if name:
        return str(name)
    if isinstance(number, int) and 0 <= number < len(SYSLOG_SEVERITIES):
        return SYSLOG_SEVERITIES[number]
    return "unknown"


def _per_asset(store: Store, window: dict, period: Period, pairs: dict) -> None:
    """Each (asset, source) pair's events, first and last times and the hours it had events in."""
    start_epoch = int(period.start.timestamp())
    spans = store.aggregate(AggregateQuery(**window, group_by=_PER_ASSET, metrics=(
        Metric("first", "min", "@timestamp"), Metric("last", "max", "@timestamp"))))
    hourly = store.aggregate(AggregateQuery(**window, group_by=_PER_ASSET, interval_seconds=3600))
    for row in spans.rows:
        asset, dataset, program = row.key
        if not asset or _own(dataset):
            continue
        for name in sources_of(dataset or "", program if isinstance(program, str) else "") - {"other"}:
            state = pairs[(asset, name)]
            state.events += row.count
            first, last = row.values.get("first"), row.values.get("last")
            if first and (state.first is None or first < state.first):
                state.first = first
            if last and (state.last is None or last > state.last):
                state.last = last
    for row in hourly.rows:
        asset, dataset, program, hour_start = row.key
        if not asset or _own(dataset):
            continue
        hour = (int(ecs.parse_time(hour_start).timestamp()) - start_epoch) // 3600
        for name in sources_of(dataset or "", program if isinstance(program, str) else "") - {"other"}:
            pairs[(asset, name)].hours.add(hour)
    for (asset, name), state in pairs.items():
        state.first_id = _event_at(store, window, asset, name, state.first)
        state.last_id = _event_at(store, window, asset, name, state.last)


def _event_at(store: Store, window: dict, asset: str, source: str, moment: str | None) -> str | None:
    """The id of an event of this asset and source at this moment (the first or last one, for the evidence)."""
    if not moment:
        return None
    end = ecs.utc_iso(ecs.parse_time(moment) + timedelta(milliseconds=1))
    for doc in store.search_events(EventQuery(start=moment, end=end, agency=window["agency"],
                                              terms={"soc.asset.id": asset}, limit=50)):
        program = ecs.get(doc, "process.name")
        if source in sources_of(ecs.get(doc, "event.dataset") or "", program if isinstance(program, str) else ""):
            return ecs.get(doc, "event.id")
    return None


def _sample_ids(store: Store, window: dict, data: ReportData, biggest: dict) -> None:
    """A few event ids behind each severity and each source figure."""
    for severity in data.events_by_severity:
        if severity == "unknown":
            continue
        number = SYSLOG_SEVERITIES.index(severity) if severity in SYSLOG_SEVERITIES else None
        for terms in ({"log.syslog.severity.name": severity},) + (({"event.severity": number},)
                                                                  if number is not None else ()):
            for doc in _samples(store, window, terms):
                if event_severity(doc) == severity:
                    data.ev(f"events_by_severity:{severity}").add_event(ecs.get(doc, "event.id"))
    for name, (_, dataset, program) in biggest.items():
        # By dataset only, then checked here: the counts' keys are lowercased (as the engines index events'
        # strings), and a program such as "CRON" is stored as written.
        ev = data.ev(f"events_by_source:{name}")
        for doc in _samples(store, window, {"event.dataset": dataset} if dataset else {}, limit=500):
            found = ecs.get(doc, "process.name")
            if name in (sources_of(ecs.get(doc, "event.dataset") or "", found if isinstance(found, str) else "")
                        or frozenset({"other"})):
                ev.add_event(ecs.get(doc, "event.id"))


def _samples(store: Store, window: dict, terms: dict, limit: int = MAX_EVIDENCE_EVENTS) -> list[dict]:
    found = store.search_events(EventQuery(start=window["start"], end=window["end"], agency=window["agency"],
                                           terms=terms, limit=limit))
    return [d for d in found if not _own(ecs.get(d, "event.dataset"))]


def _source_rows(inventory: Inventory, agencies: list[str], period: Period, pairs: dict, data: ReportData,
                 options: GatherOptions) -> None:
    wanted = set(agencies)
    expected = {(a.id, s) for a in inventory.assets.values() if a.agency in wanted for s in a.log_sources}
    total_hours = period.hours()
    for asset_id, source in sorted(expected | set(pairs)):
        asset = inventory.assets.get(asset_id)
        if asset is None or asset.agency not in wanted:
            continue
        state = pairs.get((asset_id, source))
        row = SourceRow(asset=asset_id, hostname=asset.hostname, agency=asset.agency, source=source,
                        expected=(asset_id, source) in expected)
        threshold = max(options.gap_hours_min, silent_after(source) / 3600)
        ev = data.ev(row.key)
        ev.query = {"start": period.start_iso, "end": period.end_iso, "agency": asset.agency,
                    "terms": {"soc.asset.id": asset_id}, "log_source": source}
        if state is not None and state.events:
            row.events, row.first_seen, row.last_seen = state.events, state.first, state.last
            ev.add_event(state.first_id)
            ev.add_event(state.last_id)
            row.gaps = _gaps(sorted(state.hours), total_hours, threshold, period)
            trailing = row.gaps and row.gaps[-1][1] == period.end_iso
            row.status = "silent" if trailing else ("gaps" if row.gaps else "ok")
            if not row.expected:
                row.status = "unexpected"
        else:
            row.status = "never"
            row.gaps = [(period.start_iso, period.end_iso, float(total_hours))]
        data.sources.append(row)


def _gaps(hours: list[int], total: int, threshold: float, period: Period) -> list[tuple[str, str, float]]:
    """Runs of hours without an event, including before the first and after the last, that are unusual for this
    source: at least ``threshold`` long and at least twice its usual quiet spell (the 90th percentile of the runs
    between its events), so a server whose logins stop every night is not reported as broken every morning."""
    out = []
    quiet = sorted(b - a - 1 for a, b in zip(hours, hours[1:]))
    if quiet:
        threshold = max(threshold, 2 * quiet[int(0.9 * (len(quiet) - 1))])
    edges = [-1] + hours + [total]
    for before, after in zip(edges, edges[1:]):
        empty = after - before - 1
        if empty >= threshold:
            start = period.start + timedelta(hours=before + 1)
            end = min(period.start + timedelta(hours=after), period.end)
            out.append((ecs.utc_iso(start), ecs.utc_iso(end), float(empty)))
    return out


# --- alerts ------------------------------------------------------------------------------------------------------
def _scan_alerts(store: Store, scope: str | None, period: Period, data: ReportData,
                 options: GatherOptions) -> list[dict]:
    alerts: list[dict] = []
    after = None
    buckets = len(data.bucket_labels)
    over_time: dict[str, list[int]] = defaultdict(lambda: [0] * buckets)
    while True:
        page = store.list_alerts(AlertQuery(agency=scope, since=period.start_iso, limit=ALERT_PAGE, after=after))
        for alert in page:
            if alert.get("first_seen", alert["last_seen"]) < period.end_iso:
                alerts.append(alert)
        if options.progress:
            options.progress("alerts", len(alerts))
        if len(page) < ALERT_PAGE:
            break
        after = (page[-1]["last_seen"], page[-1]["id"])
    alerts.sort(key=lambda a: (a.get("first_seen", ""), a["id"]))
    for alert in alerts:
        alert_id = alert["id"]
        data.alerts_total += 1
        severity = alert.get("severity", "medium")
        data.alerts_by_severity[severity] += 1
        data.ev(f"alerts_by_severity:{severity}").add_alert(alert_id)
        title = ecs.get(alert, "rule.title") or ecs.get(alert, "rule.name") or "?"
        data.alerts_by_rule[title] += 1
        data.ev(f"alerts_by_rule:{title}").add_alert(alert_id)
        tactics = list(ecs.get(alert, "threat.tactic") or []) or ["none"]
        first = ecs.parse_time(alert.get("first_seen") or alert["last_seen"])
        bucket = max(period.bucket_of(first), 0)
        for tactic in tactics:
            data.alerts_by_tactic[tactic] += 1
            data.ev(f"alerts_by_tactic:{tactic}").add_alert(alert_id)
            if bucket < buckets:
                over_time[tactic][bucket] += 1
    data.alerts_over_time = dict(over_time)
    return alerts


def _evidence_events(store: Store, alerts: list[dict]) -> dict[str, dict]:
    ids = [eid for a in alerts for eid in a.get("evidence", [])]
    found: dict[str, dict] = {}
    for i in range(0, len(ids), 500):
        for doc in store.get_events(ids[i:i + 500]):
            found[ecs.get(doc, "event.id")] = doc
    return found


def _attack_addresses(store: Store, alerts: list[dict]) -> dict[str, dict[str, list[str]]]:
    """alert id -> {attacking address: [evidence event ids]}: the alert's source.ip label, else its events'."""
    need = [a for a in alerts if not ecs.get(a, "labels.source.ip") and a.get("evidence")]
    events = _evidence_events(store, need)
    out: dict[str, dict[str, list[str]]] = {}
    for alert in alerts:
        addresses: dict[str, list[str]] = {}
        label = (alert.get("labels") or {}).get("source.ip")
        if label:
            addresses[str(label)] = list(alert.get("evidence", []))
        else:
            for eid in alert.get("evidence", []):
                doc = events.get(eid)
                ip = ecs.get(doc, "source.ip") if doc else None
                if ip:
                    addresses.setdefault(str(ip), []).append(eid)
        out[alert["id"]] = addresses
    return out


def _assets_of(inventory: Inventory, alert: dict) -> list[str]:
    names = list((alert.get("entities") or {}).get("host", []))
    label = (alert.get("labels") or {}).get("host.name")
    if label and label not in names:
        names.insert(0, label)
    assets = []
    for name in names:
        asset = inventory.asset_by_name(name)
        key = asset.id if asset else name
        if key not in assets:
            assets.append(key)
    if not assets and (alert.get("labels") or {}).get("soc.asset.id"):
        assets.append(alert["labels"]["soc.asset.id"])
    return assets


def _top_assets(inventory: Inventory, alerts: list[dict], data: ReportData,
                options: GatherOptions) -> list[AssetRow]:
    rows: dict[str, AssetRow] = {}
    for alert in alerts:
        for asset_id in _assets_of(inventory, alert):
            asset = inventory.assets.get(asset_id)
            row = rows.get(asset_id)
            if row is None:
                row = rows[asset_id] = AssetRow(
                    asset=asset_id, hostname=asset.hostname if asset else asset_id,
                    agency=asset.agency if asset else ecs.get(alert, "organization.id") or "",
                    criticality=asset.criticality.value if asset else "?")
            row.alerts += 1
            row.events += int(alert.get("count", 1))
            row.by_severity[alert.get("severity", "medium")] += 1
            row.rules[ecs.get(alert, "rule.title") or "?"] += 1
            ev = data.ev(row.key)
            ev.add_alert(alert["id"])
            for eid in alert.get("evidence", [])[:3]:
                ev.add_event(eid)
            data.ev(f"repeated:{asset_id}|{ecs.get(alert, 'rule.title') or '?'}").add_alert(alert["id"])
    ranked = sorted(rows.values(), key=lambda r: (-r.alerts, -r.events, r.asset))
    data.top_assets = ranked[: options.top_n]
    return ranked  # repeated-alert recommendations look at every asset, not only the top ones


def _top_attackers(inventory: Inventory, alerts: list[dict], attackers_of: dict, data: ReportData,
                   options: GatherOptions) -> None:
    blocked = {b.address for run in data.playbook_runs for b in run.blocks}
    rows: dict[str, AttackerRow] = {}
    for alert in alerts:
        for address, event_ids in attackers_of.get(alert["id"], {}).items():
            if inventory.asset_by_ip(address) is not None:
                continue  # the suite's own assets are victims or relays here, not attackers to list
            row = rows.get(address)
            if row is None:
                zone = "government" if inventory.is_government(address) else "outside"
                row = rows[address] = AttackerRow(address=address, zone=zone, blocked=address in blocked)
            row.alerts += 1
            row.events += len(event_ids) or int(alert.get("count", 1))
            row.agencies.add(ecs.get(alert, "organization.id") or "?")
            first, last = alert.get("first_seen"), alert.get("last_seen")
            row.first_seen = min(filter(None, [row.first_seen, first]), default=None)
            row.last_seen = max(filter(None, [row.last_seen, last]), default=None)
            ev = data.ev(row.key)
            ev.add_alert(alert["id"])
            for eid in event_ids[:5]:
                ev.add_event(eid)
    data.top_attackers = sorted(rows.values(), key=lambda r: (-r.alerts, -r.events, r.address))[: options.top_n]


def _handled(store: Store, scope: str | None, period: Period, alerts: list[dict], data: ReportData) -> None:
    found = records.incidents(store, scope, period.start_iso, period.end_iso)
    if found:
        data.handled_kind = "incidents"
        data.handled = [HandledRow(id=i.id, kind="incident", title=i.title, severity=i.severity, status=i.status,
                                   opened=i.opened, acknowledged=i.acknowledged, resolved=i.resolved,
                                   alert_ids=i.alert_ids) for i in found]
        for row in data.handled:
            ev = data.ev(f"handled:{row.id}")
            ev.add_other(records.INCIDENTS, row.id)
            for alert_id in row.alert_ids:
                ev.add_alert(alert_id)
        return
    # No incident records: the alerts an analyst has touched (acknowledged or closed), and every open high or
    # critical alert (not yet acknowledged is itself a finding).
    rows = []
    for alert in alerts:
        ack, resolved = records.status_times(alert.get("history") or [])
        ack = alert.get("acknowledged_at") or ack  # detections/lifecycle.py keeps these on the alert
        resolved = alert.get("closed_at") or resolved
        if ack or resolved or severity_at_least(alert.get("severity"), Severity.high):
            rows.append(HandledRow(id=alert["id"], kind="alert", title=alert.get("summary") or
                                   ecs.get(alert, "rule.title") or alert["id"], severity=alert.get("severity", "?"),
                                   status=alert.get("status", "?"), opened=alert.get("first_seen") or alert["last_seen"],
                                   acknowledged=ack, resolved=resolved, alert_ids=[alert["id"]]))
            data.ev(f"handled:{alert['id']}").add_alert(alert["id"])
    data.handled = rows
    data.handled_kind = "alerts" if rows else "none"


def _coverage(ruleset: RuleSet, datasets: set[tuple[str, str]], alerts: list[dict], data: ReportData) -> None:
    descriptors = tuple(d for ds, prog in datasets
                        for d in event_descriptors({"event.dataset": ds, "process.name": prog}))
    fired = Counter(ecs.get(a, "rule.id") for a in alerts)
    applicable: dict[str, bool] = {}
    for rule in ruleset.rules:
        applicable[rule.meta.id] = applies(rule.logsource, descriptors) if descriptors else False
        if rule.meta.name:
            applicable[rule.meta.name] = applicable[rule.meta.id]
        ls = ", ".join(f"{k}={v}" for k, v in rule.logsource.items() if v)
        data.rules.append(RuleRow(id=rule.meta.id, title=rule.meta.title, level=rule.meta.level, kind="detection",
                                  tactics=rule.meta.tactics, techniques=rule.meta.techniques, logsource=ls,
                                  applicable=applicable[rule.meta.id], alerts=fired.get(rule.meta.id, 0)))
    for corr in ruleset.correlations:
        ok = all(applicable.get(ref, False) for ref in corr.rules)
        applicable[corr.meta.id] = ok
        if corr.meta.name:
            applicable[corr.meta.name] = ok
        data.rules.append(RuleRow(id=corr.meta.id, title=corr.meta.title, level=corr.meta.level, kind="correlation",
                                  tactics=corr.meta.tactics, techniques=corr.meta.techniques,
                                  logsource=f"{corr.type}({len(corr.rules)})", applicable=ok,
                                  alerts=fired.get(corr.meta.id, 0)))
    ids = {r.id for r in data.rules}
    for alert in alerts:
        rule_id = ecs.get(alert, "rule.id")
        if rule_id in ids:
            data.ev(f"coverage:{rule_id}").add_alert(alert["id"])


def _by_agency(inventory: Inventory, per_agency_events: Counter, alerts: list[dict], data: ReportData) -> None:
    rows = {aid: AgencyRow(agency=aid, name=a.name_vi) for aid, a in inventory.agencies.items()}
    for aid, count in per_agency_events.items():
        if aid in rows:
            rows[aid].events = count
    for alert in alerts:
        aid = ecs.get(alert, "organization.id")
        if aid in rows:
            rows[aid].alerts += 1
            rows[aid].high_alerts += severity_at_least(alert.get("severity"), Severity.high)
            data.ev(rows[aid].key).add_alert(alert["id"])
    for row in data.sources:
        if row.agency in rows and row.expected:
            rows[row.agency].sources_expected += 1
            rows[row.agency].sources_reporting += bool(row.events)
            rows[row.agency].silent_sources += row.status in ("silent", "never")
    for row in rows.values():
        data.ev(row.key).query = {"start": data.period_start, "end": data.period_end, "agency": row.agency}
    data.by_agency = sorted((r for r in rows.values() if r.events or r.alerts or r.sources_expected),
                            key=lambda r: (-r.high_alerts, -r.alerts, -r.events, r.agency))

