"""The report as a list of neutral blocks (headings, paragraphs, tables, charts, evidence), built once from the
report data and rendered by both backends (reports/render_html.py, reports/render_pdf.py), so the HTML and the PDF
always say the same thing.

Every table row that shows a number carries the key of its evidence; the layout numbers evidence in order of first
reference (E1, E2, ...) and the evidence appendix lists them with the alert ids, sample event ids and queries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from statistics import median
from typing import Any
from zoneinfo import ZoneInfo

from reports import charts, digest_section, findings_section, layers_section
from reports.i18n import Texts
from reports.model import Evidence, ReportData
from soc import ecs
from soc.vocabulary import SEVERITIES, Severity, severity_at_least

WORST_FIRST = SEVERITIES[::-1]  # the order severities are shown in
MAX_TABLE_ROWS = 200


@dataclass
class Heading:
    text: str
    anchor: str
    level: int = 1


@dataclass
class Paragraph:
    text: str
    style: str = "body"  # body | note | title | subtitle


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]
    evidence: list[str | None]  # per row: an evidence label ("E3") or None
    widths: list[float] | None = None  # relative column widths
    numeric: set[int] = field(default_factory=set)  # right-aligned columns


@dataclass
class Chart:
    png: bytes
    caption: str
    evidence: list[str] = field(default_factory=list)  # labels of the evidence behind the chart


@dataclass
class EvidenceEntry:
    label: str  # E7
    key: str
    title: str
    evidence: Evidence


@dataclass
class Document:
    lang: str
    title: str
    subtitle: str
    meta: list[str]
    blocks: list[Any]
    evidence: list[EvidenceEntry]


class _Numbering:
    def __init__(self, data: ReportData):
        self.data = data
        self.order: dict[str, str] = {}
        self.titles: dict[str, str] = {}

    def label(self, key: str, title: str) -> str | None:
        ev = self.data.evidence.get(key)
        if ev is None or ev.empty:
            return None
        if key not in self.order:
            self.order[key] = f"E{len(self.order) + 1}"
            self.titles[key] = title
        return self.order[key]

    def entries(self) -> list[EvidenceEntry]:
        return [EvidenceEntry(label, key, self.titles[key], self.data.evidence[key])
                for key, label in self.order.items()]


class Formatter:
    def __init__(self, lang: str, zone: ZoneInfo):
        self.lang, self.zone = lang, zone

    def int(self, value: int) -> str:
        text = f"{value:,}"
        return text.replace(",", ".") if self.lang == "vi" else text

    def num(self, value: float | None, digits: int = 1) -> str:
        if value is None:
            return "-"
        text = f"{value:,.{digits}f}"
        if self.lang == "vi":
            text = text.replace(",", "\0").replace(".", ",").replace("\0", ".")
        return text

    def pct(self, part: int, whole: int) -> str:
        return self.num(100 * part / whole if whole else 0.0) + " %"

    def time(self, iso: str | None) -> str:
        if not iso:
            return "-"
        try:
            return ecs.parse_time(iso).astimezone(self.zone).strftime("%Y-%m-%d %H:%M")
        except ValueError:
            return iso

    def date(self, iso: str) -> str:
        return ecs.parse_time(iso).astimezone(self.zone).strftime("%Y-%m-%d")


def build(data: ReportData, lang: str, zone: ZoneInfo) -> Document:
    t = Texts(lang)
    f = Formatter(lang, zone)
    n = _Numbering(data)
    name = data.name_vi if lang == "vi" else data.name_en
    blocks: list[Any] = []
    bucket = t("text.bucket_day") if len(data.bucket_labels) > 20 else t("text.bucket_week")

    def section(key: str) -> None:
        blocks.append(Heading(t(f"sections.{key}"), f"s-{key}"))

    def table(headers, rows, keys, titles, widths=None, numeric=()) -> None:
        shown = list(zip(rows, keys, titles))[:MAX_TABLE_ROWS]
        labels = [n.label(k, ti) if k else None for _, k, ti in shown]
        blocks.append(Table([t(f"cols.{h}") for h in headers] + [t("cols.ev")], [r for r, _, _ in shown], labels,
                            widths, set(numeric)))
        if len(rows) > MAX_TABLE_ROWS:
            blocks.append(Paragraph(t("more", n=len(rows) - MAX_TABLE_ROWS), "note"))

    # 1. summary ------------------------------------------------------------------------------------------------
    section("summary")
    expected = [s for s in data.sources if s.expected]
    reporting = sum(1 for s in expected if s.events)
    silent = sum(1 for s in expected if s.status in ("silent", "never"))
    high = sum(n for s, n in data.alerts_by_severity.items() if severity_at_least(s, Severity.high))
    ttas = [h.tta_hours for h in data.handled if h.tta_hours is not None]
    ttrs = [h.ttr_hours for h in data.handled if h.ttr_hours is not None]
    blocked = sorted({b.address for r in data.playbook_runs for b in r.blocks})
    summary_rows = [
        ("events", f.int(data.events_total), "summary:events"),
        ("alerts", f.int(data.alerts_total), "summary:alerts"),
        ("high_alerts", f.int(high), "summary:high"),
        ("sources", f"{f.int(reporting)} / {f.int(len(expected))}", "summary:sources"),
        ("silent", f.int(silent), "summary:silent"),
        ("incidents", f.int(len(data.handled)), "summary:handled"),
        ("mtta", f"{f.num(median(ttas)) if ttas else '-'} h", "summary:mtta"),
        ("mttr", f"{f.num(median(ttrs)) if ttrs else '-'} h", "summary:mttr"),
        ("playbooks", f.int(len(data.playbook_runs)), "summary:playbooks"),
        ("blocked", f.int(len(blocked)), "summary:blocked"),
        ("indicators", f"{f.int(len(data.indicators_received))} / {f.int(len(data.indicators_shared))}",
         "summary:indicators"),
        ("recommendations", f.int(len(data.recommendations)), "summary:recommendations"),
    ]
    _summary_evidence(data)
    table(["name", "count"], [[t(f"summary.{k}"), v] for k, v, _ in summary_rows], [e for _, _, e in summary_rows],
          [t(f"summary.{k}") for k, _, _ in summary_rows], [3, 1], numeric=[1])
    if data.rollup and data.by_agency:
        blocks.append(Heading(t("sections.by_agency"), "s-by_agency", 2))
        blocks.append(Paragraph(t("text.by_agency_intro")))
        table(["agency", "events", "alerts", "high_alerts", "sources_ratio", "silent_sources"],
              [[f"{r.name} ({r.agency})", f.int(r.events), f.int(r.alerts), f.int(r.high_alerts),
                f"{r.sources_reporting}/{r.sources_expected}", f.int(r.silent_sources)] for r in data.by_agency],
              [r.key for r in data.by_agency], [r.agency for r in data.by_agency], [4, 1.3, 1, 1, 1, 1],
              numeric=[1, 2, 3, 4, 5])

    # 2. log sources --------------------------------------------------------------------------------------------
    section("sources")
    blocks.append(Paragraph(t("text.sources_intro")))
    if data.sources:
        rows = [[s.hostname, s.source, t.maybe("source_status", s.status), f.int(s.events), f.time(s.last_seen),
                 f.int(len(s.gaps)), f.num(s.longest_gap_hours, 0)] for s in data.sources]
        table(["host", "source", "status", "events", "last_seen", "gaps", "longest_gap"], rows,
              [s.key for s in data.sources], [f"{s.hostname} / {s.source}" for s in data.sources],
              [2.6, 1.6, 1.6, 1.1, 1.6, 0.8, 1], numeric=[3, 5, 6])
    else:
        blocks.append(Paragraph(t("no_data"), "note"))

    # 3. events -------------------------------------------------------------------------------------------------
    section("events")
    blocks.append(Paragraph(t("text.events_intro")))
    if data.events_total:
        series = {k: v for k, v in data.events_over_time.items()}
        chart = charts.stacked_bars(series, data.bucket_labels, t("text.chart_events", bucket=bucket),
                                    labels={k: k for k in series})
        blocks.append(Chart(chart, t("text.chart_events", bucket=bucket),
                            [x for x in (n.label(f"events_by_source:{k}", k) for k in sorted(series)) if x]))
        sev = sorted(data.events_by_severity.items(), key=lambda kv: -kv[1])
        table(["severity", "count", "share"], [[t.maybe("syslog_severity", k), f.int(v),
                                                f.pct(v, data.events_total)] for k, v in sev],
              [f"events_by_severity:{k}" for k, _ in sev], [t.maybe("syslog_severity", k) for k, _ in sev],
              [3, 1, 1], numeric=[1, 2])
        src = sorted(data.events_by_source.items(), key=lambda kv: -kv[1])
        table(["source", "count", "share"], [[k, f.int(v), f.pct(v, data.events_total)] for k, v in src],
              [f"events_by_source:{k}" for k, _ in src], [k for k, _ in src], [3, 1, 1], numeric=[1, 2])
    else:
        blocks.append(Paragraph(t("no_data"), "note"))

    # 4. alerts -------------------------------------------------------------------------------------------------
    section("alerts")
    blocks.append(Paragraph(t("text.alerts_intro")))
    if data.alerts_total:
        sev_counts = {t.maybe("severity", s): data.alerts_by_severity.get(s, 0) for s in WORST_FIRST}
        blocks.append(Chart(charts.bars(sev_counts, t("text.chart_severity"), colors=charts.SEVERITY_COLOURS),
                            t("text.chart_severity"),
                            [x for x in (n.label(f"alerts_by_severity:{s}", s) for s in WORST_FIRST) if x]))
        present = [s for s in WORST_FIRST if data.alerts_by_severity.get(s)]
        table(["severity", "count", "share"],
              [[t.maybe("severity", s), f.int(data.alerts_by_severity[s]), f.pct(data.alerts_by_severity[s],
                                                                                 data.alerts_total)]
               for s in present], [f"alerts_by_severity:{s}" for s in present],
              [t.maybe("severity", s) for s in present], [3, 1, 1], numeric=[1, 2])
        tactics = {t.maybe("tactic", k): v for k, v in data.alerts_over_time.items()}
        blocks.append(Chart(charts.stacked_bars(tactics, data.bucket_labels, t("text.chart_alerts", bucket=bucket)),
                            t("text.chart_alerts", bucket=bucket),
                            [x for x in (n.label(f"alerts_by_tactic:{k}", k) for k in sorted(data.alerts_over_time))
                             if x]))
        tac = sorted(data.alerts_by_tactic.items(), key=lambda kv: (-kv[1], kv[0]))
        table(["tactic", "count"], [[t.maybe("tactic", k), f.int(v)] for k, v in tac],
              [f"alerts_by_tactic:{k}" for k, _ in tac], [t.maybe("tactic", k) for k, _ in tac], [4, 1],
              numeric=[1])
        rules = sorted(data.alerts_by_rule.items(), key=lambda kv: (-kv[1], kv[0]))
        table(["rule", "count"], [[k, f.int(v)] for k, v in rules], [f"alerts_by_rule:{k}" for k, _ in rules],
              [k for k, _ in rules], [4, 1], numeric=[1])
    else:
        blocks.append(Paragraph(t("no_data"), "note"))

    # 5. assets -------------------------------------------------------------------------------------------------
    section("assets")
    blocks.append(Paragraph(t("text.assets_intro")))
    if data.top_assets:
        table(["host", "agency", "criticality", "alerts", "events_in_alerts", "rule"],
              [[a.hostname, a.agency, a.criticality, f.int(a.alerts), f.int(a.events),
                a.rules.most_common(1)[0][0] if a.rules else "-"] for a in data.top_assets],
              [a.key for a in data.top_assets], [a.hostname for a in data.top_assets], [2.2, 1.2, 1, 0.8, 1, 3],
              numeric=[3, 4])
    else:
        blocks.append(Paragraph(t("no_data"), "note"))

    # 6. attackers ----------------------------------------------------------------------------------------------
    section("attackers")
    blocks.append(Paragraph(t("text.attackers_intro")))
    if data.top_attackers:
        table(["address", "zone", "alerts", "events", "first_seen", "last_seen", "blocked"],
              [[a.address, t.maybe("zone", a.zone), f.int(a.alerts), f.int(a.events), f.time(a.first_seen),
                f.time(a.last_seen), t.yes_no(a.blocked)] for a in data.top_attackers],
              [a.key for a in data.top_attackers], [a.address for a in data.top_attackers],
              [2, 1.5, 0.8, 0.8, 1.7, 1.7, 0.8], numeric=[2, 3])
    else:
        blocks.append(Paragraph(t("no_data"), "note"))

    # 7. incidents ----------------------------------------------------------------------------------------------
    section("handled")
    if data.handled:
        blocks.append(Paragraph(t("text.handled_intro_incidents" if data.handled_kind == "incidents"
                                  else "text.handled_intro_alerts")))
        table(["title", "severity", "status", "opened", "tta", "ttr"],
              [[h.title[:90], t.maybe("severity", h.severity), h.status, f.time(h.opened), f.num(h.tta_hours),
                f.num(h.ttr_hours)] for h in data.handled],
              [f"handled:{h.id}" for h in data.handled], [h.title[:60] for h in data.handled],
              [4, 1.1, 1.1, 1.6, 0.9, 0.9], numeric=[4, 5])
    else:
        blocks.append(Paragraph(t("no_data_component"), "note"))

    # 8. playbooks ----------------------------------------------------------------------------------------------
    section("playbooks")
    blocks.append(Paragraph(t("text.playbooks_intro")))
    if data.playbook_runs:
        by_playbook: dict[str, list] = {}
        for run in data.playbook_runs:
            by_playbook.setdefault(run.playbook, []).append(run)
        ok_words = ("succeeded", "success", "completed", "done", "applied")
        rows = [[name, f.int(len(runs)), f.int(sum(r.status in ok_words for r in runs)),
                 f.int(sum(r.status in ("failed", "error") for r in runs)),
                 f.int(len({b.address for r in runs for b in r.blocks}))] for name, runs in sorted(by_playbook.items())]
        table(["playbook", "runs", "succeeded", "failed", "blocked"], rows,
              [f"playbooks:{name}" for name in sorted(by_playbook)], sorted(by_playbook), [3, 1, 1, 1, 1],
              numeric=[1, 2, 3, 4])
        blocks_rows, keys, titles = [], [], []
        for run in data.playbook_runs:
            for b in run.blocks:
                blocks_rows.append([b.address, b.device or "-", f.time(run.started), f.time(b.expires), run.playbook])
                keys.append(f"playbooks:{run.playbook}")
                titles.append(run.playbook)
        if blocks_rows:
            table(["address", "device", "started", "expires", "playbook"], blocks_rows, keys, titles,
                  [2, 2, 1.6, 1.6, 2])
    else:
        blocks.append(Paragraph(t("no_data_component"), "note"))

    # 9. coverage -----------------------------------------------------------------------------------------------
    section("coverage")
    blocks.append(Paragraph(t("text.coverage_intro")))
    if data.rules:
        blocks.append(Paragraph(t("text.coverage_summary", applicable=sum(r.applicable for r in data.rules),
                                  total=len(data.rules), fired=sum(1 for r in data.rules if r.alerts))))
        table(["rule", "level", "tactic", "logsource", "applicable", "alerts"],
              [[r.title, t.maybe("severity", r.level), ", ".join(t.maybe("tactic", x) for x in r.tactics) or "-",
                r.logsource, t.yes_no(r.applicable), f.int(r.alerts)] for r in data.rules],
              [r.key for r in data.rules], [r.title for r in data.rules], [3, 1.1, 2.2, 2.2, 0.8, 0.8],
              numeric=[5])
    else:
        blocks.append(Paragraph(t("no_data"), "note"))

    # 10. indicators --------------------------------------------------------------------------------------------
    section("indicators")
    blocks.append(Paragraph(t("text.indicators_intro")))
    items = data.indicators_received + data.indicators_shared
    if items or data.sightings:
        counts = [[t("cols.direction") + ": " + d, f.int(len(lst))] for d, lst in
                  (("received", data.indicators_received), ("shared", data.indicators_shared))]
        table(["name", "count"], counts, ["indicators:received", "indicators:shared"], ["received", "shared"],
              [3, 1], numeric=[1])
        if items:
            shown = items[:50]
            table(["type", "value", "direction", "at"],
                  [[i.type, i.value[:80], i.direction, f.time(i.at)] for i in shown],
                  [f"indicators:{i.direction}" for i in shown], [i.direction for i in shown], [1.2, 4, 1.2, 1.6])
        blocks.append(Paragraph(t("text.sightings", n=f.int(len(data.sightings)))))
    else:
        blocks.append(Paragraph(t("no_data_component"), "note"))

    # 11. recommendations ---------------------------------------------------------------------------------------
    section("recommendations")
    blocks.append(Paragraph(t("text.recommendations_intro")))
    if data.recommendations:
        params = lambda r: {k: (f.time(v) if k in ("last_seen", "expired") else v) for k, v in r.params.items()}
        table(["priority", "recommendation"], [[t.maybe("priority", r.severity), t(f"rec.{r.kind}", **params(r))]
                                               for r in data.recommendations],
              [r.evidence_key for r in data.recommendations], [r.kind for r in data.recommendations], [1, 7])
    else:
        blocks.append(Paragraph(t("text.no_recommendations"), "note"))

    # 12. the four layers and the KPI L3.N2.PN1.01 --------------------------------------------------------------
    layers_section.lay_out(data, t, f, blocks, Heading, Paragraph, Table, n.label)
    for extra in (findings_section, digest_section):  # 13. assessment findings, 14. threat-update digest
        extra.lay_out(data, t, f, blocks, Heading, Paragraph, Table, n.label)

    title = t("title_rollup" if data.rollup else "title")
    meta = [t("period_range", start=f.date(data.period_start), end=f.date(data.period_end)),
            t("generated", at=f.time(data.generated), zone=str(zone))]
    return Document(lang, title, t("subtitle", name=name, period=data.period), meta, blocks, n.entries())


def _summary_evidence(data: ReportData) -> None:
    """Evidence of the summary lines: the union of what backs the detailed figures they sum up."""
    for key in [k for k in data.evidence if k.startswith("summary:")]:
        del data.evidence[key]
    scope_agency = None if data.rollup else data.scope
    data.ev("summary:events").query = {"start": data.period_start, "end": data.period_end, "agency": scope_agency}
    for key, ev in list(data.evidence.items()):
        if key.startswith("alerts_by_severity:"):
            for alert_id in ev.alerts:
                data.ev("summary:alerts").add_alert(alert_id)
                if severity_at_least(key.rpartition(":")[2], Severity.high):
                    data.ev("summary:high").add_alert(alert_id)
    for row in data.sources:
        source_ev = data.evidence.get(row.key)
        if not row.expected or source_ev is None:
            continue
        target = data.ev("summary:sources") if row.events else None
        if row.status in ("silent", "never"):
            target = data.ev("summary:silent")
        if target is not None:
            target.add_other("sources", f"{row.asset}/{row.source}")
            for event_id in source_ev.events[-1:]:
                target.add_event(event_id)
    for row in data.handled:
        for alert_id in row.alert_ids:
            data.ev("summary:handled").add_alert(alert_id)
            if row.tta_hours is not None:
                data.ev("summary:mtta").add_alert(alert_id)
            if row.ttr_hours is not None:
                data.ev("summary:mttr").add_alert(alert_id)
        if row.kind == "incident":
            data.ev("summary:handled").add_other("incidents", row.id)
    for run in data.playbook_runs:
        data.ev("summary:playbooks").add_other("playbook_runs", run.id)
        if run.blocks:
            data.ev("summary:blocked").add_other("playbook_runs", run.id)
    for item in data.indicators_received + data.indicators_shared:
        data.ev("summary:indicators").add_other("indicators", item.id)
    for rec in data.recommendations:
        ev = data.evidence.get(rec.evidence_key)
        if ev is None:
            continue
        target = data.ev("summary:recommendations")
        for alert_id in ev.alerts:
            target.add_alert(alert_id)
        for event_id in ev.events:
            target.add_event(event_id)
        for collection, ids in ev.other.items():
            for doc_id in ids:
                target.add_other(collection, doc_id)
        if ev.query and not target.query:
            target.query = ev.query
