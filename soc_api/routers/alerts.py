"""Alerts: list (filtered, sorted, cursor-paginated), groups, one alert with its evidence; acknowledge, assign, change
status, notes, bulk actions. All through the tenancy-enforcing data layer (soc_api/data/)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Response

from detections import lifecycle
from soc.vocabulary import OPEN_STATUSES, AlertStatus, Severity, severity_rank

from soc_api.data import SORTS, AlertFilter, Data, data_for, invalid, valid_time
from soc_api.models import (
    Alert, AlertGroup, AlertGroups, AlertPage, AlertWithEvidence, Assignment, BulkAction, BulkResult, NoteIn,
    StatusChange,
)
from soc_api.settings import JSON_BODY_CAP
from soc_api.state import api_state

router = APIRouter(prefix="/alerts", tags=["alerts"], max_body_size=JSON_BODY_CAP)
Reader = Annotated[Data, Depends(data_for("analyst", "network_admin", "agency", "national_centre"))]
Triage = Annotated[Data, Depends(data_for("analyst", "network_admin"))]
Sort = Literal[tuple(SORTS)]  # type: ignore[valid-type]


def _filter(status, severity, agency, rule_id, since, until, entity, incident, sort) -> AlertFilter:
    return AlertFilter(status=status, severity=severity, agency=agency, rule_id=rule_id,
                       since=valid_time(since, "since"), until=valid_time(until, "until"), entity=entity,
                       incident=incident, sort=sort)


@router.get("", response_model=AlertPage)
def list_alerts(
    data: Reader,
    status: AlertStatus | None = None,
    severity: Severity | None = None,
    agency: Annotated[str | None, Query(max_length=64)] = None,
    rule_id: Annotated[str | None, Query(max_length=200)] = None,
    since: Annotated[str | None, Query(max_length=40, description="last seen at or after (ISO 8601)")] = None,
    until: Annotated[str | None, Query(max_length=40, description="last seen before (ISO 8601)")] = None,
    entity: Annotated[str | None, Query(max_length=256, description="an address, user, host or hash")] = None,
    incident: Annotated[str | None, Query(max_length=64)] = None,
    sort: Annotated[Sort, Query(description="field, '-' for descending")] = "-last_seen",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=1024)] = None,
) -> Response:
    # The hottest route: consoles refreshing the same view within a second share one answer (per scope).
    cache = api_state(data.suite).list_cache
    key = (data.scope(agency), status, severity, rule_id, since, until, entity, incident, sort, limit, cursor)
    cached = cache.get(key)
    if cached is not None:
        return Response(cached, media_type="application/json")
    version = cache.version
    page = data.list_alerts(_filter(status, severity, agency, rule_id, since, until, entity, incident, sort),
                            limit, cursor)
    # Validated once, serialised once by pydantic-core (not again by FastAPI).
    body = AlertPage(alerts=[Alert.model_validate(a) for a in page.items], next_cursor=page.next_cursor,
                     complete=page.scanned_all).model_dump_json().encode()
    cache.put(key, body, version)
    return Response(body, media_type="application/json")


@router.get("/groups", response_model=AlertGroups)
def alert_groups(
    data: Reader,
    status: AlertStatus | None = None,
    agency: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[str | None, Query(max_length=40)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AlertGroups:
    """Alerts grouped by their group labels (agency and rule by default), worst and newest first."""
    groups: dict[str, dict] = {}
    looked = 0
    cap = 20_000
    for alert in data.iter_alerts(AlertFilter(status=status, agency=agency, since=valid_time(since, "since")),
                                  cap=cap):
        looked += 1
        group = alert.get("group") or {"key": alert["fingerprint"][:16], "labels": alert.get("labels", {})}
        entry = groups.setdefault(group["key"], {"key": group["key"], "labels": group["labels"], "count": 0,
                                                 "open": 0, "worst_severity": Severity.informational.value,
                                                 "last_seen": alert["last_seen"], "alerts": []})
        entry["count"] += 1
        entry["open"] += alert["status"] in OPEN_STATUSES
        if severity_rank(alert.get("severity")) > severity_rank(entry["worst_severity"]):
            entry["worst_severity"] = alert["severity"]
        entry["last_seen"] = max(entry["last_seen"], alert["last_seen"])
        if len(entry["alerts"]) < 50:
            entry["alerts"].append(alert["id"])
    ordered = sorted(groups.values(), key=lambda g: (severity_rank(g["worst_severity"]), g["last_seen"]),
                     reverse=True)
    return AlertGroups(groups=[AlertGroup(**g) for g in ordered[:limit]], complete=looked < cap)


@router.get("/{alert_id}", response_model=AlertWithEvidence)
def get_alert(alert_id: str, data: Reader) -> AlertWithEvidence:
    alert = data.get_alert(alert_id)
    return AlertWithEvidence(alert=Alert.model_validate(alert), events=data.evidence(alert))


@router.post("/{alert_id}/acknowledge", response_model=Alert)
def acknowledge(alert_id: str, data: Triage) -> Alert:
    return Alert.model_validate(data.edit_alert(
        alert_id, lambda a: lifecycle.acknowledge(a, by=data.actor, source=data.source)))


@router.post("/{alert_id}/assign", response_model=Alert)
def assign(alert_id: str, body: Assignment, data: Triage) -> Alert:
    return Alert.model_validate(data.edit_alert(
        alert_id, lambda a: lifecycle.assign(a, body.assignee, by=data.actor, source=data.source)))


@router.post("/{alert_id}/status", response_model=Alert)
def change_status(alert_id: str, body: StatusChange, data: Triage) -> Alert:
    return Alert.model_validate(data.edit_alert(alert_id, lambda a: lifecycle.set_status(
        a, body.status, by=data.actor, reason=body.reason, comment=body.comment, source=data.source)))


@router.post("/{alert_id}/notes", response_model=Alert)
def add_note(alert_id: str, body: NoteIn, data: Triage) -> Alert:
    return Alert.model_validate(data.edit_alert(
        alert_id, lambda a: lifecycle.add_note(a, body.text, by=data.actor, source=data.source)))


@router.post("/bulk", response_model=BulkResult)
def bulk(body: BulkAction, data: Triage) -> BulkResult:
    """One action on many alerts; each alert succeeds or fails on its own (the reasons are returned)."""
    if body.action == "status" and body.status is None:
        raise invalid("body.status", "the status action needs status")
    if body.action == "note" and not (body.text or "").strip():
        raise invalid("body.text", "the note action needs text")

    def change(alert: dict) -> dict:
        if body.action == "acknowledge":
            return lifecycle.acknowledge(alert, by=data.actor, source=data.source)
        if body.action == "assign":
            return lifecycle.assign(alert, body.assignee, by=data.actor, source=data.source)
        if body.action == "status":
            return lifecycle.set_status(alert, body.status, by=data.actor, reason=body.reason, comment=body.comment,
                                        source=data.source)
        return lifecycle.add_note(alert, body.text or "", by=data.actor, source=data.source)

    done, failed = [], {}
    for alert_id in dict.fromkeys(body.ids):
        try:
            data.edit_alert(alert_id, change, refresh=False)
            done.append(alert_id)
        except HTTPException as exc:
            failed[alert_id] = str(exc.detail)
    data.refresh()
    return BulkResult(done=done, failed=failed)
