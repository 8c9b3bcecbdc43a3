"""The audit log: every write through the API (who, what, when, from where). Admins read all of it; an agency key
reads the records of its own agency's users."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from soc_api.data import Data, data_for, valid_time
from soc_api.models import AuditPage

router = APIRouter(prefix="/audit", tags=["audit"])
Reader = Annotated[Data, Depends(data_for("admin", "agency", "national_centre"))]


@router.get("", response_model=AuditPage)
def audit_log(
    data: Reader,
    key_id: Annotated[str | None, Query(max_length=64)] = None,
    user: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[str | None, Query(max_length=40)] = None,
    agency: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=1024)] = None,
) -> AuditPage:
    page = data.audit_records(key_id=key_id, user=user, since=valid_time(since, "since") if since else None,
                              agency=agency, limit=limit, cursor=cursor)
    return AuditPage(records=page.items, next_cursor=page.next_cursor)
