"""Tiers (tiers/, docs/tiers.md): what a downstream suite sends here, what it pulls back, and both sides' state.

Only a key of role ``downstream`` may send; the agency it is bound to is the link, and everything sent is taken
below that agency, whatever the documents say (tiers/receive.py checks each record). Analysts and admins read the
links' state here, and, at a downstream suite, its own forwarding's.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool

from soc_api.deps import Authenticated, require_roles
from soc_api.keys import Principal

router = APIRouter(prefix="/tier", tags=["tiers"])

_OWN_LIMIT = {"x-own-body-limit": "tiers.receive.max_body_bytes"}


def _downstream(principal: Annotated[Principal, Authenticated]) -> Principal:
    if principal.role != "downstream" or not principal.agency:
        raise HTTPException(403, "this needs a downstream key (role downstream, bound to the agency of the link)")
    return principal


Downstream = Annotated[Principal, Depends(_downstream)]


def _receiver(request: Request):
    receiver = request.app.state.suite.service("tier_receiver")
    if receiver is None:
        raise HTTPException(503, "this suite does not take data from downstream suites (extension tiers.extension)")
    return receiver


STATUS_BYTES = 64 << 10  # a status report is a few hundred bytes


async def _body(request: Request, limit: int | None = None) -> bytes:
    limit = limit or request.app.state.suite.settings.tiers.receive.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"a batch may be at most {limit} bytes (tiers.receive.max_body_bytes)")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"a batch may be at most {limit} bytes (tiers.receive.max_body_bytes)")
        chunks.append(chunk)
    return b"".join(chunks)


async def _json(request: Request, key: str, limit: int | None = None) -> Any:
    import json

    try:
        value = json.loads(await _body(request, limit))
    except (ValueError, RecursionError) as exc:
        raise HTTPException(400, "the body is not JSON") from exc
    if not isinstance(value, dict) or (key and not isinstance(value.get(key), list)):
        raise HTTPException(400, f'the body is {{"{key}": [...]}}' if key else "the body is a JSON object")
    return value[key] if key else value


async def _taken(request: Request, principal: Principal, what: str, payload: Any) -> dict:
    """Hand ``payload`` to the receiver's ``take_<what>`` for the key's link (in a worker thread: it writes to the
    store); the audit record says how much was stored and refused, never the content."""
    answer = await run_in_threadpool(getattr(_receiver(request), f"take_{what}"), principal.agency, payload)
    stored = answer.get("stored", len(answer.get("accepted", [])))
    refused = answer.get("refused_count", len(answer.get("refused", [])))
    request.state.audit_detail = f"tier {what}: {stored} taken, {refused} refused"
    return answer


@router.post("/agencies", openapi_extra=_OWN_LIMIT, summary="A downstream suite's agencies")
async def take_agencies(request: Request, principal: Downstream) -> dict:
    return await _taken(request, principal, "agencies", await _json(request, "agencies"))


@router.post("/events", openapi_extra=_OWN_LIMIT, summary="A batch of a downstream suite's events (NDJSON)")
async def take_events(request: Request, principal: Downstream) -> dict:
    body = await _body(request)
    return await _taken(request, principal, "events", [line for line in body.split(b"\n") if line.strip()])


@router.post("/alerts", openapi_extra=_OWN_LIMIT, summary="Alerts of a downstream suite, as they are now")
async def take_alerts(request: Request, principal: Downstream) -> dict:
    return await _taken(request, principal, "alerts", await _json(request, "alerts"))


@router.post("/status", summary="A downstream suite's backlog and lag")
async def take_status(request: Request, principal: Downstream) -> dict:
    status = await _json(request, "", STATUS_BYTES)
    return await run_in_threadpool(_receiver(request).take_status, principal.agency, status)


@router.get("/changes", summary="Changes made here to the link's alerts, oldest first, after a cursor")
def changes(request: Request, principal: Downstream,
            after: Annotated[str | None, Query(max_length=90, pattern=r"^[0-9]{1,19}:[0-9a-f]{1,64}$")] = None,
            limit: Annotated[int, Query(ge=1, le=1000)] = 500) -> dict:
    cursor = None
    if after:
        seq, change_id = after.split(":", 1)
        if int(seq) >= 1 << 63:  # the store keeps 64-bit integers
            raise HTTPException(422, "not a cursor this suite gave")
        cursor = (int(seq), change_id)
    answer = _receiver(request).changes(principal.agency, cursor, limit)
    answer["next"] = f"{answer['next'][0]}:{answer['next'][1]}" if answer["next"] else None
    return answer


@router.get("/links", summary="Downstream suites: last contact, what they sent, their reported backlog and lag")
def links(request: Request, principal: Annotated[Principal, Depends(require_roles("analyst", "downstream"))]
          ) -> list[dict]:
    receiver = request.app.state.suite.service("tier_receiver")
    if receiver is None:  # the tiers extension is not loaded: no suite forwards here
        return []
    return receiver.links(principal.agencies if principal.is_tenant else None)


@router.get("/upstream", summary="This suite's forwarding to its upstream: backlog, lag, sent, dropped, errors")
def upstream(request: Request, principal: Annotated[Principal, Depends(require_roles("analyst"))]) -> dict:
    forwarder = request.app.state.suite.service("tier_forwarder")
    if forwarder is None:
        return {"configured": False}
    return forwarder.state()
