"""Request and response models of the API (what the OpenAPI document promises)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from soc.vocabulary import ANALYST_STATUSES, CloseReason

# The statuses an analyst may set, as plain strings (a subset of soc.vocabulary.AlertStatus).
AnalystStatus = Literal[tuple(s.value for s in ANALYST_STATUSES)]  # type: ignore[valid-type]
Role = Literal["admin", "analyst", "network_admin", "agency", "national_centre"]
Tlp = Literal["clear", "green", "amber", "amber+strict", "red"]
IndicatorType = Literal["ipv4", "ipv6", "domain", "url", "md5", "sha1", "sha256", "sha512"]
Id = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")
_Strict = ConfigDict(extra="forbid")


class Health(BaseModel):
    status: str
    store: dict[str, Any]
    rules_loaded: int
    rules_failed: int
    queue_depth: int


class UnknownSender(BaseModel):
    address: str  # the socket address ("" when only a certificate names it)
    certificate: str  # the verified TLS client certificate's name, "" without one
    transport: str
    count: int
    first_seen: str
    last_seen: str


class AlertRule(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    name: str
    title: str
    type: str
    tags: list[str] = []


class Note(BaseModel):
    id: str
    at: str
    by: str
    text: str


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
    assignee: str | None = None
    notes: list[Note] = []
    history: list[dict[str, Any]] = []
    incident: str | None = None
    group: dict[str, Any] | None = None


class AlertPage(BaseModel):
    alerts: list[Alert]
    next_cursor: str | None = None
    complete: bool = Field(default=True, description="false when a filter the store cannot apply itself stopped "
                                                     "after scanning its limit of alerts: narrow the filter")


class AlertWithEvidence(BaseModel):
    alert: Alert
    events: list[dict[str, Any]]


class AlertGroup(BaseModel):
    key: str
    labels: dict[str, Any]
    count: int
    open: int
    worst_severity: str
    last_seen: str
    alerts: list[str]


class AlertGroups(BaseModel):
    groups: list[AlertGroup]
    complete: bool


class StatusChange(BaseModel):
    model_config = _Strict
    status: AnalystStatus
    reason: CloseReason | None = Field(default=None, description="required to close")
    comment: str | None = Field(default=None, max_length=2000)


class Assignment(BaseModel):
    model_config = _Strict
    assignee: str | None = Field(default=None, max_length=128, description="a user id; null unassigns")


class NoteIn(BaseModel):
    model_config = _Strict
    text: str = Field(min_length=1, max_length=10_000)


class BulkAction(BaseModel):
    model_config = _Strict
    ids: list[str] = Field(min_length=1, max_length=500)
    action: Literal["acknowledge", "assign", "status", "note"]
    assignee: str | None = Field(default=None, max_length=128)
    status: AnalystStatus | None = None
    reason: CloseReason | None = None
    comment: str | None = Field(default=None, max_length=2000)
    text: str | None = Field(default=None, max_length=10_000)


class BulkResult(BaseModel):
    done: list[str]
    failed: dict[str, str]


class MergeRequest(BaseModel):
    model_config = _Strict
    ids: list[str] = Field(min_length=2, max_length=200)
    title: str | None = Field(default=None, max_length=300)


class JoinRequest(BaseModel):
    model_config = _Strict
    ids: list[str] = Field(min_length=1, max_length=200)


class Incident(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    title: str
    organization: dict[str, Any]
    alerts: list[str]
    primary: str
    severity: str
    created_at: str
    created_by: str


class IncidentPage(BaseModel):
    incidents: list[Incident]
    next_cursor: str | None = None


class IncidentWithAlerts(BaseModel):
    incident: Incident
    alerts: list[Alert]


# --- silences and inhibition -----------------------------------------------------------------------------------
class MatcherIn(BaseModel):
    model_config = _Strict
    name: str = Field(min_length=1, max_length=128)
    op: Literal["=", "!=", "=~", "!~"] = "="
    value: str = Field(max_length=512)


class SilenceIn(BaseModel):
    model_config = _Strict
    matchers: list[MatcherIn] = Field(min_length=1, max_length=20)
    starts_at: str | None = Field(default=None, max_length=40)
    ends_at: str = Field(max_length=40)
    comment: str = Field(min_length=1, max_length=2000)


class Silence(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    matchers: list[dict[str, str]]
    starts_at: str
    ends_at: str
    created_by: str
    comment: str
    state: str


class InhibitRuleIn(BaseModel):
    model_config = _Strict
    source_matchers: list[MatcherIn] = Field(min_length=1, max_length=20)
    target_matchers: list[MatcherIn] = Field(min_length=1, max_length=20)
    equal: list[str] = Field(default=[], max_length=20)
    comment: str = Field(default="", max_length=2000)


class InhibitRule(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    source_matchers: list[dict[str, str]]
    target_matchers: list[dict[str, str]]
    equal: list[str]
    comment: str = ""


# --- events ----------------------------------------------------------------------------------------------------
class EventPage(BaseModel):
    events: list[dict[str, Any]]
    next_cursor: str | None = None


# --- users and keys --------------------------------------------------------------------------------------------
class UserIn(BaseModel):
    model_config = _Strict
    id: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")
    role: Role
    agency: str | None = Field(default=None, max_length=64)
    name: str = Field(default="", max_length=200)
    email: str = Field(default="", max_length=200)


class User(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    role: str
    agency: str | None = None
    name: str = ""
    disabled: bool = False


class UserUpdate(BaseModel):
    model_config = _Strict
    disabled: bool


class KeyIn(BaseModel):
    model_config = _Strict
    name: str = Field(default="", max_length=200)
    expires_in_days: float | None = Field(default=90, gt=0, le=3650)


class KeyRecord(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    role: str
    agency: str | None = None
    name: str
    user: str | None = None
    created: str
    expires: str | None = None
    revoked: bool = False


class NewKey(BaseModel):
    key: str = Field(description="the API key itself: shown this once, never again")
    record: KeyRecord


class Me(BaseModel):
    key_id: str
    role: str
    agency: str | None
    name: str
    user: str | None


# --- audit -----------------------------------------------------------------------------------------------------
class AuditPage(BaseModel):
    records: list[dict[str, Any]]
    next_cursor: str | None = None


# --- indicators ------------------------------------------------------------------------------------------------
class ObservableIn(BaseModel):
    model_config = _Strict
    type: IndicatorType
    value: str = Field(min_length=1, max_length=4096)


class IndicatorIn(BaseModel):
    model_config = _Strict
    observables: list[ObservableIn] = Field(min_length=1, max_length=100)
    source: str = Field(default="soc", min_length=1, max_length=200)
    tlp: Tlp = "amber"
    confidence: int = Field(default=50, ge=0, le=100)
    valid_from: str | None = Field(default=None, max_length=40)
    valid_until: str | None = Field(default=None, max_length=40)
    name: str | None = Field(default=None, max_length=300)
    description: str = Field(default="", max_length=5000)
    labels: list[str] = Field(default=[], max_length=50)


class Indicator(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    name: str
    observables: list[dict[str, str]]
    source: str
    tlp: str
    confidence: int
    valid_from: str
    valid_until: str | None = None
    revoked: bool = False


class IndicatorPage(BaseModel):
    indicators: list[Indicator]
    next_cursor: str | None = None


class SightingPage(BaseModel):
    sightings: list[dict[str, Any]]
    next_cursor: str | None = None


# --- rules -----------------------------------------------------------------------------------------------------
class RuleHealthOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    title: str
    engine: str
    status: str
    reason: str = ""
    last_fired: str | None = None


class RulesHealth(BaseModel):
    loaded: int
    failed: int
    rules: list[RuleHealthOut]


class DeadLetterOut(BaseModel):
    id: str
    received: str
    source: str  # who sent it: "udp://10.20.10.10:514", a file and line for `soc ingest`
    reason: str  # "<kind>: <detail>", kind as in soc_dead_letters_total{reason}
    raw_base64: str  # the bytes as received (up to syslog.dead_letter_max_bytes)
    raw_size: int
    preview: str  # the first 4 KiB as text, undecodable bytes replaced
    truncated: bool  # the message was longer than what is kept


class DeadLetters(BaseModel):
    total: int
    dead_letters: list[DeadLetterOut]
