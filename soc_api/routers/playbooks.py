"""Playbooks: the library, runs (start, dry-run, approve, reject, roll back, search) and the blocks in force.

Starting a run answers at once with the stored run; its execution goes on in the playbook service's workers, so
poll ``GET /playbooks/runs/{id}``. Approving, rejecting and rolling back need the network_admin role.
"""

from __future__ import annotations

import base64
import json
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from playbooks.records import LIVE_BLOCK_STATES, BlockState, RunState
from soc_api.deps import require_roles, tenant_scope
from soc_api.keys import Principal
from soc_api.playbook_views import playbook_service, shown_run, visible_run

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


def _actor(principal: Principal):
    from playbooks.runner import Actor

    return Actor("api", principal.name, principal.role, principal.key_id)


@router.get("")
def list_playbooks(principal: Starter, request: Request) -> dict[str, Any]:
    library = playbook_service(request).library
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

    service = playbook_service(request)
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
    runs = playbook_service(request).runner.records.find_runs(RunFilter(
        state=state, playbook=playbook, device=device, agency=tenant_scope(principal, agency), alert_id=alert_id,
        since=since, until=until, limit=limit, after=after))
    return {"runs": [shown_run(run, principal) for run in runs],
            "next_cursor": _cursor(runs[-1]) if len(runs) == limit else None}


@router.get("/runs/{run_id}")
def get_run(run_id: str, principal: Reader, request: Request) -> dict[str, Any]:
    return visible_run(playbook_service(request).runner.records.get_run(run_id), principal)


@router.post("/runs/{run_id}/approve")
def approve_run(run_id: str, principal: Approver, request: Request) -> dict[str, Any]:
    from playbooks.runner import RunError

    service = playbook_service(request)
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
        return playbook_service(request).runner.reject(run_id, _actor(principal), body.reason)
    except RunError as exc:
        raise HTTPException(404 if str(exc).startswith("no run") else 409, str(exc)) from exc


@router.post("/runs/{run_id}/rollback")
def rollback_run(run_id: str, principal: Approver, request: Request) -> dict[str, Any]:
    from playbooks.runner import RunError

    try:
        return playbook_service(request).runner.rollback(run_id, _actor(principal))
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
    return {"blocks": playbook_service(request).runner.records.find_blocks(state=states, device=device, limit=limit)}
