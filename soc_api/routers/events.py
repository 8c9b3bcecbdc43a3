"""Events: search by time range, agency and a query (``field:value`` ECS filters and free text), paginated."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi import Path as PathParam

from soc_api.data import Data, data_for, parse_query, valid_time
from soc_api.models import EventPage

router = APIRouter(prefix="/events", tags=["events"])
Reader = Annotated[Data, Depends(data_for("analyst", "network_admin", "agency", "national_centre"))]


@router.get("", response_model=EventPage)
def search_events(
    data: Reader,
    start: Annotated[str | None, Query(max_length=40, description="from (inclusive, ISO 8601)")] = None,
    end: Annotated[str | None, Query(max_length=40, description="to (exclusive, ISO 8601)")] = None,
    agency: Annotated[str | None, Query(max_length=64)] = None,
    q: Annotated[str | None, Query(max_length=2000, description='e.g. source.ip:203.0.113.7 "Failed password"')
                 ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=1024)] = None,
) -> EventPage:
    terms, text = parse_query(q)
    page = data.search_events(start=valid_time(start, "start"), end=valid_time(end, "end"), agency=agency,
                              terms=terms, text=text, limit=limit, cursor=cursor)
    return EventPage(events=page.items, next_cursor=page.next_cursor)


@router.get("/{event_id}", response_model=dict)
def get_event(event_id: Annotated[str, PathParam(max_length=128)], data: Reader) -> dict:
    return data.get_event(event_id)
