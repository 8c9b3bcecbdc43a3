"""Event search and one event's document, as data for the console's templates (soc_api/routers/console_events.py
serves them).

Everything is read through the caller's :class:`soc_api.data.Data` with the calls ``GET /api/v1/events`` makes —
``parse_query`` (the API's query language: ``field:value`` and ``field:"quoted value"`` filters, the rest free text,
split by a linear-time expression), ``Data.search_events`` (the caller's scope: an agency user's search is its own
agency's, whatever it asks for; cursors signed and bound to the scope and the filters) and ``Data.get_event`` (another
agency's event is a 404). Results come in the store's order (oldest first) a page at a time with the API's cursor.

A search is always of a bounded time range (a preset — the last hour … 90 days — and/or chosen times, read in the
user's time zone): the histogram needs one, and a range is what keeps a search of a large store cheap. The links of a
result page (the next page, a histogram bar) carry the range as absolute UTC times, so "the last 24 hours" does not
move between pages and the API's cursor stays bound to the same query.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any, Callable, Iterable, Mapping
from urllib.parse import quote

from fastapi import HTTPException
from fastapi.exceptions import RequestValidationError

from soc import ecs
from soc.storage import StoreError
from soc.storage.aggregations import AggregateQuery
from soc_api.console import histogram as hist
from soc_api.console.alerts import entity_context
from soc_api.data import Data, parse_query

PAGE_SIZE = 50
RANGES = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7),
          "30d": timedelta(days=30), "90d": timedelta(days=90)}
DEFAULT_RANGE = "24h"
CUSTOM_SPAN = timedelta(hours=24)  # an end without a start: the day before it
MAX_SPAN = timedelta(days=366)
# Filters with an input of their own (the query box takes any field:value too).
FIELD_INPUTS = ("host.name", "source.ip", "destination.ip", "user.name", "event.dataset")
# Address fields: the search store types them as addresses, and a value that is not one is a query error there.
IP_FIELDS = frozenset({"source.ip", "destination.ip", "client.ip", "server.ip", "host.ip", "observer.ip", "related.ip",
                       "source.nat.ip", "destination.nat.ip"})
MAX_TEXT = {"q": 2000, "range": 8, "since": 40, "until": 40, "agency": 64, "cursor": 1024, "field": 256}
SUGGESTED_FIELDS = ("event.dataset", "event.action", "event.outcome", "event.category", "host.name", "source.ip",
                    "source.port", "destination.ip", "destination.port", "user.name", "process.name",
                    "network.transport", "url.path", "http.response.status_code", "observer.name", "log.level")
# Fields whose value names an entity with a page of its own (soc_api/console/entities.py).
ENTITY_FIELDS = {"source.ip": "ip", "destination.ip": "ip", "client.ip": "ip", "server.ip": "ip", "host.ip": "ip",
                 "related.ip": "ip", "user.name": "user", "user.target.name": "user", "related.user": "user",
                 "host.name": "host", "host.hostname": "host"}
ENTITY_KINDS = ("ip", "user", "host")
MAX_ENTITY = 256
EVENT_ID_CHARS = 128
AROUND = timedelta(minutes=5)  # "events around this one": this long before and after


# --- the search ------------------------------------------------------------------------------------------------------
@dataclass
class EventSearch:
    """A search as the GET form and its links carry it (a URL is a shareable search)."""

    q: str = ""
    range: str = ""
    since: str = ""  # as given (ISO 8601, or a browser's datetime-local in the user's zone); UTC after resolve()
    until: str = ""
    agency: str = ""
    fields: dict[str, str] = field(default_factory=dict)  # the inputs of FIELD_INPUTS that were filled in
    cursor: str = ""
    problems: list[str] = field(default_factory=list)  # message keys of what was dropped
    # Set by resolve():
    start: str = ""
    end: str = ""
    terms: dict[str, Any] = field(default_factory=dict)
    text: str | None = None
    error: str | None = None  # why the query cannot run (the API would answer 422)

    @classmethod
    def from_params(cls, params: Mapping[str, str], *, tenant: bool, agencies: Iterable[str]) -> "EventSearch":
        s = cls()
        for name in ("q", "range", "since", "until", "agency", "cursor"):
            value = (params.get(name) or "").strip()
            if len(value) > MAX_TEXT[name]:
                s.problems.append("events.problem.too_long")
                value = ""
            setattr(s, name, value)
        for name in FIELD_INPUTS:
            value = (params.get(name) or "").strip()
            if len(value) > MAX_TEXT["field"] or not value.isprintable():
                s.problems.append("events.problem.too_long")
                continue
            if value:
                s.fields[name] = value
        if s.range and s.range not in RANGES:
            s.problems.append("events.problem.range")
            s.range = ""
        if tenant:
            s.agency = ""  # an agency user searches its own agency, whatever the URL says
        elif s.agency and s.agency not in set(agencies):
            s.problems.append("events.problem.agency")
            s.agency = ""
        return s

    def resolve(self, zone: tzinfo, now: datetime | None = None) -> None:
        """The absolute time range (UTC) and the query's field filters and free text, as the API reads them."""
        now = now or datetime.now(timezone.utc)
        since = _when(self.since, zone, "since", self.problems)
        until = _when(self.until, zone, "until", self.problems)
        if not self.range and since is None and until is None:
            self.range = DEFAULT_RANGE
        end = until or now
        start = since
        if self.range:
            preset = now - RANGES[self.range]
            start = max(start, preset) if start else preset
        if start is None:
            start = end - CUSTOM_SPAN
        if end - start > MAX_SPAN:
            self.problems.append("events.problem.span")
            start = end - MAX_SPAN
        if start >= end:
            self.problems.append("events.problem.order")
            start, end = end - CUSTOM_SPAN, end
        self.start, self.end = ecs.utc_iso(start), ecs.utc_iso(end)
        try:
            terms, text = parse_query(self.q or None)
        except RequestValidationError as exc:
            self.error = "; ".join(str(e.get("msg")) for e in exc.errors())
            return
        for name, value in self.fields.items():
            if name in terms and terms[name] != value:
                self.problems.append("events.problem.twice")
            terms[name] = value
        for name, value in terms.items():
            if name in IP_FIELDS and not _address(str(value)):
                self.error = f"{name} takes an address or a range (for example 203.0.113.7), not {value!r}"
                return
        self.terms, self.text = terms, text

    def params(self, **changes: str) -> dict[str, str]:
        """The query parameters of this search as absolute times (no cursor unless given), ``changes`` applied."""
        values = {"q": self.q, "agency": self.agency, **self.fields, "since": self.start, "until": self.end}
        values.update(changes)
        return {k: v for k, v in values.items() if v}

    def form_params(self) -> dict[str, str]:
        """The parameters as the user gave them (the preset kept): the "first page" link."""
        values = {"q": self.q, "agency": self.agency, **self.fields, "range": self.range}
        if not self.range:
            values.update(since=self.start, until=self.end)
        return {k: v for k, v in values.items() if v}


def _address(value: str) -> bool:
    try:
        ipaddress.ip_network(value, strict=False)
        return True
    except ValueError:
        return False


def _when(value: str, zone: tzinfo, name: str, problems: list[str]) -> datetime | None:
    """An ISO 8601 time, or a browser's datetime-local value (no zone: the user's)."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        problems.append(f"events.problem.{name}")
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment.astimezone(timezone.utc)


def local_input(value: str, zone: tzinfo) -> str:
    """A UTC time as a datetime-local input shows it: in the user's zone, to the minute."""
    if not value:
        return ""
    try:
        return ecs.parse_time(value).astimezone(zone).strftime("%Y-%m-%dT%H:%M")
    except ValueError:
        return ""


@dataclass
class ResultPage:
    events: list[dict]
    next_cursor: str | None


def search_page(data: Data, s: EventSearch, limit: int = PAGE_SIZE) -> ResultPage:
    """One page of the search, oldest first, through the API's Data.search_events and its cursor (400 for a cursor
    of another search or another user)."""
    page = data.search_events(start=s.start, end=s.end, agency=s.agency or None, terms=s.terms, text=s.text,
                              limit=limit, cursor=s.cursor or None)
    return ResultPage(page.items, page.next_cursor)


def histogram(data: Data, s: EventSearch, zone: tzinfo, cap: int | None = None,
              max_buckets: int | None = None, exact: bool = True) -> hist.Histogram:
    """The search's matches per bucket of its range: counted by the store (exact), or — when the store cannot
    aggregate the query, or ``exact`` is False — each bucket by one Data.search_events, up to ``cap``."""
    cap = cap or hist.BUCKET_CAP
    max_buckets = max_buckets or hist.MAX_BUCKETS
    start, end = ecs.parse_time(s.start), ecs.parse_time(s.end)
    buckets, width = hist.edges(start, end, zone, max_buckets)
    if exact and buckets:
        first = hist.aligned_start(start, width, zone)
        seconds = int(width.total_seconds())
        try:
            counted = data.aggregate(AggregateQuery(start=s.start, end=s.end, agency=s.agency or None,
                                                    terms=s.terms, text=s.text, interval_seconds=seconds,
                                                    offset_seconds=int(first.timestamp()) % seconds))
            return hist.from_counts(buckets, width, first, counted.counts())
        except StoreError:
            pass  # counted below, bar by bar, up to the cap

    def found(since: str, until: str, limit: int) -> int:
        return len(data.search_events(start=since, end=until, agency=s.agency or None, terms=s.terms, text=s.text,
                                      limit=limit, cursor=None).items)

    return hist.count(buckets, found, width, cap)


def format_number(value: int, lang: str) -> str:
    """12345 → "12,345" (English) or "12.345" (Vietnamese)."""
    text = f"{value:,}"
    return text.replace(",", ".") if lang == "vi" else text


# --- one event -------------------------------------------------------------------------------------------------------
def event_line(event: Mapping) -> str:
    for name in ("event.original", "message", "event.action"):
        value = ecs.get(event, name)
        if isinstance(value, str) and value:
            return value if len(value) <= 300 else value[:300] + "…"
    return ""


def entity_kind(name: str, value: Any) -> str | None:
    """The kind of entity page a field's value has (ip, user, host), or None."""
    kind = ENTITY_FIELDS.get(name)
    if kind is None or not isinstance(value, str) or not value:
        return None
    return kind if valid_entity(kind, value) is not None else None


def valid_entity(kind: str, value: str) -> str | None:
    """The value as the entity pages use it (an address in its canonical spelling), or None when it cannot be one."""
    if kind not in ENTITY_KINDS or not value or len(value) > MAX_ENTITY or not value.isprintable():
        return None
    if kind == "ip":
        try:
            return str(ipaddress.ip_address(value.strip()))
        except ValueError:
            return None
    return value


def entity_path(kind: str, value: str) -> str:
    return f"/console/entities/{kind}/{quote(value, safe='')}"


Linkable = Callable[[str, str], bool]


def linkable_for(data: Data) -> Linkable:
    """Whether the caller may open an entity's page: always, except for an agency user and an entity the inventory
    gives to another agency (its page is a 404 for that user, as on the alert page)."""
    if not data.principal.is_tenant:
        return lambda kind, value: True

    def linkable(kind: str, value: str) -> bool:
        return not entity_context(data, {"entities": {kind: [value]}}, "en")[0]["hidden"]

    return linkable


def _link(name: str, value: Any, linkable: Linkable | None) -> str | None:
    """The entity page of a field's value, or None."""
    kind = entity_kind(name, value) if isinstance(value, str) else None
    if kind is None:
        return None
    value = valid_entity(kind, value) or value
    if linkable is not None and not linkable(kind, value):
        return None
    return entity_path(kind, value)


def row(event: Mapping, linkable: Linkable | None = None) -> dict:
    """What a result line shows of an event."""
    def entity(name: str) -> dict | None:
        value = ecs.get(event, name)
        if isinstance(value, list):
            value = value[0] if value else None
        if value in (None, ""):
            return None
        value = str(value)
        return {"value": value, "url": _link(name, value, linkable)}

    return {"id": ecs.get(event, "event.id"), "at": event.get("@timestamp"),
            "agency": ecs.get(event, "organization.id"), "host": entity("host.name"), "source": entity("source.ip"),
            "destination": entity("destination.ip"), "user": entity("user.name"),
            "dataset": ecs.get(event, "event.dataset"), "action": ecs.get(event, "event.action"),
            "outcome": ecs.get(event, "event.outcome"), "line": event_line(event)}


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def fields_table(event: Mapping, linkable: Linkable | None = None) -> list[dict]:
    """Every field of the stored document by its dotted ECS name, sorted, with a link to the entity page where the
    value is an address, a user or a host (a list: each of its values)."""
    out = []
    for name, value in sorted(ecs.flatten(dict(event)).items()):
        values = value if isinstance(value, list) and all(not isinstance(v, (dict, list)) for v in value) else [value]
        shown = [{"text": _text(item), "url": _link(name, item, linkable)} for item in values]
        out.append({"name": name, "shown": shown})
    return out


def event_json(event: Mapping) -> str:
    """The stored document, pretty-printed (the template escapes it)."""
    return json.dumps(event, indent=2, ensure_ascii=False, sort_keys=True, default=str)


def around_params(event: Mapping) -> dict[str, str] | None:
    """A search of the events of the same host (or source) from AROUND before this event to AROUND after it."""
    try:
        moment = ecs.parse_time(str(event.get("@timestamp") or ""))
    except ValueError:
        return None
    params = {"since": ecs.utc_iso(moment - AROUND), "until": ecs.utc_iso(moment + AROUND)}
    host = ecs.get(event, "host.name")
    if isinstance(host, str) and host and len(host) <= MAX_TEXT["field"]:
        params["host.name"] = host
    return params


def event_view(data: Data, event_id: str, lang: str) -> dict:
    """Everything the event page shows; 404 for a missing event or another agency's (Data.get_event)."""
    if not event_id or len(event_id) > EVENT_ID_CHARS or not event_id.isprintable():
        raise HTTPException(404, "no such event")
    event = data.get_event(event_id)
    linkable = linkable_for(data)
    return {"event": event, "summary": row(event, linkable), "fields": fields_table(event, linkable),
            "json": event_json(event),
            "around": around_params(event)}
