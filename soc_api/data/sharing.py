"""What the province shares and reports: indicators (shared by all, read by TLP), sightings and malware findings (per
agency), TAXII statuses, posture pushes, and audit reports (per agency, roll-ups for the SOC)."""

from __future__ import annotations

import base64
import json
import logging

from fastapi import HTTPException

from detections.indicators.extension import MALWARE_FINDINGS
from detections.indicators.model import COLLECTION as INDICATORS, SIGHTINGS, readable
from detections.indicators.store import IndicatorService
from soc.storage.base import DocumentQuery
from soc_api.data.core import DataCore, Page
from soc_api.settings import api_settings

log = logging.getLogger(__name__)
TAXII_STATUS = "taxii_status"  # what became of each TAXII envelope a key sent
POSTURE_PUSHES = "posture_pushes"  # each push of the posture document to the national centre
EXPORT_CAP = 50_000
# What an export can hold: the collection, the field it is ordered (and limited by ``since``) on, and whether it is
# shared by all agencies (indicators) or partitioned by agency.
EXPORTS = {
    "indicators": (INDICATORS, "added", None),
    "sightings": (SIGHTINGS, "modified", "organization.id"),
    "malware": (MALWARE_FINDINGS, "modified", "organization.id"),
}


def readable_indicators(docs: list[dict]) -> list[dict]:
    """Stored indicator documents in the model's shape; one of no known shape is left out and logged."""
    out = []
    for raw in docs:
        doc = readable(raw)
        if doc is None:
            log.warning("indicator %.80r: a stored document of no known shape; left out", raw.get("id"))
            continue
        out.append(doc)
    return out


def indicator_service(suite) -> IndicatorService:
    """The suite's indicator service (matching in this process) or, without the extension, one for the store."""
    from soc_api.state import service

    return service(suite, "indicators", lambda: IndicatorService(suite.store))


class SharingData(DataCore):
    # --- indicators ----------------------------------------------------------------------------------------------
    @property
    def indicator_service(self) -> IndicatorService:
        return indicator_service(self.suite)

    def readable_tlp(self) -> list[str] | None:
        """The TLP levels this caller may read (None: all)."""
        return list(api_settings(self.suite).taxii.agency_tlp) if self.principal.is_tenant else None

    def indicators(self, *, type: str | None, value: str | None, source: str | None, tlp: str | None,
                   revoked: bool, limit: int, cursor: str | None) -> Page:
        terms: dict = {"revoked": revoked}
        if type:
            terms["types"] = type
        if value:
            terms["values"] = value
        if source:
            terms["source"] = source
        allowed = self.readable_tlp()
        if tlp:
            if allowed is not None and tlp not in allowed:
                return Page([])
            terms["tlp"] = tlp
        elif allowed is not None:
            terms["tlp"] = allowed
        page = self.find(INDICATORS, DocumentQuery(terms=terms, sort="added", descending=True, limit=limit),
                         agency_field=None, cursor=cursor)
        page.items = readable_indicators(page.items)
        return page

    def indicator(self, indicator_id: str) -> dict:
        found = self.indicator_service.get(indicator_id)
        doc = next(iter(readable_indicators([found])), None) if found is not None else None
        allowed = self.readable_tlp()
        if doc is None or (allowed is not None and doc.get("tlp") not in allowed):
            raise HTTPException(404, "no such indicator")
        return doc

    def add_indicator(self, doc: dict) -> dict:
        """Store (or merge into the indicator of the same id) and start matching at once; the indicator as kept."""
        kept = self.indicator_service.upsert([doc])
        return kept[0] if kept else self.indicator_service.get(doc["id"])

    def revoke_indicator(self, indicator_id: str) -> dict:
        doc = self.indicator_service.revoke(indicator_id, by=self.actor)
        if doc is None:
            raise HTTPException(404, "no such indicator")
        return doc

    def sightings(self, *, agency: str | None, indicator_id: str | None, limit: int, cursor: str | None,
                  source: str | None = None) -> Page:
        terms = {"indicator_id": indicator_id} if indicator_id else {}
        if source:
            terms["source"] = source  # the indicator's source (a feed's name): sightings per source
        return self.find(SIGHTINGS, DocumentQuery(terms=terms, sort="last_seen", descending=True, limit=limit),
                         agency=agency, cursor=cursor)

    def export(self, kind: str, since: str | None) -> list[dict]:
        """Every document of ``kind`` (a key of :data:`EXPORTS`) this caller may read, changed at or after
        ``since``, oldest first, at most about :data:`EXPORT_CAP`."""
        collection, sort, agency_field = EXPORTS[kind]
        allowed = self.readable_tlp() if kind == "indicators" else None
        terms = {"tlp": allowed} if allowed is not None else {}
        ranges = {sort: (since, None)} if since else {}
        docs = self.find_all(collection, DocumentQuery(terms=terms, ranges=ranges, sort=sort, limit=1000),
                             cap=EXPORT_CAP, agency_field=agency_field)
        return readable_indicators(docs) if kind == "indicators" else docs

    # --- TAXII statuses ------------------------------------------------------------------------------------------
    def save_taxii_status(self, status: dict) -> None:
        self.store.put_documents(TAXII_STATUS, [status])

    def taxii_status(self, status_id: str) -> dict:
        """A status resource; only the key that sent its envelope (or an admin) reads it, others get 404."""
        found = self.store.get_document(TAXII_STATUS, status_id)
        if found is None or (found.get("owner") != self.principal.key_id and self.principal.role != "admin"):
            raise HTTPException(404, "no such status")
        return found

    # --- posture pushes ------------------------------------------------------------------------------------------
    def posture_pushes(self, limit: int) -> list[dict]:
        """The latest pushes to the national centre, newest first."""
        return self.store.find_documents(POSTURE_PUSHES, DocumentQuery(sort="generated", descending=True,
                                                                       limit=limit))

    def record_posture_push(self, record: dict) -> None:
        self.store.put_documents(POSTURE_PUSHES, [dict(record)])

    # --- reports -------------------------------------------------------------------------------------------------
    def reports(self, *, agency: str | None, period: str | None, limit: int, cursor: str | None) -> Page:
        """Report records, newest first; an agency key gets its own agency's only (``agency='province'``: roll-ups)."""
        from reports.builder import list_reports  # the report builder (and its PDF renderer) only when asked

        found = list_reports(self.store, agency=self.scope(agency), period=period, limit=limit,
                             after=_report_position(cursor) if cursor else None)
        return Page(found, _report_cursor(found[-1]) if len(found) == limit else None)

    def report(self, report_id: str) -> dict:
        """A report record; another agency's report answers exactly like a missing one."""
        from reports.builder import COLLECTION

        return self.get(COLLECTION, report_id, agency_field="scope", what="report")


def _report_cursor(record: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps([record["generated"], record["id"]]).encode()).decode()


def _report_position(cursor: str) -> tuple[str, str]:
    try:
        generated, rid = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return str(generated), str(rid)
    except (ValueError, TypeError) as exc:
        raise HTTPException(400, "the cursor is not one this API issued") from exc
