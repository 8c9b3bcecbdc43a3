"""An indicator a playbook shares is an indicator of the suite's one model, and no stored document can break the
sharing with the national centre.

*Attack demonstrated:* after ``block_ssh_brute_force`` ran its ``indicator`` step, the action's document (another
shape: ``type``/``value``, no ``added``) made ``GET /taxii2/…/collections/indicators/objects/`` answer 500
(``KeyError: 'added'``) for every caller, for good, and ``GET /api/v1/indicators/{id}`` answer 500.

*Defence:* the action builds its indicator with the model (detections/indicators/model.py ``build``) and stores it
through the indicator service; the TAXII server and the indicators data layer read every stored document through
``model.readable`` first: an older or foreign shape is brought to the model's, and a document of no known shape is
skipped and logged.

Through a running suite (real HTTP on loopback, real keys), the shipped playbook's step run on its real store.
"""

from __future__ import annotations

from pathlib import Path

from detections.indicators.model import COLLECTION
from playbooks.actions import ACTIONS
from playbooks.actions.base import PerformContext
from playbooks.context import render
from playbooks.loader import load_library
from playbooks.settings import PlaybookSettings
from soc import ecs
from tests.api_fixtures import AGENCY_A, call, client_for, keys_for, running_suite

LIBRARY = Path(__file__).resolve().parents[2] / "playbooks" / "library"
TAXII = "application/taxii+json;version=2.1"
OBJECTS = "/taxii2/soc/collections/indicators/objects/"
ATTACKER = "203.0.113.77"


def _share_step(store, address: str) -> dict:
    """block_ssh_brute_force's `share` step, with its parameters rendered as the runner renders them, on `store`."""
    playbook = load_library([str(LIBRARY)]).get("block_ssh_brute_force")
    [step] = [s for s in playbook.steps if s.action == "indicator"]
    run = {"id": "0123456789abcdef0123456789abcdef", "playbook": playbook.name, "alert_id": "alert-1",
           "agency": AGENCY_A}
    params = render(step.params, {"address": address, "playbook": playbook.name, "run_id": run["id"],
                                  "agency": AGENCY_A, "alert_id": "alert-1", "ttl": 3600})
    action = ACTIONS[step.action]
    return action.perform(action.parse_params(params), PerformContext(store, PlaybookSettings(), run))


def test_a_playbook_indicator_is_shared_over_taxii_and_the_api(tmp_path):
    with running_suite(tmp_path) as suite, client_for(suite) as client:
        keys = keys_for(suite.store)
        result = _share_step(suite.store, ATTACKER)
        assert result["status"] == "done", result
        again = _share_step(suite.store, ATTACKER)  # a second run updates the one indicator
        assert again["indicator"] == result["indicator"]
        # Documents of other shapes in the same collection: one the action wrote before (type/value), one of no
        # known shape. Neither may break anything for anyone.
        now = ecs.now_iso()
        suite.store.put_documents(COLLECTION, [
            {"id": "5a0d3e0c9f1b2a3c4d5e6f7081928374", "type": "ipv4-addr", "value": "198.51.100.23",
             "created": now, "updated": now, "valid_from": now, "tlp": "green", "confidence": 70,
             "source": "playbook", "sightings": 1, "shared": False},
            {"id": "junk-1", "added": now, "tlp": "green", "revoked": False, "observables": "nonsense"}])
        suite.store.refresh()

        for who in ("national_centre", "analyst", AGENCY_A):
            page = call(client, "GET", OBJECTS, keys[who], headers={"Accept": TAXII})
            assert page.status_code == 200, (who, page.text)
            patterns = [o["pattern"] for o in page.json().get("objects", [])]
            assert f"[ipv4-addr:value = '{ATTACKER}']" in patterns, (who, patterns)
            assert "[ipv4-addr:value = '198.51.100.23']" in patterns, (who, patterns)
            assert len(patterns) == 2
            manifest = call(client, "GET", OBJECTS.replace("objects/", "manifest/"), keys[who],
                            headers={"Accept": TAXII})
            assert manifest.status_code == 200 and len(manifest.json()["objects"]) == 2

        one = call(client, "GET", f"/api/v1/indicators/{result['indicator']}", keys["analyst"])
        assert one.status_code == 200, one.text
        body = one.json()
        assert body["observables"] == [{"type": "ipv4", "value": ATTACKER}] and body["tlp"] == "green"
        assert body["source"] == "playbook" and body["run_id"] and body["playbook"] == "block_ssh_brute_force"
        listed = call(client, "GET", "/api/v1/indicators", keys[AGENCY_A])
        assert listed.status_code == 200, listed.text
        assert [i["observables"] for i in listed.json()["indicators"]] == [[{"type": "ipv4", "value": ATTACKER}]]
        legacy = call(client, "GET", "/api/v1/indicators/5a0d3e0c9f1b2a3c4d5e6f7081928374", keys["analyst"])
        assert legacy.status_code == 200 and legacy.json()["observables"][0]["value"] == "198.51.100.23"
        assert call(client, "GET", "/api/v1/indicators/junk-1", keys["analyst"]).status_code == 404
        export = call(client, "GET", "/api/v1/indicators/export", keys["national_centre"])
        assert export.status_code == 200
        assert sum(o["type"] == "indicator" for o in export.json()["objects"]) == 2

        # and it matches on ingest like any indicator of the model
        suite.service("indicators").sync()
        hits = suite.service("indicators").index.ip(ATTACKER)
        assert result["indicator"] in hits
