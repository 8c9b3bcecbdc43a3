"""The detections' section of the configuration."""

from __future__ import annotations

from pydantic import Field

from soc.config import PROJECT_ROOT, Section


class DetectionsConfig(Section):
    sigma_rule_dirs: list[str] = [str(PROJECT_ROOT / "detections" / "rules")]
    # Repeats of an alert (same fingerprint) within this many seconds update it instead of raising a new one.
    dedup_window_seconds: int = Field(default=3600, ge=1)
    max_evidence_per_alert: int = Field(default=200, ge=1)
    sigma_pipeline: str = "soc"  # detections/sigma/pipelines.py: Sigma field names -> the suite's fields
    # %placeholder% values for |expand rules, over those derived from the inventory (known_cdcs, dns_servers, ...)
    placeholders: dict[str, list[str]] = {}
    # Parsed rules are cached here between starts (relative to data_dir); "" disables the cache.
    rule_cache_dir: str = "cache/sigma"
