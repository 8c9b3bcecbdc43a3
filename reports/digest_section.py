"""The report's section with the period's threat-update digest for the agency (soc_api/digest.py gives the same for
``GET /api/v1/digest``): the indicators new in the period (created in it) that were seen in the agency's traffic in
it (its sightings), with how often and when, and how many indicators the province took in during the period, per
source. Gathered once per report (:func:`gather_digest`, called from gather), laid out in each language
(:func:`lay_out`, called from layout).

What an agency may not read is withheld exactly as the API's digest does for an agency key: an indicator whose TLP
is not among those agencies may read (``soc_api.taxii.agency_tlp``; its default, clear and green, unless the gather
options carry ``agency_tlp``) is listed by id, source and TLP only, never by name or values, and the counts of new
indicators per source count only readable ones. The province roll-up is read by the SOC: nothing is withheld.

ReportData has no field of its own for this yet: the section keeps what it gathered as ``data.digest``.
"""

from __future__ import annotations

from typing import Any

from detections.indicators.model import COLLECTION as INDICATORS, SIGHTINGS, readable
from detections.rule_arrivals import COLLECTION as RULE_ARRIVALS, new_rules_covering
from reports.i18n import Texts
from reports.model import ReportData
from reports.periods import Period
from soc import ecs
from soc.storage.base import DocumentQuery, Store

AGENCY_TLP = ("clear", "green")  # soc_api.taxii.agency_tlp's default
PAGE = 1000
SIGHTING_CAP = 20_000
NEW_INDICATOR_CAP = 50_000
MAX_ROWS = 200
VALUES_SHOWN = 3


def _scan(store: Store, collection: str, query: DocumentQuery, cap: int) -> list[dict]:
    out: list[dict] = []
    after = None
    while len(out) < cap:
        page = store.find_documents(collection, DocumentQuery(terms=query.terms, ranges=query.ranges,
                                                              sort=query.sort, limit=PAGE, after=after))
        out.extend(page)
        if len(page) < PAGE:
            break
        last = page[-1]
        after = (last["id"] if query.sort == "id" else ecs.get(last, query.sort), last["id"])
    return out


def evidence_key(indicator_id: str) -> str:
    return f"digest:{indicator_id}"


def gather_digest(store: Store, scope: str | None, period: Period, data: ReportData, options: Any = None) -> None:
    """Fill ``data.digest`` for the period, each listed indicator with its evidence (the sightings and the
    indicator)."""
    start, end = period.start_iso, min(period.end_iso, ecs.now_iso())
    allowed = None if scope is None else list(getattr(options, "agency_tlp", None) or AGENCY_TLP)
    terms = {"organization.id": scope} if scope is not None else {}
    sightings = [s for s in _scan(store, SIGHTINGS, DocumentQuery(terms=terms, ranges={"last_seen": (start, None)},
                                                                  sort="last_seen"), SIGHTING_CAP)
                 if (scope is None or ecs.get(s, "organization.id") == scope)
                 and isinstance(s.get("first_seen"), str) and s["first_seen"] < end
                 and isinstance(s.get("indicator_id"), str)]
    by_indicator: dict[str, list[dict]] = {}
    for s in sightings:
        by_indicator.setdefault(s["indicator_id"], []).append(s)
    seen, withheld, older = [], 0, 0
    for indicator_id, found in by_indicator.items():
        doc = readable(store.get_document(INDICATORS, indicator_id) or {})
        if doc is None:
            continue
        if not (start <= doc.get("created", "") < end):
            older += 1
            continue
        entry: dict[str, Any] = {
            "indicator_id": doc["id"], "source": doc.get("source"), "tlp": doc.get("tlp"),
            "count": sum(int(s.get("count", 0) or 0) for s in found),
            "first_seen": max(min(s["first_seen"] for s in found), start),
            "last_seen": min(max(s["last_seen"] for s in found), end),
            "agencies": sorted({ecs.get(s, "organization.id") or "-" for s in found}),
        }
        if allowed is not None and doc.get("tlp") not in allowed:
            entry["withheld"] = True  # above what the agency may read: no name, no values
            withheld += 1
        else:
            entry.update(name=doc.get("name"), values=(doc.get("values") or [])[:VALUES_SHOWN],
                         types=doc.get("types") or [])
        ev = data.ev(evidence_key(doc["id"]))
        for s in found:
            ev.add_other(SIGHTINGS, s["id"])
        ev.add_other(INDICATORS, doc["id"])
        seen.append(entry)
    seen.sort(key=lambda e: (e["last_seen"], e["indicator_id"]), reverse=True)
    new_terms = {"tlp": allowed} if allowed is not None else {}
    added = [d for d in _scan(store, INDICATORS, DocumentQuery(terms=new_terms, ranges={"created": (start, end)},
                                                               sort="created"), NEW_INDICATOR_CAP)
             if readable(d) is not None]
    by_source: dict[str, int] = {}
    for doc in added:
        by_source[str(doc.get("source"))] = by_source.get(str(doc.get("source")), 0) + 1
    for source in by_source:
        ev = data.ev(evidence_key(f"source:{source}"))
        ev.other[INDICATORS] = [d["id"] for d in added if str(d.get("source")) == source][:500]
    rules = new_rules_covering(store, scope, start, end)
    ev = data.ev(evidence_key("new_rules"))
    for rule in rules["rules"]:
        ev.add_other(RULE_ARRIVALS, str(rule["id"]))
    data.digest = {"start": start, "end": end, "seen": seen, "withheld": withheld, "older_seen": older,
                   "new_total": len(added), "by_source": dict(sorted(by_source.items(), key=lambda kv: -kv[1])),
                   "new_rules": rules}


def lay_out(data: ReportData, t: Texts, f, blocks: list, heading, paragraph, table_block, label) -> None:
    """The section. ``heading``, ``paragraph``, ``table_block``: the layout's block types; ``label``: its evidence
    numbering (reports/layout.py)."""
    blocks.append(heading(t("digest.title"), "s-digest"))
    blocks.append(paragraph(t("digest.intro")))
    found = getattr(data, "digest", None)
    if not found:
        blocks.append(paragraph(t("no_data"), "note"))
        return
    blocks.append(paragraph(t("digest.summary", seen=f.int(len(found["seen"])), new=f.int(found["new_total"]),
                              older=f.int(found["older_seen"]))))
    if found["seen"]:
        rows, labels = [], []
        for e in found["seen"][:MAX_ROWS]:
            if e.get("withheld"):
                what = t("digest.withheld", id=e["indicator_id"], tlp=str(e["tlp"]).upper())
            else:
                what = str(e.get("name") or "") + (" (" + ", ".join(e.get("values") or []) + ")"
                                                   if e.get("values") else "")
            rows.append([what, str(e.get("source") or ""), str(e.get("tlp") or "").upper(), f.int(e["count"]),
                         f.time(e["first_seen"]), f.time(e["last_seen"])])
            labels.append(label(evidence_key(e["indicator_id"]), f"indicator {e['indicator_id']}"))
        blocks.append(table_block([t("digest.col_indicator"), t("digest.col_source"), t("digest.col_tlp"),
                                   t("digest.col_count"), t("digest.col_first"), t("digest.col_last"),
                                   t("cols.ev")], rows, labels, [3.6, 1.4, 0.8, 0.8, 1.3, 1.3, 0.6], {3}))
        if len(found["seen"]) > MAX_ROWS:
            blocks.append(paragraph(t("more", n=len(found["seen"]) - MAX_ROWS), "note"))
        if found["withheld"]:
            blocks.append(paragraph(t("digest.withheld_note", n=f.int(found["withheld"])), "note"))
    else:
        blocks.append(paragraph(t("digest.none_seen"), "note"))
    rules = found.get("new_rules") or {"total": 0, "rules": []}
    if rules["total"]:
        blocks.append(paragraph(t("digest.new_rules", n=f.int(rules["total"]))))
        rows = [[str(r.get("title") or r["id"]), str(r.get("level") or ""),
                 ", ".join(f"{k}={v}" for k, v in (r.get("logsource") or {}).items()), f.time(r["arrived"])]
                for r in rules["rules"][:MAX_ROWS]]
        labels = [label(evidence_key("new_rules"), "new rules")] * len(rows)
        blocks.append(table_block([t("digest.col_rule"), t("digest.col_level"), t("digest.col_logsource"),
                                   t("digest.col_arrived"), t("cols.ev")], rows, labels, [3.4, 0.9, 2.2, 1.3, 0.6],
                                  set()))
    else:
        blocks.append(paragraph(t("digest.new_rules_none"), "note"))
    if found["by_source"]:
        rows = [[source, f.int(n)] for source, n in found["by_source"].items()]
        labels = [label(evidence_key(f"source:{source}"), f"indicators from {source}") for source in found["by_source"]]
        blocks.append(table_block([t("digest.col_source"), t("digest.col_new"), t("cols.ev")], rows, labels,
                                  [4, 1.2, 0.6], {1}))
