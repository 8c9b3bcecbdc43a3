"""Posture says an asset is reporting only when that asset really sent something, and only as of when it arrived.

*Attack demonstrated:* one UDP datagram, an RFC 5424 line dated 2031 naming a silent asset's host name, sent from an
address that is not the asset's, moved the asset from ``silent`` to ``reporting`` in the posture the suite pushes to
the national centre, and kept it there until 2031: the source tracker and the store fallback took the event's
``@timestamp`` and the host it named, whoever sent it.

*Defence:* an event proves an asset alive only when its real sender is that asset (``soc.sender.asset``: the asset
of the verified certificate or of the socket address) or when an agency's API key vouched for it
(``soc.sender.trusted``); last heard is the arrival time (``event.created``), never the event's own timestamp; a
stored last-heard time in the future is not believed (soc_api/posture.py, collectors/sources/source_health.py).

A running suite: real UDP syslog from loopback addresses, real HTTP ingest, ``GET /api/v1/posture`` with real keys.
"""

from __future__ import annotations

import json
import socket

import httpx
import yaml

from soc import ecs
from soc_api.keys import create_key
from tests.conftest import make_settings, wait_for

OWN, STRANGER = "127.0.0.3", "127.0.0.9"  # the asset's own address; one that is nobody's
INVENTORY = {
    "province": {"id": "province", "name_vi": "Tỉnh", "name_en": "Province", "kind": "province"},
    "agencies": [{"id": "agency-a", "name_vi": "A", "name_en": "Agency A", "kind": "department",
                  "parent": "province"}],
    "assets": [
        {"id": "a-web-01", "hostname": "a-web-01", "kind": "server", "agency": "agency-a", "addresses": [OWN],
         "log_sources": ["linux-auth"]},
        {"id": "a-db-01", "hostname": "a-db-01", "kind": "server", "agency": "agency-a", "addresses": ["10.9.9.10"],
         "log_sources": ["linux-auth"]},
    ],
}


def _udp(port: int, source: str, line: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        sock.sendto(line.encode(), ("127.0.0.1", port))


def _line(host: str, marker: str) -> str:
    return f"<38>1 2031-06-01T00:00:00.000Z {host} sshd 4242 - - Failed password for root from 203.0.113.9 " \
           f"port 22 ssh2 {marker}"


def _silent(client: httpx.Client, key: str) -> dict:
    doc = client.get("/api/v1/posture", headers={"X-API-Key": key})
    assert doc.status_code == 200, doc.text
    [agency] = [a for a in doc.json()["agencies"] if a["id"] == "agency-a"]
    return {s["asset"]: s for s in agency["log_sources"]["silent"]}


def _seen(suite, marker: str) -> bool:
    from soc.storage.base import EventQuery

    return any(marker in e.get("message", "") for e in suite.store.search_events(EventQuery(limit=50)))


def test_a_spoofed_datagram_does_not_make_a_silent_asset_report(tmp_path, monkeypatch):
    from suite.runtime import Suite, SuiteThread

    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(yaml.safe_dump(INVENTORY), encoding="utf-8")
    settings = make_settings(tmp_path, SOC__INVENTORY__PATH=str(inventory), SOC__TIMEZONE="UTC",
                             SOC__EXTENSIONS="[soc_api.extension]")
    running = SuiteThread(Suite(settings)).start()
    try:
        suite = running.suite
        agency_key = create_key(suite.store, "agency", agency="agency-a", name="a")[0]
        analyst_key = create_key(suite.store, "analyst", name="analyst")[0]
        port = suite.bound["syslog_udp"]
        with httpx.Client(base_url=f"http://127.0.0.1:{suite.bound['api']}", timeout=30) as client:
            assert set(_silent(client, agency_key)) == {"a-web-01", "a-db-01"}

            # The spoofed datagram: it names a-web-01, from an address that is not a-web-01's, dated 2031.
            _udp(port, STRANGER, _line("a-web-01", "spoofed"))
            wait_for(lambda: _seen(suite, "spoofed"), 20, "the spoofed line to be stored")
            tracker = suite.service("source_tracker")
            wait_for(lambda: tracker.events_per_second("agency-a") > 0, 20, "the tracker to see it")
            suite.store.refresh()
            for key in (agency_key, analyst_key):
                assert "a-web-01" in _silent(client, key)
            # ... nor through the store, when the tracker has not seen it (another process, after a restart)
            monkeypatch.delitem(suite.services.provided, "source_tracker")
            assert "a-web-01" in _silent(client, analyst_key)
            monkeypatch.setitem(suite.services.provided, "source_tracker", tracker)

            # A line from a-web-01's own address: reporting, as of its arrival (not 2031).
            _udp(port, OWN, _line("a-web-01", "genuine"))
            wait_for(lambda: "a-web-01" not in _silent(client, agency_key), 20, "a-web-01 to report")
            heard = tracker.last_seen["a-web-01"]["last_seen"]
            assert heard <= ecs.now_iso(), heard
            suite.store.refresh()
            monkeypatch.delitem(suite.services.provided, "source_tracker")
            assert "a-web-01" not in _silent(client, analyst_key)  # the store says so too
            monkeypatch.setitem(suite.services.provided, "source_tracker", tracker)

            # An agency's API key vouches for the events it sends: a-db-01 reports through it.
            ingest = client.post("/api/v1/ingest", headers={"X-API-Key": agency_key,
                                                            "Content-Type": "application/x-ndjson"},
                                 content=json.dumps({"@timestamp": "2031-06-01T00:00:00Z",
                                                     "host": {"hostname": "a-db-01"},
                                                     "message": "vouched for"}).encode() + b"\n")
            assert ingest.status_code == 202, ingest.text
            wait_for(lambda: "a-db-01" not in _silent(client, analyst_key), 20, "a-db-01 to report")
            assert "a-web-01" not in _silent(client, analyst_key)
    finally:
        running.stop()


def test_log_source_health_counts_only_what_the_asset_itself_sent(tmp_path):
    """The log-source health check (collectors/sources/source_health.py) reads the same way: a datagram naming an
    asset from another address does not make its source heard; one from the asset's own address does."""
    from collectors.message import RawMessage
    from collectors.sources.source_health import SourceHealth
    from suite.runtime import Suite

    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(yaml.safe_dump(INVENTORY), encoding="utf-8")
    suite = Suite(make_settings(tmp_path, SOC__INVENTORY__PATH=str(inventory), SOC__TIMEZONE="UTC",
                                SOC__EXTENSIONS="[]"))
    try:
        health = SourceHealth(suite.inventory)

        def heard(peer: str) -> float | None:
            batch = suite.pipeline.process_batch([RawMessage(data=_line("a-web-01", peer).encode(), transport="udp",
                                                             peer=peer, peer_port=514)])
            health.observe(batch.events, now=1_000_000.0)
            return health.states[("a-web-01", "linux-auth")].last_seen

        assert heard(STRANGER) is None
        assert heard(OWN) == 1_000_000.0
    finally:
        suite.close()
