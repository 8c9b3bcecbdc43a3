"""Findings of the periodic assessment: list (filters, cursor), one finding, an analyst's status change (with a
reason, audited), and assessments started on demand (docs/assessment.md)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from soc_api.data import Data, data_for
from soc_api.data import findings as findings_data
from soc_api.settings import JSON_BODY_CAP

router = APIRouter(tags=["findings"], max_body_size=JSON_BODY_CAP)
Reader = Annotated[Data, Depends(data_for("analyst", "network_admin", "agency", "national_centre"))]
Analyst = Annotated[Data, Depends(data_for("analyst"))]

Status = Literal["open", "accepted", "fixed", "false_positive"]
Severity = Literal["informational", "low", "medium", "high", "critical"]
Check = Literal["ports", "tls", "headers", "ssh", "vulnerabilities"]


class Finding(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: str
    check: str
    detail: str
    title: str = ""
    severity: str
    status: str
    asset: dict[str, Any] = {}
    organization: dict[str, Any] = {}
    address: str | None = None
    port: int | None = None
    evidence: dict[str, Any] = {}
    first_seen: str
    last_seen: str
    due: str | None = None
    fixed_at: str | None = None
    regression: bool = False
    regressions: int = 0
    cve: str | None = None
    cvss: dict[str, Any] | None = None
    status_reason: str | None = None
    status_by: str | None = None
    status_at: str | None = None
    history: list[dict[str, Any]] = []


class FindingPage(BaseModel):
    findings: list[Finding]
    next_cursor: str | None = None


class FindingStatusChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Literal["open", "accepted", "false_positive"]
    reason: str = Field(default="", max_length=2000)


class AssessmentRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    agency: str | None = Field(default=None, max_length=64)
    asset: str | None = Field(default=None, max_length=128)
    address: str | None = Field(default=None, max_length=64)


class AssessmentTarget(BaseModel):
    asset: str
    address: str
    agency: str


class AssessmentStarted(BaseModel):
    state: str = "started"
    targets: list[AssessmentTarget]


@router.get("/findings", response_model=FindingPage)
def list_findings(
    data: Reader,
    agency: Annotated[str | None, Query(max_length=64)] = None,
    asset: Annotated[str | None, Query(max_length=128)] = None,
    status: Status | None = None,
    severity: Severity | None = None,
    check: Check | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=1024)] = None,
) -> FindingPage:
    page = findings_data.list_findings(data, agency=agency, asset=asset, status=status, severity=severity,
                                       check=check, limit=limit, cursor=cursor)
    return FindingPage(findings=[Finding.model_validate(d) for d in page.items], next_cursor=page.next_cursor)


@router.get("/findings/{finding_id}", response_model=Finding)
def get_finding(finding_id: str, data: Reader) -> Finding:
    return Finding.model_validate(findings_data.get_finding(data, finding_id))


@router.post("/findings/{finding_id}/status", response_model=Finding)
def change_status(finding_id: str, body: FindingStatusChange, data: Analyst) -> Finding:
    """Accept a finding or call it a false positive (a reason is required), or open it again."""
    return Finding.model_validate(findings_data.change_status(data, finding_id, body.status, body.reason))


@router.post("/assessments", response_model=AssessmentStarted, status_code=202)
def start_assessment(body: AssessmentRequest, data: Analyst) -> AssessmentStarted:
    """Assess now (in the background) what the request names, within assessment.allowed_networks and
    allowed_agencies: anything outside is refused (403) before a packet is sent."""
    targets = findings_data.start_assessment(data, agency=body.agency, asset=body.asset, address=body.address)
    return AssessmentStarted(targets=[AssessmentTarget(asset=t.asset, address=t.address, agency=t.agency)
                                      for t in targets])


@router.get("/assessments", response_model=list[dict[str, Any]])
def list_assessments(data: Analyst, limit: Annotated[int, Query(ge=1, le=500)] = 50) -> list[dict[str, Any]]:
    """The latest assessment runs (what was assessed, counts, checks that could not run)."""
    return findings_data.runs(data, limit)
