"""The inventory's section of the configuration."""

from __future__ import annotations

from pydantic import Field

from soc.config import PROJECT_ROOT, Section


class InventoryConfig(Section):
    path: str = str(PROJECT_ROOT / "inventory" / "sample" / "province.yaml")
    # How often the file is checked for changes; a changed file is used by the next enrichment, plan and probe.
    # 0 turns the check off (edits through the API are taken at once either way).
    reload_interval_seconds: float = Field(default=5.0, ge=0)
