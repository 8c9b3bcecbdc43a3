"""Playbook settings: SMTP and webhook defaults, safety limits, locks, timings.

The ``playbooks`` section of the one configuration (suite/settings.py), validated with it: a bad value stops the
suite with the file, the key and the reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from soc.config import PROJECT_ROOT, Section


class SmtpSettings(Section):
    host: str | None = None  # no host: e-mail steps are skipped and say why
    port: int = Field(default=25, ge=1, le=65535)
    starttls: bool = False
    ssl: bool = False
    username: str | None = None
    password_env: str | None = None  # the name of the variable holding the password
    sender: str = "soc@localhost"
    timeout_seconds: float = Field(default=10.0, gt=0)


class WebhookSettings(Section):
    url: str | None = None  # the default for notify steps that name none
    timeout_seconds: float = Field(default=5.0, gt=0)
    token_env: str | None = None  # sent as "Authorization: Bearer <token>" when set


class PlaybookSettings(Section):
    library_dirs: list[str] = [str(PROJECT_ROOT / "playbooks" / "library")]
    auto_trigger: bool = True  # alerts start the playbooks whose triggers match them
    # Added to the inventory's never_block; no playbook can override either.
    never_block: list[str] = []
    # The suite's own addresses (the SOC itself) are never blocked; loopback always is on this list.
    soc_addresses: list[str] = []
    # The widest block allowed: /24 for IPv4 (256 addresses), /64 for IPv6.
    max_block_prefix_v4: int = Field(default=24, ge=8, le=32)
    max_block_prefix_v6: int = Field(default=64, ge=16, le=128)
    default_ttl_seconds: int = Field(default=3600, ge=1)
    max_ttl_seconds: int = Field(default=30 * 86400, ge=1)
    lock_timeout_seconds: float = Field(default=30.0, gt=0)
    lock_dir: str | None = None  # default: <data_dir>/locks
    command_timeout_seconds: float = Field(default=20.0, gt=0)
    connect_timeout_seconds: float = Field(default=10.0, gt=0)
    connection_idle_seconds: float = Field(default=300.0, gt=0)  # pooled sessions idle longer are closed
    # The SSH host keys of the managed devices (OpenSSH known_hosts format), always checked: a device whose key is
    # not recorded here is not contacted (`soc devices trust NAME` records it). Default: <data_dir>/known_hosts.
    known_hosts_file: str | None = None
    expiry_interval_seconds: float = Field(default=5.0, gt=0)
    workers: int = Field(default=4, ge=1, le=64)
    smtp: SmtpSettings = SmtpSettings()
    webhook: WebhookSettings = WebhookSettings()

    @field_validator("never_block", "soc_addresses")
    @classmethod
    def _networks(cls, values: list[str]) -> list[str]:
        import ipaddress

        return [str(ipaddress.ip_network(v, strict=False)) for v in values]

    source: str = Field(default="(defaults)", exclude=True)


def known_hosts_path(settings: PlaybookSettings, data_dir: str | Path = "data") -> Path:
    """The known-hosts file the suite checks device host keys against: the configured one, else the data folder's."""
    if settings.known_hosts_file:
        return Path(settings.known_hosts_file).expanduser()
    return Path(data_dir) / "known_hosts"


def load_playbook_settings(main_settings: Any = None) -> PlaybookSettings:
    """The configuration's ``playbooks`` section (defaults without a configuration), with an unset
    ``known_hosts_file`` made the data folder's ``known_hosts``."""
    section = getattr(main_settings, "playbooks", None) if main_settings is not None else None
    settings = section.model_copy(deep=True) if isinstance(section, PlaybookSettings) else PlaybookSettings()
    data_dir = getattr(main_settings, "data_dir", None) if main_settings is not None else None
    if data_dir is not None and not settings.known_hosts_file:
        settings.known_hosts_file = str(known_hosts_path(settings, data_dir))
    return settings
