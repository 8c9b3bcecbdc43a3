"""The console's province overview: ``/console/overview`` for analysts, the national centre and admins. Every agency
of the inventory with its log sources reporting against expected, open alerts by severity, the mean and median times
to acknowledge and resolve over the last 7 or 30 days (``?days=``), and the trends as charts drawn on the server
(soc_api/console/charts.py). The figures come from soc_api/console/overview.py: exact counts by the store's
aggregations through the user's Data, kept a few seconds.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response

from soc_api.console import web
from soc_api.console.overview import DEFAULT_DAYS, PERIODS, SORTS, cached_overview, valid_days, view
from soc_api.console.web import console_data, render, time_zone
from soc_api.data import Data

PREFIX = ""  # the console lives at /console, beside the API's /api/v1
install = web.install  # static files and the console's error pages (app.py calls each install once)
router = APIRouter(include_in_schema=False)

ROLES = ("analyst", "national_centre")  # and admins
Reader = Annotated[Data, Depends(console_data(*ROLES))]
PAGE = "/console/overview"


@router.get(PAGE, response_class=HTMLResponse)
async def overview_page(request: Request, data: Reader) -> Response:
    days = valid_days(request.query_params.get("days"))
    sort = request.query_params.get("sort") if request.query_params.get("sort") in SORTS else "name"
    zone = time_zone(request)
    lang = web.language(request)
    figures = await run_in_threadpool(cached_overview, data, days, zone)
    inventory = data.suite.inventory

    def url(**changes) -> str:
        values = {"days": days, "sort": sort, **changes}
        query = urlencode({k: v for k, v in values.items()
                           if not (k == "days" and v == DEFAULT_DAYS) and not (k == "sort" and v == "name")})
        return PAGE + ("?" + query if query else "")

    context = {
        "active": "overview",
        "figures": figures,
        **view(figures, inventory, lang, sort),
        "days": days,
        "periods": PERIODS,
        "sort": sort,
        "sorts": SORTS,
        "url": url,
    }
    return render(request, "overview.html", context)
