"""The one settings model: every package's section, from one YAML file plus ``SOC__SECTION__KEY`` environment
overrides (soc/config.py reads them), validated at start. A bad file or override stops the suite with the file, the
key and the reason."""

from __future__ import annotations

import os
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator

from assessment.settings import AssessmentSettings
from collectors.monitoring_config import MonitoringConfig
from collectors.settings import PipelineConfig, SyslogConfig
from detections.settings import DetectionsConfig
from detections.yara.settings import YaraSettings
from inventory.settings import InventoryConfig
from playbooks.settings import PlaybookSettings
from reports.config import ReportsConfig
from soc.config import Section, StoreConfig, read_config, validate
from soc_api.settings import ApiConfig, ApiSettings
from soc_api.field_cases.settings import FieldCaseSettings
from tiers.settings import TiersSettings


class Settings(Section):
    timezone: str = "Asia/Ho_Chi_Minh"  # year-less syslog timestamps are read in this zone
    data_dir: str = "data"
    log_level: str = "INFO"
    store: StoreConfig = StoreConfig()
    syslog: SyslogConfig = SyslogConfig()
    api: ApiConfig = ApiConfig()
    inventory: InventoryConfig = InventoryConfig()
    detections: DetectionsConfig = DetectionsConfig()
    pipeline: PipelineConfig = PipelineConfig()
    # Each package's own settings, defined beside its code.
    playbooks: PlaybookSettings = PlaybookSettings()
    reports: ReportsConfig = ReportsConfig()
    monitoring: MonitoringConfig = MonitoringConfig()
    yara: YaraSettings = YaraSettings()
    soc_api: ApiSettings = ApiSettings()  # rate limits, body caps, TAXII pulls, national-centre posture push
    assessment: AssessmentSettings = AssessmentSettings()  # periodic assessment (assessment/, docs/assessment.md)
    field_cases: FieldCaseSettings = FieldCaseSettings()  # cases the field kit forwards: trusted kit keys, caps
    tiers: TiersSettings = TiersSettings()  # forwarding to an upstream suite, taking from downstream ones (docs/tiers.md)
    # Modules with register(services, registry) (soc/plugins.py) that run inside the suite: playbook triggers and
    # expiries (runs on core devices wait for a network admin), log-source health, probes (off until
    # monitoring.probes.enabled), report schedules, indicator matching on ingest, TAXII pulls and the posture push
    # (both off until configured), the store's upkeep (retention, scheduled snapshots: soc/storage/schedule.py).
    extensions: list[str] = ["playbooks.service", "collectors.monitoring", "reports.service",
                             "detections.indicators.extension", "soc_api.extension", "soc.storage.schedule",
                             "assessment.service", "tiers.extension"]

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    source: str = Field(default="(defaults)", exclude=True)


def load_settings(path: str | os.PathLike | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Read the YAML file (or ``$SOC_CONFIG``, or the first default that exists), apply environment overrides,
    validate."""
    data, source = read_config(path, environ)
    settings = validate(Settings, data, source)
    settings.source = source
    return settings
