"""The FastAPI application: thin routers under /api/v1, Prometheus metrics at /metrics, OpenAPI at /docs."""

from __future__ import annotations

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from soc_api.routers import alerts, health

API_PREFIX = "/api/v1"


def create_app(suite) -> FastAPI:
    app = FastAPI(
        title="SOC suite API",
        version="0.1.0",
        description="Alerts, events and posture for SOC analysts, network admins, agencies and the national centre.",
    )
    app.state.suite = suite
    app.include_router(health.router, prefix=API_PREFIX)
    app.include_router(alerts.router, prefix=API_PREFIX)

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        # Served at exactly /metrics (a mounted app would answer with a redirect first).
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app
