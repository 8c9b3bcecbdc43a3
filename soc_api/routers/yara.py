"""YARA: scan an uploaded file against the suite's rule pack, and read the pack's health.

The file is the raw request body (``curl --data-binary @sample.php -H 'Content-Type: application/octet-stream'
'…/api/v1/yara/scan?name=sample.php'``); ``name`` sets the filename/extension externals the rules may use. A body
over the configured limit (yara.max_upload_bytes) is refused with 413 before it is read whole.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel

from soc_api.deps import require_roles
from soc_api.keys import Principal

router = APIRouter(prefix="/yara", tags=["yara"])
Analyst = Annotated[Principal, Depends(require_roles("analyst"))]  # admin passes every role check


class StringHitOut(BaseModel):
    identifier: str
    offset: int
    length: int
    preview: str


class MatchOut(BaseModel):
    rule: str
    namespace: str
    tags: list[str]
    meta: dict[str, Any]
    strings: list[StringHitOut]


class FileOut(BaseModel):
    name: str
    size: int
    sha256: str


class ScanAnswer(BaseModel):
    file: FileOut
    matches: list[MatchOut]
    problem: str | None = None  # why the file was not (fully) scanned: a timeout, say
    rule_files_loaded: int
    rule_files_failed: int
    rules: int


class RuleFileOut(BaseModel):
    path: str
    namespace: str
    status: str
    reason: str
    rules: int
    warnings: list[str]


async def _engine(request: Request):
    from detections.yara.compiler import RulePackError
    from detections.yara.service import engine_for

    suite = request.app.state.suite
    yara = suite.service("yara")
    if yara is not None and yara.engine is not None:
        return yara.engine
    try:
        # The first caller builds it (from the cache when there is one); not on the event loop.
        return await asyncio.get_running_loop().run_in_executor(None, engine_for, suite.settings)
    except RulePackError as exc:
        raise HTTPException(503, f"YARA rules are not available: {exc}") from exc


def _too_large(size: int | str, limit: int) -> HTTPException:
    return HTTPException(413, f"the upload is {size} bytes; the limit is {limit} bytes (yara.max_upload_bytes)")


_RAW_BODY = {"requestBody": {"required": True, "description": "the file, as the raw request body",
                             "content": {"application/octet-stream": {"schema": {"type": "string",
                                                                                 "format": "binary"}}}}}


@router.post("/scan", response_model=ScanAnswer, openapi_extra=_RAW_BODY, responses={
    413: {"description": "the upload is over the size limit (yara.max_upload_bytes)"},
    415: {"description": "a multipart form instead of the raw file"},
    503: {"description": "no YARA rules could be loaded (the reason is given)"}})
async def scan_upload(
    request: Request,
    principal: Analyst,
    name: Annotated[str, Query(min_length=1, max_length=255, description="the file's name (sets the "
                                                                          "filename and extension externals)")],
) -> ScanAnswer:
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/"):
        raise HTTPException(415, "send the file as the raw request body (Content-Type: application/octet-stream), "
                                 "not as a multipart form")
    engine = await _engine(request)
    limit = engine.config.max_upload_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(declared, limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:  # a chunked upload without a length: stop reading at the limit
            raise _too_large(f"more than {limit}", limit)
        chunks.append(chunk)
    data = b"".join(chunks)
    result = await asyncio.get_running_loop().run_in_executor(None, lambda: engine.scanner.scan_bytes(data, name))
    pack = engine.pack
    return ScanAnswer(
        file=FileOut(name=name, size=len(data), sha256=result.target.sha256 or _sha256(data)),
        matches=[MatchOut(rule=m.rule, namespace=m.namespace, tags=m.tags, meta=m.meta,
                          strings=[StringHitOut(**s.to_dict()) for s in m.strings]) for m in result.matches],
        problem=f"{result.problem.kind}: {result.problem.reason}" if result.problem else None,
        rule_files_loaded=pack.loaded, rule_files_failed=pack.failed, rules=pack.rule_count)


@router.get("/rules", response_model=list[RuleFileOut])
async def rule_files(request: Request, principal: Analyst) -> list[RuleFileOut]:
    """Every rule file of the pack: loaded (how many rules) or failed and why."""
    engine = await _engine(request)
    return [RuleFileOut(path=h.path, namespace=h.namespace, status=h.status, reason=h.reason, rules=h.rules,
                        warnings=h.warnings) for h in engine.pack.health]


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()
