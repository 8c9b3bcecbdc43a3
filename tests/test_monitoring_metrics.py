"""Everything at /metrics passes `promtool check metrics`; the shipped alerting rules pass `promtool check rules`
and their unit tests (`promtool test rules`); the Grafana dashboard and the rules only use metrics the suite
exports; the self-monitoring gauges tell the truth about the store, the queue, dead letters and rule evaluation."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time

import httpx
import pytest

from collectors import monitoring
from suite.runtime import Suite, SuiteThread
from tests import reports_month as month_data
from tests.conftest import PROJECT, make_settings

RULES = PROJECT / "deploy" / "prometheus" / "soc-alerts.yml"
RULE_TESTS = PROJECT / "deploy" / "prometheus" / "soc-alerts.test.yml"
DASHBOARD = PROJECT / "deploy" / "grafana" / "soc-dashboard.json"
needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool comes with `make test`")
SUFFIXES = re.compile(r"_(total|bucket|count|sum|created)$")
PROMQL_WORDS = {"sum", "rate", "increase", "by", "on", "and", "or", "time", "vector", "count", "histogram_quantile",
                "le", "up", "without", "max", "min", "avg"}


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    folder = tmp_path_factory.mktemp("metrics")
    # a-web-01 sends from its own (loopback) address: only its real sender proves a source alive
    inventory = month_data.write_inventory(folder)
    inventory.write_text(inventory.read_text().replace("10.20.1.10", "127.0.0.22"), encoding="utf-8")
    settings = make_settings(folder, SOC__INVENTORY__PATH=str(inventory), SOC__EXTENSIONS="[]")
    suite = Suite(settings)
    suite.add_extension(monitoring.register, monitoring.MonitoringConfig(
        suite=monitoring.SelfMonitorConfig(refresh_seconds=0.2),
        source_health=monitoring.SourceHealthConfig(check_interval_seconds=0.2)))
    runner = SuiteThread(suite).start()
    with socket.create_connection(("127.0.0.1", suite.bound["syslog_tcp"]), timeout=5,
                                  source_address=("127.0.0.22", 0)) as conn:
        conn.sendall(b"<38>1 2026-10-05T08:00:00+07:00 a-web-01 sshd 1 - - Failed password for root from "
                     b"203.0.113.5 port 4000 ssh2\n\x00\x01 binary garbage\n")
    assert suite.drain(20)
    time.sleep(0.6)  # a couple of refreshes of the gauges
    url = f"http://127.0.0.1:{suite.bound['api']}/metrics"
    yield suite, url
    runner.stop()


def _scrape(url: str) -> str:
    return httpx.get(url, timeout=10).text


def _value(text: str, name: str, **labels) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + ("{" if labels else " ")) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def _exported_names(text: str) -> set[str]:
    return {SUFFIXES.sub("", line.split()[2]) for line in text.splitlines() if line.startswith("# TYPE ")}


def _names_in(expr: str) -> set[str]:
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    words = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr))
    return {SUFFIXES.sub("", w) for w in words if w not in PROMQL_WORDS and w.startswith("soc_")}


@needs_promtool
def test_metrics_pass_promtool(running):
    _, url = running
    text = _scrape(url)
    result = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0 and not result.stdout.strip() and not result.stderr.strip(), \
        result.stdout + result.stderr


def test_self_monitoring_tells_the_truth(running):
    suite, url = running
    text = _scrape(url)
    assert _value(text, "soc_store_up") == 1.0
    assert _value(text, "soc_store_cluster_status", status="green") == 1.0  # the embedded store is always green
    assert _value(text, "soc_store_cluster_status", status="red") == 0.0
    assert _value(text, "soc_dead_letters_stored") == suite.store.count_dead_letters() >= 1
    assert _value(text, "soc_spool_depth", spool="disk") == 0.0
    assert _value(text, "soc_rule_evaluation_seconds_count") >= 1
    assert _value(text, "soc_collector_events_per_second", transport="tcp") is not None
    assert time.time() - _value(text, "soc_monitor_last_refresh_timestamp_seconds") < 10
    assert _value(text, "soc_log_source_last_seen_timestamp_seconds", asset="a-web-01", source="linux-auth") > 0
    assert _value(text, "soc_log_source_silent", asset="a-web-01", source="linux-auth") == 0.0


def test_playbook_failures_are_counted_from_the_runs(running):
    suite, url = running
    from soc import ecs

    now = ecs.now_iso()
    suite.store.put_documents("playbook_runs", [
        {"id": "m-1", "playbook": "block_ip", "status": "failed", "started": now},
        {"id": "m-2", "playbook": "block_ip", "status": "succeeded", "started": now},
        {"id": "m-3", "playbook": "block_ip", "status": "failed", "started": "2020-01-01T00:00:00.000Z"},  # old
    ])
    suite.service("self_monitor").refresh()
    text = _scrape(url)
    assert _value(text, "soc_playbook_failures_recent") == 1.0
    assert _value(text, "soc_playbook_runs_recent", status="succeeded") == 1.0


@needs_promtool
def test_alerting_rules_pass_promtool_check_and_their_unit_tests():
    check = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS" in check.stdout
    unit = subprocess.run(["promtool", "test", "rules", RULE_TESTS.name], cwd=RULE_TESTS.parent,
                          capture_output=True, text=True, timeout=120)
    assert unit.returncode == 0, unit.stdout + unit.stderr


def test_rules_and_dashboard_only_use_exported_metrics(running):
    import yaml

    _, url = running
    exported = _exported_names(_scrape(url))
    rules = yaml.safe_load(RULES.read_text())
    used = {name for group in rules["groups"] for rule in group["rules"] for name in _names_in(rule["expr"])}
    assert used and used <= exported, used - exported
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 15
    used = set().union(*(_names_in(e) for e in exprs))
    assert used <= exported, used - exported
    assert {p["id"] for p in dashboard["panels"]} == set(range(1, len(dashboard["panels"]) + 1))
