"""The FastAPI application: thin routers under /api/v1, Prometheus metrics at /metrics, OpenAPI at /docs.

Every module in soc_api/routers/ that defines ``router`` is included, so adding an endpoint group is adding a file.
A router module that needs more of the app (static files, its own exception handlers: the console) defines
``install(app)``, called once every router and the app's own handlers are in.
"""

from __future__ import annotations

import importlib
import pkgutil

from fastapi import FastAPI, Request, Response
from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from soc.storage.base import StoreError
from soc_api import routers
from soc_api.deps import store_error_http

API_PREFIX = "/api/v1"
TAXII_MEDIA = "application/taxii+json;version=2.1"
_TAXII_TITLES = {400: "Bad request", 401: "Authentication required", 403: "Forbidden", 404: "Not found",
                 406: "Not acceptable", 413: "Content too large", 415: "Unsupported media type",
                 422: "Invalid request", 429: "Too many requests", 503: "Service unavailable"}


def _is_taxii(request: Request) -> bool:
    return request.url.path.startswith("/taxii2")


def taxii_error(status: int, description: str, headers: dict | None = None) -> JSONResponse:
    body = {"title": _TAXII_TITLES.get(status, "Error"), "description": description, "http_status": str(status)}
    return JSONResponse(body, status_code=status, headers=headers, media_type=TAXII_MEDIA)


def _router_modules():
    for info in sorted(pkgutil.iter_modules(routers.__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{routers.__name__}.{info.name}")
        if hasattr(module, "router"):
            yield module


def create_app(suite) -> FastAPI:
    app = FastAPI(
        title="SOC suite API",
        version="0.1.0",
        description="Alerts, events and posture for SOC analysts, network admins, agencies and the national centre.",
    )
    app.state.suite = suite
    modules = list(_router_modules())
    for module in modules:
        # A router may live outside /api/v1 (TAXII has its own root): it says so with PREFIX.
        app.include_router(module.router, prefix=getattr(module, "PREFIX", API_PREFIX))

    @app.exception_handler(StoreError)
    async def store_failed(request: Request, exc: StoreError) -> JSONResponse:
        # Wherever a route meets the store failing, the caller gets the same answer: 503 with Retry-After when
        # the store is unreachable or overloaded, 500 with the reason otherwise (deps.store_error_http decides).
        error = store_error_http(exc)
        if _is_taxii(request):
            return taxii_error(error.status_code, str(error.detail), error.headers)
        return JSONResponse({"detail": error.detail}, status_code=error.status_code, headers=error.headers)

    # TAXII 2.1 clients expect errors as TAXII error messages (section 3.6.1) in the TAXII media type.
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if _is_taxii(request):
            return taxii_error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))
        return await http_exception_handler(request, exc)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        if _is_taxii(request):
            problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}"
                                 for e in exc.errors())
            return taxii_error(422, f"invalid request: {problems}")
        return await request_validation_exception_handler(request, exc)

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        # Served at exactly /metrics (a mounted app would answer with a redirect first).
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    installed = set()
    for module in modules:
        install = getattr(module, "install", None)
        if callable(install) and install not in installed:  # two routers may share one install
            installed.add(install)
            install(app)
    return app
