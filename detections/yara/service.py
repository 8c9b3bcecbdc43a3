"""The suite's YARA engine: settings, the rule pack (from the cache when it can), and one scanner for everyone.

Settings come from the ``yara:`` section of the configuration when it has one (``detections/yara/settings.py``),
else its defaults. ``engine_for(settings)`` builds the engine once per process, on first use. As an extension
(``detections.yara.service`` in ``extensions``) it is built at start, so the first upload does not wait for a
compile, is provided as the service ``yara``, and scans the payloads of ingested events.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path
from typing import Any

from detections.yara.cache import load_pack
from detections.yara.compiler import RulePack
from detections.yara.ecs import match_to_ecs
from detections.yara.model import ScanResult
from detections.yara.scanner import ScanOptions, Scanner
from detections.yara.settings import YaraSettings
from soc import metrics

log = logging.getLogger(__name__)


def yara_settings(settings: Any) -> YaraSettings:
    section = getattr(settings, "yara", None)
    if section is None:
        found = YaraSettings()
    elif isinstance(section, YaraSettings):
        found = section
    else:
        found = YaraSettings.model_validate(section.model_dump() if hasattr(section, "model_dump") else section)
    if found.cache_dir is None:
        data_dir = Path(getattr(settings, "data_dir", "data"))
        found = found.model_copy(update={"cache_dir": str(data_dir / "cache" / "yara")})
    return found


class YaraEngine:
    def __init__(self, config: YaraSettings, pack: RulePack):
        self.config = config
        self.pack = pack
        self.scanner = Scanner(pack, ScanOptions(timeout_seconds=config.timeout_seconds,
                                                 max_file_bytes=config.max_file_bytes, threads=config.threads))

    def scan_payload(self, data: bytes, name: str, *, path: str = "", extra: dict[str, Any] | None = None,
                     timestamp: str | None = None) -> tuple[ScanResult, list[dict]]:
        """Scan a payload the collectors extracted (an HTTP body, a file carried over FTP/SMB) and return the result
        with one ECS alert document per match; ``extra`` adds the traffic context (source, destination, url...)."""
        result = self.scanner.scan_bytes(data, name, path=path)
        return result, [match_to_ecs(m, timestamp=timestamp, extra=extra) for m in result.matches]

    @classmethod
    def build(cls, config: YaraSettings) -> "YaraEngine":
        pack = load_pack(config.rule_dirs, cache_dir=config.cache_dir)
        metrics.RULES_LOADED.labels(kind="yara").set(pack.rule_count)
        metrics.RULES_FAILED.labels(kind="yara").set(pack.failed)
        for health in pack.health:
            if health.status == "failed":
                log.warning("YARA rule file %s failed to load: %s", health.path, health.reason)
        log.info("YARA: %d rules from %d files (%d files failed), %s in %.2fs", pack.rule_count, pack.loaded,
                 pack.failed, "from the cache" if pack.origin == "cache" else "compiled", pack.seconds)
        return cls(config, pack)


_engines: dict[str, YaraEngine] = {}
_lock = threading.Lock()


def engine_for(settings: Any) -> YaraEngine:
    """The engine for these settings, built once per process (concurrent first callers wait for one build)."""
    config = yara_settings(settings)
    key = config.model_dump_json()
    with _lock:
        engine = _engines.get(key)
        if engine is None:
            engine = _engines[key] = YaraEngine.build(config)
        return engine


class YaraService:
    """The suite's YARA engine, built in the background at start: ``engine`` is None until it is ready."""

    def __init__(self, settings: Any):
        self.settings = settings
        self.engine: YaraEngine | None = None

    def engine_now(self) -> YaraEngine:
        """The engine, built here and now if the background build has not finished (payload scanning)."""
        return self.engine or engine_for(self.settings)


def register(services, registry) -> None:
    """Suite extension: build the engine in the background at start, provide it as the service ``yara``, and scan
    the payloads of ingested events (HTTP bodies, FTP files) through detection (matcher.py)."""
    from detections.yara.matcher import YaraPayloadMatcher

    service = YaraService(services.settings)
    registry.provide("yara", service)
    registry.matcher(YaraPayloadMatcher(service.engine_now))

    async def warm_up() -> None:
        try:
            service.engine = await asyncio.get_running_loop().run_in_executor(None, engine_for, services.settings)
        except Exception:  # no rules must not stop the suite; the API answers 503 with the reason
            log.exception("the YARA engine could not be built")

    registry.run_in_background(warm_up)
