"""Liveness and store health: no key needed, nothing tenant-specific in it."""

from __future__ import annotations

from fastapi import APIRouter, Request

from soc_api.models import Health

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health)
def health(request: Request) -> Health:
    suite = request.app.state.suite
    store = suite.store.health()
    return Health(status="ok" if store["status"] in ("green", "yellow") else "degraded", store=store,
                  rules_loaded=suite.ruleset.loaded, rules_failed=suite.ruleset.failed,
                  queue_depth=suite.spool.depth() if suite.spool is not None else 0)
