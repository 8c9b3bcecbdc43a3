"""Posture for the province's leadership and the national centre (an agency key gets its own agency's part), and the
record of pushes of the same document to the national centre."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from soc_api.data import Data, data_for
from soc_api.posture import build_posture

router = APIRouter(tags=["posture"])
Reader = Annotated[Data, Depends(data_for("analyst", "network_admin", "agency", "national_centre"))]
Leadership = Annotated[Data, Depends(data_for("national_centre", "analyst"))]


@router.get("/posture", response_model=dict[str, Any])
def posture(data: Reader, agency: Annotated[str | None, Query(max_length=64)] = None) -> dict[str, Any]:
    return build_posture(data, agency)


@router.get("/posture/pushes", response_model=list[dict[str, Any]])
def pushes(data: Leadership, limit: Annotated[int, Query(ge=1, le=500)] = 50) -> list[dict[str, Any]]:
    """The latest pushes to the national centre: when, how many attempts, accepted or the last error."""
    return data.posture_pushes(limit)
