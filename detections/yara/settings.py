"""YARA settings: the ``yara`` section of the configuration. A light module (pydantic only), so that soc/config.py
can import it without loading yara-python.

    yara:
      rule_dirs: [../shared/corpus/yara-signature-base/yara]   # folders (or files) of *.yar / *.yara
      cache_dir: null              # compiled-rules cache; null: <data_dir>/cache/yara
      timeout_seconds: 60          # per scanned file or payload
      max_file_bytes: 268435456    # larger files are skipped, with the reason
      max_upload_bytes: 33554432   # POST /api/v1/yara/scan answers 413 above this
      threads: 2                   # concurrent scans (folder walks, API uploads)
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_RULE_DIRS = [str(PROJECT_ROOT.parent / "shared" / "corpus" / "yara-signature-base" / "yara")]


class YaraSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rule_dirs: list[str] = Field(default_factory=lambda: list(DEFAULT_RULE_DIRS))
    cache_dir: str | None = None  # default <data_dir>/cache/yara
    timeout_seconds: int = Field(default=60, ge=1)
    max_file_bytes: int = Field(default=256 * 1024 * 1024, ge=1)
    max_upload_bytes: int = Field(default=32 * 1024 * 1024, ge=1)
    threads: int = Field(default=2, ge=1, le=64)
