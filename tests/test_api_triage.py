"""Triage through the API over real HTTP: alert filters, sort and cursors; acknowledge, assign, status with reason,
notes, bulk, merge into an incident; silences; events search; users and keys; audit; rate limits; bad input."""

from __future__ import annotations

import pytest

from soc_api.settings import ApiSettings, RateLimitConfig
from tests.api_fixtures import AGENCY_A, AGENCY_B, alert_doc, call, client_for, event_doc, keys_for, running_suite


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    with running_suite(tmp_path_factory.mktemp("triage")) as suite:
        store = suite.store
        store.write_events([event_doc(i, AGENCY_A if i < 10 else AGENCY_B) for i in range(20)])
        severities = ["low", "medium", "high", "critical"]
        store.upsert_alerts([alert_doc(i, AGENCY_A if i < 10 else AGENCY_B, severity=severities[i % 4],
                                       rule="r1" if i % 2 else "r2") for i in range(20)])
        store.refresh()
        with client_for(suite) as client:
            yield suite, client, keys_for(store)


def test_filters_sort_and_cursor_walk_every_alert_once(api):
    _, client, keys = api
    got = call(client, "GET", "/api/v1/alerts", keys["analyst"], params={"severity": "critical"}).json()
    assert {a["id"] for a in got["alerts"]} == {f"{AGENCY_A}-a{i}" for i in (3, 7)} | {f"{AGENCY_B}-a{i}"
                                                                                      for i in (11, 15, 19)}
    by_entity = call(client, "GET", "/api/v1/alerts", keys["analyst"], params={"entity": "198.51.100.12"}).json()
    assert [a["id"] for a in by_entity["alerts"]] == [f"{AGENCY_B}-a12"] and by_entity["complete"]
    window = call(client, "GET", "/api/v1/alerts", keys["analyst"],
                  params={"since": "2026-11-22T10:05:00Z", "until": "2026-11-22T10:08:00Z"}).json()
    assert [a["id"] for a in window["alerts"]] == [f"{AGENCY_A}-a{i}" for i in (7, 6, 5)]
    for sort in ("-last_seen", "-severity", "count"):
        seen, cursor = [], None
        while True:
            params = {"limit": 3, "sort": sort, "agency": AGENCY_A, **({"cursor": cursor} if cursor else {})}
            page = call(client, "GET", "/api/v1/alerts", keys["analyst"], params=params).json()
            seen += [a["id"] for a in page["alerts"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert sorted(seen) == sorted(f"{AGENCY_A}-a{i}" for i in range(10)) and len(seen) == 10, sort
        if sort == "-severity":
            order = ["low", "medium", "high", "critical"]
            severities = [order[int(s.rsplit("a", 1)[1]) % 4] for s in seen]
            assert severities == sorted(severities, key=order.index, reverse=True)
    # A cursor is bound to its query: reusing it with another filter is refused.
    page = call(client, "GET", "/api/v1/alerts", keys["analyst"], params={"limit": 2}).json()
    assert call(client, "GET", "/api/v1/alerts", keys["analyst"],
                params={"limit": 2, "severity": "low", "cursor": page["next_cursor"]}).status_code == 400


def test_lifecycle_with_history_and_audit(api):
    suite, client, keys = api
    key = keys["analyst"]
    aid = f"{AGENCY_A}-a1"
    assert call(client, "POST", f"/api/v1/alerts/{aid}/acknowledge", key).json()["status"] == "acknowledged"
    assigned = call(client, "POST", f"/api/v1/alerts/{aid}/assign", key, json={"assignee": "lan.nguyen"}).json()
    assert assigned["assignee"] == "lan.nguyen"
    noted = call(client, "POST", f"/api/v1/alerts/{aid}/notes", key, json={"text": "checked the host"}).json()
    assert noted["notes"][-1]["text"] == "checked the host"
    # Closing needs a reason.
    refused = call(client, "POST", f"/api/v1/alerts/{aid}/status", key, json={"status": "closed"})
    assert refused.status_code == 422 and "reason" in refused.json()["detail"][0]["msg"]
    closed = call(client, "POST", f"/api/v1/alerts/{aid}/status", key,
                  json={"status": "closed", "reason": "false_positive", "comment": "scanner of the DC"}).json()
    assert closed["status"] == "closed" and closed["close_reason"] == "false_positive"
    # A closed alert cannot be acknowledged again (409), only re-opened with a reason.
    assert call(client, "POST", f"/api/v1/alerts/{aid}/acknowledge", key).status_code == 409
    actions = [h["action"] for h in call(client, "GET", f"/api/v1/alerts/{aid}", key).json()["alert"]["history"]]
    assert actions == ["raised", "status", "assign", "note", "status"]
    # Every write is in the audit log, with who and from where; the refused ones say so.
    records = call(client, "GET", "/api/v1/audit", keys["admin"], params={"limit": 50}).json()["records"]
    mine = [r for r in records if r["target"].get("alert_id") == aid]
    assert {r["action"] for r in mine} >= {"acknowledge", "assign", "add_note", "change_status"}
    assert all(r["actor"]["role"] == "analyst" and r["client"]["ip"] == "127.0.0.1" for r in mine)
    assert sorted(r["outcome"] for r in mine if r["action"] == "change_status") == ["ok", "refused 422"]
    # Agencies and the national centre read but do not triage; the refused attempt is in the audit log too.
    assert call(client, "POST", f"/api/v1/alerts/{AGENCY_A}-a2/acknowledge", keys[AGENCY_A]).status_code == 403
    records = call(client, "GET", "/api/v1/audit", keys["admin"], params={"limit": 5}).json()["records"]
    assert records[0]["actor"]["agency"] == AGENCY_A and records[0]["outcome"] == "refused 403"
    assert records[0]["path"] == f"/api/v1/alerts/{AGENCY_A}-a2/acknowledge"
    own_audit = call(client, "GET", "/api/v1/audit", keys[AGENCY_B]).json()["records"]
    assert all(r["actor"]["agency"] == AGENCY_B for r in own_audit)


def test_bulk_and_merge_into_an_incident(api):
    _, client, keys = api
    key = keys["analyst"]
    ids = [f"{AGENCY_B}-a{i}" for i in (10, 11, 12)] + ["no-such-alert"]
    result = call(client, "POST", "/api/v1/alerts/bulk", key, json={"ids": ids, "action": "assign",
                                                                     "assignee": "minh.tran"}).json()
    assert result["done"] == ids[:3] and "no such alert" in result["failed"]["no-such-alert"]
    incident = call(client, "POST", "/api/v1/incidents", key, json={"ids": ids[:3], "title": "one brute force"})
    assert incident.status_code == 201
    body = incident.json()
    assert body["organization"]["id"] == AGENCY_B and sorted(body["alerts"]) == sorted(ids[:3])
    full = call(client, "GET", f"/api/v1/incidents/{body['id']}", keys[AGENCY_B]).json()
    assert {a["incident"] for a in full["alerts"]} == {body["id"]}
    assert call(client, "GET", f"/api/v1/incidents/{body['id']}", keys[AGENCY_A]).status_code == 404
    listed = call(client, "GET", "/api/v1/alerts", key, params={"incident": body["id"]}).json()["alerts"]
    assert sorted(a["id"] for a in listed) == sorted(ids[:3])
    # Alerts of two agencies are never one incident.
    mixed = call(client, "POST", "/api/v1/incidents", key, json={"ids": [f"{AGENCY_A}-a4", f"{AGENCY_B}-a14"]})
    assert mixed.status_code == 409


def test_alerts_join_an_existing_incident(api):
    _, client, keys = api
    key = keys["analyst"]
    first = call(client, "POST", "/api/v1/incidents", key, json={"ids": [f"{AGENCY_B}-a16", f"{AGENCY_B}-a17"]})
    incident = first.json()
    joined = call(client, "POST", f"/api/v1/incidents/{incident['id']}/alerts", key,
                  json={"ids": [f"{AGENCY_B}-a18"]})
    assert joined.status_code == 200, joined.text
    body = joined.json()
    assert body["alerts"] == incident["alerts"] + [f"{AGENCY_B}-a18"]
    assert body["history"][-1]["action"] == "joined" and body["history"][-1]["alerts"] == [f"{AGENCY_B}-a18"]
    alert = call(client, "GET", f"/api/v1/alerts/{AGENCY_B}-a18", key).json()["alert"]
    assert alert["incident"] == incident["id"] and alert["history"][-1]["action"] == "merge"
    # The agency reads the grown incident with all three alerts.
    full = call(client, "GET", f"/api/v1/incidents/{incident['id']}", keys[AGENCY_B]).json()
    assert sorted(a["id"] for a in full["alerts"]) == sorted(body["alerts"])
    # Refused: another agency's alert (409), an alert already in it (409), agencies do not triage (403), and
    # nothing changed on the way.
    other = call(client, "POST", f"/api/v1/incidents/{incident['id']}/alerts", key, json={"ids": [f"{AGENCY_A}-a5"]})
    assert other.status_code == 409
    again = call(client, "POST", f"/api/v1/incidents/{incident['id']}/alerts", key, json={"ids": [f"{AGENCY_B}-a18"]})
    assert again.status_code == 409
    assert call(client, "POST", f"/api/v1/incidents/{incident['id']}/alerts", keys[AGENCY_B],
                json={"ids": [f"{AGENCY_B}-a19"]}).status_code == 403
    assert call(client, "POST", "/api/v1/incidents/no-such-incident/alerts", key,
                json={"ids": [f"{AGENCY_B}-a19"]}).status_code == 404
    unchanged = call(client, "GET", f"/api/v1/incidents/{incident['id']}", key).json()["incident"]
    assert unchanged["alerts"] == body["alerts"]
    stray = call(client, "GET", f"/api/v1/alerts/{AGENCY_A}-a5", key).json()["alert"]
    assert stray.get("incident") is None and stray["history"][-1]["action"] == "raised"


def test_events_search_by_field_text_time_and_agency(api):
    _, client, keys = api
    found = call(client, "GET", "/api/v1/events", keys["analyst"],
                 params={"q": "source.ip:198.51.100.3 Failed", "start": "2026-11-22T10:00:00Z"}).json()
    assert [e["event"]["id"] for e in found["events"]] == [f"{AGENCY_A}-e3"]
    by_port = call(client, "GET", "/api/v1/events", keys["analyst"], params={"q": "source.port:40015"}).json()
    assert [e["event"]["id"] for e in by_port["events"]] == [f"{AGENCY_B}-e15"]
    own = call(client, "GET", "/api/v1/events", keys[AGENCY_B], params={"limit": 4}).json()
    assert len(own["events"]) == 4 and all(e["organization"]["id"] == AGENCY_B for e in own["events"])
    rest = call(client, "GET", "/api/v1/events", keys[AGENCY_B], params={"limit": 100,
                                                                         "cursor": own["next_cursor"]}).json()
    assert len(rest["events"]) == 6
    # The other agency's cursor is not this agency's.
    assert call(client, "GET", "/api/v1/events", keys[AGENCY_A],
                params={"limit": 4, "cursor": own["next_cursor"]}).status_code == 400


@pytest.mark.parametrize("params", [
    {"q": "source.port:'; DROP TABLE events; --"},
    {"start": "yesterday"},
    {"limit": "many"},
    {"q": "x" * 5000},
])
def test_bad_input_gets_a_clear_4xx(api, params):
    _, client, keys = api
    response = call(client, "GET", "/api/v1/events", keys["analyst"], params=params)
    assert 400 <= response.status_code < 500 and response.json()["detail"]


def test_injection_strings_are_just_text(api):
    suite, client, keys = api
    for q in ("' OR 1=1 --", '" OR ""="', "organization.id:so-nv' OR '1'='1", "*", "\\u0000", "{\"match_all\":{}}"):
        response = call(client, "GET", "/api/v1/events", keys[AGENCY_A], params={"q": q})
        assert response.status_code == 200, q
        assert all(e["organization"]["id"] == AGENCY_A for e in response.json()["events"]), q
    assert suite.store.count_events() == 20


def test_oversized_and_wrongly_typed_bodies(api):
    _, client, keys = api
    big = call(client, "POST", f"/api/v1/alerts/{AGENCY_A}-a5/notes", keys["analyst"],
               content=b'{"text": "' + b"x" * 2_000_000 + b'"}', headers={"Content-Type": "application/json"})
    assert big.status_code == 413 and "at most" in big.json()["detail"]

    def chunks():  # no Content-Length: the limit holds while the body streams in
        yield b'{"text": "'
        for _ in range(160):  # 10 MiB, over the streaming cap
            yield b"y" * 65536
        yield b'"}'

    streamed = call(client, "POST", f"/api/v1/alerts/{AGENCY_A}-a5/notes", keys["analyst"], content=chunks(),
                    headers={"Content-Type": "application/json"})
    assert streamed.status_code == 413
    wrong = call(client, "POST", f"/api/v1/alerts/{AGENCY_A}-a5/assign", keys["analyst"], json={"assignee": 12})
    assert wrong.status_code == 422
    extra = call(client, "POST", "/api/v1/silences", keys["analyst"],
                 json={"matchers": [{"name": "a", "value": "b"}], "ends_at": "2099-01-01T00:00:00Z", "comment": "c",
                       "admin": True})
    assert extra.status_code == 422


def test_users_keys_shown_once_expiry_and_revocation(api):
    suite, client, keys = api
    admin = keys["admin"]
    assert call(client, "POST", "/api/v1/users", admin, json={"id": "hoa.le", "role": "agency",
                                                               "agency": AGENCY_A}).status_code == 201
    assert call(client, "POST", "/api/v1/users", admin, json={"id": "ghost", "role": "agency",
                                                               "agency": "nowhere"}).status_code == 422
    made = call(client, "POST", "/api/v1/users/hoa.le/keys", admin, json={"name": "laptop", "expires_in_days": 30})
    assert made.status_code == 201
    key, record = made.json()["key"], made.json()["record"]
    assert "hash" not in record and record["expires"] and record["agency"] == AGENCY_A
    assert key not in str(call(client, "GET", "/api/v1/keys", admin).json())  # never shown again
    me = call(client, "GET", "/api/v1/me", key).json()
    assert me["user"] == "hoa.le" and me["role"] == "agency" and me["agency"] == AGENCY_A
    assert call(client, "GET", "/api/v1/users", key).status_code == 403
    # Disabling the user stops the key at once; enabling brings it back; revoking ends it.
    call(client, "PATCH", "/api/v1/users/hoa.le", admin, json={"disabled": True})
    assert call(client, "GET", "/api/v1/me", key).status_code == 401
    call(client, "PATCH", "/api/v1/users/hoa.le", admin, json={"disabled": False})
    assert call(client, "GET", "/api/v1/me", key).status_code == 200
    assert call(client, "DELETE", f"/api/v1/keys/{record['id']}", admin).json()["revoked"] is True
    assert call(client, "GET", "/api/v1/me", key).status_code == 401


def test_silence_suppresses_new_alerts_and_expiring_it_lets_them_through(api):
    from detections.engine import Detection
    from detections.sigma.loader import RuleMeta

    suite, client, keys = api
    key = keys["analyst"]
    silence = call(client, "POST", "/api/v1/silences", key, json={
        "matchers": [{"name": "source.ip", "op": "=~", "value": "203\\.0\\.113\\..*"},
                     {"name": "organization.id", "op": "=", "value": AGENCY_A}],
        "ends_at": "2099-01-01T00:00:00Z", "comment": "pentest by the national centre"})
    assert silence.status_code == 201 and silence.json()["state"] == "active"
    meta = RuleMeta(id="t-silence", name="t", title="T", level="high", tags=[], description="", path="")

    def detect(ip: str, agency: str = AGENCY_A) -> list[dict]:
        event = {"@timestamp": "2026-11-22T11:00:00.000Z", "event": {"id": f"sil-{ip}-{agency}"},
                 "source": {"ip": ip}, "organization": {"id": agency}}
        return suite.alerts.handle([Detection(meta=meta, kind="rule", agency=agency, labels={}, events=[event],
                                              count=1, first_seen=event["@timestamp"],
                                              last_seen=event["@timestamp"])])

    assert detect("203.0.113.9") == []  # suppressed: not presented, not handed to hooks
    assert [a["status"] for a in detect("198.51.100.77")] == ["new"]
    assert [a["status"] for a in detect("203.0.113.9", AGENCY_B)] == ["new"]
    suite.store.refresh()
    stored = call(client, "GET", "/api/v1/alerts", key, params={"rule_id": "t-silence", "status": "suppressed"}
                  ).json()["alerts"]
    assert len(stored) == 1 and stored[0]["suppressed_by"]["silences"] == [silence.json()["id"]]
    expired = call(client, "DELETE", f"/api/v1/silences/{silence.json()['id']}", key).json()
    assert expired["state"] == "expired" and expired["expired_by"]
    again = detect("203.0.113.9")
    assert [(a["id"], a["status"], a["count"]) for a in again] == [(stored[0]["id"], "new", 2)]
    listed = call(client, "GET", "/api/v1/silences", key, params={"state": "expired"}).json()
    assert silence.json()["id"] in [s["id"] for s in listed]


def test_inhibition_uplink_down_mutes_that_agencys_silent_sources(api):
    from detections.engine import Detection
    from detections.sigma.loader import RuleMeta

    suite, client, keys = api
    rules = call(client, "GET", "/api/v1/inhibit-rules", keys["analyst"]).json()
    assert [r["id"] for r in rules] == ["uplink-down-mutes-silent-sources"]

    def raise_alert(name: str, agency: str, labels: dict) -> list[dict]:
        meta = RuleMeta(id=f"t-{name}", name=name, title=name, level="medium", tags=[], description="", path="")
        event = {"@timestamp": "2026-11-22T12:00:00.000Z", "event": {"id": f"{name}-{agency}-{labels}"},
                 "organization": {"id": agency}}
        return suite.alerts.handle([Detection(meta=meta, kind="event_count", agency=agency, labels=labels,
                                              events=[event], count=1, first_seen=event["@timestamp"],
                                              last_seen=event["@timestamp"])])

    raise_alert("uplink_down", AGENCY_B, {"link": "wan-1"})
    suite.store.refresh()
    assert raise_alert("log_source_silent", AGENCY_B, {"host": "fw-1"}) == []  # muted: same agency
    assert [a["status"] for a in raise_alert("log_source_silent", AGENCY_A, {"host": "fw-2"})] == ["new"]
    muted = call(client, "GET", "/api/v1/alerts", keys["analyst"], params={"rule_id": "t-log_source_silent",
                                                                          "status": "suppressed"}).json()["alerts"]
    assert len(muted) == 1 and muted[0]["organization"]["id"] == AGENCY_B and muted[0]["suppressed_by"][
        "inhibited_by"]


def test_rules_health_lists_sigma_rules_and_last_fired(api):
    _, client, keys = api
    health = call(client, "GET", "/api/v1/rules", keys["analyst"]).json()
    sigma = [r for r in health["rules"] if r["engine"] == "sigma"]
    assert len(sigma) >= 5 and all(r["status"] in ("loaded", "failed") for r in sigma)
    assert any(r["id"] == "soc-indicator-match" for r in health["rules"])
    assert call(client, "GET", "/api/v1/rules", keys[AGENCY_A]).status_code == 403


def test_rate_limit_per_key(tmp_path):
    limits = ApiSettings(rate_limit=RateLimitConfig(requests_per_second=1, burst=5))
    with running_suite(tmp_path, api=limits) as suite, client_for(suite) as client:
        keys = keys_for(suite.store, agencies=())
        codes = [call(client, "GET", "/api/v1/me", keys["analyst"]).status_code for _ in range(8)]
        assert codes[:5] == [200] * 5 and codes[5:] == [429] * 3
        limited = call(client, "GET", "/api/v1/me", keys["analyst"])
        assert limited.headers["Retry-After"] and "rate limit" in limited.json()["detail"]
        # Another key has its own bucket.
        assert call(client, "GET", "/api/v1/me", keys["admin"]).status_code == 200


def test_a_store_outage_is_a_503_with_retry_after(api):
    """A real OpenSearch client whose cluster is not there (a loopback port nothing listens on): a clear 503."""
    from soc.storage import store_from_url
    from tests.conftest import free_port

    suite, client, keys = api
    working, suite.store = suite.store, store_from_url(f"opensearch://127.0.0.1:{free_port()}", timeout=2)
    try:
        response = call(client, "GET", "/api/v1/alerts", keys["analyst"])
    finally:
        suite.store.close()
        suite.store = working
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    assert "unavailable" in response.json()["detail"]
    assert call(client, "GET", "/api/v1/alerts", keys["analyst"]).status_code == 200  # back once the store is


def test_alert_list_cache_is_per_scope_short_and_emptied_by_changes(api):
    from soc_api.state import api_state

    suite, client, keys = api
    cache = api_state(suite).list_cache
    ttl, cache.ttl = cache.ttl, 60.0  # long enough that the stale answer below does not depend on timing
    params = {"rule_id": "cache-rule"}
    suite.store.upsert_alerts([alert_doc(90, AGENCY_A, rule="cache-rule"), alert_doc(91, AGENCY_B, rule="cache-rule")])
    suite.store.refresh()
    first = call(client, "GET", "/api/v1/alerts", keys["analyst"], params=params).json()["alerts"]
    assert len(first) == 2
    # Same query, other scopes: each agency gets its own answer, never the analyst's cached one.
    assert [a["id"] for a in call(client, "GET", "/api/v1/alerts", keys[AGENCY_A], params=params).json()["alerts"]
            ] == [f"{AGENCY_A}-a90"]
    assert [a["id"] for a in call(client, "GET", "/api/v1/alerts", keys[AGENCY_B], params=params).json()["alerts"]
            ] == [f"{AGENCY_B}-a91"]
    # The pipeline raising another alert shows up within the time to live...
    suite.store.upsert_alerts([alert_doc(92, AGENCY_A, rule="cache-rule")])
    suite.store.refresh()
    assert len(call(client, "GET", "/api/v1/alerts", keys["analyst"], params=params).json()["alerts"]) == 2
    # ...and an analyst's change through the API empties the cache at once.
    call(client, "POST", f"/api/v1/alerts/{AGENCY_A}-a90/acknowledge", keys["analyst"])
    fresh = call(client, "GET", "/api/v1/alerts", keys["analyst"], params=params).json()["alerts"]
    assert len(fresh) == 3 and {a["status"] for a in fresh if a["id"] == f"{AGENCY_A}-a90"} == {"acknowledged"}
    cache.ttl = ttl
