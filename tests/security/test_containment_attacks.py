"""The suite must never be turned against the province: the demonstrated attacks, through the real path, against the
real namespace firewall (nftables, sshd, netmiko).

- Forged sshd lines from a sender the inventory does not know (TCP from 127.0.0.2), and from a known sender over UDP
  (whose source address anyone can forge), raise the alert but never block by themselves: the run waits for a
  network admin and its plan says why.
- A scope id carrying shell text (``2001:db8::1%';id>PWNED;'``) arrives in an agency's NDJSON documents (the agency's
  own, trusted evidence): the playbook refuses the input; nothing is sent to the firewall and nothing runs there.
- An analyst's API call with the same payloads (and a newline or carriage return) is refused with a clear error.
- The edge firewall's own addresses and IPv4-mapped spellings of protected hosts are refused by the never-block list.
- A DNS server added through the inventory API is protected by the very next plan, without a restart.
"""

from __future__ import annotations

import json
import socket
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest
import yaml

from playbooks.records import RunFilter
from tests.conftest import wait_for

INJECTED = "2001:db8::1%';id>PWNED;'"
PWNED = [Path("/root/PWNED"), Path("/PWNED"), Path("PWNED")]


@pytest.fixture
def suite(clean, tmp_path, monkeypatch):
    from suite.runtime import Suite, SuiteThread
    from tests.conftest import make_settings

    lab = clean
    for path in PWNED:
        path.unlink(missing_ok=True)
    pb_config = tmp_path / "playbooks.yaml"
    pb_config.write_text(yaml.safe_dump({"lock_dir": str(tmp_path / "locks"), "expiry_interval_seconds": 0.5,
                                         "soc_addresses": [f"{lab.soc_address}/32"],
                                         "known_hosts_file": str(lab.known_hosts)}))
    settings = make_settings(tmp_path, sections={"playbooks": yaml.safe_load(pb_config.read_text())}, SOC__INVENTORY__PATH=str(lab.inventory(tmp_path / "inventory.yaml")),
                             SOC__EXTENSIONS="[playbooks.service]")
    running = SuiteThread(Suite(settings)).start()
    try:
        yield running.suite
    finally:
        running.stop()


_wait = wait_for  # waits for a condition, failing with what it waited for


def _sshd_lines(address: str, host: str, zone) -> list[bytes]:
    now = datetime.now(timezone.utc).astimezone(zone)
    return [f"<38>{now:%b} {now.day:2d} {now:%H:%M:%S} {host} sshd[{4100 + i}]: Failed password for root from "
            f"{address} port {50000 + i} ssh2".encode() for i in range(8)]


def _runs(suite, playbook: str) -> list[dict]:
    return suite.service("playbooks").runner.records.find_runs(RunFilter(playbook=playbook))


def _nothing_reached_the_firewall(lab) -> None:
    assert lab.attacker not in lab.blocked_elements()
    assert lab.connect(lab.attacker) == "open"
    assert not any(p.exists() for p in PWNED), "a command injected through a playbook ran"


def test_forged_lines_from_an_unknown_tcp_sender_wait_for_a_network_admin(suite, lab):
    with socket.create_connection(("127.0.0.1", suite.bound["syslog_tcp"]), timeout=10,
                                  source_address=("127.0.0.2", 0)) as sock:  # a sender the inventory does not know
        sock.sendall(b"".join(line + b"\n" for line in _sshd_lines(lab.attacker, "lab-srv-01", suite.settings.tz)))
    [run] = _wait(lambda: _runs(suite, "block_ssh_brute_force"), 30, "the run to be planned")
    assert run["state"] == "pending_approval" and run["approval"]["policy"] == "network_admin approves"
    assert any("evidence not trusted" in r for r in run["approval"]["reasons"]), run["approval"]
    alert = suite.store.get_alert(run["alert_id"])
    assert alert["trust"]["trusted"] is False and alert["trust"]["untrusted_events"] >= 5
    time.sleep(1.0)  # nothing happens by itself
    _nothing_reached_the_firewall(lab)


def test_lines_a_relay_forwards_wait_for_a_network_admin(suite, lab):
    """A relay (an rsyslog that takes UDP from anyone and forwards over TCP) names the agency's hosts, but cannot
    vouch for lines it forwards: they are the agency's events, never evidence for automatic containment."""
    with socket.create_connection(("127.0.0.1", suite.bound["syslog_tcp"]), timeout=10,
                                  source_address=("127.0.0.3", 0)) as sock:  # lab-relay-01
        sock.sendall(b"".join(line + b"\n" for line in _sshd_lines(lab.attacker, "lab-srv-01", suite.settings.tz)))
    [run] = _wait(lambda: _runs(suite, "block_ssh_brute_force"), 30, "the run to be planned")
    assert run["state"] == "pending_approval" and run["agency"] == "lab"
    assert any("evidence not trusted" in r for r in run["approval"]["reasons"]), run["approval"]
    time.sleep(1.0)
    _nothing_reached_the_firewall(lab)


def test_forged_lines_from_a_known_sender_over_udp_wait_for_a_network_admin(suite, lab):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))  # the server's own address: known, but a datagram's source can be forged
        for line in _sshd_lines(lab.attacker, "lab-srv-01", suite.settings.tz):
            sock.sendto(line, ("127.0.0.1", suite.bound["syslog_udp"]))
    [run] = _wait(lambda: _runs(suite, "block_ssh_brute_force"), 30, "the run to be planned")
    assert run["state"] == "pending_approval"
    assert any("UDP" in r for r in run["approval"]["reasons"])
    time.sleep(1.0)
    _nothing_reached_the_firewall(lab)


def test_the_demonstrated_cef_lines_over_udp_never_reach_the_firewall(suite, lab):
    """The attack as it was shown: six CEF lines over UDP whose src carries a scope id with shell text raise the
    brute-force alert; the playbook refuses the address (and the evidence is UDP from an unknown sender anyway)."""
    now = datetime.now(timezone.utc).astimezone(suite.settings.tz)
    line = (f"<134>{now:%b} {now.day:2d} {now:%H:%M:%S} fw CEF:0|OpenSSH|sshd|8.9|4625|Failed password|5|"
            f"act=ssh_login outcome=failure dproc=sshd src={INJECTED} suser=root")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.2", 0))
        for _ in range(6):
            sock.sendto(line.encode(), ("127.0.0.1", suite.bound["syslog_udp"]))
    alerts = _wait(lambda: _brute_force_alerts(suite), 30, "the brute-force alert the CEF lines raise")
    assert alerts[0]["labels"]["source.ip"] == INJECTED and alerts[0]["trust"]["trusted"] is False
    refused = _wait(lambda: suite.service("playbooks").runner.records.find_audit(event="run_not_started"), 20,
                    "the playbook's refusal in the audit trail")
    assert "scope id" in refused[0]["reason"]
    assert [r for r in _runs(suite, "block_ssh_brute_force") if r["state"] != "failed"] == []
    _nothing_reached_the_firewall(lab)


def test_a_scope_id_in_an_agency_document_never_reaches_the_firewall(suite, lab):
    from soc_api.keys import create_key

    key, _ = create_key(suite.store, "agency", agency="lab")
    now = datetime.now(timezone.utc)
    docs = [{"@timestamp": now.isoformat(), "event": {"action": "ssh_login", "outcome": "failure",
                                                      "category": ["authentication"], "dataset": "system.auth"},
             "process": {"name": "sshd"}, "host": {"hostname": "lab-srv-01"}, "user": {"name": "root"},
             "source": {"ip": INJECTED, "port": 4000 + i}, "message": f"Failed password for root from {INJECTED}"}
            for i in range(8)]
    body = "\n".join(json.dumps(d) for d in docs).encode()
    with httpx.Client(base_url=f"http://127.0.0.1:{suite.bound['api']}/api/v1", timeout=30) as api:
        answer = api.post("/ingest", content=body, headers={"X-API-Key": key,
                                                            "Content-Type": "application/x-ndjson"})
        assert answer.status_code == 202, answer.text
    suite.drain(30)
    alerts = _wait(lambda: _brute_force_alerts(suite), 30, "the brute-force alert raised by the agency's documents")
    assert alerts and alerts[0]["trust"]["trusted"] is True  # the agency's own key vouched for them
    audit = _wait(lambda: suite.service("playbooks").runner.records.find_audit(event="run_not_started"), 20,
                  "the playbook's refusal in the audit trail")
    assert "scope id" in audit[0]["reason"]
    assert [r for r in _runs(suite, "block_ssh_brute_force") if r["state"] != "failed"] == []
    _nothing_reached_the_firewall(lab)


@pytest.mark.parametrize("address", [INJECTED, "2001:db8::1%\nusername evil privilege 15", "203.0.113.5\r\nreload",
                                     "203.0.113.5;id", "::ffff:127.0.0.1"])
def test_an_analyst_cannot_inject_through_the_api(suite, lab, address):
    from soc_api.keys import create_key

    key, _ = create_key(suite.store, "analyst")
    with httpx.Client(base_url=f"http://127.0.0.1:{suite.bound['api']}/api/v1", timeout=30) as api:
        answer = api.post("/playbooks/block_address/runs", headers={"X-API-Key": key},
                          json={"inputs": {"address": address, "agency": "lab"}})
        assert answer.status_code in (400, 422), answer.text
        said = json.dumps(answer.json())
        assert any(why in said for why in ("scope id", "not an IP address", "not an address or a CIDR range",
                                           "never-block")), said
        quarantine = api.post("/playbooks/quarantine_host/runs", headers={"X-API-Key": key},
                              json={"inputs": {"host": "lab-srv-01", "switch": "lab-fw-01",
                                               "interface": "Gi1/0/1\rreload", "agency": "lab"}})
        assert quarantine.status_code in (400, 422), quarantine.text
    _nothing_reached_the_firewall(lab)


def test_the_suite_never_blocks_its_own_infrastructure(suite, lab):
    from soc_api.keys import create_key

    keys = {role: create_key(suite.store, role)[0] for role in ("analyst", "admin")}
    with httpx.Client(base_url=f"http://127.0.0.1:{suite.bound['api']}/api/v1", timeout=30) as api:
        def block(address: str):
            return api.post("/playbooks/block_address/runs", headers={"X-API-Key": keys["analyst"]},
                            json={"inputs": {"address": address, "agency": "lab"}})

        # the managed firewall's own address, also written as IPv4-mapped IPv6
        for address in (lab.management_address, f"::ffff:{lab.management_address}"):
            refused = block(address)
            assert refused.status_code == 422 and "never-block" in json.dumps(refused.json()), refused.text
        # a DNS server added through the inventory API is protected from the very next plan on
        assert block("203.0.113.53").status_code == 201
        dns = {"id": "lab-dns-01", "hostname": "lab-dns-01", "kind": "server", "agency": "lab",
               "addresses": ["203.0.113.54"], "services": ["dns"]}
        made = api.put("/inventory/assets/lab-dns-01", headers={"X-API-Key": keys["admin"]}, json=dns)
        assert made.status_code == 200, made.text
        refused = block("203.0.113.54")
        assert refused.status_code == 422 and "lab-dns-01 serves dns" in json.dumps(refused.json()), refused.text


def _brute_force_alerts(suite) -> list[dict]:
    from soc.storage.base import AlertQuery

    return [a for a in suite.store.list_alerts(AlertQuery(limit=50)) if a["rule"]["name"] == "soc_ssh_brute_force"]
