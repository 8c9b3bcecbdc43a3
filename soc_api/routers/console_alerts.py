"""The console's alert queue and alert page (soc_api/console/alerts.py builds what they show), the live stream of
new alerts (Server-Sent Events), and triage: acknowledge, assign, change status with a reason, add a note.

Every read and change goes through the signed-in user's Data with the methods the API's alert routes use
(``list_alerts``, ``get_alert``, ``evidence``, ``edit_alert`` with detections/lifecycle.py), so tenancy, cursors
and the alert's history are the API's: an agency user sees its own agency only and another agency's alert is a
404; a change made here is in the alert's history exactly as one made through ``POST /api/v1/alerts/{id}/...``.
Changes are POST forms with the session's CSRF token (web.CsrfChecked, which also writes the audit record); each
answers 303 back to the alert page (or the page again with the reason, 409/422, when the change is refused).
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from datetime import datetime
from typing import Annotated, AsyncIterator
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, Response, StreamingResponse

from detections import lifecycle
from soc import ecs
from soc.vocabulary import ALERT_STATUSES, ANALYST_STATUSES, CLOSE_REASONS, SEVERITIES, AlertStatus
from soc_api.console import incidents, sessions, web
from soc_api.console.alerts import (
    GROUPINGS, PAGE_SIZE, RANGES, STREAM_POLL_SECONDS, TACTICS, QueueQuery, agency_name, alert_view, base_filter,
    group_alerts, name_key, new_since, queue_page, rule_choices, triage_users,
)
from soc_api.console.web import CsrfChecked, console_data, redirect, render, time_zone
from soc_api.data import Data

PREFIX = ""  # the console lives at /console, beside the API's /api/v1
install = web.install  # static files and the console's error pages (app.py calls each install once)
router = APIRouter(include_in_schema=False)

READ_ROLES = ("analyst", "network_admin", "agency", "national_centre")  # as GET /api/v1/alerts
TRIAGE_ROLES = ("analyst", "network_admin")  # as POST /api/v1/alerts/{id}/...
Reader = Annotated[Data, Depends(console_data(*READ_ROLES))]
Triage = Annotated[Data, Depends(console_data(*TRIAGE_ROLES))]

STREAM_SECONDS = 300.0  # a stream ends after this (the browser reconnects at once, from where it was)
STREAM_KEEPALIVE_SECONDS = 15.0
STREAM_LIMIT = 200  # streams open at once in this process; more answer 503
STREAM_SEEN = 50  # ids the page says it has at the stream's start
DONE = ("acknowledge", "assign", "status", "note", "silence")  # silence: soc_api/routers/console_incidents.py
_ALERT_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_streams = {"open": 0}
_streams_lock = threading.Lock()


# --- the queue -----------------------------------------------------------------------------------------------------
def _query(request: Request, data: Data) -> QueueQuery:
    return QueueQuery.from_params(request.query_params, tenant=data.principal.is_tenant,
                                  agencies=data.suite.inventory.agencies)


def _local_input(value: str, zone) -> str:
    """A time filter as a datetime-local input shows it: in the user's zone, to the minute."""
    if not value:
        return ""
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return ""
    if moment.tzinfo is not None:
        moment = moment.astimezone(zone)
    return moment.strftime("%Y-%m-%dT%H:%M")


def _agencies(data: Data, lang: str) -> list[tuple[str, str]]:
    inventory = data.suite.inventory
    return sorted(((a, agency_name(inventory, a, lang)) for a in inventory.agencies), key=lambda x: name_key(x[1]))


def _row_context(data: Data, alerts: list[dict], lang: str) -> dict:
    inventory = data.suite.inventory
    agencies = {ecs.get(a, "organization.id") for a in alerts}
    return {"agency_names": {a: agency_name(inventory, a, lang) for a in agencies if a}}


@router.get("/console/alerts", response_class=HTMLResponse)
def alert_queue(request: Request, data: Reader) -> Response:
    q = _query(request, data)
    zone = time_zone(request)
    q.absolute_times(zone)
    try:
        page = queue_page(data, q, zone)
    except HTTPException as exc:
        if exc.status_code != 400 or not q.cursor:
            raise
        q.problems.append("alerts.problem.cursor")  # a cursor of other filters (or another user's): start again
        q.cursor = ""
        page = queue_page(data, q, zone)
    lang = web.language(request)
    first_page = not q.cursor
    live_mode = "insert" if q.sort == "newest" and not q.group else "banner"
    stream_url = None
    if first_page:
        # The stream starts at the newest alert of these filters; those last seen at that very moment are on the
        # page already (or, sorted by severity, known): it is told their ids, so they are not sent again as new.
        newest = page.newest
        known = [a for a in page.alerts if a.get("last_seen") == newest]
        if q.sort != "newest":
            top = data.list_alerts(base_filter(q, zone), 1, None).items
            if top and top[0]["last_seen"] >= newest:
                newest = top[0]["last_seen"]
                known = [a for a in page.alerts + top if a.get("last_seen") == newest]
        live = {"after": newest, "seen": ",".join(dict.fromkeys(a["id"] for a in known[:STREAM_SEEN]))} if newest \
            else {}
        stream_url = "/console/alerts/stream?" + urlencode(q.params(**live))
    context = {
        "active": "alerts",
        "q": q,
        "page": page,
        "groups": group_alerts(page.alerts, q.group) if q.group else None,
        "tenant": data.principal.is_tenant,
        "agencies": [] if data.principal.is_tenant else _agencies(data, lang),
        "rules": rule_choices(data.suite),
        "tactics": [slug for slug, _ in TACTICS],
        "statuses": [s.value for s in ALERT_STATUSES],
        "severities": [s.value for s in reversed(SEVERITIES)],
        "ranges": list(RANGES),
        "groupings": GROUPINGS,
        "since_input": _local_input(q.since, zone),
        "until_input": _local_input(q.until, zone),
        "page_size": PAGE_SIZE,
        "next_url": ("/console/alerts?" + urlencode(q.params(cursor=page.next_cursor))) if page.next_cursor else None,
        "first_url": None if first_page else "/console/alerts?" + urlencode(q.params()),
        "clear_url": "/console/alerts",
        "view_url": lambda **changes: "/console/alerts?" + urlencode(q.params(**changes)),
        "stream_url": stream_url,
        "live_mode": live_mode,
        **_row_context(data, page.alerts, lang),
    }
    return render(request, "alerts.html", context)


# --- new alerts, live ----------------------------------------------------------------------------------------------
def _sse(event: str | None = None, data: str | None = None, event_id: str | None = None,
         comment: str | None = None, retry: int | None = None) -> bytes:
    lines = []
    if comment is not None:
        lines.append(f": {comment}")
    if retry is not None:
        lines.append(f"retry: {retry}")
    if event_id is not None:
        lines.append(f"id: {event_id}")
    if event is not None:
        lines.append(f"event: {event}")
    if data is not None:
        lines.extend(f"data: {line}" for line in data.split("\n"))
    return ("\n".join(lines) + "\n\n").encode()


def _valid_time(value: str | None) -> str:
    if not value or len(value) > 40:
        return ""
    try:
        return ecs.utc_iso(ecs.parse_time(value))
    except ValueError:
        return ""


def _position(at: str | None, ids: str | None) -> tuple[str, list[str]]:
    """Where a stream starts: a last_seen, and the ids of the alerts last seen at that moment already shown."""
    after = _valid_time(at)
    seen = [i for i in (ids or "").split(",")[:STREAM_SEEN] if _ALERT_ID.match(i)] if after else []
    return after, seen


@router.get("/console/alerts/stream")
async def alert_stream(request: Request, data: Reader) -> Response:
    """Server-Sent Events: alerts of the queue's filters last seen from ``after`` on (the page's newest), as
    rendered rows. The store is asked every STREAM_POLL_SECONDS (one limited query); the stream ends when the
    client goes or after STREAM_SECONDS (the browser reconnects with Last-Event-ID: where it was)."""
    q = _query(request, data)
    q.cursor = ""
    zone = time_zone(request)
    q.absolute_times(zone)
    after, seen = _position(request.query_params.get("after"), request.query_params.get("seen"))
    # The browser reconnecting says where it was: the last event's id, "<after>|<ids sent at that moment>".
    resumed_at, _, resumed_ids = (request.headers.get("last-event-id") or "").partition("|")
    resumed, resumed_seen = _position(resumed_at, resumed_ids)
    if resumed > after:
        after, seen = resumed, resumed_seen
    lifetime = STREAM_SECONDS
    wanted = request.query_params.get("seconds")  # a shorter stream (tests); never longer
    if wanted and wanted.isdigit():
        lifetime = max(1.0, min(STREAM_SECONDS, float(wanted)))
    if _streams["open"] >= STREAM_LIMIT:
        raise HTTPException(503, "too many live alert streams are open; the page still works without",
                            headers={"Retry-After": "30"})
    lang = web.language(request)
    session_id = (getattr(request.state, "console_session", None) or {}).get("id")

    def poll(after: str, sent: dict[str, str]) -> tuple[bytes | None, str]:
        fresh, after, more = new_since(data, q, zone, after, sent)
        if not fresh:
            return None, after
        html = render(request, "alerts_rows.html", {"alerts": fresh, **_row_context(data, fresh, lang)}).body
        body = json.dumps({"html": html.decode(), "ids": [a["id"] for a in fresh], "count": len(fresh),
                           "more": more}, ensure_ascii=False)
        return _sse("alerts", body, event_id=f"{after}|{','.join(list(sent)[:STREAM_SEEN])}"), after

    async def events() -> AsyncIterator[bytes]:
        nonlocal after
        sent: dict[str, str] = {alert_id: after for alert_id in seen}  # on the page already
        began = last_write = time.monotonic()
        with _streams_lock:  # counted here, so that a stream that never starts is never counted
            _streams["open"] += 1
        try:
            yield _sse(retry=3000, comment="alerts")
            while time.monotonic() - began < lifetime:
                if await request.is_disconnected():
                    return
                if session_id in sessions.ENDED:  # signed out (or its password changed) meanwhile: no more
                    return
                message, after = await run_in_threadpool(poll, after, sent)
                now = time.monotonic()
                if message is not None:
                    yield message
                    last_write = now
                elif now - last_write >= STREAM_KEEPALIVE_SECONDS:
                    yield _sse(comment="keep-alive")  # a gone client is noticed when this fails
                    last_write = now
                await asyncio.sleep(min(STREAM_POLL_SECONDS, max(0.0, lifetime - (time.monotonic() - began))))
        finally:
            with _streams_lock:
                _streams["open"] -= 1

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={**web.SECURITY_HEADERS, "Cache-Control": "no-store",
                                      "X-Accel-Buffering": "no"})


# --- the alert page ------------------------------------------------------------------------------------------------
def show_alert_page(request: Request, data: Data, alert_id: str, *, done: str | None = None,
                    error: tuple[str, dict] | None = None, status_code: int = 200, form: dict | None = None) -> Response:
    if not _ALERT_ID.match(alert_id):
        raise HTTPException(404, "no such alert")
    lang = web.language(request)
    view = alert_view(data, alert_id, lang)
    may_triage = data.principal.role in TRIAGE_ROLES or data.principal.role == "admin"
    context = {
        "active": "alerts",
        **view,
        "may_triage": may_triage,
        "users": triage_users(data) if may_triage else [],
        "done": done if done in DONE else None,
        "failure": error,
        "form": form or {},
        "back_url": "/console/alerts",
        **_row_context(data, [r["alert"] for r in view["related"]], lang),
        # The forms to merge, silence and start a playbook (soc_api/routers/console_incidents.py answers them).
        **(incidents.alert_page_context(request, data, view) if may_triage else {}),
    }
    return render(request, "alert.html", context, status_code=status_code)


@router.get("/console/alerts/{alert_id}", response_class=HTMLResponse)
def alert_page(alert_id: str, request: Request, data: Reader) -> Response:
    return show_alert_page(request, data, alert_id, done=request.query_params.get("done"))


def _change(request: Request, data: Data, alert_id: str, action: str, change, form: dict | None = None) -> Response:
    """Apply one analyst change through Data.edit_alert (the API's path), then back to the alert page."""
    if not _ALERT_ID.match(alert_id):
        raise HTTPException(404, "no such alert")
    try:
        data.edit_alert(alert_id, change)
    except HTTPException as exc:
        if exc.status_code != 409:
            raise
        request.state.audit_detail = f"refused 409: {exc.detail}"
        return show_alert_page(request, data, alert_id, error=("alerts.error.conflict", {"detail": str(exc.detail)}),
                               status_code=409, form=form)
    except RequestValidationError as exc:
        detail = "; ".join(str(e.get("msg")) for e in exc.errors())
        request.state.audit_detail = f"refused 422: {detail}"
        return show_alert_page(request, data, alert_id, error=("alerts.error.invalid", {"detail": detail}),
                               status_code=422, form=form)
    request.state.audit_detail = action
    return redirect(f"/console/alerts/{quote(alert_id, safe='')}?done={action}#history")


def _refuse(request: Request, data: Data, alert_id: str, key: str, form: dict) -> Response:
    request.state.audit_detail = f"refused 422: {key}"
    return show_alert_page(request, data, alert_id, error=(key, {}), status_code=422, form=form)


@router.post("/console/alerts/{alert_id}/acknowledge", dependencies=[CsrfChecked])
def acknowledge(alert_id: str, request: Request, data: Triage) -> Response:
    return _change(request, data, alert_id, "acknowledge",
                   lambda a: lifecycle.acknowledge(a, by=data.actor, source=data.source))


@router.post("/console/alerts/{alert_id}/assign", dependencies=[CsrfChecked])
def assign(alert_id: str, request: Request, data: Triage,
           assignee: Annotated[str, Form(max_length=1000)] = "") -> Response:
    value = assignee.strip() or None
    if value is not None and (len(value) > 128 or not value.isprintable()):
        return _refuse(request, data, alert_id, "alerts.error.assignee", {"assignee": assignee[:128]})
    return _change(request, data, alert_id, "assign",
                   lambda a: lifecycle.assign(a, value, by=data.actor, source=data.source))


@router.post("/console/alerts/{alert_id}/status", dependencies=[CsrfChecked])
def change_status(alert_id: str, request: Request, data: Triage,
                  status: Annotated[str, Form(max_length=40)] = "",
                  reason: Annotated[str, Form(max_length=40)] = "",
                  comment: Annotated[str, Form(max_length=4000)] = "") -> Response:
    form = {"status": status, "reason": reason, "comment": comment[:2000]}
    comment = comment.strip()
    if status not in {s.value for s in ANALYST_STATUSES}:
        return _refuse(request, data, alert_id, "alerts.error.invalid_status", form)
    if status == AlertStatus.closed and reason not in {r.value for r in CLOSE_REASONS}:
        return _refuse(request, data, alert_id, "alerts.error.reason", form)
    if status != AlertStatus.closed and not comment:
        return _refuse(request, data, alert_id, "alerts.error.comment", form)  # every status change says why
    if len(comment) > 2000:
        return _refuse(request, data, alert_id, "alerts.error.comment_long", form)
    close_reason = reason if status == AlertStatus.closed else None
    return _change(request, data, alert_id, "status", lambda a: lifecycle.set_status(
        a, status, by=data.actor, reason=close_reason, comment=comment or None, source=data.source), form)


@router.post("/console/alerts/{alert_id}/notes", dependencies=[CsrfChecked])
def add_note(alert_id: str, request: Request, data: Triage,
             text: Annotated[str, Form(max_length=20_000)] = "") -> Response:
    form = {"text": text[:lifecycle.MAX_NOTE_LENGTH]}
    if not text.strip():
        return _refuse(request, data, alert_id, "alerts.error.note", form)
    if len(text.strip()) > lifecycle.MAX_NOTE_LENGTH:
        return _refuse(request, data, alert_id, "alerts.error.note_long", form)
    return _change(request, data, alert_id, "note",
                   lambda a: lifecycle.add_note(a, text, by=data.actor, source=data.source), form)
