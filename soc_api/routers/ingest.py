"""HTTP ingest: NDJSON batches of JSON documents (Winlogbeat / NXLog Windows events, osquery results, any ECS
document) from an agency's collector, authenticated by that agency's API key.

Thin on purpose: each non-empty line becomes a RawMessage(format="json", transport="http", agency=<the key's
agency>) handed to ``Suite.accept``; parsing, recognising the shape, enrichment and dead letters are the pipeline's
(collectors/pipeline.py). The agency comes from the key, never from the body; neither does any other field only the
suite sets (collectors/pipeline.py SUITE_FIELDS).
"""

from __future__ import annotations

import json
import math
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel

from collectors.message import RawMessage
from soc_api.deps import Authenticated
from soc_api.keys import Principal
from soc_api.settings import api_settings

router = APIRouter(prefix="/ingest", tags=["ingest"])

NDJSON_TYPES = ("application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines",
                "application/json")


class IngestAnswer(BaseModel):
    accepted: int  # lines queued for the pipeline
    bytes: int
    agency: str  # whose events they are (the key's agency)
    status: str = "queued"


_BODY = {
    "x-own-body-limit": "soc_api.ingest.max_body_bytes",
    "requestBody": {
        "required": True,
        "description": "One JSON document per line (NDJSON). Content-Type application/x-ndjson; application/json "
                       "is taken as lines too (a body that is one JSON object or an array of objects is also "
                       "accepted).",
        "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
    },
}
DESCRIPTION = """Send a batch of JSON documents, one per line: Windows events as Winlogbeat or NXLog (im_msvistalog,
`to_json()`) send them, osquery results (event, snapshot or batch format), or any ECS document with `@timestamp`.

Needs an API key of role `agency`: the events are that agency's (`organization.id`), whatever the documents claim
(a claim is kept in `soc.claimed_agency`). An admin key may send on behalf of an agency by naming it in `agency`
(recorded in the audit log); other roles are refused. No field only the suite sets is taken from a document
(`organization.*`, `soc.*`, `event.id`, `event.created`, `event.ingested`, `event.original`, `log.source.address`,
`observer.ip`, the tags `unknown_sender` and `unknown_agency`), however it is written: dotted names
(`"organization.id"`) are read as the nested fields they name, and a dotted name that contradicts a nested one makes
the line a dead letter (`dotted_conflict`).

The answer (202) means the batch is safely kept and will be processed; lines are **not** validated here. A line that
is not JSON, not an object, too large or too deep, or of no known shape becomes a **dead letter** with its raw bytes,
the sender (with the agency) and the reason (`soc deadletters`). Re-sending a batch is harmless: an event's id is
derived from the agency and the line, so a replay overwrites instead of duplicating.

Limits (configuration `soc_api.ingest`): `max_body_bytes` and `max_lines` per batch (413 beyond, with the limit).
When the suite is full the answer is 503 with `Retry-After`: send the same batch again after that many seconds."""


def _too_large(what: str) -> HTTPException:
    return HTTPException(413, what)


def _lines(body: bytes, content_type: str) -> list[bytes]:
    if content_type == "application/json" and body.lstrip()[:1] in (b"[", b"{"):
        # application/json may also be one (pretty-printed) object or an array of objects: the documents, not lines.
        try:
            value = json.loads(body)
        except ValueError:
            value = None
        if isinstance(value, dict):
            return [body.strip()]
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            return [json.dumps(v, ensure_ascii=False, separators=(",", ":")).encode() for v in value]
    return [line.rstrip(b"\r") for line in body.split(b"\n") if line.strip()]


def _target_agency(request: Request, principal: Principal, agency: str | None) -> str:
    settings = api_settings(request.app.state.suite).ingest
    if principal.role == "agency":
        if agency is not None and agency != principal.agency:
            raise HTTPException(403, "an agency key sends for its own agency only")
        return principal.agency  # type: ignore[return-value]
    if principal.role == "admin" and settings.admin_on_behalf:
        if agency is None:
            raise HTTPException(400, "an admin key must name the agency it sends for (?agency=ID); events always "
                                     "belong to one agency")
        if agency not in request.app.state.suite.inventory.agencies:
            raise HTTPException(422, f"no agency {agency!r} in the inventory")
        request.state.audit_agency = agency
        return agency
    raise HTTPException(403, "ingest needs an API key of role agency (an admin may send on behalf of an agency)")


@router.post("", status_code=202, response_model=IngestAnswer, openapi_extra=_BODY, description=DESCRIPTION,
             summary="Ingest a batch of JSON documents (NDJSON)", responses={
                 400: {"description": "an admin key without ?agency="},
                 403: {"description": "not an agency key, or an agency key naming another agency"},
                 413: {"description": "the batch is over max_body_bytes or max_lines (soc_api.ingest)"},
                 415: {"description": "not NDJSON (application/x-ndjson or application/json)"},
                 422: {"description": "an admin key naming an agency the inventory does not have"},
                 503: {"description": "the suite is full: retry after the Retry-After seconds"}})
async def ingest(
    request: Request,
    principal: Annotated[Principal, Authenticated],
    agency: Annotated[str | None, Query(max_length=64, description="admin keys only: the agency the batch is "
                                                                   "sent for")] = None,
) -> IngestAnswer:
    from collectors.intake import Backpressure

    suite = request.app.state.suite
    limits = api_settings(suite).ingest
    target = _target_agency(request, principal, agency)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in NDJSON_TYPES:
        raise HTTPException(415, f"send NDJSON (Content-Type application/x-ndjson, or application/json), not "
                                 f"{content_type[:100] or 'no Content-Type'}")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limits.max_body_bytes:
        raise _too_large(f"the batch is {declared} bytes; the limit is {limits.max_body_bytes} bytes "
                         f"(soc_api.ingest.max_body_bytes): send smaller batches")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limits.max_body_bytes:  # sent without a length: stop reading at the limit
            raise _too_large(f"the batch is more than {limits.max_body_bytes} bytes, the limit "
                             f"(soc_api.ingest.max_body_bytes): send smaller batches")
        chunks.append(chunk)
    lines = _lines(b"".join(chunks), content_type)
    if len(lines) > limits.max_lines:
        raise _too_large(f"the batch has {len(lines)} lines; the limit is {limits.max_lines} lines "
                         f"(soc_api.ingest.max_lines): send smaller batches")
    on_behalf = f" on behalf of {target}" if principal.role != "agency" else ""
    request.state.audit_detail = f"ingest: {len(lines)} lines, {size} bytes for agency {target}{on_behalf}"
    client = request.client
    peer, port = (client.host, client.port) if client else ("", 0)
    messages = [RawMessage(data=line, transport="http", peer=peer or "", peer_port=port or 0, format="json",
                           agency=target) for line in lines]
    try:
        await suite.accept(messages)  # on disk and synced when it returns
    except Backpressure as exc:
        raise HTTPException(503, f"the suite is full, nothing of this batch was kept: retry after "
                                 f"{exc.retry_after:g} s ({exc})",
                            headers={"Retry-After": str(max(1, math.ceil(exc.retry_after)))}) from exc
    return IngestAnswer(accepted=len(lines), bytes=size, agency=target)
