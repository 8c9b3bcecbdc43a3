"""Playbooks: the library, runs (start, dry-run, approve, reject, roll back, search) and the blocks in force.

Starting a run answers at once with the stored run; its execution goes on in the playbook service's workers, so
poll ``GET /playbooks/runs/{id}``. Approving, rejecting and rolling back need the network_admin role.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from playbooks.records import LIVE_BLOCK_STATES, BlockState, RunState
from soc_api.deps import require_roles, tenant_scope
from soc_api.keys import Principal

router = APIRouter(prefix="/playbooks", tags=["playbooks"])
Reader = Annotated[Principal, Depends(require_roles("analyst", "network_admin", "agency"))]
Starter = Annotated[Principal, Depends(require_roles("analyst", "network_admin"))]
Approver = Annotated[Principal, Depends(require_roles("network_admin"))]
STATE_PATTERN = f"^({'|'.join(RunState)})$"
BLOCK_STATE_PATTERN = f"^({'|'.join(BlockState)})$"


class StartRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    alert_id: str | None = Field(default=None, max_length=64)
    inputs: dict[str, str | int] = {}
    dry_run: bool = False


class RejectRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(default="", max_length=500)


def _service(request: Request):
    """The suite's playbook service; without the playbook extension, one of the API's own (built once)."""
    from playbooks.service import build_service
    from soc_api.state import service

    suite = request.app.state.suite
    return service(suite, "playbooks", lambda: build_service(suite.services))


def _actor(principal: Principal):
    from playbooks.runner import Actor

    return Actor("api", principal.name, principal.role, principal.key_id)


def _visible(run: dict | None, principal: Principal) -> dict:
    if run is None or (principal.is_tenant and run.get("agency") != principal.agency):
        raise HTTPException(404, "no such run")
    return _shown(run, principal)


# What a device answered lists what is on it: on a device shared by agencies (the province's firewall) that is
# every agency's blocks. An agency key gets its runs without the device's answers: no transcripts (``exchanges``:
# each command with its answer), no state observed before a change (``before``), and messages without the answer
# fragments drivers quote (what covered a target, an answer they could not read, a refusal, a failed command's
# output). The plan, its own targets, the commands the suite sent for them, states and outcomes stay. Analysts and
# network admins see everything.
DEVICE_ANSWERS = frozenset({"exchanges", "before"})
_COVERED = re.compile(r" \(covered by [^)]*\)")
_QUOTED_ANSWER = re.compile(r"((?:answered something|the answer to|failed \(exit -?\d+\)|refused the change|"
                            r"cannot read)[^:\n]*:)\s.*", re.S)
WITHHELD = "[the device's answer is shown to analysts]"


def _without_answers(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_answers(v) for k, v in value.items() if k not in DEVICE_ANSWERS}
    if isinstance(value, list):
        return [_without_answers(v) for v in value]
    if isinstance(value, str):
        if "(covered by " in value:
            value = _COVERED.sub(" (covered by a rule already on the device)", value)
        return _QUOTED_ANSWER.sub(rf"\1 {WITHHELD}", value)
    return value


def _shown(run: dict, principal: Principal) -> dict:
    return _without_answers(run) if principal.is_tenant else run


@router.get("")
def list_playbooks(principal: Starter, request: Request) -> dict[str, Any]:
    library = _service(request).library
    return {"playbooks": [p.model_dump(mode="json", by_alias=True) | {"path": p.path}
                          for p in library.playbooks.values()],
            "errors": [{"path": e.path, "line": e.line, "reason": e.reason} for e in library.errors]}


@router.post("/{name}/runs", status_code=201)
def start_run(name: str, principal: Starter, request: Request,
              body: Annotated[StartRequest, Body()] = StartRequest()) -> dict[str, Any]:
    from playbooks.actions import PlanError
    from playbooks.context import InputError
    from playbooks.runner import ConditionNotMet, RunError
    from playbooks.safety import SafetyRefusal

    service = _service(request)
    runner = service.runner
    try:
        if body.dry_run:
            return runner.plan(name, alert_id=body.alert_id, overrides=dict(body.inputs))
        run = runner.create(name, actor=_actor(principal), alert_id=body.alert_id, overrides=dict(body.inputs))
    except SafetyRefusal as exc:
        raise HTTPException(422, {"refused": str(exc), "run_id": getattr(exc, "run_id", None)}) from exc
    except ConditionNotMet as exc:
        raise HTTPException(422, str(exc)) from exc
    except (RunError, InputError, PlanError) as exc:
        status = 404 if str(exc).startswith(("no playbook", "no alert")) else 422
        raise HTTPException(status, str(exc)) from exc
    if run["state"] == RunState.RUNNING:
        service.submit_execute(run["id"])
    return run


def _cursor(run: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps([run["created"], run["id"]]).encode()).decode()


@router.get("/runs")
def search_runs(
    principal: Reader, request: Request,
    state: Annotated[str | None, Query(pattern=STATE_PATTERN)] = None,
    playbook: Annotated[str | None, Query(max_length=64)] = None,
    device: Annotated[str | None, Query(max_length=128)] = None,
    agency: Annotated[str | None, Query(max_length=64)] = None,
    alert_id: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[str | None, Query(max_length=40, description="created at or after (ISO 8601)")] = None,
    until: Annotated[str | None, Query(max_length=40, description="created before (ISO 8601)")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> dict[str, Any]:
    from playbooks.records import RunFilter

    after = None
    if cursor:
        try:
            created, run_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
            after = (str(created), str(run_id))
        except (ValueError, TypeError) as exc:
            raise HTTPException(400, "the cursor is not one this API issued") from exc
    runs = _service(request).runner.records.find_runs(RunFilter(
        state=state, playbook=playbook, device=device, agency=tenant_scope(principal, agency), alert_id=alert_id,
        since=since, until=until, limit=limit, after=after))
    return {"runs": [_shown(run, principal) for run in runs],
            "next_cursor": _cursor(runs[-1]) if len(runs) == limit else None}


@router.get("/runs/{run_id}")
def get_run(run_id: str, principal: Reader, request: Request) -> dict[str, Any]:
    return _visible(_service(request).runner.records.get_run(run_id), principal)


@router.post("/runs/{run_id}/approve")
def approve_run(run_id: str, principal: Approver, request: Request) -> dict[str, Any]:
    from playbooks.runner import RunError

    service = _service(request)
    try:
        run = service.runner.approve(run_id, _actor(principal))
    except RunError as exc:
        raise HTTPException(404 if str(exc).startswith("no run") else 409, str(exc)) from exc
    service.submit_execute(run["id"])
    return run


@router.post("/runs/{run_id}/reject")
def reject_run(run_id: str, principal: Approver, request: Request,
               body: Annotated[RejectRequest, Body()] = RejectRequest()) -> dict[str, Any]:
    from playbooks.runner import RunError

    try:
        return _service(request).runner.reject(run_id, _actor(principal), body.reason)
    except RunError as exc:
        raise HTTPException(404 if str(exc).startswith("no run") else 409, str(exc)) from exc


@router.post("/runs/{run_id}/rollback")
def rollback_run(run_id: str, principal: Approver, request: Request) -> dict[str, Any]:
    from playbooks.runner import RunError

    try:
        return _service(request).runner.rollback(run_id, _actor(principal))
    except RunError as exc:
        raise HTTPException(404 if str(exc).startswith("no run") else 409, str(exc)) from exc


@router.get("/blocks")
def list_blocks(
    principal: Starter, request: Request,
    state: Annotated[str | None, Query(pattern=BLOCK_STATE_PATTERN)] = None,
    device: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> dict[str, Any]:
    states = state or LIVE_BLOCK_STATES
    return {"blocks": _service(request).runner.records.find_blocks(state=states, device=device, limit=limit)}
