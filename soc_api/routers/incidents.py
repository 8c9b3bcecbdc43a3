"""Incidents: several alerts of one agency merged into one, listed and read with their alerts."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from soc_api.data import Data, data_for
from soc_api.models import Alert, Incident, IncidentPage, IncidentWithAlerts, JoinRequest, MergeRequest
from soc_api.settings import JSON_BODY_CAP

router = APIRouter(prefix="/incidents", tags=["incidents"], max_body_size=JSON_BODY_CAP)
Reader = Annotated[Data, Depends(data_for("analyst", "network_admin", "agency", "national_centre"))]
Triage = Annotated[Data, Depends(data_for("analyst", "network_admin"))]


@router.post("", response_model=Incident, status_code=201)
def merge(body: MergeRequest, data: Triage) -> Incident:
    """Merge alerts (all of one agency, none already in an incident) into a new incident."""
    return Incident.model_validate(data.merge_alerts(body.ids, body.title))


@router.get("", response_model=IncidentPage)
def list_incidents(
    data: Reader,
    agency: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=1024)] = None,
) -> IncidentPage:
    page = data.incidents(agency=agency, limit=limit, cursor=cursor)
    return IncidentPage(incidents=[Incident.model_validate(i) for i in page.items], next_cursor=page.next_cursor)


@router.post("/{incident_id}/alerts", response_model=Incident)
def join(incident_id: str, body: JoinRequest, data: Triage) -> Incident:
    """Add alerts (of the incident's agency, none already in an incident) to an existing incident."""
    return Incident.model_validate(data.join_incident(incident_id, body.ids))


@router.get("/{incident_id}", response_model=IncidentWithAlerts)
def get_incident(incident_id: str, data: Reader) -> IncidentWithAlerts:
    incident, alerts = data.incident(incident_id)
    return IncidentWithAlerts(incident=Incident.model_validate(incident),
                              alerts=[Alert.model_validate(a) for a in alerts])
