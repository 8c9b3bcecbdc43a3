"""What every console page route uses.

- ``render(request, template, context, status_code)``: a page from ``templates/``, with ``t``, ``lang``, ``user``,
  ``csrf_token``, ``nav`` and the ``localtime`` filter; autoescaped; sent with a strict Content Security Policy
  (scripts only from /console/static: no inline script, no inline ``<style>``; ``style=""`` attributes are allowed).
- ``ConsoleUser``: the signed-in user's Principal (the same roles and agency binding as the API's keys). Without a
  valid session a page request is redirected to ``/console/signin?next=<path>``; a fetch (``Accept:
  application/json`` or ``X-Requested-With: fetch``) gets 401.
- ``console_data(*roles)``: like ``soc_api.data.data_for`` for the session's user: the role is checked (admin always
  may; otherwise 403) and the caller's ``Data`` returned, so tenancy is exactly the API's.
- ``CsrfChecked``: on every state-changing route (POST): the session's CSRF token must come in the form field
  ``csrf_token`` or the header ``X-CSRF-Token`` (403 otherwise). Like the API's writes, each such request leaves an
  audit record (who, what, outcome) once the route has run.
- ``install(app)``: the static files and the handlers that answer console paths with pages (a redirect to sign in,
  an error page) instead of JSON.
"""

from __future__ import annotations

import hmac
import logging
import re
import secrets
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Callable
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, pass_context, select_autoescape
from starlette.exceptions import HTTPException as StarletteHTTPException

from soc import ecs
from soc.storage.base import StoreError
from soc_api.console import auth, sessions
from soc_api.console.i18n import LANGUAGES, translate, translator
from soc_api.data import Data
from soc_api.deps import RateLimiter, store_error_http
from soc_api.keys import Principal
from soc_api.settings import ConsoleConfig, api_settings
from soc_api.tenancy import scoped

log = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
CONSOLE = "/console"
STATIC_URL = "/console/static"
SIGNIN = "/console/signin"
HOME = "/console/home"
SESSION_COOKIE = "soc_session"
FORM_COOKIE = "soc_form"  # the sign-in form's own CSRF token, before there is a session
LANG_COOKIE = "soc_lang"
TZ_COOKIE = "soc_tz"  # the browser's time zone, set by console.js

# The top bar: (key, path, roles that see it). Admin sees everything.
NAV: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("overview", "/console/overview", ("analyst", "national_centre")),
    ("alerts", "/console/alerts", ("analyst", "network_admin", "agency")),
    ("incidents", "/console/incidents", ("analyst",)),
    ("events", "/console/events", ("analyst",)),
    ("approvals", "/console/approvals", ("network_admin",)),
    ("posture", "/console/posture", ("analyst", "agency", "national_centre")),
    ("reports", "/console/reports", ("analyst", "agency")),
    ("rules", "/console/rules", ("analyst",)),
    ("findings", "/console/findings", ("analyst", "network_admin", "agency", "national_centre")),
    ("admin", "/console/admin", ()),
)

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; style-src-elem 'self'; "
       "style-src-attr 'unsafe-inline'; img-src 'self' data:; font-src 'self'; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{20,100}$")
_ZONE = re.compile(r"^[A-Za-z]{1,20}(/[A-Za-z0-9_+-]{1,30}){0,2}$")


class SignInRequired(Exception):
    """A console route needs a signed-in user and there is none (or the session ended)."""

    def __init__(self, ended: bool = False):
        super().__init__("sign in first")
        self.ended = ended


# --- configuration, language, time zone ----------------------------------------------------------------------------
def console_config(request: Request) -> ConsoleConfig:
    return api_settings(request.app.state.suite).console


def language(request: Request) -> str:
    chosen = request.cookies.get(LANG_COOKIE)
    if chosen in LANGUAGES:
        return chosen
    for part in request.headers.get("accept-language", "").split(",")[:10]:
        code = part.split(";")[0].strip().lower()[:2]
        if code in LANGUAGES:
            return code
    return console_config(request).default_language


def time_zone(request: Request) -> ZoneInfo:
    wanted = request.cookies.get(TZ_COOKIE, "")
    if wanted and _ZONE.match(wanted):
        try:
            return ZoneInfo(wanted)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    try:
        return ZoneInfo(request.app.state.suite.settings.timezone)
    except (AttributeError, ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


_FORMATS = {
    ("vi", "datetime"): "%d/%m/%Y %H:%M:%S", ("en", "datetime"): "%Y-%m-%d %H:%M:%S",
    ("vi", "date"): "%d/%m/%Y", ("en", "date"): "%Y-%m-%d",
    ("vi", "time"): "%H:%M:%S", ("en", "time"): "%H:%M:%S",
    ("vi", "minute"): "%d/%m/%Y %H:%M", ("en", "minute"): "%Y-%m-%d %H:%M",
}


def format_time(value: Any, zone: ZoneInfo, lang: str, style: str = "datetime") -> str:
    """An ISO 8601 time (UTC or with an offset), a datetime or epoch seconds, in ``zone``, written the language's
    way (Vietnamese: day/month/year). Anything else is shown as it is."""
    if value is None or value == "":
        return ""
    try:
        if isinstance(value, datetime):
            moment = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            moment = datetime.fromtimestamp(value, timezone.utc)
        else:
            moment = ecs.parse_time(str(value))
    except (ValueError, OverflowError, OSError):
        return str(value)
    fmt = _FORMATS.get((lang, style)) or _FORMATS[(lang if lang in LANGUAGES else "en", "datetime")]
    return moment.astimezone(zone).strftime(fmt)


@pass_context
def _localtime(context, value: Any, style: str = "datetime") -> str:
    return format_time(value, context.get("_zone") or ZoneInfo("UTC"), context.get("lang", "en"), style)


ENV = Environment(loader=FileSystemLoader(str(TEMPLATES)),
                  autoescape=select_autoescape(default=True, default_for_string=True),
                  trim_blocks=True, lstrip_blocks=True)
ENV.filters["localtime"] = _localtime


# --- where a redirect may go ---------------------------------------------------------------------------------------
def safe_next(value: str | None) -> str | None:
    """``value`` when it is a path of this site (``/console/…``, ``/``), else None. Refuses whatever a browser could
    read as another site (``//host``, ``/\\host``, a scheme, control characters or spaces, which browsers strip) and
    dot segments."""
    if not value or len(value) > 2000 or not value.startswith("/"):
        return None
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7f for ch in value):
        return None
    path = value.split("?", 1)[0].split("#", 1)[0]
    if "\\" in path or "//" in path or "/./" in path or "/../" in path or path.endswith(("/.", "/..")):
        return None
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return None
    if parts.path != "/" and parts.path != CONSOLE and not parts.path.startswith(CONSOLE + "/"):
        return None
    if parts.path.startswith(STATIC_URL + "/"):
        return None
    return value


# Where each role starts: the page of its daily work (analysts the queue, network admins the approvals).
LANDING = {"admin": "/console/alerts", "analyst": "/console/alerts", "agency": "/console/alerts",
           "network_admin": "/console/approvals", "national_centre": "/console/posture"}


def landing(principal: Principal) -> str:
    """Where a user starts (the home page for a role not listed)."""
    return LANDING.get(principal.role, HOME)


def nav_for(principal: Principal | None, active: str | None) -> list[dict]:
    if principal is None:
        return []
    return [{"key": key, "path": path, "label": f"nav.{key}", "active": key == active}
            for key, path, roles in NAV if principal.role == "admin" or principal.role in roles]


def current_path(request: Request) -> str:
    path = request.url.path
    if request.url.query:
        path += "?" + request.url.query
    return path


def wants_json(request: Request) -> bool:
    if request.headers.get("x-requested-with", "").lower() == "fetch":
        return True
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


def is_console(request: Request) -> bool:
    path = request.url.path
    return path == "/" or path == CONSOLE or path.startswith(CONSOLE + "/")


def secure_request(request: Request) -> bool:
    return request.url.scheme == "https" or console_config(request).secure_cookie == "always"


def set_cookie(response: Response, request: Request, name: str, value: str, *, max_age: int | None = None,
               http_only: bool = True, same_site: str = "strict") -> None:
    response.set_cookie(name, value, max_age=max_age, path="/", secure=secure_request(request), httponly=http_only,
                        samesite=same_site)


def clear_cookie(response: Response, request: Request, name: str) -> None:
    response.delete_cookie(name, path="/", secure=secure_request(request), httponly=True, samesite="strict")


# --- pages ---------------------------------------------------------------------------------------------------------
def render(request: Request, template: str, context: dict | None = None, status_code: int = 200) -> HTMLResponse:
    """A page: ``templates/<template>`` with ``context`` and, for every page, ``t`` (translate), ``lang``, ``user``
    (the Principal or None), ``csrf_token``, ``nav`` (the top bar's links for the user, ``active`` marked) and the
    ``localtime`` filter. Those names are the frame's: a context value of the same name is not used."""
    principal: Principal | None = getattr(request.state, "console_principal", None)
    session: dict | None = getattr(request.state, "console_session", None)
    if status_code >= 400:
        # A change refused by showing its page again is audited as refused, not "ok" (verify_csrf reads this).
        request.state.audit_outcome = f"refused {status_code}"
    lang = language(request)
    zone = time_zone(request)
    new_form_token = None
    if session is not None:
        csrf = session["csrf"]
    else:
        csrf = request.cookies.get(FORM_COOKIE, "")
        if not _TOKEN.match(csrf):
            csrf = new_form_token = secrets.token_urlsafe(32)
    values = dict(context or {})
    values.update({
        "request": request,
        "t": translator(lang),
        "lang": lang,
        "languages": LANGUAGES,
        "user": principal,
        "csrf_token": csrf,
        "nav": nav_for(principal, values.get("active")),
        "here": current_path(request),
        "timezone": zone.key,
        "_zone": zone,
        "home": landing(principal) if principal else SIGNIN,
    })
    html = ENV.get_template(template).render(values)
    response = HTMLResponse(html, status_code=status_code, headers=SECURITY_HEADERS)
    if new_form_token:
        set_cookie(response, request, FORM_COOKIE, new_form_token)
    return response


def redirect(url: str, status_code: int = 303) -> RedirectResponse:
    return RedirectResponse(url, status_code=status_code, headers={"Cache-Control": "no-store"})


# --- who is signed in ----------------------------------------------------------------------------------------------
_NOBODY = object()


def _limiter(request: Request) -> RateLimiter:
    state = request.app.state
    limiter = getattr(state, "console_rate_limiter", None)
    if limiter is None:
        limiter = state.console_rate_limiter = RateLimiter()
    return limiter


def principal_of(session: dict, account: dict) -> Principal:
    """The Principal a session acts as: its user's role and agency, read from the user record at every request."""
    return Principal(key_id=f"console-{session['sid']}", role=account["role"], agency=account.get("agency"),
                     name=account.get("name") or account["id"], user=account["id"])


def session_principal(request: Request) -> Principal | None:
    """The Principal of the request's session, or None; remembered on the request (it reads the store: call it from
    a worker thread, as FastAPI does for a plain ``def`` dependency)."""
    known = getattr(request.state, "console_principal", _NOBODY)
    if known is not _NOBODY:
        return known
    token = request.cookies.get(SESSION_COOKIE)
    found = sessions.lookup(request.app.state.suite.store, token, console_config(request)) if token else None
    if found is None:
        request.state.console_principal = None
        request.state.console_session = None
        return None
    record, account = found
    principal = scoped(request.app.state.suite, principal_of(record, account))
    request.state.console_principal = principal
    request.state.console_session = record
    return principal


def console_principal(request: Request) -> Principal:
    """The signed-in user (a dependency): SignInRequired when there is none, 429 past the API's rate limit."""
    principal = session_principal(request)
    if principal is None:
        raise SignInRequired(ended=bool(request.cookies.get(SESSION_COOKIE)))
    limits = api_settings(request.app.state.suite).rate_limit
    wait = _limiter(request).take(principal.key_id, limits.requests_per_second, limits.burst)
    if wait > 0:
        raise HTTPException(429, translate(language(request), "error.429"),
                            headers={"Retry-After": str(max(1, round(wait)))})
    return principal


ConsoleUser = Annotated[Principal, Depends(console_principal)]


def console_data(*roles: str) -> Callable[..., Data]:
    """A dependency: the signed-in user must hold one of ``roles`` (admin always may; a 403 page otherwise); gives
    the user's ``Data``, whose tenancy is exactly the API's."""

    async def build(request: Request, principal: Principal = Depends(console_principal)) -> Data:
        if principal.role not in roles and principal.role != "admin":
            names = ", ".join(translate(language(request), f"role.{r}") for r in roles)
            raise HTTPException(403, translate(language(request), "error.role", roles=names))
        return Data(request, principal)

    return build


# --- CSRF ----------------------------------------------------------------------------------------------------------
async def _presented_token(request: Request) -> str | None:
    header = request.headers.get("x-csrf-token")
    if header:
        return header
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        try:
            value = (await request.form()).get("csrf_token")
        except Exception:  # a malformed body: no token (the route answers for the body itself)
            return None
        return value if isinstance(value, str) else None
    return None


def tokens_match(presented: str | None, expected: str | None) -> bool:
    if not presented or not expected or len(presented) > 200:
        return False
    return hmac.compare_digest(presented.encode(), expected.encode())


async def verify_csrf(request: Request, principal: Annotated[Principal, Depends(console_principal)]):
    """The session's CSRF token must come with the request; the request is then audited (after the route ran)."""
    session = request.state.console_session
    actor = auth.actor_of(principal)
    cross_site = request.headers.get("sec-fetch-site", "").lower() == "cross-site"
    if cross_site or not tokens_match(await _presented_token(request), session.get("csrf")):
        await run_in_threadpool(auth.audit, request, actor, "refused 403",
                                "sent from another site" if cross_site else "CSRF token missing or wrong")
        raise HTTPException(403, translate(language(request), "error.csrf"))
    try:
        yield principal
    except StoreError as exc:
        await run_in_threadpool(auth.audit, request, actor, "failed 503", str(exc)[:500])
        raise store_error_http(exc) from exc
    except HTTPException as exc:
        await run_in_threadpool(auth.audit, request, actor, f"refused {exc.status_code}", str(exc.detail))
        raise
    except RequestValidationError as exc:
        # Where and why, never what was typed: a refused form may hold a password.
        where = "; ".join(f"{'.'.join(str(part) for part in error.get('loc', ()))}: {error.get('msg', '')}"
                          for error in exc.errors())
        await run_in_threadpool(auth.audit, request, actor, "refused 422", where[:500])
        raise
    except Exception as exc:
        await run_in_threadpool(auth.audit, request, actor, "failed", type(exc).__name__)
        raise
    else:
        await run_in_threadpool(auth.audit, request, actor, getattr(request.state, "audit_outcome", "ok"),
                                getattr(request.state, "audit_detail", None))


# "function" scope: the audit record is written before the answer is sent (as for the API's writes).
CsrfChecked = Depends(verify_csrf, scope="function")


# --- the app-level parts -------------------------------------------------------------------------------------------
def error_page(request: Request, status: int, message: str | None = None,
               headers: dict | None = None) -> HTMLResponse:
    lang = language(request)
    text = message or translate(lang, f"error.{status}")
    if text == f"error.{status}":
        text = translate(lang, "error.400" if status < 500 else "error.500")
    response = render(request, "error.html", {"status": status, "message": text}, status_code=status)
    for name, value in (headers or {}).items():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


async def _signin_required(request: Request, exc: SignInRequired) -> Response:
    if wants_json(request):
        response: Response = JSONResponse({"detail": "sign in first"}, status_code=401)
    else:
        target = SIGNIN
        query = []
        if request.method in ("GET", "HEAD") and safe_next(current_path(request)):
            query.append("next=" + quote(current_path(request), safe=""))
        if exc.ended:
            query.append("ended=1")
        if query:
            target += "?" + "&".join(query)
        response = redirect(target)
    if exc.ended:
        clear_cookie(response, request, SESSION_COOKIE)
    return response


async def _with_user(request: Request) -> None:
    """An error page shows the top bar of whoever is signed in (the route may not have asked)."""
    if getattr(request.state, "console_principal", _NOBODY) is _NOBODY:
        try:
            await run_in_threadpool(session_principal, request)
        except StoreError:
            request.state.console_principal = None
            request.state.console_session = None


def install(app: FastAPI) -> None:
    """Serve the console's static files and answer console paths with pages: a redirect to the sign-in page when a
    session is needed, an HTML error page for an error (JSON still for fetches and for every API path)."""
    app.mount(STATIC_URL, StaticFiles(directory=str(STATIC)), name="console-static")
    app.add_exception_handler(SignInRequired, _signin_required)
    previous_http = app.exception_handlers.get(StarletteHTTPException)
    previous_store = app.exception_handlers.get(StoreError)
    previous_invalid = app.exception_handlers.get(RequestValidationError)

    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if is_console(request) and not wants_json(request):
            await _with_user(request)
            detail = exc.detail if exc.status_code in (403, 429) and isinstance(exc.detail, str) else None
            return error_page(request, exc.status_code, detail, getattr(exc, "headers", None))
        return await previous_http(request, exc)

    async def store_failed(request: Request, exc: StoreError) -> Response:
        if is_console(request) and not wants_json(request):
            error = store_error_http(exc)
            log.warning("console %s: store failed: %s", request.url.path, exc)
            return error_page(request, error.status_code, headers=error.headers)
        return await previous_store(request, exc)

    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        if is_console(request) and not wants_json(request):
            await _with_user(request)
            return error_page(request, 422)
        return await previous_invalid(request, exc)

    if previous_http is not None:
        app.add_exception_handler(StarletteHTTPException, http_error)
    if previous_store is not None:
        app.add_exception_handler(StoreError, store_failed)
    if previous_invalid is not None:
        app.add_exception_handler(RequestValidationError, invalid)
