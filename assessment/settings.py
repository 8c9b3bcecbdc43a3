"""The ``assessment`` section of the configuration (suite/settings.py), validated with it."""

from __future__ import annotations

import ipaddress
from typing import Any

from pydantic import Field, field_validator

from soc.config import Section

# The narrowest an allowed network may be written: an allow-list of /0 (or anything wider than these) is refused.
MIN_PREFIX_V4 = 8
MIN_PREFIX_V6 = 32
PORT_SPEC = r"^[0-9]{1,5}(-[0-9]{1,5})?(,[0-9]{1,5}(-[0-9]{1,5})?)*$"


class DueDays(Section):
    """Days from a finding's first sighting to its due date, per severity (null: no due date)."""

    critical: int | None = Field(default=7, ge=1)
    high: int | None = Field(default=30, ge=1)
    medium: int | None = Field(default=90, ge=1)
    low: int | None = Field(default=180, ge=1)
    informational: int | None = None


class AssessmentSettings(Section):
    # The schedule: every asset the allow-list admits is assessed once per interval (off until enabled).
    schedule_enabled: bool = False
    interval_hours: float = Field(default=168.0, gt=0)  # weekly
    check_interval_seconds: float = Field(default=300.0, gt=0)
    # Only inventory addresses inside these networks are ever scanned; empty: nothing is. Never wider than /8 (/32).
    allowed_networks: list[str] = []
    # When set, only assets of these agencies (organization.id) are scanned.
    allowed_agencies: list[str] = []
    # Ports nmap probes on each address, beside the ones the inventory lists for the asset (nmap's -p syntax).
    ports: str = Field(default="1-1024,1433,1521,2049,2375,2376,3306,3389,5432,5900,5985,5986,6379,8000,8008,8080,"
                               "8081,8443,8888,9000,9200,9300,11211,27017", pattern=PORT_SPEC)
    # Rate limits: targets (addresses) started per minute across every run, nmap's packets a second, and sslyze's
    # connections at once to one server. ssh-audit's connection-rate test is always skipped.
    max_targets_per_minute: int = Field(default=6, ge=1, le=600)
    nmap_max_rate: int = Field(default=100, ge=1, le=10000)
    tls_max_connections: int = Field(default=2, ge=1, le=10)
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    nmap_timeout_seconds: float = Field(default=600.0, gt=0)
    nmap_path: str = "nmap"
    checks: list[str] = ["ports", "tls", "headers", "ssh", "vulnerabilities"]
    due_days: DueDays = DueDays()

    @field_validator("allowed_networks")
    @classmethod
    def _networks(cls, values: list[str]) -> list[str]:
        out = []
        for value in values:
            if not isinstance(value, str) or "%" in value or value.strip() != value:
                raise ValueError(f"{str(value)[:60]!r} is not a network")
            net = ipaddress.ip_network(value, strict=False)
            least = MIN_PREFIX_V4 if net.version == 4 else MIN_PREFIX_V6
            if net.prefixlen < least:
                raise ValueError(f"{value}: an allowed network may be at most a /{least}; list the agencies' "
                                 "networks instead")
            out.append(str(net))
        return out

    @field_validator("checks")
    @classmethod
    def _checks(cls, values: list[str]) -> list[str]:
        known = {"ports", "tls", "headers", "ssh", "vulnerabilities"}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown checks {unknown}; known: {sorted(known)}")
        return values

    source: str = Field(default="(defaults)", exclude=True)


def assessment_settings(main_settings: Any = None) -> AssessmentSettings:
    section = getattr(main_settings, "assessment", None) if main_settings is not None else None
    return section if isinstance(section, AssessmentSettings) else AssessmentSettings()
