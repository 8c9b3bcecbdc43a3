"""Liveness and store health. No key is needed for the status ("ok" or "degraded"), which is all an anonymous
caller (a load balancer, a probe, anyone on the network) gets: the store's backend, its path or cluster, an error
text and the rule and queue counts tell an attacker what to aim at, so they go only to an admin or analyst key."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from soc_api.data import store_health
from soc_api.deps import optional_principal
from soc_api.keys import Principal

router = APIRouter(tags=["health"])
DETAIL_ROLES = ("admin", "analyst")


class HealthAnswer(BaseModel):
    status: str  # ok | degraded
    # Only for an admin or analyst key:
    store: dict[str, Any] | None = None
    rules_loaded: int | None = None
    rules_failed: int | None = None
    queue_depth: int | None = None


@router.get("/health", response_model=HealthAnswer, response_model_exclude_none=True,
            description="`status` for anyone; the store, rule and queue details for an admin or analyst key.")
def health(request: Request,
           principal: Annotated[Principal | None, Depends(optional_principal)] = None) -> HealthAnswer:
    suite = request.app.state.suite
    store = store_health(suite)
    status = "ok" if store["status"] in ("green", "yellow") else "degraded"
    if principal is None or principal.role not in DETAIL_ROLES:
        return HealthAnswer(status=status)
    return HealthAnswer(status=status, store=store, rules_loaded=suite.ruleset.loaded,
                        rules_failed=suite.ruleset.failed,
                        queue_depth=suite.queue_depth())
