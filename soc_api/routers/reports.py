"""Audit reports: the list (newest first) and each report's files. An agency key sees only its own agency's reports;
the province roll-up and every agency's reports are for admins and SOC analysts."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict

from reports.builder import COLLECTION, list_reports
from soc.storage.base import Store
from soc_api.deps import get_store, require_roles, tenant_scope
from soc_api.keys import Principal

router = APIRouter(prefix="/reports", tags=["reports"])
Reader = Annotated[Principal, Depends(require_roles("analyst", "agency"))]
MEDIA = {"pdf": "application/pdf", "html": "text/html; charset=utf-8", "evidence": "application/json"}


class ReportRecord(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: str
    scope: str
    rollup: bool
    period: str
    period_start: str
    period_end: str
    lang: str
    title: str
    subtitle: str
    generated: str
    formats: list[str]
    summary: dict[str, Any]


class ReportPage(BaseModel):
    reports: list[ReportRecord]
    next_cursor: str | None = None


def _public(record: dict) -> ReportRecord:
    # File paths on the server are not the caller's business: only which formats can be downloaded.
    return ReportRecord.model_validate({**record, "formats": sorted((record.get("files") or {}).keys())})


def _cursor(record: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps([record["generated"], record["id"]]).encode()).decode()


def _after(cursor: str) -> tuple[str, str]:
    try:
        generated, rid = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return str(generated), str(rid)
    except (ValueError, TypeError) as exc:
        raise HTTPException(400, "the cursor is not one this API issued") from exc


@router.get("", response_model=ReportPage)
def reports(
    principal: Reader,
    store: Annotated[Store, Depends(get_store)],
    agency: Annotated[str | None, Query(max_length=64, description="an agency id, or 'province' for roll-ups")] = None,
    period: Annotated[str | None, Query(pattern=r"^\d{4}-(\d{2}|Q[1-4])$")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> ReportPage:
    scope = tenant_scope(principal, agency)
    found = list_reports(store, agency=scope, period=period, limit=limit, after=_after(cursor) if cursor else None)
    return ReportPage(reports=[_public(r) for r in found],
                      next_cursor=_cursor(found[-1]) if len(found) == limit else None)


@router.get("/{report_id}", response_class=FileResponse,
            responses={200: {"content": {v: {} for v in MEDIA.values()}, "description": "the report file"}})
def download(
    report_id: str,
    principal: Reader,
    store: Annotated[Store, Depends(get_store)],
    format: Annotated[str, Query(pattern="^(pdf|html|evidence)$", description="pdf, html or evidence (JSON)")] = "pdf",
) -> FileResponse:
    record = store.get_document(COLLECTION, report_id)
    # Another agency's report answers exactly like a missing one.
    if record is None or (principal.is_tenant and record.get("scope") != principal.agency):
        raise HTTPException(404, "no such report")
    entry = (record.get("files") or {}).get(format)
    if not entry:
        raise HTTPException(404, f"this report was not rendered as {format}")
    path = Path(entry["path"])
    if not path.is_file():
        raise HTTPException(410, "the report's file is no longer on this server; generate it again")
    return FileResponse(path, media_type=MEDIA[format], filename=path.name)
