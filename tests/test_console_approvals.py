"""The network admin's console pages over real HTTP (a running suite with the playbook service, users signed in through
the real form): the approvals queue shows each pending run with its commands per device, impact, reasons and expiry;
approving and rejecting through the forms leave the run, its audit events and the audit log as the API's calls do
(read back through the API); a reject needs a reason; CSRF; roles and tenancy (an analyst or agency user may not
open the queue or decide; an agency user sees its own runs only, without the devices' answers, as through the API);
runs and the blocks in force, and Unblock as the rollback of the run that made the block. Devices are not contacted
here (the suite's known_hosts is empty, so an approved run fails at its first device, and the unblock test stands in
for the device transaction): tests/browser/test_approvals.py does it all against the namespace firewall."""

from __future__ import annotations

import html
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from playbooks.records import BLOCKS, RUNS, block_id
from soc import ecs
from soc_api.console import approvals as console_approvals
from soc_api.routers import console_approvals as approvals_router
from tests.api_fixtures import AGENCY_A, AGENCY_B, alert_doc, call, keys_for, running_suite
from tests.conftest import wait_for
from tests.console_fixtures import ConsoleClient, add_user, alert_text, console_api

EXTENSIONS = "[playbooks.service, detections.indicators.extension, soc_api.extension]"
ROLLBACKABLE_DEVICE = "dc-fw-sonicwall-01"  # a firewall of the sample inventory that is not a core device


@dataclass
class Console:
    suite: object
    clients: dict[str, ConsoleClient]
    keys: dict[str, str]

    @property
    def service(self):
        return self.suite.service("playbooks")

    def api(self, method: str, path: str, key: str = "analyst", **kwargs):
        return call(self.clients["nam"].http, method, f"/api/v1{path}", self.keys[key], **kwargs)

    def page(self, user: str, path: str, *, lang: str = "en", tz: str = "UTC", **kwargs):
        client = self.clients[user]
        client.http.cookies.set("soc_lang", lang)
        client.http.cookies.set("soc_tz", tz)
        return client.get(path, **kwargs)

    def post(self, user: str, path: str, data: dict | None = None, *, token: bool = True):
        client = self.clients[user]
        form = dict(data or {})
        if token:
            form["csrf_token"] = client.csrf()
        return client.post(path, data=form)


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    with running_suite(tmp_path_factory.mktemp("console-approvals"), api=console_api(),
                       extensions=EXTENSIONS) as suite:
        keys = keys_for(suite.store)
        add_user(suite, "nam", "network_admin")
        add_user(suite, "ana", "analyst")
        add_user(suite, "root", "admin")
        add_user(suite, "tttt", "agency", agency=AGENCY_A)
        add_user(suite, "yte", "agency", agency=AGENCY_B)
        clients = {}
        for name in ("nam", "ana", "root", "tttt", "yte"):
            client = ConsoleClient(suite)
            assert client.signin(name).status_code == 303
            clients[name] = client
        yield Console(suite, clients, keys)
        for client in clients.values():
            client.close()


def _address() -> str:
    return f"203.0.113.{uuid.uuid4().int % 200 + 20}"


def _pending(console: Console, address: str | None = None, **body) -> dict:
    """A run of block_address through the API (an analyst's key): the sample inventory's edge firewalls are core
    devices, so it waits for a network admin."""
    body.setdefault("inputs", {"address": address or _address(), "ttl": "2h"})
    answer = console.api("POST", "/playbooks/block_address/runs", json=body)
    assert answer.status_code == 201, answer.text
    run = answer.json()
    assert run["state"] == "pending_approval"
    return run


def _text(page) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", page.text))


def _card(page_html: str, run_id: str) -> str:
    """One run's card of the approvals queue."""
    found = re.search(rf'<article class="card approval" id="run-{run_id}".*?</article>', page_html, re.S)
    assert found, f"run {run_id} is not in the queue"
    return html.unescape(found.group(0))


def _audit(console: Console, user: str) -> list[dict]:
    return console.api("GET", "/audit", "admin", params={"user": user, "limit": 200}).json()["records"]


# --- the queue ------------------------------------------------------------------------------------------------------
def test_a_pending_run_shows_its_commands_per_device_impact_reasons_and_expiry(console):
    alert = alert_doc(1, AGENCY_A, rule="soc_ssh_brute_force")
    alert["entities"] = {"ip": ["198.51.100.61"]}
    console.suite.store.upsert_alerts([alert])
    console.suite.store.refresh()
    answer = console.api("POST", "/playbooks/block_ssh_brute_force/runs", json={"alert_id": alert["id"]})
    assert answer.status_code == 201, answer.text
    from_alert = answer.json()
    assert from_alert["state"] == "pending_approval"
    by_hand = _pending(console)
    page = console.page("nam", "/console/approvals")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for run in (from_alert, by_hand):
        card = _card(page.text, run["id"])
        api_run = console.api("GET", f"/playbooks/runs/{run['id']}", "network_admin").json()
        assert run["playbook_title"] in card
        # every planned change: the device, its driver and the exact commands, as the API shows the plan
        planned = [change for step in api_run["steps"] for change in step.get("plan") or []]
        assert planned
        for change in planned:
            assert change["device"] in card and change["driver"] in card
            for command in change["commands"] + change["rollback"]:
                assert command in card
        for reason in api_run["approval"]["reasons"]:
            assert reason in card
        for reason in api_run["impact"]["reasons"]:
            assert reason in card
        assert "Approve" in card and "Reject" in card and 'name="csrf_token"' in card
    # what started it: the alert (a link to its page) or the person
    assert f'href="/console/alerts/{alert["id"]}"' in _card(page.text, from_alert["id"])
    assert "Alert: Rule soc_ssh_brute_force" in _card(page.text, from_alert["id"])
    assert "Started by hand" in _card(page.text, by_hand["id"])
    # when its blocks expire: the time to live, and the moment if approved now, in the user's zone
    assert "2 h after it is put in force" in _card(page.text, by_hand["id"])
    assert "1 h after it is put in force" in _card(page.text, from_alert["id"])  # the playbook's default
    zone = ZoneInfo("Asia/Ho_Chi_Minh")
    before = datetime.now(timezone.utc)
    vi = console.page("nam", "/console/approvals", lang="vi", tz="Asia/Ho_Chi_Minh")
    card = _card(vi.text, by_hand["id"])
    expected = {(before + timedelta(hours=2, seconds=s)).astimezone(zone).strftime("%d/%m/%Y %H:%M")
                for s in range(0, 5)}
    assert any(e in card for e in expected), card
    for word in ("Chờ phê duyệt", "Lệnh", "Thiết bị", "Ảnh hưởng", "Hết hạn", "Lý do", "Phê duyệt", "Từ chối",
                 "2 giờ sau khi có hiệu lực"):
        assert word in html.unescape(vi.text), word


def test_the_queue_pages_by_a_signed_cursor(console, monkeypatch):
    for _ in range(3):
        _pending(console)
    monkeypatch.setattr(approvals_router, "PAGE_SIZE", 2)
    pending = console.api("GET", "/playbooks/runs", params={"state": "pending_approval", "limit": 500}).json()["runs"]
    seen: list[str] = []
    path = "/console/approvals"
    for _ in range(100):
        page = console.page("nam", path)
        assert page.status_code == 200
        seen += re.findall(r'<article class="card approval" id="run-([0-9a-f]+)"', page.text)
        found = re.search(r'<a href="([^"]+)" rel="next">', page.text)
        if not found:
            break
        path = html.unescape(found.group(1))
    assert seen == [r["id"] for r in pending]  # the API's order, each once
    # a cursor that is not the console's own: the first page again, said so
    forged = console.page("nam", "/console/approvals", params={"cursor": "eyJiIjoiMSJ9"})
    assert forged.status_code == 200 and "That page link is no longer valid" in _text(forged)
    assert re.findall(r'id="run-([0-9a-f]+)"', forged.text)[0] == pending[0]["id"]


# --- deciding -------------------------------------------------------------------------------------------------------
def test_approve_through_the_form_writes_what_the_api_writes(console):
    through_console, through_api = _pending(console), _pending(console)
    answer = console.post("nam", f"/console/approvals/{through_console['id']}/approve",
                          {"reason": "confirmed with the duty officer"})
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/console/approvals?done=approved&run={through_console['id']}"
    assert console.api("POST", f"/playbooks/runs/{through_api['id']}/approve", "network_admin").status_code == 200
    # both approved and handed to the playbook service, which runs them (here: refused at the first device, whose
    # host key is not known) — the same way, whichever door the approval came through
    finished = {}
    for run in (through_console, through_api):
        finished[run["id"]] = wait_for(lambda: (lambda r: r if r["state"] not in ("pending_approval", "running")
                                               else None)(console.api("GET", f"/playbooks/runs/{run['id']}").json()),
                                       30, "the approved run to finish")
    by_console, by_api = finished[through_console["id"]], finished[through_api["id"]]
    assert by_console["state"] == by_api["state"] == "failed"
    assert by_console["approval"]["approved_by"] == {"kind": "console", "name": "Nam Tester",
                                                     "role": "network_admin",
                                                     "key_id": by_console["approval"]["approved_by"]["key_id"]}
    assert by_console["approval"]["approved_by"]["key_id"].startswith("console-")
    assert by_api["approval"]["approved_by"]["kind"] == "api"
    assert set(by_console["approval"]) == set(by_api["approval"])
    assert by_console["result"]["message"].split(":")[0] == by_api["result"]["message"].split(":")[0]
    # the playbook audit events: created, approved (with the comment), finished
    events = console_approvals.trail(console.service.runner.records.find_audit(run_id=through_console["id"]))
    assert [e["event"] for e in events] == ["run_created", "run_approved", "approval_comment", "run_finished"]
    assert events[1]["actor"]["role"] == "network_admin" and events[1]["actor"]["kind"] == "console"
    assert ("reason", "confirmed with the duty officer") in events[2]["details"]
    # the audit log (read through the API): who, what, the outcome
    [record] = [r for r in _audit(console, "nam") if r["target"].get("run_id") == through_console["id"]]
    assert record["action"] == "console_approve_run" and record["outcome"] == "ok"
    assert record["actor"]["role"] == "network_admin" and "confirmed with the duty officer" in record["detail"]
    # back on the queue: the notice, and the run is no longer there
    queue = console.page("nam", answer.headers["location"])
    assert "is approved and now running" in _text(queue) and f'id="run-{through_console["id"]}"' not in queue.text
    # the run page shows who approved it and the comment in the trail
    page = console.page("nam", f"/console/runs/{through_console['id']}")
    text = _text(page)
    assert "Approved by" in text and "Nam Tester (Network administrator)" in text
    assert "confirmed with the duty officer" in text and "Approval comment" in text
    # a decided run cannot be decided again: the page says why (409), nothing changes
    again = console.post("nam", f"/console/approvals/{through_console['id']}/approve")
    assert again.status_code == 409 and "not pending approval" in alert_text(again.text)


def test_reject_needs_a_reason_then_writes_what_the_api_writes(console):
    run, other = _pending(console), _pending(console)
    for reason in ("", "   "):
        refused = console.post("nam", f"/console/approvals/{run['id']}/reject", {"reason": reason})
        assert refused.status_code == 422
        assert alert_text(refused.text) == "Give a reason to reject the run."
        assert console.api("GET", f"/playbooks/runs/{run['id']}").json()["state"] == "pending_approval"
    too_long = console.post("nam", f"/console/approvals/{run['id']}/reject", {"reason": "x" * 501})
    assert too_long.status_code == 422 and "at most 500 characters" in alert_text(too_long.text)
    assert console.api("GET", f"/playbooks/runs/{run['id']}").json()["state"] == "pending_approval"
    answer = console.post("nam", f"/console/approvals/{run['id']}/reject",
                          {"reason": "the address is our partner's gateway"})
    assert answer.status_code == 303 and "done=rejected" in answer.headers["location"]
    api_reject = console.api("POST", f"/playbooks/runs/{other['id']}/reject", "network_admin",
                             json={"reason": "not needed"})
    assert api_reject.status_code == 200
    by_console = console.api("GET", f"/playbooks/runs/{run['id']}").json()
    by_api = console.api("GET", f"/playbooks/runs/{other['id']}").json()
    assert by_console["state"] == by_api["state"] == "rejected"
    assert by_console["approval"]["reason"] == "the address is our partner's gateway"
    assert by_console["result"] == {"ok": False, "message": "rejected: the address is our partner's gateway"}
    assert by_console["approval"]["rejected_by"]["name"] == "Nam Tester"
    assert set(by_console["approval"]) == set(by_api["approval"])
    events = console.service.runner.records.find_audit(run_id=run["id"], event="run_rejected")
    assert events[0]["reason"] == "the address is our partner's gateway"
    records = [r for r in _audit(console, "nam") if r["target"].get("run_id") == run["id"]]
    # (a refusal answered with the page again is recorded by web.CsrfChecked as "ok" with the refusal as detail)
    records.sort(key=lambda r: r["@timestamp"])
    assert [(r["detail"] or "")[:12] for r in records] == ["refused 422:"] * 3 + ["rejected run"]
    page = _text(console.page("nam", f"/console/runs/{run['id']}"))
    assert "Rejected by" in page and "the address is our partner's gateway" in page
    # the reject form on the run page itself comes back to the run page
    third = _pending(console)
    back = console.post("nam", f"/console/approvals/{third['id']}/reject", {"reason": "dup", "back": "run"})
    assert back.headers["location"] == f"/console/runs/{third['id']}?done=rejected"


def test_a_post_without_the_csrf_token_is_refused(console):
    run = _pending(console)
    client = console.clients["nam"]
    for data in ({}, {"csrf_token": "forged-token-forged-token-forged"}):
        for action in ("approve", "reject"):
            answer = client.post(f"/console/approvals/{run['id']}/{action}", data={**data, "reason": "x"})
            assert answer.status_code == 403, (action, data)
        for path in (f"/console/runs/{run['id']}/rollback", "/console/blocks/abc/unblock"):
            assert client.post(path, data=data).status_code == 403
    # the right token sent from another site is refused too
    answer = client.post(f"/console/approvals/{run['id']}/approve", data={"csrf_token": client.csrf()},
                         headers={"Sec-Fetch-Site": "cross-site"})
    assert answer.status_code == 403
    assert console.api("GET", f"/playbooks/runs/{run['id']}").json()["state"] == "pending_approval"
    refused = [r for r in _audit(console, "nam") if r["target"].get("run_id") == run["id"]]
    assert len(refused) == 7 and {r["outcome"] for r in refused} == {"refused 403"}  # 2 × (approve, reject,
    # roll back), then the cross-site one


def test_analysts_and_agency_users_may_not_open_the_queue_or_decide(console):
    run = _pending(console)
    for user in ("ana", "tttt"):
        page = console.page(user, "/console/approvals")
        assert page.status_code == 403 and "Network administrator" in alert_text(page.text)
        for action in ("approve", "reject"):
            answer = console.post(user, f"/console/approvals/{run['id']}/{action}", {"reason": "no"})
            assert answer.status_code == 403
        assert console.post(user, f"/console/runs/{run['id']}/rollback").status_code == 403
        assert console.post(user, "/console/blocks/abc/unblock").status_code == 403
    assert console.page("tttt", "/console/blocks").status_code == 403  # as GET /playbooks/blocks
    assert console.page("ana", "/console/blocks").status_code == 200
    assert console.page("ana", f"/console/runs/{run['id']}").status_code == 200
    assert 'action="/console/approvals/' not in console.page("ana", f"/console/runs/{run['id']}").text
    assert console.api("GET", f"/playbooks/runs/{run['id']}").json()["state"] == "pending_approval"
    # nobody signed in: to the sign-in page, and back here after it
    anonymous = ConsoleClient(console.suite)
    try:
        answer = anonymous.get("/console/approvals")
        assert answer.status_code == 303
        assert answer.headers["location"] == "/console/signin?next=%2Fconsole%2Fapprovals"
        assert anonymous.post(f"/console/approvals/{run['id']}/approve").status_code == 303
    finally:
        anonymous.close()
    # an admin may do everything
    assert console.page("root", "/console/approvals").status_code == 200
    assert console.post("root", f"/console/approvals/{run['id']}/reject", {"reason": "admin"}).status_code == 303


# --- runs: the API's tenancy and its rule for the devices' answers --------------------------------------------------
def _executed_run(agency: str, marker: str) -> dict:
    """A finished run as the runner stores it, with a device's transcript that names every agency's blocks."""
    now = ecs.now_iso()
    return {
        "id": uuid.uuid4().hex, "playbook": "block_address", "playbook_title": "Block an address or a range",
        "agency": agency, "alert_id": None, "state": "succeeded", "created": now, "started": now, "finished": now,
        "started_by": {"kind": "api", "name": "ana", "role": "analyst"}, "devices": [ROLLBACKABLE_DEVICE],
        "inputs": {"address": "198.51.100.99/32"}, "impact": {"level": "low", "reasons": []},
        "approval": {"required": False, "reasons": [], "policy": "automatic"},
        "steps": [{"id": "block", "action": "block", "status": "done", "params": {"address": "198.51.100.99/32"},
                   "plan": [], "description": "block 198.51.100.99/32 for 3600s",
                   "message": f"{ROLLBACKABLE_DEVICE}: blocked (covered by {marker}-rule)",
                   "devices": [{"device": ROLLBACKABLE_DEVICE, "driver": "sonicwall", "operation": "block",
                                "target": "198.51.100.99/32", "changed": True, "status": "changed",
                                "commands": ["address-object ipv4 soc-198.51.100.99_32 host 198.51.100.99"],
                                "rollback": ["no address-object ipv4 soc-198.51.100.99_32"],
                                "before": {"listing": f"{marker}-before"},
                                "message": f"answered something odd: {marker}-answer",
                                "exchanges": [{"device": ROLLBACKABLE_DEVICE, "phase": "apply",
                                               "command": "address-object ipv4 soc-198.51.100.99_32",
                                               "answer": f"{marker}-transcript", "started": now,
                                               "duration_ms": 3.0}]}]}],
        "result": {"ok": True, "message": "blocked"},
    }


def test_runs_follow_the_apis_tenancy_and_hide_the_devices_answers_from_agency_users(console):
    marker = f"other-agencies-{uuid.uuid4().hex[:8]}"
    mine, theirs = _executed_run(AGENCY_A, marker), _executed_run(AGENCY_B, marker)
    console.suite.store.put_documents(RUNS, [mine, theirs])
    console.suite.store.refresh()
    # analysts and network admins: everything, transcripts included (as the API shows them)
    for user in ("ana", "nam"):
        page = console.page(user, f"/console/runs/{mine['id']}")
        assert page.status_code == 200
        text = _text(page)
        assert f"{marker}-transcript" in text and f"{marker}-answer" in text and "Device transcript" in text
        assert "address-object ipv4 soc-198.51.100.99_32 host 198.51.100.99" in text
    # an agency user: its own agency's run, what the suite sent and the outcome, none of the device's answers
    page = console.page("tttt", f"/console/runs/{mine['id']}")
    assert page.status_code == 200
    text = _text(page)
    assert "address-object ipv4 soc-198.51.100.99_32 host 198.51.100.99" in text
    assert marker not in text and "Device transcript" not in text
    assert "The device's answers are shown to analysts and network administrators." in text
    api = console.api("GET", f"/playbooks/runs/{mine['id']}", AGENCY_A).json()
    assert marker not in str(api)  # the same rule as the API's
    # another agency's run is a 404, and is not in the list
    assert console.page("tttt", f"/console/runs/{theirs['id']}").status_code == 404
    listing = console.page("tttt", "/console/runs").text
    assert mine["id"] in listing and theirs["id"] not in listing
    everything = console.page("ana", "/console/runs", params={"state": "succeeded"}).text
    assert mine["id"] in everything and theirs["id"] in everything
    assert console.page("ana", "/console/runs", params={"state": "pending_approval"}).text.count(mine["id"]) == 0
    assert "is not known" in _text(console.page("ana", "/console/runs", params={"state": "bogus"}))


# --- blocks ---------------------------------------------------------------------------------------------------------
def _blocked(console: Console, state: str = "succeeded") -> tuple[dict, dict]:
    """A run that blocked an address on one device (as the runner records it), and its block in force."""
    run = _executed_run(AGENCY_A, "x")
    run["state"] = state
    target = f"198.51.100.{uuid.uuid4().int % 200 + 20}/32"
    entry = run["steps"][0]["devices"][0]
    entry.update(target=target, before={}, message="blocked", exchanges=[])
    now = datetime.now(timezone.utc)
    block = {"id": block_id(ROLLBACKABLE_DEVICE, target, "block"), "kind": "block", "device": ROLLBACKABLE_DEVICE,
             "target": target, "state": "active", "run_id": run["id"], "run_ids": [run["id"]],
             "playbook": "block_address", "agency": AGENCY_A, "alert_id": None, "created": ecs.utc_iso(now),
             "activated": ecs.utc_iso(now), "ttl_seconds": 7200, "expires_at": ecs.utc_iso(now + timedelta(hours=2)),
             "history": []}
    console.suite.store.put_documents(RUNS, [run])
    console.suite.store.put_documents(BLOCKS, [block])
    console.suite.store.refresh()
    return run, block


def test_blocks_in_force_with_expiry_in_the_users_zone_and_unblock_rolls_back_their_run(console, monkeypatch):
    run, block = _blocked(console)
    other_run, other_block = _blocked(console)
    page = console.page("nam", "/console/blocks", lang="vi", tz="Asia/Ho_Chi_Minh")
    assert page.status_code == 200
    row = html.unescape(re.search(rf'<tr data-block-id="{block["id"]}".*?</tr>', page.text, re.S).group(0))
    expires = ecs.parse_time(block["expires_at"]).astimezone(ZoneInfo("Asia/Ho_Chi_Minh"))
    assert block["target"] in row and ROLLBACKABLE_DEVICE in row and expires.strftime("%d/%m/%Y %H:%M:%S") in row
    assert f'href="/console/runs/{run["id"]}"' in row and "Bỏ chặn" in row and 'name="csrf_token"' in row
    assert "Chặn đang có hiệu lực" in html.unescape(page.text)
    # the device transaction stands in here (the browser test does it against the namespace firewall)
    sent = []

    def restore(device, op, *, phase):
        sent.append((device.id, op.kind, str(op.target), phase))
        return {"device": device.id, "operation": op.kind, "target": str(op.target), "ok": True,
                "at": ecs.now_iso(), "exchanges": [], "message": f"{device.id}: {op.kind} {op.target} in force"}

    monkeypatch.setattr(console.service.runner, "_restore", restore)
    answer = console.post("nam", f"/console/blocks/{block['id']}/unblock")
    assert answer.status_code == 303 and answer.headers["location"].startswith("/console/blocks?done=unblocked")
    assert sent == [(ROLLBACKABLE_DEVICE, "unblock", block["target"], "rollback")]
    # the same as POST /playbooks/runs/{id}/rollback through the API
    assert console.api("POST", f"/playbooks/runs/{other_run['id']}/rollback", "network_admin").status_code == 200
    for run_id in (run["id"], other_run["id"]):
        api_run = console.api("GET", f"/playbooks/runs/{run_id}").json()
        assert api_run["state"] == "rolled_back" and api_run["rolled_back"]["ok"] is True
    assert console.api("GET", f"/playbooks/runs/{run['id']}").json()["rolled_back"]["by"]["kind"] == "console"
    live = {b["id"] for b in console.api("GET", "/playbooks/blocks").json()["blocks"]}
    assert block["id"] not in live and other_block["id"] not in live
    assert console.suite.store.get_document(BLOCKS, block["id"])["removed_by"] == "rollback by Nam Tester"
    notice = console.page("nam", answer.headers["location"])
    assert f"{block['target']} is unblocked on {ROLLBACKABLE_DEVICE}" in _text(notice)
    [record] = [r for r in _audit(console, "nam") if r["target"].get("block_id") == block["id"]]
    assert record["action"] == "console_unblock" and record["outcome"] == "ok" and run["id"] in record["detail"]
    # the run page: rolled back by whom, what was undone, the trail
    text = _text(console.page("nam", f"/console/runs/{run['id']}"))
    assert "Rolled back by" in text and "Nam Tester (Network administrator)" in text
    assert f"Unblock {block['target']}" in text  # the undo sent, in the rollback and expiry table
    # a block no longer in force, or whose run cannot be rolled back: refused with the reason
    again = console.post("nam", f"/console/blocks/{block['id']}/unblock")
    assert again.status_code == 409 and "no longer in force" in alert_text(again.text)
    failed_run, failed_block = _blocked(console, state="failed")
    row = re.search(rf'<tr data-block-id="{failed_block["id"]}".*?</tr>', console.page("nam", "/console/blocks").text,
                    re.S).group(0)
    assert "/unblock" not in row and "cannot be rolled back" in html.unescape(row)
    refused = console.post("nam", f"/console/blocks/{failed_block['id']}/unblock")
    assert refused.status_code == 409 and "only a succeeded run can be rolled back" in alert_text(refused.text)
    assert console.post("nam", "/console/blocks/no-such-block/unblock").status_code == 404


def test_every_page_in_both_languages_has_all_its_messages(console):
    pending = _pending(console)
    executed = _executed_run(AGENCY_A, "messages")
    console.suite.store.put_documents(RUNS, [executed])
    _blocked(console)
    paths = ["/console/approvals", "/console/runs", f"/console/runs/{pending['id']}", f"/console/runs/{executed['id']}",
             "/console/blocks", "/console/blocks?state=removed"]
    for lang in ("vi", "en"):
        for path in paths:
            page = console.page("nam", path, lang=lang)
            assert page.status_code == 200, path
            assert f'<html lang="{lang}">' in page.text
            assert "approvals." not in _text(page), (lang, path)  # no message key shown as itself
    assert "Trạng thái: Chờ phê duyệt" in _text(console.page("nam", f"/console/runs/{pending['id']}", lang="vi"))


def test_helpers_shape_durations_and_what_an_unblock_also_undoes():
    assert console_approvals.format_duration(3600, "en") == "1 h"
    assert console_approvals.format_duration(5400, "vi") == "1 giờ 30 phút"
    assert console_approvals.format_duration(86400 * 2 + 5, "en") == "2 d 5 s"
    run = {"state": "succeeded", "steps": [{"devices": [
        {"device": "fw1", "operation": "block", "target": "1.2.3.4/32", "changed": True},
        {"device": "fw2", "operation": "block", "target": "1.2.3.4/32", "changed": True},
        {"device": "fw3", "operation": "block", "target": "1.2.3.4/32", "changed": False}]}]}
    block = {"id": "b", "device": "fw1", "kind": "block", "target": "1.2.3.4/32", "state": "active", "run_id": "r"}
    [row] = console_approvals.block_rows([block], {"r": run}, inventory=type("I", (), {"agencies": {}})(),
                                         lang="en")
    assert row["may_unblock"] and row["also"] == [{"device": "fw2", "operation": "block", "target": "1.2.3.4/32"}]
