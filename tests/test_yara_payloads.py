"""Payloads the packet collector extracted from real captures, scanned with the signature-base rules: the EICAR
file carried over HTTP in two corpus pcaps becomes an ECS alert with the traffic around it; clean bodies do not."""

from __future__ import annotations

import pytest

from collectors.packets.pcap import iter_pcap_records
from detections.yara.cache import load_pack
from detections.yara.payloads import payload_name, scan_event_payloads
from detections.yara.samples import EICAR
from detections.yara.scanner import ScanOptions, Scanner
from tests.conftest import CORPUS

SIGNATURE_BASE = CORPUS / "yara-signature-base" / "yara"


@pytest.fixture(scope="module")
def scanner(tmp_path_factory):
    return Scanner(load_pack([SIGNATURE_BASE], cache_dir=tmp_path_factory.getbasetemp() / "yara-cache"))


def _events_with_payloads(capture, payload_dir):
    return [r for r in iter_pcap_records(CORPUS / "pcap" / capture / "input.pcap", payload_dir)
            if (r.get("soc") or {}).get("payloads")]


@pytest.mark.parametrize("capture,name", [("http-evader", "range,full"),  # URL /range/eicar.txt/range,full
                                          ("http-post-file", "is8j4b6s7i839eo38axwmx5pnr")])
def test_eicar_carried_over_http_becomes_an_alert_with_its_traffic(scanner, tmp_path, capture, name):
    events = _events_with_payloads(capture, tmp_path / "payloads")
    assert events
    alerts, results = scan_event_payloads(scanner, events)
    assert all(r.problem is None for r in results)
    assert [a["rule"]["name"] for a in alerts] == ["SUSP_Just_EICAR"]
    alert = alerts[0]
    carrier = next(e for e in events if alert["file"]["hash"]["sha256"] in {p["sha256"] for p in e["soc"]["payloads"]})
    assert alert["soc"]["yara"] == {"carrier_event": carrier["event"].get("id"), "carrier_dataset": "network.http"}
    assert alert["event"]["kind"] == "alert" and alert["@timestamp"] == carrier["@timestamp"]
    assert alert["source"]["ip"] == carrier["source"]["ip"] and alert["destination"] == carrier["destination"]
    assert alert["url"] == carrier["url"] and alert["network"]["community_id"] == carrier["network"]["community_id"]
    assert alert["file"]["name"] == name and alert["file"]["type"] == "payload"
    # The stored payload really is the EICAR file the rule describes.
    with open(alert["file"]["path"], "rb") as handle:
        assert handle.read().startswith(EICAR)


def test_clean_bodies_give_no_alert_and_missing_or_large_payloads_are_reported(scanner, tmp_path):
    events = _events_with_payloads("http-all-headers", tmp_path / "payloads") + \
        _events_with_payloads("http-brotli-ce", tmp_path / "payloads")
    assert len(events) == 3, "corpus captures with ordinary HTTP bodies"
    alerts, results = scan_event_payloads(scanner, events)
    assert alerts == [] and results and all(r.problem is None for r in results)

    gone = {"event": {"id": "e1", "dataset": "network.http"}, "@timestamp": "2026-11-22T10:00:00.000Z",
            "soc": {"payloads": [{"sha256": "00", "path": str(tmp_path / "nope"), "url": "/a.php"}]}}
    big_path = tmp_path / "big"
    big_path.write_bytes(b"x" * 2048)
    big = {"event": {"id": "e2", "dataset": "network.ftp"}, "file": {"name": "dump.bin"},
           "soc": {"payloads": [{"sha256": "11", "path": str(big_path)}]}}
    small = Scanner(scanner.pack, ScanOptions(max_file_bytes=1024))
    alerts, results = scan_event_payloads(small, [gone, big, {"event": {"id": "e3"}, "soc": {"payloads": "junk"}}])
    assert alerts == [] and [r.problem.kind for r in results] == ["unreadable", "too_large"]
    assert results[1].target.name == "dump.bin" and "2048 bytes" in results[1].problem.reason


def test_payload_names():
    http = {"event": {"dataset": "network.http"}, "url": {"path": "/up/load/shell%20x.php"}}
    assert payload_name(http, {"url": "/up/load/shell%20x.php?x=1"}) == "shell x.php"
    assert payload_name(http, {"url": "http://a.example/b/c.jsp"}) == "c.jsp"
    assert payload_name({"event": {"dataset": "network.http"}}, {"url": "/", "sha256": "abc"}) == "abc"
    ftp = {"event": {"dataset": "network.ftp"}, "file": {"name": "../../etc/cron.d/job"}}
    assert payload_name(ftp, {}) == "job"


def test_payload_matcher_raises_one_deduplicated_alert_per_rule_and_file(tmp_path):
    """The suite extension's matcher, in a real suite on SQLite: the EICAR body of a real capture becomes an alert
    through the detection engine and the alert manager; the same body again is counted on that alert."""
    from suite.runtime import Suite
    from tests.conftest import make_settings

    suite = Suite(make_settings(tmp_path, SOC__EXTENSIONS="[detections.yara.service]"))
    try:
        events = _events_with_payloads("http-post-file", tmp_path / "payloads")
        for i, event in enumerate(events):
            event["event"]["id"] = f"pcap-{i}"
            event["organization"] = {"id": "so-tttt"}
        detections = suite.engine.evaluate(events)
        yara_hits = [d for d in detections if d.kind == "yara"]
        assert [d.meta.id for d in yara_hits] == ["yara:gen_suspicious_strings.yar:SUSP_Just_EICAR"]
        assert yara_hits[0].meta.level == "low" and yara_hits[0].agency == "so-tttt"  # score 40
        [alert] = suite.alerts.handle(yara_hits)
        assert alert["rule"]["id"] == "yara:gen_suspicious_strings.yar:SUSP_Just_EICAR"
        assert alert["organization"]["id"] == "so-tttt" and alert["count"] == 1
        assert alert["entities"]["hash"] and len(alert["entities"]["hash"][0]) == 64
        again = suite.alerts.handle([d for d in suite.engine.evaluate(events) if d.kind == "yara"])
        assert [a["id"] for a in again] == [alert["id"]] and again[0]["count"] == 2
        plain = {"event": {"id": "x"}, "@timestamp": "2026-11-22T10:00:00.000Z"}
        assert not [d for d in suite.engine.evaluate([plain]) if d.kind == "yara"]
    finally:
        suite.close()
