"""Configuration: YAML plus environment overrides; a bad file stops with the file, the key and the reason."""

from __future__ import annotations

import subprocess
import sys

import pytest

from soc.config import ConfigError
from suite.settings import load_settings


def test_defaults_are_valid_and_env_overrides_them(tmp_path):
    settings = load_settings(path=None, environ={"SOC__SYSLOG__TCP_PORT": "6514",
                                                 "SOC__STORE__URL": "opensearch://127.0.0.1:9250"})
    assert settings.syslog.tcp_port == 6514 and settings.syslog.udp_port == 5514
    assert settings.store.url == "opensearch://127.0.0.1:9250"
    assert settings.api.host == "127.0.0.1" and settings.api.port == 8000


def test_file_then_environment(tmp_path):
    path = tmp_path / "soc.yaml"
    path.write_text("syslog:\n  tcp_port: 7000\n  udp_port: 7001\napi:\n  port: 9000\n")
    settings = load_settings(path, environ={"SOC__API__PORT": "9100"})
    assert (settings.syslog.tcp_port, settings.syslog.udp_port, settings.api.port) == (7000, 7001, 9100)
    assert str(path) in settings.source and "api.port" in settings.source


@pytest.mark.parametrize("text, key, reason", [
    ("syslog:\n  tcp_port: 99999\n", "syslog.tcp_port", "less than or equal to 65535"),
    ("syslog:\n  tcp_prot: 5514\n", "syslog.tcp_prot", "unknown key"),
    ("store:\n  url: mysql://x\n", "store.url", "must start with sqlite://"),
    ("store:\n  hosts: [\"http://10.0.0.2:9200\"]\n", "store.hosts", "is not a node address: write host:port"),
    ("store:\n  hosts: [\"10.0.0.2\"]\n", "store.hosts", "is not a node address"),
    ("store:\n  replicas:\n    events: true\n", "store.replicas.events", "is not a replica count"),
    ("store:\n  replicas:\n    alerts: -1\n", "store.replicas.alerts", "is not a replica count"),
    ("store:\n  replicas:\n    logs: 1\n", "store.replicas.logs", "unknown key"),
    ("timezone: Mars/Olympus\n", "timezone", "unknown time zone"),
    ("api: [1, 2]\n", "api", "valid dictionary"),
    ("syslog:\n  tcp_port: 1\n bad_indent: 2\n", "", "not valid YAML: line 3"),
    ("- just\n- a list\n", "", "mapping of sections"),
    ("syslog:\n  tls_client_certificates: sometimes\n", "syslog.tls_client_certificates",
     "'none', 'optional' or 'required'"),
    ("syslog:\n  tls_cert_file: /etc/soc/tls.pem\n", "syslog", "tls_cert_file and tls_key_file go together"),
    ("syslog:\n  tls_cert_file: a.pem\n  tls_key_file: a.key\n  tls_client_certificates: required\n", "syslog",
     "set tls_ca_file"),
])
def test_bad_files_name_file_key_and_reason(tmp_path, text, key, reason):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    assert info.value.source == str(path)
    assert info.value.key == key
    assert reason in info.value.reason


def test_bad_environment_override_is_named():
    with pytest.raises(ConfigError) as info:
        load_settings(path=None, environ={"SOC__API__PORT": "eighty"})
    assert info.value.key == "api.port" and "environment (api.port)" in info.value.source


def test_the_suite_refuses_to_start_on_a_bad_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("syslog:\n  tcp_port: -1\n")
    result = subprocess.run([sys.executable, "-m", "suite.cli", "serve", "--config", str(path)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2
    assert str(path) in result.stderr and "syslog.tcp_port" in result.stderr and "greater than or equal" in \
        result.stderr


def test_the_example_lists_every_key_with_its_default():
    """config/soc.example.yaml is written by hand: this keeps it in step with Settings (paths aside, which the
    example gives relative to the project and the defaults resolve to absolute ones)."""
    import yaml

    from soc.config import PROJECT_ROOT
    from suite.settings import Settings

    example = yaml.safe_load((PROJECT_ROOT / "config" / "soc.example.yaml").read_text(encoding="utf-8"))
    defaults = Settings().model_dump(mode="json")

    def same(a, b, where=""):
        if isinstance(a, dict) and isinstance(b, dict):
            assert set(a) == set(b), f"{where or '(top)'}: only in the example {sorted(set(a) - set(b))}, " \
                                     f"only in Settings {sorted(set(b) - set(a))}"
            for key in a:
                same(a[key], b[key], f"{where}{key}.")
        elif a != b:
            resolved = [str((PROJECT_ROOT / p).resolve()) for p in a] if isinstance(a, list) else \
                str((PROJECT_ROOT / str(a)).resolve())
            assert resolved == b, f"{where.rstrip('.')}: example {a!r}, default {b!r}"

    same(example, defaults)
