"""Indicators through the API end to end: added by an analyst, matched on ingest (alert + sighting), an alert naming a
file hash recorded as a malware finding, exported as a STIX 2.1 bundle with TLP 2.0 markings (an agency gets only
its own sightings and findings and the TLP levels it may read), and revoked (it stops matching)."""

from __future__ import annotations

import stix2

from detections.engine import Detection
from detections.indicators.stix import TLP2_IDS
from detections.sigma.loader import RuleMeta
from soc import ecs
from tests.api_fixtures import AGENCY_A, AGENCY_B, call, client_for, keys_for, running_suite

SHA = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def _event(i: int, agency: str, **fields) -> dict:
    doc = {"@timestamp": ecs.now_iso(), "event": {"id": f"x{i}"}, "organization": {"id": agency}}
    for name, value in fields.items():
        ecs.put(doc, name.replace("__", "."), value)
    return doc


def test_add_match_export_and_revoke(tmp_path):
    with running_suite(tmp_path) as suite, client_for(suite) as client:
        keys = keys_for(suite.store)
        green = call(client, "POST", "/api/v1/indicators", keys["analyst"], json={
            "observables": [{"type": "domain", "value": "c2.bad.example"}], "source": "soc", "tlp": "green",
            "confidence": 85, "valid_until": "2099-01-01T00:00:00Z"})
        amber = call(client, "POST", "/api/v1/indicators", keys["analyst"], json={
            "observables": [{"type": "ipv4", "value": "192.0.2.0/24"}], "tlp": "amber"})
        assert green.status_code == amber.status_code == 201
        assert call(client, "POST", "/api/v1/indicators", keys[AGENCY_A], json={
            "observables": [{"type": "ipv4", "value": "192.0.2.1"}]}).status_code == 403
        bad = call(client, "POST", "/api/v1/indicators", keys["analyst"], json={
            "observables": [{"type": "ipv4", "value": "not-an-ip"}]})
        assert bad.status_code == 422 and "not an IP" in bad.json()["detail"][0]["msg"]

        # Ingest: the matcher raises alerts and counts sightings, per agency.
        events = [_event(1, AGENCY_A, dns__question__name="www.c2.bad.example"),
                  _event(2, AGENCY_B, destination__ip="192.0.2.77")]
        detections = suite.engine.evaluate(events)
        suite.alerts.handle(detections)
        malware = RuleMeta(id="av-malware", name="av", title="Webshell found", level="high", tags=[],
                           description="", path="")
        # raised through the detection stage: stored, and every alert hook (malware findings) hears of it
        suite.detection.raise_alerts([Detection(meta=malware, kind="rule", agency=AGENCY_A, labels={},
                                                events=[_event(3, AGENCY_A, file__hash__sha256=SHA)], count=1,
                                                first_seen=ecs.now_iso(), last_seen=ecs.now_iso())])
        suite.store.refresh()

        everything = call(client, "GET", "/api/v1/indicators/export", keys["national_centre"])
        assert everything.headers["content-type"] == "application/stix+json;version=2.1"
        bundle = everything.json()
        stix2.parse(bundle, allow_custom=True)
        by_type: dict[str, list] = {}
        for o in bundle["objects"]:
            by_type.setdefault(o["type"], []).append(o)
        assert {i["id"] for i in by_type["indicator"]} == {green.json()["id"], amber.json()["id"]}
        assert sorted(s["count"] for s in by_type["sighting"]) == [1, 1]
        assert by_type["malware"][0]["name"] == "Webshell found" and by_type["malware"][0]["is_family"] is False
        assert by_type["file"][0]["hashes"] == {"SHA-256": SHA}
        assert {m["id"] for m in by_type["marking-definition"]} >= {TLP2_IDS["green"], TLP2_IDS["amber"]}
        assert all(o["object_marking_refs"] for o in bundle["objects"] if o["type"] in ("indicator", "sighting"))

        own = call(client, "GET", "/api/v1/indicators/export", keys[AGENCY_A]).json()["objects"]
        assert {o["id"] for o in own if o["type"] == "indicator"} == {green.json()["id"]}  # no TLP:AMBER
        assert len([o for o in own if o["type"] == "sighting"]) == 1 and any(o["type"] == "malware" for o in own)
        other = call(client, "GET", "/api/v1/indicators/export", keys[AGENCY_B]).json()["objects"]
        assert not any(o["type"] == "malware" for o in other)
        assert [o["sighting_of_ref"] for o in other if o["type"] == "sighting"] == [amber.json()["id"]]

        # Revoked: it stops matching at once, and is shared as revoked.
        assert call(client, "DELETE", f"/api/v1/indicators/{green.json()['id']}", keys["analyst"]).json()["revoked"]
        assert suite.engine.evaluate([_event(4, AGENCY_A, dns__question__name="c2.bad.example")]) == []
        listed = call(client, "GET", "/api/v1/indicators", keys["analyst"], params={"revoked": True}).json()
        assert [i["id"] for i in listed["indicators"]] == [green.json()["id"]]
