"""Indicators: normalisation, the lookup index (CIDR prefixes, parent domains, URLs, hashes), expiry, matching on
ingest through the real pipeline (syslog lines -> ECS -> store -> matcher -> alert + sighting), STIX in and out."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
import stix2

from collectors.message import RawMessage
from detections.indicators.index import IndicatorIndex
from detections.indicators.matcher import IndicatorMatcher
from detections.indicators.model import IndicatorError, build, normalise
from detections.indicators.stix import TLP2_IDS, bundle, indicator_to_stix, indicators_from_stix, observables_of
from detections.indicators.store import IndicatorService
from soc import ecs
from suite.runtime import Suite
from soc.storage import open_store
from soc.storage.base import AlertQuery
from tests.conftest import make_settings


def _later(days: float) -> str:
    return ecs.utc_iso(datetime.now(timezone.utc) + timedelta(days=days))


@pytest.mark.parametrize("kind,raw,expected", [
    ("ipv4", " 203.0.113.7 ", "203.0.113.7"),
    ("ipv4", "203.0.113.9/24", "203.0.113.0/24"),
    ("ipv4", "203.0.113.9/32", "203.0.113.9"),
    ("ipv6", "2001:DB8::0:1", "2001:db8::1"),
    ("domain", "Evil.Example.COM.", "evil.example.com"),
    ("url", "HTTP://Evil.Example.com:80/a/b?x=1", "http://evil.example.com/a/b?x=1"),
    ("sha256", "A" * 64, "a" * 64),
])
def test_values_are_normalised(kind, raw, expected):
    assert normalise(kind, raw) == expected


@pytest.mark.parametrize("kind,raw", [
    ("ipv4", "2001:db8::1"), ("ipv4", "300.1.1.1"), ("domain", "not a domain"), ("url", "evil.example.com/x"),
    ("md5", "abc"), ("sha1", "z" * 40), ("cve", "CVE-2024-1"),
])
def test_bad_values_are_refused_with_a_reason(kind, raw):
    with pytest.raises(IndicatorError) as info:
        normalise(kind, raw)
    assert str(info.value)


def test_index_finds_by_cidr_parent_domain_url_and_hash():
    index = IndicatorIndex()
    docs = [
        build([{"type": "ipv4", "value": "198.51.100.0/24"}], source="t"),
        build([{"type": "ipv4", "value": "203.0.113.7"}], source="t"),
        build([{"type": "ipv6", "value": "2001:db8:bad::/48"}], source="t"),
        build([{"type": "domain", "value": "evil.example"}], source="t"),
        build([{"type": "url", "value": "https://x.example/payload.exe"}], source="t"),
        build([{"type": "md5", "value": "d41d8cd98f00b204e9800998ecf8427e"}], source="t"),
    ]
    for d in docs:
        index.put(d)
    assert index.ip("198.51.100.200") == {docs[0]["id"]}
    assert index.ip("198.51.101.1") == set()
    assert index.ip("203.0.113.7") == {docs[1]["id"]}
    assert index.ip("2001:db8:bad:1::5") == {docs[2]["id"]}
    assert index.domain("a.b.EVIL.example") == {docs[3]["id"]}
    assert index.domain("notevil.example") == set()
    assert index.url("https://x.example/payload.exe") == {docs[4]["id"]}
    assert index.hash("md5", "D41D8CD98F00B204E9800998ECF8427E") == {docs[5]["id"]}
    index.put(dict(docs[1], revoked=True))
    assert index.ip("203.0.113.7") == set()


def _event(i: int, agency: str = "so-a", **fields) -> dict:
    doc = {"@timestamp": ecs.now_iso(), "event": {"id": f"ev{i}", "original": f"line {i}"},
           "organization": {"id": agency}}
    for name, value in fields.items():
        ecs.put(doc, name.replace("__", "."), value)
    return doc


def test_matcher_covers_the_ecs_fields_and_stops_on_expiry(tmp_path):
    store = open_store(make_settings(tmp_path))
    service = IndicatorService(store)
    live = build([{"type": "domain", "value": "evil.example"}, {"type": "sha256", "value": "ab" * 32}],
                 source="national-centre", confidence=90, valid_until=_later(1))
    url = build([{"type": "url", "value": "http://dl.bad.example/x.sh"}], source="t")
    expired = build([{"type": "ipv4", "value": "192.0.2.66"}], source="t", valid_from=_later(-2),
                    valid_until=_later(1))
    service.upsert([live, url, expired])
    matcher = IndicatorMatcher(service)
    events = [
        _event(1, dns__question__name="cdn.evil.example"),
        _event(2, file__hash__sha256="AB" * 32),
        _event(3, url__original="http://dl.bad.example:80/x.sh"),
        _event(4, source__ip="192.0.2.66"),
        _event(5, destination__ip="192.0.2.67", dns__question__name="good.example"),
    ]
    found = {(d.labels["indicator.id"], d.events[0]["event"]["id"]) for d in matcher.evaluate(events)}
    assert found == {(live["id"], "ev1"), (live["id"], "ev2"), (url["id"], "ev3"), (expired["id"], "ev4")}
    # Expire it (as a feed update would): it stops matching at once.
    expired_now = dict(expired, valid_until=_later(-1 / 24), modified=_later(0))
    service.upsert([expired_now])
    assert matcher.evaluate([_event(6, source__ip="192.0.2.66")]) == []
    sighting = store.find_documents("sightings", __import__("soc.storage.base", fromlist=["DocumentQuery"])
                                    .DocumentQuery(terms={"indicator_id": live["id"]}))
    assert len(sighting) == 1 and sighting[0]["count"] == 2 and sighting[0]["organization"]["id"] == "so-a"
    store.close()


def test_match_on_ingest_raises_one_deduplicated_alert_and_a_sighting(tmp_path):
    """Real pipeline: sshd lines over the syslog parser, enrichment to the agency, store, matcher, alert."""
    suite = Suite(make_settings(tmp_path))
    try:
        # the indicator extension is one of the default extensions: its matcher runs on every batch
        bad = build([{"type": "ipv4", "value": "198.51.100.0/24"}], source="national-centre", confidence=85,
                    tlp="green")
        suite.service("indicators").upsert([bad])
        now = datetime.now(timezone.utc).astimezone(suite.settings.tz)
        lines = [f"<38>{now:%b} {now.day:2d} {now:%H:%M:%S} so-tttt-web-01 sshd[{100 + i}]: Failed password for root "
                 f"from 198.51.100.{10 + i} port {4000 + i} ssh2".encode() for i in range(3)]
        suite.process([RawMessage(data=line, transport="tcp", peer="10.20.10.10") for line in lines])
        alerts = [a for a in suite.store.list_alerts(AlertQuery(rule_id="soc-indicator-match"))]
        assert len(alerts) == 1
        alert = alerts[0]
        assert alert["count"] == 3 and alert["severity"] == "high"
        assert alert["labels"]["indicator.id"] == bad["id"]
        assert set(alert["entities"]["ip"]) >= {"198.51.100.10", "198.51.100.11", "198.51.100.12"}
        sightings = suite.store.find_documents("sightings", __import__(
            "soc.storage.base", fromlist=["DocumentQuery"]).DocumentQuery())
        assert [s["count"] for s in sightings] == [3]
        assert sightings[0]["organization"]["id"] == alert["organization"]["id"] is not None
    finally:
        suite.close()


def test_stix_round_trip_with_tlp2_markings():
    doc = build([{"type": "ipv4", "value": "203.0.113.0/25"}, {"type": "url", "value": "https://a.example/x"},
                 {"type": "sha1", "value": "da39a3ee5e6b4b0d3255bfef95601890afd80709"}],
                source="soc", tlp="amber+strict", confidence=70, valid_until=_later(30), description="c2")
    stix = json.loads(indicator_to_stix(doc).serialize())
    assert stix["object_marking_refs"] == [TLP2_IDS["amber+strict"]]
    assert "ISSUBSET '203.0.113.0/25'" in stix["pattern"] and "file:hashes.'SHA-1'" in stix["pattern"]
    out = bundle([indicator_to_stix(doc)])
    marking = next(o for o in out["objects"] if o["type"] == "marking-definition")
    assert marking["extensions"]["extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d"]["tlp_2_0"] == \
        "amber+strict"
    stix2.parse(out, allow_custom=True)  # a valid bundle
    back = indicators_from_stix(stix, source="peer")
    assert back["observables"] == doc["observables"] and back["tlp"] == "amber+strict" and back["id"] == doc["id"]


@pytest.mark.parametrize("pattern,reason", [
    ("[ipv4-addr:value = '1.2.3.4' AND ipv4-addr:value = '5.6.7.8']", "OR"),
    ("[process:name = 'evil.exe']", "not a field"),
    ("[ipv4-addr:value = '1.2.3.4'] WITHIN 5 SECONDS", "OR"),
    ("[ipv4-addr:value = ", "invalid STIX pattern"),
])
def test_unsupported_patterns_are_refused_with_the_reason(pattern, reason):
    with pytest.raises(IndicatorError) as info:
        observables_of(pattern)
    assert reason in str(info.value)


def test_indicators_written_by_the_playbook_action_match_and_export(tmp_path):
    """The playbook `indicator` action wrote {type, value, tlp, ...} documents to the same collection (before it
    wrote the model's shape): those still stored are read in the model's shape."""
    import hashlib

    from detections.indicators.stix import indicator_to_stix
    from detections.indicators.model import from_foreign

    def indicator_id(kind: str, value: str) -> str:  # the action's former ids
        return hashlib.blake2b(f"{kind}:{value.lower()}".encode(), digest_size=16).hexdigest()

    store = open_store(make_settings(tmp_path))
    store.put_documents("indicators", [{
        "id": indicator_id("ipv4-addr", "203.0.113.99"), "type": "ipv4-addr", "value": "203.0.113.99",
        "created": ecs.now_iso(), "updated": ecs.now_iso(), "valid_from": ecs.now_iso(), "valid_until": _later(30),
        "tlp": "amber", "confidence": 70, "source": "playbook"}, {
        "id": indicator_id("email-addr", "x@bad.example"), "type": "email-addr", "value": "x@bad.example"}])
    service = IndicatorService(store)
    assert service.sync() == 1  # the e-mail address is nothing the suite matches on
    matcher = IndicatorMatcher(service)
    assert len(matcher.evaluate([_event(9, source__ip="203.0.113.99")])) == 1
    stix = json.loads(indicator_to_stix(from_foreign(store.get_document(
        "indicators", indicator_id("ipv4-addr", "203.0.113.99")))).serialize())
    assert stix["pattern"] == "[ipv4-addr:value = '203.0.113.99']" and stix["id"].startswith("indicator--")
    store.close()
