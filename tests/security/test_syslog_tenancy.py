"""A syslog sender the inventory knows speaks only for its own agency's hosts.

Over real TCP sockets on loopback: a server of agency A (127.0.0.3 in the test inventory) sends a line naming agency
B's host. The event stays agency A's (its own asset), is tagged ``host_claim_refused`` and is not trusted as
evidence for B; agency B's posture and events do not see it. A sender the inventory marks as a syslog relay may name
any agency's host, as a central rsyslog does. A sender the inventory does not know keeps today's behaviour (the host
it names decides; the event records no sender agency and is never trusted for containment).
"""

from __future__ import annotations

import socket
from datetime import datetime, timezone

import yaml

from soc import ecs
from soc.storage.base import EventQuery
from tests.conftest import PROJECT, make_settings, wait_until

INVENTORY = {
    "province": {"id": "province", "name_vi": "Tỉnh", "name_en": "Province", "kind": "province"},
    "agencies": [
        {"id": "agency-a", "name_vi": "A", "name_en": "Agency A", "kind": "department", "parent": "province"},
        {"id": "agency-b", "name_vi": "B", "name_en": "Agency B", "kind": "department", "parent": "province"},
    ],
    "assets": [
        {"id": "a-web-01", "hostname": "a-web-01", "kind": "server", "agency": "agency-a", "addresses": ["127.0.0.3"]},
        {"id": "b-db-01", "hostname": "b-db-01", "kind": "server", "agency": "agency-b", "addresses": ["10.9.9.9"],
         "criticality": "critical"},
        {"id": "relay-01", "hostname": "relay-01", "kind": "server", "agency": "province", "addresses": ["127.0.0.4"],
         "role": "syslog-relay"},
    ],
}


def _send(port: int, source: str, marker: str, host: str = "b-db-01") -> None:
    now = datetime.now(timezone.utc)
    line = f"<38>{now:%b} {now.day:2d} {now:%H:%M:%S} {host} sshd[1]: Failed password for root from 203.0.113.9 " \
           f"port 22 ssh2 {marker}"
    with socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0)) as sock:
        sock.sendall(line.encode() + b"\n")


def test_a_known_sender_cannot_write_as_another_agency_by_naming_its_host(tmp_path):
    from suite.runtime import Suite, SuiteThread

    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(yaml.safe_dump(INVENTORY), encoding="utf-8")
    settings = make_settings(tmp_path, SOC__INVENTORY__PATH=str(inventory), SOC__TIMEZONE="UTC")
    running = SuiteThread(Suite(settings)).start()
    try:
        suite = running.suite
        port = suite.bound["syslog_tcp"]
        _send(port, "127.0.0.3", "from-a")  # agency A's server naming agency B's database
        _send(port, "127.0.0.4", "from-relay")  # the province's relay forwarding B's line
        _send(port, "127.0.0.5", "from-stranger")  # a sender nobody knows
        events = wait_until(lambda: {e["message"].split()[-1]: e for e in suite.store.search_events(
            EventQuery(limit=10))} if len(suite.store.search_events(EventQuery(limit=10))) >= 3 else None, 20)
        forged = events["from-a"]
        assert ecs.get(forged, "organization.id") == "agency-a" and ecs.get(forged, "soc.asset.id") == "a-web-01"
        assert "host_claim_refused" in forged["tags"] and ecs.get(forged, "soc.sender.trusted") is True
        relayed = events["from-relay"]
        assert ecs.get(relayed, "organization.id") == "agency-b" and ecs.get(relayed, "soc.asset.id") == "b-db-01"
        assert ecs.get(relayed, "soc.sender.trusted") is False  # the relay is the province's, the event B's
        stranger = events["from-stranger"]
        assert ecs.get(stranger, "soc.sender.agency") is None and ecs.get(stranger, "soc.sender.trusted") is False
        b_events = [e["message"].split()[-1] for e in suite.store.search_events(EventQuery(agency="agency-b",
                                                                                             limit=10))]
        assert "from-a" not in b_events
    finally:
        running.stop()


def test_a_line_dated_in_the_future_cannot_hold_the_suite_to_its_date(tmp_path):
    """An RFC 5424 line dated 2031 from anyone: stored at its arrival time, its claim kept and tagged, so it cannot
    end every correlation window early, keep an alert open until 2031 or make a silent asset look alive. The
    brute force that follows is still detected."""
    from suite.runtime import Suite, SuiteThread
    from soc.storage.base import AlertQuery

    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(yaml.safe_dump(INVENTORY), encoding="utf-8")
    settings = make_settings(tmp_path, SOC__INVENTORY__PATH=str(inventory), SOC__TIMEZONE="UTC",
                             SOC__DETECTIONS__SIGMA_RULE_DIRS='["' + str(PROJECT / "detections" / "rules" /
                                                                         "linux") + '"]')
    running = SuiteThread(Suite(settings)).start()
    try:
        suite = running.suite
        port = suite.bound["syslog_tcp"]
        with socket.create_connection(("127.0.0.1", port), timeout=10, source_address=("127.0.0.3", 0)) as sock:
            sock.sendall(b"<38>1 2031-01-01T00:00:00Z a-web-01 sshd 1 - - Failed password for root from "
                         b"203.0.113.66 port 1 ssh2 poisoned\n")
        now = datetime.now(timezone.utc)
        with socket.create_connection(("127.0.0.1", port), timeout=10, source_address=("127.0.0.3", 0)) as sock:
            sock.sendall(b"".join(f"<38>{now:%b} {now.day:2d} {now:%H:%M:%S} a-web-01 sshd[{i}]: Failed password "
                                  f"for root from 203.0.113.66 port {4000 + i} ssh2\n".encode() for i in range(8)))
        poisoned = wait_until(lambda: [e for e in suite.store.search_events(EventQuery(limit=50))
                                       if e["message"].endswith("poisoned")], 20)
        assert poisoned and "future_timestamp" in poisoned[0]["tags"]
        assert poisoned[0]["@timestamp"] < "2030" and poisoned[0]["soc"]["claimed_timestamp"].startswith("2031")
        alerts = wait_until(lambda: [a for a in suite.store.list_alerts(AlertQuery(limit=20))
                                     if a["rule"]["name"] == "soc_ssh_brute_force"], 20)
        assert alerts and alerts[0]["last_seen"] < "2030"
    finally:
        running.stop()
