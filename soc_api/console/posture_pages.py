"""What the posture page shows, shaped from the document ``GET /api/v1/posture`` serves (soc_api/posture.py
``build_posture``, called with the user's Data: an agency user's document holds its own agency and nothing else).

Per agency: log sources reporting against expected and the silent assets, open alerts by severity, the alerts of the
window and the mean times to acknowledge and resolve, playbook runs by state, ATT&CK techniques seen and those seen
that no loaded rule covers; for the province (analysts, the national centre, admins): the roll-up, and the rule
health and coverage of the suite.
"""

from __future__ import annotations

from typing import Any, Mapping

from reports.i18n import Texts
from reports.layers import LAYERS
from reports.layers_section import reason_text
from soc import ecs
from soc_api.console.alerts import agency_name, name_key
from soc_api.console.i18n import translate
from soc_api.console.overview import SEVERITY_ORDER, duration, percent

SILENT_SHOWN = 300  # silent assets listed at most (the count is always whole)
TECHNIQUES_SHOWN = 60


def run_states(runs: Mapping[str, int] | None, lang: str) -> dict[str, int]:
    """Playbook runs by state, each state in the page's language (the approvals pages' words), in a stable order."""
    out = {}
    for state, count in sorted((runs or {}).items()):
        key = f"approvals.state.{state}"
        label = translate(lang, key)
        out[state if label == key else label] = int(count)
    return out


def agency_row(agency: Mapping[str, Any], inventory, lang: str) -> dict[str, Any]:
    sources = agency.get("log_sources") or {}
    expected, reporting = int(sources.get("expected") or 0), int(sources.get("reporting") or 0)
    open_alerts = agency.get("open_alerts") or {}
    attack = agency.get("attack") or {}
    return {
        "id": agency["id"],
        "name": agency_name(inventory, agency["id"], lang) or (agency.get("name_vi") if lang == "vi"
                                                               else agency.get("name")) or agency["id"],
        "kind": agency.get("kind", ""),
        "expected": expected,
        "reporting": reporting,
        "percent": percent(reporting, expected),
        "silent": list(sources.get("silent") or []),
        "open": {s: int(open_alerts.get(s, 0)) for s in SEVERITY_ORDER},
        "open_total": sum(int(open_alerts.get(s, 0)) for s in SEVERITY_ORDER),
        "alerts_in_window": agency.get("alerts_in_window", 0),
        "tta": duration(agency.get("mean_time_to_acknowledge_seconds"), lang),
        "ttr": duration(agency.get("mean_time_to_resolve_seconds"), lang),
        "events_per_second": agency.get("events_per_second"),
        "events_total": agency.get("events_total"),
        "runs": run_states(agency.get("playbook_runs"), lang),
        "seen": list(attack.get("seen") or []),
        "uncovered": list(attack.get("seen_not_covered") or []),
    }


def posture_view(document: Mapping[str, Any], inventory, lang: str) -> dict[str, Any]:
    """The page's context from a posture document: agencies by name (the province's own offices first), the
    silent assets of every agency (at most SILENT_SHOWN), the roll-up when there is one."""
    province_id = inventory.document.province.id
    rows = [agency_row(a, inventory, lang) for a in document.get("agencies") or []]
    rows.sort(key=lambda r: (r["id"] != province_id, name_key(r["name"])))
    silent = [{"agency": r, **s, "interval_text": duration(s.get("interval_seconds"), lang)}
              for r in rows for s in r["silent"]]
    rollup = document.get("province")
    province = None
    if rollup:
        sources = rollup.get("log_sources") or {}
        province = {
            "expected": sources.get("expected", 0),
            "reporting": sources.get("reporting", 0),
            "silent": sources.get("silent", 0),
            "percent": percent(sources.get("reporting", 0), sources.get("expected", 0)),
            "open": {s: int((rollup.get("open_alerts") or {}).get(s, 0)) for s in SEVERITY_ORDER},
            "open_total": sum(int((rollup.get("open_alerts") or {}).get(s, 0)) for s in SEVERITY_ORDER),
            "alerts_in_window": rollup.get("alerts_in_window", 0),
            "tta": duration(rollup.get("mean_time_to_acknowledge_seconds"), lang),
            "ttr": duration(rollup.get("mean_time_to_resolve_seconds"), lang),
            "events_per_second": rollup.get("events_per_second"),
            "events_total": rollup.get("events_total"),
            "runs": run_states(rollup.get("playbook_runs"), lang),
            "seen": list(rollup.get("attack_seen") or []),
        }
    layers = layers_view(document, rows, lang)
    covered = list(document.get("attack_covered") or [])
    seen = province["seen"] if province else sorted({t for r in rows for t in r["seen"]})
    uncovered = sorted({t for r in rows for t in r["uncovered"]})
    return {
        "rows": rows,
        "single": rows[0] if len(rows) == 1 and province is None else None,
        "silent": silent[:SILENT_SHOWN],
        "silent_total": len(silent),
        "silent_shown": SILENT_SHOWN,
        "province": province,
        "window": document.get("window") or {},
        "generated": document.get("generated"),
        "rule_health": document.get("rule_health") or {},
        "covered_count": len(covered),
        "seen": seen,
        "uncovered": uncovered[:TECHNIQUES_SHOWN],
        "uncovered_total": len(uncovered),
        "severities": SEVERITY_ORDER,
        "layers": layers,
    }


class _Format:
    """Numbers as the monthly report writes them in each language, times in UTC (reports/layout.py Formatter)."""

    def __init__(self, lang: str):
        self.lang = lang

    def num(self, value: float | None, digits: int = 1) -> str:
        if value is None:
            return "-"
        text = f"{value:,.{digits}f}"
        return text.replace(",", "\0").replace(".", ",").replace("\0", ".") if self.lang == "vi" else text

    def time(self, iso: str | None) -> str:
        try:
            return ecs.parse_time(iso).strftime("%Y-%m-%d %H:%M UTC") if iso else "-"
        except ValueError:
            return str(iso)


def layers_view(document: Mapping[str, Any], rows: list[dict], lang: str) -> dict[str, Any] | None:
    """The four layers and the KPI of each agency (its reasons in the monthly report's words, times in UTC) and the
    province's KPI, when the document has them."""
    period = document.get("layers_period")
    if not period:
        return None
    t, f = Texts(lang), _Format(lang)
    by_id = {a["id"]: a for a in document.get("agencies") or []}
    agencies = []
    for row in rows:
        entry = by_id.get(row["id"]) or {}
        if "layers" not in entry:
            continue
        layers = [{"name": t(f"layers.name.{n}"), "state": entry["layers"][n]["state"],
                   "state_text": t(f"layers.state.{entry['layers'][n]['state']}"),
                   "reasons": [reason_text(t, f, r) for r in entry["layers"][n]["reasons"]]} for n in LAYERS]
        agencies.append({"name": row["name"], "layers": layers, "kpi": entry["kpi"],
                         "kpi_text": f.num(entry["kpi"]["percent"]) + " %"})
    province = (document.get("province") or {}).get("kpi")
    return {"month": period.get("month"), "complete": period.get("complete"), "agencies": agencies,
            "layer_names": [t(f"layers.name.{n}") for n in LAYERS],
            "target": f.num((period.get("targets") or {}).get("kpi_target_percent", 30.0), 0),
            "province": province, "province_text": f.num(province["percent"]) + " %" if province else None}
