"""The console's reports page over real HTTP (a running suite, users signed in through the real form): who may open
it; the list (filters, the API's cursor); downloads that are the API's bytes with the API's content types; and an
agency user never listing or downloading another agency's report or the province roll-up, whatever the URL says."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from reports.builder import build_report
from reports.periods import parse_period
from soc_api.routers import console_reports
from tests.api_fixtures import AGENCY_A, AGENCY_B, alert_doc, call, event_doc, keys_for, running_suite
from tests.console_fixtures import ConsoleClient, add_user, console_api

PERIOD = "2026-11"
B_MARKS = ("Department of Health", "Sở Y tế", f"{AGENCY_B}_{PERIOD}")  # agency B's: never on A's pages


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    folder = tmp_path_factory.mktemp("console-reports")
    with running_suite(folder / "suite", api=console_api()) as suite:
        store = suite.store
        store.write_events([event_doc(i, agency) for agency in (AGENCY_A, AGENCY_B) for i in range(6)])
        store.upsert_alerts([alert_doc(i, agency) for agency in (AGENCY_A, AGENCY_B) for i in range(3)])
        store.refresh()
        for scope in (AGENCY_A, AGENCY_B, None):
            build_report(store, suite.inventory, suite.ruleset, scope=scope,
                         period=parse_period(PERIOD, suite.settings.tz), langs=("vi", "en"), formats=("pdf", "html"),
                         out_dir=folder / "reports", zone=suite.settings.tz)
        users = {"ana": ("analyst", None), "boss": ("admin", None), "nc": ("national_centre", None),
                 "nam": ("network_admin", None), "tttt": ("agency", AGENCY_A), "yte": ("agency", AGENCY_B)}
        clients = {}
        for name, (role, agency) in users.items():
            add_user(suite, name, role, agency=agency)
            client = ConsoleClient(suite)
            assert client.signin(name).status_code == 303
            client.http.cookies.set("soc_lang", "en")
            client.http.cookies.set("soc_tz", "UTC")
            clients[name] = client
        yield suite, clients, keys_for(store)
        for client in clients.values():
            client.close()


def _ids(page: str) -> list[str]:
    return re.findall(r'<tr data-report-id="([^"]+)">', page)


def _every(client: ConsoleClient, params: dict | None = None) -> list[str]:
    """Every report id the list shows, page after page."""
    seen: list[str] = []
    page = client.get("/console/reports", params=params)
    for _ in range(50):
        assert page.status_code == 200
        seen += _ids(page.text)
        following = re.search(r'<a href="([^"]+)" rel="next">', page.text)
        if not following:
            return seen
        page = client.get(following.group(1).replace("&amp;", "&"))
    raise AssertionError("the pages did not end")


def test_reports_open_for_analysts_agency_users_and_admins_only(console):
    suite, clients, _ = console
    for name in ("ana", "boss", "tttt", "yte"):
        answer = clients[name].get("/console/reports")
        assert answer.status_code == 200, name
        assert "default-src 'self'" in answer.headers["content-security-policy"] and "<script>" not in answer.text
    for name in ("nc", "nam"):  # as the API: GET /reports is for analysts and agency keys
        answer = clients[name].get("/console/reports")
        assert answer.status_code == 403 and "data-report-id" not in answer.text
        assert clients[name].get(f"/console/reports/{AGENCY_A}_{PERIOD}_vi/pdf").status_code == 403
    anonymous = ConsoleClient(suite)
    try:
        for path in ("/console/reports", f"/console/reports/{AGENCY_A}_{PERIOD}_vi/pdf"):
            answer = anonymous.get(path)
            assert answer.status_code == 303 and answer.headers["location"].startswith("/console/signin")
    finally:
        anonymous.close()


def test_the_list_is_the_apis_with_filters_and_pages(console, monkeypatch):
    _, clients, keys = console
    client = clients["ana"]
    api = call(client.http, "GET", "/api/v1/reports", keys["analyst"]).json()["reports"]
    page = client.get("/console/reports").text
    assert _ids(page) == [r["id"] for r in api] and len(api) == 6
    assert "Province roll-up" in page and "Department of Health" in page
    assert f'href="/console/reports/{AGENCY_A}_{PERIOD}_vi/pdf"' in page
    assert f'href="/console/reports/{AGENCY_A}_{PERIOD}_en/html"' in page
    assert f'href="/console/reports/{AGENCY_A}_{PERIOD}_en/evidence"' in page
    # filters: an agency, the roll-ups, a period
    assert sorted(_ids(client.get("/console/reports", params={"agency": AGENCY_B}).text)) == [
        f"{AGENCY_B}_{PERIOD}_en", f"{AGENCY_B}_{PERIOD}_vi"]
    assert sorted(_ids(client.get("/console/reports", params={"agency": "province"}).text)) == [
        f"province_{PERIOD}_en", f"province_{PERIOD}_vi"]
    assert _ids(client.get("/console/reports", params={"period": "2026-10"}).text) == []
    assert len(_ids(client.get("/console/reports", params={"period": PERIOD.lower()}).text)) == 6
    wrong = client.get("/console/reports", params={"period": "last month", "agency": "nope"}).text
    assert "The period was not understood" in wrong and "not in the inventory" in wrong and len(_ids(wrong)) == 6
    # pages of 4: the API's cursor, every report once
    monkeypatch.setattr(console_reports, "PAGE_SIZE", 4)
    assert _every(client) == [r["id"] for r in api]
    assert client.get("/console/reports", params={"cursor": "bm90LWEtY3Vyc29y"}).status_code == 200


def test_downloads_are_the_apis_bytes(console):
    suite, clients, keys = console
    for name, key in (("tttt", keys[AGENCY_A]), ("ana", keys["analyst"])):
        for rid in (f"{AGENCY_A}_{PERIOD}_vi", f"{AGENCY_A}_{PERIOD}_en"):
            for fmt, media in (("pdf", "application/pdf"), ("html", "text/html; charset=utf-8"),
                               ("evidence", "application/json")):
                mine = clients[name].get(f"/console/reports/{rid}/{fmt}")
                theirs = call(clients[name].http, "GET", f"/api/v1/reports/{rid}", key, params={"format": fmt})
                assert mine.status_code == theirs.status_code == 200, (name, rid, fmt)
                assert mine.headers["content-type"] == theirs.headers["content-type"] == media
                assert mine.content == theirs.content and mine.content
                assert mine.headers["content-disposition"].startswith("attachment")
                assert mine.headers["x-content-type-options"] == "nosniff"
                record = suite.store.get_document("reports", rid)
                assert hashlib.sha256(mine.content).hexdigest() == record["files"][fmt]["sha256"]
                if fmt == "pdf":
                    assert mine.content.startswith(b"%PDF")
                if fmt == "html":
                    assert "sandbox" in mine.headers["content-security-policy"]


@pytest.mark.parametrize("params", [{}, {"agency": AGENCY_B}, {"agency": "province"}, {"period": PERIOD}])
def test_agency_user_lists_only_its_own_reports_whatever_the_url(console, params):
    _, clients, _ = console
    page = clients["tttt"].get("/console/reports", params=params)
    assert page.status_code == 200
    assert sorted(_ids(page.text)) == [f"{AGENCY_A}_{PERIOD}_en", f"{AGENCY_A}_{PERIOD}_vi"]
    assert 'name="agency"' not in page.text and "Province roll-up" not in page.text
    for mark in B_MARKS:
        assert mark not in page.text, mark
    assert "province_" not in page.text
    other = clients["yte"].get("/console/reports", params=params).text
    assert sorted(_ids(other)) == [f"{AGENCY_B}_{PERIOD}_en", f"{AGENCY_B}_{PERIOD}_vi"]


def test_agency_user_cannot_download_another_agencys_report_by_url(console):
    suite, clients, _ = console
    client = clients["tttt"]
    for rid in (f"{AGENCY_B}_{PERIOD}_vi", f"province_{PERIOD}_en", "nope_2026-11_vi"):
        for fmt in ("pdf", "html", "evidence"):
            answer = client.get(f"/console/reports/{rid}/{fmt}")
            assert answer.status_code == 404, (rid, fmt)
            assert "text/html" in answer.headers["content-type"] and not answer.content.startswith(b"%PDF")
            assert "Health" not in answer.text and "Sở Y tế" not in answer.text
    # the same answer as a report that does not exist, and nothing else reached
    missing = client.get("/console/reports/nope_2026-11_vi/pdf").text
    hidden = client.get(f"/console/reports/{AGENCY_B}_{PERIOD}_vi/pdf").text
    assert re.sub(r"/console/reports/[^\"]+", "", missing) == re.sub(r"/console/reports/[^\"]+", "", hidden)
    # a format that is not one, a path that tries to leave, an id that is not one
    for path in (f"/console/reports/{AGENCY_A}_{PERIOD}_vi/docx", "/console/reports/..%2F..%2Fetc%2Fpasswd/pdf",
                 "/console/reports/%20x/pdf"):
        assert client.get(path).status_code == 404, path


def test_a_report_whose_file_is_gone_answers_410(console, tmp_path):
    suite, clients, _ = console
    rid = f"{AGENCY_A}_{PERIOD}_en"
    record = suite.store.get_document("reports", rid)
    path = Path(record["files"]["html"]["path"])
    kept = path.read_bytes()
    path.unlink()
    try:
        answer = clients["tttt"].get(f"/console/reports/{rid}/html")
        assert answer.status_code == 410 and "text/html" in answer.headers["content-type"]
    finally:
        path.write_bytes(kept)


def test_reports_page_in_vietnamese_says_when_reports_are_built(console):
    _, clients, _ = console
    client = clients["tttt"]
    client.http.cookies.set("soc_lang", "vi")
    try:
        page = client.get("/console/reports").text
    finally:
        client.http.cookies.set("soc_lang", "en")
    assert "Báo cáo kiểm tra" in page and "Tháng 2026-11" in page and "Tải về PDF" in page
    assert 'id="schedule-note"' in page
    assert "soc report" not in page  # the command line is for the SOC's own staff
    assert "soc report" in clients["ana"].get("/console/reports").text
