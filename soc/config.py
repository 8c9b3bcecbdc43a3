"""Configuration: one YAML file plus environment overrides, validated at start.

Environment overrides use ``SOC__SECTION__KEY=value`` (double underscores separate levels), e.g.
``SOC__STORE__URL=opensearch://127.0.0.1:9250``. Values are parsed as YAML scalars, so ``SOC__SYSLOG__TCP_PORT=6514``
becomes an integer. A bad file or override stops the suite with the file, the key and the reason.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from soc.errors import ConfigError  # noqa: F401  (raised here, defined apart so the CLI can catch it cheaply)

from collectors.monitoring_config import MonitoringConfig  # noqa: E402  (light modules: settings models only)
from playbooks.settings import PlaybookSettings  # noqa: E402
from reports.config import ReportsConfig  # noqa: E402
from detections.yara.settings import YaraSettings  # noqa: E402
from soc_api.settings import ApiSettings  # noqa: E402

ENV_PREFIX = "SOC__"
DEFAULT_CONFIG_PATHS = ("soc.yaml", "config/soc.yaml")
PROJECT_ROOT = Path(__file__).resolve().parent.parent


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StoreConfig(_Section):
    # sqlite:///path/to/soc.db (embedded default), opensearch://host:port, elasticsearch://host:port;
    # add "+https" to the scheme for TLS (opensearch+https://host:9200).
    url: str = "sqlite:///data/soc.db"
    index_prefix: str = Field(default="soc", pattern=r"^[a-z0-9][a-z0-9_-]*$")
    username: str | None = None
    password_env: str | None = None  # the name of the environment variable holding the password
    ca_file: str | None = None
    verify_certs: bool = True
    timeout_seconds: float = 30.0
    # gzip between the suite and the engine: worth its CPU over a slow link, a cost on the data centre's LAN.
    compress: bool = False

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        scheme = value.split("://", 1)[0] if "://" in value else ""
        if scheme.split("+")[0] not in {"sqlite", "opensearch", "elasticsearch"}:
            raise ValueError("store.url must start with sqlite://, opensearch:// or elasticsearch://")
        return value


class SyslogConfig(_Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    udp_port: int = Field(default=5514, ge=0, le=65535)
    tcp_port: int = Field(default=5514, ge=0, le=65535)
    max_line_bytes: int = Field(default=64 * 1024, ge=256)
    # A dead letter keeps at most this much of an oversized line's raw bytes, and says it was cut.
    dead_letter_max_bytes: int = Field(default=2 * 1024 * 1024, ge=1024)
    # Syslog over TLS (RFC 5425) on host:tls_port; it listens only when tls_cert_file and tls_key_file are set.
    tls_port: int = Field(default=6514, ge=0, le=65535)
    tls_cert_file: str | None = None  # the server's certificate chain (PEM)
    tls_key_file: str | None = None
    tls_ca_file: str | None = None  # CA(s) that sign client certificates (PEM); needed unless client certs are "none"
    # none: no client certificate asked; optional: verified when sent (it then names the sender); required: no
    # certificate from a trusted CA, no connection.
    tls_client_certificates: Literal["none", "optional", "required"] = "none"
    tls_handshake_timeout_seconds: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _keep_whole_lines(self) -> "SyslogConfig":
        if self.dead_letter_max_bytes < self.max_line_bytes:
            raise ValueError("dead_letter_max_bytes must be at least max_line_bytes")
        return self

    @model_validator(mode="after")
    def _tls_complete(self) -> "SyslogConfig":
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ValueError("tls_cert_file and tls_key_file go together: set both (TLS listener) or neither")
        if self.tls_cert_file and self.tls_client_certificates != "none" and not self.tls_ca_file:
            raise ValueError(f"tls_client_certificates is {self.tls_client_certificates!r}: set tls_ca_file to the "
                             "CA(s) that sign the senders' certificates")
        return self


class ApiConfig(_Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)


class InventoryConfig(_Section):
    path: str = str(PROJECT_ROOT / "inventory" / "sample" / "province.yaml")
    # How often the file is checked for changes; a changed file is used by the next enrichment, plan and probe.
    # 0 turns the check off (edits through the API are taken at once either way).
    reload_interval_seconds: float = Field(default=5.0, ge=0)


class DetectionsConfig(_Section):
    sigma_rule_dirs: list[str] = [str(PROJECT_ROOT / "detections" / "rules")]
    # Repeats of an alert (same fingerprint) within this many seconds update it instead of raising a new one.
    dedup_window_seconds: int = Field(default=3600, ge=1)
    max_evidence_per_alert: int = Field(default=200, ge=1)
    sigma_pipeline: str = "soc"  # detections/sigma/pipelines.py: Sigma field names -> the suite's fields
    # %placeholder% values for |expand rules, over those derived from the inventory (known_cdcs, dns_servers, ...)
    placeholders: dict[str, list[str]] = {}
    # Parsed rules are cached here between starts (relative to data_dir); "" disables the cache.
    rule_cache_dir: str = "cache/sigma"


class PipelineConfig(_Section):
    batch_size: int = Field(default=500, ge=1)
    flush_interval_seconds: float = Field(default=0.2, gt=0)
    # The disk spool between the sources and the pipeline (collectors/spool.py); relative paths are under data_dir.
    spool_dir: str = "spool"
    spool_max_bytes: int = Field(default=1 << 30, ge=64 * 1024)  # beyond this TCP is slowed, HTTP refused, UDP dropped
    spool_segment_bytes: int = Field(default=64 << 20, ge=64 * 1024)
    spool_sync_interval_seconds: float = Field(default=1.0, gt=0)  # fsync of what TCP/UDP wrote; HTTP syncs at once
    shutdown_drain_seconds: float = Field(default=10.0, ge=0)  # on stop, what is not stored by then waits in the spool
    # One JSON document (HTTP ingest, JSON lines, EVTX records): larger or deeper is a dead letter with the reason.
    json_max_bytes: int = Field(default=1_048_576, ge=1024)
    json_max_depth: int = Field(default=32, ge=2, le=200)
    # Processes that parse batches beside the suite's own (collectors/parse_workers.py): "auto" uses one per core (at
    # least one: only a worker can be stopped in the middle of a record). 0 parses in the suite's thread, where the
    # parse_timeout_seconds budget cannot be enforced.
    parse_workers: int | Literal["auto"] = "auto"
    # Time budget of one record in a parse worker: a record still being parsed after it becomes a dead letter
    # (reason parse_timeout) and its worker is killed and replaced; the batch's other records are parsed.
    parse_timeout_seconds: float = Field(default=2.0, gt=0, le=3600)

    def parse_worker_count(self) -> int:
        if self.parse_workers == "auto":
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
            return max(1, min(cores, 8))
        return max(0, min(int(self.parse_workers), 64))


class Settings(_Section):
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
    # Modules with attach(suite) that run inside the suite: playbook triggers and expiries (runs on core devices
    # wait for a network admin), log-source health, probes (off until monitoring.probes.enabled), report schedules,
    # indicator matching on ingest, TAXII pulls and the posture push (both off until configured).
    extensions: list[str] = ["playbooks.service", "collectors.monitoring", "reports.service",
                             "detections.indicators.extension", "soc_api.extension"]

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


def _apply_env(data: dict[str, Any], environ: dict[str, str]) -> list[str]:
    applied = []
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        path = [p.lower() for p in name[len(ENV_PREFIX):].split("__") if p]
        if not path:
            continue
        node = data
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        try:
            node[path[-1]] = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            node[path[-1]] = raw
        applied.append(".".join(path))
    return applied


def load_settings(path: str | os.PathLike | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Read the YAML file (or the first default that exists), apply environment overrides, validate."""
    environ = dict(os.environ if environ is None else environ)
    if path is None:
        path = environ.get("SOC_CONFIG") or next((p for p in DEFAULT_CONFIG_PATHS if Path(p).is_file()), None)
    data: dict[str, Any] = {}
    source = "(defaults)"
    if path is not None:
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(source, "", f"cannot read the file: {exc.strerror or exc}") from exc
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
            raise ConfigError(source, "", f"not valid YAML: {where}{getattr(exc, 'problem', exc)}") from exc
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(source, "", "the file must hold a mapping of sections (store, syslog, api, ...)")
        data = loaded
    overridden = _apply_env(data, environ)
    if overridden:
        source += " + environment (" + ", ".join(sorted(overridden)) + ")"
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        reason = first["msg"]
        if first["type"] == "extra_forbidden":
            reason = "unknown key"
        raise ConfigError(source, key, reason) from exc
    settings.source = source
    return settings
