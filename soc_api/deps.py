"""Dependencies: who is calling (API key), what role they need, which agency they may see, the per-key rate limit,
and the audit record of every write.

Every authenticated route depends on :func:`get_principal`, so what it does holds for every router, present or
future: the key is verified, the key's rate limit applied, the declared body size checked, and — for a write
(POST, PUT, PATCH, DELETE) — an audit record written after the handler ran: who (key, user, role, agency), what
(method, route, path parameters, outcome), when, and from where (client address).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Annotated, Callable

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBasic, HTTPBasicCredentials, HTTPBearer

from soc import ecs
from soc.storage.base import Store, StoreError
from soc_api.keys import Principal, cached_principal, verify_key
from soc_api.settings import api_settings
from soc_api.tenancy import scoped

log = logging.getLogger(__name__)
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)
_bearer = HTTPBearer(auto_error=False)
# TAXII clients authenticate with HTTP Basic: the password is the API key (the user name is not checked).
_basic = HTTPBasic(auto_error=False)
WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
AUDIT = "audit"


def store_error_http(exc: StoreError) -> HTTPException:
    """The store failed under a request: 503 (retry later) when it is transient, else 500 with the reason."""
    if exc.transient:
        return HTTPException(503, f"the store is unavailable, retry shortly: {str(exc)[:300]}",
                             headers={"Retry-After": "5"})
    return HTTPException(500, f"the store refused the request: {str(exc)[:300]}")


def get_store(request: Request) -> Store:
    return request.app.state.suite.store


class RateLimiter:
    """A token bucket per key: ``rate`` requests a second sustained, ``burst`` at once."""

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str, rate: float, burst: int) -> float:
        """0 if the request may go on, else the seconds to wait before the next one."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(burst), now))
            tokens = min(float(burst), tokens + (now - last) * rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / rate


def _limiter(request: Request) -> RateLimiter:
    state = request.app.state
    limiter = getattr(state, "rate_limiter", None)
    if limiter is None:
        limiter = state.rate_limiter = RateLimiter()
    return limiter


def client_address(request: Request) -> str | None:
    return request.client.host if request.client else None


def _audit(request: Request, principal: Principal, outcome: str, detail: str | None = None) -> None:
    # A route may describe what it did (``request.state.audit_detail``: "12 lines, 3456 bytes", never the content).
    write_audit(request, {"key_id": principal.key_id, "user": principal.user, "name": principal.name,
                          "role": principal.role, "agency": principal.agency},
                outcome, detail or getattr(request.state, "audit_detail", None))


def write_audit(request: Request, actor: dict, outcome: str, detail: str | None = None, *,
                action: str | None = None) -> None:
    """One audit record, the same shape for the API's and the console's changes: who (``actor``), what (method,
    route, path parameters, outcome), when, and from where (client address). The agency is the one the route acted
    for (``request.state.audit_agency``: an admin ingesting on behalf of an agency), else the actor's."""
    route = request.scope.get("route")
    record = {
        "id": uuid.uuid4().hex,
        "@timestamp": ecs.now_iso(),
        "actor": actor,
        "organization": {"id": getattr(request.state, "audit_agency", None) or actor.get("agency")},
        "method": request.method,
        "path": request.url.path,
        "route": getattr(route, "path", None),
        "action": action or getattr(route, "name", None),
        "target": {k: str(v) for k, v in (request.path_params or {}).items()},
        "query": str(request.url.query)[:1000] or None,
        "outcome": outcome,
        "detail": detail[:1000] if detail else None,
        "client": {"ip": client_address(request), "user_agent": request.headers.get("user-agent", "")[:300]},
    }
    try:
        request.app.state.suite.store.put_documents(AUDIT, [record])
    except StoreError:  # the write happened; losing its audit record must at least be loud
        log.exception("AUDIT RECORD NOT STORED: %s", record)


async def get_principal(
    request: Request,
    api_key: Annotated[str | None, Security(_api_key_header)] = None,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)] = None,
    basic: Annotated[HTTPBasicCredentials | None, Security(_basic)] = None,
):
    # Async, so the common case (a key verified a moment ago) costs no hop to the thread pool; the store is asked
    # (in the pool) only when the key is not in the cache, and the audit record is written there too.
    presented = api_key or (bearer.credentials if bearer else None) or (basic.password if basic else None)
    if not presented:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "an API key is required (X-API-Key header)",
                            headers={"WWW-Authenticate": "Bearer"})
    settings = api_settings(request.app.state.suite)
    principal = cached_principal(presented, settings.key_cache_seconds)
    if principal is None:
        principal = await run_in_threadpool(verify_key, get_store(request), presented,
                                            cache_seconds=settings.key_cache_seconds)
    if principal is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "the API key is unknown, expired or revoked",
                            headers={"WWW-Authenticate": "Bearer"})
    if principal.is_tenant:  # its agency's subtree; in the pool: the forwarded agencies are read from the store
        principal = await run_in_threadpool(scoped, request.app.state.suite, principal)
    wait = _limiter(request).take(principal.key_id, settings.rate_limit.requests_per_second,
                                  settings.rate_limit.burst)
    if wait > 0:
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS,
                            f"rate limit of {settings.rate_limit.requests_per_second:g} requests a second for this "
                            f"key exceeded; retry after {wait:.2f} s", headers={"Retry-After": str(max(1, round(wait)))})
    declared = request.headers.get("content-length")
    # Structured bodies (JSON, TAXII, forms) have one limit; raw uploads (application/octet-stream, e.g. a file to
    # scan) and routes that declare a limit of their own (``x-own-body-limit``: NDJSON ingest) check their own.
    route = request.scope.get("route")
    own_limit = bool((getattr(route, "openapi_extra", None) or {}).get("x-own-body-limit"))
    structured = not own_limit and not request.headers.get("content-type", "").startswith("application/octet-stream")
    if structured and declared is not None and declared.isdigit() and int(declared) > settings.max_body_bytes:
        raise HTTPException(413,
                            f"the request body may be at most {settings.max_body_bytes} bytes")
    request.state.principal = principal
    if request.method not in WRITE_METHODS:
        try:
            yield principal
        except StoreError as exc:
            raise store_error_http(exc) from exc
        return
    try:
        yield principal
    except StoreError as exc:
        await run_in_threadpool(_audit, request, principal, "failed 503", str(exc)[:500])
        raise store_error_http(exc) from exc
    except HTTPException as exc:
        await run_in_threadpool(_audit, request, principal, f"refused {exc.status_code}", str(exc.detail))
        raise
    except RequestValidationError as exc:
        await run_in_threadpool(_audit, request, principal, "refused 422", str(exc.errors())[:500])
        raise
    except Exception as exc:
        await run_in_threadpool(_audit, request, principal, "failed", type(exc).__name__)
        raise
    else:
        await run_in_threadpool(_audit, request, principal, "ok")


def optional_principal(
    request: Request,
    api_key: Annotated[str | None, Security(_api_key_header)] = None,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)] = None,
) -> Principal | None:
    """The caller's principal when a valid key comes along, else None: for a route anyone may call (health), which
    never refuses a caller for its key (so no rate limit and, reading only, no audit record)."""
    presented = api_key or (bearer.credentials if bearer else None)
    if not presented:
        return None
    seconds = api_settings(request.app.state.suite).key_cache_seconds
    principal = cached_principal(presented, seconds) or verify_key(get_store(request), presented,
                                                                   cache_seconds=seconds)
    return scoped(request.app.state.suite, principal) if principal is not None else None


# Every route takes the caller this way. "function" scope: the code after get_principal's yield (the audit record of
# a write) runs before the answer is sent, so a client told "done" can rely on the write being in the audit log.
Authenticated = Depends(get_principal, scope="function")


def require_roles(*roles: str) -> Callable[..., Principal]:
    async def check(principal: Annotated[Principal, Authenticated]) -> Principal:
        if principal.role not in roles and principal.role != "admin":
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"this needs one of the roles: {', '.join(roles)}")
        return principal

    return check


def tenant_scope(principal: Principal, requested: str | None) -> str | tuple[str, ...] | None:
    """The agencies a query must be limited to: what was asked for, or None for every agency. A tenant is pinned to
    its agency's subtree whatever it asks for: one agency of it when it names one, else all of it (a tuple of ids
    when it has agencies below it, as a city has communes)."""
    if principal.is_tenant:
        allowed = principal.agencies
        if isinstance(requested, tuple):  # a subtree asked for again (a page of a scoped listing)
            if not set(requested) <= allowed:
                raise HTTPException(status.HTTP_403_FORBIDDEN,
                                    "an agency key can only read its own agency and the agencies below it")
            return requested
        if requested is not None:
            if requested not in allowed:
                raise HTTPException(status.HTTP_403_FORBIDDEN,
                                    "an agency key can only read its own agency and the agencies below it")
            return requested
        return principal.agency if len(allowed) <= 1 else tuple(sorted(allowed))
    return requested
