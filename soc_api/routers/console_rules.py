"""The console's rule pages: rule health (``/console/rules``) and the ATT&CK matrix (``/console/rules/attack``), for
analysts and admins; the rollback of the rule pack for admins.

Every read is the API's own route function, called with the signed-in user's Data, so what the page shows is what
``GET /api/v1/rules`` and ``GET /api/v1/rules/packs`` answer (soc_api/routers/rules.py); the rollback is
``POST /api/v1/rules/packs/rollback``'s function (the pack store's lock, then ``rollback``), a POST form with the
session's CSRF token (web.CsrfChecked, which writes the audit record), answering 303 back to the page with a notice,
or the page again with the reason (409) when it is refused. soc_api/console/rules_pages.py and attack_matrix.py
shape what the pages show.

| page or change                      | roles (admin always) | as the API's                                        |
|-------------------------------------|----------------------|-----------------------------------------------------|
| /console/rules                      | analyst              | GET /rules, GET /rules/packs, the rule exceptions   |
| /console/rules/attack               | analyst              | the loaded rules' tags; alerts as GET /alerts gives |
| POST /console/rules/packs/rollback  | admin                | POST /rules/packs/rollback                          |
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, Response

from soc_api.console import attack_matrix, rules_pages, web
from soc_api.console.web import CsrfChecked, console_data, redirect, render
from soc_api.data import AlertFilter, Data
from soc_api.routers import rules as rules_api

PREFIX = ""  # the console lives at /console, beside the API's /api/v1
install = web.install  # static files and the console's error pages (app.py calls each install once)
router = APIRouter(include_in_schema=False, max_body_size=16 * 1024)

READ_ROLES = ("analyst",)  # and admin, who always may
Reader = Annotated[Data, Depends(console_data(*READ_ROLES))]
Admin = Annotated[Data, Depends(console_data("admin"))]
RULES = "/console/rules"
ATTACK = "/console/rules/attack"
MAX_VERSION = 200


def _is_admin(data: Data) -> bool:
    return data.principal.role == "admin"


def _packs(data: Data) -> tuple[dict | None, str | None]:
    """GET /rules/packs's answer, or why it cannot be had (the pointer cannot be read: the API's 503)."""
    try:
        return rules_api.packs(data).model_dump(), None
    except HTTPException as exc:
        return None, str(exc.detail)


def _version_param(value: str | None) -> str | None:
    return value if value and len(value) <= MAX_VERSION and value.isprintable() else None


def _rules_page(request: Request, data: Data, *, failure: tuple[str, dict] | None = None,
                status_code: int = 200) -> Response:
    answer = rules_api.rules(data)  # GET /api/v1/rules
    ruleset = data.suite.ruleset
    names = rules_pages.rule_names(ruleset)
    exceptions = getattr(ruleset, "exceptions", None)
    rows = rules_pages.rule_rows((r.model_dump() for r in answer.rules), exceptions, names)
    q = rules_pages.RuleQuery.from_params(request.query_params if request.method == "GET" else {})
    page = rules_pages.page_of(rows, q)
    packs, packs_error = _packs(data)
    may_rollback, rollback_to = rules_pages.rollback_target(packs)
    notice = None
    if request.method == "GET" and request.query_params.get("done") == "rollback":
        notice = {"from": _version_param(request.query_params.get("from")),
                  "to": _version_param(request.query_params.get("to"))}
    context = {
        "active": "rules",
        "answer": answer,
        "counts": rules_pages.counts(rows),
        "q": q,
        "page": page,
        "states": rules_pages.STATES,
        "engines": rules_pages.ENGINES,
        "packs": packs,
        "packs_error": packs_error,
        "may_rollback": may_rollback,
        "rollback_to": rollback_to,
        "is_admin": _is_admin(data),
        "exceptions_total": len(exceptions) if exceptions is not None else 0,
        "unknown_exceptions": rules_pages.unknown_exceptions(exceptions, rows, names),
        "last_error": getattr(ruleset, "last_error", None),
        "notice": notice,
        "failure": failure,
        "page_url": lambda **changes: RULES + ("?" + urlencode(q.params(**changes)) if q.params(**changes) else ""),
    }
    return render(request, "rules.html", context, status_code=status_code)


@router.get(RULES, response_class=HTMLResponse, name="console_rules")
def rules_page(request: Request, data: Reader) -> Response:
    return _rules_page(request, data)


@router.post(RULES + "/packs/rollback", dependencies=[CsrfChecked], name="console_rules_rollback")
def rollback(request: Request, data: Admin) -> Response:
    """POST /api/v1/rules/packs/rollback: back to the rule pack current before this one (the suite switches within
    its reload interval). Refused (409, the page again with the reason) when there is no earlier pack or an install
    or rollback is under way."""
    try:
        answer = rules_api.rollback(data)
    except HTTPException as exc:
        if exc.status_code != 409:
            raise
        request.state.audit_detail = f"refused 409: {exc.detail}"[:1000]
        return _rules_page(request, data, failure=("rules.error.rollback", {"detail": str(exc.detail)[:300]}),
                           status_code=409)
    request.state.audit_detail = f"rule pack rolled back from {answer.previous} to {answer.current}"
    query = {"done": "rollback", "from": answer.previous or "", "to": answer.current or ""}
    return redirect(f"{RULES}?{urlencode(query)}#packs")


# --- the ATT&CK matrix ---------------------------------------------------------------------------------------------
@router.get(ATTACK, response_class=HTMLResponse, name="console_attack")
def attack_page(request: Request, data: Reader) -> Response:
    problems = []
    range_key = request.query_params.get("range") or attack_matrix.DEFAULT_RANGE
    if range_key not in attack_matrix.RANGES:
        problems.append("attack.problem.range")
        range_key = attack_matrix.DEFAULT_RANGE
    since = attack_matrix.period_start(range_key)
    cov = attack_matrix.coverage(data.suite.ruleset)
    # One more than the cap is asked for: it tells whether the period holds more than was counted.
    alerts = data.iter_alerts(AlertFilter(since=since), cap=attack_matrix.ALERT_CAP + 1)
    seen = attack_matrix.seen_in(alerts, cap=attack_matrix.ALERT_CAP)
    grid = attack_matrix.matrix(cov, seen)
    context = {
        "active": "rules",
        "range": range_key,
        "ranges": list(attack_matrix.RANGES),
        "since": since,
        "grid": grid,
        "seen": seen,
        "cap": attack_matrix.ALERT_CAP,
        "legend": attack_matrix.STYLE_LEGEND,
        "problems": problems,
        "queue_url": lambda tactic: "/console/alerts?" + urlencode({"tactic": tactic, "range": range_key}),
    }
    return render(request, "attack.html", context)
