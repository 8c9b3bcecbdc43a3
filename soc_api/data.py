"""The tenancy-enforcing data layer: every router reads and writes tenant data through a :class:`Data` made for the
caller, never through the store directly.

The agency a caller may see is decided once, here, from the key (an agency key: its own agency, whatever it asks
for; other roles: what they ask for) and passed into every store query — events, alerts, documents, counts,
pagination cursors. Cursors are signed and bound to the scope and filters they were issued for, so a cursor from one
agency's listing cannot be replayed in another's. A single record read by id is checked against the scope after it
is read, and a record outside it answers exactly like a missing one (404), so ids of other agencies cannot be
probed.

Other routers (playbooks, reports) use :meth:`Data.find` / :meth:`Data.get` on their document collections with the
field that names the agency, and get the same guarantees.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
from dataclasses import dataclass, field
from typing import Annotated, Any, Callable, Iterator

from fastapi import Depends, HTTPException, Request
from fastapi.exceptions import RequestValidationError

from detections.lifecycle import LifecycleError
from soc import ecs
from soc.storage.base import AlertQuery, DocumentQuery, EventQuery, Store
from soc_api.cache import list_cache
from soc_api.deps import client_address, require_roles
from soc_api.keys import Principal
from soc_api.settings import api_settings

SEVERITIES = ("informational", "low", "medium", "high", "critical")
SCAN_PAGE = 1000
SCAN_CAP = 20_000  # alerts looked at for a filter or sort the store cannot do itself
ECS_FIELD = re.compile(r"^[a-z@_][a-z0-9_@]*(\.[a-z0-9_@]+){0,8}$")
_NUMERIC_FIELDS = {"source.port", "destination.port", "client.port", "server.port", "source.bytes",
                   "destination.bytes", "network.bytes", "http.response.status_code", "process.pid",
                   "event.severity", "log.syslog.priority", "log.syslog.severity.code", "log.syslog.facility.code"}


def invalid(where: str, message: str, value: Any = None) -> RequestValidationError:
    """A 422 in the same shape as FastAPI's own validation errors (what the OpenAPI document promises for 422):
    ``where`` is "query.until", "body.status", "body"..."""
    return RequestValidationError([{"loc": tuple(where.split(".")), "msg": message, "type": "value_error",
                                    "input": value}])


def _cursor_key(suite) -> bytes:
    key = getattr(suite, "_cursor_key", None)
    if key is None:
        env = api_settings(suite).cursor_key_env
        key = (os.environ.get(env) or "").encode() if env else b""
        key = key or secrets.token_bytes(32)
        try:
            suite._cursor_key = key
        except AttributeError:
            pass
    return key


@dataclass
class AlertFilter:
    status: str | None = None
    severity: str | None = None
    agency: str | None = None
    rule_id: str | None = None
    since: str | None = None  # last_seen >= since
    until: str | None = None  # last_seen < until
    entity: str | None = None  # any entity value (address, user, host, hash)
    incident: str | None = None
    sort: str = "-last_seen"

    @property
    def native(self) -> bool:
        """Whether the store can do all of it itself (else: a bounded scan here)."""
        return self.incident is None and self.sort == "-last_seen"


SORTS = {
    "-last_seen": (lambda a: a.get("last_seen", ""), True),
    "last_seen": (lambda a: a.get("last_seen", ""), False),
    "-first_seen": (lambda a: a.get("first_seen", ""), True),
    "first_seen": (lambda a: a.get("first_seen", ""), False),
    "-severity": (lambda a: SEVERITIES.index(a["severity"]) if a.get("severity") in SEVERITIES else 2, True),
    "severity": (lambda a: SEVERITIES.index(a["severity"]) if a.get("severity") in SEVERITIES else 2, False),
    "-count": (lambda a: a.get("count", 0), True),
    "count": (lambda a: a.get("count", 0), False),
}


@dataclass
class Page:
    items: list[dict]
    next_cursor: str | None = None
    scanned_all: bool = True  # False: a scan stopped at SCAN_CAP; narrow the filter to see the rest
    extra: dict = field(default_factory=dict)


class Data:
    def __init__(self, request: Request | None, principal: Principal, suite=None):
        self.request = request
        self.principal = principal
        self.suite = suite if suite is not None else request.app.state.suite
        self.store: Store = self.suite.store

    @classmethod
    def system(cls, suite, name: str = "system") -> "Data":
        """The suite itself reading everything (scheduled jobs such as the posture push), with no request."""
        return cls(None, Principal(key_id="-", role="national_centre", agency=None, name=name, user=name), suite)

    # --- scope -------------------------------------------------------------------------------------------------
    @property
    def actor(self) -> str:
        return self.principal.user or f"key:{self.principal.key_id}"

    @property
    def source(self) -> str | None:
        return client_address(self.request) if self.request is not None else None

    def scope(self, requested: str | None = None) -> str | None:
        """The agency every query of this caller is limited to (None: all agencies)."""
        if self.principal.is_tenant:
            if requested is not None and requested != self.principal.agency:
                raise HTTPException(403, "an agency key can only read its own agency")
            return self.principal.agency
        return requested

    def visible(self, doc: dict | None, agency_field: str = "organization.id") -> bool:
        if doc is None:
            return False
        if not self.principal.is_tenant:
            return True
        value = ecs.get(doc, agency_field)
        if isinstance(value, list):
            return value == [self.principal.agency]
        return value == self.principal.agency

    # --- cursors -------------------------------------------------------------------------------------------------
    def _binding(self, kind: str, filters: Any) -> str:
        scope = self.principal.agency if self.principal.is_tenant else "*"
        raw = json.dumps([kind, scope, filters], sort_keys=True, default=str)
        return hashlib.sha256(raw.encode()).hexdigest()[:16]

    def encode_cursor(self, kind: str, filters: Any, position: Any) -> str:
        body = json.dumps({"b": self._binding(kind, filters), "p": position}, separators=(",", ":")).encode()
        mac = hmac.new(_cursor_key(self.suite), body, hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(mac + body).decode().rstrip("=")

    def decode_cursor(self, kind: str, filters: Any, cursor: str | None) -> Any:
        if not cursor:
            return None
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
            mac, body = raw[:16], raw[16:]
            valid = hmac.compare_digest(mac, hmac.new(_cursor_key(self.suite), body, hashlib.sha256).digest()[:16])
            data = json.loads(body) if valid else None
        except (ValueError, TypeError):
            data = None
        if not data or data.get("b") != self._binding(kind, filters):
            raise HTTPException(400, "the cursor is not one this API issued for this query")
        return data["p"]

    # --- alerts --------------------------------------------------------------------------------------------------
    def _alert_query(self, f: AlertFilter, limit: int, after: tuple[str, str] | None) -> AlertQuery:
        if after is None and f.until:
            after = (f.until, "")  # (last_seen < until) is exactly "after (until, '')" in newest-first order
        return AlertQuery(agency=self.scope(f.agency), status=f.status, severity=f.severity, rule_id=f.rule_id,
                          since=f.since, entity=f.entity, limit=limit, after=after)

    def list_alerts(self, f: AlertFilter, limit: int, cursor: str | None) -> Page:
        filters = f.__dict__
        position = self.decode_cursor("alerts", filters, cursor)
        if f.native:
            after = tuple(position) if position else None
            alerts = self.store.list_alerts(self._alert_query(f, limit, after))
            alerts = [a for a in alerts if self.visible(a)]  # defence in depth: the store already filtered
            next_cursor = (self.encode_cursor("alerts", filters, [alerts[-1]["last_seen"], alerts[-1]["id"]])
                           if len(alerts) == limit else None)
            return Page(alerts, next_cursor)
        # Filters and sorts the store cannot do: look at up to SCAN_CAP alerts, newest first, and page in memory.
        matched, complete = self._scan_alerts(f)
        key, descending = SORTS[f.sort]
        matched.sort(key=lambda a: (key(a), a.get("last_seen", ""), a["id"]), reverse=descending)
        offset = int(position or 0)
        page = matched[offset:offset + limit]
        more = offset + limit < len(matched)
        return Page(page, self.encode_cursor("alerts", filters, offset + limit) if more else None, complete)

    def _scan_alerts(self, f: AlertFilter) -> tuple[list[dict], bool]:
        matched: list[dict] = []
        looked = 0
        after = None
        while looked < SCAN_CAP:
            batch = self.store.list_alerts(self._alert_query(f, SCAN_PAGE, after))
            looked += len(batch)
            for alert in batch:
                if not self.visible(alert):
                    continue
                if f.entity and not any(f.entity in values for values in (alert.get("entities") or {}).values()):
                    continue
                if f.incident and alert.get("incident") != f.incident:
                    continue
                matched.append(alert)
            if len(batch) < SCAN_PAGE:
                return matched, True
            after = (batch[-1]["last_seen"], batch[-1]["id"])
        return matched, False

    def iter_alerts(self, f: AlertFilter, cap: int = SCAN_CAP) -> Iterator[dict]:
        """Every visible alert matching the store-side filters, newest first, at most ``cap``."""
        after, seen = None, 0
        while seen < cap:
            size = min(SCAN_PAGE, cap - seen)
            batch = self.store.list_alerts(self._alert_query(f, size, after))
            for alert in batch:
                if self.visible(alert):
                    yield alert
            seen += len(batch)
            if len(batch) < size:
                return
            after = (batch[-1]["last_seen"], batch[-1]["id"])

    def get_alert(self, alert_id: str) -> dict:
        alert = self.store.get_alert(alert_id)
        if not self.visible(alert):
            raise HTTPException(404, "no such alert")  # another agency's alert reads as a missing one
        return alert

    def evidence(self, alert: dict) -> list[dict]:
        agency = ecs.get(alert, "organization.id")
        events = self.store.get_events(list(alert.get("evidence") or []))
        # Evidence belongs to the alert's agency; anything else is not shown to a tenant.
        return [e for e in events if not self.principal.is_tenant or ecs.get(e, "organization.id") == agency]

    def edit_alert(self, alert_id: str, change: Callable[[dict], Any], refresh: bool = True) -> dict:
        """Apply an analyst's change to a visible alert, under the alert manager's lock; 404 / 409 / 422 on refusal."""
        self.get_alert(alert_id)
        try:
            result = self.suite.alerts.edit(alert_id, change)
        except LifecycleError as exc:
            if exc.conflict:
                raise HTTPException(409, str(exc)) from exc
            raise invalid("body", str(exc)) from exc
        if result is None:
            raise HTTPException(404, "no such alert")
        if refresh:
            self.store.refresh()  # the analyst's next listing must show the change
        list_cache(self.suite).invalidate()
        return result[0]

    # --- events --------------------------------------------------------------------------------------------------
    def search_events(self, *, start: str | None, end: str | None, agency: str | None, terms: dict[str, Any],
                      text: str | None, limit: int, cursor: str | None) -> Page:
        filters = {"start": start, "end": end, "agency": agency, "terms": terms, "text": text}
        position = self.decode_cursor("events", filters, cursor)
        query = EventQuery(start=start, end=end, agency=self.scope(agency), terms=terms, text=text, limit=limit,
                           after=tuple(position) if position else None)
        events = [e for e in self.store.search_events(query) if self.visible(e)]
        next_cursor = (self.encode_cursor("events", filters, [events[-1]["@timestamp"], ecs.get(events[-1], "event.id")])
                       if len(events) == limit else None)
        return Page(events, next_cursor)

    def get_event(self, event_id: str) -> dict:
        found = self.store.get_events([event_id])
        if not found or not self.visible(found[0]):
            raise HTTPException(404, "no such event")
        return found[0]

    # --- documents (incidents, sightings, audit, playbook runs, reports, ...) -------------------------------------
    def find(self, collection: str, query: DocumentQuery, *, agency: str | None = None,
             agency_field: str | None = "organization.id", cursor: str | None = None) -> Page:
        """A page of a collection, limited to the caller's scope on ``agency_field``, with a signed cursor.

        ``agency_field=None`` is for shared collections (indicators): no agency partition, the caller restricts.
        """
        terms = dict(query.terms)
        if agency_field is not None:
            scope = self.scope(agency)
            if scope is not None:
                terms[agency_field] = scope
        filters = {"c": collection, "t": query.terms, "r": query.ranges, "s": query.sort, "d": query.descending,
                   "a": agency, "f": agency_field}
        position = self.decode_cursor("docs", filters, cursor)
        q = DocumentQuery(terms=terms, ranges=query.ranges, sort=query.sort, descending=query.descending,
                          limit=query.limit, after=tuple(position) if position else query.after)
        docs = self.store.find_documents(collection, q)
        if agency_field is not None:
            docs = [d for d in docs if self.visible(d, agency_field)]
        next_cursor = None
        if len(docs) == query.limit:
            last = docs[-1]
            sort_value = last["id"] if query.sort == "id" else ecs.get(last, query.sort)
            next_cursor = self.encode_cursor("docs", filters, [sort_value, last["id"]])
        return Page(docs, next_cursor)

    def get(self, collection: str, doc_id: str, *, agency_field: str = "organization.id",
            what: str = "document") -> dict:
        doc = self.store.get_document(collection, doc_id)
        if not self.visible(doc, agency_field):
            raise HTTPException(404, f"no such {what}")
        return doc


def data_for(*roles: str) -> Callable[..., Data]:
    """A dependency: the caller must hold one of ``roles`` (admin always may); gives the caller's Data."""

    checker = require_roles(*roles)

    # The dependency is a default value, not an annotation: annotations are strings here and cannot see ``roles``.
    # Async: building it does no I/O, so it needs no hop to the thread pool.
    async def build(request: Request, principal: Principal = Depends(checker)) -> Data:
        return Data(request, principal)

    return build


def parse_query(q: str | None, max_terms: int = 20) -> tuple[dict[str, Any], str | None]:
    """``field:value`` tokens (value may be "quoted") become exact ECS field matches; the rest is free text."""
    if not q:
        return {}, None
    terms: dict[str, Any] = {}
    words: list[str] = []
    for match in re.finditer(r'(\S+?):"([^"]*)"|(\S+?):(\S+)|"([^"]*)"|(\S+)', q):
        name = match.group(1) or match.group(3)
        value = match.group(2) if match.group(1) else match.group(4)
        if name and ECS_FIELD.match(name) and not name.startswith(("http", "https")):
            if len(terms) >= max_terms:
                raise invalid("query.q", f"at most {max_terms} field filters in a query", q)
            if name in _NUMERIC_FIELDS:
                if not re.fullmatch(r"-?\d{1,18}", value or ""):
                    raise invalid("query.q", f"{name} takes a whole number, not {value!r}", value)
                terms[name] = int(value)
            else:
                terms[name] = value
        else:
            words.append(match.group(5) if match.group(5) is not None else match.group(0))
    text = " ".join(w for w in words if w).strip() or None
    return terms, text


def valid_time(value: str | None, name: str) -> str | None:
    if value is None:
        return None
    try:
        return ecs.utc_iso(ecs.parse_time(value))
    except ValueError as exc:
        raise invalid(f"query.{name}", f"{name} must be an ISO 8601 time, e.g. 2026-11-22T10:00:00Z", value) from exc
