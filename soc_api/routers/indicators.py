"""Indicators: list, add, read, revoke; their sightings; and the STIX 2.1 export (indicators, sightings, malware
findings, with TLP 2.0 markings). Indicators are shared across the province, but an agency key reads only the TLP
levels configured for agencies (taxii.agency_tlp), and only its own sightings and findings."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse

from detections.indicators.model import IndicatorError, build
from detections.indicators.stix import bundle, indicator_to_stix, malware_to_stix, sighting_to_stix
from soc_api.data import Data, data_for, invalid, valid_time
from soc_api.models import Indicator, IndicatorIn, IndicatorPage, IndicatorType, SightingPage, Tlp
from soc_api.settings import JSON_BODY_CAP

router = APIRouter(prefix="/indicators", tags=["indicators"], max_body_size=JSON_BODY_CAP)
Reader = Annotated[Data, Depends(data_for("analyst", "network_admin", "agency", "national_centre"))]
Writer = Annotated[Data, Depends(data_for("analyst", "national_centre"))]
STIX_MEDIA = "application/stix+json;version=2.1"


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
    page = data.indicators(type=type, value=value, source=source, tlp=tlp, revoked=revoked, limit=limit,
                           cursor=cursor)
    return IndicatorPage(indicators=[Indicator.model_validate(d) for d in page.items], next_cursor=page.next_cursor)


@router.post("", response_model=Indicator, status_code=201)
def add_indicator(body: IndicatorIn, data: Writer) -> Indicator:
    try:
        doc = build([o.model_dump() for o in body.observables], source=body.source, tlp=body.tlp,
                    confidence=body.confidence, valid_from=body.valid_from, valid_until=body.valid_until,
                    name=body.name, description=body.description, labels=body.labels, created_by=data.actor)
    except IndicatorError as exc:
        raise invalid("body", str(exc)) from exc
    return Indicator.model_validate(data.add_indicator(doc))


@router.get("/sightings", response_model=SightingPage)
def sightings(
    data: Reader,
    agency: Annotated[str | None, Query(max_length=64)] = None,
    indicator_id: Annotated[str | None, Query(max_length=128)] = None,
    source: Annotated[str | None, Query(max_length=200, description="the indicators' source (a feed)")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=1024)] = None,
) -> SightingPage:
    page = data.sightings(agency=agency, indicator_id=indicator_id, limit=limit, cursor=cursor, source=source)
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
        for doc in data.export("indicators", since):  # in the model's shape (soc_api/data/sharing.py)
            objects.append(indicator_to_stix(doc))
    if "sightings" in include:
        for doc in data.export("sightings", since):
            objects.append(sighting_to_stix(doc))
    if "malware" in include:
        for doc in data.export("malware", since):
            objects.extend(malware_to_stix(doc))
    return JSONResponse(bundle(objects), media_type=STIX_MEDIA)


@router.get("/{indicator_id}", response_model=Indicator)
def get_indicator(indicator_id: Annotated[str, PathParam(max_length=128)], data: Reader) -> Indicator:
    return Indicator.model_validate(data.indicator(indicator_id))


@router.delete("/{indicator_id}", response_model=Indicator)
def revoke_indicator(indicator_id: Annotated[str, PathParam(max_length=128)], data: Writer) -> Indicator:
    """Revoke an indicator: it stops matching at once and is shared as revoked."""
    return Indicator.model_validate(data.revoke_indicator(indicator_id))
