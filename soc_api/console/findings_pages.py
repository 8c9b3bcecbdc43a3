"""Findings of the periodic assessment as data for the console's pages (soc_api/routers/console_findings.py serves
them): the list's filters and order, its cursor, a finding's asset with what the inventory says of it, and whether
it is past due.

Nothing here decides who may see what: every read goes through the caller's Data (``DataCore.find``, and
``soc_api.data.findings.get_finding`` for one finding), whose tenancy is the API's. The list is read page by page
with the data layer's signed cursors:

- ``newest``: the findings first seen most recently first (``first_seen`` descending);
- ``severity``: critical first, then high, medium, low, informational, each newest first. It walks one severity at a
  time; the page's cursor is ``<index of the severity>~<the data layer's cursor within it>``, so a cursor of another
  list, agency or user is refused by the data layer as for the API.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from fastapi import HTTPException

from assessment import findings as model
from soc.storage.base import DocumentQuery
from soc_api.data.core import Page

PAGE_SIZE = 50
SEVERITIES = ("critical", "high", "medium", "low", "informational")  # most severe first
STATUSES = model.STATUSES
ANALYST_STATUSES = model.ANALYST_STATUSES
SORTS = ("newest", "severity")
FINDING_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
ASSET_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,127}$")
MAX_CURSOR = 1024
MAX_REASON = 2000  # as the API's FindingStatusChange
EVIDENCE_SHOWN = 40  # evidence entries shown (the rest is counted)
EVIDENCE_TEXT = 2000  # characters of one evidence value shown


def valid_id(value: str | None) -> bool:
    return bool(value) and bool(FINDING_ID.match(value))


@dataclass
class FindingQuery:
    """The list's filters, read from the URL; a value that cannot be one is dropped with a problem to show."""
    agency: str = ""
    status: str = ""
    severity: str = ""
    asset: str = ""
    sort: str = "newest"
    cursor: str | None = None
    problems: list[str] = field(default_factory=list)

    @classmethod
    def from_params(cls, params: Mapping[str, str], *, tenant: bool, agencies) -> "FindingQuery":
        q = cls()
        agency = (params.get("agency") or "").strip()
        if agency and not tenant:  # an agency user's list is its own agency's, whatever the URL says
            if agency in agencies:
                q.agency = agency
            else:
                q.problems.append("findings.problem.agency")
        status = params.get("status") or ""
        if status in STATUSES:
            q.status = status
        elif status:
            q.problems.append("findings.problem.status")
        severity = params.get("severity") or ""
        if severity in SEVERITIES:
            q.severity = severity
        elif severity:
            q.problems.append("findings.problem.severity")
        asset = (params.get("asset") or "").strip()
        if asset and ASSET_ID.match(asset):
            q.asset = asset
        elif asset:
            q.problems.append("findings.problem.asset")
        sort = params.get("sort") or "newest"
        if sort in SORTS:
            q.sort = sort
        else:
            q.problems.append("findings.problem.sort")
        cursor = params.get("cursor") or None
        if cursor and len(cursor) > MAX_CURSOR:
            q.problems.append("findings.problem.cursor")
            cursor = None
        q.cursor = cursor
        return q

    def params(self, **changes: str | None) -> dict[str, str]:
        """The URL's query of this list (without its cursor unless given), defaults left out."""
        values = {"agency": self.agency, "status": self.status, "severity": self.severity, "asset": self.asset,
                  "sort": self.sort if self.sort != "newest" else ""}
        values.update(changes)
        return {k: v for k, v in values.items() if v}

    def terms(self) -> dict[str, str]:
        return {k: v for k, v in {"asset.id": self.asset, "status": self.status, "severity": self.severity}.items()
                if v}


def _find(data, terms: dict, agency: str | None, limit: int, cursor: str | None) -> Page:
    return data.find(model.FINDINGS, DocumentQuery(terms=terms, sort="first_seen", descending=True, limit=limit),
                     agency=agency, cursor=cursor)


def list_page(data, q: FindingQuery, limit: int = PAGE_SIZE) -> Page:
    """A page of the findings the caller may see, filtered and ordered as ``q`` says (HTTPException 400 for a
    cursor the data layer did not issue for this list)."""
    agency = q.agency or None
    terms = q.terms()
    if q.sort == "newest" or q.severity:
        return _find(data, terms, agency, limit, q.cursor)
    start, inner = 0, None
    if q.cursor:
        head, sep, rest = q.cursor.partition("~")
        if not sep or not head.isdigit() or int(head) >= len(SEVERITIES):
            raise HTTPException(400, "the cursor is not one this list issued")
        start, inner = int(head), rest or None
    items: list[dict] = []
    for index in range(start, len(SEVERITIES)):
        want = limit - len(items)
        page = _find(data, {**terms, "severity": SEVERITIES[index]}, agency, want, inner)
        inner = None
        items.extend(page.items)
        if page.next_cursor:
            return Page(items, f"{index}~{page.next_cursor}")
        if len(items) >= limit:
            following = index + 1
            return Page(items, f"{following}~" if following < len(SEVERITIES) else None)
    return Page(items)


def today() -> str:
    return dt.datetime.now(dt.timezone.utc).date().isoformat()


def past_due(doc: Mapping, on: str | None = None) -> bool:
    """An open finding whose due date has passed (due dates are days, UTC)."""
    due = doc.get("due")
    return doc.get("status") == "open" and isinstance(due, str) and due[:10] < (on or today())


def row(doc: Mapping, on: str | None = None) -> dict[str, Any]:
    asset = doc.get("asset") if isinstance(doc.get("asset"), dict) else {}
    organization = doc.get("organization") if isinstance(doc.get("organization"), dict) else {}
    return {"id": doc.get("id"), "title": doc.get("title") or doc.get("detail") or "", "check": doc.get("check"),
            "detail": doc.get("detail"), "severity": doc.get("severity") if doc.get("severity") in SEVERITIES
            else "medium", "status": doc.get("status") if doc.get("status") in STATUSES else "open",
            "asset": asset.get("id"), "hostname": asset.get("hostname"), "agency": organization.get("id"),
            "address": doc.get("address"), "port": doc.get("port"), "first_seen": doc.get("first_seen"),
            "last_seen": doc.get("last_seen"), "due": doc.get("due"), "past_due": past_due(doc, on),
            "regression": bool(doc.get("regression"))}


def _text(value: Any) -> str:
    if isinstance(value, (dict, list)):
        import json

        value = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    text = str(value)
    return text if len(text) <= EVIDENCE_TEXT else text[:EVIDENCE_TEXT] + "…"


def evidence_rows(doc: Mapping) -> tuple[list[tuple[str, str]], int]:
    """The finding's evidence as (name, text) pairs (shown escaped, like everything on a page), and how many more."""
    evidence = doc.get("evidence")
    if not isinstance(evidence, dict):
        return ([("evidence", _text(evidence))] if evidence else []), 0
    pairs = [(str(k)[:200], _text(v)) for k, v in evidence.items()]
    return pairs[:EVIDENCE_SHOWN], max(0, len(pairs) - EVIDENCE_SHOWN)


def asset_context(inventory, doc: Mapping) -> dict[str, Any] | None:
    """What the inventory says of the finding's asset (None when it is not there any more)."""
    asset_id = (doc.get("asset") or {}).get("id") if isinstance(doc.get("asset"), dict) else None
    asset = inventory.assets.get(asset_id) if asset_id else None
    if asset is None:
        return None
    return {"id": asset.id, "hostname": asset.hostname, "kind": asset.kind.value, "addresses": list(asset.addresses),
            "criticality": getattr(asset.criticality, "value", str(asset.criticality)), "role": asset.role,
            "vendor": asset.vendor, "model": asset.model, "os": asset.os, "services": list(asset.services)}


def history(doc: Mapping) -> list[dict]:
    """The finding's history, newest first."""
    entries = [e for e in (doc.get("history") or []) if isinstance(e, dict)]
    return list(reversed(entries))
