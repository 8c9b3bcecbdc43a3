"""The console's findings pages over real HTTP (a running suite, users signed in through the real form): the list
with its filters, order and cursor; one finding with its evidence, asset, dates and history; an analyst's status
change going through the API's data layer (the finding document and the audit record are what the API writes);
refusals: no CSRF token, an agency user changing a status, another agency's finding by URL, a missing reason; hostile
evidence is shown escaped."""

from __future__ import annotations

import datetime as dt
import html
import re

import pytest

from assessment.findings import FINDINGS, Observation, record
from assessment.scope import Target
from assessment.settings import AssessmentSettings
from soc.storage.base import DocumentQuery
from tests.api_fixtures import AGENCY_A, AGENCY_B, call, keys_for, running_suite
from tests.console_fixtures import ConsoleClient, add_user, console_api

EXTENSIONS = "[soc_api.extension, assessment.service]"
HOSTILE = '<script>alert("x")</script>'


def _seed(store) -> dict[str, dict[str, str]]:
    """Per agency: a few findings of each severity (one with hostile evidence), first seen a day apart."""
    settings = AssessmentSettings()
    ids: dict[str, dict[str, str]] = {}
    for agency in (AGENCY_A, AGENCY_B):
        target = Target("10.1.1.1", f"{agency}-srv", f"{agency}-srv.local", agency, ("https",))
        planned = [("443/low", "low", {"tool": "httpx"}), ("443/high", "high", {"header": HOSTILE}),
                   ("443/critical", "critical", {"tool": "sslyze"}), ("443/medium", "medium", {"tool": "httpx"})]
        for day in range(1, len(planned) + 1):  # one more finding each day; those of earlier days seen again
            now = dt.datetime(2026, 10, day, tzinfo=dt.timezone.utc)
            current = [Observation("headers", d, f"{agency} {s} finding", s, 443, e) for d, s, e in planned[:day]]
            record(store, settings, target, "headers", current, {443}, now, f"run-{day}")
        docs = store.find_documents(FINDINGS, DocumentQuery(terms={"organization.id": agency}, limit=100))
        ids[agency] = {d["severity"]: d["id"] for d in docs}
    store.refresh()
    return ids


class Console:
    def __init__(self, suite, clients, keys, ids):
        self.suite, self.clients, self.keys, self.ids = suite, clients, keys, ids

    def get(self, user: str, path: str, **kwargs):
        return self.clients[user].get(path, **kwargs)

    def post(self, user: str, path: str, data: dict | None = None, *, token: bool = True):
        client = self.clients[user]
        form = dict(data or {})
        if token:
            form["csrf_token"] = client.csrf()
        return client.post(path, data=form)

    def audit(self, user: str) -> list[dict]:
        return call(self.clients["ana"].http, "GET", "/api/v1/audit", self.keys["admin"],
                    params={"user": user, "limit": 200}).json()["records"]


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    with running_suite(tmp_path_factory.mktemp("console-findings"), api=console_api(),
                       extensions=EXTENSIONS) as suite:
        keys = keys_for(suite.store)
        ids = _seed(suite.store)
        add_user(suite, "ana", "analyst")
        add_user(suite, "nam", "network_admin")
        add_user(suite, "tttt", "agency", agency=AGENCY_A)
        clients = {}
        for name in ("ana", "nam", "tttt"):
            client = ConsoleClient(suite)
            assert client.signin(name).status_code == 303
            client.http.cookies.set("soc_lang", "en")
            client.http.cookies.set("soc_tz", "UTC")
            clients[name] = client
        yield Console(suite, clients, keys, ids)
        for client in clients.values():
            client.close()


def _ids(page) -> list[str]:
    return re.findall(r'data-finding-id="([^"]+)"', page.text)


def _text(page) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", page.text))


def test_list_filters_order_and_cursor(console):
    a, b = console.ids[AGENCY_A], console.ids[AGENCY_B]
    page = console.get("ana", "/console/findings")
    assert page.status_code == 200, page.text[:500]
    assert 'href="/console/findings"' in page.text  # in the top bar
    # Newest first: the medium finding (first seen on day 4) leads, for both agencies.
    assert set(_ids(page)) == set(a.values()) | set(b.values())
    assert _ids(page)[0] in (a["medium"], b["medium"])
    severe = console.get("ana", "/console/findings", params={"sort": "severity"})
    order = re.findall(r'data-severity="([^"]+)"', severe.text)
    assert order == ["critical"] * 2 + ["high"] * 2 + ["medium"] * 2 + ["low"] * 2
    only_b = console.get("ana", "/console/findings", params={"agency": AGENCY_B, "severity": "high"})
    assert _ids(only_b) == [b["high"]]
    by_asset = console.get("ana", "/console/findings", params={"asset": f"{AGENCY_A}-srv", "status": "open"})
    assert set(_ids(by_asset)) == set(a.values())
    bad = console.get("ana", "/console/findings", params={"severity": "<b>", "status": "nope"})
    assert bad.status_code == 200 and "An unknown severity was ignored." in _text(bad)

    # A page at a time, with the data layer's cursor, in both orders.
    from soc_api.console import findings_pages

    for sort in ("newest", "severity"):
        seen: list[str] = []
        pages = 0
        url, params = "/console/findings", {"sort": sort}
        original = findings_pages.PAGE_SIZE
        try:
            findings_pages.PAGE_SIZE = 3
            for _ in range(5):
                answer = console.get("ana", url, params=params)
                pages += 1
                seen.extend(_ids(answer))
                found = re.search(r'<a href="([^"]+)" rel="next">', answer.text)
                if not found:
                    break
                url, params = html.unescape(found.group(1)), None
        finally:
            findings_pages.PAGE_SIZE = original
        assert pages == 3 and sorted(seen) == sorted(set(a.values()) | set(b.values())), sort
    forged = console.get("ana", "/console/findings", params={"cursor": "AAAA"})
    assert forged.status_code == 200 and "this is the first page" in _text(forged)


def test_agency_user_sees_its_own_only(console):
    a, b = console.ids[AGENCY_A], console.ids[AGENCY_B]
    page = console.get("tttt", "/console/findings", params={"agency": AGENCY_B})
    assert page.status_code == 200
    assert set(_ids(page)) == set(a.values())
    assert console.get("tttt", f"/console/findings/{a['low']}").status_code == 200
    other = console.get("tttt", f"/console/findings/{b['low']}")
    assert other.status_code == 404 and f"{AGENCY_B} low finding" not in other.text
    # No form to change the status for an agency user.
    assert 'id="finding-status-form"' not in console.get("tttt", f"/console/findings/{a['low']}").text


def test_finding_page_shows_evidence_escaped_asset_dates_and_history(console):
    fid = console.ids[AGENCY_A]["high"]
    page = console.get("ana", f"/console/findings/{fid}")
    assert page.status_code == 200
    assert HOSTILE not in page.text and "&lt;script&gt;alert(" in page.text
    text = _text(page)
    assert f"{AGENCY_A} high finding" in text and "443/high" in text
    assert "2026-10-02" in text  # first seen
    doc = console.suite.store.get_document(FINDINGS, fid)
    assert doc["due"] in text and "Past due" in text  # October 2026's due dates have passed
    assert 'id="finding-history"' in page.text and "found" in text
    assert 'id="finding-status-form"' in page.text and 'name="csrf_token"' in page.text


def test_status_change_through_the_data_layer_and_audited(console):
    fid = console.ids[AGENCY_A]["medium"]
    answer = console.post("ana", f"/console/findings/{fid}/status",
                          {"status": "accepted", "reason": "compensating control <b>WAF</b>"})
    assert answer.status_code == 303, answer.text[:500]
    assert answer.headers["location"] == f"/console/findings/{fid}?done=accepted"
    doc = console.suite.store.get_document(FINDINGS, fid)
    assert doc["status"] == "accepted" and doc["status_by"] == "ana"
    assert doc["status_reason"] == "compensating control <b>WAF</b>"
    assert doc["history"][-1]["action"] == "status open -> accepted"
    page = console.get("ana", answer.headers["location"])
    assert "The finding is accepted." in _text(page) and "<b>WAF</b>" not in page.text
    api = call(console.clients["ana"].http, "GET", f"/api/v1/findings/{fid}", console.keys["analyst"]).json()
    assert api["status"] == "accepted"
    records = console.audit("ana")
    assert any(r["outcome"] == "ok" and r["path"] == f"/console/findings/{fid}/status"
               and "status accepted" in (r["detail"] or "") and r["organization"]["id"] == AGENCY_A
               for r in records)
    back = console.post("ana", f"/console/findings/{fid}/status", {"status": "open"})
    assert back.status_code == 303
    assert console.suite.store.get_document(FINDINGS, fid)["status"] == "open"


def test_refusals_write_nothing(console):
    fid = console.ids[AGENCY_A]["low"]
    before = console.suite.store.get_document(FINDINGS, fid)
    no_token = console.post("ana", f"/console/findings/{fid}/status", {"status": "accepted", "reason": "x"},
                            token=False)
    assert no_token.status_code == 403
    agency = console.post("tttt", f"/console/findings/{fid}/status", {"status": "accepted", "reason": "ours"})
    assert agency.status_code == 403
    network_admin = console.post("nam", f"/console/findings/{fid}/status", {"status": "accepted", "reason": "x"})
    assert network_admin.status_code == 403
    no_reason = console.post("ana", f"/console/findings/{fid}/status", {"status": "false_positive", "reason": " "})
    assert no_reason.status_code == 422 and "Give a reason" in _text(no_reason)
    fixed = console.post("ana", f"/console/findings/{fid}/status", {"status": "fixed", "reason": "x"})
    assert fixed.status_code == 422
    assert console.suite.store.get_document(FINDINGS, fid)["status"] == before["status"] == "open"
    other = console.ids[AGENCY_B]["low"]
    # An agency user's post is refused by role before anything; an analyst may change any agency's finding.
    missing = console.post("ana", "/console/findings/fnd-nothing/status", {"status": "accepted", "reason": "x"})
    assert missing.status_code == 404
    assert console.suite.store.get_document(FINDINGS, other)["status"] == "open"
    outcomes = [r["outcome"] for r in console.audit("ana") if r["path"] == f"/console/findings/{fid}/status"]
    assert "refused 403" in outcomes and outcomes.count("refused 422") >= 2


def test_vietnamese_words(console):
    page = console.get("ana", "/console/findings")
    console.clients["ana"].http.cookies.set("soc_lang", "vi")
    try:
        vi = console.get("ana", "/console/findings")
    finally:
        console.clients["ana"].http.cookies.set("soc_lang", "en")
    assert page.status_code == vi.status_code == 200
    assert "Phát hiện đánh giá" in _text(vi) and "Assessment findings" in _text(page)


def test_posture_carries_open_findings_by_severity_and_past_due(console):
    today = dt.datetime.now(dt.timezone.utc).date().isoformat()
    for key, agency in (("analyst", AGENCY_A), (AGENCY_A, AGENCY_A), ("analyst", AGENCY_B)):
        posture = call(console.clients["ana"].http, "GET", "/api/v1/posture", console.keys[key]).json()
        found = {a["id"]: a["findings"] for a in posture["agencies"]}
        if key == AGENCY_A:
            assert set(found) == {AGENCY_A}
        docs = [d for d in console.suite.store.find_documents(FINDINGS, DocumentQuery(
            terms={"organization.id": agency}, limit=100)) if d["status"] == "open"]
        expected = {s: sum(1 for d in docs if d["severity"] == s)
                    for s in ("critical", "high", "medium", "low", "informational")}
        assert found[agency]["open"] == len(docs) and found[agency]["by_severity"] == expected
        assert found[agency]["past_due"] == sum(1 for d in docs if d["due"] and d["due"] < today)
