"""Users and their API keys (admins), and "who am I" for any key. A key is shown once, when it is made."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi import Path as PathParam

from soc_api.data import Data, data_for, invalid
from soc_api.deps import Authenticated
from soc_api.keys import KeyCreationError, Principal
from soc_api.models import KeyIn, KeyRecord, Me, NewKey, User, UserIn, UserUpdate
from soc_api.settings import JSON_BODY_CAP

router = APIRouter(tags=["users"], max_body_size=JSON_BODY_CAP)
Admin = Annotated[Data, Depends(data_for("admin"))]
UserId = Annotated[str, PathParam(max_length=64, pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")]


@router.get("/me", response_model=Me)
def me(principal: Annotated[Principal, Authenticated]) -> Me:
    return Me(key_id=principal.key_id, role=principal.role, agency=principal.agency, name=principal.name,
              user=principal.user)


@router.get("/users", response_model=list[User])
def users(data: Admin, limit: Annotated[int, Query(ge=1, le=5000)] = 1000) -> list[User]:
    return [User.model_validate(u) for u in data.users(limit)]


@router.post("/users", response_model=User, status_code=201)
def add_user(body: UserIn, data: Admin) -> User:
    try:
        record = data.create_user(body.id, role=body.role, agency=body.agency, name=body.name, email=body.email)
    except KeyCreationError as exc:
        if "exists" in str(exc):
            raise HTTPException(409, str(exc)) from exc
        raise invalid("body", str(exc)) from exc
    return User.model_validate(record)


@router.get("/users/{user_id}", response_model=User)
def get_user(user_id: UserId, data: Admin) -> User:
    return User.model_validate(data.user(user_id))


@router.patch("/users/{user_id}", response_model=User)
def update_user(user_id: UserId, body: UserUpdate, data: Admin) -> User:
    """Disable (or enable again) a user: a disabled user's keys stop working at once."""
    record = data.set_user_disabled(user_id, body.disabled)
    if record is None:
        raise HTTPException(404, "no such user")
    return User.model_validate(record)


@router.post("/users/{user_id}/keys", response_model=NewKey, status_code=201)
def new_key(user_id: UserId, body: KeyIn, data: Admin) -> NewKey:
    try:
        key, record = data.create_user_key(user_id, name=body.name, expires_in_days=body.expires_in_days)
    except KeyCreationError as exc:
        raise HTTPException(404 if "no user" in str(exc) else 409, str(exc)) from exc
    return NewKey(key=key, record=KeyRecord.model_validate(record))


@router.get("/keys", response_model=list[KeyRecord])
def keys(data: Admin, user: Annotated[str | None, Query(max_length=64)] = None) -> list[KeyRecord]:
    return [KeyRecord.model_validate(r) for r in data.api_keys(user)]


@router.delete("/keys/{key_id}", response_model=KeyRecord)
def revoke(key_id: Annotated[str, PathParam(max_length=64)], data: Admin) -> KeyRecord:
    record = data.revoke_key(key_id)
    if record is None:
        raise HTTPException(404, "no such key")
    return KeyRecord.model_validate(record)
