"""Findings of the periodic assessment (assessment/findings.py) for one caller: listing with filters and a signed
cursor, one finding, an analyst's status change, and on-demand runs. Tenancy as everywhere (core.py): an agency key
sees its own agency's findings only, and another agency's finding answers as a missing one (404)."""

from __future__ import annotations

import datetime as dt

from fastapi import HTTPException

from assessment import findings as model
from assessment.runner import AssessmentBusy
from assessment.scope import ScopeRefused
from soc.storage.base import DocumentQuery
from soc_api.data.core import DataCore, Page, invalid


def list_findings(data: DataCore, *, agency: str | None = None, asset: str | None = None,
                  status: str | None = None, severity: str | None = None, check: str | None = None,
                  limit: int = 100, cursor: str | None = None) -> Page:
    terms = {k: v for k, v in {"asset.id": asset, "status": status, "severity": severity, "check": check}.items()
             if v is not None}
    return data.find(model.FINDINGS, DocumentQuery(terms=terms, limit=limit), agency=agency, cursor=cursor)


def get_finding(data: DataCore, finding_id: str) -> dict:
    return data.get(model.FINDINGS, finding_id, what="finding")


def change_status(data: DataCore, finding_id: str, status: str, reason: str) -> dict:
    doc = get_finding(data, finding_id)
    try:
        model.set_status(doc, status, reason, data.actor, dt.datetime.now(dt.timezone.utc))
    except ValueError as exc:
        raise invalid("body", str(exc), status) from exc
    data.store.put_documents(model.FINDINGS, [doc])
    if data.request is not None:
        data.request.state.audit_detail = f"finding {finding_id}: status {status}: {reason[:300]}"
        data.request.state.audit_agency = (doc.get("organization") or {}).get("id")
    return doc


def runs(data: DataCore, limit: int = 50) -> list[dict]:
    return data.store.find_documents(model.RUNS, DocumentQuery(sort="started", descending=True, limit=limit))


def start_assessment(data: DataCore, *, agency: str | None, asset: str | None, address: str | None) -> list:
    service = data.suite.service("assessment")
    if service is None:  # the extension (and so the schedule) is off: on-demand runs work all the same
        from assessment.service import AssessmentService
        from assessment.settings import assessment_settings

        service = AssessmentService(data.suite.services, assessment_settings(data.suite.settings))
    try:
        targets = service.start(agency=agency, asset=asset, address=address, requested_by=f"api:{data.actor}")
    except ScopeRefused as exc:
        raise HTTPException(403, f"refused: {exc}") from exc
    except AssessmentBusy as exc:
        raise HTTPException(409, str(exc)) from exc
    if data.request is not None:
        data.request.state.audit_detail = f"assessment of {len(targets)} addresses"
    return targets
