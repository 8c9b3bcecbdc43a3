"""Posture for the province's leadership and the national centre (an agency key gets its own agency's part), and the
record of pushes of the same document to the national centre."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from soc_api.data import Data, data_for, invalid
from soc_api.posture import build_posture
from soc_api.posture_layers import LayersPeriodError

router = APIRouter(tags=["posture"])
Reader = Annotated[Data, Depends(data_for("analyst", "network_admin", "agency", "national_centre"))]
Leadership = Annotated[Data, Depends(data_for("national_centre", "analyst"))]


@router.get("/posture", response_model=dict[str, Any])
def posture(data: Reader, agency: Annotated[str | None, Query(max_length=64)] = None,
            month: Annotated[str | None, Query(pattern=r"^[0-9]{4}-(0[1-9]|1[0-2])$")] = None) -> dict[str, Any]:
    """``month`` (YYYY-MM): the month the four layers and the KPI are for (default: the current one so far)."""
    try:
        return build_posture(data, agency, month=month)
    except LayersPeriodError as exc:
        raise invalid("query.month", str(exc), month) from exc


@router.get("/posture/pushes", response_model=list[dict[str, Any]])
def pushes(data: Leadership, limit: Annotated[int, Query(ge=1, le=500)] = 50) -> list[dict[str, Any]]:
    """The latest pushes to the national centre: when, how many attempts, accepted or the last error."""
    return data.posture_pushes(limit)
