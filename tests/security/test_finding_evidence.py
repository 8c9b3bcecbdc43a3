"""A scanned host writes part of its own findings: its banners, headers and certificate names become a finding's
detail, title and evidence (assessment/findings.py ``record``). A hostile host — an agency server taken over — tries
markup, a path, SQL and an agency of its choosing in them. Through the real recording, the API, the console pages
and the monthly report: the text is shown as text, the finding's id is the suite's own fixed-form hash, and the
finding stays the inventory's agency's."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from assessment.findings import FINDINGS, Observation, record
from assessment.scope import Target
from assessment.settings import AssessmentSettings
from reports.builder import build_report
from reports.periods import parse_period
from soc.storage.base import DocumentQuery
from tests.api_fixtures import AGENCY_A, AGENCY_B, call, client_for, keys_for, running_suite
from tests.console_fixtures import ConsoleClient, add_user, console_api

MARKUP = '<script>alert("banner")</script><img src=x onerror=alert(1)>'
DETAIL = "443/../../../etc/passwd' OR '1'='1"


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    with running_suite(tmp_path_factory.mktemp("finding-evidence"), api=console_api(),
                       extensions="[soc_api.extension, assessment.service]") as running:
        target = Target("10.1.1.1", f"{AGENCY_A}-srv", f"{AGENCY_A}-srv.local", AGENCY_A, ("https",))
        hostile = Observation("headers", DETAIL, f"Server says {MARKUP}", "high", 443,
                              {"server": MARKUP, "organization": {"id": AGENCY_B}, "path": "../../../tmp/x"})
        record(running.store, AssessmentSettings(), target, "headers", [hostile], {443},
               dt.datetime(2026, 10, 2, tzinfo=dt.timezone.utc), "run-hostile")
        running.store.refresh()
        yield running


def _finding(suite) -> dict:
    [doc] = suite.store.find_documents(FINDINGS, DocumentQuery(limit=10))
    return doc


def test_the_finding_is_the_inventorys_agencys_with_an_id_of_the_suites_own(suite):
    doc = _finding(suite)
    assert doc["organization"]["id"] == AGENCY_A  # whatever the evidence claims
    assert re.fullmatch(r"fnd-[0-9a-f]{32}", doc["id"])  # the detail never becomes the id, a path or a query
    keys = keys_for(suite.store)
    with client_for(suite) as client:
        assert call(client, "GET", f"/api/v1/findings/{doc['id']}", keys[AGENCY_B]).status_code == 404
        assert call(client, "GET", "/api/v1/findings", keys[AGENCY_B]).json()["findings"] == []
        assert call(client, "GET", f"/api/v1/findings/{doc['id']}", keys[AGENCY_A]).json()["id"] == doc["id"]


def test_console_pages_show_the_hosts_text_as_text(suite):
    doc = _finding(suite)
    add_user(suite, "ana-evidence", "analyst")
    client = ConsoleClient(suite)
    try:
        assert client.signin("ana-evidence").status_code == 303
        for path in ("/console/findings", f"/console/findings/{doc['id']}"):
            page = client.get(path)
            assert page.status_code == 200
            assert "<script>alert" not in page.text and "<img src=x" not in page.text, path
        assert "&lt;script&gt;alert(&#34;banner&#34;)&lt;/script&gt;" in client.get(
            f"/console/findings/{doc['id']}").text
    finally:
        client.close()


def test_the_monthly_report_shows_the_hosts_text_as_text(suite, tmp_path):
    built = build_report(suite.store, suite.inventory, suite.ruleset, scope=AGENCY_A,
                         period=parse_period("2026-10", suite.settings.tz), langs=("en",), formats=("html", "pdf"),
                         out_dir=Path(tmp_path), zone=suite.settings.tz)
    html = built[0].files["html"].read_text(encoding="utf-8")
    assert "<script>alert" not in html and "<img src=x" not in html
    assert _finding(suite)["id"] in html or "&lt;script&gt;" in html  # the finding is in it, as text
    assert not any(Path(tmp_path).rglob("passwd")) and not (Path("/tmp") / "x").is_file()
