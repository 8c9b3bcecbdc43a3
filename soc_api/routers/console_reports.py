"""The console's reports page: ``/console/reports`` for analysts and agency users (admins always), as
``GET /api/v1/reports``: the audit reports through ``Data.reports`` (an agency user gets its own agency's only, never
the province roll-up; ``?agency=`` in its URL is ignored), with filters by agency and period and the API's cursor;
and ``/console/reports/{id}/{pdf|html|evidence}``, each file served by the API's own download function with the
user's Data, so the bytes, the content type and the refusals are the API's (another agency's report, a missing one:
404; a rendering the report does not have: 404; a file gone from the server: 410).

No API call builds a report (they are built on schedule by reports/service.py, or by ``soc report``), so the page
does not either: it says when the next ones come.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, Response

from soc_api.console import web
from soc_api.console.i18n import translator
from soc_api.console.reports_pages import (
    FORMATS, PAGE_SIZE, REPORT_ID, ReportsQuery, agency_choices, report_row, schedule,
)
from soc_api.console.web import console_data, render
from soc_api.data import Data
from soc_api.routers import reports as reports_api

PREFIX = ""  # the console lives at /console, beside the API's /api/v1
install = web.install  # static files and the console's error pages (app.py calls each install once)
router = APIRouter(include_in_schema=False)

ROLES = ("analyst", "agency")  # as GET /api/v1/reports
Reader = Annotated[Data, Depends(console_data(*ROLES))]
PAGE = "/console/reports"


@router.get(PAGE, response_class=HTMLResponse)
def reports_page(request: Request, data: Reader) -> Response:
    inventory = data.suite.inventory
    lang = web.language(request)
    t = translator(lang)
    tenant = data.principal.is_tenant
    q = ReportsQuery.from_params(request.query_params, tenant=tenant, agencies=inventory.agencies)
    try:
        page = data.reports(agency=q.agency or None, period=q.period or None, limit=PAGE_SIZE,
                            cursor=q.cursor or None)
    except HTTPException as exc:
        if exc.status_code != 400 or not q.cursor:
            raise
        q.problems.append("reports.problem.cursor")  # a cursor not issued here: from the first page again
        q.cursor = ""
        page = data.reports(agency=q.agency or None, period=q.period or None, limit=PAGE_SIZE, cursor=None)
    context = {
        "active": "reports",
        "q": q,
        "tenant": tenant,
        "reports": [report_row(r, inventory, lang, t) for r in page.items],
        "agencies": [] if tenant else agency_choices(inventory, lang),
        "next_url": f"{PAGE}?" + urlencode(q.params(cursor=page.next_cursor)) if page.next_cursor else None,
        "first_url": f"{PAGE}?" + urlencode(q.params()) if q.cursor else None,
        "schedule": schedule(data.suite.settings),
        "page_size": PAGE_SIZE,
    }
    return render(request, "reports.html", context)


@router.get(PAGE + "/{report_id}/{fmt}")
def download(report_id: str, fmt: str, data: Reader) -> Response:
    """A report's file, as ``GET /api/v1/reports/{id}?format=`` answers it (the same function, the user's Data)."""
    if fmt not in FORMATS or not REPORT_ID.match(report_id):
        raise HTTPException(404, "no such report")
    response = reports_api.download(report_id, data, fmt)
    response.headers.update({"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store",
                             "Referrer-Policy": "same-origin", "X-Frame-Options": "DENY"})
    if fmt == "html":
        # Sent to be saved (attachment); were a browser to show it here all the same, it runs nothing.
        response.headers["Content-Security-Policy"] = ("sandbox; default-src 'none'; style-src 'unsafe-inline'; "
                                                       "img-src data:; font-src data:")
    return response
