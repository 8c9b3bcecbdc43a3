"""Log-source health: a source the inventory expects that falls silent, never reports or drops sharply is noticed,
raises an alert through the AlertManager (listed by the API like any other alert), and the alert is closed when the
source comes back. Events come from the real pipeline; time is driven explicitly where the test needs hours."""

from __future__ import annotations

import socket
import time
from datetime import datetime, timezone

import httpx
import pytest

from collectors import monitoring
from collectors.message import RawMessage
from collectors.sources.source_health import HealthOptions, SourceHealth
from suite.runtime import Suite, SuiteThread
from soc.storage.base import AlertQuery
from soc_api.keys import create_key
from tests import reports_month as month_data
from tests.conftest import make_settings

T0 = 1_800_000_000.0  # a fixed "now" for the state machine


def _line(host: str, app: str, text: str, pri: int = 38) -> RawMessage:
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return RawMessage(data=f"<{pri}>1 {stamp} {host} {app} 1 - - {text}".encode(), transport="tcp",
                      peer=month_data.ADDRESS.get(host, "127.0.0.1"), peer_port=514)


def _events(suite, host: str, n: int, app: str = "CRON") -> list[dict]:
    text = "(root) CMD (run-parts /etc/cron.hourly)" if app == "CRON" else \
        "Accepted publickey for admin from 10.20.1.5 port 50000 ssh2"
    batch = suite.pipeline.process_batch([_line(host, app, f"{text} #{i}") for i in range(n)])
    assert not batch.dead_letters
    return batch.events


@pytest.fixture
def suite(tmp_path):
    settings = make_settings(tmp_path, SOC__INVENTORY__PATH=str(month_data.write_inventory(tmp_path)))
    suite = Suite(settings)
    yield suite
    suite.close()


def test_sources_are_recognised_per_asset_and_only_if_expected(suite):
    health = SourceHealth(suite.inventory, now=T0)
    assert health.observe(_events(suite, "a-web-01", 3), now=T0) == 3  # syslog
    assert health.observe(_events(suite, "a-web-01", 2, app="sshd"), now=T0) == 2  # linux-auth
    assert health.observe(_events(suite, "a-fw-01", 4), now=T0) == 0  # a firewall's plain syslog is not cisco-asa
    states = health.states
    assert states[("a-web-01", "syslog")].last_seen == T0 and states[("a-web-01", "linux-auth")].last_seen == T0
    assert states[("a-fw-01", "cisco-asa")].last_seen is None


def test_silence_never_and_recovery(suite):
    options = HealthOptions(grace_seconds=600, silent_after={"syslog": 300})
    health = SourceHealth(suite.inventory, options, now=T0)
    assert health.evaluate(now=T0 + 60) == []  # everything pending during the grace period
    health.observe(_events(suite, "b-db-01", 5), now=T0 + 100)
    changes = {(t.state.key, t.new) for t in health.evaluate(now=T0 + 120)}
    assert ("b-db-01/syslog", "ok") in changes
    changes = {(t.state.key, t.old, t.new) for t in health.evaluate(now=T0 + 700)}
    assert ("b-db-01/syslog", "ok", "silent") in changes
    assert ("a-fw-01/cisco-asa", "pending", "never") in changes
    assert ("b-db-01/linux-auth", "pending", "never") in changes
    assert health.evaluate(now=T0 + 760) == []  # no repeated transitions while nothing changes
    health.observe(_events(suite, "b-db-01", 1), now=T0 + 800)
    assert {(t.state.key, t.new) for t in health.evaluate(now=T0 + 810)} == {("b-db-01/syslog", "ok")}


def test_a_sharp_drop_against_the_sources_own_baseline(suite):
    options = HealthOptions(window_seconds=300, warmup_seconds=1800, baseline_halflife_seconds=1800,
                            min_baseline_rate=0.05, bucket_seconds=60)
    health = SourceHealth(suite.inventory, options, now=T0)
    events = _events(suite, "a-web-01", 30)  # 30 a minute: 0.5 per second
    now = T0
    for minute in range(60):
        now = T0 + 60 * minute
        health.observe(events, now=now)
        health.evaluate(now=now + 1)
    state = health.states[("a-web-01", "syslog")]
    assert state.status == "ok" and 0.4 < state.baseline < 0.6
    dropped_at = None
    for minute in range(60, 75):  # then 2 a minute: well under a fifth of the baseline, but not silent
        now = T0 + 60 * minute
        health.observe(events[:2], now=now)
        if any(t.new == "dropped" for t in health.evaluate(now=now + 1)):
            dropped_at = minute
            break
    assert dropped_at is not None and dropped_at <= 66
    baseline = state.baseline
    for minute in range(75, 80):  # the baseline does not learn from the outage
        health.observe(events[:2], now=T0 + 60 * minute)
        health.evaluate(now=T0 + 60 * minute + 1)
    assert state.baseline == baseline and state.status == "dropped"


def test_state_survives_a_restart(suite):
    health = SourceHealth(suite.inventory, now=T0)
    health.observe(_events(suite, "b-web-01", 3), now=T0)
    health.evaluate(now=T0 + 1)
    suite.store.put_documents("source_health", health.snapshot())
    again = monitoring.build_source_health(suite, monitoring.SourceHealthConfig())
    state = again.states[("b-web-01", "syslog")]
    assert state.last_seen == T0 and state.status == "ok" and state.baseline is not None


def test_alerts_have_the_alert_shape_are_listed_by_the_api_and_close_on_recovery(suite):
    health = SourceHealth(suite.inventory, HealthOptions(grace_seconds=0, silent_after={"syslog": 60}), now=T0)
    alerts = monitoring.SourceHealthAlerts(suite.services, monitoring.SourceHealthConfig())
    health.observe(_events(suite, "b-db-01", 3), now=T0)
    alerts.handle(health.evaluate(now=T0 + 1))
    raised = alerts.handle(health.evaluate(now=T0 + 120))
    silent = [a for a in suite.store.list_alerts(AlertQuery(rule_id="soc_log_source_silent", limit=100))
              if a["labels"].get("soc.asset.id") == "b-db-01" and a["labels"].get("log_source") == "syslog"]
    assert len(silent) == 1
    alert = silent[0]
    assert alert["id"] in {a["id"] for a in raised}
    assert alert["rule"]["name"] == "soc_log_source_silent" and alert["severity"] == "high"
    assert alert["status"] == "new" and alert["organization"]["id"] == "so-b" and alert["fingerprint"]
    assert "defense-evasion" in alert["threat"]["tactic"]
    evidence = suite.store.get_events(alert["evidence"])
    assert evidence and evidence[0]["soc"]["log_source"]["status"] == "silent"
    never = suite.store.list_alerts(AlertQuery(agency="so-a", rule_id="soc_log_source_silent", limit=100))
    assert any(a["labels"]["soc.asset.id"] == "a-fw-01" for a in never)  # cisco-asa never reported

    runner = SuiteThread(Suite(suite.settings, suite.store)).start()
    try:
        key = create_key(suite.store, "agency", agency="so-b")[0]
        listed = httpx.get(f"http://127.0.0.1:{runner.suite.bound['api']}/api/v1/alerts",
                           headers={"X-API-Key": key}, params={"rule_id": "soc_log_source_silent"}).json()["alerts"]
        assert alert["id"] in {a["id"] for a in listed}
        assert all(a["organization"]["id"] == "so-b" for a in listed)
    finally:
        runner.suite.request_stop(runner.loop)
        runner.thread.join(timeout=60)

    health.observe(_events(suite, "b-db-01", 1), now=T0 + 200)
    alerts.handle(health.evaluate(now=T0 + 201))
    closed = suite.store.get_alert(alert["id"])
    assert closed["status"] == "closed" and closed["history"][-1]["by"] == "source_health"
    alerts.handle(health.evaluate(now=T0 + 400))  # silent again: a new alert, the closed one stays closed
    again = [a for a in suite.store.list_alerts(AlertQuery(rule_id="soc_log_source_silent", limit=100))
             if a["labels"].get("soc.asset.id") == "b-db-01" and a["labels"].get("log_source") == "syslog"]
    assert len(again) == 2 and suite.store.get_alert(alert["id"])["status"] == "closed"


def test_end_to_end_a_source_that_stops_sending_over_syslog_raises_an_alert(tmp_path):
    """Real syslog over TCP to the running suite, from the asset's own address (only its real sender proves a source
    alive); the source stops; the alert appears without anyone asking."""
    inventory = month_data.write_inventory(tmp_path)
    inventory.write_text(inventory.read_text().replace("10.20.2.10", "127.0.0.21"), encoding="utf-8")
    settings = make_settings(tmp_path, SOC__INVENTORY__PATH=str(inventory), SOC__EXTENSIONS="[]")
    suite = Suite(settings)
    config = monitoring.MonitoringConfig(source_health=monitoring.SourceHealthConfig(
        check_interval_seconds=0.2, silent_after_seconds={"syslog": 1.5}, grace_seconds=3600))
    suite.add_extension(monitoring.register, config)
    runner = SuiteThread(suite).start()
    try:
        with socket.create_connection(("127.0.0.1", suite.bound["syslog_tcp"]), timeout=5,
                                      source_address=("127.0.0.21", 0)) as conn:
            for i in range(3):
                conn.sendall(_line("b-web-01", "CRON", f"(root) CMD (job {i})", pri=78).data + b"\n")
        deadline = time.monotonic() + 15
        state = suite.service("source_health").states[("b-web-01", "syslog")]
        while time.monotonic() < deadline and state.status != "ok":
            time.sleep(0.1)
        assert state.status == "ok"
        found = []
        while time.monotonic() < deadline and not found:
            found = [a for a in suite.store.list_alerts(AlertQuery(rule_id="soc_log_source_silent", limit=50))
                     if a["labels"].get("soc.asset.id") == "b-web-01"]
            time.sleep(0.1)
        assert found and found[0]["status"] == "new"
        docs = {d["id"]: d for d in suite.store.find_documents("source_health", monitoring.DocumentQuery(limit=100))}
        assert docs["b-web-01__syslog"]["status"] == "silent"
    finally:
        runner.stop()
