"""Hostile input on the tier path: what a stolen or compromised downstream key (a city's, role ``downstream`` bound
to h-an-binh) can make a real province suite do through /api/v1/tier/*, and what other keys can do there.

A real `soc serve` process (tests/tier_suites.py's TierSuite, the sample province inventory, the embedded store) is
attacked over HTTP: events and alerts claiming a sibling's, a department's or the province's agency; the agency given
as a string, a list, a dotted top-level key; event and alert ids of the province's own records and of another
link's; ``tier`` and ``incident`` fields; alerts shaped to break the alert queue; history entries dated in the future
to undo the province's triage; agency offers reaching outside the link (departments, a sibling's commune, cycles,
chains through a refused parent, 5001 agencies, bad ids, markup, parents of the wrong type); bodies over the limit
with and without a Content-Length, JSON bombs, non-JSON; status figures that are not numbers; other roles on the tier
routes, a downstream key on the rest of the API, another link's state, changes and cursors; forwarded evidence
pointing at a department's events. Then the other direction: a compromised upstream (a fake one) serving a real city
changes shaped to break its alert queue. Every test asserts the safe behaviour, so it fails while the hole is open.
Refused records must end as dead letters with a reason, and the suite must keep answering.
"""

from __future__ import annotations

import json
import math
import socket
import time
import uuid

import httpx
import pytest

from soc import ecs
from soc.storage import open_store
from soc.storage.base import DocumentQuery
from tests.conftest import wait_for
from tests.tier_suites import TierSuite, sshd_failures

CITY, SIBLING = "h-an-binh", "h-phu-thinh"
MAX_BODY, MAX_LINE = 1 << 20, 64 << 10  # the province's tiers.receive limits here (small, so the tests stay cheap)


def _province(directory) -> TierSuite:
    return TierSuite(directory, "province", store_url=None, index_prefix=f"tp{uuid.uuid4().hex[:8]}",
                     inventory="inventory/sample/province.yaml",
                     tiers={"receive": {"max_body_bytes": MAX_BODY, "max_line_bytes": MAX_LINE}}).start()


def _stop(suite: TierSuite) -> None:
    if suite.proc is not None and suite.proc.poll() is None:
        suite.proc.kill()
        suite.proc.wait()


@pytest.fixture(scope="module")
def province(tmp_path_factory):
    suite = _province(tmp_path_factory.mktemp("province"))
    yield suite
    _stop(suite)


@pytest.fixture
def fresh_province(tmp_path):
    """A province of its own, for attacks that would leave the shared one broken for the other tests."""
    suite = _province(tmp_path / "province")
    yield suite
    _stop(suite)


# --- sending ----------------------------------------------------------------------------------------------------
def _uid(prefix: str = "rt") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _event(event_id: str | None = None, **fields) -> dict:
    return {"@timestamp": ecs.now_iso(), "event": {"id": event_id or _uid("ev"), "kind": "event"},
            "message": "forwarded", **fields}


def _send_events(suite: TierSuite, key: str, docs: list | bytes) -> httpx.Response:
    body = docs if isinstance(docs, bytes) else b"\n".join(json.dumps(d).encode() for d in docs)
    return httpx.post(f"{suite.api}/api/v1/tier/events", content=body, timeout=60,
                      headers={"X-API-Key": key, "Content-Type": "application/x-ndjson"})


def _send(suite: TierSuite, key: str, path: str, body: bytes | dict | list, **headers) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(f"{suite.api}/api/v1/tier/{path}", content=content, timeout=60,
                      headers={"X-API-Key": key, "Content-Type": "application/json", **headers})


def _alert(alert_id: str | None = None, agency: str | None = CITY, **fields) -> dict:
    """An alert as a city's suite forwards it (detections' shape)."""
    now = ecs.now_iso()
    alert = {"id": alert_id or _uid("al"), "fingerprint": uuid.uuid4().hex, "severity": "high", "status": "new",
             "rule": {"id": "soc_ssh_brute_force", "name": "soc_ssh_brute_force", "title": "SSH Brute Force",
                      "type": "sigma", "tags": []},
             "summary": "forwarded alert", "count": 1, "first_seen": now, "last_seen": now, "labels": {},
             "entities": {"ip": ["203.0.113.50"]}, "threat": {}, "evidence": [], "updated": now,
             "history": [{"at": now, "by": "detections", "action": "raised"}], **fields}
    if agency is not None:
        alert["organization"] = {"id": agency}
    return alert


def _send_alerts(suite: TierSuite, key: str, alerts: list) -> httpx.Response:
    return _send(suite, key, "alerts", {"alerts": alerts})


def _ok(answer: httpx.Response) -> dict:
    assert answer.status_code == 200, (answer.status_code, answer.text[:500])
    return answer.json()


# --- reading ----------------------------------------------------------------------------------------------------
def _event_doc(suite: TierSuite, key: str, event_id: str) -> dict | None:
    answer = suite.get(key, f"/api/v1/events/{event_id}")
    assert answer.status_code in (200, 404), (answer.status_code, answer.text[:300])
    return answer.json() if answer.status_code == 200 else None


def _alert_doc(suite: TierSuite, key: str, alert_id: str) -> dict | None:
    answer = suite.get(key, f"/api/v1/alerts/{alert_id}")
    assert answer.status_code in (200, 404), (answer.status_code, answer.text[:300])
    return answer.json()["alert"] if answer.status_code == 200 else None


def _dead_letters(suite: TierSuite, key: str) -> list[dict]:
    return _ok(suite.get(key, "/api/v1/deadletters", limit=1000))["dead_letters"]


def _still_answers(suite: TierSuite) -> None:
    assert suite.proc.poll() is None, suite.log_text()
    assert httpx.get(f"{suite.api}/api/v1/health", timeout=10).status_code == 200


def _tier_agencies(suite: TierSuite) -> dict[str, dict]:
    store = open_store(suite.settings)
    try:
        return {d["id"]: d for d in store.find_documents("tier_agencies", DocumentQuery(limit=10_000))}
    finally:
        store.close()


# === who may call the tier routes =================================================================================
def test_only_a_downstream_key_may_send_or_pull_on_the_tier_routes(province):
    others = {role: province.key(role, agency) for role, agency in
              [("admin", None), ("analyst", None), ("network_admin", None), ("national_centre", None),
               ("agency", CITY), ("agency", "province")]}
    others["bogus"] = "soc_0123456789abcdef_not-a-real-secret"
    sends = [("events", _event()), ("alerts", {"alerts": [_alert()]}), ("agencies", {"agencies": []}),
             ("status", {"lag_seconds": 1})]
    for who, key in others.items():
        for path, body in sends:
            answer = _send(province, key, path, body if path != "events" else json.dumps(body).encode())
            assert answer.status_code in (401, 403), (who, path, answer.status_code, answer.text[:200])
        assert province.get(key, "/api/v1/tier/changes").status_code in (401, 403), who
    answer = httpx.post(f"{province.api}/api/v1/tier/events", content=json.dumps(_event()).encode(), timeout=10)
    assert answer.status_code == 401


def test_a_downstream_key_reads_and_ingests_nothing_outside_the_tier_routes(province):
    key = province.key("downstream", CITY)
    for path in ["/api/v1/alerts", "/api/v1/events", "/api/v1/incidents", "/api/v1/inventory/agencies",
                 "/api/v1/inventory/assets", "/api/v1/deadletters", "/api/v1/audit", "/api/v1/posture",
                 "/api/v1/tier/upstream", "/api/v1/indicators", "/api/v1/rules"]:
        answer = province.get(key, path)
        assert answer.status_code in (403, 404), (path, answer.status_code, answer.text[:200])
    answer = httpx.post(f"{province.api}/api/v1/ingest", content=json.dumps({"message": "x"}).encode(), timeout=10,
                        headers={"X-API-Key": key, "Content-Type": "application/x-ndjson"})
    assert answer.status_code == 403, answer.text


def test_a_link_sees_only_its_own_link_state_and_changes_whatever_the_cursor(province):
    city, sibling, analyst = (province.key("downstream", CITY), province.key("downstream", SIBLING),
                              province.key("analyst"))
    _ok(_send(province, city, "status", {"lag_seconds": 1.5}))
    _ok(_send(province, sibling, "status", {"lag_seconds": 2.5}))
    assert {link["id"] for link in _ok(province.get(sibling, "/api/v1/tier/links"))} == {SIBLING}
    assert {link["id"] for link in _ok(province.get(city, "/api/v1/tier/links"))} == {CITY}

    alert = _alert()
    _ok(_send_alerts(province, city, [alert]))
    _ok(province.post(analyst, f"/api/v1/alerts/{alert['id']}/acknowledge", {}))
    wait_for(lambda: [c for c in _ok(province.get(city, "/api/v1/tier/changes", after="0:0"))["changes"]
                      if c["alert_id"] == alert["id"]], 20, "the acknowledgement served to the city")
    for after in (None, "0:0", "1:0", "0:ffffffff"):
        page = _ok(province.get(sibling, "/api/v1/tier/changes", **({"after": after} if after else {})))
        assert not [c for c in page["changes"] if c["alert_id"] == alert["id"]], after
    for after in ("1:../x", "-1:00", "1:00:00", "x" * 200, "1:ABC"):
        assert province.get(sibling, "/api/v1/tier/changes", after=after).status_code == 422, after
    # A cursor of 20 digits passes the route's pattern but not a 64-bit integer: a refusal, never a crash.
    answer = province.get(sibling, "/api/v1/tier/changes", after="99999999999999999999:ab")
    assert answer.status_code in (200, 422), (answer.status_code, answer.text[:300])
    _still_answers(province)


# === events ======================================================================================================
def test_events_claiming_an_agency_outside_the_link_are_dead_letters(province):
    city, analyst = province.key("downstream", CITY), province.key("analyst")
    outside = ["so-tttt", SIBLING, "p-thinh-loi", "province", "dc", "H-AN-BINH", "h-an-binh ", 5, True, ""]
    docs = [_event(_uid("out"), organization={"id": agency}) for agency in outside]
    inside = [_event(_uid("in")), _event(_uid("in"), organization={"id": "p-tan-an"})]
    answer = _ok(_send_events(province, city, docs + inside))
    assert answer["stored"] == 2 and answer["refused_count"] == len(outside), answer
    assert {r["line"] for r in answer["refused"]} == set(range(1, len(outside) + 1))
    for doc in docs:
        assert _event_doc(province, analyst, doc["event"]["id"]) is None, doc["organization"]
    assert _event_doc(province, analyst, inside[0]["event"]["id"])["organization"]["id"] == CITY
    letters = [d for d in _dead_letters(province, analyst) if d["source"] == f"tier:{CITY}"]
    for doc in docs:
        letter = [d for d in letters if doc["event"]["id"] in d["preview"]]
        assert letter and letter[0]["reason"].startswith("tier_event: agency"), doc["organization"]
    for tenant in ("so-tttt", SIBLING, "p-thinh-loi"):
        assert not set(province.event_ids(province.key("agency", tenant))) & {d["event"]["id"] for d in docs}


@pytest.mark.parametrize("organization", ["so-tttt", ["so-tttt"], [{"id": CITY}], 7, {"id": [CITY]},
                                          {"id": ["p-tan-an", "so-tttt"]}, {"id": {"id": CITY}}],
                         ids=["string", "list", "list-of-objects", "number", "id-list", "id-list-two", "id-object"])
def test_an_organization_of_the_wrong_shape_is_a_dead_letter_not_a_crash(province, organization):
    city, analyst = province.key("downstream", CITY), province.key("analyst")
    doc = _event(_uid("shape"), organization=organization)
    answer = _send_events(province, city, [doc, _event()])
    assert answer.status_code == 200, (answer.status_code, answer.text[:300])
    assert answer.json()["stored"] == 1 and answer.json()["refused_count"] == 1, answer.json()
    assert _event_doc(province, analyst, doc["event"]["id"]) is None
    assert [d for d in _dead_letters(province, analyst) if doc["event"]["id"] in d["preview"]]
    alert = _alert(agency=None, organization=organization)
    answer = _send_alerts(province, city, [alert])
    assert answer.status_code == 200 and answer.json()["refused_count"] == 1, (answer.status_code, answer.text[:300])
    assert _alert_doc(province, analyst, alert["id"]) is None
    _still_answers(province)


def test_a_dotted_top_level_organization_id_is_not_stored_beside_the_links_agency(province):
    """The tier path stores what it gets without making dotted keys nested (collectors do, soc/ecs.py nest): a
    document keeps a second, contradictory "organization.id" of a department, which a search engine indexes as a
    second value of the same field."""
    city, analyst, department = (province.key("downstream", CITY), province.key("analyst"),
                                 province.key("agency", "so-tttt"))
    claims = {"@timestamp": ecs.now_iso(), "event": {"id": _uid("dot")}, "organization.id": "so-tttt",
              "message": "dotted agency"}
    both = {"@timestamp": ecs.now_iso(), "event": {"id": _uid("dot")}, "organization": {"id": "p-tan-an"},
            "organization.id": "so-tttt", "message": "dotted and nested"}
    _ok(_send_events(province, city, [claims, both]))
    for doc in (claims, both):
        assert doc["event"]["id"] not in province.event_ids(department)
        stored = _event_doc(province, analyst, doc["event"]["id"])
        # Refused, or stored as one nested field inside the link: never a second organization.id of a department.
        assert stored is None or (ecs.get(stored, "organization.id") in (CITY, "p-tan-an")
                                  and "organization.id" not in stored), stored
    alert = {**_alert(agency=None), "organization.id": "so-tttt"}
    _ok(_send_alerts(province, city, [alert]))
    stored = _alert_doc(province, analyst, alert["id"])
    assert stored is None or "organization.id" not in stored, stored


def test_a_dotted_top_level_event_id_does_not_break_reading_the_event(province):
    city, analyst = province.key("downstream", CITY), province.key("analyst")
    dotted_id = {"@timestamp": ecs.now_iso(), "event.id": _uid("dot"), "message": "dotted event id"}
    _ok(_send_events(province, city, [dotted_id]))
    stored = _event_doc(province, analyst, dotted_id["event.id"])
    assert stored is None or stored.get("event", {}).get("id") == dotted_id["event.id"], stored
    for key in (analyst, province.key("agency", CITY)):
        answer = province.get(key, "/api/v1/events", start="2000-01-01T00:00:00Z", limit=1000)
        assert answer.status_code == 200, answer.text[:300]


def _provinces_own_event(province: TierSuite, analyst: str) -> dict:
    """A line of the department so-tttt's web server, taken by the province's own syslog listener."""
    marker = uuid.uuid4().hex
    stamp = time.strftime("%b %d %H:%M:%S", time.localtime())
    with socket.create_connection(("127.0.0.1", province.settings.syslog.tcp_port), timeout=10) as sock:
        sock.sendall(f"<38>{stamp} so-tttt-web-01 sshd[77]: Accepted password for admin from 10.20.10.99 port 2222 "
                     f"ssh2 {marker}\n".encode())
    own = wait_for(lambda: _ok(province.get(analyst, "/api/v1/events", q=f'"{marker}"',
                                            start="2000-01-01T00:00:00Z"))["events"], 30, "the province's own event")[0]
    assert ecs.get(own, "organization.id") == "so-tttt", own
    return own


def test_a_forwarded_event_cannot_overwrite_an_event_the_province_took_itself(province):
    city, analyst = province.key("downstream", CITY), province.key("analyst")
    own = _provinces_own_event(province, analyst)
    forged = _event(own["event"]["id"], message="nothing happened here")
    answer = _ok(_send_events(province, city, [forged]))
    after = _event_doc(province, analyst, own["event"]["id"])
    assert after is not None and after.get("message") == own.get("message") and \
        ecs.get(after, "organization.id") == ecs.get(own, "organization.id") and not after.get("tier"), \
        (f"a downstream key overwrote the province's own event {own['event']['id']} "
         f"({ecs.get(own, 'organization.id')} → {ecs.get(after or {}, 'organization.id')}): {answer}")


def test_a_forwarded_event_cannot_overwrite_another_links_event(province):
    city, sibling, analyst = (province.key("downstream", CITY), province.key("downstream", SIBLING),
                              province.key("analyst"))
    theirs = _event(_uid("sib"), organization={"id": "p-thinh-loi"}, message="the sibling's evidence")
    _ok(_send_events(province, sibling, [theirs]))
    answer = _ok(_send_events(province, city, [_event(theirs["event"]["id"], message="overwritten")]))
    after = _event_doc(province, analyst, theirs["event"]["id"])
    assert after is not None and after["message"] == "the sibling's evidence" and \
        after["tier"]["link"] == SIBLING and after["organization"]["id"] == "p-thinh-loi", (answer, after)
    assert theirs["event"]["id"] in province.event_ids(province.key("agency", "p-thinh-loi"))


def test_a_forwarded_alert_cannot_show_another_agencys_events_as_its_evidence(province):
    city, analyst = province.key("downstream", CITY), province.key("analyst")
    own = _provinces_own_event(province, analyst)
    alert = _alert(agency="p-tan-an", evidence=[own["event"]["id"]])
    _ok(_send_alerts(province, city, [alert]))
    for tenant in (CITY, "p-tan-an"):
        answer = _ok(province.get(province.key("agency", tenant), f"/api/v1/alerts/{alert['id']}"))
        assert own["event"]["id"] not in {e["event"]["id"] for e in answer["events"]}, tenant


def test_hostile_event_lines_end_as_dead_letters_and_the_suite_keeps_answering(province):
    city, analyst = province.key("downstream", CITY), province.key("analyst")
    good = _event(_uid("good"))
    bad = {
        "not JSON": b"{this is not json",
        "a list": b"[1, 2, 3]",
        "a string": b'"event"',
        "no event.id": json.dumps({"@timestamp": ecs.now_iso(), "message": "x"}).encode(),
        "traversal id": json.dumps(_event("../../etc/passwd")).encode(),
        "unicode id": json.dumps(_event("sự-kiện-1")).encode(),
        "long id": json.dumps(_event("a" * 300)).encode(),
        "numeric id": json.dumps({**_event(), "event": {"id": 12345}}).encode(),
        "bad time": json.dumps({**_event(), "@timestamp": "yesterday"}).encode(),
        "no time": json.dumps({k: v for k, v in _event().items() if k != "@timestamp"}).encode(),
        "JSON bomb": b"[" * 200_000 + b"]" * 200_000,
        "object bomb": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
        "over max_line_bytes": json.dumps(_event(message="x" * MAX_LINE)).encode(),
    }
    body = b"\n".join([*bad.values(), json.dumps(good).encode()])
    assert len(body) < MAX_BODY
    answer = _ok(_send_events(province, city, body))
    assert answer["stored"] == 1 and answer["refused_count"] == len(bad), answer
    reasons = {r["line"]: r["reason"] for r in answer["refused"]}
    assert all(reasons.get(n) for n in range(1, len(bad) + 1)), reasons
    assert _event_doc(province, analyst, good["event"]["id"]) is not None
    letters = [d for d in _dead_letters(province, analyst) if d["source"] == f"tier:{CITY}"]
    assert len([d for d in letters if d["reason"].startswith("tier_event: ")]) >= len(bad)
    assert all(d["raw_size"] <= MAX_LINE for d in letters)
    _still_answers(province)


def _nested(depth: int) -> dict:
    deep: dict = {}
    node = deep
    for _ in range(depth):
        node["a"] = {}
        node = node["a"]
    return deep


ODD_EVENTS = {  # parseable, within max_line_bytes, and odd
    "deep": lambda: _event(_uid("deep"), labels=_nested(900)),  # under json.loads' limit, over the encoder's
    "huge-integer": lambda: _event(_uid("bigint"), source={"bytes": 10 ** 40}),
    "lone-surrogate": lambda: _event(_uid("surr"), message="\ud800 broken"),
    "nan": lambda: _event(_uid("nan"), event={"id": _uid("nan"), "severity": float("nan")}),
}


@pytest.mark.parametrize("what", list(ODD_EVENTS))
def test_an_odd_but_parseable_event_breaks_neither_storing_nor_the_event_search(fresh_province, what):
    province = fresh_province
    city, analyst = province.key("downstream", CITY), province.key("analyst")
    doc = ODD_EVENTS[what]()
    answer = _send_events(province, city, json.dumps(doc).encode())
    assert answer.status_code == 200, (answer.status_code, answer.text[:300])
    answer = province.get(analyst, f"/api/v1/events/{doc['event']['id']}")
    assert answer.status_code in (200, 404), (f"a forwarded {what} event cannot be read: {answer.status_code}")
    for key in (analyst, province.key("agency", CITY)):
        answer = province.get(key, "/api/v1/events", start="2000-01-01T00:00:00Z", limit=1000)
        assert answer.status_code == 200, (f"a forwarded {what} event broke the event search: {answer.status_code}")
    _still_answers(province)


def test_bodies_over_the_limit_are_refused_with_and_without_a_content_length(province):
    city = province.key("downstream", CITY)
    too_big = b" " * (MAX_BODY + 1)

    def chunks(data: bytes):
        for i in range(0, len(data), 65536):
            yield data[i:i + 65536]

    for path in ("events", "alerts", "agencies"):
        assert _send(province, city, path, too_big).status_code == 413, path
        answer = httpx.post(f"{province.api}/api/v1/tier/{path}", content=chunks(too_big), timeout=60,
                            headers={"X-API-Key": city, "Content-Type": "application/json"})
        assert answer.status_code == 413, (path, answer.status_code)
    # The status route has no limit of its own: the API's body limit must hold there too, length declared or not.
    huge_status = json.dumps({"lag_seconds": 1, "pad": "x" * (12 << 20)}).encode()
    assert _send(province, city, "status", huge_status).status_code == 413
    answer = httpx.post(f"{province.api}/api/v1/tier/status", content=chunks(huge_status), timeout=60,
                        headers={"X-API-Key": city, "Content-Type": "application/json"})
    assert answer.status_code == 413, (f"/tier/status read a {len(huge_status)}-byte body sent without a length "
                                       f"whole: {answer.status_code}")
    _still_answers(province)


@pytest.mark.parametrize("path", ["alerts", "agencies", "status"])
def test_non_json_and_json_bombs_on_the_json_routes_are_refused(province, path):
    city = province.key("downstream", CITY)
    bodies = [b"not json", b"", b"\xff\xfe\x00garbage", b"[" * 200_000 + b"]" * 200_000,
              b'{"a":' * 50_000 + b"1" + b"}" * 50_000]
    if path != "status":
        bodies += [b'{"alerts": 5, "agencies": {"id": "x"}}', b"[]"]
    for body in bodies:
        answer = _send(province, city, path, body)
        # 400/422; or 413 for a bomb over the status report's own 64 KiB limit, refused before it is parsed
        refused = answer.status_code in (400, 422) or (answer.status_code == 413 and len(body) > 64 << 10)
        assert refused, (path, body[:20], answer.status_code, answer.text[:200])
    _still_answers(province)


# === the fields the link owns ====================================================================================
def test_tier_and_incident_fields_sent_by_a_link_are_not_believed(province):
    city, analyst = province.key("downstream", CITY), province.key("analyst")
    event = _event(_uid("tier"), tier={"link": SIBLING, "received": "2000-01-01T00:00:00Z"})
    _ok(_send_events(province, city, [event]))
    assert _event_doc(province, analyst, event["event"]["id"])["tier"] == {"link": CITY}
    alert = _alert(tier={"link": SIBLING}, incident="inc-owned-by-the-province")
    _ok(_send_alerts(province, city, [alert]))
    stored = _alert_doc(province, analyst, alert["id"])
    assert stored["tier"]["link"] == CITY and not stored.get("incident"), stored
    # The alert now belongs to the city's link: the sibling cannot take it over, whatever it says of itself.
    sibling = province.key("downstream", SIBLING)
    answer = _ok(_send_alerts(province, sibling, [_alert(alert["id"], agency="p-thinh-loi",
                                                         tier={"link": SIBLING})]))
    assert answer["refused_count"] == 1
    assert _alert_doc(province, analyst, alert["id"])["organization"]["id"] == CITY


# === alerts ======================================================================================================
def test_alerts_claiming_an_agency_outside_the_link_are_dead_letters(province):
    city, analyst = province.key("downstream", CITY), province.key("analyst")
    outside = [_alert(agency=agency) for agency in ("so-tttt", SIBLING, "p-thinh-loi", "province")]
    inside = [_alert(agency="p-tan-an"), _alert(agency=None)]
    answer = _ok(_send_alerts(province, city, outside + inside))
    assert answer["stored"] == 2 and answer["refused_count"] == 4, answer
    for alert in outside:
        assert _alert_doc(province, analyst, alert["id"]) is None
    assert _alert_doc(province, analyst, inside[1]["id"])["organization"]["id"] == CITY
    letters = [d for d in _dead_letters(province, analyst) if d["reason"].startswith("tier_alert: ")]
    for alert in outside:
        assert [d for d in letters if alert["id"] in d["preview"] and d["source"] == f"tier:{CITY}"], alert["id"]
    department = province.key("agency", "so-tttt")
    assert not {a["id"] for a in province.all_alerts(department)} & {a["id"] for a in outside + inside}


def test_an_alert_id_of_the_provinces_own_or_another_links_alert_cannot_be_taken(province):
    city, sibling, analyst = (province.key("downstream", CITY), province.key("downstream", SIBLING),
                              province.key("analyst"))
    attacker = f"198.51.100.{uuid.uuid4().int % 200 + 20}"
    lines = sshd_failures("so-tttt-web-01", attacker, 8)
    with socket.create_connection(("127.0.0.1", province.settings.syslog.tcp_port), timeout=10) as sock:
        sock.sendall("".join(line + "\n" for line in lines).encode())
    own = wait_for(lambda: [a for a in province.all_alerts(analyst, entity=attacker) if not a.get("tier")], 60,
                   "the province's own brute-force alert")[0]
    theirs = _alert(agency="p-thinh-loi")
    _ok(_send_alerts(province, sibling, [theirs]))
    for target in (own, theirs):
        answer = _ok(_send_alerts(province, city, [_alert(target["id"], agency="p-tan-an", status="closed",
                                                          summary="taken over")]))
        assert answer["refused_count"] == 1, answer
        stored = _alert_doc(province, analyst, target["id"])
        assert stored["summary"] != "taken over" and stored["organization"]["id"] == target["organization"]["id"]
    assert [d for d in _dead_letters(province, analyst) if own["id"] in d["preview"]
            and "not this link's" in d["reason"]]


def _minimal_alert() -> dict:
    """Just what tiers/receive.py checks, with values no alert of this suite can have."""
    now = ecs.now_iso()
    return {"id": _uid("min"), "fingerprint": "f", "status": "pwned", "severity": "apocalyptic", "first_seen": now,
            "last_seen": now, "rule": {}, "history": [1, "x", None]}


ILL_SHAPED_ALERTS = {
    "minimal": _minimal_alert,
    "ill-typed": lambda: _alert(count="many", evidence="ev-1", entities={"ip": "203.0.113.1"}, labels=[],
                                notes=[{"x": 1}]),
    "unknown-status": lambda: _alert(status="pwned"),
}


@pytest.mark.parametrize("shape", list(ILL_SHAPED_ALERTS))
def test_a_forwarded_alert_that_breaks_the_alert_model_does_not_break_the_provinces_queue(fresh_province, shape):
    province = fresh_province
    city, analyst = province.key("downstream", CITY), province.key("analyst")
    alert = ILL_SHAPED_ALERTS[shape]()
    answer = _send_alerts(province, city, [alert])
    assert answer.status_code == 200, answer.text[:300]
    for key in (analyst, province.key("agency", CITY)):
        answer = province.get(key, "/api/v1/alerts", limit=500)
        assert answer.status_code == 200, (f"one forwarded {shape} alert broke the province's alert queue: "
                                           f"{answer.status_code} {answer.text[:200]}")
    answer = province.get(analyst, f"/api/v1/alerts/{alert['id']}")
    assert answer.status_code in (200, 404), (alert["id"], answer.status_code)
    if answer.status_code == 200:
        assert answer.json()["alert"]["status"] in ("new", "suppressed", "acknowledged", "in_progress", "closed")
    _still_answers(province)


@pytest.mark.parametrize("forged_at", ["9999-12-31T23:59:59.999Z", "~not a time"], ids=["future", "not-a-time"])
def test_a_history_entry_dated_ahead_cannot_undo_the_provinces_later_closing(province, forged_at):
    city, analyst = province.key("downstream", CITY), province.key("analyst")
    alert = _alert(agency="p-tan-an")
    _ok(_send_alerts(province, city, [alert]))
    _ok(province.post(analyst, f"/api/v1/alerts/{alert['id']}/status",
                      {"status": "closed", "reason": "true_positive", "comment": "closed at the province"}))
    forged_step = {"at": forged_at, "by": "lan.nguyen", "action": "status", "from": "closed", "to": "in_progress",
                   "comment": "reopened"}
    again = {**alert, "status": "in_progress", "history": [*alert["history"], forged_step],
             "updated": ecs.now_iso()}
    _ok(_send_alerts(province, city, [again]))
    stored = _alert_doc(province, analyst, alert["id"])
    # The forged "by" may stay in the history as what the city said; it must not decide the status.
    assert stored["status"] == "closed" and stored.get("close_reason") == "true_positive", \
        (f"a downstream undid the province's closing with a history entry dated {forged_at!r}: "
         f"status {stored['status']}")


def test_an_honest_later_change_of_the_city_still_wins(province):
    """The other side of the previous test: the city's own later triage is taken (not a security property, but
    the fix for the forged dates must keep it)."""
    city, analyst = province.key("downstream", CITY), province.key("analyst")
    alert = _alert(agency="p-tan-an")
    _ok(_send_alerts(province, city, [alert]))
    _ok(province.post(analyst, f"/api/v1/alerts/{alert['id']}/acknowledge", {}))
    time.sleep(0.05)
    step = {"at": ecs.now_iso(), "by": "city.analyst", "action": "status", "from": "acknowledged", "to": "in_progress"}
    _ok(_send_alerts(province, city, [{**alert, "status": "in_progress", "history": [*alert["history"], step]}]))
    assert _alert_doc(province, analyst, alert["id"])["status"] == "in_progress"


# === agencies ====================================================================================================
def test_agency_offers_reaching_outside_the_link_are_refused(province):
    city = province.key("downstream", CITY)
    run = uuid.uuid4().hex[:6]
    legit, child = f"x-legit-{run}", f"x-child-{run}"
    offer = [
        {"id": CITY, "parent": "province", "kind": "district", "name_vi": "renamed"},
        {"id": legit, "parent": CITY, "kind": "commune", "name_vi": "<script>alert(1)</script>Xã",
         "name_en": "<img src=x onerror=alert(1)>\x00\u202e"},
        {"id": child, "parent": legit},
        {"id": "so-tttt", "parent": CITY, "kind": "department"},
        {"id": "province", "parent": CITY},
        {"id": SIBLING, "parent": CITY},
        {"id": "p-thinh-loi", "parent": CITY},
        {"id": f"x-under-dept-{run}", "parent": "so-tttt"},  # a chain through a refused agency
        {"id": f"x-under-sibling-{run}", "parent": "p-thinh-loi"},
        {"id": f"x-cycle-a-{run}", "parent": f"x-cycle-b-{run}"},
        {"id": f"x-cycle-b-{run}", "parent": f"x-cycle-a-{run}"},
        {"id": f"x-self-{run}", "parent": f"x-self-{run}"},
        {"id": f"x-orphan-{run}", "parent": None},
        {"id": f"x-nowhere-{run}", "parent": "no-such-agency"},
        {"id": "../../etc/passwd", "parent": CITY},
        {"id": "X-UPPER", "parent": CITY},
        {"id": "xã-mới", "parent": CITY},
        {"id": "a" * 65, "parent": CITY},
        {"id": 12345, "parent": CITY},
        {"id": "", "parent": CITY},
        "not an object",
        None,
    ]
    answer = _ok(_send(province, city, "agencies", {"agencies": offer}))
    # (the number 12345 is taken as the id "12345": odd, harmless, still under the link)
    assert set(answer["accepted"]) - {"12345"} == {legit, child}, answer
    refused = {r["id"] for r in answer["refused"]}
    assert {"so-tttt", "province", SIBLING, "p-thinh-loi", f"x-under-dept-{run}", f"x-under-sibling-{run}",
            f"x-cycle-a-{run}", f"x-cycle-b-{run}", f"x-self-{run}", f"x-orphan-{run}",
            f"x-nowhere-{run}"} <= refused
    stored = _tier_agencies(province)
    assert stored[legit]["parent"] == CITY and stored[child]["parent"] == legit
    for name in ("name_vi", "name_en"):
        assert not set(stored[legit][name]) & set("<>\x00\u202e"), stored[legit][name]
    assert not {"so-tttt", "province", SIBLING, "p-thinh-loi", CITY} & set(stored)

    # A key for the agency the link created sees that agency's data and nothing else.
    analyst = province.key("analyst")
    _ok(_send_events(province, city, [_event(_uid("legit"), organization={"id": child})]))
    legit_key = province.key("agency", legit)
    mine = province.event_ids(legit_key)
    assert mine and all(ecs.get(_event_doc(province, analyst, e), "organization.id") in (legit, child) for e in mine)
    assert province.all_alerts(legit_key) == [] or all(
        a["organization"]["id"] in (legit, child) for a in province.all_alerts(legit_key))
    assert province.get(legit_key, "/api/v1/events", agency="so-tttt").status_code == 403
    # The sibling's keys see nothing of it; the sibling's link cannot take it over or send under it.
    sibling = province.key("downstream", SIBLING)
    answer = _ok(_send(province, sibling, "agencies", {"agencies": [{"id": legit, "parent": SIBLING},
                                                                    {"id": f"x-steal-{run}", "parent": legit}]}))
    assert answer["accepted"] == [] and {r["id"] for r in answer["refused"]} == {legit, f"x-steal-{run}"}
    assert _tier_agencies(province)[legit]["parent"] == CITY
    assert _ok(_send_events(province, sibling, [_event(organization={"id": legit})]))["refused_count"] == 1
    assert province.event_ids(province.key("agency", SIBLING)) == [] or not set(
        province.event_ids(province.key("agency", SIBLING))) & set(mine)


def test_an_offer_of_more_than_5000_agencies_is_refused_whole(province):
    city = province.key("downstream", CITY)
    offer = [{"id": f"x-flood-{i}", "parent": CITY} for i in range(5001)]
    answer = _ok(_send(province, city, "agencies", {"agencies": offer}))
    assert answer["accepted"] == [] and answer["refused"][0]["id"] == "*", answer["refused"][:3]
    assert not [a for a in _tier_agencies(province) if a.startswith("x-flood-")]


@pytest.mark.parametrize("field,value", [("parent", [CITY]), ("parent", {"id": CITY}), ("kind", ["commune"]),
                                         ("kind", {"x": 1}), ("name_vi", {"a": ["b"]})],
                         ids=["parent-list", "parent-object", "kind-list", "kind-object", "name-object"])
def test_an_agency_field_of_the_wrong_type_is_refused_not_a_crash(province, field, value):
    city = province.key("downstream", CITY)
    agency = {"id": _uid("x-type"), "parent": CITY, "kind": "commune", field: value}
    answer = _send(province, city, "agencies", {"agencies": [agency]})
    assert answer.status_code == 200, (f"an agency with {field} {value!r} crashed the offer: {answer.status_code} "
                                       f"{answer.text[:200]}")
    body = answer.json()
    if field == "parent":
        assert body["accepted"] == [] and body["refused"], body
    else:
        stored = _tier_agencies(province).get(agency["id"])
        assert stored is None or stored["kind"] in ("commune", "district", "department", "province", "datacentre")
    _still_answers(province)


# === status ======================================================================================================
def test_status_figures_that_are_not_finite_numbers_break_neither_the_links_nor_the_metrics(fresh_province):
    province = fresh_province
    city, analyst = province.key("downstream", CITY), province.key("analyst")
    for lag in ("NaN", "Infinity", "-Infinity", "-5", "1e308"):
        body = (f'{{"lag_seconds": {lag}, "backlog": {{"event": {{"records": {lag}, "bytes": 1}}}}, '
                f'"dropped": {{"events": {lag}}}}}').encode()
        answer = _send(province, city, "status", body)
        assert answer.status_code in (200, 400, 422), (lag, answer.status_code)
        links = province.get(analyst, "/api/v1/tier/links")
        assert links.status_code == 200, (f"a status with {lag} broke /api/v1/tier/links: {links.status_code} "
                                          f"{links.text[:200]}")
        metrics = httpx.get(f"{province.api}/metrics", timeout=10)
        assert metrics.status_code == 200
        for line in metrics.text.splitlines():
            if line.startswith(("soc_tier_link_lag_seconds{", "soc_tier_link_backlog_records{")) and CITY in line:
                value = float(line.rsplit(" ", 1)[1])
                assert math.isfinite(value) and 0 <= value < 1e12, (f"a status with {lag} put {value} on /metrics: "
                                                                    f"{line}")


@pytest.mark.parametrize("status", [[1, 2], "up", {"backlog": [1]}, {"backlog": {"event": 5}},
                                    {"dropped": ["events"]}, {"dropped": {"x": {"y": 1}}}, {"backlog": "full"}],
                         ids=["list", "string", "backlog-list", "backlog-number", "dropped-list", "dropped-object",
                              "backlog-string"])
def test_a_status_of_the_wrong_shape_is_refused_not_a_crash(province, status):
    city = province.key("downstream", CITY)
    answer = _send(province, city, "status", status)
    assert answer.status_code in (200, 400, 422), (status, answer.status_code, answer.text[:200])
    assert province.get(province.key("analyst"), "/api/v1/tier/links").status_code == 200
    _still_answers(province)


def test_a_status_cannot_grow_the_links_record_without_bound(province):
    city = province.key("downstream", CITY)
    dropped = {f"k{i:06d}": i for i in range(30_000)}  # ~ 500 KB, under the API's body limit
    _send(province, city, "status", {"lag_seconds": 0, "dropped": dropped})
    link = [l for l in _ok(province.get(province.key("analyst"), "/api/v1/tier/links")) if l["id"] == CITY][0]
    assert len((link.get("reported") or {}).get("dropped") or {}) <= 100, len(link["reported"]["dropped"])


# === a compromised upstream ======================================================================================
class _FakeUpstream:
    """A province gone bad: takes whatever the city sends, and serves, for each alert it got, a change of the
    shape given."""

    def __init__(self, triage_for):
        import http.server
        import threading

        self.alerts: list[str] = []
        self.triage_for = triage_for
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path.endswith("/alerts"):
                    outer.alerts += [a["id"] for a in json.loads(body)["alerts"] if a["id"] not in outer.alerts]
                if self.path.endswith("/agencies"):
                    return self._answer({"accepted": [], "refused": []})
                self._answer({"stored": 1, "refused": [], "refused_count": 0, "ok": True})

            def do_GET(self):
                changes = [{"id": uuid.uuid4().hex, "at": ecs.now_iso(), "alert_id": a, "triage": outer.triage_for(a)}
                           for a in outer.alerts]
                self._answer({"changes": changes, "next": "1:ab" if changes else None})

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


HOSTILE_TRIAGE = {
    "history-not-objects": lambda a: {"id": a, "status": "acknowledged", "history": [1, "x", None], "notes": [],
                                      "updated": ecs.now_iso()},
    "note-of-the-wrong-shape": lambda a: {"id": a, "status": "acknowledged", "notes": [{"x": 1}], "history": [
        {"at": "9999-01-01T00:00:00.000Z", "by": "evil", "action": "note"}], "updated": ecs.now_iso()},
    "assignee-object": lambda a: {"id": a, "status": "in_progress", "assignee": {"evil": True}, "history": [
        {"at": "9999-01-01T00:00:00.000Z", "by": "evil", "action": "assign"}], "notes": [], "updated": ecs.now_iso()},
    "history-and-notes-numbers": lambda a: {"id": a, "status": "acknowledged", "history": 5, "notes": 7,
                                            "updated": ecs.now_iso()},
    "unknown-status": lambda a: {"id": a, "status": "pwned", "history": [
        {"at": ecs.now_iso(), "by": "evil", "action": "status", "to": "pwned"}], "notes": [], "updated": ecs.now_iso()},
}


@pytest.mark.parametrize("shape", list(HOSTILE_TRIAGE))
def test_a_compromised_upstreams_change_does_not_break_the_citys_alert_queue(tmp_path, shape):
    from tests.tier_suites import CITY_INVENTORY, send_syslog

    upstream = _FakeUpstream(HOSTILE_TRIAGE[shape])
    city = TierSuite(tmp_path / "city", "city", store_url=None, index_prefix=f"tc{uuid.uuid4().hex[:8]}",
                     inventory=CITY_INVENTORY,
                     tiers={"upstream": {"url": upstream.url, "key_env": "SOC_UPSTREAM_KEY", "interval_seconds": 0.2,
                                         "retry_max_seconds": 1.0}})
    city.env = {"SOC_UPSTREAM_KEY": "soc_0123456789abcdef_whatever"}
    try:
        city.start()
        analyst = city.key("analyst")
        send_syslog(city.settings.syslog.tcp_port, "127.0.0.2", sshd_failures("tan-an-srv", "203.0.113.66", 8))
        alert_id = wait_for(lambda: upstream.alerts, 60, "the city's alert at the fake upstream")[0]
        time.sleep(2)  # a few pulls of the hostile change
        answer = city.get(analyst, "/api/v1/alerts", limit=500)
        assert answer.status_code == 200, (f"a {shape} change from the upstream broke the city's alert queue: "
                                           f"{answer.status_code} {answer.text[:200]}")
        shown = city.get(analyst, f"/api/v1/alerts/{alert_id}")
        assert shown.status_code == 200 and shown.json()["alert"]["status"] in ("new", "acknowledged", "in_progress")
        # The change is refused, not fatal: the city's forwarding goes on (a bad change must not stick the link).
        wait_for(lambda: city.get(analyst, "/api/v1/tier/upstream").json()["last_error"] is None, 30,
                 "the city's forwarding working past the hostile change")
        _still_answers(city)
    finally:
        _stop(city)
        upstream.close()
