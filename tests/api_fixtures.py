"""Shared by the API tests: a running suite (real HTTP on loopback) with a private copy of the sample inventory,
the indicator and API extensions on, keys for every role, and two agencies' data."""

from __future__ import annotations

import json
import shutil
from contextlib import contextmanager
from pathlib import Path

import httpx

from suite.runtime import Suite, SuiteThread
from soc_api.keys import create_key
from soc_api.settings import ApiSettings
from tests.conftest import PROJECT, make_settings

AGENCY_A = "so-tttt"  # Department of Information and Communications
AGENCY_B = "so-yt"  # Department of Health
EXTENSIONS = "[detections.indicators.extension, soc_api.extension]"


def alert_doc(i: int, agency: str, *, severity: str = "high", status: str = "new", rule: str = "r1",
              minute: int | None = None, marker: str = "", entities: dict | None = None) -> dict:
    ts = f"2026-11-22T10:{(i if minute is None else minute) % 60:02d}:00.000Z"
    return {"id": f"{agency}-a{i}", "fingerprint": f"{agency}-f{i}", "status": status, "severity": severity,
            "summary": f"alert {i} of {agency} {marker}".strip(), "organization": {"id": agency},
            "rule": {"id": rule, "name": rule, "title": f"Rule {rule}", "type": "rule", "tags": ["attack.t1110"]},
            "first_seen": ts, "last_seen": ts, "created": ts, "count": 1, "evidence": [f"{agency}-e{i}"],
            "labels": {"rule.id": rule, "organization.id": agency}, "entities": entities or {"ip": [f"198.51.100.{i}"]},
            "threat": {"tactic": ["credential-access"], "technique": ["T1110"]},
            "history": [{"at": ts, "by": "detections", "action": "raised"}]}


def event_doc(i: int, agency: str, marker: str = "") -> dict:
    return {"@timestamp": f"2026-11-22T10:{i % 60:02d}:00.000Z",
            "event": {"id": f"{agency}-e{i}", "original": f"sshd: Failed password for root from 198.51.100.{i} "
                                                          f"{marker}".strip(), "dataset": "system.auth"},
            "source": {"ip": f"198.51.100.{i}", "port": 40000 + i}, "user": {"name": "root"},
            "organization": {"id": agency}, "host": {"name": f"{agency}-host"}}


@contextmanager
def running_suite(tmp_path: Path, *, store_url: str | None = None, index_prefix: str | None = None,
                  api: ApiSettings | None = None, extensions: str = EXTENSIONS, rule_dirs: list | None = None,
                  **env):
    tmp_path.mkdir(parents=True, exist_ok=True)
    inventory = tmp_path / "province.yaml"
    shutil.copy(PROJECT / "inventory" / "sample" / "province.yaml", inventory)
    # The suite's own Linux rules only: these tests are about the API, not about every rule folder.
    api = api or ApiSettings()
    settings = make_settings(tmp_path, store_url=store_url, index_prefix=index_prefix,
                             sections={"soc_api": api.model_dump(mode="json")},
                             SOC__INVENTORY__PATH=str(inventory), SOC__EXTENSIONS=extensions,
                             SOC__DETECTIONS__SIGMA_RULE_DIRS=json.dumps([str(d) for d in rule_dirs or [
                                 PROJECT / "detections" / "rules" / "linux"]]), **env)
    runner = SuiteThread(Suite(settings)).start()
    try:
        yield runner.suite
    finally:
        runner.stop()


def keys_for(store, agencies=(AGENCY_A, AGENCY_B)) -> dict[str, str]:
    keys = {role: create_key(store, role, name=f"{role} test key")[0]
            for role in ("admin", "analyst", "network_admin", "national_centre")}
    for agency in agencies:
        keys[agency] = create_key(store, "agency", agency=agency, name=f"{agency} test key")[0]
    return keys


def client_for(suite) -> httpx.Client:
    return httpx.Client(base_url=f"http://127.0.0.1:{suite.bound['api']}", timeout=30)


def call(client: httpx.Client, method: str, path: str, key: str | None = None, **kwargs) -> httpx.Response:
    headers = dict(kwargs.pop("headers", {}) or {})
    if key:
        headers["X-API-Key"] = key
    return client.request(method, path, headers=headers, **kwargs)
