"""Entity pages (an address, a user, a host) as data for the console's templates (soc_api/routers/console_events.py
serves them): what the inventory says of the entity, and its timeline — the events and the alerts about it, newest
first, a page at a time, over a bounded look-back (the last day … 90 days).

Tenancy is the API's: events are read with ``Data.search_events`` and alerts with ``Data.list_alerts``, so an agency
user's timeline holds its own agency's events and alerts only; and an entity the inventory gives to another agency
(an address in its networks, one of its assets) is not shown to an agency user at all (404), exactly as the alert
page hides another agency's inventory.

Events about an entity are those with its value in one of its fields (as alerts name entities, detections/alerts.py:
an address in ``source.ip`` or ``destination.ip``, a user in ``user.name`` or ``user.target.name``, a host in
``host.name``): one exact-match search per field, the results merged. Alerts about it are those naming the value
among their entities (``AlertFilter.entity``, newest first with the API's cursor).

The store returns events oldest first only, so the newest ones are found by walking back from the end of the range in
windows: a window that holds no more than the page still needs is taken whole (newest first); one that holds more is
narrowed (down to a millisecond, which is read whole up to :data:`DENSE_CAP` events a field) and the walk goes on from
its start, the windows widening again while they are sparse. Every query is limited, and a page asks at most
:data:`WINDOW_BUDGET` windows: a page that used them up without filling stops there and its "next" link goes on from
where the walk stopped. Events and alerts are merged by time (an alert at its last sighting); an item is shown only
once the other list is known down to its time, so the timeline is in order across pages. The position of both lists
is kept in one cursor signed by the data layer and bound to the caller, the entity and the look-back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable

from fastapi import HTTPException

from soc import ecs
from soc_api.console.alerts import agency_name, api_cursor_after, entity_context
from soc_api.console.events import FIELD_INPUTS, linkable_for, row, valid_entity
from soc_api.data import AlertFilter, Data

PAGE_SIZE = 50
RANGES = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30), "90d": timedelta(days=90)}
DEFAULT_RANGE = "7d"
FIELDS = {"ip": ("source.ip", "destination.ip"), "user": ("user.name", "user.target.name"), "host": ("host.name",)}
FIRST_SPAN = timedelta(hours=1)  # the first window of a walk
GROW = 4  # a window that fitted: the next is this many times wider
SHRINK = 8  # a window that held too many: tried again this many times narrower
MIN_SPAN = timedelta(milliseconds=1)  # event times are kept to the millisecond
DENSE_CAP = 1000  # events read of one millisecond (a field) when it holds more than a page
WINDOW_BUDGET = 24  # windows looked at per page
CURSOR_KIND = "console-entity"
MILLI = timedelta(milliseconds=1)


def _key(event: dict) -> tuple[str, str]:
    return str(event.get("@timestamp") or ""), str(ecs.get(event, "event.id") or "")


def _iso(moment: datetime) -> str:
    return ecs.utc_iso(moment)


# --- the entity ----------------------------------------------------------------------------------------------------
def entity_or_404(data: Data, kind: str, value: str, lang: str) -> dict:
    """The entity with its inventory context (entity_context of the alert page: agency, asset, criticality, network
    zone). 404 for a kind without pages, a value that cannot be one of its kind, or — for an agency user — an entity
    the inventory gives to another agency."""
    value = valid_entity(kind, value) or ""
    if not value:
        raise HTTPException(404, "no such entity")
    context = entity_context(data, {"entities": {kind: [value]}}, lang)[0]
    if context["hidden"]:
        raise HTTPException(404, "no such entity")  # another agency's: as if it did not exist
    context["agency_name"] = agency_name(data.suite.inventory, context.get("agency"), lang) \
        if context.get("agency") else ""
    return context


# --- events, newest first ------------------------------------------------------------------------------------------
Search = Callable[[str, str, int], tuple[list[dict], bool]]


def field_search(data: Data, kind: str, value: str) -> Search:
    """``search(from, to, limit)``: the events of [from, to) about the entity, through Data.search_events (the
    caller's scope), one query a field, merged; and whether that is all of them (no field's query was cut)."""

    def search(start: str, end: str, limit: int) -> tuple[list[dict], bool]:
        found: dict[str, dict] = {}
        complete = True
        for name in FIELDS[kind]:
            items = data.search_events(start=start, end=end, agency=None, terms={name: value}, text=None,
                                       limit=limit, cursor=None).items
            complete = complete and len(items) < limit
            for event in items:
                found.setdefault(_key(event)[1] or str(id(event)), event)
        return list(found.values()), complete

    return search


@dataclass
class EventWalk:
    events: list[dict]  # newest first
    position: dict | None  # where the next page goes on; None: no more (see newest_events)
    frontier: str  # every event at or after this time (and before the start) is in ``events``; "" when done
    windows: int = 0
    truncated: bool = False  # a millisecond held more than DENSE_CAP events: some of it is not shown


def _span(position: dict) -> timedelta:
    try:
        millis = int(position.get("s") or 0)
    except (TypeError, ValueError):
        millis = 0
    return timedelta(milliseconds=millis) if millis > 0 else FIRST_SPAN


def newest_events(search: Search, *, position: dict, floor: str, want: int,
                  budget: int = WINDOW_BUDGET) -> EventWalk:
    """Up to ``want`` events, newest first, before ``position`` and from ``floor`` on.

    A position is ``{"h": end, "c": [time, id] or None, "s": window in milliseconds}``: the events before ``end``
    (and, with ``c``, before that event in (time, id) order), the walk going on with windows of ``s``. Each window
    taken or narrowed is progress, and a millisecond is always read whole, so pages of any budget come to the end."""
    hi = ecs.parse_time(position["h"])
    cut = tuple(position["c"]) if position.get("c") else None
    bottom = ecs.parse_time(floor)
    span = _span(position)
    out: list[dict] = []
    windows = 0
    truncated = False

    def before_cut(items: list[dict]) -> list[dict]:
        return [e for e in items if cut is None or _key(e) < cut]

    def at(end: datetime, last: tuple | None) -> dict:
        return {"h": _iso(end), "c": list(last) if last else None, "s": span // MILLI}

    while len(out) < want and hi > bottom and windows < max(1, budget):
        lo = max(bottom, hi - span)
        need = want - len(out)
        items, complete = search(_iso(lo), _iso(hi), need + 1)
        windows += 1
        items = before_cut(items)
        if complete and len(items) <= need:
            out.extend(sorted(items, key=_key, reverse=True))
            hi, cut, span = lo, None, span * GROW
            continue
        if span > MIN_SPAN:
            span = max(MIN_SPAN, span / SHRINK)
            continue
        # One millisecond holds more than the page still needs: read it whole and take its newest.
        items, complete = search(_iso(lo), _iso(hi), DENSE_CAP)
        windows += 1
        truncated = truncated or not complete
        items = sorted(before_cut(items), key=_key, reverse=True)
        taken = items[:need]
        out.extend(taken)
        if len(items) > need:
            last = _key(taken[-1])
            return EventWalk(out, at(hi, last), last[0], windows, truncated)
        hi, cut = lo, None
    if hi <= bottom:
        return EventWalk(out, None, "", windows, truncated)
    return EventWalk(out, at(hi, cut), _iso(hi), windows, truncated)


def position_after(event: dict, span: timedelta = FIRST_SPAN) -> dict:
    """The walk's position just after ``event`` (newest first): the events before it in (time, id) order."""
    at, event_id = _key(event)
    return {"h": _iso(ecs.parse_time(at) + MILLI), "c": [at, event_id], "s": span // MILLI}


# --- the timeline --------------------------------------------------------------------------------------------------
@dataclass
class Timeline:
    items: list[dict]  # {"kind": "event"|"alert", "at": time, "event"/"alert": ..., "row": ...}
    next_cursor: str | None
    since: str
    until: str
    windows: int = 0
    truncated: bool = False
    problems: list[str] = field(default_factory=list)


def timeline(data: Data, kind: str, value: str, range_key: str, cursor: str | None, *, limit: int = PAGE_SIZE,
             now: datetime | None = None, budget: int = WINDOW_BUDGET) -> Timeline:
    """One page of the entity's timeline. A cursor of another entity, look-back or user starts again (said so)."""
    binding = {"k": kind, "v": value, "r": range_key}
    problems: list[str] = []
    state = None
    if cursor:
        try:
            state = data.decode_cursor(CURSOR_KIND, binding, cursor)
        except HTTPException:
            problems.append("entity.problem.cursor")
    if state is None:
        until = now or datetime.now(timezone.utc)
        state = {"u": _iso(until), "f": _iso(until - RANGES[range_key]), "e": {"h": _iso(until), "c": None, "s": None},
                 "a": [None]}
    until, floor = state["u"], state["f"]

    # Events: the next ones, newest first.
    walk = EventWalk([], None, "")
    if state["e"] is not None:
        walk = newest_events(field_search(data, kind, value), position=state["e"], floor=floor, want=limit,
                             budget=budget)
    # Alerts: the next page of the API's listing of alerts naming the entity.
    f = AlertFilter(entity=value, since=floor, until=until)
    alerts: list[dict] = []
    alert_next = None
    if state["a"] is not None:
        page = data.list_alerts(f, limit, state["a"][0])
        alerts, alert_next = page.items, page.next_cursor
    alert_frontier = alerts[-1].get("last_seen", "") if alert_next else ""
    # An item is placed once the other list is known down to its time.
    threshold = max(walk.frontier, alert_frontier)
    merged = [{"kind": "event", "at": _key(e)[0], "tie": _key(e)[1], "event": e} for e in walk.events
              if _key(e)[0] >= threshold]
    merged += [{"kind": "alert", "at": a.get("last_seen", ""), "tie": a.get("id", ""), "alert": a} for a in alerts
               if a.get("last_seen", "") >= threshold]
    merged.sort(key=lambda item: (item["at"], item["kind"] == "alert", item["tie"]), reverse=True)
    shown = merged[:limit]
    used_events = sum(1 for item in shown if item["kind"] == "event")
    used_alerts = sum(1 for item in shown if item["kind"] == "alert")

    if state["e"] is None:
        events_next = None
    elif used_events == len(walk.events):
        events_next = walk.position
    else:
        events_next = position_after(walk.events[used_events - 1]) if used_events else state["e"]
    if state["a"] is None:
        alerts_next = None
    elif used_alerts == len(alerts):
        alerts_next = [alert_next] if alert_next else None
    else:
        alerts_next = [api_cursor_after(data, f, alerts[used_alerts - 1])] if used_alerts else state["a"]

    next_cursor = None
    if events_next is not None or alerts_next is not None:
        next_cursor = data.encode_cursor(CURSOR_KIND, binding, {"u": until, "f": floor, "e": events_next,
                                                                "a": alerts_next})
    linkable = linkable_for(data)
    for item in shown:
        if item["kind"] == "event":
            item["row"] = row(item["event"], linkable)
    return Timeline(shown, next_cursor, floor, until, walk.windows, walk.truncated, problems)


def searches(kind: str, value: str) -> list[tuple[str, dict[str, str]]]:
    """Event searches of the entity, one per field (the search page's own inputs where it has one, else the query
    language's ``field:"value"``), each for the page's look-back."""
    out = []
    for name in FIELDS[kind]:
        if name in FIELD_INPUTS:
            out.append((name, {name: value}))
        elif '"' not in value:
            out.append((name, {"q": f'{name}:"{value}"'}))
    return out

