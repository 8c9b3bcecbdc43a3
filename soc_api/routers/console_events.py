"""The console's event search, one event's document, and the entity pages (soc_api/console/events.py,
entities.py and histogram.py shape what they show).

Every read goes through the signed-in user's Data with the API's calls — ``parse_query`` and ``Data.search_events``
as ``GET /api/v1/events`` (the same query language, its linear-time split, the caller's scope and the API's signed
cursors), ``Data.get_event`` as ``GET /api/v1/events/{id}``, ``Data.list_alerts`` as ``GET /api/v1/alerts`` — and
with the roles of those routes (analysts, network admins, agency users, the national centre; admin always). An agency
user's search, histogram and timelines are its own agency's; another agency's event, or an entity the inventory
gives to another agency, is a 404 page, like a missing one. These pages only read: there is no form that changes
anything here.

| page                                   | as the API's                                  |
|----------------------------------------|-----------------------------------------------|
| /console/events                        | GET /events (+ one GET /events a histogram bar, limited) |
| /console/events/{id}                   | GET /events/{id}                              |
| /console/entities/{ip,user,host}/{v}   | GET /events per field of the entity, GET /alerts?entity= |
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, Response

from soc import ecs
from soc_api.console import entities, events, web
from soc_api.console import histogram as hist
from soc_api.console.alerts import agency_name, name_key
from soc_api.console.web import console_data, render, time_zone
from soc_api.data import Data

PREFIX = ""  # the console lives at /console, beside the API's /api/v1
install = web.install  # static files and the console's error pages (app.py calls each install once)
router = APIRouter(include_in_schema=False)

READ_ROLES = ("analyst", "network_admin", "agency", "national_centre")  # as GET /api/v1/events and /alerts
Reader = Annotated[Data, Depends(console_data(*READ_ROLES))]
SEARCH = "/console/events"


def _agencies(data: Data, lang: str) -> list[tuple[str, str]]:
    inventory = data.suite.inventory
    return sorted(((a, agency_name(inventory, a, lang)) for a in inventory.agencies), key=lambda x: name_key(x[1]))


def _url(path: str, params: dict[str, str]) -> str:
    return f"{path}?{urlencode(params)}" if params else path


# --- the search --------------------------------------------------------------------------------------------------
@router.get(SEARCH, response_class=HTMLResponse)
def event_search(request: Request, data: Reader) -> Response:
    lang = web.language(request)
    zone = time_zone(request)
    tenant = data.principal.is_tenant
    s = events.EventSearch.from_params(request.query_params, tenant=tenant, agencies=data.suite.inventory.agencies)
    s.resolve(zone)
    page = histogram = None
    status = 200
    if s.error is None:
        try:
            page = events.search_page(data, s)
        except HTTPException as exc:
            if exc.status_code != 400 or not s.cursor:
                raise
            s.problems.append("events.problem.cursor")  # a cursor of another search (or another user's)
            s.cursor = ""
            page = events.search_page(data, s)
        histogram = events.histogram(data, s, zone)
        style = hist.label_style(histogram.width)
        hist.layout(histogram, lambda moment: moment.astimezone(zone).strftime("%H:%M") if style == "clock"
                    else web.format_time(moment, zone, lang, style))
    else:
        status = 422
    linkable = events.linkable_for(data)
    rows = [events.row(e, linkable) for e in page.events] if page else []
    inventory = data.suite.inventory
    context = {
        "active": "events",
        "s": s,
        "tenant": tenant,
        "agencies": [] if tenant else _agencies(data, lang),
        "agency_names": {r["agency"]: agency_name(inventory, r["agency"], lang) for r in rows if r["agency"]},
        "ranges": list(events.RANGES),
        "field_inputs": events.FIELD_INPUTS,
        "suggested_fields": events.SUGGESTED_FIELDS,
        # The time inputs show the times given (as resolved); a preset alone leaves them empty.
        "since_input": events.local_input(s.start, zone) if s.since else "",
        "until_input": events.local_input(s.end, zone) if s.until else "",
        "rows": rows,
        "histogram": histogram,
        "page_size": events.PAGE_SIZE,
        "next_url": _url(SEARCH, s.params(cursor=page.next_cursor)) if page and page.next_cursor else None,
        "first_url": _url(SEARCH, s.form_params()) if s.cursor else None,
        "number": lambda value: events.format_number(value, lang),
        "zoom_url": lambda bucket: _url(SEARCH, s.params(since=bucket.start_iso, until=bucket.end_iso)),
    }
    return render(request, "events.html", context, status_code=status)


# --- one event ---------------------------------------------------------------------------------------------------
@router.get(SEARCH + "/{event_id}", response_class=HTMLResponse)
def event_page(event_id: str, request: Request, data: Reader) -> Response:
    lang = web.language(request)
    view = events.event_view(data, event_id, lang)
    agency = ecs.get(view["event"], "organization.id")
    context = {
        "active": "events",
        **view,
        "agency_name": agency_name(data.suite.inventory, agency, lang) if agency else "",
        "around_url": _url(SEARCH, view["around"]) if view["around"] else None,
    }
    return render(request, "event.html", context)


# --- entity pages ------------------------------------------------------------------------------------------------
@router.get("/console/entities/{kind}/{value:path}", response_class=HTMLResponse)
def entity_page(kind: str, value: str, request: Request, data: Reader) -> Response:
    if kind not in entities.FIELDS:
        raise HTTPException(404, "no such entity")
    lang = web.language(request)
    entity = entities.entity_or_404(data, kind, value, lang)
    value = entity["value"]
    problems: list[str] = []
    range_key = request.query_params.get("range") or entities.DEFAULT_RANGE
    if range_key not in entities.RANGES:
        problems.append("entity.problem.range")
        range_key = entities.DEFAULT_RANGE
    cursor = request.query_params.get("cursor") or None
    if cursor and len(cursor) > 2048:
        cursor = None
        problems.append("entity.problem.cursor")
    line = entities.timeline(data, kind, value, range_key, cursor)
    path = events.entity_path(kind, value)
    inventory = data.suite.inventory
    agencies = {ecs.get(i.get("event") or i.get("alert") or {}, "organization.id") for i in line.items}
    here_params = {"range": range_key} if range_key != entities.DEFAULT_RANGE else {}
    window = {"since": line.since, "until": line.until}
    context = {
        "active": "events",
        "entity": entity,
        "kind": kind,
        "value": value,
        "line": line,
        "problems": problems + line.problems,
        "range": range_key,
        "ranges": list(entities.RANGES),
        "path": path,
        "agency_names": {a: agency_name(inventory, a, lang) for a in agencies if a},
        "next_url": _url(path, {**here_params, "cursor": line.next_cursor}) if line.next_cursor else None,
        "first_url": _url(path, here_params) if cursor else None,
        "alerts_url": _url("/console/alerts", {"entity": value}),
        "searches": [(name, _url(SEARCH, {**params, **window})) for name, params in entities.searches(kind, value)],
        "page_size": entities.PAGE_SIZE,
        "now": datetime.now(timezone.utc),
    }
    return render(request, "entity.html", context)
