"""The network admin's console pages: the approvals queue, runs with their audit trail, and the blocks in force
(soc_api/console/approvals.py shapes what they show).

Every read and change goes through the playbook service exactly as ``soc_api/routers/playbooks.py`` does — its
service (``playbook_service``), its filters (``tenant_scope``), the same runner calls (``approve`` then ``submit_execute``,
``reject`` with the reason, ``rollback``) and the same rule for what a caller sees (``shown_run``: an agency user's runs
come without the devices' answers) — and the same roles:

| page or change                           | roles (admin always)            | as the API's                              |
|------------------------------------------|---------------------------------|-------------------------------------------|
| /console/approvals, approve, reject      | network_admin                   | POST /playbooks/runs/{id}/approve, reject |
| /console/runs, /console/runs/{id}        | analyst, network_admin, agency  | GET /playbooks/runs, /runs/{id}           |
| roll back a run, unblock                 | network_admin                   | POST /playbooks/runs/{id}/rollback        |
| /console/blocks                          | analyst, network_admin          | GET /playbooks/blocks                     |

There is no API call that removes one block: Unblock is the rollback of the run that put the block in force (which
undoes every change of that run; the page lists them beside the button). The acting user is recorded in the run
(``approved_by``, ``rejected_by``, ``rolled_back.by``) and in the playbook audit events as an Actor of kind
``console`` with the user's name, role and session key id; each change is a POST form with the session's CSRF token
(web.CsrfChecked, which writes the console's audit record) and answers 303 back to the page it came from with a
notice, or that page again with the reason (404, 409, 422) when it is refused.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, Response

from playbooks.records import RunFilter, RunState
from soc_api.console import web
from soc_api.console.approvals import (
    AUDIT_SHOWN, BLOCK_STATES, BLOCKS_SHOWN, LIVE, MAX_REASON, PAGE_SIZE, RUN_STATES, RUNS_PAGE_SIZE, agency_name,
    block_rows, format_duration, pending_view, run_view, valid_id,
)
from soc_api.console.web import CsrfChecked, console_data, redirect, render
from soc_api.data import Data
from soc_api.playbook_views import playbook_service, shown_run, visible_run, without_answers

PREFIX = ""  # the console lives at /console, beside the API's /api/v1
install = web.install  # static files and the console's error pages (app.py calls each install once)
router = APIRouter(include_in_schema=False, max_body_size=64 * 1024)

APPROVE_ROLES = ("network_admin",)  # as the API's Approver (approve, reject, roll back)
RUN_READ_ROLES = ("analyst", "network_admin", "agency")  # as the API's Reader of runs
BLOCK_READ_ROLES = ("analyst", "network_admin")  # as GET /playbooks/blocks
Approver = Annotated[Data, Depends(console_data(*APPROVE_ROLES))]
RunReader = Annotated[Data, Depends(console_data(*RUN_READ_ROLES))]
BlockReader = Annotated[Data, Depends(console_data(*BLOCK_READ_ROLES))]
QUEUE = "/console/approvals"
RUNS = "/console/runs"
BLOCKS = "/console/blocks"
DONE = ("approved", "rejected", "rolled_back", "unblocked")
BACK = ("queue", "run")  # where a decision form returns to
MAX_CURSOR = 1024


def _service(request: Request):
    return playbook_service(request)  # the API's: the suite's playbook service, or the API's own


def _actor(data: Data):
    from playbooks.runner import Actor

    p = data.principal
    return Actor("console", p.name, p.role, p.key_id)


def _may(data: Data, roles: tuple[str, ...]) -> bool:
    return data.principal.role == "admin" or data.principal.role in roles


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _default_ttl(request: Request) -> int:
    return _service(request).runner.settings.default_ttl_seconds


def _alerts_of(data: Data, runs: list[dict]) -> dict[str, dict]:
    """The alerts that started these runs, those the caller may see (one read each; a page is bounded)."""
    ids = list(dict.fromkeys(r["alert_id"] for r in runs if r.get("alert_id")))
    return {a["id"]: a for a in data.visible_alerts(ids)}


def _page_of_runs(data: Data, records, kind: str, filters: dict, cursor: str | None, limit: int,
                  problems: list[str]) -> tuple[list[dict], str | None]:
    """A page of runs, newest first (as GET /playbooks/runs), in the caller's scope, with a signed cursor bound to
    the caller and the filters; a cursor of other filters (or another user's) starts again from the first page."""
    try:
        if cursor and len(cursor) > MAX_CURSOR:
            raise HTTPException(400, "cursor too long")
        position = data.decode_cursor(kind, filters, cursor) if cursor else None
    except HTTPException:
        problems.append("approvals.problem.cursor")
        position = None
    runs = records.find_runs(RunFilter(state=filters.get("state") or None, alert_id=filters.get("alert_id") or None,
                                       agency=data.scope(None), limit=limit,
                                       after=(str(position[0]), str(position[1])) if position else None))
    runs = [shown_run(run, data.principal) for run in runs]
    next_cursor = data.encode_cursor(kind, filters, [runs[-1]["created"], runs[-1]["id"]]) \
        if len(runs) == limit else None
    return runs, next_cursor


def _notice(request: Request, records, data: Data) -> dict | None:
    """The notice after a change (``?done=…&run=…`` or ``&block=…``), with the run or block it was about."""
    done = request.query_params.get("done")
    if done not in DONE:
        return None
    notice: dict[str, Any] = {"done": done}
    run_id = request.query_params.get("run")
    if valid_id(run_id):
        run = records.get_run(run_id)
        if run is not None and data.principal.may_see(run.get("agency")):
            notice["run"] = {"id": run["id"], "playbook": run.get("playbook_title") or run.get("playbook"),
                             "state": run.get("state")}
    block_id = request.query_params.get("block")
    if valid_id(block_id) and _may(data, BLOCK_READ_ROLES):
        block = records.get_block(block_id)
        if block is not None:
            notice["block"] = {"id": block["id"], "target": block.get("target"), "device": block.get("device")}
    return notice


# --- the approvals queue -------------------------------------------------------------------------------------------
def _queue_page(request: Request, data: Data, *, failure: tuple[str, dict] | None = None,
                form: dict | None = None, status_code: int = 200) -> Response:
    records = _service(request).runner.records
    problems: list[str] = []
    cursor = request.query_params.get("cursor") if request.method == "GET" else None
    runs, next_cursor = _page_of_runs(data, records, "console-approvals", {"state": RunState.PENDING_APPROVAL.value},
                                      cursor, PAGE_SIZE, problems)
    lang = web.language(request)
    alerts = _alerts_of(data, runs)
    inventory = data.suite.inventory
    default_ttl, now = _default_ttl(request), _now()
    cards = [pending_view(run, alerts=alerts, inventory=inventory, lang=lang, default_ttl=default_ttl, now=now)
             for run in runs]
    context = {
        "active": "approvals",
        "tab": "pending",
        "cards": cards,
        "problems": problems,
        "notice": _notice(request, records, data) if request.method == "GET" else None,
        "failure": failure,
        "form": form or {},
        "next_url": f"{QUEUE}?{urlencode({'cursor': next_cursor})}" if next_cursor else None,
        "first_url": QUEUE if cursor else None,
        "max_reason": MAX_REASON,
        "may_read_blocks": _may(data, BLOCK_READ_ROLES),
        "duration": lambda seconds: format_duration(seconds, lang),
    }
    return render(request, "approvals.html", context, status_code=status_code)


@router.get(QUEUE, response_class=HTMLResponse, name="console_approvals")
def approvals_queue(request: Request, data: Approver) -> Response:
    return _queue_page(request, data)


def _back_to(request: Request, data: Data, run_id: str, back: str, *, failure: tuple[str, dict], form: dict,
              status_code: int) -> Response:
    """The page a refused decision came from, again, with the reason."""
    request.state.audit_detail = f"refused {status_code}: {failure[0]} {failure[1]}"[:1000]
    if back == "run":
        return _run_page(request, data, run_id, failure=failure, form=form, status_code=status_code)
    return _queue_page(request, data, failure=failure, form=form, status_code=status_code)


def _decided(run_id: str, back: str, done: str) -> Response:
    if back == "run":
        return redirect(f"{RUNS}/{quote(run_id, safe='')}?done={done}")
    return redirect(f"{QUEUE}?{urlencode({'done': done, 'run': run_id})}")


def _refusal(exc: Exception) -> tuple[str, dict]:
    return "approvals.error.conflict", {"detail": str(exc)[:300]}


@router.post(QUEUE + "/{run_id}/approve", dependencies=[CsrfChecked], name="console_approve_run")
def approve(run_id: str, request: Request, data: Approver,
            reason: Annotated[str, Form(max_length=8000)] = "",
            back: Annotated[str, Form(max_length=10)] = "queue") -> Response:
    """POST /playbooks/runs/{id}/approve: the run is approved, then executed by the playbook service's workers. A
    reason, when given, is kept in the run's audit trail (an ``approval_comment`` event) and the audit record."""
    from playbooks.runner import RunError

    back = back if back in BACK else "queue"
    if not valid_id(run_id):
        raise HTTPException(404, "no such run")
    reason = reason.strip()
    form = {"run": run_id, "action": "approve", "reason": reason[:MAX_REASON * 2]}
    if len(reason) > MAX_REASON:
        return _back_to(request, data, run_id, back, failure=("approvals.error.reason_long", {"max": MAX_REASON}),
                        form=form, status_code=422)
    service = _service(request)
    actor = _actor(data)
    try:
        run = service.runner.approve(run_id, actor)
    except RunError as exc:
        if str(exc).startswith("no run"):
            raise HTTPException(404, "no such run") from exc
        return _back_to(request, data, run_id, back, failure=_refusal(exc), form=form, status_code=409)
    if reason:
        service.runner.records.audit("approval_comment", run=run, actor=actor.as_dict(), reason=reason)
    service.submit_execute(run["id"])
    request.state.audit_detail = f"approved run {run_id} ({run.get('playbook')})" + (f": {reason}" if reason else "")
    return _decided(run_id, back, "approved")


@router.post(QUEUE + "/{run_id}/reject", dependencies=[CsrfChecked], name="console_reject_run")
def reject(run_id: str, request: Request, data: Approver,
           reason: Annotated[str, Form(max_length=8000)] = "",
           back: Annotated[str, Form(max_length=10)] = "queue") -> Response:
    """POST /playbooks/runs/{id}/reject with the reason, which the console requires."""
    from playbooks.runner import RunError

    back = back if back in BACK else "queue"
    if not valid_id(run_id):
        raise HTTPException(404, "no such run")
    reason = reason.strip()
    form = {"run": run_id, "action": "reject", "reason": reason[:MAX_REASON * 2]}
    if not reason:
        return _back_to(request, data, run_id, back, failure=("approvals.error.reason_missing", {}), form=form,
                        status_code=422)
    if len(reason) > MAX_REASON:
        return _back_to(request, data, run_id, back, failure=("approvals.error.reason_long", {"max": MAX_REASON}),
                        form=form, status_code=422)
    try:
        run = _service(request).runner.reject(run_id, _actor(data), reason)
    except RunError as exc:
        if str(exc).startswith("no run"):
            raise HTTPException(404, "no such run") from exc
        return _back_to(request, data, run_id, back, failure=_refusal(exc), form=form, status_code=409)
    request.state.audit_detail = f"rejected run {run_id} ({run.get('playbook')}): {reason}"
    return _decided(run_id, back, "rejected")


# --- runs ----------------------------------------------------------------------------------------------------------
@router.get(RUNS, response_class=HTMLResponse, name="console_runs")
def runs_list(request: Request, data: RunReader) -> Response:
    records = _service(request).runner.records
    problems: list[str] = []
    state = request.query_params.get("state") or ""
    if state and state not in RUN_STATES:
        problems.append("approvals.problem.state")
        state = ""
    alert_id = request.query_params.get("alert_id") or ""
    if alert_id and not valid_id(alert_id):
        problems.append("approvals.problem.alert")
        alert_id = ""
    filters = {"state": state, "alert_id": alert_id}
    cursor = request.query_params.get("cursor")
    runs, next_cursor = _page_of_runs(data, records, "console-runs", filters, cursor, RUNS_PAGE_SIZE, problems)
    lang = web.language(request)
    inventory = data.suite.inventory
    alerts = _alerts_of(data, runs)
    rows = [{"run": run, "agency": agency_name(inventory, run.get("agency"), lang),
             "alert": alerts.get(run.get("alert_id") or "")} for run in runs]
    kept = {k: v for k, v in filters.items() if v}
    context = {
        "active": "approvals",
        "tab": "runs",
        "rows": rows,
        "state": state,
        "alert_id": alert_id,
        "states": RUN_STATES,
        "problems": problems,
        "notice": _notice(request, records, data),
        "next_url": f"{RUNS}?{urlencode({**kept, 'cursor': next_cursor})}" if next_cursor else None,
        "first_url": f"{RUNS}?{urlencode(kept)}" if cursor else None,
        "may_approve": _may(data, APPROVE_ROLES),
        "may_read_blocks": _may(data, BLOCK_READ_ROLES),
    }
    return render(request, "runs.html", context)


def _run_page(request: Request, data: Data, run_id: str, *, failure: tuple[str, dict] | None = None,
              form: dict | None = None, status_code: int = 200) -> Response:
    if not valid_id(run_id):
        raise HTTPException(404, "no such run")
    service = _service(request)
    records = service.runner.records
    run = visible_run(records.get_run(run_id), data.principal)  # 404 for another agency's run
    events = records.find_audit(run_id=run_id, limit=AUDIT_SHOWN)
    if data.principal.is_tenant:
        events = [without_answers(e) for e in events]
    blocks = records.find_blocks(run_id=run_id, limit=BLOCKS_SHOWN) if _may(data, BLOCK_READ_ROLES) else None
    lang = web.language(request)
    view = run_view(run, alerts=_alerts_of(data, [run]), inventory=data.suite.inventory,
                    lang=lang, events=events, blocks=blocks,
                    default_ttl=service.runner.settings.default_ttl_seconds, now=_now())
    context = {
        "active": "approvals",
        "tab": "runs",
        **view,
        "tenant": data.principal.is_tenant,
        "may_approve": _may(data, APPROVE_ROLES),
        "may_read_blocks": _may(data, BLOCK_READ_ROLES),
        "notice": _notice(request, records, data) if request.method == "GET" else None,
        "failure": failure,
        "form": form or {},
        "max_reason": MAX_REASON,
        "duration": lambda seconds: format_duration(seconds, lang),
    }
    return render(request, "run.html", context, status_code=status_code)


@router.get(RUNS + "/{run_id}", response_class=HTMLResponse, name="console_run")
def run_page(run_id: str, request: Request, data: RunReader) -> Response:
    return _run_page(request, data, run_id)


@router.post(RUNS + "/{run_id}/rollback", dependencies=[CsrfChecked], name="console_rollback_run")
def rollback(run_id: str, request: Request, data: Approver) -> Response:
    """POST /playbooks/runs/{id}/rollback: every change the run made is undone on its devices."""
    from playbooks.runner import RunError

    if not valid_id(run_id):
        raise HTTPException(404, "no such run")
    try:
        _service(request).runner.rollback(run_id, _actor(data))
    except RunError as exc:
        if str(exc).startswith("no run"):
            raise HTTPException(404, "no such run") from exc
        request.state.audit_detail = f"refused 409: {exc}"[:1000]
        return _run_page(request, data, run_id, failure=_refusal(exc), status_code=409)
    request.state.audit_detail = f"rolled back run {run_id}"
    return redirect(f"{RUNS}/{quote(run_id, safe='')}?done=rolled_back")


# --- blocks --------------------------------------------------------------------------------------------------------
def _blocks_page(request: Request, data: Data, *, failure: tuple[str, dict] | None = None,
                 status_code: int = 200) -> Response:
    records = _service(request).runner.records
    problems: list[str] = []
    state = (request.query_params.get("state") or "") if request.method == "GET" else ""
    if state and state not in BLOCK_STATES:
        problems.append("approvals.problem.state")
        state = ""
    blocks = records.find_blocks(state=state or list(LIVE), limit=BLOCKS_SHOWN)
    run_ids = list(dict.fromkeys(b["run_id"] for b in blocks if b.get("run_id")))
    runs = {run_id: records.get_run(run_id) for run_id in run_ids}
    rows = block_rows(blocks, runs, inventory=data.suite.inventory, lang=web.language(request))
    context = {
        "active": "approvals",
        "tab": "blocks",
        "rows": rows,
        "state": state,
        "states": BLOCK_STATES,
        "problems": problems,
        "notice": _notice(request, records, data) if request.method == "GET" else None,
        "failure": failure,
        "limit": BLOCKS_SHOWN,
        "may_approve": _may(data, APPROVE_ROLES),
        "may_read_blocks": True,
    }
    return render(request, "blocks.html", context, status_code=status_code)


@router.get(BLOCKS, response_class=HTMLResponse, name="console_blocks")
def blocks_list(request: Request, data: BlockReader) -> Response:
    return _blocks_page(request, data)


@router.post(BLOCKS + "/{block_id}/unblock", dependencies=[CsrfChecked], name="console_unblock")
def unblock(block_id: str, request: Request, data: Approver) -> Response:
    """Unblock: POST /playbooks/runs/{id}/rollback of the run that put the block in force."""
    from playbooks.runner import RunError

    if not valid_id(block_id):
        raise HTTPException(404, "no such block")
    records = _service(request).runner.records
    block = records.get_block(block_id)
    if block is None:
        raise HTTPException(404, "no such block")
    if block.get("state") not in LIVE:
        request.state.audit_detail = f"refused 409: block {block_id} is {block.get('state')}"
        return _blocks_page(request, data, failure=("approvals.error.not_live", {"state": block.get("state")}),
                            status_code=409)
    run_id = block.get("run_id")
    if not run_id:
        request.state.audit_detail = f"refused 409: block {block_id} names no run"
        return _blocks_page(request, data, failure=("approvals.error.no_run", {}), status_code=409)
    try:
        _service(request).runner.rollback(run_id, _actor(data))
    except RunError as exc:
        request.state.audit_detail = f"refused 409: {exc}"[:1000]
        return _blocks_page(request, data, failure=_refusal(exc), status_code=409)
    request.state.audit_detail = (f"unblocked {block.get('target')} on {block.get('device')}: rolled back run "
                                  f"{run_id}")
    return redirect(f"{BLOCKS}?{urlencode({'done': 'unblocked', 'block': block_id, 'run': run_id})}")
