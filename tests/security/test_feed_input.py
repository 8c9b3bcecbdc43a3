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
from soc.storage.base import DocumentQuery
from soc_api.feeds.runner import pull_feed
from soc_api.feeds.settings import FeedConfig, FeedsConfig


@contextmanager
def serving(routes: dict, host: str = "127.0.0.1", seen: list | None = None):
    """A loopback HTTP server: path -> (status, body bytes) or a callable(handler) writing the answer itself (``*``:
    any other path); ``seen`` gets (path, headers) of every request."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):  # noqa: N802
            if seen is not None:
                seen.append((self.path, dict(self.headers)))
            route = routes.get(self.path) or routes.get("*")
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

    server = ThreadingHTTPServer((host, 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
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
            state = loader(FeedConfig(name=name, kind="plain", location=location, max_bytes=4096,
                                      allow_networks=["127.0.0.0/8"]))
            assert state["status"] == "refused" and "too_large" in state["error"], (name, state)
            assert state["consecutive_failures"] == 1 and state["next_attempt"] > state["last_attempt"]
            assert _refused_metric(name, "too_large") == before + 1
    assert len(loader.service.index) == 0


def test_slow_and_failing_servers_are_reported_and_retried_later(loader):
    with serving({"/slow": _slow, "/down": (503, b"busy"), "/gone": (404, b"")}) as url:
        slow = loader(FeedConfig(name="slow", kind="plain", location=f"{url}/slow", timeout_seconds=0.5, retries=0,
                                 allow_networks=["127.0.0.0/8"]))
        assert slow["status"] == "error" and "Timeout" in slow["error"]
        down = FeedConfig(name="down", kind="plain", location=f"{url}/down", retries=1, retry_initial_seconds=5,
                          allow_networks=["127.0.0.0/8"])
        first = loader(down)
        second = loader(down)
        assert first["status"] == second["status"] == "error" and "HTTP 503" in second["error"]
        assert second["consecutive_failures"] == 2  # the backoff doubles: 5 s, then 10 s
        gap = lambda s: (ecs.parse_time(s["next_attempt"]) - ecs.parse_time(s["last_attempt"])).total_seconds()  # noqa: E731
        assert 5 <= gap(first) <= 7 and 10 <= gap(second) <= 12  # from the end of the attempt
        assert loader(FeedConfig(name="gone", kind="plain", location=f"{url}/gone",
                                 allow_networks=["127.0.0.0/8"]))["status"] == "error"
    unreachable = loader(FeedConfig(name="nowhere", kind="plain", location="http://127.0.0.1:9/x", retries=0,
                                    timeout_seconds=1, allow_networks=["127.0.0.0/8"]))
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


# --- the review of the feeds (docs/security.md section 12): each attack through the real path ----------------------
LOOPBACK = ["127.0.0.0/8"]  # the tests' servers are on loopback: their feeds allow it, nothing else


def _stacked_gzip_bomb(handler):
    inner = gzip.compress(b"\0" * 64_000_000, 9)  # 64 MB of zeros in about 60 kB
    body = gzip.compress(inner, 9)  # ... and gzipped again: a few hundred bytes on the wire
    handler.send_response(200)
    handler.send_header("Content-Encoding", "gzip, gzip")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def _encoded(encoding: str, body: bytes):
    def answer(handler):
        handler.send_response(200)
        handler.send_header("Content-Encoding", encoding)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return answer


def test_a_stacked_gzip_bomb_and_unknown_encodings_are_refused_at_the_cap(loader):
    import zlib

    deflated = zlib.compress(b"203.0.113.21\n")
    many = gzip.compress(b"#" * 100_000)
    routes = {"/stacked": _stacked_gzip_bomb, "/br": _encoded("br", b"\x0b\x02\x80203.0.113.1\n\x03"),
              "/deflate": _encoded("deflate", deflated), "/gzip": _encoded("gzip", gzip.compress(b"203.0.113.22\n")),
              "/big": _encoded("gzip", many)}
    with serving(routes) as url:
        started = time.monotonic()
        stacked = loader(FeedConfig(name="stacked", kind="plain", location=f"{url}/stacked", max_bytes=1_048_576,
                                    allow_networks=LOOPBACK))
        assert stacked["status"] == "refused" and stacked["error"].startswith("unsupported"), stacked
        assert "stacked content encodings" in stacked["error"] and time.monotonic() - started < 5
        brotli = loader(FeedConfig(name="brotli", kind="plain", location=f"{url}/br", allow_networks=LOOPBACK))
        assert brotli["status"] == "refused" and "content encoding 'br'" in brotli["error"]
        # One gzip (or deflate) is read, decompressed here: up to the cap, never past it.
        big = loader(FeedConfig(name="big-gzip", kind="plain", location=f"{url}/big", max_bytes=50_000,
                                allow_networks=LOOPBACK))
        assert big["status"] == "refused" and big["error"].startswith("too_large")
        for name in ("deflate", "gzip"):
            ok = loader(FeedConfig(name=name, kind="plain", location=f"{url}/{name}", allow_networks=LOOPBACK))
            assert ok["status"] == "ok" and ok["last_result"]["loaded"] == 1, ok
    assert sorted(d["values"][0] for d in loader.service.index.docs.values()) == ["203.0.113.21", "203.0.113.22"]


def test_the_taxii_transport_refuses_a_stacked_gzip_bomb_and_a_slow_drip():
    import requests
    from taxii2client.v21 import Collection

    from soc_api.taxii.client import ResponseTooLarge, bounded

    def drip(handler):
        handler.send_response(200)
        handler.send_header("Content-Type", "application/taxii+json;version=2.1")
        handler.send_header("Content-Length", "1000")
        handler.end_headers()
        try:
            for _ in range(100):  # 20 s at most, a byte every 0.2 s: never a read timeout
                handler.wfile.write(b" ")
                handler.wfile.flush()
                time.sleep(0.2)
        except (BrokenPipeError, ConnectionResetError):
            pass

    big = _encoded("gzip", gzip.compress(b" " * 3_000_000))
    answers = {"bomb": _stacked_gzip_bomb, "big": big, "drip": drip}

    def any_request(handler):  # the collection and its objects alike
        answers[handler.path.split("/")[1]](handler)

    with serving({"*": any_request}) as url:
        def collection(path):
            return bounded(Collection(f"{url}/{path}/"), timeout=1.0, max_bytes=1_048_576, retries=0, deadline=2.0)

        with pytest.raises(requests.exceptions.ContentDecodingError, match="stacked content encodings"):
            collection("bomb").get_objects()
        with pytest.raises(ResponseTooLarge):
            collection("big").get_objects()
        started = time.monotonic()
        with pytest.raises(requests.Timeout, match="deadline"):
            collection("drip").get_objects()
        assert time.monotonic() - started < 5


def test_a_slow_drip_is_cut_off_at_the_whole_fetch_deadline(loader):
    def drip(handler):
        handler.send_response(200)
        handler.send_header("Content-Length", "1000")
        handler.end_headers()
        try:
            for _ in range(100):  # 20 s at most, a byte every 0.2 s: never a read timeout
                handler.wfile.write(b"#")
                handler.wfile.flush()
                time.sleep(0.2)
        except (BrokenPipeError, ConnectionResetError):
            pass

    with serving({"/drip": drip}) as url:
        started = time.monotonic()
        state = loader(FeedConfig(name="drip", kind="plain", location=f"{url}/drip", timeout_seconds=0.5,
                                  retries=0, allow_networks=LOOPBACK))  # deadline: 4 x 0.5 s
        assert time.monotonic() - started < 5
        assert state["status"] == "error" and "deadline of 2 s" in state["error"], state
        explicit = loader(FeedConfig(name="drip", kind="plain", location=f"{url}/drip", timeout_seconds=0.5,
                                     deadline_seconds=1.0, retries=0, allow_networks=LOOPBACK))
        assert "deadline of 1 s" in explicit["error"]


def test_redirects_stay_on_the_feeds_hosts_and_the_key_stays_with_its_origin(loader, monkeypatch):
    monkeypatch.setenv("TEST_FEED_KEY", "s3cret-feed-key")
    origin_seen, other_seen = [], []
    with serving({"/list": (200, b"203.0.113.31\n")}, host="127.0.0.2", seen=other_seen) as other:
        def redirect(to):
            def answer(handler):
                handler.send_response(302)
                handler.send_header("Location", to)
                handler.send_header("Content-Length", "0")
                handler.end_headers()

            return answer

        routes = {"/to-other": redirect(f"{other}/list"), "/to-file": redirect("file:///etc/passwd"),
                  "/to-metadata": redirect("http://169.254.169.254/latest/meta-data/"),
                  "/to-self": redirect("/list"), "/list": (200, b"203.0.113.32\n"),
                  "/loop": redirect("/loop")}
        with serving(routes, seen=origin_seen) as url:
            def feed(name, path, **extra):
                return FeedConfig(name=name, kind="plain", location=f"{url}{path}", retries=0,
                                  auth_header="X-Feed-Key", auth_env="TEST_FEED_KEY", allow_networks=LOOPBACK,
                                  **extra)

            # Another host, not in redirect_hosts: refused, and nothing reaches it.
            refused = loader(feed("to-other", "/to-other"))
            assert refused["status"] == "error" and "redirect_hosts" in refused["error"] and not other_seen
            # Out of http(s) (file://), or to the cloud metadata address: refused before any request.
            assert "another scheme" in loader(feed("to-file", "/to-file"))["error"]
            metadata = loader(feed("to-metadata", "/to-metadata", redirect_hosts=["169.254.169.254"]))
            assert metadata["status"] == "error" and "link-local" in metadata["error"], metadata
            # A listed host is followed, without the key: it goes only to the feed's own origin.
            listed = loader(feed("listed", "/to-other", redirect_hosts=["127.0.0.2"]))
            assert listed["status"] == "ok" and listed["last_result"]["loaded"] == 1, listed
            assert [p for p, _ in other_seen] == ["/list"]
            assert not any(k.lower() == "x-feed-key" for k in other_seen[0][1])
            assert all(h.get("X-Feed-Key") == "s3cret-feed-key" for p, h in origin_seen if p == "/to-other")
            # The same host: followed, with the key. A loop stops after 3 redirects.
            assert loader(feed("to-self", "/to-self"))["status"] == "ok"
            assert "more than 3 redirects" in loader(feed("loop", "/loop"))["error"]
            # Without an allowance, loopback (like any private or reserved address) is no target at all.
            before = len(origin_seen)
            bare = loader(FeedConfig(name="bare", kind="plain", location=f"{url}/list", retries=0))
            assert bare["status"] == "error" and "loopback" in bare["error"] and len(origin_seen) == before
    for location in ("http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/feed", "http://[::1]:9/x",
                     "http://0.0.0.0:9/x", "http://[fe80::1]/x", "http://100.64.0.1/x"):
        state = loader(FeedConfig(name="internal", kind="plain", location=location, retries=0))
        assert state["status"] == "error" and "refused target" in state["error"], (location, state)


def test_query_secrets_never_show(loader, monkeypatch):
    from soc_api.feeds.fetch import redacted

    monkeypatch.setenv("TEST_FEED_APIKEY", "k-from-the-environment")
    seen = []
    with serving({"*": (404, b"")}, seen=seen) as url:
        inline = loader(FeedConfig(name="inline", kind="plain", location=f"{url}/x?apikey=inline-secret&fmt=txt",
                                   retries=0, allow_networks=LOOPBACK))
        from_env = loader(FeedConfig(name="env", kind="plain", location=f"{url}/y?fmt=txt", retries=0,
                                     query_env={"apikey": "TEST_FEED_APIKEY"}, allow_networks=LOOPBACK))
    assert [p for p, _ in seen] == ["/x?apikey=inline-secret&fmt=txt", "/y?fmt=txt&apikey=k-from-the-environment"]
    for state in (inline, from_env):
        assert state["status"] == "error" and "HTTP 404" in state["error"]
        text = json.dumps(state)
        assert "inline-secret" not in text and "k-from-the-environment" not in text
    assert inline["location"].endswith("/x?apikey=***&fmt=***")
    assert redacted("https://u:pw@feed.example/a?apikey=abc&x=") == "https://feed.example/a?apikey=***&x=***"
    missing = loader(FeedConfig(name="env-missing", kind="plain", location=f"{url}/z", retries=0,
                                query_env={"apikey": "TEST_FEED_NOT_SET"}, allow_networks=LOOPBACK))
    assert missing["status"] == "error" and "TEST_FEED_NOT_SET" in missing["error"]


def test_public_suffixes_local_ranges_and_the_never_block_list_are_refused(loader, tmp_path):
    from types import SimpleNamespace

    from inventory.lookup import Inventory
    from soc_api.feeds.runner import never_block_of

    plain = tmp_path / "list.txt"
    plain.write_text("10.0.1.10\n198.51.100.5\n127.0.0.1\n169.254.169.254\n"  # on the never-block list
                     "gov.vn\ncom.vn\nin-addr.arpa\ngithub.io\n10.0.0.0/16\n192.168.0.0/16\n127.0.0.0/16\n"
                     "169.254.0.0/24\n100.64.0.0/24\nfd00::/64\n"  # public suffixes; private, reserved ranges
                     "10.99.30.40\nmail.gov.vn\n198.18.0.7\n")  # one internal address, a site, one benchmark address
    inventory = Inventory.load("inventory/sample/province.yaml")
    protected = never_block_of(SimpleNamespace(inventory_holder=object(), inventory=inventory, settings=None))
    store = loader.service.store
    state = pull_feed(store, loader.service, FeedConfig(name="careless", kind="plain", location=str(plain)),
                      FeedsConfig(), protected=protected)
    assert state["status"] == "ok" and state["last_result"]["refused"] == {"too_broad": 10, "never_block": 4}, state
    reasons = " ".join(state["last_result"]["reasons"])
    assert "'gov.vn' is a public suffix" in reasons and "10.0.0.0/16 is a range in private" in reasons
    dns = tmp_path / "dns.txt"
    dns.write_text("10.0.1.10\n")
    one = pull_feed(store, loader.service, FeedConfig(name="dns-list", kind="plain", location=str(dns)),
                    FeedsConfig(), protected=protected)
    assert "10.0.1.10 is on the never-block list (10.0.1.10/32: inventory never_block)" in one["last_result"][
        "reasons"][0]
    assert sorted(d["values"][0] for d in loader.service.index.docs.values()) == [
        "10.99.30.40", "198.18.0.7", "mail.gov.vn"]
    assert _refused_metric("careless", "never_block") >= 4
    # Without an inventory, the reserved part of the list still holds.
    bare = loader(FeedConfig(name="bare-list", kind="plain", location=str(plain)))
    assert bare["last_result"]["refused"] == {"too_broad": 10, "never_block": 2}


def test_received_sightings_tell_a_peer_nothing_and_each_peer_keeps_its_own(tmp_path):
    import uuid

    from detections.indicators.model import build
    from soc_api.settings import ApiSettings, RateLimitConfig, TaxiiCollectionConfig, TaxiiConfig
    from soc_api.taxii.server import collection_uuid
    from tests.api_fixtures import AGENCY_A, call, client_for, keys_for, running_suite

    taxii = TaxiiConfig()
    taxii.collections.append(TaxiiCollectionConfig(id="feedback", title="Sightings", source="received_sightings",
                                                   read_roles=["analyst"], write_roles=["national_centre", "agency"]))
    api = ApiSettings(rate_limit=RateLimitConfig(requests_per_second=1000, burst=1000), taxii=taxii)
    with running_suite(tmp_path, api=api) as suite, client_for(suite) as client:
        keys = keys_for(suite.store, agencies=(AGENCY_A,))
        service = suite.service("indicators")
        red = build([{"type": "ipv4", "value": "198.51.100.23"}], source="soc", tlp="red")
        revoked = build([{"type": "ipv4", "value": "198.51.100.24"}], source="soc", tlp="green")
        green = build([{"type": "ipv4", "value": "198.51.100.25"}], source="soc", tlp="green")
        service.upsert([red, revoked, green])
        service.revoke(revoked["id"], by="analyst")
        absent = f"indicator--{uuid.uuid4()}"

        def post(key, *refs, sighting_id=None):
            objects = [{"type": "sighting", "spec_version": "2.1", "id": sighting_id or f"sighting--{uuid.uuid4()}",
                        "created": "2026-12-01T00:00:00Z", "modified": "2026-12-01T00:00:00Z", "count": n + 1,
                        "sighting_of_ref": ref} for n, ref in enumerate(refs)]
            answer = call(client, "POST", f"/taxii2/soc/collections/{collection_uuid('feedback')}/objects/", key,
                          headers={"Content-Type": "application/taxii+json;version=2.1",
                                   "Accept": "application/taxii+json;version=2.1"},
                          content=json.dumps({"objects": objects}))
            assert answer.status_code == 202, answer.text
            return answer.json()

        # An agency key may read clear and green only: a RED indicator, a revoked one and none at all answer alike.
        status = post(keys[AGENCY_A], red["id"], revoked["id"], absent)
        assert status["failure_count"] == 3
        assert len({f["message"] for f in status["failures"]}) == 1
        # One sighting id, posted by two peers: two records, neither replaces the other's.
        same = f"sighting--{uuid.uuid4()}"
        assert post(keys[AGENCY_A], green["id"], sighting_id=same)["success_count"] == 1
        assert post(keys["national_centre"], green["id"], green["id"], sighting_id=same)["success_count"] == 2
        stored = [d for d in suite.store.find_documents("received_sightings", DocumentQuery(limit=100))
                  if d["stix_id"] == same]
        assert len(stored) == 2 and len({d["received_from"] for d in stored}) == 2
        # The national centre may read every level: the RED one is taken from it.
        assert post(keys["national_centre"], red["id"])["success_count"] == 1


def test_no_source_replaces_another_sources_indicator(loader, tmp_path):
    from detections.indicators.model import build, indicator_id

    service = loader.service
    local = build([{"type": "domain", "value": "c2.evil-example.net"}], source="soc", tlp="amber+strict",
                  confidence=90)
    centre = build([{"type": "ipv4", "value": "198.51.100.66"}], source="national-centre", tlp="red", confidence=95,
                   stix_id="indicator--5d0c1e2f-4a3b-4c5d-8e6f-7a8b9c0d1e2f", modified="2026-12-01T00:00:00.000Z")
    service.upsert([local, centre])
    # A MISP feed naming both ids, newer, harmless values, TLP:CLEAR: stored under its own ids, nothing replaced.
    event = {"Event": {"info": "x", "Tag": [{"name": "tlp:clear"}], "Attribute": [
        {"type": "md5", "value": "0" * 32, "to_ids": True, "uuid": centre["id"].removeprefix("indicator--"),
         "timestamp": "1893456000"},
        {"type": "md5", "value": "1" * 32, "to_ids": True, "uuid": local["id"].removeprefix("indicator--"),
         "timestamp": "1893456000"}]}}
    misp = tmp_path / "misp.json"
    misp.write_text(json.dumps(event))
    state = loader(FeedConfig(name="community-misp", kind="misp", location=str(misp), default_tlp="clear"))
    assert state["status"] == "ok" and state["last_result"]["loaded"] == 2
    for doc in (local, centre):
        kept = service.store.get_document("indicators", doc["id"])
        assert (kept["source"], kept["tlp"], kept["values"]) == (doc["source"], doc["tlp"], doc["values"])
    assert service.index.ip("198.51.100.66") == {centre["id"]}
    # A feed whose name is another writer's source ("soc", the analysts'): the same value gives the same id, and
    # the store refuses to let it replace the analysts' indicator (id_conflict), counted.
    plain = tmp_path / "soc.txt"
    plain.write_text("c2.evil-example.net\n")
    assert indicator_id("soc", [{"type": "domain", "value": "c2.evil-example.net"}]) == local["id"]
    clash = loader(FeedConfig(name="soc", kind="plain", location=str(plain), default_tlp="clear"))
    assert clash["last_result"]["refused"] == {"id_conflict": 1} and clash["last_result"]["loaded"] == 0
    assert service.store.get_document("indicators", local["id"])["tlp"] == "amber+strict"
    assert _refused_metric("soc", "id_conflict") >= 1
