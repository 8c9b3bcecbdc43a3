"""Reading a configuration: one YAML file plus environment overrides, validated against a model, with errors that
say the file, the key and the reason. The shared basics of configuration only: each package defines its own section
model beside its code, and the composition root (suite/settings.py) puts them together into the one settings model.

Environment overrides use ``SOC__SECTION__KEY=value`` (double underscores separate levels), e.g.
``SOC__STORE__URL=opensearch://127.0.0.1:9250``. Values are parsed as YAML scalars, so ``SOC__SYSLOG__TCP_PORT=6514``
becomes an integer.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from soc.errors import ConfigError  # noqa: F401  (raised here, defined apart so the CLI can catch it cheaply)

ENV_PREFIX = "SOC__"
DEFAULT_CONFIG_PATHS = ("soc.yaml", "config/soc.yaml")
PROJECT_ROOT = Path(__file__).resolve().parent.parent
M = TypeVar("M", bound=BaseModel)


class Section(BaseModel):
    """A section of the configuration: an unknown key is an error, never ignored."""

    model_config = ConfigDict(extra="forbid")


# --- retention and snapshots of the store (soc/storage/retention.py, soc/storage/snapshots.py) -------------------
# A period is a whole number of minutes, hours or days ("30m", "12h", "365d"); null keeps that data class forever.
PERIOD = r"^[1-9][0-9]{0,5}[mhd]$"
# Snapshot and repository names become an engine's URL path segment and, on SQLite, a file name: lower-case letters,
# digits, ".", "_" and "-", starting with a letter or digit, so no name can be a path, "..", or an option.
SNAPSHOT_NAME = r"^[a-z0-9][a-z0-9._-]{0,99}$"
_LOCATION_PART = re.compile(r"^[A-Za-z0-9._-]{1,255}$")


def check_snapshot_name(value: str, what: str = "snapshot name") -> str:
    if not isinstance(value, str) or not re.match(SNAPSHOT_NAME, value) or ".." in value:
        raise ValueError(f"{what} {str(value)[:120]!r} is not valid: use 1 to 100 lower-case letters, digits, '.', "
                         "'_' or '-', starting with a letter or digit")
    return value


def check_location(value: str) -> str:
    """A snapshot location: a relative folder (under the engine's path.repo, or the suite's data_dir for SQLite)
    whose every part is plain (letters, digits, '.', '_', '-'; never '.' or '..'), or an absolute path with no '.' or
    '..' part. What is refused is refused before anything touches a disk."""
    if not isinstance(value, str) or not value or len(value) > 4096:
        raise ValueError("a snapshot location must be a folder path of 1 to 4096 characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in value) or "\\" in value:
        raise ValueError(f"snapshot location {value[:120]!r} holds a control character or a backslash")
    absolute = value.startswith("/")
    parts = [p for p in value.split("/") if p] if absolute else value.split("/")
    if not parts or any(p in (".", "..") for p in parts):
        raise ValueError(f"snapshot location {value[:120]!r} may not have a '.' or '..' part")
    if not absolute and not all(_LOCATION_PART.match(p) for p in parts):
        raise ValueError(f"snapshot location {value[:120]!r}: a relative location is made of plain folder names "
                         "(letters, digits, '.', '_', '-') separated by '/'")
    return value


def _period(value: Any) -> Any:
    # A bare number in the file means days (retention is thought of in days); "30m" and "12h" are for tests and
    # short-lived data.
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value}d"
    if isinstance(value, str) and value.strip().lower() in ("", "forever", "none", "null"):
        return None
    return value


def _check_period(value: str | None) -> str | None:
    if value is not None and not re.match(PERIOD, value):
        raise ValueError(f"{value[:60]!r} is not a period: write a whole number and m, h or d (\"90d\"), or null "
                         "to keep forever")
    return value


Period = Annotated[str | None, BeforeValidator(_period), AfterValidator(_check_period)]


class RetentionConfig(Section):
    """How long each data class is kept: the suite deletes older data every ``every_minutes`` (and on
    `soc store retention --apply`); where the engine has index lifecycle management (OpenSearch ISM, Elasticsearch
    ILM) a policy installed by the suite deletes expired daily event indices too, even while the suite is down."""

    events: Period = "365d"  # by @timestamp
    alerts: Period = "730d"  # by last_seen: an alert still being seen is kept
    dead_letters: Period = "90d"  # by received
    audit: Period = "1095d"  # the API's and the playbooks' audit records
    indicators: Period = "365d"  # indicators by valid_until (one without an end is kept), sightings by last_seen
    every_minutes: float | None = Field(default=60.0, gt=0)  # None: only `soc store retention --apply` deletes
    lifecycle_policies: bool = True  # install the ISM / ILM policy where the engine has the plugin


class SnapshotConfig(Section):
    """Backups: the engine's filesystem snapshot repository, or SQLite online-backup files."""

    repository: str = "soc-backups"  # the engine's repository name (unused by SQLite)
    # Engines: a folder under the nodes' path.repo (relative to it, or absolute inside it). SQLite: a folder under
    # data_dir (or absolute) that holds one <name>.db file per snapshot.
    location: str = "snapshots"
    every_hours: float | None = Field(default=None, gt=0)  # scheduled snapshots; None: only `soc store snapshot`
    keep: int = Field(default=7, ge=1, le=10_000)  # scheduled snapshots kept, the oldest deleted first

    @field_validator("repository")
    @classmethod
    def _repository(cls, value: str) -> str:
        return check_snapshot_name(value, "snapshot repository name")

    @field_validator("location")
    @classmethod
    def _location(cls, value: str) -> str:
        return check_location(value)


# --- a store on a search-engine cluster: its nodes and the replica copies of each data class ---------------------
# One more node of the store's cluster: "host:port" (an IPv6 address in brackets, "[fd00::5]:9200"); the scheme,
# credentials and certificates are the store URL's.
_HOST_PORT = re.compile(r"^(?:\[[0-9A-Fa-f:.]{2,45}\]|[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?):([0-9]{1,5})$")


def check_host(value: Any) -> str:
    match = _HOST_PORT.match(value) if isinstance(value, str) else None
    if not match or not 1 <= int(match.group(1)) <= 65535:
        raise ValueError(f"{str(value)[:120]!r} is not a node address: write host:port (\"10.10.0.12:9200\", "
                         "\"[fd00::12]:9200\"); the scheme and credentials are the store URL's")
    return value


def _replicas(value: Any) -> Any:
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    # bool is an int to Python: "true" must not quietly mean one copy
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
        raise ValueError(f"{str(value)[:40]!r} is not a replica count: write \"auto\" or a whole number from 0 to 100")
    return value


Replicas = Annotated[int | str, BeforeValidator(_replicas)]


class ReplicasConfig(Section):
    """Replica copies of each data class's indices on an OpenSearch / Elasticsearch cluster: a copy on another node
    is what lets the cluster lose a node without losing data or stopping writes. "auto" is one copy while the cluster
    has two data nodes or more and none on a single node, kept so by the engine as nodes join and leave
    (index.auto_expand_replicas 0-1); a number is that many copies (more than the data nodes less one leave the
    cluster yellow). The indices of each class are listed in soc/storage/search.py. The embedded store has none."""

    events: Replicas = "auto"
    alerts: Replicas = "auto"
    dead_letters: Replicas = "auto"
    audit: Replicas = "auto"  # the audit trail and every other state document (incidents, playbook runs, users, keys)
    indicators: Replicas = "auto"  # indicators and their sightings


class StoreConfig(Section):
    # sqlite:///path/to/soc.db (embedded default), opensearch://host:port, elasticsearch://host:port;
    # add "+https" to the scheme for TLS (opensearch+https://host:9200).
    url: str = "sqlite:///data/soc.db"
    # More nodes of the same cluster besides the URL's ("host:port"): the client spreads requests over them all and
    # moves to the next when one fails, so losing the node the URL names does not stop writes or reads.
    hosts: list[str] = []
    # Ask the cluster for its nodes (at start, and when a node fails) and use those too. Off by default: a node
    # publishes the address it binds, which is not always one the suite can reach (NAT, containers).
    sniff: bool = False
    replicas: ReplicasConfig = ReplicasConfig()  # replica copies per data class (cluster stores)
    index_prefix: str = Field(default="soc", pattern=r"^[a-z0-9][a-z0-9_-]*$")
    username: str | None = None
    password_env: str | None = None  # the name of the environment variable holding the password
    ca_file: str | None = None
    verify_certs: bool = True
    timeout_seconds: float = 30.0
    # gzip between the suite and the engine: worth its CPU over a slow link, a cost on the data centre's LAN.
    compress: bool = False
    retention: RetentionConfig = RetentionConfig()  # how long each data class is kept
    snapshots: SnapshotConfig = SnapshotConfig()  # backups (`soc store snapshot` / `restore`), scheduled or not

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        return [check_host(v) for v in value]

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        scheme = value.split("://", 1)[0] if "://" in value else ""
        if scheme.split("+")[0] not in {"sqlite", "opensearch", "elasticsearch"}:
            raise ValueError("store.url must start with sqlite://, opensearch:// or elasticsearch://")
        return value


def apply_env(data: dict[str, Any], environ: dict[str, str]) -> list[str]:
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


def read_config(path: str | os.PathLike | None, environ: dict[str, str] | None = None) -> tuple[dict[str, Any], str]:
    """The file's sections (or the first default file that exists, or none) with the environment's overrides
    applied, and where they came from: ``(data, source)``."""
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
    overridden = apply_env(data, environ)
    if overridden:
        source += " + environment (" + ", ".join(sorted(overridden)) + ")"
    return data, source


def validate(model: type[M], data: dict[str, Any], source: str) -> M:
    """``data`` as ``model``, or ConfigError with the source, the first key at fault and the reason."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        reason = first["msg"]
        if first["type"] == "extra_forbidden":
            reason = "unknown key"
        raise ConfigError(source, key, reason) from exc
