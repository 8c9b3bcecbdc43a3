"""The console's findings of the periodic assessment (docs/assessment.md): the list (filters, newest or most severe
first, a page at a time), one finding (its evidence, its asset as the inventory knows it, first and last seen, due
date and whether it is past due, its history) and, for analysts, the form that changes its status with a reason.

Every read and change goes through the signed-in user's Data with the API's own calls and roles
(soc_api/routers/findings.py):

| page or change                      | roles (admin always)                            | as the API's              |
|-------------------------------------|-------------------------------------------------|---------------------------|
| /console/findings                   | analyst, network_admin, agency, national_centre | GET /findings             |
| /console/findings/{id}              | the same                                        | GET /findings/{id}        |
| POST /console/findings/{id}/status  | analyst                                         | POST /findings/{id}/status |

So tenancy is the API's: an agency user lists its own agency's findings, and another agency's finding by URL is a
404. The status change is a POST form with the session's CSRF token (web.CsrfChecked, which writes the console's
audit record with the detail the data layer sets) and answers 303 to the finding's page, or the page again with the
reason (422) when it is refused. soc_api/console/findings_pages.py shapes what the pages show.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, Response

from soc_api.console import findings_pages as pages
from soc_api.console import web
from soc_api.console.alerts import agency_name, name_key
from soc_api.console.web import CsrfChecked, console_data, redirect, render
from soc_api.data import Data
from soc_api.data import findings as findings_data

PREFIX = ""  # the console lives at /console, beside the API's /api/v1
install = web.install  # static files and the console's error pages (app.py calls each install once)
router = APIRouter(include_in_schema=False, max_body_size=16 * 1024)

READ_ROLES = ("analyst", "network_admin", "agency", "national_centre")  # as GET /api/v1/findings
CHANGE_ROLES = ("analyst",)  # as POST /api/v1/findings/{id}/status
Reader = Annotated[Data, Depends(console_data(*READ_ROLES))]
Analyst = Annotated[Data, Depends(console_data(*CHANGE_ROLES))]
LIST = "/console/findings"


def _url(finding_id: str, **params: str) -> str:
    query = f"?{urlencode(params)}" if params else ""
    return f"{LIST}/{quote(finding_id, safe='')}{query}"


def _may_change(data: Data) -> bool:
    return data.principal.role in CHANGE_ROLES or data.principal.role == "admin"


@router.get(LIST, response_class=HTMLResponse, name="console_findings")
def finding_list(request: Request, data: Reader) -> Response:
    lang = web.language(request)
    inventory = data.suite.inventory
    tenant = data.principal.is_tenant
    q = pages.FindingQuery.from_params(request.query_params, tenant=tenant, agencies=inventory.agencies)
    try:
        page = pages.list_page(data, q, pages.PAGE_SIZE)
    except HTTPException as exc:
        if exc.status_code != 400 or not q.cursor:
            raise
        q.problems.append("findings.problem.cursor")  # a cursor of another list (or another user's)
        q.cursor = None
        page = pages.list_page(data, q, pages.PAGE_SIZE)
    on = pages.today()
    rows = [pages.row(d, on) for d in page.items]
    kept = q.params()
    context = {
        "active": "findings",
        "rows": rows,
        "q": q,
        "tenant": tenant,
        "agencies": [] if tenant else sorted(((a, agency_name(inventory, a, lang)) for a in inventory.agencies),
                                             key=lambda x: name_key(x[1])),
        "agency_names": {r["agency"]: agency_name(inventory, r["agency"], lang) for r in rows if r["agency"]},
        "statuses": pages.STATUSES,
        "severities": pages.SEVERITIES,
        "sorts": pages.SORTS,
        "problems": q.problems,
        "next_url": f"{LIST}?{urlencode({**kept, 'cursor': page.next_cursor})}" if page.next_cursor else None,
        "first_url": f"{LIST}?{urlencode(kept)}" if q.cursor else None,
        "page_size": pages.PAGE_SIZE,
    }
    return render(request, "findings.html", context)


def _finding_page(request: Request, data: Data, finding_id: str, *, failure: tuple[str, dict] | None = None,
                  form: dict | None = None, status_code: int = 200) -> Response:
    if not pages.valid_id(finding_id):
        raise HTTPException(404, "no such finding")
    doc = findings_data.get_finding(data, finding_id)  # 404 for another agency's finding
    lang = web.language(request)
    inventory = data.suite.inventory
    on = pages.today()
    evidence, more = pages.evidence_rows(doc)
    finding = pages.row(doc, on)
    done = request.query_params.get("done") if request.method == "GET" else None
    context = {
        "active": "findings",
        "finding": finding,
        "doc": doc,
        "evidence": evidence,
        "evidence_more": more,
        "asset": pages.asset_context(inventory, doc),
        "agency_name": agency_name(inventory, finding["agency"], lang) if finding["agency"] else "",
        "history": pages.history(doc),
        "may_change": _may_change(data),
        "choices": [s for s in pages.ANALYST_STATUSES if s != finding["status"]],
        "done": done if done in pages.ANALYST_STATUSES else None,
        "failure": failure,
        "form": form or {},
        "max_reason": pages.MAX_REASON,
    }
    return render(request, "finding.html", context, status_code=status_code)


@router.get(LIST + "/{finding_id}", response_class=HTMLResponse, name="console_finding")
def finding_page(finding_id: str, request: Request, data: Reader) -> Response:
    return _finding_page(request, data, finding_id)


@router.post(LIST + "/{finding_id}/status", dependencies=[CsrfChecked], name="console_finding_status")
def change_status(finding_id: str, request: Request, data: Analyst,
                  status: Annotated[str, Form(max_length=32)] = "",
                  reason: Annotated[str, Form(max_length=pages.MAX_REASON)] = "") -> Response:
    """POST /api/v1/findings/{id}/status: accepted or false_positive (a reason is required), or open again."""
    if not pages.valid_id(finding_id):
        raise HTTPException(404, "no such finding")
    form = {"status": status, "reason": reason}
    if status not in pages.ANALYST_STATUSES:
        request.state.audit_detail = f"finding {finding_id}: refused 422: status {status[:32]!r}"
        return _finding_page(request, data, finding_id, failure=("findings.error.status", {}), form=form,
                             status_code=422)
    try:
        findings_data.change_status(data, finding_id, status, reason)  # 404 for another agency's finding
    except RequestValidationError as exc:
        detail = "; ".join(str(e.get("msg")) for e in exc.errors())
        request.state.audit_detail = f"finding {finding_id}: refused 422: {detail}"[:1000]
        key = "findings.error.reason" if status != "open" and not reason.strip() else "findings.error.invalid"
        return _finding_page(request, data, finding_id, failure=(key, {"detail": detail}), form=form,
                             status_code=422)
    data.refresh()
    return redirect(_url(finding_id, done=status))
