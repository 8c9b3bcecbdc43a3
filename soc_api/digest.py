"""The per-agency digest of threat updates (``GET /api/v1/digest?since=...``): the indicators new since a time that
were seen in the agency's traffic (its sightings), with how often and when, and the indicators the province took in
since then, per source. Read through the tenancy-enforcing data layer: an agency key gets its own agency's digest
(asking for another's is refused, as everywhere), and only the TLP levels agencies may read (soc_api.taxii.agency_tlp); an indicator above them
is listed by id, source and TLP only (``withheld``), never by its values.

New rules: those that arrived since (detections/rule_arrivals.py records when each rule was first run) whose Sigma
log source applies to the kinds of events the agency sent since then. New findings: the periodic assessment's
findings first seen since then (assessment/), by severity and the newest.
"""

from __future__ import annotations

from typing import Any

from assessment.findings import FINDINGS
from detections.indicators.decay import effective_confidence, why_not_matching
from detections.indicators.model import COLLECTION as INDICATORS, SIGHTINGS, readable
from detections.rule_arrivals import new_rules_covering
from soc import ecs
from soc.storage.aggregations import AggregateQuery
from soc.storage.base import DocumentQuery
from soc_api.data import Data

SIGHTING_CAP = 20_000
NEW_INDICATOR_CAP = 50_000
LISTED = 500
FINDINGS_LISTED = 50  # newest findings listed (the counts are of them all)


def _scan(data: Data, collection: str, query: DocumentQuery, *, agency: str | None, agency_field: str | None,
          cap: int) -> list[dict]:
    out: list[dict] = []
    cursor = None
    while len(out) < cap:
        page = data.find(collection, query, agency=agency, agency_field=agency_field, cursor=cursor)
        out.extend(page.items)
        if not page.next_cursor:
            break
        cursor = page.next_cursor
    return out


def _new_findings(data: Data, since: str, scope: str | None) -> dict[str, Any]:
    """Assessment findings first seen since then (the caller's agency only): how many by severity, the newest."""
    counted = data.aggregate(AggregateQuery(collection=FINDINGS, time_field="first_seen", start=since, agency=scope,
                                            group_by=("severity",)))
    newest = data.find(FINDINGS, DocumentQuery(ranges={"first_seen": (since, None)}, sort="first_seen",
                                               descending=True, limit=FINDINGS_LISTED), agency=scope,
                       cursor=None).items
    return {"total": counted.total, "by_severity": {str(k): n for k, n in counted.counts().items()},
            "findings": [{k: f.get(k) for k in ("id", "check", "severity", "status", "first_seen", "due")}
                         | {"asset": (f.get("asset") or {}).get("id")} for f in newest]}


def build_digest(data: Data, since: str, agency: str | None = None) -> dict[str, Any]:
    scope = data.scope(agency)
    allowed = data.readable_tlp()
    now = ecs.now_iso()
    sightings = _scan(data, SIGHTINGS, DocumentQuery(ranges={"last_seen": (since, None)}, sort="last_seen",
                                                     descending=True, limit=1000),
                      agency=scope, agency_field="organization.id", cap=SIGHTING_CAP)
    by_indicator: dict[str, list[dict]] = {}
    for s in sightings:
        by_indicator.setdefault(s["indicator_id"], []).append(s)
    new_seen, older_seen, withheld = [], 0, 0
    for indicator_id, seen in by_indicator.items():
        doc = readable(data.indicator_service.get(indicator_id) or {})
        if doc is None:
            continue
        if doc.get("created", "") < since:
            older_seen += 1
            continue
        entry: dict[str, Any] = {
            "indicator_id": doc["id"], "source": doc.get("source"), "tlp": doc.get("tlp"),
            "count": sum(int(s.get("count", 0)) for s in seen),
            "first_seen": min(s["first_seen"] for s in seen), "last_seen": max(s["last_seen"] for s in seen),
        }
        if allowed is not None and doc.get("tlp") not in allowed:
            entry["withheld"] = True  # above what this caller may read: no name, no values
            withheld += 1
        else:
            entry.update(name=doc.get("name"), types=doc.get("types"), values=(doc.get("values") or [])[:10],
                         confidence=doc.get("confidence"),
                         effective_confidence=round(effective_confidence(doc, ecs.parse_time(now)), 1),
                         created=doc.get("created"), valid_until=doc.get("valid_until"),
                         matching=why_not_matching(doc, now) is None)
            if scope is None:
                entry["agencies"] = sorted({(s.get("organization") or {}).get("id") or "-" for s in seen})
        new_seen.append(entry)
    new_seen.sort(key=lambda e: e["last_seen"], reverse=True)
    terms = {"tlp": allowed} if allowed is not None else {}
    added = _scan(data, INDICATORS, DocumentQuery(terms=terms, ranges={"created": (since, None)}, sort="created",
                                                  limit=1000), agency=None, agency_field=None, cap=NEW_INDICATOR_CAP)
    by_source: dict[str, int] = {}
    for doc in added:
        by_source[str(doc.get("source"))] = by_source.get(str(doc.get("source")), 0) + 1
    new_rules = new_rules_covering(data.store, scope, since, now)  # scope: a tenant's own events decide coverage
    return {
        "agency": scope, "since": since, "generated": now, "new_rules": new_rules,
        "new_findings": _new_findings(data, since, scope),
        "new_indicators_seen": new_seen[:LISTED], "new_indicators_seen_total": len(new_seen),
        "withheld": withheld, "older_indicators_seen": older_seen,
        "new_indicators": {"total": len(added), "by_source": by_source, "capped": len(added) >= NEW_INDICATOR_CAP},
    }
