"""Attacks on the assessment's scope (docs/security.md, section 12): a scan is only ever of an inventory address
the configuration allows. Hostile targets go through the real paths — the API (an analyst's POST /assessments on a
running suite) and the `soc assess run` command — and each is refused with a clear error before any tool runs: an
inventory address outside the allowed networks, an asset of an agency that is not allowed, an address the inventory
does not have, a host name, an option-looking value (``-oN FILE``), a network (``0.0.0.0/0``), a scope id, an
IPv4-mapped address, padded text. An allow-list of /0 is refused at start."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from assessment import nmap as nmap_module
from assessment import runner
from assessment.findings import RUNS
from assessment.nmap import ToolError
from assessment.scope import ScopeRefused, check_allowed, resolve_targets
from assessment.settings import AssessmentSettings
from soc.errors import ConfigError
from soc.storage.base import DocumentQuery
from tests.api_fixtures import AGENCY_A, call, client_for, keys_for, running_suite
from tests.conftest import PROJECT, make_settings

ALLOWED = {"SOC__ASSESSMENT__ALLOWED_NETWORKS": json.dumps(["10.20.10.0/24"]),
           "SOC__ASSESSMENT__ALLOWED_AGENCIES": json.dumps([AGENCY_A])}


def hostile(tmp_path) -> list[dict]:
    trap = tmp_path / "x"
    return [
        {"address": "10.0.10.5"},  # an inventory asset (the DMZ WAF) outside the allowed networks
        {"address": "192.0.2.1"},  # in no inventory
        {"address": "so-tttt-web-01"},  # a host name
        {"address": f"-oN {trap}"},  # an nmap option
        {"address": f"-oN{trap}"},
        {"address": "0.0.0.0/0"},  # the whole Internet
        {"address": "10.20.10.0/24"},  # a network, even an allowed one
        {"address": "10.20.10.10%eth0"},  # a scope id
        {"address": "::ffff:10.20.10.10"},  # an IPv4-mapped address
        {"address": " 10.20.10.10"},
        {"address": "10.20.10.10\n-iL /etc/passwd"},
        {"asset": f"-oN {trap}"},
        {"asset": "dc-waf-01"},  # an inventory asset outside the allowed networks and agencies
        {"agency": "dc"},  # an agency that is not allowed
        {"agency": "so-tttt", "address": "10.0.10.5"},
    ]


@pytest.fixture
def tools_called(monkeypatch):
    """Every call that would reach nmap is recorded (and stopped): the refusals must come before it."""
    calls = []

    def scan(settings, address, expected):
        calls.append(address)
        raise ToolError("the test stops every scan")

    monkeypatch.setattr(nmap_module, "scan", scan)
    return calls


def test_the_api_refuses_every_target_outside_the_allowed_inventory(tmp_path, tools_called):
    with running_suite(tmp_path / "suite", extensions="[soc_api.extension, assessment.service]", **ALLOWED) as suite:
        keys = keys_for(suite.store)
        with client_for(suite) as client:
            for body in hostile(tmp_path):
                answer = call(client, "POST", "/api/v1/assessments", keys["analyst"], json=body)
                # 403 with the reason; 422 only for a value longer than any address or name (the body's limits)
                assert answer.status_code in (403, 422), (body, answer.status_code, answer.text)
                if answer.status_code == 422:
                    assert "at most" in answer.text, answer.text
                else:
                    assert answer.json()["detail"].startswith("refused: "), answer.text
            # An agency key may not start scans at all, even of its own assets.
            answer = call(client, "POST", "/api/v1/assessments", keys[AGENCY_A], json={"agency": AGENCY_A})
            assert answer.status_code == 403
            # The refusals are audited like every other write.
            audit = suite.store.find_documents("audit", DocumentQuery(terms={"path": "/api/v1/assessments"},
                                                                      limit=100))
            assert sum(1 for a in audit if a["outcome"].startswith("refused")) == len(hostile(tmp_path)) + 1
        assert suite.store.find_documents(RUNS, DocumentQuery(limit=10)) == []
    assert tools_called == []
    assert not (tmp_path / "x").exists()


def test_the_command_refuses_every_target_outside_the_allowed_inventory(tmp_path):
    home = tmp_path / "site"
    home.mkdir()
    inventory = home / "province.yaml"
    inventory.write_text((PROJECT / "inventory" / "sample" / "province.yaml").read_text(encoding="utf-8"),
                         encoding="utf-8")
    config = home / "soc.yaml"
    config.write_text(yaml.safe_dump({
        "data_dir": str(home), "store": {"url": f"sqlite:///{home / 'soc.db'}"}, "inventory": {"path": str(inventory)},
        "assessment": {"allowed_networks": ["10.20.10.0/24"], "allowed_agencies": [AGENCY_A]}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOC__") and k != "SOC_CONFIG"}
    env["PYTHONPATH"] = str(PROJECT)
    for body in hostile(tmp_path):
        args = [f"--{name}={value}" for name, value in body.items()]
        done = subprocess.run([sys.executable, "-m", "suite.cli", "assess", "run", *args, "--config", str(config)],
                              env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 2, (body, done.returncode, done.stdout, done.stderr)
        assert done.stderr.startswith("soc: refused: "), (body, done.stderr)
        assert "Traceback" not in done.stderr and done.stdout == ""
    assert not (tmp_path / "x").exists()


def test_the_last_guard_refuses_before_a_tool_is_built(tmp_path):
    settings = AssessmentSettings(allowed_networks=["10.20.10.0/24"])
    for value in ("-oN /tmp/x", "10.0.10.5", "0.0.0.0/0", "so-tttt-web-01", "10.20.10.10 ", "10.20.10.10%1"):
        with pytest.raises(ScopeRefused):
            check_allowed(settings, value)
        with pytest.raises(ScopeRefused):
            nmap_module.command(settings, value, "22")
    argv = nmap_module.command(settings, "10.20.10.10", "22")
    assert argv[-1] == "10.20.10.10" and argv.count("10.20.10.10") == 1
    # Nothing is allowed until the configuration says so.
    from inventory.lookup import Inventory

    inventory = Inventory.load(PROJECT / "inventory" / "sample" / "province.yaml")
    assert resolve_targets(inventory, AssessmentSettings()) == []
    with pytest.raises(ScopeRefused):
        runner.run(None, inventory, AssessmentSettings(), asset="so-tttt-web-01")


@pytest.mark.parametrize("network", ["0.0.0.0/0", "::/0", "10.0.0.0/7", "10.20.10.10%eth0"])
def test_an_allow_list_wider_than_a_slash_8_is_refused_at_start(tmp_path, network):
    with pytest.raises(ConfigError):
        make_settings(tmp_path, SOC__ASSESSMENT__ALLOWED_NETWORKS=json.dumps([network]))
