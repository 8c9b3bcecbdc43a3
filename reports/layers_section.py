"""The report's section on the four layers of protection and the KPI L3.N2.PN1.01 (reports/layers.py computes
them; docs/four-layers.md has the formula): gathered once per report (:func:`gather_layers`, called from gather),
laid out in each language (:func:`lay_out`, called from layout).

Which assets' log sources report is the report's own decision, its per-source rows: an expected source that sent
events in the period and was not silent at its end (status ok or gaps). The data centre's antivirus console, when
it serves an agency and is outside the report's scope, is asked of the store the same way (events before the end,
within the source's silence threshold).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from collectors.sources.log_source_table import silent_after
from reports import layers
from reports.i18n import Texts
from reports.model import ReportData
from reports.periods import Period
from soc import ecs
from soc.storage.aggregations import AggregateQuery, Metric
from soc.storage.base import Store

REPORTED = ("ok", "gaps")
MAX_ROWS = 400


def _reporting(store: Store, inventory, data: ReportData, period: Period) -> dict[str, bool]:
    rows: dict[str, list[bool]] = {}
    for row in data.sources:
        if row.expected:
            rows.setdefault(row.asset, []).append(row.status in REPORTED)
    out = {asset: all(found) for asset, found in rows.items()}
    others = [a for a in inventory.assets.values()
              if a.kind.value == "antivirus_console" and a.log_sources and a.id not in out]
    if others:
        longest = max(silent_after(s) for a in others for s in a.log_sources)
        found = store.aggregate(AggregateQuery(
            start=ecs.utc_iso(period.end - timedelta(seconds=longest)), end=period.end_iso,
            terms={"soc.sender.asset": [a.id for a in others]}, group_by=("soc.sender.asset",),
            metrics=(Metric("last", "max", "@timestamp"),)))
        last = {row.key[0]: row.values.get("last") for row in found.rows}
        for asset in others:
            since = ecs.utc_iso(period.end - timedelta(seconds=min(silent_after(s) for s in asset.log_sources)))
            out[asset.id] = isinstance(last.get(asset.id), str) and last[asset.id] >= since
    return out


def gather_layers(store: Store, inventory, scope: str | None, agency_ids: list[str], period: Period,
                  data: ReportData) -> None:
    """Fill ``data.layers`` for the period (the report is of a finished period, or of the part that has passed)."""
    now = ecs.now_iso()
    end = min(period.end_iso, now)
    if end <= period.start_iso:
        return
    data.layers = layers.compute(inventory, agency_ids, period.start_iso, end, aggregate=store.aggregate,
                                 shared_aggregate=store.aggregate, reporting=_reporting(store, inventory, data,
                                                                                         period),
                                 now=now, scope=scope)
    data.layers["names"] = {a: (inventory.agencies[a].name_vi, inventory.agencies[a].name_en)
                            for a in data.layers["agencies"]}
    for agency_id in data.layers["agencies"]:  # what reproduces the figures: the period and the agency
        data.ev(evidence_key(agency_id)).query = {"start": period.start_iso, "end": end, "agency": agency_id,
                                                   "collections": ["alerts", "events", layers.FINDINGS,
                                                                   layers.ASSESSMENT_RUNS, layers.INDICATORS,
                                                                   layers.SIGHTINGS, layers.POSTURE_PUSHES]}


def evidence_key(agency_id: str) -> str:
    return f"layers:{agency_id}"


def _hours(seconds: Any, f) -> str:
    return f.num(seconds / 3600) if isinstance(seconds, (int, float)) else "-"


def reason_text(t: Texts, f, reason: dict) -> str:
    """One reason in words, its figures formatted for the language (hours, local times)."""
    values = dict(reason)
    for name in ("median_seconds", "target_seconds"):
        if name in values:
            values[name.replace("_seconds", "_hours")] = _hours(values[name], f)
    for name in ("share_percent", "target_percent", "days_before_end"):
        if isinstance(values.get(name), (int, float)):
            values[name] = f.num(values[name])
    if "last" in values:
        values["last"] = f.time(values["last"])
    if isinstance(values.get("silent_assets"), list):
        values["silent_assets"] = ", ".join(values["silent_assets"]) or "-"
    if isinstance(values.get("consoles"), list):
        values["consoles"] = ", ".join(values["consoles"]) + (t("layers.reason.central") if values.get("central")
                                                              else "")
    return t(f"layers.reason.{reason['code']}", **values)


def lay_out(data: ReportData, t: Texts, f, blocks: list, heading, paragraph, table_block, label) -> None:
    """The section: the formula, the province's KPI (roll-up), each agency's layers and KPI, and the reasons.
    ``heading``, ``paragraph``, ``table_block``: the layout's block types; ``label``: its evidence numbering
    (reports/layout.py)."""

    def table(headers: list[str], rows: list[tuple[str, list[str]]], widths: list[float], numeric: set[int]) -> None:
        shown = rows[:MAX_ROWS]
        labels = [label(evidence_key(agency_id), agency_id) for agency_id, _ in shown]
        blocks.append(table_block(headers + [t("cols.ev")], [r for _, r in shown], labels, widths, numeric))
        if len(rows) > MAX_ROWS:
            blocks.append(paragraph(t("more", n=len(rows) - MAX_ROWS), "note"))

    blocks.append(heading(t("layers.title"), "s-layers"))
    blocks.append(paragraph(t("layers.intro")))
    found = data.layers
    if not found or not found.get("agencies"):
        blocks.append(paragraph(t("no_data"), "note"))
        return
    target = f.num(found["targets"]["kpi_target_percent"], 0)
    blocks.append(paragraph(t("layers.formula", target=target)))
    if found["period"]["end"] < data.period_end:
        blocks.append(paragraph(t("layers.in_progress", end=f.time(found["period"]["end"])), "note"))
    province = found.get("province")
    if data.rollup and province:
        blocks.append(paragraph(t("layers.province", period=data.period, percent=f.num(province["percent"]),
                                  target=target, met=t("layers.met" if province["meets_target"] else "layers.not_met"),
                                  meeting=f.int(province["agencies_meeting_target"]),
                                  agencies=f.int(province["agencies"]),
                                  all_ok=f.int(province["agencies_all_layers_ok"]))))
    names = found.get("names", {})

    def name_of(agency_id: str) -> str:
        vi, en = names.get(agency_id, (agency_id, agency_id))
        return vi if t.lang == "vi" else en

    rows, reasons = [], []
    for agency_id, entry in found["agencies"].items():
        kpi = entry["kpi"]
        if not data.rollup:
            blocks.append(paragraph(t("layers.agency", name=name_of(agency_id), period=data.period,
                                      percent=f.num(kpi["percent"]), target=target,
                                      met=t("layers.met" if kpi["meets_target"] else "layers.not_met"))))
        rows.append((agency_id, [name_of(agency_id)] + [t(f"layers.state.{entry['layers'][n]['state']}")
                                                        for n in layers.LAYERS] + [f"{f.num(kpi['percent'])} %"]))
        for name in layers.LAYERS:
            layer = entry["layers"][name]
            for reason in layer["reasons"]:
                reasons.append((agency_id, [name_of(agency_id), t(f"layers.name.{name}"),
                                            t(f"layers.state.{layer['state']}"), reason_text(t, f, reason)]))
    table([t("layers.col_agency")] + [t(f"layers.name.{n}") for n in layers.LAYERS] + [t("layers.col_kpi")], rows,
          [2.6, 1.2, 1.2, 1.2, 1.2, 0.9], {5})
    table([t("layers.col_agency"), t("layers.col_layer"), t("layers.col_state"), t("layers.col_reason")], reasons,
          [2, 1.8, 1.1, 5], set())
