"""The ``tiers`` section of the settings: the link to an upstream suite (off by default) and what the suite takes
from downstream suites."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from soc.config import Section


class EventFilter(Section):
    """With ``events: filtered``: an event goes up when it matches any of these."""

    min_severity: int | None = Field(default=None, ge=0, le=1000)  # event.severity at least this
    categories: list[str] = []  # any of these event.category values (authentication, intrusion_detection, ...)
    outcomes: list[str] = []  # any of these event.outcome values (failure, ...)
    evidence: bool = True  # the events an alert rests on go up with the alert, whatever the filter says


class UpstreamLink(Section):
    url: str | None = None  # the upstream suite's API, e.g. https://soc.province.example:8000; none: no forwarding
    key_env: str | None = None  # the environment variable holding the downstream key the upstream gave this suite
    key_file: str | None = None  # or a file holding it (0600)
    ca_file: str | None = None  # the CA that signed the upstream's certificate (default: the system's)
    client_cert_file: str | None = None  # mutual TLS: this suite's certificate and key
    client_key_file: str | None = None
    events: Literal["all", "filtered", "none"] = "all"
    event_filter: EventFilter = EventFilter()
    spool_dir: str = "upstream"  # the outbox, relative to data_dir
    # Events waiting beyond this are dropped, oldest and lowest-value first (counted); alerts, their changes and the
    # agencies are never dropped.
    spool_max_bytes: int = Field(default=1 << 30, ge=1 << 16)
    batch_max_events: int = Field(default=2000, ge=1, le=50_000)
    batch_max_bytes: int = Field(default=4 << 20, ge=1 << 12, le=64 << 20)
    interval_seconds: float = Field(default=1.0, gt=0)  # how often an idle sender looks for work and changes
    timeout_seconds: float = Field(default=20.0, gt=0)
    retry_max_seconds: float = Field(default=30.0, gt=0)  # the longest wait between two tries while it fails
    status_every_seconds: float = Field(default=10.0, gt=0)  # how often the backlog and lag are reported upstream

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.rstrip("/")
        if not value.startswith(("https://", "http://")):
            raise ValueError("the upstream url must start with https:// (or http:// on loopback for tests)")
        return value

    @model_validator(mode="after")
    def _key_or_certificate(self) -> "UpstreamLink":
        if self.url and not (self.key_env or self.key_file):
            raise ValueError("an upstream link needs key_env or key_file: the key decides whose data this is upstream")
        if bool(self.client_cert_file) != bool(self.client_key_file):
            raise ValueError("client_cert_file and client_key_file go together")
        return self


class ReceiveSettings(Section):
    max_body_bytes: int = Field(default=32 << 20, ge=1 << 12)  # one forwarded batch
    max_line_bytes: int = Field(default=1 << 20, ge=1 << 10)  # one forwarded event
    # Rules (ids or titles) this suite runs over what downstream suites forward: its correlations across tiers
    # (the same address at several cities). Each downstream already ran its own rules on its events.
    rules: list[str] = []


class TiersSettings(Section):
    upstream: UpstreamLink = UpstreamLink()
    receive: ReceiveSettings = ReceiveSettings()
