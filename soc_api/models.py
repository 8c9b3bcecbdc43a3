"""Response models of the API (what the OpenAPI document promises)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class Health(BaseModel):
    status: str
    store: dict[str, Any]
    rules_loaded: int
    rules_failed: int
    queue_depth: int


class AlertRule(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    name: str
    title: str
    type: str
    tags: list[str] = []


class Alert(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)
    id: str
    fingerprint: str
    rule: AlertRule
    severity: str
    status: str
    summary: str
    count: int
    first_seen: str
    last_seen: str
    labels: dict[str, Any]
    organization: dict[str, Any]
    entities: dict[str, list[str]]
    threat: dict[str, list[str]]
    evidence: list[str]


class AlertPage(BaseModel):
    alerts: list[Alert]
    next_cursor: str | None = None


class AlertWithEvidence(BaseModel):
    alert: Alert
    events: list[dict[str, Any]]
