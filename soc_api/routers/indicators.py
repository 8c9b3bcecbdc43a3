"""Indicators: list, add, read, revoke; their sightings; and the STIX 2.1 export (indicators, sightings, malware
findings, with TLP 2.0 markings). Indicators are shared across the province, but an agency key reads only the TLP
levels configured for agencies (taxii.agency_tlp), and only its own sightings and findings."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse

from detections.indicators.extension import MALWARE_FINDINGS
from detections.indicators.model import COLLECTION, SIGHTINGS, IndicatorError, build, from_foreign
from detections.indicators.stix import bundle, indicator_to_stix, malware_to_stix, sighting_to_stix
from detections.indicators.store import IndicatorService
from soc.storage.base import DocumentQuery
from soc_api.data import Data, data_for, invalid, valid_time
from soc_api.models import Indicator, IndicatorIn, IndicatorPage, IndicatorType, SightingPage, Tlp
from soc_api.settings import JSON_BODY_CAP, api_settings

router = APIRouter(prefix="/indicators", tags=["indicators"], max_body_size=JSON_BODY_CAP)
Reader = Annotated[Data, Depends(data_for("analyst", "network_admin", "agency", "national_centre"))]
Writer = Annotated[Data, Depends(data_for("analyst", "national_centre"))]
STIX_MEDIA = "application/stix+json;version=2.1"
EXPORT_CAP = 50_000


def service(suite) -> IndicatorService:
    """The suite's indicator service (matching in this process) or, without the extension, one for the store."""
    found = getattr(suite, "indicators", None)
    if found is None:
        found = suite.indicators = IndicatorService(suite.store)
    return found


def readable_tlp(data: Data) -> list[str] | None:
    """The TLP levels this caller may read (None: all)."""
    return list(api_settings(data.suite).taxii.agency_tlp) if data.principal.is_tenant else None


def _may_read(data: Data, doc: dict | None) -> bool:
    allowed = readable_tlp(data)
    return doc is not None and (allowed is None or doc.get("tlp") in allowed)


@router.get("", response_model=IndicatorPage)
def list_indicators(
    data: Reader,
    type: IndicatorType | None = None,
    value: Annotated[str | None, Query(max_length=4096, description="exact, normalised value")] = None,
    source: Annotated[str | None, Query(max_length=200)] = None,
    tlp: Tlp | None = None,
    revoked: bool = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=1024)] = None,
) -> IndicatorPage:
    terms: dict = {"revoked": revoked}
    if type:
        terms["types"] = type
    if value:
        terms["values"] = value
    if source:
        terms["source"] = source
    allowed = readable_tlp(data)
    if tlp:
        if allowed is not None and tlp not in allowed:
            return IndicatorPage(indicators=[])
        terms["tlp"] = tlp
    elif allowed is not None:
        terms["tlp"] = allowed
    page = data.find(COLLECTION, DocumentQuery(terms=terms, sort="added", descending=True, limit=limit),
                     agency_field=None, cursor=cursor)
    return IndicatorPage(indicators=[Indicator.model_validate(d) for d in page.items], next_cursor=page.next_cursor)


@router.post("", response_model=Indicator, status_code=201)
def add_indicator(body: IndicatorIn, data: Writer) -> Indicator:
    try:
        doc = build([o.model_dump() for o in body.observables], source=body.source, tlp=body.tlp,
                    confidence=body.confidence, valid_from=body.valid_from, valid_until=body.valid_until,
                    name=body.name, description=body.description, labels=body.labels, created_by=data.actor)
    except IndicatorError as exc:
        raise invalid("body", str(exc)) from exc
    kept = service(data.suite).upsert([doc])
    return Indicator.model_validate(kept[0] if kept else service(data.suite).get(doc["id"]))


@router.get("/sightings", response_model=SightingPage)
def sightings(
    data: Reader,
    agency: Annotated[str | None, Query(max_length=64)] = None,
    indicator_id: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=1024)] = None,
) -> SightingPage:
    terms = {"indicator_id": indicator_id} if indicator_id else {}
    page = data.find(SIGHTINGS, DocumentQuery(terms=terms, sort="last_seen", descending=True, limit=limit),
                     agency=agency, cursor=cursor)
    return SightingPage(sightings=page.items, next_cursor=page.next_cursor)


@router.get("/export", response_class=JSONResponse,
            responses={200: {"content": {STIX_MEDIA: {}}, "description": "a STIX 2.1 bundle"}})
def export(
    data: Reader,
    include: Annotated[list[Literal["indicators", "sightings", "malware"]] | None, Query()] = None,
    since: Annotated[str | None, Query(max_length=40, description="only what changed at or after")] = None,
) -> JSONResponse:
    """STIX 2.1 bundle of indicators, sightings and malware findings, each with its TLP 2.0 marking."""
    include = include or ["indicators", "sightings", "malware"]
    since = valid_time(since, "since")
    objects: list = []
    if "indicators" in include:
        terms: dict = {}
        allowed = readable_tlp(data)
        if allowed is not None:
            terms["tlp"] = allowed
        for doc in _all(data, COLLECTION, terms, "added", since, agency_field=None):
            doc = from_foreign(doc)  # the playbook action's indicator documents share the collection
            if doc is not None:
                objects.append(indicator_to_stix(doc))
    if "sightings" in include:
        for doc in _all(data, SIGHTINGS, {}, "modified", since):
            objects.append(sighting_to_stix(doc))
    if "malware" in include:
        for doc in _all(data, MALWARE_FINDINGS, {}, "modified", since):
            objects.extend(malware_to_stix(doc))
    return JSONResponse(bundle(objects), media_type=STIX_MEDIA)


def _all(data: Data, collection: str, terms: dict, sort: str, since: str | None,
         agency_field: str | None = "organization.id") -> list[dict]:
    out, cursor = [], None
    ranges = {sort: (since, None)} if since else {}
    while len(out) < EXPORT_CAP:
        page = data.find(collection, DocumentQuery(terms=terms, ranges=ranges, sort=sort, limit=1000),
                         agency_field=agency_field, cursor=cursor)
        out.extend(page.items)
        if not page.next_cursor:
            break
        cursor = page.next_cursor
    return out


@router.get("/{indicator_id}", response_model=Indicator)
def get_indicator(indicator_id: Annotated[str, PathParam(max_length=128)], data: Reader) -> Indicator:
    doc = service(data.suite).get(indicator_id)
    if not _may_read(data, doc):
        raise HTTPException(404, "no such indicator")
    return Indicator.model_validate(doc)


@router.delete("/{indicator_id}", response_model=Indicator)
def revoke_indicator(indicator_id: Annotated[str, PathParam(max_length=128)], data: Writer) -> Indicator:
    """Revoke an indicator: it stops matching at once and is shared as revoked."""
    doc = service(data.suite).revoke(indicator_id, by=data.actor)
    if doc is None:
        raise HTTPException(404, "no such indicator")
    return Indicator.model_validate(doc)
