"""The four layers and the KPI in the posture document (``GET /api/v1/posture``, the push to the national centre,
the console's posture page): ``layers`` and ``kpi`` per agency, ``kpi`` for the province (when the caller sees the
province), for a month — the current one so far, or a past one asked for with ``?month=2026-10``.

The computation is reports/layers.py (the monthly report shows the same); this module only decides which assets'
log sources report: for the current month, posture's own decision (already made for the document's agencies, and
made the same way for the data centre's antivirus console), for a past month, whether each asset sent events in
the last of its silence interval before the month's end (the same rule as of that moment), counted by the store.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Callable

from inventory.model import AgencyKind, AssetKind
from reports import layers
from reports.periods import Period, parse_period
from soc import ecs
from soc.storage.aggregations import AggregateQuery, Metric
from soc_api.data import Data
from soc_api.settings import api_settings


class LayersPeriodError(ValueError):
    """A month the layers cannot be given for (one to come)."""


def month_period(suite, month: str | None, now: datetime) -> Period:
    """The month asked for (``YYYY-MM``), else the current local month; PeriodError for anything else."""
    label = month or now.astimezone(suite.settings.tz).strftime("%Y-%m")
    return parse_period(label, suite.settings.tz)


def _console_agencies(suite, agency_ids: list[str]) -> set[str]:
    """The agencies whose antivirus consoles serve ``agency_ids``: their own, and the data centre's."""
    inventory = suite.inventory
    out = set()
    for asset in inventory.assets.values():
        if asset.kind != AssetKind.antivirus_console:
            continue
        owner = inventory.agencies.get(asset.agency)
        if asset.agency in agency_ids or (owner is not None and owner.kind == AgencyKind.datacentre):
            out.add(asset.agency)
    return out


def _reporting_now(data: Data, document: dict, scope: str | None, now: datetime,
                   log_sources: Callable) -> dict[str, bool]:
    """Posture's decision, as the document already holds it per agency (silent assets listed), and for the
    agencies of the consoles that serve them."""
    inventory = data.suite.inventory
    silent_of: dict[str, set[str]] = {}
    for entry in document["agencies"]:
        silent_of[entry["id"]] = {s["asset"] for s in entry["log_sources"]["silent"]}
    missing = sorted(_console_agencies(data.suite, list(silent_of)) - set(silent_of))
    if missing:  # the data centre's console, for an agency's own view: a yes or no, nothing else of the centre
        for agency_id, sources in log_sources(data, missing, None, now).items():
            silent_of[agency_id] = {s["asset"] for s in sources["silent"]}
    return {a.id: a.id not in silent_of[a.agency] for a in inventory.assets.values()
            if a.agency in silent_of and a.log_sources}


def _reporting_then(data: Data, agency_ids: list[str], end: datetime) -> dict[str, bool]:
    """For a past month: each asset's last event it sent itself (``soc.sender.asset``) before the month's end,
    within its silence interval of the end."""
    suite = data.suite
    cfg = api_settings(suite).posture
    wanted = set(agency_ids) | _console_agencies(suite, agency_ids)
    assets = [a for a in suite.inventory.assets.values() if a.agency in wanted and a.log_sources]
    if not assets:
        return {}
    longest = max(min(cfg.source_intervals.get(s, cfg.default_source_interval_seconds) for s in a.log_sources)
                  for a in assets)
    end_iso = ecs.utc_iso(end)
    found = data.store.aggregate(AggregateQuery(
        start=ecs.utc_iso(end - timedelta(seconds=longest)), end=end_iso,
        terms={"soc.sender.asset": [a.id for a in assets]}, group_by=("soc.sender.asset",),
        metrics=(Metric("last", "max", "@timestamp"),)))
    last = {row.key[0]: row.values.get("last") for row in found.rows}
    out = {}
    for asset in assets:
        interval = min(cfg.source_intervals.get(s, cfg.default_source_interval_seconds) for s in asset.log_sources)
        since = ecs.utc_iso(end - timedelta(seconds=interval))
        out[asset.id] = isinstance(last.get(asset.id), str) and last[asset.id] >= since
    return out


def add_layers(data: Data, document: dict[str, Any], now: datetime, month: str | None,
               log_sources: Callable) -> None:
    """Add ``layers`` and ``kpi`` to each agency of a posture document, ``kpi`` to its province roll-up and
    ``layers_period`` to the document. ``log_sources``: posture's decision function (soc_api.posture)."""
    period = month_period(data.suite, month, now)
    scope = None if document.get("scope") == "province" else document.get("scope")
    agency_ids = [a["id"] for a in document["agencies"]]
    current = period.start <= now < period.end
    end = now if current else min(period.end, now)
    if end <= period.start:
        raise LayersPeriodError(f"{period.label} has not begun")
    reporting = _reporting_now(data, document, scope, now, log_sources) if current else \
        _reporting_then(data, agency_ids, end)
    result = layers.compute(data.suite.inventory, agency_ids, period.start_iso, ecs.utc_iso(end),
                            aggregate=data.aggregate, shared_aggregate=data.store.aggregate, reporting=reporting,
                            now=ecs.utc_iso(now), scope=scope)
    for entry in document["agencies"]:
        found = result["agencies"].get(entry["id"])
        if found is not None:
            entry["layers"], entry["kpi"] = found["layers"], found["kpi"]
    document["layers_period"] = {"month": period.label, "start": period.start_iso, "end": ecs.utc_iso(end),
                                 "complete": not current, "targets": result["targets"]}
    if "province" in document and "province" in result:
        document["province"]["kpi"] = result["province"]
