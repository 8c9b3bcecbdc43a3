"""The console's front door: ``/`` (to the user's first page, or to sign in), sign-in and sign-out, the home page
and the language switch. The pages themselves are in the other ``console_*`` routers; what they share is
soc_api/console/web.py."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import Response

from soc_api.console import auth, sessions
from soc_api.console.i18n import LANGUAGES
from soc_api.console.web import (FORM_COOKIE, HOME, LANG_COOKIE, NAV, SESSION_COOKIE, SIGNIN, ConsoleUser,
                                 CsrfChecked, clear_cookie, console_config, install, landing, principal_of, redirect,
                                 render, safe_next, session_principal, set_cookie, tokens_match)
from soc_api.deps import client_address
from soc_api.keys import USER_ID

PREFIX = ""
__all__ = ["router", "PREFIX", "install"]  # install: soc_api/app.py calls it once the routers are in
router = APIRouter(tags=["console"], include_in_schema=False, max_body_size=64 * 1024)
MAX_USER_CHARS = 64


@router.get("/")
def root(request: Request) -> Response:
    principal = session_principal(request)
    return redirect(landing(principal) if principal else SIGNIN)


@router.get("/console")
@router.get("/console/")
def console_root(request: Request) -> Response:
    return root(request)


def _signin_page(request: Request, *, next_path: str | None, error: str | tuple[str, dict] | None = None,
                 notice: str | None = None, username: str = "", status_code: int = 200,
                 retry_after: float | None = None) -> Response:
    response = render(request, "signin.html", {"next": next_path or "", "error": error, "notice": notice,
                                               "username": username}, status_code=status_code)
    if retry_after is not None:
        response.headers["Retry-After"] = str(max(1, round(retry_after)))
    return response


@router.get("/console/signin", name="console_signin_page")
def signin_page(request: Request,
                next_path: Annotated[str | None, Query(alias="next", max_length=2000)] = None,
                ended: Annotated[int, Query(ge=0, le=1)] = 0,
                signed_out: Annotated[int, Query(ge=0, le=1)] = 0) -> Response:
    principal = session_principal(request)
    if principal is not None:
        return redirect(safe_next(next_path) or landing(principal))
    notice = "signin.signed_out" if signed_out else "signin.session_ended" if ended else None
    return _signin_page(request, next_path=safe_next(next_path), notice=notice)


@router.post("/console/signin", name="console_signin")
def signin(request: Request,
           username: Annotated[str | None, Form()] = None,
           password: Annotated[str | None, Form()] = None,
           csrf_token: Annotated[str | None, Form()] = None,
           next_path: Annotated[str | None, Form(alias="next")] = None) -> Response:
    store = request.app.state.suite.store
    config = console_config(request)
    target = safe_next(next_path)
    name = (username or "").strip().lower()[:MAX_USER_CHARS]
    shown = name if USER_ID.match(name) else ""
    # The form's own token (a cookie set with the form): a sign-in form posted from another site is refused, so no
    # one can sign a victim into an account of the attacker's choosing.
    if not tokens_match(csrf_token, request.cookies.get(FORM_COOKIE)):
        auth.audit(request, auth.actor_of(None, name), "refused 403", "sign-in form without its token",
                   action="console_signin")
        return _signin_page(request, next_path=target, error="signin.form_expired", username=shown, status_code=403)
    if not name or not password:
        return _signin_page(request, next_path=target, error="signin.missing", username=shown, status_code=400)
    address = client_address(request)
    throttle = auth.Throttle(store, config.lockout)
    refusal = throttle.begin(name, address)
    if refusal is not None:
        # Not checked, not audited one by one (a flood must not fill the audit log): the wait is the answer.
        error = ("signin.locked", {"minutes": max(1, round(refusal.seconds / 60))}) if refusal.locked else \
            ("signin.wait", {"seconds": max(1, round(refusal.seconds))})
        return _signin_page(request, next_path=target, error=error, username=shown, status_code=429,
                            retry_after=refusal.seconds)
    account = auth.verify_user(store, name, password, config.passwords)
    if account is None:
        locked = throttle.locked_now(name, address)
        auth.audit(request, auth.actor_of(None, name), "refused 401",
                   "wrong user name or password" + ("; now locked" if locked else ""), action="console_signin")
        return _signin_page(request, next_path=target, error="signin.failed", username=shown, status_code=401)
    throttle.succeeded(name, address)
    # Never the session the browser came with: whatever id it carried (planted or not) ends here.
    sessions.end(store, request.cookies.get(SESSION_COOKIE))
    token, record = sessions.create(store, account, config, address=address,
                                    user_agent=request.headers.get("user-agent", ""))
    sessions.purge(store, config)
    principal = principal_of(record, account)
    auth.audit(request, auth.actor_of(principal), "ok", "signed in", action="console_signin")
    response = redirect(target or landing(principal))
    set_cookie(response, request, SESSION_COOKIE, token)
    return response


@router.post("/console/signout", name="console_signout")
def signout(request: Request, principal: ConsoleUser, _csrf=CsrfChecked) -> Response:
    sessions.end(request.app.state.suite.store, request.cookies.get(SESSION_COOKIE))
    request.state.audit_detail = "signed out"
    response = redirect(f"{SIGNIN}?signed_out=1")
    clear_cookie(response, request, SESSION_COOKIE)
    return response


@router.get("/console/home", name="console_home")
def home(request: Request, principal: ConsoleUser) -> Response:
    session = request.state.console_session
    pages = [{"key": key, "path": path} for key, path, roles in NAV
             if principal.role == "admin" or principal.role in roles]
    return render(request, "home.html", {"active": "home", "pages": pages,
                                         "signed_in_at": session.get("created"),
                                         "expires_at": session.get("expires_ts")})


@router.get("/console/language/{lang}", name="console_language")
def switch_language(request: Request, lang: Annotated[str, PathParam(pattern="^(vi|en)$")],
                    next_path: Annotated[str | None, Query(alias="next", max_length=2000)] = None) -> Response:
    """Choose the language (a cookie; no state on the server), then back to the page (of this site only)."""
    response = redirect(safe_next(next_path) or HOME)
    if lang in LANGUAGES:
        set_cookie(response, request, LANG_COOKIE, lang, max_age=365 * 24 * 3600, same_site="lax")
    return response
