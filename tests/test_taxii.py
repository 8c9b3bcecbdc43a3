"""The TAXII 2.1 server, driven by a real TAXII client library (taxii2-client) over HTTP on loopback, and the suite's
own pulling client against the suite's own server (one suite publishes, a second one pulls and then detects)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
import stix2
from requests.exceptions import HTTPError
from taxii2client.v21 import Collection, Server, as_pages

from detections.indicators.model import build
from detections.indicators.stix import TLP2_IDS
from soc import ecs
from soc.storage.base import AlertQuery
from soc_api.settings import TaxiiPullSource
from soc_api.taxii.client import pull
from soc_api.taxii.server import collection_uuid
from tests.api_fixtures import AGENCY_A, client_for, keys_for, running_suite

TAXII = "application/taxii+json;version=2.1"


def _indicator(value: str, tlp: str = "green", kind: str = "ipv4-addr") -> stix2.v21.Indicator:
    return stix2.v21.Indicator(name=f"bad {value}", pattern=f"[{kind}:value = '{value}']", pattern_type="stix",
                               valid_from="2026-01-01T00:00:00Z", confidence=90, object_marking_refs=[TLP2_IDS[tlp]])


@pytest.fixture(scope="module")
def publisher(tmp_path_factory):
    with running_suite(tmp_path_factory.mktemp("taxii")) as suite:
        keys = keys_for(suite.store, agencies=(AGENCY_A,))
        yield suite, f"http://127.0.0.1:{suite.bound['api']}/taxii2/", keys


def _collection(base: str, key: str, name: str) -> Collection:
    return Collection(f"{base}soc/collections/{collection_uuid(name)}/", user="soc", password=key)


def test_discovery_api_root_and_collections_per_role(publisher):
    _, base, keys = publisher
    server = Server(base, user="soc", password=keys["analyst"])
    assert server.title and [r.url for r in server.api_roots] == [base + "soc/"]
    root = server.api_roots[0]
    assert root.versions == [TAXII]
    by_alias = {c.alias: c for c in root.collections}
    assert set(by_alias) == {"indicators", "sightings", "malware"}
    assert by_alias["indicators"].can_write and not by_alias["sightings"].can_write
    # An agency key sees only the indicator collection, read-only.
    agency_root = Server(base, user="soc", password=keys[AGENCY_A]).api_roots[0]
    assert [(c.title, c.can_read, c.can_write) for c in agency_root.collections] == [("Indicators", True, False)]
    with pytest.raises(HTTPError) as info:
        Server(base, user="soc", password="soc_nope_nope").title
    assert info.value.response.status_code == 401


def test_add_objects_then_page_filter_and_manifest(publisher):
    suite, base, keys = publisher
    writer = _collection(base, keys["analyst"], "indicators")
    good = [_indicator(f"203.0.113.{i}") for i in range(5)] + [_indicator("evil.example", "amber", "domain-name")]
    unsupported = stix2.v21.Indicator(name="process", pattern="[process:name = 'evil.exe']", pattern_type="stix",
                                      valid_from="2026-01-01T00:00:00Z")
    status = writer.add_objects(stix2.v21.Bundle(objects=good + [unsupported]).serialize(), wait_for_completion=False)
    assert (status.status, status.success_count, status.failure_count) == ("complete", 6, 1)
    assert "not a field" in status.failures[0]["message"]
    # Pages of two via `next`, every object once.
    reader = _collection(base, keys["national_centre"], "indicators")
    pages = list(as_pages(reader.get_objects, per_request=2))
    ids = [o["id"] for page in pages for o in page.get("objects", [])]
    assert len(pages) >= 3 and sorted(ids) == sorted(o.id for o in good)
    assert all(o["type"] == "indicator" and o["object_marking_refs"] for p in pages for o in p.get("objects", []))
    # added_after is strict and follows the manifest's date_added.
    manifest = reader.get_manifest()["objects"]
    assert len(manifest) == 6 and all(m["media_type"] == "application/stix+json;version=2.1" for m in manifest)
    dates = sorted(m["date_added"] for m in manifest)
    later = reader.get_objects(added_after=dates[2])
    assert len(later["objects"]) == len([d for d in dates if d > dates[2]])
    assert reader.get_objects(type="malware").get("objects", []) == []
    one = reader.get_object(good[0].id)
    assert [o["id"] for o in one["objects"]] == [good[0].id]
    # An agency reads only TLP:CLEAR/GREEN, and cannot write.
    agency = _collection(base, keys[AGENCY_A], "indicators")
    seen = [o["pattern"] for o in agency.get_objects()["objects"]]
    assert len(seen) == 5 and not any("evil.example" in p for p in seen)
    assert agency.can_write is False


def test_media_type_and_rights_are_enforced(publisher):
    _, base, keys = publisher
    with client_for(publisher[0]) as client:
        url = f"/taxii2/soc/collections/{collection_uuid('indicators')}/objects/"
        auth = {"X-API-Key": keys["analyst"]}
        assert client.get(url, headers={**auth, "Accept": "application/xml"}).status_code == 406
        ok = client.get(url, headers={**auth, "Accept": TAXII})
        assert ok.status_code == 200 and ok.headers["content-type"] == TAXII
        assert client.post(url, headers={**auth, "Content-Type": "application/json"}, content=b"{}").status_code == 415
        sightings = f"/taxii2/soc/collections/{collection_uuid('sightings')}/objects/"
        assert client.get(sightings, headers={"X-API-Key": keys[AGENCY_A]}).status_code == 403
        assert client.post(sightings, headers={**auth, "Content-Type": TAXII},
                           content=b'{"objects": []}').status_code == 403
        assert client.get("/taxii2/other-root/", headers=auth).status_code == 404
        # Errors are TAXII error messages (TAXII 2.1 section 3.6.1), in the TAXII media type.
        for response, status in ((client.get(sightings, headers={"X-API-Key": keys[AGENCY_A]}), 403),
                                 (client.get("/taxii2/other-root/", headers=auth), 404),
                                 (client.get(url, headers=auth, params={"limit": "many"}), 422),
                                 (client.get(url), 401)):
            assert response.status_code == status
            assert response.headers["content-type"] == TAXII
            error = response.json()
            assert error["http_status"] == str(status) and error["title"] and error["description"]
            assert "detail" not in error


def test_pull_from_the_suites_own_server_feeds_detection_and_remembers_where_it_stopped(publisher, tmp_path,
                                                                                         monkeypatch):
    suite, base, keys = publisher
    suite.service("indicators").upsert([build([{"type": "ipv4", "value": "192.0.2.0/28"}], source="soc", tlp="green",
                                   confidence=95)])
    monkeypatch.setenv("TEST_TAXII_KEY", keys["national_centre"])
    source = TaxiiPullSource(name="province-a", collection_url=f"{base}soc/collections/{collection_uuid('indicators')}/",
                             password_env="TEST_TAXII_KEY", page_size=3)
    with running_suite(tmp_path) as puller:
        first = pull(puller.store, puller.service("indicators"), source)
        assert first.pages >= 2 and first.indicators == first.objects >= 7 and first.skipped == 0
        assert puller.store.get_document("taxii_state", "province-a")["added_after"] == first.added_after
        # Nothing new: the next pull asks only for what was added after the bookmark.
        again = pull(puller.store, puller.service("indicators"), source)
        assert again.objects == 0 and again.added_after == first.added_after
        suite.service("indicators").upsert([build([{"type": "domain", "value": "c2.bad.example"}], source="soc", tlp="clear")])
        third = pull(puller.store, puller.service("indicators"), source)
        assert third.objects == 1 and third.indicators == 1
        # The pulled indicators match on ingest in the pulling suite.
        now = datetime.now(timezone.utc)
        event = {"@timestamp": ecs.utc_iso(now), "event": {"id": "pulled-1"}, "source": {"ip": "192.0.2.9"},
                 "organization": {"id": AGENCY_A}}
        detections = puller.engine.evaluate([event])
        assert [d.meta.id for d in detections] == ["soc-indicator-match"]
        puller.alerts.handle(detections)
        assert puller.store.list_alerts(AlertQuery(rule_id="soc-indicator-match"))[0]["organization"]["id"] == AGENCY_A
