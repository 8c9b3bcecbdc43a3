"""Alerts: list (filtered, newest first, cursor-paginated) and one alert with its evidence events."""

from __future__ import annotations

import base64
import json
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query

from soc.storage.base import AlertQuery, Store
from soc_api.deps import get_store, require_roles, tenant_scope
from soc_api.keys import Principal
from soc_api.models import Alert, AlertPage, AlertWithEvidence

router = APIRouter(prefix="/alerts", tags=["alerts"])
Reader = Annotated[Principal, Depends(require_roles("analyst", "network_admin", "agency", "national_centre"))]


def _encode_cursor(alert: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps([alert["last_seen"], alert["id"]]).encode()).decode()


def _decode_cursor(cursor: str) -> tuple[str, str]:
    try:
        last_seen, alert_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return str(last_seen), str(alert_id)
    except (ValueError, TypeError) as exc:
        raise HTTPException(400, "the cursor is not one this API issued") from exc


@router.get("", response_model=AlertPage)
def list_alerts(
    principal: Reader,
    store: Annotated[Store, Depends(get_store)],
    status: Annotated[str | None, Query(pattern="^(new|acknowledged|in_progress|closed)$")] = None,
    severity: Annotated[str | None, Query(pattern="^(informational|low|medium|high|critical)$")] = None,
    agency: Annotated[str | None, Query(max_length=64)] = None,
    rule_id: Annotated[str | None, Query(max_length=200)] = None,
    since: Annotated[str | None, Query(max_length=40, description="last seen at or after (ISO 8601)")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> AlertPage:
    query = AlertQuery(agency=tenant_scope(principal, agency), status=status, severity=severity, rule_id=rule_id,
                       since=since, limit=limit, after=_decode_cursor(cursor) if cursor else None)
    alerts = store.list_alerts(query)
    next_cursor = _encode_cursor(alerts[-1]) if len(alerts) == limit else None
    return AlertPage(alerts=[Alert.model_validate(a) for a in alerts], next_cursor=next_cursor)


@router.get("/{alert_id}", response_model=AlertWithEvidence)
def get_alert(alert_id: str, principal: Reader, store: Annotated[Store, Depends(get_store)]) -> AlertWithEvidence:
    alert = store.get_alert(alert_id)
    # An agency key asking for another agency's alert gets the same answer as for a missing one.
    if alert is None or (principal.is_tenant and (alert.get("organization") or {}).get("id") != principal.agency):
        raise HTTPException(404, "no such alert")
    events = store.get_events(alert.get("evidence", []))
    return AlertWithEvidence(alert=Alert.model_validate(alert), events=events)
