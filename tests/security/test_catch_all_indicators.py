"""A feed cannot import a catch-all indicator.

*Attack demonstrated:* a STIX bundle (or a TAXII collection) naming ``0.0.0.0/0``, ``::/0`` or a single-label domain
such as ``vn`` was imported like any indicator: every event then matched, raised an alert and wrote a sighting that
the suite shares back with the national centre.

*Defence (detections/indicators/model.py):* ``build``, which every import path goes through (``soc indicators
import``, TAXII pull and add, the API), refuses an IPv4 range wider than /16, an IPv6 range wider than /32 and a
domain without a dot, and the import reports each refused indicator with its id and the reason, counted. An
indicator stored before this check is still listed (so it can be revoked) but the matching index never holds it.
"""

from __future__ import annotations

import json
import uuid

import stix2
from typer.testing import CliRunner

from detections.indicators.matcher import IndicatorMatcher
from detections.indicators.model import COLLECTION, build
from detections.indicators.store import IndicatorService
from soc import ecs
from suite.cli import app
from soc.storage import store_from_url
from soc.storage.base import DocumentQuery
from tests.api_fixtures import call, client_for, keys_for, running_suite

CATCH_ALL = {
    "[ipv4-addr:value = '0.0.0.0/0']": "wider than the widest range",
    "[ipv6-addr:value = '::/0']": "wider than the widest range",
    "[domain-name:value = 'vn']": "single-label domain",
    "[domain-name:value = 'VN.']": "single-label domain",
    "[ipv4-addr:value = '10.0.0.0/8']": "wider than the widest range",
    "[ipv4-addr:value = '203.0.113.5'] OR [ipv4-addr:value = '0.0.0.0/1']": "wider than the widest range",
}
ACCEPTED = ["[ipv4-addr:value = '198.51.100.0/24']", "[domain-name:value = 'c2.evil.vn']",
            "[ipv6-addr:value = '2001:db8::/32']", "[ipv4-addr:value = '172.16.0.0/16']"]


def _indicator(pattern: str) -> dict:
    return json.loads(stix2.v21.Indicator(id=f"indicator--{uuid.uuid4()}", pattern=pattern, pattern_type="stix",
                                          valid_from="2026-01-01T00:00:00Z").serialize())


def _event(**fields) -> dict:
    doc = {"@timestamp": ecs.now_iso(), "event": {"id": uuid.uuid4().hex}, "organization": {"id": "so-tttt"}}
    for name, value in fields.items():
        ecs.put(doc, name.replace("__", "."), value)
    return doc


def test_soc_indicators_import_refuses_catch_alls_and_says_why(tmp_path, monkeypatch):
    db = tmp_path / "feed.db"
    monkeypatch.setenv("SOC__STORE__URL", f"sqlite:///{db}")
    refused = {pattern: _indicator(pattern) for pattern in CATCH_ALL}
    accepted = [_indicator(pattern) for pattern in ACCEPTED]
    bundle = tmp_path / "poisoned.json"
    bundle.write_text(json.dumps({"type": "bundle", "id": f"bundle--{uuid.uuid4()}",
                                  "objects": list(refused.values()) + accepted}))
    result = CliRunner().invoke(app, ["indicators", "import", str(bundle), "--source", "feed"])
    assert result.exit_code == 0, result.output
    assert f"{len(ACCEPTED)} indicators imported, {len(CATCH_ALL)} skipped" in result.stdout
    for pattern, why in CATCH_ALL.items():
        [line] = [x for x in result.stderr.splitlines() if refused[pattern]["id"] in x]
        assert "refused" in line and why in line, line

    store = store_from_url(f"sqlite:///{db}")
    store.open()
    try:
        stored = {o["value"] for doc in store.find_documents(COLLECTION, DocumentQuery(limit=100))
                  for o in doc["observables"]}
        assert stored == {"198.51.100.0/24", "c2.evil.vn", "2001:db8::/32", "172.16.0.0/16"}
        # One stored before the check (written straight to the store): listed, never matched on.
        old = build([{"type": "ipv4", "value": "198.51.100.7"}], source="old-feed")
        old["observables"] = [{"type": "ipv4", "value": "0.0.0.0/0"}, {"type": "domain", "value": "vn"}]
        store.put_documents(COLLECTION, [old])
        service = IndicatorService(store)
        service.sync()
        matcher = IndicatorMatcher(service)
        assert matcher.hits(_event(source__ip="8.8.8.8", dns__question__name="www.gov.vn")) == []
        assert len(matcher.hits(_event(source__ip="198.51.100.9"))) == 1  # the /24 still matches
        assert len(matcher.hits(_event(dns__question__name="x.c2.evil.vn"))) == 1
    finally:
        store.close()


def test_the_api_and_taxii_refuse_catch_alls_with_the_reason(tmp_path):
    with running_suite(tmp_path) as suite, client_for(suite) as client:
        keys = keys_for(suite.store, agencies=())
        wide = call(client, "POST", "/api/v1/indicators", keys["analyst"],
                    json={"observables": [{"type": "ipv4", "value": "0.0.0.0/0"}]})
        assert wide.status_code == 422 and "wider than the widest range" in wide.text
        tld = call(client, "POST", "/api/v1/indicators", keys["analyst"],
                   json={"observables": [{"type": "domain", "value": "vn"}]})
        assert tld.status_code == 422 and "single-label domain" in tld.text
        envelope = {"objects": [_indicator("[ipv6-addr:value = '::/0']"), _indicator(ACCEPTED[0])]}
        status = call(client, "POST", "/taxii2/soc/collections/indicators/objects/", keys["national_centre"],
                      headers={"Content-Type": "application/taxii+json;version=2.1",
                               "Accept": "application/taxii+json;version=2.1"}, content=json.dumps(envelope))
        assert status.status_code == 202, status.text
        body = status.json()
        assert (body["success_count"], body["failure_count"]) == (1, 1)
        assert body["failures"][0]["id"] == envelope["objects"][0]["id"]
        assert "wider than the widest range" in body["failures"][0]["message"]
