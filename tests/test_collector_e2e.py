"""The real path: syslog over sockets (real `logger` for good lines) → parse → enrich → store → detections.

Malformed input must never stop the listener: each bad line becomes a dead letter with its reason, is counted in
the metrics, and the next good line still gets through.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time

import httpx
import pytest

from suite.runtime import Suite, SuiteThread
from soc.storage import EventQuery
from tests.conftest import make_settings, wait_until


@pytest.fixture
def suite(tmp_path):
    runner = SuiteThread(Suite(make_settings(tmp_path))).start()
    yield runner.suite
    runner.stop()


def _metric(text: str, name: str, **labels) -> float:
    label_text = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.escape(name) + (r"\{" + re.escape(label_text) + r"\}" if labels else "") + r" ([0-9.e+]+)"
    match = re.search(pattern, text)
    return float(match.group(1)) if match else 0.0


@pytest.mark.skipif(shutil.which("logger") is None, reason="util-linux logger is installed by make test")
def test_real_logger_over_tcp_and_udp(suite):
    tcp, udp = suite.bound["syslog_tcp"], suite.bound["syslog_udp"]
    subprocess.run(["logger", "-n", "127.0.0.1", "-P", str(tcp), "-T", "--rfc5424", "-t", "sshd", "-p", "auth.info",
                    "Failed password for root from 203.0.113.9 port 4242 ssh2"], check=True, timeout=10)
    subprocess.run(["logger", "-n", "127.0.0.1", "-P", str(tcp), "-T", "--octet-count", "--rfc5424", "-t", "app",
                    "framed by octet count: the newline-only listener must not lose it"], check=True, timeout=10)
    subprocess.run(["logger", "-n", "127.0.0.1", "-P", str(udp), "-d", "--rfc3164", "-t", "sshd", "-p", "auth.info",
                    "Accepted password for bob from 203.0.113.10 port 4243 ssh2"], check=True, timeout=10)
    store = suite.store
    assert wait_until(lambda: store.count_events() >= 3)
    events = {e["source"]["ip"]: e for e in store.search_events(EventQuery(limit=10)) if "source" in e}
    failed = events["203.0.113.9"]
    assert failed["event"]["outcome"] == "failure" and failed["user"]["name"] == "root"
    assert failed["log"]["syslog"]["facility"]["name"] == "auth"
    assert "unknown_sender" in failed["tags"]  # 127.0.0.1 is not in the inventory: accepted, tagged
    assert failed["event"]["original"].endswith("Failed password for root from 203.0.113.9 port 4242 ssh2")
    accepted = events["203.0.113.10"]
    assert accepted["event"]["outcome"] == "success" and accepted["user"]["name"] == "bob"
    # RFC 6587 octet counting: the message is framed by its length and parsed like any other.
    framed = [e for e in store.search_events(EventQuery(limit=10)) if "framed by octet count" in e.get("message", "")]
    assert len(framed) == 1 and framed[0]["process"]["name"] == "app"
    assert store.count_dead_letters() == 0


def test_malformed_input_goes_to_dead_letters_and_the_listener_lives(suite):
    api = f"http://127.0.0.1:{suite.bound['api']}"
    before = httpx.get(f"{api}/metrics").text
    bad = [
        b"\x00\x01\x02\x03binary\x1b[0m\x7f",  # binary bytes (valid UTF-8, but NUL and control bytes)
        b"<34>Nov 22 10:00:00 host app: " + b"A" * 1_000_000,  # a 1 MB line
        b"<13>Nov 22 10:00:00 so-tttt-web-01 app: caf\xe9 au lait",  # invalid UTF-8
        b"<34>Oct 11 22:1",  # truncated header
    ]
    good = b"<38>Nov 22 10:00:05 so-tttt-web-01 sshd[7]: Failed password for root from 203.0.113.77 port 1 ssh2"
    with socket.create_connection(("127.0.0.1", suite.bound["syslog_tcp"])) as sock:
        sock.sendall(b"\n".join(bad) + b"\n" + good + b"\n")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.sendto(b"\xff\xfe\x00garbage", ("127.0.0.1", suite.bound["syslog_udp"]))
        udp.sendto(good.replace(b"port 1 ", b"port 2 "), ("127.0.0.1", suite.bound["syslog_udp"]))
    store = suite.store
    assert wait_until(lambda: store.count_dead_letters() >= 5 and store.count_events() >= 2)
    letters = store.list_dead_letters(10)
    reasons = sorted(d.reason.split(":")[0] for d in letters)
    assert reasons == ["binary", "invalid_utf8", "invalid_utf8", "line_too_long", "truncated_header"]
    big = next(d for d in letters if d.reason.startswith("line_too_long"))
    assert len(big.raw) == len(bad[1]) and not big.truncated  # kept whole: nothing lost
    assert next(d for d in letters if d.reason.startswith("binary")).raw == bad[0]
    assert all(d.source.startswith(("tcp://127.0.0.1:", "udp://127.0.0.1:")) for d in letters)
    stored = store.search_events(EventQuery(limit=10))
    assert {e["source"]["port"] for e in stored} == {1, 2}
    assert stored[0]["organization"]["id"] == "so-tttt" and stored[0]["soc"]["source"]["zone"] == "outside"
    after = httpx.get(f"{api}/metrics").text
    for reason, n in (("binary", 1), ("line_too_long", 1), ("invalid_utf8", 2), ("truncated_header", 1)):
        assert _metric(after, "soc_dead_letters_total", reason=reason) - \
            _metric(before, "soc_dead_letters_total", reason=reason) == n, reason
    assert _metric(after, "soc_events_received_total", transport="tcp") - \
        _metric(before, "soc_events_received_total", transport="tcp") == 5
    assert _metric(after, "soc_events_stored_total", store="sqlite") - \
        _metric(before, "soc_events_stored_total", store="sqlite") == 2
    # And through the API, for analysts: the raw bytes, the source and the reason; not for agency keys.
    import base64

    from soc_api.keys import create_key

    analyst, _ = create_key(store, "analyst")
    agency, _ = create_key(store, "agency", agency="so-tttt")
    listed = httpx.get(f"{api}/api/v1/deadletters", params={"limit": 10}, headers={"X-API-Key": analyst}).json()
    assert listed["total"] == 5 and len(listed["dead_letters"]) == 5
    by_reason = {d["reason"].split(":")[0]: d for d in listed["dead_letters"]}
    assert base64.b64decode(by_reason["binary"]["raw_base64"]) == bad[0]
    assert by_reason["line_too_long"]["raw_size"] == len(bad[1]) and len(by_reason["line_too_long"]["preview"]) == 4096
    assert by_reason["truncated_header"]["source"].startswith("tcp://127.0.0.1:")
    assert httpx.get(f"{api}/api/v1/deadletters", headers={"X-API-Key": agency}).status_code == 403
    # Still listening after all that.
    with socket.create_connection(("127.0.0.1", suite.bound["syslog_tcp"])) as sock:
        sock.sendall(good.replace(b"port 1 ", b"port 3 ") + b"\n")
    assert wait_until(lambda: store.count_events() == 3)


def test_octet_counting_mixed_with_lines_and_split_across_reads(suite):
    first = b"<38>Nov 22 10:00:05 so-tttt-web-01 sshd[7]: Failed password for root from 203.0.113.80 port 1 ssh2"
    second = b"<38>Nov 22 10:00:06 so-tttt-web-01 sshd[7]: Failed password for root from 203.0.113.80 port 2 ssh2"
    stream = str(len(first)).encode() + b" " + first + second + b"\n" + str(len(first)).encode() + b" " + \
        first.replace(b"port 1", b"port 3")
    with socket.create_connection(("127.0.0.1", suite.bound["syslog_tcp"])) as sock:
        for i in range(0, len(stream), 7):  # small writes: lengths and frames split across reads
            sock.sendall(stream[i:i + 7])
            time.sleep(0.001)
    store = suite.store
    assert wait_until(lambda: store.count_events() >= 3)
    assert sorted(e["source"]["port"] for e in store.search_events(EventQuery(limit=10))) == [1, 2, 3]
    assert store.count_dead_letters() == 0
