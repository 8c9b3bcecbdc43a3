"""The FastAPI application: thin routers under /api/v1, Prometheus metrics at /metrics, OpenAPI at /docs.

Every module in soc_api/routers/ that defines ``router`` is included, so adding an endpoint group is adding a file.
"""

from __future__ import annotations

import importlib
import pkgutil

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from soc.storage.base import StoreError
from soc_api import routers
from soc_api.deps import store_error_http

API_PREFIX = "/api/v1"


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
    for module in _router_modules():
        # A router may live outside /api/v1 (TAXII has its own root): it says so with PREFIX.
        app.include_router(module.router, prefix=getattr(module, "PREFIX", API_PREFIX))

    @app.exception_handler(StoreError)
    async def store_failed(request: Request, exc: StoreError) -> JSONResponse:
        # Wherever a route meets the store failing, the caller gets the same answer: 503 with Retry-After when
        # the store is unreachable or overloaded, 500 with the reason otherwise (deps.store_error_http decides).
        error = store_error_http(exc)
        return JSONResponse({"detail": error.detail}, status_code=error.status_code, headers=error.headers)

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        # Served at exactly /metrics (a mounted app would answer with a redirect first).
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app
