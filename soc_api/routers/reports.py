"""Audit reports: the list (newest first) and each report's files. An agency key sees only its own agency's reports;
the province roll-up and every agency's reports are for admins and SOC analysts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict

from soc_api.data import Data, data_for

router = APIRouter(prefix="/reports", tags=["reports"])
Reader = Annotated[Data, Depends(data_for("analyst", "agency"))]
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


@router.get("", response_model=ReportPage)
def reports(
    data: Reader,
    agency: Annotated[str | None, Query(max_length=64, description="an agency id, or 'province' for roll-ups")] = None,
    period: Annotated[str | None, Query(pattern=r"^\d{4}-(\d{2}|Q[1-4])$")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> ReportPage:
    page = data.reports(agency=agency, period=period, limit=limit, cursor=cursor)
    return ReportPage(reports=[_public(r) for r in page.items], next_cursor=page.next_cursor)


@router.get("/{report_id}", response_class=FileResponse,
            responses={200: {"content": {v: {} for v in MEDIA.values()}, "description": "the report file"}})
def download(
    report_id: str,
    data: Reader,
    format: Annotated[str, Query(pattern="^(pdf|html|evidence)$", description="pdf, html or evidence (JSON)")] = "pdf",
) -> FileResponse:
    record = data.report(report_id)  # another agency's report answers exactly like a missing one
    entry = (record.get("files") or {}).get(format)
    if not entry:
        raise HTTPException(404, f"this report was not rendered as {format}")
    path = Path(entry["path"])
    if not path.is_file():
        raise HTTPException(410, "the report's file is no longer on this server; generate it again")
    return FileResponse(path, media_type=MEDIA[format], filename=path.name)
