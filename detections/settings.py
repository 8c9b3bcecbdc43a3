"""The detections' section of the configuration."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from soc.config import PROJECT_ROOT, Section
from soc.vocabulary import Severity

RuleStatus = Literal["stable", "test", "experimental"]  # deprecated and unsupported rules of a pack never run


class LogsourceFilter(Section):
    """A log source a rule may be for: each key given must equal the rule's (one left out matches anything)."""

    product: str | None = None
    category: str | None = None
    service: str | None = None


class RuleSelectionConfig(Section):
    """Which rules of an installed rule pack run (detections/selection.py). The suite's own rules
    (``sigma_rule_dirs``) always run unless excluded by id, or unless ``own_rules: selected``. Deprecated and
    unsupported rules of a pack never run (copy one into your own rules folder to run it anyway)."""

    statuses: list[RuleStatus] = ["stable", "test"]
    min_level: Severity = Severity.medium  # informational < low < medium < high < critical
    logsources: list[LogsourceFilter] = []  # a pack rule must be for one of these (none: any log source)
    logsources_exclude: list[LogsourceFilter] = []
    tags_include: list[str] = []  # a pack rule must carry one of these (none: any); "attack.t1059*" is a prefix
    tags_exclude: list[str] = []
    ids_include: list[str] = []  # rule ids or names that run whatever their status, level, log source and tags
    ids_exclude: list[str] = []  # rule ids or names that never run, the suite's own included
    own_rules: Literal["all", "selected"] = "all"  # "selected": the suite's own rules are selected like a pack's


class RulePacksConfig(Section):
    """Rule packs installed as files (`soc rules install`, detections/packs.py), with the limits an archive must keep:
    it is input from outside, refused whole when it breaks one."""

    dir: str = "rules/packs"  # relative to data_dir: one folder per installed version and the current pointer
    keep_versions: int = Field(default=3, ge=2)  # versions kept on disk (the current one included)
    # true: refuse an archive with neither a PATH.sha256 file beside it nor --sha256; "argument": only --sha256 will
    # do (a checksum file that travels with the archive shows it was not damaged, not that nobody changed both).
    require_checksum: bool | Literal["argument"] = False
    max_archive_bytes: int = Field(default=64 * 1024 * 1024, ge=1)  # the archive file as it arrives
    max_members: int = Field(default=50_000, ge=1)  # entries in the archive (files, folders, anything)
    max_total_bytes: int = Field(default=128 * 1024 * 1024, ge=1)  # the archive's content, uncompressed
    max_file_bytes: int = Field(default=1024 * 1024, ge=1)  # one rule file, uncompressed


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
    rule_packs: RulePacksConfig = RulePacksConfig()
    rule_selection: RuleSelectionConfig = RuleSelectionConfig()
    # Per-rule exclusions of known-benign events (detections/exceptions.py); relative to data_dir unless absolute.
    rule_exceptions_file: str | None = None
    # How often a running suite looks for a new current rule pack and a changed exceptions file; 0 turns it off.
    rules_reload_interval_seconds: float = Field(default=5.0, ge=0)

    @field_validator("rule_exceptions_file")
    @classmethod
    def _no_empty_path(cls, value: str | None) -> str | None:
        return value or None
