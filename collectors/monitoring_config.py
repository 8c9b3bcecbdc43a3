"""The ``monitoring`` section of the configuration (probes, log-source health, the suite's own health).

Kept apart from collectors/monitoring.py so that soc/config.py can add it to Settings without importing the
monitoring machinery; until it does, ``monitoring_config(settings)`` gives these defaults.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProbesConfig(_Section):
    enabled: bool = False  # probes send traffic to the inventory's addresses: only when asked to
    interval_seconds: float = Field(default=60.0, gt=0)
    timeout_seconds: float = Field(default=5.0, gt=0)
    concurrency: int = Field(default=50, ge=1)
    icmp: bool = True  # ICMP echo where the process may open ICMP sockets; reported "not_permitted" otherwise
    store_events: bool = True


class SourceHealthConfig(_Section):
    enabled: bool = True
    check_interval_seconds: float = Field(default=60.0, gt=0)
    window_seconds: float = Field(default=900.0, gt=0)
    baseline_halflife_seconds: float = Field(default=6 * 3600.0, gt=0)
    drop_ratio: float = Field(default=0.2, gt=0, lt=1)
    min_baseline_per_minute: float = Field(default=1.0, ge=0)
    warmup_seconds: float = Field(default=3600.0, ge=0)
    grace_seconds: float = Field(default=3600.0, ge=0)
    silent_after_seconds: dict[str, float] = {}  # per log source name; defaults in log_source_table.py
    alert_never_reported: bool = True
    persist_interval_seconds: float = Field(default=300.0, gt=0)


class SelfMonitorConfig(_Section):
    enabled: bool = True
    refresh_seconds: float = Field(default=15.0, gt=0)
    playbook_window_seconds: float = Field(default=86400.0, gt=0)


class MonitoringConfig(_Section):
    probes: ProbesConfig = ProbesConfig()
    source_health: SourceHealthConfig = SourceHealthConfig()
    suite: SelfMonitorConfig = SelfMonitorConfig()


def monitoring_config(settings) -> MonitoringConfig:
    found = getattr(settings, "monitoring", None)
    if isinstance(found, MonitoringConfig):
        return found
    if isinstance(found, dict):
        return MonitoringConfig.model_validate(found)
    if found is not None and hasattr(found, "model_dump"):
        return MonitoringConfig.model_validate(found.model_dump())
    return MonitoringConfig()
