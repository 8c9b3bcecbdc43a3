"""The audit log: every write through the API (who, what, when, from where). Admins read all of it; an agency key
reads the records of its own agency's users."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from soc.storage.base import DocumentQuery
from soc_api.data import Data, data_for, valid_time
from soc_api.deps import AUDIT
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
    terms = {k: v for k, v in (("actor.key_id", key_id), ("actor.user", user)) if v}
    ranges = {"@timestamp": (valid_time(since, "since"), None)} if since else {}
    page = data.find(AUDIT, DocumentQuery(terms=terms, ranges=ranges, sort="@timestamp", descending=True,
                                          limit=limit), agency=agency, cursor=cursor)
    return AuditPage(records=page.items, next_cursor=page.next_cursor)
