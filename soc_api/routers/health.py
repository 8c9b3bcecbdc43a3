"""Liveness and store health. No key is needed for the status ("ok" or "degraded"), which is all an anonymous
caller (a load balancer, a probe, anyone on the network) gets: the store's backend, its path or cluster, an error
text and the rule and queue counts tell an attacker what to aim at, so they go only to an admin or analyst key."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request, Security
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel

from soc_api.deps import _api_key_header, _bearer
from soc_api.keys import Principal, cached_principal, verify_key
from soc_api.settings import api_settings

router = APIRouter(tags=["health"])
DETAIL_ROLES = ("admin", "analyst")


class HealthAnswer(BaseModel):
    status: str  # ok | degraded
    # Only for an admin or analyst key:
    store: dict[str, Any] | None = None
    rules_loaded: int | None = None
    rules_failed: int | None = None
    queue_depth: int | None = None


def _caller(request: Request, presented: str | None) -> Principal | None:
    """The principal of a key sent along, if it is valid; health never refuses a caller for its key."""
    if not presented:
        return None
    suite = request.app.state.suite
    seconds = api_settings(suite).key_cache_seconds
    return cached_principal(presented, seconds) or verify_key(suite.store, presented, cache_seconds=seconds)


@router.get("/health", response_model=HealthAnswer, response_model_exclude_none=True,
            description="`status` for anyone; the store, rule and queue details for an admin or analyst key.")
def health(request: Request,
           api_key: Annotated[str | None, Security(_api_key_header)] = None,
           bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)] = None) -> HealthAnswer:
    suite = request.app.state.suite
    store = suite.store.health()
    status = "ok" if store["status"] in ("green", "yellow") else "degraded"
    principal = _caller(request, api_key or (bearer.credentials if bearer else None))
    if principal is None or principal.role not in DETAIL_ROLES:
        return HealthAnswer(status=status)
    return HealthAnswer(status=status, store=store, rules_loaded=suite.ruleset.loaded,
                        rules_failed=suite.ruleset.failed,
                        queue_depth=suite.spool.depth() if suite.spool is not None else 0)
