"""The console's posture page: ``/console/posture`` for analysts, agency users and the national centre (admins
always), the document ``GET /api/v1/posture`` serves — ``soc_api.posture.build_posture`` called with the user's
Data, so an agency user's page holds its own agency and nothing else, as an agency key's document does. An agency
user's ``?agency=`` is ignored (its page is its own agency's, whatever the URL says); others may narrow the page to
one agency of the inventory.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from soc_api.console import web
from soc_api.console.alerts import agency_name, name_key
from soc_api.console.posture_pages import posture_view
from soc_api.console.web import console_data, render
from soc_api.data import Data
from soc_api.posture import build_posture

PREFIX = ""  # the console lives at /console, beside the API's /api/v1
install = web.install  # static files and the console's error pages (app.py calls each install once)
router = APIRouter(include_in_schema=False)

ROLES = ("analyst", "agency", "national_centre")  # the API's GET /posture also lets network admins read it
Reader = Annotated[Data, Depends(console_data(*ROLES))]


@router.get("/console/posture", response_class=HTMLResponse)
def posture_page(request: Request, data: Reader) -> Response:
    inventory = data.suite.inventory
    lang = web.language(request)
    tenant = data.principal.is_tenant
    wanted = (request.query_params.get("agency") or "").strip()[:64]
    problems = []
    if tenant:
        wanted = ""  # build_posture pins an agency user to its own agency
    elif wanted and wanted not in inventory.agencies:
        problems.append("posture.problem.agency")
        wanted = ""
    document = build_posture(data, wanted or None)
    context = {
        "active": "posture",
        **posture_view(document, inventory, lang),
        "tenant": tenant,
        "selected": wanted,
        "agencies": [] if tenant else sorted(((a, agency_name(inventory, a, lang)) for a in inventory.agencies),
                                             key=lambda x: name_key(x[1])),
        "problems": problems,
    }
    return render(request, "posture.html", context)
