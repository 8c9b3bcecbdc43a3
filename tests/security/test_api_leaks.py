"""Two lesser leaks, through a running suite's API with real keys.

Playbook runs: a run on a device shared by agencies (the province's firewall) records what the device answered —
the transcript of every command (``exchanges``), the state before the change (``before``), what already covered the
target — and those answers list every agency's blocks. An agency key reads its own runs (list and detail) with the
plan, its own targets and outcomes, but none of the device's answers: no other agency's blocked address. Analysts and
network admins still see the whole record.

Health: ``/api/v1/health`` answers anyone, but only with the status; the store backend, its path and the rule and
queue counts are for an admin or analyst key."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.api_fixtures import AGENCY_A, AGENCY_B, call, client_for, keys_for, running_suite

OWN_TARGET = "203.0.113.7"  # what agency A's run blocked
OTHERS = ["198.51.100.66", "198.51.100.0/24", "192.0.2.99"]  # other agencies' blocks on the same firewall


def _exchange(phase: str, command: str, answer: str) -> dict:
    return {"device": "prov-fw-01", "phase": phase, "command": command, "answer": answer,
            "started": "2026-11-22T10:00:01.000Z", "duration_ms": 12.5}


def _run(run_id: str, agency: str, marker: str) -> dict:
    """A run as the playbook runner stores it (playbooks/runner.py), after blocking OWN_TARGET on a shared device
    whose address group already held other agencies' blocks."""
    group = "\n".join(f'    set member "soc-{a.replace("/", "_")}"' for a in OTHERS)
    show = f'config firewall addrgrp\n    edit "SOC-BLOCKLIST"\n{group}\n    next\nend'
    device = {
        "device": "prov-fw-01", "driver": "fortigate", "operation": "block", "target": f"{OWN_TARGET}/32",
        "vlan": None, "comment": f"soc run {run_id}", "changed": True, "status": "changed",
        "started": "2026-11-22T10:00:01.000Z", "lock_wait_ms": 0.1, "duration_ms": 80.0,
        "exchanges": [_exchange("check", "show firewall addrgrp SOC-BLOCKLIST", show),
                      _exchange("apply", 'append member "soc-203.0.113.7_32"', ""),
                      _exchange("verify", "show firewall addrgrp SOC-BLOCKLIST",
                                show + f'\n    set member "soc-{OWN_TARGET}_32"')],
        "before": {"members": len(OTHERS), "covered_by": OTHERS[1], "listing": OTHERS},
        "commands": ['config firewall address', 'edit "soc-203.0.113.7_32"', "set subnet 203.0.113.7 "
                     "255.255.255.255", "next", "end"],
        "rollback": ['config firewall addrgrp', 'edit "SOC-BLOCKLIST"', 'unselect member "soc-203.0.113.7_32"'],
        "description": f"block {OWN_TARGET}/32 on prov-fw-01", "message": f"prov-fw-01: block {OWN_TARGET}/32",
    }
    unchanged = dict(device, target="10.99.0.1/32", changed=False, status="unchanged",
                     message=f"block 10.99.0.1/32 is already in force on prov-fw-02 (covered by {OTHERS[1]}); "
                             "nothing changed",
                     exchanges=[_exchange("check", "show firewall addrgrp SOC-BLOCKLIST", show)])
    failed_answer = f"nft answered something that is not JSON: 'table inet soc {{ elements = {{ {OTHERS[2]} }} }}'"
    return {
        "id": run_id, "playbook": "block-ip", "playbook_title": f"Block an address {marker}", "agency": agency,
        "alert_id": f"{agency}-a0", "state": "succeeded", "created": "2026-11-22T10:00:00.000Z",
        "inputs": {"ip": OWN_TARGET}, "devices": ["prov-fw-01", "prov-fw-02"], "approval": {"required": False},
        "steps": [{"id": "block", "action": "block_ip", "status": "done", "params": {"ip": OWN_TARGET},
                   "plan": [{"device": "prov-fw-01", "operation": "block", "target": f"{OWN_TARGET}/32",
                             "driver": "fortigate"}],
                   "devices": [device, unchanged], "message": f"prov-fw-01: block {OWN_TARGET}/32"},
                  {"id": "route", "action": "null_route", "status": "failed", "devices": [],
                   "message": f"prov-fw-03: {failed_answer}"}],
        "result": {"ok": True, "message": f"prov-fw-01: block {OWN_TARGET}/32",
                   "rollback": [{"device": "prov-fw-03", "operation": "null_route", "target": OWN_TARGET,
                                 "ok": False, "message": f"prov-fw-03: {failed_answer}",
                                 "exchanges": [_exchange("rollback", "nft -j list set inet soc blocked",
                                                         f"{{\"elem\": [\"{OTHERS[2]}\"]}}")]}]},
        "reverts": [{"device": "prov-fw-01", "operation": "unblock", "target": f"{OWN_TARGET}/32", "ok": True,
                     "message": "done", "exchanges": [_exchange("revert", "show firewall addrgrp", show)]}],
    }


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    with running_suite(tmp_path_factory.mktemp("leaks")) as running:
        running.test_keys = keys_for(running.store)
        running.marker = uuid.uuid4().hex[:8]
        runs = [_run(f"run-{agency}", agency, running.marker) for agency in (AGENCY_A, AGENCY_B)]
        running.store.put_documents("playbook_runs", runs)
        running.store.refresh()
        yield running


def test_an_agency_key_gets_its_runs_without_the_device_answers(suite):
    keys = suite.test_keys
    with client_for(suite) as client:
        listing = call(client, "GET", "/api/v1/playbooks/runs", keys[AGENCY_A])
        detail = call(client, "GET", f"/api/v1/playbooks/runs/run-{AGENCY_A}", keys[AGENCY_A])
        analyst = call(client, "GET", f"/api/v1/playbooks/runs/run-{AGENCY_A}", keys["analyst"])
        admin = call(client, "GET", "/api/v1/playbooks/runs", keys["network_admin"])
    assert listing.status_code == detail.status_code == analyst.status_code == admin.status_code == 200
    [listed] = listing.json()["runs"]
    run = detail.json()
    assert listed == run and run["id"] == f"run-{AGENCY_A}" and suite.marker in run["playbook_title"]
    text = json.dumps(run)
    for other in OTHERS:  # no other agency's block, anywhere in the run
        assert other not in text and other.replace("/", "_") not in text, other
    assert '"exchanges"' not in text and '"before"' not in text
    # What is the agency's own stays: the plan, its target, the commands sent for it, states and outcomes.
    device = run["steps"][0]["devices"][0]
    assert run["steps"][0]["plan"] == [{"device": "prov-fw-01", "operation": "block", "target": f"{OWN_TARGET}/32",
                                        "driver": "fortigate"}]
    assert device["target"] == f"{OWN_TARGET}/32" and device["status"] == "changed" and device["changed"] is True
    assert device["commands"][1] == 'edit "soc-203.0.113.7_32"' and device["message"].endswith(OWN_TARGET + "/32")
    assert run["state"] == "succeeded" and run["result"]["ok"] is True and run["steps"][1]["status"] == "failed"
    assert "covered by a rule already on the device" in run["steps"][0]["devices"][1]["message"]
    assert "[the device's answer is shown to analysts]" in run["steps"][1]["message"]
    # Analysts and network admins keep the whole record.
    full = analyst.json()
    assert full["steps"][0]["devices"][0]["exchanges"][0]["answer"].count("set member") == len(OTHERS)
    assert full["steps"][0]["devices"][0]["before"]["covered_by"] == OTHERS[1]
    assert OTHERS[2] in json.dumps(full["result"]) and all(o in admin.text for o in OTHERS)


def test_health_tells_an_anonymous_caller_only_the_status(suite):
    keys = suite.test_keys
    with client_for(suite) as client:
        anonymous = client.get("/api/v1/health")
        bad_key = client.get("/api/v1/health", headers={"X-API-Key": "soc_0000_nope"})
        agency = client.get("/api/v1/health", headers={"X-API-Key": keys[AGENCY_A]})
        analyst = client.get("/api/v1/health", headers={"X-API-Key": keys["analyst"]})
        admin = client.get("/api/v1/health", headers={"Authorization": f"Bearer {keys['admin']}"})
    for answer in (anonymous, bad_key, agency):
        assert answer.status_code == 200 and answer.json() == {"status": "ok"}, answer.text
        assert "sqlite" not in answer.text and "soc.db" not in answer.text
    for answer in (analyst, admin):
        assert answer.status_code == 200
        details = answer.json()
        assert details["status"] == "ok" and details["store"]["backend"] == "sqlite"
        assert details["store"]["path"].endswith("soc.db") and details["rules_loaded"] >= 5
