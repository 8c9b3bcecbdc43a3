"""GET /api/v1/reports over real HTTP: agency keys see and download only their own agency's reports, admins and
analysts see every report including the province roll-up."""

from __future__ import annotations

import httpx
import pytest

from reports.builder import build_report
from reports.periods import parse_period
from suite.runtime import Suite, SuiteThread
from soc_api.keys import create_key
from tests import reports_month as month_data
from tests.conftest import make_settings


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    folder = tmp_path_factory.mktemp("reports-api")
    settings = make_settings(folder, SOC__INVENTORY__PATH=str(month_data.write_inventory(folder)))
    runner = SuiteThread(Suite(settings)).start()
    suite = runner.suite
    generated = month_data.generate()
    # A week is enough here: the numbers are tested in test_reports.py, this is about who may read what.
    generated.messages = [m for m in generated.messages if m.received.day <= 7]
    month_data.play(suite, generated)
    for scope in ("so-a", "so-b", None):
        build_report(suite.store, suite.inventory, suite.ruleset, scope=scope, period=parse_period("2026-10",
                     settings.tz), langs=("vi", "en"), formats=("pdf", "html"), out_dir=folder / "reports",
                     zone=settings.tz)
    keys = {"admin": create_key(suite.store, "admin")[0], "analyst": create_key(suite.store, "analyst")[0],
            "a": create_key(suite.store, "agency", agency="so-a")[0],
            "b": create_key(suite.store, "agency", agency="so-b")[0],
            "network_admin": create_key(suite.store, "network_admin")[0]}
    yield httpx.Client(base_url=f"http://127.0.0.1:{suite.bound['api']}", timeout=30), keys
    runner.stop()


def _get(client, path, key, **params):
    return client.get(path, headers={"X-API-Key": key}, params=params)


def test_agency_keys_list_only_their_own_reports(api):
    client, keys = api
    for key, agency in (("a", "so-a"), ("b", "so-b")):
        listed = _get(client, "/api/v1/reports", keys[key]).json()["reports"]
        assert sorted(r["id"] for r in listed) == [f"{agency}_2026-10_en", f"{agency}_2026-10_vi"]
        assert all(r["formats"] == ["evidence", "html", "pdf"] and "files" not in r for r in listed)
        assert _get(client, "/api/v1/reports", keys[key], agency="province").status_code == 403


def test_admins_and_analysts_list_every_report_with_filters_and_paging(api):
    client, keys = api
    for role in ("admin", "analyst"):
        listed = _get(client, "/api/v1/reports", keys[role]).json()["reports"]
        assert len(listed) == 6 and {r["scope"] for r in listed} == {"so-a", "so-b", "province"}
        generated = [r["generated"] for r in listed]
        assert generated == sorted(generated, reverse=True)
    rollups = _get(client, "/api/v1/reports", keys["admin"], agency="province").json()["reports"]
    assert {r["id"] for r in rollups} == {"province_2026-10_vi", "province_2026-10_en"}
    assert all(r["rollup"] for r in rollups)
    first = _get(client, "/api/v1/reports", keys["admin"], limit=4).json()
    rest = _get(client, "/api/v1/reports", keys["admin"], limit=4, cursor=first["next_cursor"]).json()
    assert len(first["reports"]) == 4 and len(rest["reports"]) == 2 and rest["next_cursor"] is None
    assert not {r["id"] for r in first["reports"]} & {r["id"] for r in rest["reports"]}
    assert _get(client, "/api/v1/reports", keys["admin"], period="2026-09").json()["reports"] == []
    assert _get(client, "/api/v1/reports", keys["network_admin"]).status_code == 403


def test_downloads_respect_tenancy(api):
    client, keys = api
    pdf = _get(client, "/api/v1/reports/so-a_2026-10_vi", keys["a"])
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF")
    html = _get(client, "/api/v1/reports/so-a_2026-10_en", keys["a"], format="html")
    assert html.status_code == 200 and "Security monitoring audit report" in html.text
    evidence = _get(client, "/api/v1/reports/so-a_2026-10_en", keys["a"], format="evidence").json()
    assert "summary:events" in evidence
    # Another agency's report, the roll-up and a missing report all answer 404 to an agency key.
    for rid in ("so-b_2026-10_vi", "province_2026-10_vi", "nope_2026-10_vi"):
        assert _get(client, f"/api/v1/reports/{rid}", keys["a"]).status_code == 404
    assert _get(client, "/api/v1/reports/province_2026-10_vi", keys["admin"]).content.startswith(b"%PDF")
    assert _get(client, "/api/v1/reports/so-a_2026-10_vi", keys["a"], format="docx").status_code == 422
    assert client.get("/api/v1/reports").status_code == 401
