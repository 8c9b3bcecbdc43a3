"""The console's incidents (the list, one incident with its alerts) and the responses an analyst starts from an alert
page: merge it into an incident, silence alerts like it, start a playbook after its dry run (soc_api/console/
incidents.py shapes what they show and offer; the forms are on the alert page, templates/incident_macros.html).

Every read and change goes through the signed-in user's Data and the playbook service with the calls of the API's
routes, and their roles:

- /console/incidents and /console/incidents/{id} (analysts, network admins, agency users, the national centre):
  ``GET /incidents`` and ``GET /incidents/{id}`` (Data.incidents, Data.incident);
- merge, ``POST /console/alerts/{id}/merge`` (analysts, network admins): ``POST /incidents`` (Data.merge_alerts);
- silence, ``POST /console/alerts/{id}/silence`` (analysts, network admins): ``POST /silences``
  (detections.silences.new_silence, Data.create_silence);
- the dry run, ``GET /console/alerts/{id}/playbook`` (analysts, network admins): ``POST /playbooks/{name}/runs`` with
  ``dry_run`` (Runner.plan);
- start, ``POST /console/alerts/{id}/playbook`` (analysts, network admins): ``POST /playbooks/{name}/runs``
  (Runner.create, then the service's submit_execute). Admin always may.

So tenancy is the API's (an agency user lists its own agency's incidents; another agency's incident is a 404), a
merged incident and its alerts' history are exactly what ``POST /incidents`` makes, a silence is the document
``POST /silences`` stores, and a run started here waits for a network admin's approval whenever one started through
the API would (the runner decides; the run records the user as an Actor of kind ``console``). A run starts only from
the plan the person saw: the confirm form carries the plan's digest, and a plan that changed meanwhile (the inventory,
the alert) is shown again instead of being started. Each change is a POST form with the session's CSRF token
(web.CsrfChecked, which also writes the console's audit record) and answers 303 to the page that shows its result, or
the alert page again with the reason (404, 409, 422) when it is refused.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, Response

from detections import silences as silence_model
from detections.silences import MatcherError
from playbooks.records import RunState
from soc import ecs
from soc_api.console import incidents, web
from soc_api.console.alerts import agency_name, name_key
from soc_api.console.approvals import other_steps, plan_by_device
from soc_api.console.web import CsrfChecked, console_data, redirect, render
from soc_api.data import Data
from soc_api.routers import console_alerts
from soc_api.playbook_views import playbook_service

PREFIX = ""  # the console lives at /console, beside the API's /api/v1
install = web.install  # static files and the console's error pages (app.py calls each install once)
router = APIRouter(include_in_schema=False, max_body_size=64 * 1024)

READ_ROLES = ("analyst", "network_admin", "agency", "national_centre")  # as GET /api/v1/incidents
TRIAGE_ROLES = ("analyst", "network_admin")  # as POST /incidents, POST /silences, POST /playbooks/{name}/runs
Reader = Annotated[Data, Depends(console_data(*READ_ROLES))]
Triage = Annotated[Data, Depends(console_data(*TRIAGE_ROLES))]
LIST = "/console/incidents"
DONE = ("merged", "joined")


def _alert_url(alert_id: str, **params: str) -> str:
    query = f"?{urlencode(params)}" if params else ""
    return f"/console/alerts/{quote(alert_id, safe='')}{query}"


def _check_alert_id(alert_id: str) -> None:
    if not incidents.valid_id(alert_id, incidents.ALERT_ID):
        raise HTTPException(404, "no such alert")


def _refused(request: Request, data: Data, alert_id: str, key: str, params: dict, status_code: int,
             form: dict) -> Response:
    """The alert page again, with why the change was refused (and what was typed, to try again)."""
    request.state.audit_detail = f"refused {status_code}: {key} {params}"[:1000]
    return console_alerts.show_alert_page(request, data, alert_id, error=(key, params), status_code=status_code,
                                          form=form)


# --- incidents -----------------------------------------------------------------------------------------------------
@router.get(LIST, response_class=HTMLResponse)
def incident_list(request: Request, data: Reader) -> Response:
    lang = web.language(request)
    inventory = data.suite.inventory
    tenant = data.principal.is_tenant
    problems: list[str] = []
    agency = (request.query_params.get("agency") or "").strip()
    if tenant:
        agency = ""  # an agency user's list is its own agency's, whatever the URL says
    elif agency and agency not in inventory.agencies:
        problems.append("incidents.problem.agency")
        agency = ""
    cursor = request.query_params.get("cursor") or None
    if cursor and len(cursor) > 1024:
        cursor = None
        problems.append("incidents.problem.cursor")
    try:
        page = data.incidents(agency=agency or None, limit=incidents.PAGE_SIZE, cursor=cursor)
    except HTTPException as exc:
        if exc.status_code != 400 or not cursor:
            raise
        problems.append("incidents.problem.cursor")  # a cursor of another listing (or another user's)
        cursor = None
        page = data.incidents(agency=agency or None, limit=incidents.PAGE_SIZE, cursor=None)
    rows = [incidents.incident_row(i) for i in page.items]
    kept = {"agency": agency} if agency else {}
    context = {
        "active": "incidents",
        "rows": rows,
        "tenant": tenant,
        "agency": agency,
        "agencies": [] if tenant else sorted(((a, agency_name(inventory, a, lang)) for a in inventory.agencies),
                                             key=lambda x: name_key(x[1])),
        "agency_names": {r["agency"]: agency_name(inventory, r["agency"], lang) for r in rows if r["agency"]},
        "problems": problems,
        "next_url": f"{LIST}?{urlencode({**kept, 'cursor': page.next_cursor})}" if page.next_cursor else None,
        "first_url": f"{LIST}?{urlencode(kept)}" if cursor else None,
        "page_size": incidents.PAGE_SIZE,
    }
    return render(request, "incidents.html", context)


@router.get(LIST + "/{incident_id}", response_class=HTMLResponse)
def incident_page(incident_id: str, request: Request, data: Reader) -> Response:
    if not incidents.valid_id(incident_id):
        raise HTTPException(404, "no such incident")
    incident, alerts = data.incident(incident_id)  # 404 for another agency's incident
    lang = web.language(request)
    inventory = data.suite.inventory
    agency = ecs.get(incident, "organization.id")
    done = request.query_params.get("done")
    context = {
        "active": "incidents",
        "incident": incident,
        "alerts": alerts,
        "hidden": len(incident.get("alerts") or []) - len(alerts),
        "agency_name": agency_name(inventory, agency, lang) if agency else "",
        "agency_names": {agency: agency_name(inventory, agency, lang)} if agency else {},
        "done": done if done in DONE else None,
    }
    return render(request, "incident.html", context)


# --- merge into an incident ----------------------------------------------------------------------------------------
@router.post("/console/alerts/{alert_id}/merge", dependencies=[CsrfChecked])
def merge(alert_id: str, request: Request, data: Triage,
          merge_with: Annotated[list[str], Form(max_length=incidents.MAX_MERGE)] = [],
          merge_ids: Annotated[str, Form(max_length=20_000)] = "",
          title: Annotated[str, Form(max_length=2000)] = "") -> Response:
    """POST /incidents with this alert and the others chosen (ticked, or typed by id): a new incident of them all."""
    _check_alert_id(alert_id)
    data.get_alert(alert_id)  # 404 for a missing alert (or another agency's)
    form = {"merge_with": merge_with, "merge_ids": merge_ids[:2000], "merge_title": title[:incidents.MAX_TITLE * 2]}
    ids, bad = incidents.merge_ids(alert_id, merge_with, merge_ids)
    title = title.strip()
    if bad:
        return _refused(request, data, alert_id, "incidents.error.bad_ids", {"ids": ", ".join(bad[:5])}, 422, form)
    if len(ids) < 2:
        return _refused(request, data, alert_id, "incidents.error.alone", {}, 422, form)
    if len(ids) > incidents.MAX_MERGE:
        return _refused(request, data, alert_id, "incidents.error.too_many", {"max": incidents.MAX_MERGE}, 422, form)
    if len(title) > incidents.MAX_TITLE:
        return _refused(request, data, alert_id, "incidents.error.title_long", {"max": incidents.MAX_TITLE}, 422,
                        form)
    try:
        incident = data.merge_alerts(ids, title or None)
    except HTTPException as exc:
        if exc.status_code == 404:
            return _refused(request, data, alert_id, "incidents.error.missing", {}, 422, form)
        if exc.status_code == 409:
            return _refused(request, data, alert_id, "incidents.error.conflict", {"detail": str(exc.detail)}, 409,
                            form)
        raise
    except RequestValidationError as exc:
        detail = "; ".join(str(e.get("msg")) for e in exc.errors())
        return _refused(request, data, alert_id, "incidents.error.invalid", {"detail": detail}, 422, form)
    request.state.audit_detail = f"merged {', '.join(ids)} into incident {incident['id']}"[:1000]
    return redirect(f"{LIST}/{quote(incident['id'], safe='')}?done=merged")


@router.post("/console/alerts/{alert_id}/join", dependencies=[CsrfChecked])
def join(alert_id: str, request: Request, data: Triage,
         incident: Annotated[str, Form(max_length=200)] = "") -> Response:
    """POST /incidents/{id}/alerts with this alert: it joins an existing incident of its agency."""
    _check_alert_id(alert_id)
    data.get_alert(alert_id)  # 404 for a missing alert (or another agency's)
    form = {"join_incident": incident[:200]}
    if not incidents.valid_id(incident):
        return _refused(request, data, alert_id, "incidents.error.no_incident", {}, 422, form)
    try:
        joined = data.join_incident(incident, [alert_id])
    except HTTPException as exc:
        if exc.status_code == 404:  # no such incident, or another agency's: the same answer
            return _refused(request, data, alert_id, "incidents.error.no_incident", {}, 422, form)
        if exc.status_code == 409:
            return _refused(request, data, alert_id, "incidents.error.conflict", {"detail": str(exc.detail)}, 409,
                            form)
        raise
    request.state.audit_detail = f"added {alert_id} to incident {joined['id']}"[:1000]
    return redirect(f"{LIST}/{quote(joined['id'], safe='')}?done=joined")


# --- silence alerts like this one ----------------------------------------------------------------------------------
@router.post("/console/alerts/{alert_id}/silence", dependencies=[CsrfChecked])
def silence(alert_id: str, request: Request, data: Triage,
            matcher: Annotated[list[str], Form(max_length=50)] = [],
            duration: Annotated[str, Form(max_length=10)] = incidents.DEFAULT_DURATION,
            comment: Annotated[str, Form(max_length=8000)] = "") -> Response:
    """POST /silences: matchers on the alert's own labels (those chosen), from now for the chosen time, with the
    comment the form requires."""
    _check_alert_id(alert_id)
    alert = data.get_alert(alert_id)
    form = {"silence_matchers": matcher, "silence_duration": duration, "silence_comment": comment[:4000]}
    comment = comment.strip()
    matchers = incidents.silence_matchers(alert, matcher)
    if not matchers:
        return _refused(request, data, alert_id, "incidents.error.no_matcher", {}, 422, form)
    if duration not in incidents.SILENCE_DURATIONS:
        return _refused(request, data, alert_id, "incidents.error.duration", {}, 422, form)
    if not comment:
        return _refused(request, data, alert_id, "incidents.error.comment", {}, 422, form)
    if len(comment) > incidents.MAX_COMMENT:
        return _refused(request, data, alert_id, "incidents.error.comment_long", {"max": incidents.MAX_COMMENT}, 422,
                        form)
    ends_at = ecs.utc_iso(datetime.now(timezone.utc) + incidents.SILENCE_DURATIONS[duration])
    try:
        doc = silence_model.new_silence(matchers, starts_at=None, ends_at=ends_at, created_by=data.actor,
                                        comment=comment)
    except MatcherError as exc:
        return _refused(request, data, alert_id, "incidents.error.invalid", {"detail": str(exc)}, 422, form)
    created = data.create_silence(doc)
    request.state.audit_detail = (f"silence {created['id']} until {created['ends_at']}: "
                                  + ", ".join(f"{m['name']}={m['value']}" for m in matchers))[:1000]
    return redirect(_alert_url(alert_id, done="silence") + "#triage-heading")


# --- start a playbook: the dry run first ----------------------------------------------------------------------------
def _actor(data: Data):
    from playbooks.runner import Actor

    p = data.principal
    return Actor("console", p.name, p.role, p.key_id)


def _plan(service, name: str, alert_id: str, inputs: dict[str, str]) -> tuple[dict | None, tuple[str, dict] | None,
                                                                                int]:
    """Runner.plan as the API's dry run: the plan, or why there is none (message key and values, HTTP status)."""
    from playbooks.actions import PlanError
    from playbooks.context import InputError
    from playbooks.runner import ConditionNotMet, RunError
    from playbooks.safety import SafetyRefusal

    try:
        return service.runner.plan(name, alert_id=alert_id, overrides=dict(inputs)), None, 200
    except SafetyRefusal as exc:
        return None, ("incidents.playbook.refused", {"detail": str(exc)}), 422
    except ConditionNotMet as exc:
        return None, ("incidents.playbook.not_applicable", {"detail": str(exc)}), 422
    except (RunError, InputError, PlanError) as exc:
        if str(exc).startswith(("no playbook", "no alert")):
            raise HTTPException(404, str(exc)) from exc
        return None, ("incidents.playbook.cannot", {"detail": str(exc)}), 422


def _dry_run_page(request: Request, data: Data, alert: dict, playbook, inputs: dict[str, str], *,
                  plan: dict | None, failure: tuple[str, dict] | None, status_code: int,
                  notice: str | None = None) -> Response:
    lang = web.language(request)
    context = {
        "active": "alerts",
        "alert": alert,
        "agency_name": agency_name(data.suite.inventory, ecs.get(alert, "organization.id"), lang),
        "playbook": playbook,
        "inputs": incidents.playbook_inputs(playbook, inputs, (plan or {}).get("inputs")),
        "plan": plan,
        "devices": plan_by_device(plan) if plan else [],
        "others": other_steps(plan) if plan else [],
        "approval": (plan or {}).get("approval") or {},
        "impact": (plan or {}).get("impact") or {},
        "digest": incidents.plan_digest(plan) if plan else "",
        "failure": failure,
        "notice": notice,
        "alert_url": _alert_url(alert["id"]),
        "action": _alert_url(alert["id"]).split("?")[0] + "/playbook",
    }
    return render(request, "incident_playbook.html", context, status_code=status_code)


def _playbook_or_404(service, name: str):
    playbook = service.library.get(name) if name and len(name) <= 64 else None
    if playbook is None or not playbook.enabled:
        raise HTTPException(404, "no such playbook")
    return playbook


@router.get("/console/alerts/{alert_id}/playbook", response_class=HTMLResponse)
def playbook_dry_run(alert_id: str, request: Request, data: Triage) -> Response:
    """The dry run (POST /playbooks/{name}/runs with dry_run): what the playbook would do for this alert, device by
    device, and whether it would wait for approval; the inputs can be changed and planned again (GET), then the run
    confirmed (POST)."""
    _check_alert_id(alert_id)
    alert = data.get_alert(alert_id)
    service = playbook_service(request)
    playbook = _playbook_or_404(service, request.query_params.get("name") or "")
    inputs, too_long = incidents.read_inputs(playbook, request.query_params)
    if too_long:
        return _dry_run_page(request, data, alert, playbook, inputs, plan=None, status_code=422,
                             failure=("incidents.playbook.too_long", {"names": ", ".join(too_long)}))
    plan, failure, status = _plan(service, playbook.name, alert_id, inputs)
    return _dry_run_page(request, data, alert, playbook, inputs, plan=plan, failure=failure, status_code=status)


@router.post("/console/alerts/{alert_id}/playbook", dependencies=[CsrfChecked])
async def playbook_start(alert_id: str, request: Request, data: Triage) -> Response:
    """POST /playbooks/{name}/runs: the run is planned again; if that plan is the one shown (its digest), it is
    created by the runner — pending a network admin's approval, or running, then executed by the playbook service's
    workers — and the run's page follows. A different plan is shown again to be confirmed."""
    form = await request.form()
    values = {k: v for k, v in form.items() if isinstance(v, str)}
    return await run_in_threadpool(_start, request, data, alert_id, values)


def _start(request: Request, data: Data, alert_id: str, form: dict[str, str]) -> Response:
    from playbooks.actions import PlanError
    from playbooks.context import InputError
    from playbooks.runner import ConditionNotMet, RunError
    from playbooks.safety import SafetyRefusal

    _check_alert_id(alert_id)
    alert = data.get_alert(alert_id)
    service = playbook_service(request)
    playbook = _playbook_or_404(service, form.get("name") or "")
    inputs, too_long = incidents.read_inputs(playbook, form)
    if too_long:
        request.state.audit_detail = f"refused 422: inputs too long: {too_long}"
        return _dry_run_page(request, data, alert, playbook, inputs, plan=None, status_code=422,
                             failure=("incidents.playbook.too_long", {"names": ", ".join(too_long)}))
    plan, failure, status = _plan(service, playbook.name, alert_id, inputs)
    if plan is None:
        request.state.audit_detail = f"refused {status}: {failure[1].get('detail', '')}"[:1000]
        return _dry_run_page(request, data, alert, playbook, inputs, plan=None, failure=failure, status_code=status)
    if incidents.plan_digest(plan) != (form.get("digest") or ""):
        request.state.audit_detail = "refused 409: the plan changed since it was shown"
        return _dry_run_page(request, data, alert, playbook, inputs, plan=plan, status_code=409,
                             failure=("incidents.playbook.changed", {}))
    runner = service.runner
    try:
        run = runner.create(playbook.name, actor=_actor(data), alert_id=alert_id, overrides=dict(inputs))
    except SafetyRefusal as exc:
        run_id = getattr(exc, "run_id", None)
        request.state.audit_detail = f"refused 422: {exc} (run {run_id})"[:1000]
        return _dry_run_page(request, data, alert, playbook, inputs, plan=None, status_code=422,
                             failure=("incidents.playbook.refused_run", {"detail": str(exc), "run": run_id or ""}))
    except (ConditionNotMet, RunError, InputError, PlanError) as exc:
        request.state.audit_detail = f"refused 422: {exc}"[:1000]
        return _dry_run_page(request, data, alert, playbook, inputs, plan=None, status_code=422,
                             failure=("incidents.playbook.cannot", {"detail": str(exc)}))
    if run["state"] == RunState.RUNNING:
        service.submit_execute(run["id"])
    request.state.audit_detail = (f"started playbook {playbook.name} for alert {alert_id}: run {run['id']} "
                                  f"({run['state']})")
    return redirect(f"/console/runs/{quote(run['id'], safe='')}")

