"""Reading a configuration: one YAML file plus environment overrides, validated against a model, with errors that
say the file, the key and the reason. The shared basics of configuration only: each package defines its own section
model beside its code, and the composition root (suite/settings.py) puts them together into the one settings model.

Environment overrides use ``SOC__SECTION__KEY=value`` (double underscores separate levels), e.g.
``SOC__STORE__URL=opensearch://127.0.0.1:9250``. Values are parsed as YAML scalars, so ``SOC__SYSLOG__TCP_PORT=6514``
becomes an integer.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from soc.errors import ConfigError  # noqa: F401  (raised here, defined apart so the CLI can catch it cheaply)

ENV_PREFIX = "SOC__"
DEFAULT_CONFIG_PATHS = ("soc.yaml", "config/soc.yaml")
PROJECT_ROOT = Path(__file__).resolve().parent.parent
M = TypeVar("M", bound=BaseModel)


class Section(BaseModel):
    """A section of the configuration: an unknown key is an error, never ignored."""

    model_config = ConfigDict(extra="forbid")


class StoreConfig(Section):
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
