"""Threat updates: the state of each indicator feed (``GET /feeds``) and the per-agency digest of what is new and
relevant (``GET /digest?since=...``; an agency key gets its own agency's). docs/threat-updates.md."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from soc.storage.base import DocumentQuery
from soc_api.data import Data, data_for, invalid, valid_time
from soc_api.feeds.fetch import redacted
from soc_api.digest import build_digest
from soc_api.settings import api_settings

router = APIRouter(tags=["threat updates"])
Reader = Annotated[Data, Depends(data_for("analyst", "network_admin", "agency", "national_centre"))]
Staff = Annotated[Data, Depends(data_for("analyst", "network_admin", "national_centre"))]


@router.get("/feeds", response_model=dict[str, Any])
def feeds(data: Staff) -> dict[str, Any]:
    """Each configured feed: kind, location (no credentials), status (ok, error, refused), last attempt and success,
    consecutive failures, next attempt, the last error, what the last pull loaded and refused (by reason), and what
    went back as sightings."""
    cfg = api_settings(data.suite).feeds
    states = {d["id"]: d for d in data.find(cfg.state_collection, DocumentQuery(limit=1000), agency_field=None).items}
    out = []
    for feed in cfg.feeds:
        state = {k: v for k, v in (states.get(feed.name) or {}).items() if k not in ("id", "sightings_sent_to")}
        out.append({"name": feed.name, "kind": feed.kind, "enabled": feed.enabled, "location": redacted(feed.location),
                    "interval_seconds": feed.interval_seconds, "status": "pending", **state,
                    "sightings_back": feed.sightings is not None})
    return {"feeds": out}


@router.get("/digest", response_model=dict[str, Any])
def digest(data: Reader, since: Annotated[str, Query(max_length=40, description="ISO 8601 time")],
           agency: Annotated[str | None, Query(max_length=64)] = None) -> dict[str, Any]:
    """What is new and relevant since ``since``: indicators new since then seen in the agency's traffic, and the
    indicators taken in since then per source."""
    since = valid_time(since, "since")
    if since is None:
        raise invalid("query.since", "since is required")
    return build_digest(data, since, agency)
