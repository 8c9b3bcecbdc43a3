"""The README's flow with real processes: `soc serve` (what `make run` starts), `soc demo` from another shell, then a
stop and a restart: every stored event and alert is still there. Run on both backends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from suite.settings import load_settings
from soc.storage import AlertQuery, EventQuery, open_store
from soc_api.keys import create_key
from tests.conftest import free_port

SOC = [sys.executable, "-m", "suite.cli"]


def _config(tmp_path: Path, backend_settings) -> Path:
    path = tmp_path / "soc.yaml"
    path.write_text(yaml.safe_dump({
        "data_dir": str(tmp_path),
        "store": {"url": backend_settings.store.url, "index_prefix": backend_settings.store.index_prefix},
        "syslog": {"host": "127.0.0.1", "udp_port": free_port(), "tcp_port": free_port()},
        "api": {"host": "127.0.0.1", "port": free_port()},
    }))
    return path


def _env() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith("SOC__")}


class Served:
    def __init__(self, config: Path, log: Path):
        self.config, self.settings = config, load_settings(config, environ={})
        self.log = log.open("ab")
        self.proc = subprocess.Popen(SOC + ["serve", "--config", str(config)], stdout=self.log, stderr=self.log,
                                     env=_env())
        url = f"http://127.0.0.1:{self.settings.api.port}/api/v1/health"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, log.read_text()
            try:
                if httpx.get(url, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError("soc serve did not come up: " + log.read_text())

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(timeout=60) == 0
        self.log.close()


def test_serve_demo_stop_restart(tmp_path, backend_settings):
    config = _config(tmp_path, backend_settings)
    log = tmp_path / "serve.log"
    served = Served(config, log)
    try:
        demo = subprocess.run(SOC + ["demo", "--config", str(config)], capture_output=True, text=True, timeout=180,
                              env=_env())
        assert demo.returncode == 0, demo.stdout + demo.stderr
        assert "using the running suite" in demo.stdout
        assert "SSH Brute Force: count=8" in demo.stdout and "SSH Login After Brute Force" in demo.stdout
        assert "agency=so-tttt" in demo.stdout
    finally:
        served.stop()
    settings = served.settings
    store = open_store(settings)
    store.refresh()
    events_before = store.search_events(EventQuery(limit=1000))
    alerts_before = store.list_alerts(AlertQuery(limit=1000))
    key, _ = create_key(store, "analyst")
    store.close()
    assert len(events_before) == 9
    # The successful root login from outside the government network is an alert of its own, beside the two.
    assert sorted(a["rule"]["name"] for a in alerts_before) == [
        "soc_admin_login_from_outside", "soc_ssh_brute_force", "soc_ssh_login_after_brute_force"]

    again = Served(config, log)  # a restart of the suite on the same store
    try:
        api = f"http://127.0.0.1:{settings.api.port}/api/v1"
        listed = httpx.get(f"{api}/alerts", headers={"X-API-Key": key}).json()["alerts"]
        assert sorted(a["id"] for a in listed) == sorted(a["id"] for a in alerts_before)
        brute = next(a for a in listed if a["rule"]["name"] == "soc_ssh_brute_force")
        detail = httpx.get(f"{api}/alerts/{brute['id']}", headers={"X-API-Key": key}).json()
        assert len(detail["events"]) == 8 and all(e["event"]["outcome"] == "failure" for e in detail["events"])
    finally:
        again.stop()
    store = open_store(settings)
    try:
        assert [e["event"]["id"] for e in store.search_events(EventQuery(limit=1000))] == \
            [e["event"]["id"] for e in events_before]
    finally:
        store.close()


def test_demo_on_its_own_opensearch_suite(tmp_path, opensearch_prefix):
    url, prefix = opensearch_prefix
    env = _env() | {"SOC__STORE__INDEX_PREFIX": prefix, "SOC__DATA_DIR": str(tmp_path),
                    "SOC__API__PORT": str(free_port())}
    demo = subprocess.run(SOC + ["demo", "--store", url], capture_output=True, text=True, timeout=180, env=env,
                          cwd=tmp_path)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert f"starting a suite of its own on {url}" in demo.stdout
    assert "SSH Brute Force: count=8" in demo.stdout and "SSH Login After Brute Force" in demo.stdout
