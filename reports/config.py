"""The ``reports`` section of the configuration: the monthly (and quarterly) schedule and where reports are kept.

soc/config.py owns the Settings model; until it carries a ``reports`` section, ``reports_config(settings)`` gives
these defaults.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator


class ReportsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    schedule_enabled: bool = True  # generate reports on the given day of each month
    day_of_month: int = Field(default=1, ge=1, le=28)
    hour: int = Field(default=6, ge=0, le=23)  # local time (settings.timezone)
    quarterly: bool = True  # also the previous quarter, on the first run of January, April, July and October
    languages: list[str] = ["vi", "en"]
    formats: list[str] = ["pdf", "html"]
    agencies: list[str] = []  # empty: every agency that has an asset in the inventory
    province_rollup: bool = True
    output_dir: str = "reports"  # relative paths are under data_dir
    gap_hours_min: float = Field(default=4.0, gt=0)
    check_interval_seconds: float = Field(default=600.0, gt=0)

    @field_validator("languages")
    @classmethod
    def _languages(cls, value: list[str]) -> list[str]:
        bad = [v for v in value if v not in ("vi", "en")]
        if bad:
            raise ValueError(f"unknown report language(s) {', '.join(bad)}: use vi and/or en")
        return value

    @field_validator("formats")
    @classmethod
    def _formats(cls, value: list[str]) -> list[str]:
        bad = [v for v in value if v not in ("pdf", "html")]
        if bad:
            raise ValueError(f"unknown report format(s) {', '.join(bad)}: use pdf and/or html")
        return value


def reports_config(settings) -> ReportsConfig:
    found = getattr(settings, "reports", None)
    if isinstance(found, ReportsConfig):
        return found
    if isinstance(found, dict):
        return ReportsConfig.model_validate(found)
    if found is not None and hasattr(found, "model_dump"):
        return ReportsConfig.model_validate(found.model_dump())
    return ReportsConfig()


def output_dir(settings, config: ReportsConfig):
    from pathlib import Path

    path = Path(config.output_dir)
    return path if path.is_absolute() else Path(settings.data_dir) / path
