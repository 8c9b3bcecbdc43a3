"""Threat updates end to end (docs/threat-updates.md): a TAXII 2.1 server the test runs on loopback (the suite's own,
in a first suite) serves a collection; a second suite pulls it on its schedule as a feed; events sent to the second
suite's ingest API match an indicator, and the STIX Sighting goes back to the first suite's TAXII collection with the
indicator's id and the count. Expiry (an indicator already expired is not loaded; one that expires seconds later stops
matching and is swept out), decay (the formula, the floor, the sweep, deletion after retention), a MISP JSON file and a
plain list feed, sightings per source and the per-agency digest in the API."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
import stix2
from taxii2client.v21 import Collection

from detections.indicators.decay import effective_confidence, why_not_matching
from detections.indicators.feed_formats import FeedDefaults, feed_indicator_id, parse_plain
from detections.indicators.model import build
from detections.indicators.store import IndicatorService
from detections.indicators.stix import TLP2_IDS
from soc import ecs
from soc.storage import store_from_url
from soc_api.feeds.runner import pull_feed
from soc_api.feeds.settings import DecayConfig, FeedConfig, FeedsConfig, SightingsBackConfig
from soc_api.settings import ApiSettings, RateLimitConfig, TaxiiCollectionConfig, TaxiiConfig
from soc_api.taxii.server import collection_uuid
from tests.api_fixtures import AGENCY_A, AGENCY_B, call, client_for, keys_for, running_suite
from tests.conftest import wait_for

FAST = RateLimitConfig(requests_per_second=1000, burst=1000)
NDJSON = {"Content-Type": "application/x-ndjson"}


def _iso(dt: datetime) -> str:
    return ecs.utc_iso(dt)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _publisher_api() -> ApiSettings:
    taxii = TaxiiConfig()
    taxii.collections.append(TaxiiCollectionConfig(
        id="feedback", title="Sightings of our indicators", source="received_sightings",
        read_roles=["analyst"], write_roles=["national_centre"]))
    return ApiSettings(rate_limit=FAST, taxii=taxii)


def _ingest(suite, key: str, *ips: str) -> None:
    body = b"\n".join(json.dumps({"@timestamp": _iso(_now()), "message": f"connection to {ip}",
                                  "event": {"dataset": "custom.net", "kind": "event"},
                                  "destination": {"ip": ip}, "host": {"name": "app-01"}}).encode() for ip in ips)
    with client_for(suite) as client:
        answer = call(client, "POST", "/api/v1/ingest", key, content=body, headers=NDJSON)
        assert answer.status_code == 202, answer.text


@pytest.fixture(scope="module")
def publisher(tmp_path_factory):
    with running_suite(tmp_path_factory.mktemp("feed-publisher"), api=_publisher_api()) as suite:
        suite.test_keys = keys_for(suite.store, agencies=())
        yield suite


def test_a_taxii_feed_pulled_on_schedule_matches_and_sends_the_sighting_back(publisher, tmp_path, monkeypatch):
    now = _now()
    shared = publisher.service("indicators")
    bad = build([{"type": "ipv4", "value": "198.51.100.77"}], source="soc", tlp="green", confidence=90,
                name="C2 of campaign X")
    old = build([{"type": "ipv4", "value": "198.51.100.78"}], source="soc", tlp="green", confidence=90,
                valid_from="2026-01-01T00:00:00Z", valid_until=_iso(now - timedelta(days=1)))
    short = build([{"type": "domain", "value": "short-lived.example"}], source="soc", tlp="green", confidence=90,
                  valid_from=_iso(now - timedelta(minutes=1)), valid_until=_iso(now + timedelta(seconds=15)))
    red = build([{"type": "ipv4", "value": "198.51.100.79"}], source="soc", tlp="red", confidence=90)
    shared.upsert([bad, old, short, red])
    keys = publisher.test_keys
    base = f"http://127.0.0.1:{publisher.bound['api']}/taxii2/soc/collections/"
    monkeypatch.setenv("TEST_FEED_TAXII_KEY", keys["national_centre"])
    feed = FeedConfig(name="province-a", kind="taxii", location=f"{base}{collection_uuid('indicators')}/",
                      password_env="TEST_FEED_TAXII_KEY", interval_seconds=1, decay=DecayConfig(model="none"),
                      sightings=SightingsBackConfig(collection_url=f"{base}{collection_uuid('feedback')}/",
                                                    interval_seconds=0.5, max_tlp="amber", tlp="green"))
    api = ApiSettings(rate_limit=FAST, feeds=FeedsConfig(feeds=[feed], sweep_interval_seconds=0.5))
    with running_suite(tmp_path, api=api) as puller:
        puller_keys = keys_for(puller.store, agencies=(AGENCY_A,))
        # The schedule pulls the feed: the expired indicator is refused, the others load.
        state = wait_for(lambda: (s := puller.store.get_document("feed_state", "province-a")) and
                         s.get("status") == "ok" and s, 30, "the feed's first pull")
        assert state["last_result"]["loaded"] == 3 and state["last_result"]["refused"] == {"expired": 1}
        index = puller.service("indicators").index
        # Stored under the feed's own id for each (never the source's id: a feed cannot replace another source's
        # indicator), the source's id kept as stix_id.
        here = {d["id"]: feed_indicator_id("province-a", d["id"]) for d in (bad, old, short, red)}
        assert here[bad["id"]] in index.docs and here[short["id"]] in index.docs and here[old["id"]] not in index.docs
        # The short-lived indicator matches now (checked at once: it lives 15 s from the test's start).
        event = {"@timestamp": _iso(_now()), "event": {"id": "e-short"}, "dns": {"question": {"name":
                 "www.short-lived.example"}}, "organization": {"id": AGENCY_A}}
        assert [d.meta.id for d in puller.engine.evaluate([event])] == ["soc-indicator-match"]
        assert bad["id"] not in index.docs
        pulled = index.docs[here[bad["id"]]]
        assert pulled["stix_id"] == bad["id"]
        assert pulled["source"] == "province-a" and pulled["tlp"] == "green" and pulled["confidence"] == 90
        assert pulled["feed"]["name"] == "province-a" and pulled["valid_until"]  # the feed's lifetime
        # Two events from agency A's traffic match the indicator: one alert (deduplicated), one sighting of 2.
        _ingest(puller, puller_keys[AGENCY_A], "198.51.100.77", "198.51.100.77", "198.51.100.79")
        sighting = wait_for(lambda: next((s for s in puller.store.find_documents("sightings", _q())
                                          if s["indicator_id"] == here[bad["id"]] and s["count"] == 2), None), 30,
                            "the sighting in the pulling suite")
        assert sighting["source"] == "province-a"
        # ... and goes back to the publisher's TAXII collection, with the source's own id for it and the count.
        received = wait_for(lambda: [d for d in publisher.store.find_documents("received_sightings", _q())
                                     if d["sighting_of_ref"] == bad["id"]], 30, "the sighting at the TAXII server")
        assert received[0]["count"] == 2
        obj = received[0]["object"]
        assert obj["type"] == "sighting" and obj["object_marking_refs"] == [TLP2_IDS["green"]]
        # The province, not the agency, is named; no event, address or host goes with it.
        assert "observed_data_refs" not in obj and len(obj["where_sighted_refs"]) == 1
        assert AGENCY_A not in json.dumps(obj) and "198.51.100.77" not in json.dumps(obj)
        # The TLP:RED indicator's sighting is above what the source may receive: withheld, counted.
        assert not [d for d in publisher.store.find_documents("received_sightings", _q())
                    if d["sighting_of_ref"] == red["id"]]
        feed_state = wait_for(lambda: (s := puller.store.get_document("feed_state", "province-a")).get(
            "sightings", {}).get("withheld_tlp") is not None and s, 10, "the sightings run's record")
        assert feed_state["sightings"]["total_sent"] >= 1
        # The TAXII server serves it to its readers like any object.
        reader = Collection(f"{base}{collection_uuid('feedback')}/", user="soc", password=keys["analyst"])
        served = reader.get_objects()["objects"]
        assert [(o["sighting_of_ref"], o["count"]) for o in served if o["sighting_of_ref"] == bad["id"]] == [
            (bad["id"], 2)]
        assert red["id"] not in {o["sighting_of_ref"] for o in served}  # (the short-lived one may be there too)
        # Expiry: the short-lived indicator (it matched right after the pull) stops once its time has passed (then
        # swept out, kept).
        wait_for(lambda: (puller.store.get_document("indicators", here[short["id"]]) or {}).get("expired"), 30,
                 "the short-lived indicator to expire")
        assert here[short["id"]] not in index.docs
        assert puller.store.get_document("indicators", here[short["id"]])["expired_reason"] == "expired"
        assert puller.engine.evaluate([dict(event, event={"id": "e-short-2"})]) == []
        # The API: feed status, sightings per source, and agency A's digest (agency B's is empty).
        with client_for(puller) as client:
            feeds = call(client, "GET", "/api/v1/feeds", puller_keys["analyst"]).json()["feeds"]
            assert feeds[0]["name"] == "province-a" and feeds[0]["status"] == "ok"
            assert "TEST_FEED" not in json.dumps(feeds)
            assert call(client, "GET", "/api/v1/feeds", puller_keys[AGENCY_A]).status_code == 403
            per_source = call(client, "GET", "/api/v1/indicators/sightings", puller_keys["analyst"],
                              params={"source": "province-a"}).json()["sightings"]
            assert {s["indicator_id"] for s in per_source} == {here[bad["id"]], here[red["id"]], here[short["id"]]}
            since = _iso(now - timedelta(hours=1))
            assert call(client, "GET", "/api/v1/digest", puller_keys[AGENCY_A],
                        params={"since": since, "agency": AGENCY_B}).status_code == 403  # tenancy as everywhere
            answer = call(client, "GET", "/api/v1/digest", puller_keys[AGENCY_A], params={"since": since})
            assert answer.status_code == 200, answer.text
            mine = answer.json()
            assert mine["agency"] == AGENCY_A  # an agency key gets its own agency's
            seen = {e["indicator_id"]: e for e in mine["new_indicators_seen"]}
            mine_bad, mine_red = seen[here[bad["id"]]], seen[here[red["id"]]]
            assert mine_bad["count"] == 2 and mine_bad["values"] == ["198.51.100.77"]
            assert mine_red["withheld"] and "values" not in mine_red  # TLP:RED, agency key
            assert mine["new_indicators"]["by_source"].get("province-a", 0) >= 2
            other = call(client, "GET", "/api/v1/digest", puller_keys["analyst"],
                         params={"since": since, "agency": AGENCY_B}).json()
            assert other["agency"] == AGENCY_B and other["new_indicators_seen"] == []
            assert call(client, "GET", "/api/v1/digest", puller_keys["analyst"],
                        params={"since": "yesterday"}).status_code == 422


def _q():
    from soc.storage.base import DocumentQuery

    return DocumentQuery(limit=1000)


def test_decay_follows_the_formula_and_the_sweep_takes_out_and_later_deletes(tmp_path):
    store = store_from_url(f"sqlite:///{tmp_path / 'soc.db'}")
    store.open()
    try:
        service = IndicatorService(store)
        t0 = "2026-12-01T00:00:00.000Z"
        linear = FeedDefaults(name="lin", kind="plain", confidence=80, lifetime_seconds=1000,
                              decay={"model": "linear", "lifetime_seconds": 100, "floor": 20})
        expo = FeedDefaults(name="exp", kind="plain", confidence=80, lifetime_seconds=1000,
                            decay={"model": "exponential", "half_life_seconds": 10, "floor": 20})
        lin_doc = parse_plain(b"203.0.113.5\n", linear, now=t0).docs[0]
        exp_doc = parse_plain(b"203.0.113.6\n", expo, now=t0).docs[0]
        at = lambda seconds: ecs.parse_time(t0) + timedelta(seconds=seconds)  # noqa: E731
        # linear: c0 * (1 - t / lifetime); exponential: c0 * 2^(-t / half-life)
        assert effective_confidence(lin_doc, at(50)) == pytest.approx(40.0)
        assert effective_confidence(lin_doc, at(200)) == 0.0
        assert effective_confidence(exp_doc, at(20)) == pytest.approx(20.0)
        assert effective_confidence(exp_doc, at(30)) == pytest.approx(10.0)
        # Below the floor (20): no longer matching.
        assert why_not_matching(lin_doc, _iso(at(50))) is None
        assert why_not_matching(lin_doc, _iso(at(80))) == "decayed"  # 16 < 20
        assert why_not_matching(exp_doc, _iso(at(19))) is None and why_not_matching(exp_doc, _iso(at(21))) == "decayed"
        service.upsert([lin_doc, exp_doc])
        counts = service.expire(now=_iso(at(25)))
        assert counts["decayed"] == 1 and exp_doc["id"] not in service.index.docs and lin_doc["id"] in service.index.docs
        kept = store.get_document("indicators", exp_doc["id"])
        assert kept["expired"] and kept["expired_reason"] == "decayed" and kept["expired_at"] == _iso(at(25))
        # Seen again in the feed: last_seen moves, confidence is back, and it matches again.
        again = parse_plain(b"203.0.113.6\n", expo, now=_iso(at(30))).docs[0]
        service.upsert([again])
        assert exp_doc["id"] in service.index.docs and why_not_matching(again, _iso(at(31))) is None
        # Past expiry: taken out; kept as an expired record until the retention period, then deleted.
        assert service.expire(now=_iso(at(2000)))["expired"] == 2
        assert store.get_document("indicators", lin_doc["id"])["expired_reason"] == "expired"
        assert service.expire(now=_iso(at(2100)), retention_seconds=3600)["deleted"] == 0
        assert service.expire(now=_iso(at(2000 + 3601)), retention_seconds=3600)["deleted"] == 2
        assert store.get_document("indicators", lin_doc["id"]) is None
    finally:
        store.close()


MISP_EVENT = {"Event": {
    "info": "Phishing wave against provincial mail", "uuid": "5f0c9c6e-1a2b-4c3d-8e9f-0a1b2c3d4e5f",
    "Tag": [{"name": "tlp:green"}, {"name": "misp-galaxy:threat-actor=\"X\""}],
    "Attribute": [
        {"type": "ip-dst", "value": "192.0.2.44", "to_ids": True, "uuid": "0b7c3f0e-9d1e-4c2b-8a4f-3e2d1c0b9a88",
         "timestamp": "1764547200", "category": "Network activity"},
        {"type": "domain", "value": "login-portal.example", "to_ids": True, "Tag": [{"name": "tlp:amber"}]},
        {"type": "sha256", "value": "a" * 64, "to_ids": True},
        {"type": "url", "value": "http://login-portal.example/owa", "to_ids": False},
        {"type": "email-src", "value": "boss@example.org", "to_ids": True},
    ],
    "Object": [{"name": "file", "Attribute": [{"type": "md5", "value": "b" * 32, "to_ids": True}]}],
}}


def test_misp_and_plain_list_feeds_load_with_source_tlp_and_expiry(tmp_path):
    store = store_from_url(f"sqlite:///{tmp_path / 'soc.db'}")
    store.open()
    try:
        service = IndicatorService(store)
        misp_file = tmp_path / "event.json"
        misp_file.write_text(json.dumps(MISP_EVENT))
        plain_file = tmp_path / "list.txt"
        plain_file.write_text("# blocklist of the week\n203.0.113.0/24\nbad.example.net   # phishing\n\n"
                              "http://203.0.113.9:8080/x.sh\n" + "c" * 40 + "\n")
        cfg = FeedsConfig(feeds=[
            FeedConfig(name="misp-partner", kind="misp", location=str(misp_file), default_confidence=70,
                       default_tlp="amber", expire_after_seconds=3600),
            FeedConfig(name="blocklist", kind="plain", location=misp_file.with_name("list.txt").as_uri(),
                       default_confidence=60, default_tlp="clear", expire_after_seconds=7200)])
        misp = pull_feed(store, service, cfg.feeds[0], cfg)
        assert misp["status"] == "ok" and misp["last_result"]["loaded"] == 4
        assert misp["last_result"]["refused"] == {"not_for_detection": 1, "unsupported": 1}
        by_value = {d["values"][0]: d for d in service.index.docs.values()}
        assert by_value["192.0.2.44"]["tlp"] == "green" and by_value["login-portal.example"]["tlp"] == "amber"
        # The attribute's uuid is kept as the STIX id; the document is the feed's own (feed_indicator_id).
        assert by_value["192.0.2.44"]["stix_id"] == "indicator--0b7c3f0e-9d1e-4c2b-8a4f-3e2d1c0b9a88"
        assert by_value["192.0.2.44"]["id"] == feed_indicator_id("misp-partner", by_value["192.0.2.44"]["stix_id"])
        assert by_value["b" * 32]["source"] == "misp-partner" and by_value["a" * 64]["confidence"] == 70
        until = ecs.parse_time(by_value["192.0.2.44"]["valid_until"]) - ecs.parse_time(misp["last_attempt"])
        assert abs(until.total_seconds() - 3600) < 60
        plain = pull_feed(store, service, cfg.feeds[1], cfg)
        assert plain["status"] == "ok" and plain["last_result"]["loaded"] == 4, plain
        by_value = {d["values"][0]: d for d in service.index.docs.values()}
        assert by_value["203.0.113.0/24"]["types"] == ["ipv4"] and by_value["c" * 40]["types"] == ["sha1"]
        assert by_value["bad.example.net"]["tlp"] == "clear" and by_value["bad.example.net"]["source"] == "blocklist"
        assert by_value["http://203.0.113.9:8080/x.sh"]["types"] == ["url"]
        assert service.index.ip("203.0.113.200")  # the range matches
        # A person revokes one here: the next pull does not bring it back.
        service.revoke(by_value["bad.example.net"]["id"], by="analyst-1")
        pull_feed(store, service, cfg.feeds[1], cfg)
        assert by_value["bad.example.net"]["id"] not in service.index.docs
    finally:
        store.close()


def test_stix_bundle_feed_over_http_on_loopback(tmp_path):
    from tests.security.test_feed_input import serving

    indicator = stix2.v21.Indicator(name="bad", pattern="[ipv4-addr:value = '192.0.2.200']", pattern_type="stix",
                                    valid_from="2026-01-01T00:00:00Z", confidence=85,
                                    object_marking_refs=[TLP2_IDS["amber"]])
    body = stix2.v21.Bundle(objects=[indicator]).serialize().encode()
    store = store_from_url(f"sqlite:///{tmp_path / 'soc.db'}")
    store.open()
    try:
        service = IndicatorService(store)
        with serving({"/bundle.json": (200, body)}) as url:
            feed = FeedConfig(name="bundle", kind="stix", location=f"{url}/bundle.json",
                              allow_networks=["127.0.0.0/8"])  # the test's server is on loopback
            state = pull_feed(store, service, feed, FeedsConfig(feeds=[feed]))
        assert state["status"] == "ok" and state["last_result"]["loaded"] == 1
        doc = service.index.docs[feed_indicator_id("bundle", indicator.id)]
        assert (doc["source"], doc["tlp"], doc["confidence"]) == ("bundle", "amber", 85)
    finally:
        store.close()


def test_a_store_error_does_not_end_a_feeds_schedule_and_feeds_have_their_own_threads(tmp_path):
    import asyncio
    import threading
    import types

    from prometheus_client import REGISTRY

    from soc.storage.base import StoreError
    from soc_api.feeds import runner

    (tmp_path / "l.txt").write_text("203.0.113.5\n")
    store = store_from_url(f"sqlite:///{tmp_path / 'soc.db'}")
    store.open()
    real_get, calls, threads = store.get_document, {"n": 0}, set()

    def flaky_get(collection, doc_id):
        threads.add(threading.current_thread().name)
        calls["n"] += 1
        if calls["n"] == 1 and collection == "feed_state":
            raise StoreError("search engine restarting (one request)")
        return real_get(collection, doc_id)

    store.get_document = flaky_get
    feed = FeedConfig(name="flaky-store", kind="plain", location=str(tmp_path / "l.txt"), interval_seconds=0.2,
                      retry_initial_seconds=0.1)
    cfg = FeedsConfig(feeds=[feed])
    before = REGISTRY.get_sample_value("soc_feed_task_errors_total", {"feed": "flaky-store", "task": "pull"}) or 0

    async def main():
        task = asyncio.create_task(runner.feed_task(types.SimpleNamespace(store=store), feed, cfg,
                                                    IndicatorService(store))())
        try:
            for _ in range(50):
                await asyncio.sleep(0.1)
                if real_get("feed_state", "flaky-store"):
                    break
            assert not task.done()
            return real_get("feed_state", "flaky-store")
        finally:
            task.cancel()

    try:
        state = asyncio.run(main())
        assert state and state["status"] == "ok" and state["last_result"]["loaded"] == 1
        assert REGISTRY.get_sample_value("soc_feed_task_errors_total",
                                         {"feed": "flaky-store", "task": "pull"}) == before + 1
        # The blocking work ran on the feeds' own pool, not the loop's default executor.
        assert threads and all(name.startswith("soc-feeds") for name in threads), threads
    finally:
        store.close()
