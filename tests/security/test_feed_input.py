"""Hostile feed content through the real path (soc_api/feeds/runner.py ``pull_feed``: fetch over HTTP on loopback
or from a file, parse, load): huge answers (declared, chunked without a length, gzip bombs), slow servers, error
answers, malformed and deeply nested JSON, indicators naming 0.0.0.0/0, ::/0 or a top-level domain, and STIX patterns
that would need a regular expression on every event. Each is refused with a reason, counted (state and metrics), and
nothing of it loaded; the feed is reported and tried again later; nothing raises into the suite."""

from __future__ import annotations

import gzip
import json
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from prometheus_client import REGISTRY

from detections.indicators.store import IndicatorService
from soc import ecs
from soc.storage import store_from_url
from soc_api.feeds.runner import pull_feed
from soc_api.feeds.settings import FeedConfig, FeedsConfig


@contextmanager
def serving(routes: dict):
    """A loopback HTTP server: path -> (status, body bytes) or a callable(handler) writing the answer itself."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):  # noqa: N802
            route = routes.get(self.path)
            if route is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if callable(route):
                route(self)
                return
            status, body = route
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _chunked_forever(handler):
    handler.send_response(200)
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()
    chunk = b"203.0.113.1\n" * 1000
    try:
        for _ in range(1000):  # about 12 MB, never announced
            handler.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        handler.wfile.write(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass


def _gzip_bomb(handler):
    body = gzip.compress(b"#" * 20_000_000)  # 20 MB of comments in about 20 kB
    handler.send_response(200)
    handler.send_header("Content-Encoding", "gzip")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def _slow(handler):
    time.sleep(3)
    handler.send_response(200)
    handler.send_header("Content-Length", "0")
    handler.end_headers()


@pytest.fixture
def loader(tmp_path):
    store = store_from_url(f"sqlite:///{tmp_path / 'soc.db'}")
    store.open()
    service = IndicatorService(store)

    def run(feed: FeedConfig) -> dict:
        return pull_feed(store, service, feed, FeedsConfig(feeds=[feed]))

    run.service = service
    yield run
    store.close()


def _refused_metric(feed: str, reason: str) -> float:
    return REGISTRY.get_sample_value("soc_feed_items_refused_total", {"feed": feed, "reason": reason}) or 0.0


def test_huge_answers_and_files_are_refused_whole(loader, tmp_path):
    big_file = tmp_path / "big.txt"
    big_file.write_bytes(b"203.0.113.1\n" * 1000)
    routes = {"/declared": (200, b"x" * 5000), "/chunked": _chunked_forever, "/bomb": _gzip_bomb}
    with serving(routes) as url:
        for name, location in (("file-huge", str(big_file)), ("http-declared", f"{url}/declared"),
                               ("http-chunked", f"{url}/chunked"), ("http-bomb", f"{url}/bomb")):
            before = _refused_metric(name, "too_large")
            state = loader(FeedConfig(name=name, kind="plain", location=location, max_bytes=4096))
            assert state["status"] == "refused" and "too_large" in state["error"], (name, state)
            assert state["consecutive_failures"] == 1 and state["next_attempt"] > state["last_attempt"]
            assert _refused_metric(name, "too_large") == before + 1
    assert len(loader.service.index) == 0


def test_slow_and_failing_servers_are_reported_and_retried_later(loader):
    with serving({"/slow": _slow, "/down": (503, b"busy"), "/gone": (404, b"")}) as url:
        slow = loader(FeedConfig(name="slow", kind="plain", location=f"{url}/slow", timeout_seconds=0.5, retries=0))
        assert slow["status"] == "error" and "Timeout" in slow["error"]
        down = FeedConfig(name="down", kind="plain", location=f"{url}/down", retries=1, retry_initial_seconds=5)
        first = loader(down)
        second = loader(down)
        assert first["status"] == second["status"] == "error" and "HTTP 503" in second["error"]
        assert second["consecutive_failures"] == 2  # the backoff doubles: 5 s, then 10 s
        gap = lambda s: (ecs.parse_time(s["next_attempt"]) - ecs.parse_time(s["last_attempt"])).total_seconds()  # noqa: E731
        assert 5 <= gap(first) <= 7 and 10 <= gap(second) <= 12  # from the end of the attempt
        assert loader(FeedConfig(name="gone", kind="plain", location=f"{url}/gone"))["status"] == "error"
    unreachable = loader(FeedConfig(name="nowhere", kind="plain", location="http://127.0.0.1:9/x", retries=0,
                                    timeout_seconds=1))
    assert unreachable["status"] == "error"
    other = loader(FeedConfig(name="ftp", kind="plain", location="ftp://127.0.0.1/list.txt"))
    assert other["status"] == "error" and "scheme" in other["error"]


@pytest.mark.parametrize("kind, body", [
    ("stix", b"{not json"),
    ("stix", b"[" * 100_000 + b"]" * 100_000),  # nesting far past any parser's recursion
    ("stix", json.dumps({"type": "bundle", "objects": "nope"}).encode()),
    ("misp", b'{"Event": '),
    ("misp", json.dumps({"Event": [1, 2]}).encode()),
    ("misp", json.dumps([{"Event": {"Attribute": [{"value": None}]}}, 7]).encode()),
    ("plain", b"\xff\xfe\x00bad bytes\x80"),
])
def test_malformed_content_is_refused_with_the_reason(loader, tmp_path, kind, body):
    path = tmp_path / "feed.bin"
    path.write_bytes(body)
    state = loader(FeedConfig(name=f"bad-{kind}", kind=kind, location=str(path)))
    assert state["status"] == "refused" and state["error"].startswith("malformed"), state
    assert len(loader.service.index) == 0


def test_catch_all_indicators_and_regex_patterns_are_refused_and_counted(loader, tmp_path):
    plain = tmp_path / "list.txt"
    plain.write_text("0.0.0.0/0\n::/0\n10.0.0.0/8\ncom\nvn\n(a+)+$\n203.0.113.7\n")
    state = loader(FeedConfig(name="broad-list", kind="plain", location=str(plain)))
    assert state["status"] == "ok" and state["last_result"]["loaded"] == 1
    assert state["last_result"]["refused"] == {"too_broad": 5, "invalid_value": 1}
    assert _refused_metric("broad-list", "too_broad") >= 5
    indicators = [
        {"type": "indicator", "spec_version": "2.1", "id": f"indicator--{n:08d}-0000-4000-8000-000000000000",
         "created": "2026-01-01T00:00:00Z", "modified": "2026-01-01T00:00:00Z", "valid_from": "2026-01-01T00:00:00Z",
         "pattern_type": "stix", "pattern": pattern}
        for n, pattern in enumerate([
            "[url:value MATCHES '^(a+)+$']", "[domain-name:value LIKE '%.example']",
            "[ipv4-addr:value ISSUBSET '0.0.0.0/0']", "[domain-name:value = 'com']",
            "[ipv4-addr:value = '203.0.113.8'] AND [ipv4-addr:value = '203.0.113.9']",
            "[ipv4-addr:value = '" + "1" * 70_000 + "']",
            "[ipv4-addr:value = '203.0.113.10']"], start=1)]
    indicators.append({"type": "indicator", "pattern": "[ipv4-addr:value = '203.0.113.11']"})  # no id, no times
    bundle = tmp_path / "bundle.json"
    bundle.write_text(json.dumps({"type": "bundle", "id": "bundle--1", "objects": indicators}))
    state = loader(FeedConfig(name="hostile-stix", kind="stix", location=str(bundle)))
    assert state["status"] == "ok" and state["last_result"]["loaded"] == 1, state
    refused = state["last_result"]["refused"]
    assert refused.get("unsupported") == 3 and refused.get("too_broad") == 2 and refused.get("too_large") == 1
    assert refused.get("malformed") == 1  # the object with neither id nor times
    assert sum(refused.values()) == 7
    assert sorted(d["values"][0] for d in loader.service.index.docs.values()) == ["203.0.113.10", "203.0.113.7"]


def test_too_many_indicators_stop_at_the_feed_limit(loader, tmp_path):
    plain = tmp_path / "many.txt"
    plain.write_text("".join(f"198.18.{i // 256}.{i % 256}\n" for i in range(50)))
    state = loader(FeedConfig(name="many", kind="plain", location=str(plain), max_indicators=10))
    assert state["last_result"]["loaded"] == 10 and state["last_result"]["refused"] == {"too_many": 40}
