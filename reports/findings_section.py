"""The report's section on the periodic assessment's findings (docs/assessment.md): the agency's findings open at the
end of the period, counted by severity, and those past their due date then (asset, check, severity, due date).
Gathered once per report (:func:`gather_findings`, called from gather), laid out in each language (:func:`lay_out`,
called from layout).

Open at the end: a finding first seen before the end whose status is ``open`` now, or that was fixed only after the
end (it was still there then). Accepted risks and false positives are not counted. Past due: open at the end with a
due date (a day) before the end's day, as reports/layers.py counts layer 3. Each count and each past-due row links to
its evidence: the finding ids (the ``findings`` collection) and the agency and period.

ReportData has no field of its own for this yet: the section keeps what it gathered as ``data.findings``.
"""

from __future__ import annotations

from typing import Any

from reports.i18n import Texts
from reports.model import ReportData
from reports.periods import Period
from soc import ecs
from soc.storage.base import DocumentQuery, Store

FINDINGS = "findings"
SEVERITIES = ("critical", "high", "medium", "low", "informational")  # most severe first
MAX_ROWS = 200
SCAN_CAP = 100_000
PAGE = 1000


def _iter(store: Store, terms: dict) -> list[dict]:
    out: list[dict] = []
    after = None
    while len(out) < SCAN_CAP:
        page = store.find_documents(FINDINGS, DocumentQuery(terms=terms, limit=PAGE, after=after))
        out.extend(page)
        if len(page) < PAGE:
            break
        after = (page[-1]["id"], page[-1]["id"])
    return out


def _agency(doc: dict) -> str | None:
    value = ecs.get(doc, "organization.id")
    return value if isinstance(value, str) else None


def open_at(store: Store, scope: str | None, end: str) -> list[dict]:
    """The findings of ``scope`` (None: every agency) open at ``end``."""
    terms: dict[str, Any] = {"status": ["open", "fixed"]}
    if scope is not None:
        terms["organization.id"] = scope
    out = []
    for doc in _iter(store, terms):
        if scope is not None and _agency(doc) != scope:
            continue
        if not isinstance(doc.get("first_seen"), str) or doc["first_seen"] >= end:
            continue
        if doc.get("status") == "fixed" and not (isinstance(doc.get("fixed_at"), str) and doc["fixed_at"] >= end):
            continue
        out.append(doc)
    return out


def evidence_key(what: str) -> str:
    return f"findings:{what}"


def gather_findings(store: Store, inventory, scope: str | None, period: Period, data: ReportData) -> None:
    """Fill ``data.findings`` for the period: counts by severity and the past-due rows, with their evidence."""
    end = min(period.end_iso, ecs.now_iso())
    end_day = ecs.parse_time(end).date().isoformat()
    docs = open_at(store, scope, end)
    by_severity = {s: 0 for s in SEVERITIES}
    past_due: list[dict] = []
    query = {"start": period.start_iso, "end": end, "agency": scope, "collections": [FINDINGS]}
    for doc in sorted(docs, key=lambda d: d["id"]):
        severity = doc.get("severity") if doc.get("severity") in SEVERITIES else "medium"
        by_severity[severity] += 1
        ev = data.ev(evidence_key(severity))
        ev.add_other(FINDINGS, doc["id"])
        ev.query = query
        due = doc.get("due")
        if isinstance(due, str) and due[:10] < end_day:
            asset = doc.get("asset") if isinstance(doc.get("asset"), dict) else {}
            agency = _agency(doc)
            past_due.append({"id": doc["id"], "agency": agency, "asset": asset.get("id") or "",
                             "hostname": asset.get("hostname") or "", "check": str(doc.get("check") or ""),
                             "title": str(doc.get("title") or doc.get("detail") or ""), "severity": severity,
                             "due": due[:10]})
            row_ev = data.ev(evidence_key(f"due:{doc['id']}"))
            row_ev.add_other(FINDINGS, doc["id"])
            row_ev.query = query
    past_due.sort(key=lambda r: (SEVERITIES.index(r["severity"]), r["due"], r["asset"], r["id"]))
    data.findings = {"end": end, "open": len(docs), "by_severity": by_severity, "past_due": past_due,
                     "names": {a: (inventory.agencies[a].name_vi, inventory.agencies[a].name_en)
                               for a in {r["agency"] for r in past_due} if a in inventory.agencies}}


def lay_out(data: ReportData, t: Texts, f, blocks: list, heading, paragraph, table_block, label) -> None:
    """The section. ``heading``, ``paragraph``, ``table_block``: the layout's block types; ``label``: its evidence
    numbering (reports/layout.py)."""
    blocks.append(heading(t("findings.title"), "s-findings"))
    blocks.append(paragraph(t("findings.intro")))
    found = getattr(data, "findings", None)
    if not found:
        blocks.append(paragraph(t("no_data"), "note"))
        return
    if found["end"] < data.period_end:
        blocks.append(paragraph(t("findings.in_progress", end=f.time(found["end"])), "note"))
    blocks.append(paragraph(t("findings.summary", open=f.int(found["open"]),
                              past_due=f.int(len(found["past_due"])))))
    if not found["open"]:
        blocks.append(paragraph(t("findings.none_open"), "note"))
        return
    rows, labels = [], []
    for severity in SEVERITIES:
        count = found["by_severity"].get(severity, 0)
        if not count:
            continue
        due = sum(1 for r in found["past_due"] if r["severity"] == severity)
        rows.append([t.maybe("findings.severity", severity), f.int(count), f.int(due)])
        labels.append(label(evidence_key(severity), f"findings {severity}"))
    blocks.append(table_block([t("findings.col_severity"), t("findings.col_open"), t("findings.col_past_due"),
                               t("cols.ev")], rows, labels, [2, 1.2, 1.2, 0.8], {1, 2}))
    if not found["past_due"]:
        blocks.append(paragraph(t("findings.none_past_due"), "note"))
        return
    blocks.append(paragraph(t("findings.past_due_intro")))
    names = found.get("names", {})
    shown = found["past_due"][:MAX_ROWS]
    headers = [t("findings.col_asset"), t("findings.col_check"), t("findings.col_finding"),
               t("findings.col_severity"), t("findings.col_due")]
    widths = [1.8, 1.2, 3.2, 1.1, 1.2]
    if data.rollup:
        headers.insert(0, t("findings.col_agency"))
        widths.insert(0, 2)
    rows, labels = [], []
    for r in shown:
        row = [r["hostname"] or r["asset"], t.maybe("findings.check", r["check"]), r["title"],
               t.maybe("findings.severity", r["severity"]), r["due"]]
        if data.rollup:
            vi, en = names.get(r["agency"], (r["agency"] or "-", r["agency"] or "-"))
            row.insert(0, vi if t.lang == "vi" else en)
        rows.append(row)
        labels.append(label(evidence_key(f"due:{r['id']}"), f"finding {r['id']}"))
    blocks.append(table_block(headers + [t("cols.ev")], rows, labels, widths + [0.8], set()))
    if len(found["past_due"]) > MAX_ROWS:
        blocks.append(paragraph(t("more", n=len(found["past_due"]) - MAX_ROWS), "note"))
