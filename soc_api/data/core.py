"""The core of the data layer: whom a caller is, what it may see (its scope, each record's visibility), signed
cursors, and documents by collection. The area parts (alerts.py, triage.py, sharing.py, admin.py) build on it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from dataclasses import dataclass, field, replace
from typing import Any

from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError

from soc import ecs, linear_re
from soc.storage.base import DocumentQuery, Store
from soc.storage.aggregations import AggregateQuery, AggregateResult
from soc_api.deps import client_address, tenant_scope
from soc_api.keys import Principal
from soc_api.state import api_state

ECS_FIELD = re.compile(r"^[a-z@_][a-z0-9_@]*(\.[a-z0-9_@]+){0,8}$")
_NUMERIC_FIELDS = {"source.port", "destination.port", "client.port", "server.port", "source.bytes",
                   "destination.bytes", "network.bytes", "http.response.status_code", "process.pid",
                   "event.severity", "log.syslog.priority", "log.syslog.severity.code", "log.syslog.facility.code"}


# An analyst's query, split into field:value filters and words: linear time whatever the text (soc/linear_re.py).
_QUERY_TOKENS = linear_re.compile(r'(\S+?):"([^"]*)"|(\S+?):(\S+)|"([^"]*)"|(\S+)')


def invalid(where: str, message: str, value: Any = None) -> RequestValidationError:
    """A 422 in the same shape as FastAPI's own validation errors (what the OpenAPI document promises for 422):
    ``where`` is "query.until", "body.status", "body"..."""
    return RequestValidationError([{"loc": tuple(where.split(".")), "msg": message, "type": "value_error",
                                    "input": value}])


def _cursor_key(suite) -> bytes:
    return api_state(suite).cursor_key


@dataclass
class Page:
    items: list[dict]
    next_cursor: str | None = None
    scanned_all: bool = True  # False: a scan stopped at its cap; narrow the filter to see the rest
    extra: dict = field(default_factory=dict)


class DataCore:
    def __init__(self, request: Request | None, principal: Principal, suite=None):
        self.request = request
        self.principal = principal
        self.suite = suite if suite is not None else request.app.state.suite
        self.store: Store = self.suite.store

    @classmethod
    def system(cls, suite, name: str = "system"):
        """The suite itself reading everything (scheduled jobs such as the posture push), with no request."""
        return cls(None, Principal(key_id="-", role="national_centre", agency=None, name=name, user=name), suite)

    # --- scope -------------------------------------------------------------------------------------------------
    @property
    def actor(self) -> str:
        return self.principal.user or f"key:{self.principal.key_id}"

    @property
    def source(self) -> str | None:
        return client_address(self.request) if self.request is not None else None

    def scope(self, requested: str | None = None) -> str | tuple[str, ...] | None:
        """The agency (or a tenant's subtree of agencies) every query of this caller is limited to (None: all)."""
        return tenant_scope(self.principal, requested)

    def aggregate(self, query: AggregateQuery) -> AggregateResult:
        """Counts and figures over what this caller may see: a tenant's query is its own agency's, whatever it asks."""
        return self.store.aggregate(replace(query, agency=self.scope(query.agency)))

    def visible(self, doc: dict | None, agency_field: str = "organization.id") -> bool:
        if doc is None:
            return False
        if not self.principal.is_tenant:
            return True
        value = ecs.get(doc, agency_field)
        if isinstance(value, list):
            return len(value) == 1 and self.principal.may_see(value[0])
        return self.principal.may_see(value)

    def refresh(self) -> None:
        """Make what this caller just wrote visible to its next read (a search store shows writes after a refresh)."""
        self.store.refresh()

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
                terms[agency_field] = list(scope) if isinstance(scope, tuple) else scope
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

    def find_all(self, collection: str, query: DocumentQuery, *, cap: int,
                 agency_field: str | None = "organization.id") -> list[dict]:
        """Every visible document of a query, page after page, at most about ``cap``."""
        out: list[dict] = []
        cursor = None
        while len(out) < cap:
            page = self.find(collection, query, agency_field=agency_field, cursor=cursor)
            out.extend(page.items)
            if not page.next_cursor:
                break
            cursor = page.next_cursor
        return out

    def get(self, collection: str, doc_id: str, *, agency_field: str = "organization.id",
            what: str = "document") -> dict:
        doc = self.store.get_document(collection, doc_id)
        if not self.visible(doc, agency_field):
            raise HTTPException(404, f"no such {what}")
        return doc


def parse_query(q: str | None, max_terms: int = 20) -> tuple[dict[str, Any], str | None]:
    """``field:value`` tokens (value may be "quoted") become exact ECS field matches; the rest is free text."""
    if not q:
        return {}, None
    terms: dict[str, Any] = {}
    words: list[str] = []
    for match in _QUERY_TOKENS.finditer(q):
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
