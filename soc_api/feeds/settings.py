"""The feeds' section of the configuration, ``soc_api.feeds``: a list of feeds, each with a kind, a location, an
interval and its defaults (confidence, TLP, lifetime, decay), and where sightings go back to. Secrets are names of
environment variables, never values."""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import Field, field_validator

from soc.config import Section

Tlp = Literal["clear", "green", "amber", "amber+strict", "red"]


class DecayConfig(Section):
    # linear: c0 * (1 - t / lifetime_seconds); exponential: c0 * 2^(-t / half_life_seconds); t = time since the feed
    # last contained the indicator (detections/indicators/decay.py). Below ``floor`` an indicator stops matching.
    model: Literal["none", "linear", "exponential"] = "linear"
    lifetime_seconds: float | None = Field(default=None, gt=0)  # None: the feed's expire_after_seconds
    half_life_seconds: float = Field(default=7 * 86400.0, gt=0)
    floor: int = Field(default=20, ge=0, le=100)


class SightingsBackConfig(Section):
    # The TAXII 2.1 collection (…/{api-root}/collections/{id}/) that takes this source's sightings.
    collection_url: str
    username: str | None = None  # None: the feed's
    password_env: str | None = None  # None: the feed's
    # The highest TLP a sighting sent there may carry; one above it (a TLP:RED indicator's) is withheld, counted.
    max_tlp: Tlp = "amber"
    # The marking of what the province says (at least this, the indicator's own TLP when stricter).
    tlp: Tlp = "green"
    # false: every sighting is the province's (where_sighted_refs = the SOC); true: one identity per agency.
    share_agencies: bool = False
    interval_seconds: float = Field(default=300.0, gt=0)
    batch_size: int = Field(default=100, ge=1, le=10_000)  # Sightings per envelope
    max_per_run: int = Field(default=2000, ge=1)  # indicators whose sightings go in one run; the rest next run


class FeedConfig(Section):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")  # the indicators' source
    kind: Literal["taxii", "stix", "misp", "plain"]
    # taxii: the collection URL; others: an http(s) URL, a file:// URL or a path.
    location: str
    enabled: bool = True
    interval_seconds: float = Field(default=3600.0, gt=0)
    default_confidence: int = Field(default=50, ge=0, le=100)
    default_tlp: Tlp = "amber"
    # Expiry of an indicator that brings none: this long after the feed last contained it.
    expire_after_seconds: float = Field(default=30 * 86400.0, gt=0)
    decay: DecayConfig = DecayConfig()
    value_type: Literal["ipv4", "ipv6", "domain", "url", "md5", "sha1", "sha256", "sha512"] | None = None  # plain
    # Fetching: per request timeout, size cap (after decompression), retries of a failed request.
    timeout_seconds: float = Field(default=30.0, gt=0)
    # The whole fetch (every redirect, retry and read together): past it the fetch stops (a server that drips
    # bytes never reaches the per-read timeout). None: 4 x timeout_seconds.
    deadline_seconds: float | None = Field(default=None, gt=0)
    max_bytes: int = Field(default=32 * 1_048_576, ge=1)
    max_indicators: int = Field(default=100_000, ge=1)
    retries: int = Field(default=2, ge=0, le=10)
    # A failed pull is tried again after retry_initial_seconds, doubling up to retry_max_seconds (never beyond the
    # interval).
    retry_initial_seconds: float = Field(default=60.0, gt=0)
    retry_max_seconds: float = Field(default=3600.0, gt=0)
    verify_tls: bool = True
    username: str | None = None  # taxii: HTTP Basic user
    password_env: str | None = None  # taxii: HTTP Basic password (or API key) from this variable
    auth_header: str | None = None  # URL feeds: a header (MISP: Authorization) ...
    auth_env: str | None = None  # ... whose value is in this variable
    # URL feeds: query parameters filled from environment variables (parameter -> variable), e.g. {apikey:
    # SOC_OTX_KEY}; the value is never in the configuration, the state, the API or the logs.
    query_env: dict[str, str] = {}
    # Redirects (at most 3, followed by the fetcher itself): to the same host, or to one of these; same scheme or
    # http -> https only. The auth header goes only to the location's own origin.
    redirect_hosts: list[str] = []
    # Loopback, private (RFC 1918, CGNAT, ULA), link-local (169.254/16, the cloud metadata address) and reserved
    # addresses are refused as a fetch target (the location or a redirect, by every address its name resolves to)
    # unless inside one of these networks: a feed on the province's own network (or a test on loopback) names it
    # here, e.g. [10.20.0.0/24] or [127.0.0.0/8]. Public addresses need no entry.
    allow_networks: list[str] = []

    @field_validator("allow_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for cidr in value:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError as exc:
                raise ValueError(f"allow_networks: {cidr!r} is not an address or a network") from exc
        return value
    page_size: int = Field(default=500, ge=1, le=10_000)  # taxii
    sightings: SightingsBackConfig | None = None  # taxii: post STIX Sightings back to the source


class FeedsConfig(Section):
    feeds: list[FeedConfig] = []
    # Expired and decayed indicators leave matching at this interval; kept as expired records (history) for
    # expired_retention_days, then deleted (None: kept).
    sweep_interval_seconds: float = Field(default=60.0, gt=0)
    expired_retention_days: float | None = Field(default=180.0, gt=0)
    state_collection: str = "feed_state"
