"""Dependencies: who is calling (API key), what role they need, and which agency they may see."""

from __future__ import annotations

from typing import Annotated, Callable

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from soc.storage.base import Store
from soc_api.keys import Principal, verify_key

_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)
_bearer = HTTPBearer(auto_error=False)


def get_store(request: Request) -> Store:
    return request.app.state.suite.store


def get_principal(
    request: Request,
    api_key: Annotated[str | None, Security(_api_key_header)] = None,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)] = None,
) -> Principal:
    presented = api_key or (bearer.credentials if bearer else None)
    if not presented:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "an API key is required (X-API-Key header)",
                            headers={"WWW-Authenticate": "Bearer"})
    principal = verify_key(get_store(request), presented)
    if principal is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "the API key is unknown, expired or revoked",
                            headers={"WWW-Authenticate": "Bearer"})
    return principal


def require_roles(*roles: str) -> Callable[..., Principal]:
    def check(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        if principal.role not in roles and principal.role != "admin":
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"this needs one of the roles: {', '.join(roles)}")
        return principal

    return check


def tenant_scope(principal: Principal, requested: str | None) -> str | None:
    """The agency a query must be limited to. An agency key is pinned to its own agency whatever it asks for."""
    if principal.is_tenant:
        if requested is not None and requested != principal.agency:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "an agency key can only read its own agency")
        return principal.agency
    return requested
