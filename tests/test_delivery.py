"""Delivery guarantees on the real OpenSearch node: nothing accepted is lost, nothing is stored twice.

- ``kill -9`` of a running `soc serve` in the middle of a 200k-event TCP replay, then a restart: what was accepted
  before the kill comes back from the disk spool (it is not sent again), what the sender re-sends is stored once.
- OpenSearch stopped for 60 s during a replay: the spool holds the events, and drains when the node is back.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from opensearchpy.helpers import scan

from suite.settings import load_settings
from suite.runtime import Suite, SuiteThread
from soc.storage import open_store
from tests.conftest import free_port, make_settings, need_java_and_maven

SOC = [sys.executable, "-m", "suite.cli"]
PROJECT = Path(__file__).resolve().parent.parent
OPENSEARCH = PROJECT / "scripts" / "opensearch.sh"


def _line(i: int) -> bytes:
    # RFC 5424 with its own timestamp: the event id (sender, @timestamp, text) is the same every time it is sent.
    second = i % 86400
    stamp = f"2026-11-21T{second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}.{i % 1000:03d}+07:00"
    return f"<134>1 {stamp} fw-replay app 77 - - replay seq={i:06d} action=allow\n".encode()


def _send(port: int, numbers: range, state: dict | None = None) -> None:
    """Send lines over one TCP connection; close it cleanly and wait until the collector has read everything."""
    with socket.create_connection(("127.0.0.1", port)) as conn:
        chunk: list[bytes] = []
        for i in numbers:
            chunk.append(_line(i))
            if len(chunk) == 500:
                conn.sendall(b"".join(chunk))
                chunk.clear()
                if state is not None:
                    state["sent"] = i + 1
        if chunk:
            conn.sendall(b"".join(chunk))
        conn.shutdown(socket.SHUT_WR)
        conn.settimeout(300)
        # The collector closes its side only after it has framed and spooled the last line.
        assert conn.recv(1) == b""


def _stored_sequence_numbers(store) -> list[int]:
    store.refresh()
    found = []
    for hit in scan(store.client, index=store.events_pattern, _source=["event.original"], size=5000,
                    query={"query": {"match_all": {}}}):
        original = hit["_source"]["event"]["original"]
        found.append(int(original.split("seq=")[1].split()[0]))
    return found


def _wait_count(store, expected: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    count = -1
    while time.monotonic() < deadline:
        store.refresh()
        count = store.count_events()
        if count >= expected:
            return count
        time.sleep(1)
    return count


class Serve:
    def __init__(self, config: Path, log: Path):
        self.settings = load_settings(config, environ={})
        self.log = log.open("ab")
        env = {k: v for k, v in os.environ.items() if not k.startswith("SOC__")}
        self.proc = subprocess.Popen(SOC + ["serve", "--config", str(config)], stdout=self.log, stderr=self.log,
                                     env=env, cwd=PROJECT)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, log.read_text()
            try:
                socket.create_connection(("127.0.0.1", self.settings.syslog.tcp_port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.2)
        raise AssertionError("soc serve did not come up: " + log.read_text())


def test_kill_9_in_the_middle_of_a_200k_replay_loses_nothing_and_stores_nothing_twice(tmp_path, opensearch_prefix):
    url, prefix = opensearch_prefix
    config = tmp_path / "soc.yaml"
    config.write_text(yaml.safe_dump({
        "data_dir": str(tmp_path),
        "store": {"url": url, "index_prefix": prefix},
        "syslog": {"host": "127.0.0.1", "udp_port": free_port(), "tcp_port": free_port()},
        "api": {"enabled": False},
        "extensions": [],
    }))
    log = tmp_path / "serve.log"
    settings = load_settings(config, environ={})
    store = open_store(settings)
    served = Serve(config, log)
    port = served.settings.syslog.tcp_port
    try:
        # First half on its own connection, read to the end by the collector: accepted, so it must never be lost.
        _send(port, range(0, 100_000))
        # Second half streaming while the collector is killed.
        state = {"sent": 0}
        second = threading.Thread(target=lambda: _safe_send(port, range(100_000, 200_000), state), daemon=True)
        second.start()
        stored_at_kill = _wait_count(store, 20_000, timeout=300)
        served.proc.send_signal(signal.SIGKILL)
        served.proc.wait(timeout=30)
        second.join(timeout=60)
        assert 20_000 <= stored_at_kill < 100_000, "the kill must land while accepted events are still in the spool"
    finally:
        if served.proc.poll() is None:
            served.proc.kill()
        served.log.close()

    again = Serve(config, log)
    try:
        # The first half is not sent again: it comes back from the spool. The sender, not knowing how much of the
        # second half was read before the kill, sends all of it again (idempotent ids make that harmless).
        _send(port, range(100_000, 200_000))
        assert _wait_count(store, 200_000, timeout=600) >= 200_000
        time.sleep(2)  # anything still in flight would show as a count above 200,000
        numbers = _stored_sequence_numbers(store)
        assert len(numbers) == 200_000
        assert sorted(numbers) == list(range(200_000))
        assert "from before the last stop are in the spool" in log.read_text()
    finally:
        again.proc.send_signal(signal.SIGTERM)
        assert again.proc.wait(timeout=90) == 0
        again.log.close()
        store.close()


def _safe_send(port: int, numbers: range, state: dict) -> None:
    try:
        _send(port, numbers, state)
    except OSError as exc:  # the collector was killed under the sender
        state["error"] = exc


def _start_node(port: int, data: Path, keep: bool) -> None:
    args = [str(OPENSEARCH), "start", "--port", str(port), "--dir", str(data)] + (["--keep"] if keep else [])
    started = subprocess.run(args, capture_output=True, text=True, timeout=400, env={**os.environ,
                                                                                   "OPENSEARCH_HEAP": "512m"})
    assert started.returncode == 0, started.stdout + started.stderr


@pytest.fixture
def own_node(tmp_path_factory):
    """An OpenSearch node of this test's own (it is stopped and started again), on its own ports."""
    need_java_and_maven("the OpenSearch outage test")
    port = 9380
    data = tmp_path_factory.mktemp("outage-node")
    _start_node(port, data, keep=False)
    yield port, data
    subprocess.run([str(OPENSEARCH), "stop", "--port", str(port)], capture_output=True, timeout=120)


def test_opensearch_down_for_60_seconds_during_a_replay_loses_nothing(tmp_path, own_node):
    port, data = own_node
    url = f"opensearch://127.0.0.1:{port}"
    settings = make_settings(tmp_path, store_url=url, index_prefix="outage", SOC__API__ENABLED="false",
                             SOC__STORE__TIMEOUT_SECONDS="5")
    suite = Suite(settings)
    runner = SuiteThread(suite).start()
    total = 30_000
    state = {"sent": 0}
    try:
        tcp = suite.bound["syslog_tcp"]

        def paced() -> None:  # a steady sender: 30,000 lines over about 75 s
            with socket.create_connection(("127.0.0.1", tcp)) as conn:
                for start in range(0, total, 200):
                    conn.sendall(b"".join(_line(i) for i in range(start, start + 200)))
                    state["sent"] = start + 200
                    time.sleep(0.5)
                conn.shutdown(socket.SHUT_WR)
                conn.settimeout(300)
                assert conn.recv(1) == b""
            state["done"] = True

        sender = threading.Thread(target=paced, daemon=True)
        sender.start()
        while state["sent"] < 2000:
            time.sleep(0.1)
        stopped = subprocess.run([str(OPENSEARCH), "stop", "--port", str(port)], capture_output=True, text=True,
                                 timeout=120)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        down_since = time.monotonic()
        sent_when_down = state["sent"]
        depth_seen = 0
        while time.monotonic() - down_since < 60:
            depth_seen = max(depth_seen, suite.intake.spool.depth())
            time.sleep(1)
        assert state["sent"] > sent_when_down + 10_000, "the sender must not be held up while the store is down"
        assert depth_seen > 10_000, "the events must wait in the spool while the store is down"
        _start_node(port, data, keep=True)
        sender.join(timeout=120)
        assert state.get("done"), "the sender did not finish"
        assert suite.drain(timeout=300), "the spool did not drain after the store came back"
        numbers = _stored_sequence_numbers(suite.store)
        assert sorted(numbers) == list(range(total))
        assert suite.intake.spool.depth() == 0
    finally:
        runner.stop()


def test_a_slow_store_fills_the_bounded_spool_then_tcp_is_slowed_and_udp_drops_are_counted(tmp_path):
    """The embedded store held by another writer (a store that does not answer): the spool stops at its bound,
    the TCP sender is held back instead of the collector buffering, UDP overflow is dropped and counted; when the
    store answers again everything sent over TCP is stored."""
    import sqlite3

    from collectors.intake import UDP_DROPPED

    settings = make_settings(tmp_path, SOC__PIPELINE__SPOOL_MAX_BYTES=str(256 * 1024), SOC__EXTENSIONS="[]",
                             SOC__API__ENABLED="false")
    suite = Suite(settings)
    runner = SuiteThread(suite).start()
    blocker = sqlite3.connect(tmp_path / "soc.db", isolation_level=None)
    total = 60_000
    padding = "x" * 300
    state = {"sent": 0}
    try:
        blocker.execute("BEGIN EXCLUSIVE")  # every write of the suite now waits

        def sender() -> None:
            with socket.create_connection(("127.0.0.1", suite.bound["syslog_tcp"])) as conn:
                for start in range(0, total, 500):
                    conn.sendall(b"".join(_line(i)[:-1] + f" {padding}\n".encode() for i in range(start, start + 500)))
                    state["sent"] = start + 500
                conn.shutdown(socket.SHUT_WR)
                conn.settimeout(300)
                assert conn.recv(1) == b""
            state["done"] = True

        thread = threading.Thread(target=sender, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not suite.intake.spool.full() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert suite.intake.spool.full(), "the spool never reached its bound"
        time.sleep(2)
        accepted = suite.intake.accepted
        time.sleep(2)
        assert suite.intake.accepted == accepted, "nothing more may be taken while the spool is full"
        assert suite.intake.spool.pending_bytes < 256 * 1024 + 2048
        assert not state.get("done") and state["sent"] < total, "the TCP sender must be held back"
        dropped_before = UDP_DROPPED._value.get()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            for i in range(200):
                udp.sendto(_line(total + i).rstrip(b"\n"), ("127.0.0.1", suite.bound["syslog_udp"]))
        deadline = time.monotonic() + 10
        while UDP_DROPPED._value.get() - dropped_before < 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert UDP_DROPPED._value.get() - dropped_before == 200
    finally:
        blocker.execute("ROLLBACK")  # the store answers again
        blocker.close()
    try:
        thread.join(timeout=300)
        assert state.get("done"), "the TCP sender did not finish after the store came back"
        assert suite.drain(timeout=300)
        assert suite.store.count_events() == total
    finally:
        runner.stop()
