"""Incidents and the alert page's responses over real HTTP (a running suite with the playbook service, users signed in
through the real form): merging alerts into an incident from the alert page makes what ``POST /api/v1/incidents``
makes (the incident and each alert's history); refusals say why; the incident list and page with tenancy (an agency
user's list is its own agency's, another agency's incident is a 404 by URL edit); silencing similar alerts stores the
silence ``POST /api/v1/silences`` stores, with matchers from the alert's own labels, and the alert manager then
matches it; a playbook's dry run shows the plan the API's dry run gives, and confirming starts the run as the API
does (pending a network admin's approval, by the console user), only from the plan shown; CSRF-less posts and roles
without triage are refused and write nothing."""

from __future__ import annotations

import html
import re
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from playbooks.records import RunFilter
from soc import ecs
from soc_api.console import incidents
from tests.api_fixtures import AGENCY_A, AGENCY_B, alert_doc, call, keys_for, running_suite
from tests.console_fixtures import ConsoleClient, add_user, alert_text, console_api

EXTENSIONS = "[playbooks.service, detections.indicators.extension, soc_api.extension]"
MARKER_B = "secret-of-health"


def _alert(i: int, agency: str, *, rule: str = "r1", address: str | None = None, minute: int | None = None) -> dict:
    address = address or f"198.51.100.{i % 200}"
    doc = alert_doc(i, agency, rule=rule, minute=minute, marker=MARKER_B if agency == AGENCY_B else "",
                    entities={"ip": [address], "user": ["root"]})
    doc["labels"] = {"rule.id": rule, "organization.id": agency, "source.ip": address}
    moment = datetime.now(timezone.utc) - timedelta(hours=2) + timedelta(seconds=i)
    doc["first_seen"] = doc["last_seen"] = ecs.utc_iso(moment)
    return doc


class Console:
    def __init__(self, suite, clients, keys):
        self.suite, self.clients, self.keys = suite, clients, keys

    def api(self, method: str, path: str, key: str = "analyst", **kwargs):
        return call(self.clients["ana"].http, method, f"/api/v1{path}", self.keys[key], **kwargs)

    def post(self, user: str, path: str, data: dict | None = None, *, token: bool = True):
        client = self.clients[user]
        form = dict(data or {})
        if token:
            form["csrf_token"] = client.csrf()
        return client.post(path, data=form)

    def get(self, user: str, path: str, *, lang: str = "en", **kwargs):
        client = self.clients[user]
        client.http.cookies.set("soc_lang", lang)
        try:
            return client.get(path, **kwargs)
        finally:
            client.http.cookies.set("soc_lang", "en")

    def new_alerts(self, count: int, agency: str = AGENCY_A, **kwargs) -> list[dict]:
        base = uuid.uuid4().int % 10_000_000
        docs = []
        for n in range(count):
            doc = _alert(base + n, agency, **kwargs)
            doc["id"] = f"{agency}-x{base + n}"
            doc["fingerprint"] = f"{agency}-fx{base + n}"
            docs.append(doc)
        self.suite.store.upsert_alerts(docs)
        self.suite.store.refresh()
        return docs


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    with running_suite(tmp_path_factory.mktemp("console-incidents"), api=console_api(),
                       extensions=EXTENSIONS) as suite:
        keys = keys_for(suite.store)
        add_user(suite, "ana", "analyst")
        add_user(suite, "nam", "network_admin")
        add_user(suite, "tttt", "agency", agency=AGENCY_A)
        add_user(suite, "yte", "agency", agency=AGENCY_B)
        clients = {}
        for name in ("ana", "nam", "tttt", "yte"):
            client = ConsoleClient(suite)
            assert client.signin(name).status_code == 303
            client.http.cookies.set("soc_lang", "en")
            client.http.cookies.set("soc_tz", "UTC")
            clients[name] = client
        yield Console(suite, clients, keys)
        for client in clients.values():
            client.close()


def _text(page) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", page.text))


def _shape(doc: dict, drop=("id", "at", "created_at", "by", "created_by", "from_address", "incident", "alerts",
                            "primary", "first_seen", "last_seen", "title")) -> dict:
    """A document without what differs between two makings of the same thing (ids, times, who)."""
    if isinstance(doc, dict):
        return {k: _shape(v, drop) for k, v in doc.items() if k not in drop}
    if isinstance(doc, list):
        return [_shape(v, drop) for v in doc]
    return doc


# --- merge into an incident -----------------------------------------------------------------------------------------
def test_merging_from_the_alert_page_makes_what_the_api_makes(console):
    first, second, third = console.new_alerts(3, rule="r-merge")
    page = console.get("ana", f"/console/alerts/{first['id']}")
    assert page.status_code == 200
    # The related alerts of the same agency are offered; the form posts with the session's token.
    form = re.search(r'<form method="post" action="/console/alerts/[^"]+/merge".*?</form>', page.text, re.S).group(0)
    assert 'name="csrf_token"' in form
    assert f'value="{second["id"]}"' in form and f'value="{third["id"]}"' in form
    answer = console.post("ana", f"/console/alerts/{first['id']}/merge",
                          {"merge_with": [second["id"]], "merge_ids": third["id"], "title": "SSH <wave>"})
    assert answer.status_code == 303, answer.text[:500]
    location = answer.headers["location"]
    incident_id = re.fullmatch(r"/console/incidents/([0-9a-f]+)\?done=merged", location).group(1)
    shown = console.get("ana", location)
    assert shown.status_code == 200 and "The incident is created from 3 alerts." in shown.text
    assert "SSH &lt;wave&gt;" in shown.text and "<wave>" not in shown.text
    assert re.findall(r'<tr data-alert-id="([^"]+)"', shown.text) == [a["id"] for a in (first, second, third)]
    # The API shows the incident and each alert's history entry.
    got = console.api("GET", f"/incidents/{incident_id}").json()
    incident = got["incident"]
    assert incident["alerts"] == [first["id"], second["id"], third["id"]] and incident["title"] == "SSH <wave>"
    assert incident["created_by"] == "ana" and incident["organization"] == {"id": AGENCY_A}
    assert incident["history"][0]["from_address"] == "127.0.0.1"
    for alert in got["alerts"]:
        assert alert["incident"] == incident_id and alert["history"][-1]["action"] == "merge"
        assert alert["history"][-1]["by"] == "ana"
    # The same merge through the API makes the same documents (ids, times and who aside).
    others = console.new_alerts(3, rule="r-merge")
    made = console.api("POST", "/incidents", json={"ids": [a["id"] for a in others], "title": "SSH <wave>"})
    assert made.status_code == 201
    via_api = console.api("GET", f"/incidents/{made.json()['id']}").json()
    assert _shape(via_api["incident"]) == _shape(incident)
    assert [_shape(a["history"]) for a in via_api["alerts"]] == [_shape(a["history"]) for a in got["alerts"]]
    # The alert page now links its incident instead of offering to merge it.
    again = console.get("ana", f"/console/alerts/{first['id']}")
    assert f'href="/console/incidents/{incident_id}"' in again.text and "/merge" not in again.text
    # Listed, newest first.
    listed = console.get("ana", "/console/incidents")
    ids = re.findall(r'<tr data-incident-id="([^"]+)"', listed.text)
    assert ids[:2] == [made.json()["id"], incident_id]
    # Audited with the user.
    records = console.api("GET", "/audit", "admin", params={"user": "ana", "limit": 200}).json()["records"]
    mine = [r for r in records if r["path"] == f"/console/alerts/{first['id']}/merge"]
    assert mine and mine[0]["outcome"] == "ok"


def test_a_refused_merge_says_why_and_changes_nothing(console):
    mine, other = console.new_alerts(2, rule="r-refuse")
    theirs = console.new_alerts(1, AGENCY_B, rule="r-refuse")[0]
    cases = [
        ({}, 422, "Choose at least one other alert"),
        ({"merge_ids": "bad/id"}, 422, "These are not alert ids: bad/id"),
        ({"merge_ids": "no-such-alert"}, 422, "does not exist, or you may not see it"),
        ({"merge_ids": theirs["id"]}, 409, "different agencies"),
        ({"merge_ids": other["id"], "title": "t" * 301}, 422, "at most 300 characters"),
    ]
    for form, status, words in cases:
        answer = console.post("ana", f"/console/alerts/{mine['id']}/merge", form)
        assert answer.status_code == status and words in alert_text(answer.text), (form, answer.status_code)
    assert 'value="' + "t" * 301 not in console.post("ana", f"/console/alerts/{mine['id']}/merge",
                                                     {"title": "x"}).text
    assert console.suite.store.get_alert(mine["id"]).get("incident") is None
    # An alert already in an incident cannot be merged again.
    assert console.post("ana", f"/console/alerts/{mine['id']}/merge",
                        {"merge_with": [other["id"]]}).status_code == 303
    third = console.new_alerts(1, rule="r-refuse")[0]
    again = console.post("ana", f"/console/alerts/{third['id']}/merge", {"merge_ids": mine["id"]})
    assert again.status_code == 409 and "already in an incident" in alert_text(again.text)
    assert console.suite.store.get_alert(third["id"]).get("incident") is None
    # A missing alert's merge is a 404.
    assert console.post("ana", "/console/alerts/no-such-alert/merge", {"merge_ids": mine["id"]}).status_code == 404
    # Each refusal shown on the page is audited as refused, with its status, not as done.
    records = console.api("GET", "/audit", "admin", params={"user": "ana", "limit": 200}).json()["records"]
    outcomes = [r["outcome"] for r in records if r["path"] == f"/console/alerts/{mine['id']}/merge"]
    assert sorted(outcomes) == sorted(["refused 422"] * 4 + ["refused 409", "ok"] + ["refused 422"]), outcomes


def test_an_alert_joins_an_existing_incident_from_its_page(console):
    a1, a2, a3 = console.new_alerts(3, rule="r-join")
    b1, b2 = console.new_alerts(2, AGENCY_B, rule="r-join")
    mine = console.api("POST", "/incidents", json={"ids": [a1["id"], a2["id"]], "title": "SSH wave <one>"}).json()
    theirs = console.api("POST", "/incidents", json={"ids": [b1["id"], b2["id"]], "title": f"B {MARKER_B}"}).json()
    # The page offers the agency's own incidents to join, not another agency's.
    page = console.get("ana", f"/console/alerts/{a3['id']}")
    form = re.search(r'<form method="post" action="/console/alerts/[^"]+/join".*?</form>', page.text, re.S).group(0)
    assert f'value="{mine["id"]}"' in form and theirs["id"] not in form and "SSH wave &lt;one&gt;" in form
    # Refused: another agency's incident, a malformed id, none, no token, an agency user; nothing changes.
    for incident_id, status, words in ((theirs["id"], 409, "alerts of its own agency only"),
                                       ("bad/id", 422, "Choose an incident of this agency"),
                                       ("", 422, "Choose an incident of this agency")):
        answer = console.post("ana", f"/console/alerts/{a3['id']}/join", {"incident": incident_id})
        assert answer.status_code == status and words in alert_text(answer.text), incident_id
    assert console.post("ana", f"/console/alerts/{a3['id']}/join", {"incident": mine["id"]},
                        token=False).status_code == 403
    assert console.post("tttt", f"/console/alerts/{a3['id']}/join", {"incident": mine["id"]}).status_code == 403
    assert console.suite.store.get_alert(a3["id"]).get("incident") is None
    assert console.suite.store.get_document("incidents", theirs["id"])["alerts"] == theirs["alerts"]
    # Joined: the incident has three alerts, the alert points to it, both histories say who did it.
    answer = console.post("ana", f"/console/alerts/{a3['id']}/join", {"incident": mine["id"]})
    assert answer.status_code == 303 and answer.headers["location"] == f"/console/incidents/{mine['id']}?done=joined"
    shown = console.get("ana", answer.headers["location"])
    assert "the incident now has 3 alerts" in _text(shown) and "added 1 alerts to the incident" in _text(shown)
    api = console.api("GET", f"/incidents/{mine['id']}").json()
    assert api["incident"]["alerts"] == mine["alerts"] + [a3["id"]]
    assert api["incident"]["history"][-1] == {**api["incident"]["history"][-1], "action": "joined",
                                              "alerts": [a3["id"]], "by": "ana"}
    alert = console.suite.store.get_alert(a3["id"])
    assert alert["incident"] == mine["id"] and alert["history"][-1]["action"] == "merge"
    # Once in an incident, the page links it and offers no joining.
    again = console.get("ana", f"/console/alerts/{a3['id']}").text
    assert "/join" not in again and f'href="/console/incidents/{mine["id"]}"' in again


def test_incident_pages_keep_to_the_users_agency(console):
    a1, a2 = console.new_alerts(2, rule="r-tenancy")
    b1, b2 = console.new_alerts(2, AGENCY_B, rule="r-tenancy")
    mine = console.api("POST", "/incidents", json={"ids": [a1["id"], a2["id"]]}).json()
    theirs = console.api("POST", "/incidents", json={"ids": [b1["id"], b2["id"]], "title": f"B {MARKER_B}"}).json()
    # An agency user lists its own agency's incidents only, whatever it asks for.
    listed = console.get("tttt", "/console/incidents", params={"agency": AGENCY_B})
    ids = re.findall(r'<tr data-incident-id="([^"]+)"', listed.text)
    assert mine["id"] in ids and theirs["id"] not in ids and MARKER_B not in listed.text
    assert 'name="agency"' not in listed.text
    # Another agency's incident by URL: 404, nothing of it shown.
    answer = console.get("tttt", f"/console/incidents/{theirs['id']}")
    assert answer.status_code == 404 and MARKER_B not in answer.text and b1["id"] not in answer.text
    assert console.get("tttt", f"/console/incidents/{mine['id']}").status_code == 200
    assert console.get("yte", f"/console/incidents/{theirs['id']}").status_code == 200
    assert console.get("tttt", "/console/incidents/no-such").status_code == 404
    # The analyst sees both, and filters by agency.
    both = re.findall(r'<tr data-incident-id="([^"]+)"', console.get("ana", "/console/incidents").text)
    assert {mine["id"], theirs["id"]} <= set(both)
    only_b = re.findall(r'<tr data-incident-id="([^"]+)"',
                        console.get("ana", "/console/incidents", params={"agency": AGENCY_B}).text)
    assert theirs["id"] in only_b and mine["id"] not in only_b
    # An agency user reads, but does not merge, silence or start playbooks (even with its own token).
    for action, form in (("merge", {"merge_ids": a2["id"]}), ("silence", {"matcher": ["rule.id"], "comment": "x"}),
                         ("playbook", {"name": "block_address"})):
        assert console.post("tttt", f"/console/alerts/{a1['id']}/{action}", form).status_code == 403
    assert console.get("tttt", f"/console/alerts/{a1['id']}/playbook", params={"name": "block_address"}
                       ).status_code == 403
    page = console.get("tttt", f"/console/alerts/{a1['id']}").text
    assert "/merge" not in page and "/silence" not in page
    vi = console.get("tttt", "/console/incidents", lang="vi")
    assert "Sự cố, mới nhất trước" in vi.text and MARKER_B not in vi.text


def test_the_incident_list_pages_with_the_apis_cursor(console, monkeypatch):
    for _ in range(3):
        pair = console.new_alerts(2, rule="r-paging")
        assert console.api("POST", "/incidents", json={"ids": [a["id"] for a in pair]}).status_code == 201
    monkeypatch.setattr(incidents, "PAGE_SIZE", 2)
    seen, path = [], "/console/incidents"
    for _ in range(100):
        page = console.get("ana", path)
        ids = re.findall(r'<tr data-incident-id="([^"]+)"', page.text)
        assert len(ids) <= 2
        seen += ids
        following = re.search(r'<a href="([^"]+)" rel="next">', page.text)
        if not following:
            break
        path = html.unescape(following.group(1))
    api_ids = [i["id"] for i in console.api("GET", "/incidents", params={"limit": 500}).json()["incidents"]]
    assert seen == api_ids and len(seen) >= 3
    # The analyst's cursor is not followed for an agency user: its own first page, said so.
    first = console.get("ana", "/console/incidents")
    cursor_link = html.unescape(re.search(r'<a href="([^"]+)" rel="next">', first.text).group(1))
    replay = console.get("tttt", cursor_link)
    assert replay.status_code == 200 and "this is the first page" in replay.text and MARKER_B not in replay.text


# --- silence similar alerts -----------------------------------------------------------------------------------------
def test_silencing_from_the_alert_page_stores_the_apis_silence_and_the_alert_manager_uses_it(console):
    address = f"203.0.113.{uuid.uuid4().int % 200 + 20}"
    alert = console.new_alerts(1, rule="r-silence", address=address)[0]
    page = console.get("ana", f"/console/alerts/{alert['id']}")
    form = re.search(r'<form method="post" action="/console/alerts/[^"]+/silence".*?</form>', page.text, re.S).group(0)
    checked = re.findall(r'name="matcher" value="([^"]+)"[^>]*\s+checked', form)
    offered = re.findall(r'name="matcher" value="([^"]+)"', form)
    assert checked == ["rule.id", "source.ip"] and "organization.id" in offered
    assert f"source.ip = {address}" in html.unescape(form) and "required" in form
    before = datetime.now(timezone.utc)
    answer = console.post("ana", f"/console/alerts/{alert['id']}/silence",
                          {"matcher": ["rule.id", "source.ip"], "duration": "4h", "comment": "known scanner <x>"})
    assert answer.status_code == 303 and answer.headers["location"].startswith(
        f"/console/alerts/{alert['id']}?done=silence")
    shown = console.get("ana", answer.headers["location"].split("#")[0])
    assert "Alerts like this one are silenced" in shown.text
    listed = console.api("GET", "/silences").json()
    made = next(s for s in listed if s["comment"] == "known scanner <x>")
    assert made["matchers"] == [{"name": "rule.id", "op": "=", "value": "r-silence"},
                                {"name": "source.ip", "op": "=", "value": address}]
    assert made["created_by"] == "ana" and made["state"] == "active"
    ends = ecs.parse_time(made["ends_at"])
    assert timedelta(hours=4) - timedelta(seconds=5) <= ends - before <= timedelta(hours=4, seconds=60)
    # The same silence through the API: the same document (ids and times aside).
    via_api = console.api("POST", "/silences", json={"matchers": made["matchers"], "ends_at": made["ends_at"],
                                                     "comment": "known scanner <x>"})
    assert via_api.status_code == 201
    assert _shape(via_api.json(), ("id", "created_at", "starts_at", "ends_at", "created_by")) == \
        _shape(made, ("id", "created_at", "starts_at", "ends_at", "created_by"))
    # The alert manager silences the next alert of that rule and address, not another address's.
    manager = console.suite.alerts.silences
    manager.invalidate()
    similar = dict(alert, id="similar", labels={**alert["labels"]})
    assert made["id"] in manager.matching(similar)
    other = dict(alert, id="other", labels={**alert["labels"], "source.ip": "203.0.113.250"})
    assert made["id"] not in manager.matching(other)
    records = console.api("GET", "/audit", "admin", params={"user": "ana", "limit": 200}).json()["records"]
    assert any(r["path"] == f"/console/alerts/{alert['id']}/silence" and r["outcome"] == "ok" for r in records)


def test_a_silence_needs_a_matcher_a_duration_and_a_comment(console):
    alert = console.new_alerts(1, rule="r-silence-refused")[0]
    count = len(console.api("GET", "/silences", params={"state": "all"}).json())
    for form, words in (({"matcher": ["rule.id"], "duration": "24h"}, "Say why these alerts are silenced."),
                        ({"duration": "24h", "comment": "x"}, "Choose at least one label"),
                        ({"matcher": ["event.original"], "comment": "x"}, "Choose at least one label"),
                        ({"matcher": ["rule.id"], "duration": "99y", "comment": "x"}, "Choose one of the durations"),
                        ({"matcher": ["rule.id"], "comment": "x" * 2001}, "at most 2000 characters")):
        answer = console.post("ana", f"/console/alerts/{alert['id']}/silence", form)
        assert answer.status_code == 422 and words in alert_text(answer.text), form
    assert len(console.api("GET", "/silences", params={"state": "all"}).json()) == count


# --- start a playbook -----------------------------------------------------------------------------------------------
def _brute_force_alert(console) -> dict:
    address = f"198.51.100.{uuid.uuid4().int % 150 + 50}"
    return console.new_alerts(1, rule="soc_ssh_brute_force", address=address)[0]


def _runs_of(console, alert_id: str) -> list[dict]:
    return console.suite.service("playbooks").runner.records.find_runs(RunFilter(alert_id=alert_id, limit=50))


def test_a_playbook_shows_its_dry_run_then_starts_as_the_api_starts_it(console):
    alert = _brute_force_alert(console)
    page = console.get("ana", f"/console/alerts/{alert['id']}")
    suggested = re.search(r'<optgroup label="Suggested for this alert">(.*?)</optgroup>', page.text, re.S).group(1)
    assert 'value="block_ssh_brute_force"' in suggested
    dry = console.get("ana", f"/console/alerts/{alert['id']}/playbook", params={"name": "block_ssh_brute_force"})
    assert dry.status_code == 200, dry.text[:500]
    # The plan is the API's dry run: every command and undo per device, the approval and its reasons.
    api_plan = console.api("POST", "/playbooks/block_ssh_brute_force/runs",
                           json={"alert_id": alert["id"], "dry_run": True}).json()
    text = html.unescape(dry.text)
    changes = [c for step in api_plan["steps"] for c in step.get("plan") or []]
    assert changes
    for change in changes:
        assert change["device"] in text
        for command in change["commands"] + change["rollback"]:
            assert command in text
    assert api_plan["approval"]["required"] and "wait for a network administrator" in text
    for reason in api_plan["approval"]["reasons"]:
        assert reason in text
    assert not _runs_of(console, alert["id"])  # a dry run starts nothing
    # Confirm: the run is created by the runner, as the API's, pending approval, by the console user.
    form = re.search(r'<form method="post" action="([^"]+)" id="confirm-run">(.*?)</form>', dry.text, re.S)
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', form.group(2)))
    assert form.group(1) == f"/console/alerts/{alert['id']}/playbook" and fields["digest"]
    fields.pop("csrf_token")
    answer = console.post("ana", form.group(1), fields)
    assert answer.status_code == 303, answer.text[:500]
    run_id = re.fullmatch(r"/console/runs/([0-9a-f]+)", answer.headers["location"]).group(1)
    run = console.api("GET", f"/playbooks/runs/{run_id}").json()
    assert run["state"] == "pending_approval" and run["alert_id"] == alert["id"]
    assert run["playbook"] == "block_ssh_brute_force"
    assert run["started_by"]["kind"] == "console" and run["started_by"]["name"] == "Ana Tester"
    assert run["started_by"]["role"] == "analyst"
    assert [c["commands"] for s in run["steps"] for c in s.get("plan") or []] == [c["commands"] for c in changes]
    # The network admin's queue has it; the run page opens.
    assert run_id in console.get("nam", "/console/approvals").text
    assert console.get("ana", f"/console/runs/{run_id}").status_code == 200


def test_a_run_starts_only_from_the_plan_shown(console):
    alert = _brute_force_alert(console)
    dry = console.get("ana", f"/console/alerts/{alert['id']}/playbook", params={"name": "block_ssh_brute_force"})
    digest = re.search(r'name="digest" value="([^"]+)"', dry.text).group(1)
    changed = console.post("ana", f"/console/alerts/{alert['id']}/playbook",
                           {"name": "block_ssh_brute_force", "digest": "0" * 32})
    assert changed.status_code == 409 and "The plan changed since it was shown" in changed.text
    assert re.search(r'name="digest" value="([^"]+)"', changed.text).group(1) == digest  # the new plan to confirm
    # Other inputs than those planned: another plan.
    other = console.post("ana", f"/console/alerts/{alert['id']}/playbook",
                         {"name": "block_ssh_brute_force", "digest": digest, "in.ttl": "2h"})
    assert other.status_code == 409
    assert not _runs_of(console, alert["id"])


def test_a_playbook_that_cannot_run_says_why(console):
    alert = console.new_alerts(1, rule="r-playbook")[0]
    missing = console.get("ana", f"/console/alerts/{alert['id']}/playbook", params={"name": "block_address"})
    assert missing.status_code == 422 and "input address is required" in missing.text
    assert 'id="confirm-run"' not in missing.text
    given = console.get("ana", f"/console/alerts/{alert['id']}/playbook",
                        params={"name": "block_address", "in.address": "203.0.113.99"})
    assert given.status_code == 200 and 'name="in.address" value="203.0.113.99"' in given.text
    refused = console.get("ana", f"/console/alerts/{alert['id']}/playbook",
                          params={"name": "block_address", "in.address": "10.0.1.0/24"})
    assert refused.status_code == 422
    assert console.get("ana", f"/console/alerts/{alert['id']}/playbook", params={"name": "nope"}).status_code == 404
    assert console.get("ana", "/console/alerts/no-such/playbook", params={"name": "block_address"}
                       ).status_code == 404
    vi = console.get("ana", f"/console/alerts/{alert['id']}/playbook",
                     params={"name": "block_address", "in.address": "203.0.113.99"}, lang="vi")
    assert "Chạy thử" in vi.text


# --- CSRF -----------------------------------------------------------------------------------------------------------
def test_posts_without_the_csrf_token_are_refused_and_write_nothing(console):
    first, second = console.new_alerts(2, rule="r-csrf")
    alert = _brute_force_alert(console)
    dry = console.get("ana", f"/console/alerts/{alert['id']}/playbook", params={"name": "block_ssh_brute_force"})
    digest = re.search(r'name="digest" value="([^"]+)"', dry.text).group(1)
    silences_before = len(console.api("GET", "/silences", params={"state": "all"}).json())
    posts = ((f"/console/alerts/{first['id']}/merge", {"merge_ids": second["id"]}),
             (f"/console/alerts/{first['id']}/silence", {"matcher": ["rule.id"], "comment": "forged"}),
             (f"/console/alerts/{alert['id']}/playbook", {"name": "block_ssh_brute_force", "digest": digest}))
    for extra in ({}, {"csrf_token": "forged-token-forged-token-forged"}):
        for path, form in posts:
            answer = console.post("ana", path, {**form, **extra}, token=False)
            assert answer.status_code == 403, (path, extra)
    # With the right token but sent from another site: refused too.
    client = console.clients["ana"]
    answer = client.post(posts[0][0], data={**posts[0][1], "csrf_token": client.csrf()},
                         headers={"Sec-Fetch-Site": "cross-site"})
    assert answer.status_code == 403
    assert console.suite.store.get_alert(first["id"]).get("incident") is None
    assert len(console.api("GET", "/silences", params={"state": "all"}).json()) == silences_before
    assert not _runs_of(console, alert["id"])
