"""The console's alert queue and alert page over real HTTP (a running suite, users signed in through the real form):
filters, sorts, grouping and cursors; tenancy (an agency user's URL edits); triage writing the same history as the
API; CSRF; the live stream of new alerts. The queue's paging is also walked straight through its data functions
(soc_api/console/alerts.py) with small pages, so every cursor path is taken."""

from __future__ import annotations

import html
import json
import re
import socket
import time
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import httpx
import pytest

from soc_api.console import alerts as console_alerts
from soc_api.console.alerts import (
    QueueQuery, api_cursor_after, entity_context, group_alerts, new_since, queue_page,
)
from soc_api.data import AlertFilter, Data
from soc_api.keys import Principal
from tests.api_fixtures import AGENCY_A, AGENCY_B, alert_doc, call, event_doc, keys_for, running_suite
from tests.console_fixtures import ConsoleClient, add_user, console_api

UTC = ZoneInfo("UTC")
SEVERITIES = ["informational", "low", "medium", "high", "critical"]
N_A, N_B = 70, 20  # alerts of agency A (more than one page of 50) and of agency B
MARKER_B = "secret-of-health"  # in every agency B alert's summary: must never reach an agency A page


def _alert(i: int, agency: str) -> dict:
    doc = alert_doc(i, agency, severity=SEVERITIES[i % 5], rule="r1" if i % 2 else "r2",
                    marker=MARKER_B if agency == AGENCY_B else "",
                    entities={"ip": [f"198.51.100.{i % 7}"], "user": [f"user{i % 3}"]})
    moment = datetime(2026, 11, 22, 10, 0, tzinfo=timezone.utc) + timedelta(seconds=30 * i)
    if i % 10 == 9:
        moment -= timedelta(seconds=30)  # ties in last_seen: the cursor must break them by id
    doc["first_seen"] = doc["last_seen"] = moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    doc["evidence"] = [f"{agency}-e{i}"]
    if i % 4 == 0:
        doc["threat"] = {"tactic": ["discovery"], "technique": ["T1046"]}
    return doc


def _event(i: int, agency: str) -> dict:
    doc = event_doc(i, agency, marker=MARKER_B if agency == AGENCY_B else "")
    doc["event"]["id"] = f"{agency}-e{i}"
    doc["event"]["original"] += ' <script>alert("x")</script>'
    return doc


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    with running_suite(tmp_path_factory.mktemp("console-alerts"), api=console_api()) as suite:
        store = suite.store
        store.write_events([_event(i, AGENCY_A) for i in range(N_A)] + [_event(i, AGENCY_B) for i in range(N_B)])
        b_alerts = [_alert(i, AGENCY_B) for i in range(N_B)]
        b_alerts[0]["entities"]["ip"].append("10.20.10.10")  # agency A's web server, seen in a B alert
        store.upsert_alerts([_alert(i, AGENCY_A) for i in range(N_A)] + b_alerts)
        store.refresh()
        add_user(suite, "ana", "analyst")
        add_user(suite, "nam", "network_admin")
        add_user(suite, "tttt", "agency", agency=AGENCY_A)
        add_user(suite, "yte", "agency", agency=AGENCY_B)
        clients = {}
        for name in ("ana", "tttt", "yte"):
            client = ConsoleClient(suite)
            assert client.signin(name).status_code == 303
            clients[name] = client
        yield suite, clients, keys_for(store)
        for client in clients.values():
            client.close()


def _page(client: ConsoleClient, path: str, params: dict | None = None, *, lang: str = "en",
          tz: str = "UTC") -> httpx.Response:
    """A page in ``lang`` with times in ``tz`` (the cookies a browser would send)."""
    client.http.cookies.set("soc_lang", lang)
    client.http.cookies.set("soc_tz", tz)
    return client.get(path, params=params)


def _ids(page: str) -> list[str]:
    return re.findall(r'<tr data-alert-id="([^"]+)"', page)


def _next(page: str) -> str | None:
    found = re.search(r'<a href="([^"]+)" rel="next">', page)
    return html.unescape(found.group(1)) if found else None


def _data(suite, role: str = "analyst", agency: str | None = None) -> Data:
    return Data(None, Principal(key_id="t", role=role, agency=agency, name="t", user="t"), suite)


def _walk(data: Data, q: QueueQuery, limit: int) -> list[dict]:
    seen: list[dict] = []
    for _ in range(1000):
        page = queue_page(data, q, UTC, limit=limit)
        assert len(page.alerts) <= limit
        seen += page.alerts
        if not page.next_cursor:
            return seen
        q.cursor = page.next_cursor
    raise AssertionError("the cursor walk did not end")


# --- the queue ------------------------------------------------------------------------------------------------------
def test_queue_pages_by_cursor_and_filters(console):
    suite, clients, _ = console
    client = clients["ana"]
    first = client.get("/console/alerts")
    assert first.status_code == 200 and "text/html" in first.headers["content-type"]
    assert "default-src 'self'" in first.headers["content-security-policy"]
    ids = _ids(first.text)
    assert len(ids) == console_alerts.PAGE_SIZE
    second = client.get(_next(first.text))
    assert second.status_code == 200 and _next(second.text) is None
    every = ids + _ids(second.text)
    assert sorted(every) == sorted([f"{AGENCY_A}-a{i}" for i in range(N_A)] + [f"{AGENCY_B}-a{i}" for i in range(N_B)])
    # The same order as the API's newest-first listing.
    api = call(client.http, "GET", "/api/v1/alerts", console[2]["analyst"], params={"limit": 200}).json()["alerts"]
    assert every == [a["id"] for a in api]
    # Filters: one per store-side field, each answer checked against the API's.
    for params, api_params in (({"severity": "critical"}, {"severity": "critical"}),
                               ({"status": "new", "agency": AGENCY_B}, {"status": "new", "agency": AGENCY_B}),
                               ({"rule": "r1", "agency": AGENCY_B}, {"rule_id": "r1", "agency": AGENCY_B}),
                               ({"entity": "user2"}, {"entity": "user2"}),
                               ({"since": "2026-11-22T10:10", "until": "2026-11-22T10:20"},
                                {"since": "2026-11-22T10:10:00Z", "until": "2026-11-22T10:20:00Z"})):
            page = _page(client, "/console/alerts", params)
            want = call(client.http, "GET", "/api/v1/alerts", console[2]["analyst"],
                        params={**api_params, "limit": 50}).json()["alerts"]
            assert _ids(page.text) == [a["id"] for a in want], params
            assert want, params
    # A time typed in the browser is in the user's zone; the view's links carry it as an absolute time.
    utc = _page(client, "/console/alerts", {"since": "2026-11-22T10:10", "until": "2026-11-22T10:20"})
    local = _page(client, "/console/alerts", {"since": "2026-11-22T17:10", "until": "2026-11-22T17:20"},
                  tz="Asia/Ho_Chi_Minh")
    assert _ids(local.text) == _ids(utc.text) and _ids(utc.text)
    assert "since=2026-11-22T10%3A10%3A00.000Z" in local.text and 'value="2026-11-22T17:10"' in local.text
    # A relative time range: only alerts last seen within it.
    hour_ago = (datetime.now(timezone.utc) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S")
    recent = _ids(client.get("/console/alerts", params={"range": "1h"}).text)
    assert all(suite.store.get_alert(i)["last_seen"] >= hour_ago for i in recent)
    assert len(recent) < len(every)


def test_every_sort_and_tactic_walks_each_alert_once_in_order(console):
    suite = console[0]
    data = _data(suite)
    everything = {a["id"]: a for a in data.iter_alerts(AlertFilter())}
    for sort in ("newest", "severity"):
        for tactic in ("", "discovery"):
            for limit in (1, 7, 50):
                got = _walk(data, QueueQuery(sort=sort, tactic=tactic), limit)
                ids = [a["id"] for a in got]
                want = [a for a in everything.values() if not tactic or tactic in a["threat"]["tactic"]]
                assert sorted(ids) == sorted(a["id"] for a in want) and len(ids) == len(set(ids)), (sort, tactic)
                keys = [(a["last_seen"], a["id"]) for a in got]
                if sort == "newest":
                    assert keys == sorted(keys, reverse=True)
                else:
                    ranks = [SEVERITIES.index(a["severity"]) for a in got]
                    assert ranks == sorted(ranks, reverse=True)
                    for rank in set(ranks):  # newest first within a severity
                        same = [k for k, r in zip(keys, ranks) if r == rank]
                        assert same == sorted(same, reverse=True)


def test_the_store_filters_by_tactic_in_each_spelling_of_it(console):
    """The tactic filter is the store's (one query a page, whatever the share of alerts with that tactic), and a
    rule's tag may spell a tactic the older way (attack.credential_access) or in words."""
    suite = console[0]
    data = _data(suite)
    spelled = []
    for n, spelling in enumerate(("lateral_movement", "Lateral Movement", "lateral-movement")):
        doc = suite.store.get_alert(next(iter(a["id"] for a in data.iter_alerts(AlertFilter(agency=AGENCY_A)))))
        doc = {**doc, "id": f"spelling-{n}", "fingerprint": f"spelling-{n}", "organization": {"id": "so-spelling"},
               "threat": {"tactic": [spelling], "technique": ["T1110"]}}  # an agency no other test counts
        spelled.append(doc)
    suite.store.upsert_alerts(spelled)
    suite.store.refresh()
    page = queue_page(data, QueueQuery(tactic="lateral-movement"), UTC, limit=50)
    assert {a["id"] for a in page.alerts} == {"spelling-0", "spelling-1", "spelling-2"}
    calls = []
    real = data.list_alerts
    data.list_alerts = lambda *a, **k: calls.append(a) or real(*a, **k)
    assert queue_page(data, QueueQuery(tactic="impact"), UTC, limit=50).alerts == [] and len(calls) == 1


def test_the_scan_cursor_is_the_apis_own(console):
    """A tactic scan that fills its page in the middle of a batch makes the cursor list_alerts would have given."""
    data = _data(console[0])
    f = AlertFilter(agency=AGENCY_A)
    page = data.list_alerts(f, 5, None)
    assert api_cursor_after(data, f, page.items[-1]) == page.next_cursor


def test_grouping_by_rule_and_by_entity(console):
    _, clients, _ = console
    client = clients["ana"]
    by_rule = _page(client, "/console/alerts", {"group": "rule", "agency": AGENCY_B})
    headings = re.findall(r'scope="rowgroup">\s*(.*?)\s*<span', by_rule.text, re.S)
    assert headings == ["Rule r1", "Rule r2"] and len(_ids(by_rule.text)) == N_B
    assert 'data-live-mode="banner"' in by_rule.text  # grouped: new alerts are announced, not inserted
    by_entity = _page(client, "/console/alerts", {"group": "entity", "agency": AGENCY_B}).text
    headings = re.findall(r'scope="rowgroup">\s*(.*?)\s*<span', by_entity, re.S)
    assert sorted(headings) == sorted(f"Address: 198.51.100.{i}" for i in range(7))
    groups = group_alerts([{"id": "x", "entities": {}, "severity": "low"},
                           {"id": "y", "entities": {"user": ["u"]}, "severity": "high"},
                           {"id": "z", "entities": {"user": ["u"], "ip": []}, "severity": "low"}], "entity")
    assert [(g.kind, g.label, [a["id"] for a in g.alerts], g.worst) for g in groups] == [
        ("", "", ["x"], "low"), ("user", "u", ["y", "z"], "high")]


def test_bad_filters_are_dropped_with_a_notice(console):
    _, clients, _ = console
    client = clients["ana"]
    page = _page(client, "/console/alerts", {"status": "bogus", "severity": "<b>", "sort": "x", "group": "y",
                                             "since": "yesterday", "entity": "e" * 300})
    assert page.status_code == 200 and len(_ids(page.text)) == console_alerts.PAGE_SIZE
    for text in ("unknown status", "unknown severity", "unknown sort", "unknown grouping",
                 "start time could not be read", "too long"):
        assert text in page.text
    assert "<b>" not in page.text
    # A cursor of other filters (or forged) is not followed: the first page, said so.
    cursor = re.search(r"cursor=([^&\"]+)", client.get("/console/alerts").text).group(1)
    other = _page(client, f"/console/alerts?severity=low&cursor={cursor}")
    assert other.status_code == 200 and "this is the first page" in other.text
    assert client.get("/console/alerts?cursor=AAAA").status_code == 200


# --- tenancy ----------------------------------------------------------------------------------------------------------
def test_agency_user_sees_own_agency_only_and_url_edits_answer_404(console):
    suite, clients, _ = console
    client = clients["tttt"]
    seen = []
    page = client.get("/console/alerts", params={"agency": AGENCY_B}).text  # asking for another agency: ignored
    while True:
        seen += _ids(page)
        assert MARKER_B not in page and 'name="agency"' not in page
        following = _next(page)
        if not following:
            break
        page = client.get(following).text
    assert sorted(seen) == sorted(f"{AGENCY_A}-a{i}" for i in range(N_A))
    for params in ({"entity": "198.51.100.1"}, {"rule": "r1"}, {"sort": "severity"}, {"group": "entity"},
                   {"tactic": "discovery"}):
        page = client.get("/console/alerts", params=params).text
        assert MARKER_B not in page and all(i.startswith(AGENCY_A) for i in _ids(page)), params
    # Another agency's alert by URL: 404, and nothing of it in the answer.
    for path in (f"/console/alerts/{AGENCY_B}-a3", "/console/alerts/no-such-alert"):
        answer = client.get(path)
        # (the path itself is in the page's links: it is what the user typed, not the alert's)
        assert answer.status_code == 404 and MARKER_B not in answer.text and "198.51.100" not in answer.text
    # Its own alert: related alerts of the same rule and entity are its own agency's only.
    own = client.get(f"/console/alerts/{AGENCY_A}-a1").text
    related = re.findall(r'data-related-id="([^"]+)"', own)
    assert related and all(r.startswith(AGENCY_A) for r in related) and MARKER_B not in own
    # An analyst is shown the other agencies' alerts of the rule; agency B, its own only.
    mixed = re.findall(r'data-related-id="([^"]+)"', clients["ana"].get(f"/console/alerts/{AGENCY_B}-a1").text)
    assert any(r.startswith(AGENCY_A) for r in mixed)
    own_b = re.findall(r'data-related-id="([^"]+)"', clients["yte"].get(f"/console/alerts/{AGENCY_B}-a1").text)
    assert own_b and all(r.startswith(AGENCY_B) for r in own_b)
    # An agency user reads but does not triage, even with its own valid CSRF token.
    token = client.csrf()
    refused = client.post(f"/console/alerts/{AGENCY_A}-a1/acknowledge", data={"csrf_token": token})
    assert refused.status_code == 403
    assert suite.store.get_alert(f"{AGENCY_A}-a1")["status"] == "new"


def test_entity_context_from_the_inventory_and_hidden_across_agencies(console):
    suite, clients, _ = console
    analyst = entity_context(_data(suite), suite.store.get_alert(f"{AGENCY_B}-a0"), "en")
    web = next(e for e in analyst if e["value"] == "10.20.10.10")
    assert web["agency"] == AGENCY_A and web["asset"]["id"] == "so-tttt-web-01"
    assert web["asset"]["criticality"] == "high" and not web["hidden"]
    outside = next(e for e in analyst if e["value"] == "198.51.100.0")
    assert outside["zone"] == "outside" and outside["asset"] is None
    tenant = entity_context(_data(suite, "agency", AGENCY_B), suite.store.get_alert(f"{AGENCY_B}-a0"), "en")
    hidden = next(e for e in tenant if e["value"] == "10.20.10.10")
    assert hidden["hidden"] and hidden["asset"] is None and hidden["agency"] is None
    page = _page(clients["yte"], f"/console/alerts/{AGENCY_B}-a0").text
    assert "so-tttt-web-01" not in page and "Not in your agency&#39;s inventory" in page
    page = _page(clients["ana"], f"/console/alerts/{AGENCY_B}-a0", lang="vi").text
    assert "so-tttt-web-01" in page and "Đặc biệt quan trọng" not in page and "Cao" in page


def test_alert_page_shows_what_happened_evidence_and_attack(console):
    _, clients, _ = console
    page = _page(clients["ana"], f"/console/alerts/{AGENCY_A}-a4").text
    assert "Rule r2: detected 1 times at Department of Information and Communications" in page
    assert "2026-11-22 10:02:00" in page  # first and last seen, in the user's time zone
    assert 'href="https://attack.mitre.org/techniques/T1046/"' in page
    assert 'href="https://attack.mitre.org/tactics/TA0007/"' in page
    # The evidence event, its document escaped: the script in it is text.
    assert "&lt;script&gt;alert(" in page and '<script>alert("x")' not in page
    assert "<details>" in page and "&#34;so-tttt-e4&#34;" in page
    vi = _page(clients["ana"], f"/console/alerts/{AGENCY_A}-a4", lang="vi").text
    assert "Chuyện gì đã xảy ra" in vi and "Sự kiện bằng chứng" in vi and "Lịch sử" in vi


# --- triage -----------------------------------------------------------------------------------------------------------
def _history_shape(alert: dict) -> list[dict]:
    drop = {"at", "by", "from_address", "note"}
    return [{k: v for k, v in h.items() if k not in drop} for h in alert["history"]]


def test_triage_writes_the_same_history_as_the_api(console):
    suite, clients, keys = console
    client = clients["ana"]
    aid = f"{AGENCY_A}-a11"
    token = client.csrf()
    steps = [("acknowledge", {}), ("assign", {"assignee": "minh.tran"}), ("notes", {"text": "checked <the> host"}),
             ("status", {"status": "closed", "reason": "false_positive", "comment": "scanner of the DC"})]
    for action, form in steps:
        answer = client.post(f"/console/alerts/{aid}/{action}", data={**form, "csrf_token": token})
        assert answer.status_code == 303, (action, answer.text[:300])
        assert answer.headers["location"].startswith(f"/console/alerts/{aid}?done=")
    page = _page(client, f"/console/alerts/{aid}?done=status").text
    assert "The status is changed." in page
    assert [a for a in re.findall(r'<li data-action="([a-z]+)"', page)] == ["raised", "status", "assign", "note",
                                                                              "status"]
    assert "checked &lt;the&gt; host" in page and "False positive" in page and "scanner of the DC" in page
    # The API shows the same history, made by the signed-in user from the browser's address.
    api = call(client.http, "GET", f"/api/v1/alerts/{aid}", keys["analyst"]).json()["alert"]
    assert [h["action"] for h in api["history"]] == ["raised", "status", "assign", "note", "status"]
    assert all(h["by"] == "ana" and h["from_address"] == "127.0.0.1" for h in api["history"][1:])
    assert api["status"] == "closed" and api["close_reason"] == "false_positive" and api["assignee"] == "minh.tran"
    assert api["notes"][0]["text"] == "checked <the> host" and api["notes"][0]["by"] == "ana"
    # The same steps through the API on another alert leave the same history (who and when aside).
    other = f"{AGENCY_A}-a13"
    call(client.http, "POST", f"/api/v1/alerts/{other}/acknowledge", keys["analyst"])
    call(client.http, "POST", f"/api/v1/alerts/{other}/assign", keys["analyst"], json={"assignee": "minh.tran"})
    call(client.http, "POST", f"/api/v1/alerts/{other}/notes", keys["analyst"], json={"text": "checked <the> host"})
    call(client.http, "POST", f"/api/v1/alerts/{other}/status", keys["analyst"],
         json={"status": "closed", "reason": "false_positive", "comment": "scanner of the DC"})
    via_api = call(client.http, "GET", f"/api/v1/alerts/{other}", keys["analyst"]).json()["alert"]
    assert _history_shape(via_api) == _history_shape(api)
    # Every console change is in the audit log with its user.
    records = call(client.http, "GET", "/api/v1/audit", keys["admin"], params={"limit": 100}).json()["records"]
    mine = [r for r in records if r["path"].startswith(f"/console/alerts/{aid}/")]
    assert len(mine) == 4 and all(r["actor"]["user"] == "ana" and r["outcome"] == "ok" for r in mine)
    # Re-opening needs a reason; unassigning is an empty assignee.
    assert client.post(f"/console/alerts/{aid}/status",
                       data={"status": "in_progress", "comment": "new evidence", "csrf_token": token}).status_code == 303
    assert client.post(f"/console/alerts/{aid}/assign", data={"assignee": "", "csrf_token": token}).status_code == 303
    assert suite.store.get_alert(aid)["assignee"] is None


def test_refused_changes_say_why(console):
    suite, clients, _ = console
    client = clients["ana"]
    token = client.csrf()
    aid = f"{AGENCY_A}-a21"
    client.http.cookies.set("soc_lang", "en")
    closing = client.post(f"/console/alerts/{aid}/status", data={"status": "closed", "csrf_token": token})
    assert closing.status_code == 422 and "Closing needs a reason." in closing.text
    silent = client.post(f"/console/alerts/{aid}/status", data={"status": "in_progress", "csrf_token": token})
    assert silent.status_code == 422 and "Say why the status changes." in silent.text
    bogus = client.post(f"/console/alerts/{aid}/status", data={"status": "new", "comment": "x", "csrf_token": token})
    assert bogus.status_code == 422
    empty = client.post(f"/console/alerts/{aid}/notes", data={"text": "  ", "csrf_token": token})
    assert empty.status_code == 422 and "A note needs text." in empty.text
    assert suite.store.get_alert(aid)["history"][-1]["action"] == "raised"  # nothing was changed
    assert client.post(f"/console/alerts/{aid}/status", data={"status": "closed", "reason": "benign",
                                                              "csrf_token": token}).status_code == 303
    conflict = client.post(f"/console/alerts/{aid}/acknowledge", data={"csrf_token": token})
    assert conflict.status_code == 409 and "cannot go from closed to acknowledged" in conflict.text
    assert client.post(f"/console/alerts/{AGENCY_B}-no-such/acknowledge",
                       data={"csrf_token": token}).status_code == 404


def test_a_post_without_the_csrf_token_is_refused(console):
    suite, clients, _ = console
    client = clients["ana"]
    aid = f"{AGENCY_A}-a31"
    for data in ({}, {"csrf_token": "forged-token-forged-token-forged"}):
        for action, form in (("acknowledge", {}), ("notes", {"text": "x"}), ("assign", {"assignee": "eve"}),
                             ("status", {"status": "closed", "reason": "benign"})):
            answer = client.post(f"/console/alerts/{aid}/{action}", data={**form, **data})
            assert answer.status_code == 403, (action, data)
    # Sent from another site with the right token: refused too.
    answer = client.post(f"/console/alerts/{aid}/acknowledge", data={"csrf_token": client.csrf()},
                         headers={"Sec-Fetch-Site": "cross-site"})
    assert answer.status_code == 403
    assert suite.store.get_alert(aid)["status"] == "new" and len(suite.store.get_alert(aid)["history"]) == 1
    # Signed out: no page, no change.
    anonymous = httpx.Client(base_url=client.http.base_url, follow_redirects=False)
    assert anonymous.get("/console/alerts").status_code == 303
    assert anonymous.post(f"/console/alerts/{aid}/acknowledge").status_code in (303, 401, 403)
    anonymous.close()


# --- new alerts, live --------------------------------------------------------------------------------------------------
def _events(response: httpx.Response, deadline: float):
    """(event, data) of a Server-Sent Events response, until ``deadline``."""
    event, data = None, []
    for line in response.iter_lines():
        if time.monotonic() > deadline:
            return
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            data.append(line[6:])
        elif line == "":
            if event:
                yield event, "\n".join(data)
            event, data = None, []


def _syslog_brute_force(suite, address: str) -> None:
    """Five failed SSH logins from ``address`` over the syslog TCP socket: the suite's SSH Brute Force rule fires."""
    now = datetime.now(timezone.utc).astimezone(suite.settings.tz)
    lines = b"".join((f"<38>{now:%b} {now.day:2d} {now:%H:%M:%S} so-tttt-web-01 sshd[7]: Failed password for root "
                      f"from {address} port {4440 + i} ssh2\n").encode() for i in range(5))
    with socket.create_connection(("127.0.0.1", suite.bound["syslog_tcp"])) as sock:
        sock.sendall(lines)


def test_the_stream_sends_an_alert_raised_after_connecting(console):
    suite, clients, _ = console
    address = "203.0.113.77"
    newest = call(clients["ana"].http, "GET", "/api/v1/alerts", console[2]["analyst"],
                  params={"limit": 1}).json()["alerts"][0]["last_seen"]
    streams = {}
    try:
        for name in ("ana", "yte"):
            client = clients[name]
            request = client.http.build_request("GET", "/console/alerts/stream",
                                                params={"after": newest, "seconds": "20" if name == "ana" else "6"},
                                                headers={"Accept": "text/event-stream"})
            streams[name] = client.http.send(request, stream=True)
            assert streams[name].status_code == 200
            assert streams[name].headers["content-type"].startswith("text/event-stream")
        _syslog_brute_force(suite, address)
        deadline = time.monotonic() + 15
        message = None
        for event, data in _events(streams["ana"], deadline):
            if event == "alerts" and address in data:
                message = json.loads(data)
                break
        assert message, "no new alert came through the stream"
        assert message["count"] == len(message["ids"]) >= 1
        row = message["html"]
        assert "<tr data-alert-id=" in row and "SSH Brute Force" in row and address in row
        raised = suite.store.get_alert(message["ids"][0])
        assert raised["organization"]["id"] == AGENCY_A
        # Agency B's stream, open all along, never carries agency A's alert.
        for event, data in _events(streams["yte"], time.monotonic() + 3):
            assert address not in data and message["ids"][0] not in data
    finally:
        for response in streams.values():
            response.close()
    # The stream's work is bounded: one limited query a poll, the already-sent not sent again.
    data = _data(suite)
    sent: dict[str, str] = {}
    fresh, after, more = new_since(data, QueueQuery(), UTC, newest, sent)
    again, after2, _ = new_since(data, QueueQuery(), UTC, after, sent)
    assert message["ids"][0] in [a["id"] for a in fresh] and not more and again == [] and after2 == after
    assert new_since(data, QueueQuery(), UTC, "", {})[2]  # everything is "new" from the start: more than a batch


def test_the_stream_does_not_send_again_what_the_page_shows(console):
    suite, clients, _ = console
    client = clients["ana"]
    for params in ({}, {"sort": "severity", "agency": AGENCY_A}):
        page = client.get("/console/alerts", params=params).text
        stream_url = html.unescape(re.search(r'data-stream="([^"]+)"', page).group(1))
        assert "after=" in stream_url and "seen=" in stream_url
        with client.http.stream("GET", stream_url + "&seconds=2") as response:
            assert response.status_code == 200
            assert [e for e, _ in _events(response, time.monotonic() + 10) if e == "alerts"] == [], params
    # A browser reconnecting says where it was (the last event's id): nothing before it comes again.
    newest = call(client.http, "GET", "/api/v1/alerts", console[2]["analyst"], params={"limit": 5}).json()["alerts"]
    top = [a["id"] for a in newest if a["last_seen"] == newest[0]["last_seen"]]  # ties: all of them
    with client.http.stream("GET", "/console/alerts/stream", params={"seconds": "2"},
                            headers={"Last-Event-ID": f"{newest[0]['last_seen']}|{','.join(top)}"}) as response:
        assert [e for e, _ in _events(response, time.monotonic() + 10) if e == "alerts"] == []
    # (Without the ids, the alert last seen at that moment is sent: the check above is not empty by chance.)
    with client.http.stream("GET", "/console/alerts/stream",
                            params={"seconds": "2", "after": newest[0]["last_seen"]}) as response:
        sent = [json.loads(d)["ids"] for e, d in _events(response, time.monotonic() + 10) if e == "alerts"]
        assert sent == [top]


def test_the_stream_ends_when_its_session_does(console):
    suite, _, _ = console
    add_user(suite, "lan", "analyst")
    client = ConsoleClient(suite)
    try:
        assert client.signin("lan").status_code == 303
        token = client.csrf()
        request = client.http.build_request("GET", "/console/alerts/stream", params={"seconds": "60"})
        response = client.http.send(request, stream=True)
        assert response.status_code == 200
        began = time.monotonic()
        assert client.signout(token).status_code == 303
        for _ in response.iter_lines():  # ends with the session, not at its 60 seconds
            assert time.monotonic() - began < 15
        assert time.monotonic() - began < 15
        response.close()
    finally:
        client.close()


def test_a_stream_without_a_session_is_refused(console):
    suite, clients, _ = console
    anonymous = httpx.Client(base_url=clients["ana"].http.base_url, follow_redirects=False)
    answer = anonymous.get("/console/alerts/stream", headers={"Accept": "text/event-stream"})
    assert answer.status_code in (303, 401)
    fetch = anonymous.get("/console/alerts/stream", headers={"Accept": "application/json"})
    assert fetch.status_code == 401
    anonymous.close()
