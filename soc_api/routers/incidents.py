"""Incidents: several alerts of one agency merged into one, listed and read with their alerts."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query

from detections.lifecycle import INCIDENTS, LifecycleError, new_incident
from soc.storage.base import DocumentQuery
from soc_api.data import Data, data_for, invalid
from soc_api.models import Alert, Incident, IncidentPage, IncidentWithAlerts, MergeRequest
from soc_api.settings import JSON_BODY_CAP

router = APIRouter(prefix="/incidents", tags=["incidents"], max_body_size=JSON_BODY_CAP)
Reader = Annotated[Data, Depends(data_for("analyst", "network_admin", "agency", "national_centre"))]
Triage = Annotated[Data, Depends(data_for("analyst", "network_admin"))]


@router.post("", response_model=Incident, status_code=201)
def merge(body: MergeRequest, data: Triage) -> Incident:
    """Merge alerts (all of one agency, none already in an incident) into a new incident."""
    ids = list(dict.fromkeys(body.ids))
    alerts = [data.get_alert(i) for i in ids]
    try:
        incident = new_incident(alerts, by=data.actor, title=body.title, source=data.source)
    except LifecycleError as exc:
        if exc.conflict:
            raise HTTPException(409, str(exc)) from exc
        raise invalid("body.ids", str(exc)) from exc
    data.store.put_documents(INCIDENTS, [incident])
    for alert_id in ids:
        data.edit_alert(alert_id, lambda a: _join(a, incident, data), refresh=False)
    data.store.refresh()
    return Incident.model_validate(incident)


def _join(alert: dict, incident: dict, data: Data) -> dict:
    if alert.get("incident") and alert["incident"] != incident["id"]:
        raise LifecycleError(f"alert {alert['id']} joined another incident meanwhile", conflict=True)
    alert["incident"] = incident["id"]
    alert.setdefault("history", []).append({"at": incident["created_at"], "by": data.actor, "action": "merge",
                                            "incident": incident["id"], "from_address": data.source})
    return alert


@router.get("", response_model=IncidentPage)
def list_incidents(
    data: Reader,
    agency: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=1024)] = None,
) -> IncidentPage:
    page = data.find(INCIDENTS, DocumentQuery(sort="created_at", descending=True, limit=limit), agency=agency,
                     cursor=cursor)
    return IncidentPage(incidents=[Incident.model_validate(i) for i in page.items], next_cursor=page.next_cursor)


@router.get("/{incident_id}", response_model=IncidentWithAlerts)
def get_incident(incident_id: str, data: Reader) -> IncidentWithAlerts:
    incident = data.get(INCIDENTS, incident_id, what="incident")
    alerts = []
    for alert_id in incident["alerts"]:
        alert = data.store.get_alert(alert_id)
        if data.visible(alert):
            alerts.append(Alert.model_validate(alert))
    return IncidentWithAlerts(incident=Incident.model_validate(incident), alerts=alerts)
