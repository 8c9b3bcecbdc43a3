"""The four layers of protection and the KPI L3.N2.PN1.01 (reports/layers.py, docs/four-layers.md) for a generated
month (October 2026, tests/reports_month.py) with known acknowledgements, sources, findings, an assessment run,
indicators from the national centre, a sighting shared back, posture pushes and a security officer for one agency:
each layer's state and reasons and the KPI per agency and for the province, exactly as the formula says; the same
in ``GET /api/v1/posture?month=2026-10`` with tenancy; the report's section in Vietnamese and English."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta

import httpx
import pytest
import yaml
from pydantic import ValidationError

from collectors.message import RawMessage
from inventory.model import SecurityOfficer
from reports.builder import build_report
from reports.gather import gather
from reports.periods import parse_period
from soc import ecs
from soc.storage.base import AlertQuery
from soc_api.inventory_edit import InventoryEditError, edit_inventory
from soc_api.keys import create_key
from suite.runtime import Suite, SuiteThread
from tests import reports_month as month_data
from tests.conftest import make_settings

OFFICER = {"name": "Phạm Thu Trang", "title": "Phó Chánh Văn phòng", "phone": "+84 200 000 0201"}
FINDINGS = [
    # so-a: assessed on 28 October, one high finding open and past due (due 20 October), one accepted (not counted)
    {"id": "fnd-a1", "check": "tls", "detail": "443/protocol/TLS 1.0", "severity": "high", "status": "open",
     "due": "2026-10-20", "first_seen": "2026-09-20T02:00:00Z", "last_seen": "2026-10-28T02:00:00Z",
     "organization": {"id": "so-a"}, "asset": {"id": "a-web-01", "hostname": "a-web-01"}},
    {"id": "fnd-a2", "check": "headers", "detail": "443/hsts", "severity": "low", "status": "accepted",
     "due": "2026-10-01", "first_seen": "2026-04-04T02:00:00Z", "last_seen": "2026-10-28T02:00:00Z",
     "organization": {"id": "so-a"}, "asset": {"id": "a-web-01", "hostname": "a-web-01"}},
    # so-b: last assessed in June; a finding due 1 October fixed only on 10 November: open and past due at the end
    {"id": "fnd-b1", "check": "ports", "detail": "8081/tcp", "severity": "medium", "status": "fixed",
     "due": "2026-10-01", "first_seen": "2026-06-01T00:00:00Z", "last_seen": "2026-06-01T00:00:00Z",
     "fixed_at": "2026-11-10T02:00:00Z", "organization": {"id": "so-b"},
     "asset": {"id": "b-web-01", "hostname": "b-web-01"}},
]
RUNS = [{"id": "run-20260601", "state": "done", "started": "2026-05-31T23:00:00Z", "finished": "2026-06-01T00:00:00Z",
         "agencies": ["so-b"], "targets": [{"asset": "b-web-01", "address": "10.20.2.10", "agency": "so-b"}]},
        {"id": "run-20261025", "state": "stopped", "started": "2026-10-25T00:00:00Z",
         "finished": "2026-10-25T00:10:00Z", "agencies": ["so-b"]}]  # stopped: not a finished assessment
PUSHES = [{"id": "push-1", "generated": "2026-10-15T00:00:00.000Z", "status": "accepted", "attempts": 2,
           "accepted_at": "2026-10-15T00:00:05.000Z", "url": "https://ncsc.example/posture"},
          {"id": "push-2", "generated": "2026-10-20T00:00:00.000Z", "status": "failed", "attempts": 5,
           "accepted_at": None, "url": "https://ncsc.example/posture"},
          {"id": "push-3", "generated": "2026-11-02T00:00:00.000Z", "status": "accepted", "attempts": 1,
           "accepted_at": "2026-11-02T00:00:01.000Z", "url": "https://ncsc.example/posture"}]  # November
SIGHTING = {"id": "sig-b1", "indicator_id": "ind-1", "organization": {"id": "so-b"}, "source": "national_centre",
            "count": 3, "first_seen": "2026-10-11T01:00:00.000Z", "last_seen": "2026-10-12T01:00:00.000Z",
            "events": []}


def _inventory() -> dict:
    inventory = copy.deepcopy(month_data.INVENTORY)
    inventory["agencies"][0]["security_officer"] = OFFICER  # so-a names one; so-b and the province do not
    inventory["assets"].append({"id": "a-av-01", "hostname": "a-av-01", "kind": "antivirus_console",
                                "agency": "so-a", "addresses": ["10.20.1.30"], "log_sources": ["syslog"]})
    return inventory


def _console_lines() -> list[RawMessage]:
    """so-a's antivirus console: a line every hour of the month (its syslog source reports)."""
    out = []
    start = datetime(2026, 10, 1, tzinfo=month_data.ZONE)
    for hour in range(31 * 24):
        moment = start + timedelta(hours=hour, minutes=7)
        line = f"<78>1 {moment.isoformat(timespec='seconds')} a-av-01 CRON {hour} - - (root) CMD (av-update)"
        out.append(RawMessage(data=line.encode(), transport="tcp", peer="10.20.1.30", peer_port=514,
                              received=moment))
    return out


def _acknowledge(store) -> dict[str, list[dict]]:
    """so-a: every alert acknowledged an hour after it was first seen, but its first high or critical one after
    five; so-b: its high and critical alerts after thirty hours, the others never."""
    alerts = sorted(store.list_alerts(AlertQuery(limit=1000)), key=lambda a: (a["first_seen"], a["id"]))
    per: dict[str, list[dict]] = {"so-a": [], "so-b": []}
    late_done = False
    for alert in alerts:
        agency = alert["organization"]["id"]
        per[agency].append(alert)
        first = ecs.parse_time(alert["first_seen"])
        serious = alert["severity"] in ("high", "critical")
        if agency == "so-a":
            delay = 5 if serious and not late_done else 1
            late_done = late_done or serious
        elif serious:
            delay = 30
        else:
            continue
        alert["acknowledged_at"] = ecs.utc_iso(first + timedelta(hours=delay))
        alert["status"] = "acknowledged"
    store.upsert_alerts(alerts)
    return per


@pytest.fixture(scope="module")
def month(tmp_path_factory):
    folder = tmp_path_factory.mktemp("four-layers")
    path = folder / "inventory.yaml"
    path.write_text(yaml.safe_dump(_inventory(), allow_unicode=True), encoding="utf-8")
    runner = SuiteThread(Suite(make_settings(folder, SOC__INVENTORY__PATH=str(path)))).start()
    suite = runner.suite
    month_data.play(suite, month_data.generate())
    suite.process(_console_lines())
    alerts = _acknowledge(suite.store)
    month_data.other_components(suite.store)  # indicators: two from the national centre in October
    suite.store.put_documents("findings", FINDINGS)
    suite.store.put_documents("assessment_runs", RUNS)
    suite.store.put_documents("posture_pushes", PUSHES)
    suite.store.put_documents("sightings", [SIGHTING])
    suite.store.refresh()
    keys = {"national_centre": create_key(suite.store, "national_centre")[0],
            "so-a": create_key(suite.store, "agency", agency="so-a")[0],
            "so-b": create_key(suite.store, "agency", agency="so-b")[0]}
    client = httpx.Client(base_url=f"http://127.0.0.1:{suite.bound['api']}", timeout=60)
    yield suite, alerts, client, keys
    client.close()
    runner.stop()



# What the formula gives for this month (docs/four-layers.md works it through):
H = 3600
EXPECTED_STATES = {
    "so-a": {"on_site": "ok", "monitoring": "missing", "assessment": "partial", "national": "ok"},
    "so-b": {"on_site": "missing", "monitoring": "missing", "assessment": "missing", "national": "partial"},
    "province": {"on_site": "missing", "monitoring": "missing", "assessment": "missing", "national": "partial"},
}
EXPECTED_KPI = {"so-a": 62.5, "so-b": 12.5, "province": 12.5}  # (1 + 0 + 0.5 + 1) / 4, (0.5) / 4, (0.5) / 4


def _expected_reasons(alerts: dict[str, list[dict]]) -> dict[str, dict[str, list[dict]]]:
    n_a, n_b = len(alerts["so-a"]), len(alerts["so-b"])
    national = {"code": "indicators_received", "ok": True, "received": 2, "sightings_shared": 0}
    posture = {"code": "posture_accepted", "ok": True, "accepted": 1, "last": "2026-10-15T00:00:05.000Z"}
    return {
        "so-a": {
            "on_site": [{"code": "security_officer_named", "ok": True, "name": OFFICER["name"]},
                        {"code": "ack_median_within", "ok": True, "alerts": n_a, "acknowledged": n_a,
                         "median_seconds": 1.0 * H, "target_seconds": 24 * H}],
            "monitoring": [{"code": "sources_silent", "ok": False, "expected": 7, "reporting": 6,
                            "silent_assets": ["a-fw-01"]},
                           {"code": "alerts_late", "ok": False, "due": n_a, "in_time": n_a - 1, "acknowledged": n_a,
                            "share_percent": round(100 * (n_a - 1) / n_a, 1), "target_percent": 90.0,
                            "target_seconds": 4 * H, "exact": True}],
            "assessment": [{"code": "assessment_recent", "ok": True, "last": "2026-10-28T02:00:00.000Z",
                            "days_before_end": 3.6, "interval_days": 90},
                           {"code": "findings_past_due", "ok": False, "open": 1, "past_due": 1}],
            "national": [national, posture, {"code": "antivirus_reporting", "ok": True, "consoles": ["a-av-01"],
                                             "central": False}],
        },
        "so-b": {
            "on_site": [{"code": "security_officer_missing", "ok": False},
                        {"code": "ack_median_over", "ok": False, "alerts": n_b, "acknowledged": n_b,
                         "median_seconds": 30.0 * H, "target_seconds": 24 * H}],
            "monitoring": [{"code": "sources_silent", "ok": False, "expected": 4, "reporting": 2,
                            "silent_assets": ["b-db-01"]},
                           {"code": "alerts_late", "ok": False, "due": n_b, "in_time": 0, "acknowledged": n_b,
                            "share_percent": 0.0, "target_percent": 90.0, "target_seconds": 4 * H, "exact": True}],
            "assessment": [{"code": "assessment_old", "ok": False, "last": "2026-06-01T00:00:00.000Z",
                            "days_before_end": 152.7, "interval_days": 90},
                           {"code": "findings_past_due", "ok": False, "open": 1, "past_due": 1}],
            "national": [dict(national, sightings_shared=1), posture, {"code": "antivirus_none", "ok": False}],
        },
        "province": {
            "on_site": [{"code": "security_officer_missing", "ok": False}, {"code": "ack_none", "ok": None,
                                                                         "alerts": 0}],
            "monitoring": [{"code": "sources_none_expected", "ok": False, "expected": 0, "reporting": 0},
                           {"code": "alerts_none_due", "ok": None, "due": 0}],
            "assessment": [{"code": "assessment_never", "ok": False, "interval_days": 90},
                           {"code": "findings_not_assessed", "ok": None}],
            "national": [national, posture, {"code": "antivirus_none", "ok": False}],
        },
    }


def _check(found: dict, alerts: dict, agencies=("so-a", "so-b", "province")) -> None:
    reasons = _expected_reasons(alerts)
    for agency in agencies:
        entry = found[agency]
        assert {n: layer["state"] for n, layer in entry["layers"].items()} == EXPECTED_STATES[agency], agency
        for name, layer in entry["layers"].items():
            assert layer["reasons"] == reasons[agency][name], (agency, name)
        assert entry["kpi"]["percent"] == EXPECTED_KPI[agency]
        assert entry["kpi"]["meets_target"] == (EXPECTED_KPI[agency] >= 30)
        assert entry["kpi"]["id"] == "L3.N2.PN1.01" and entry["kpi"]["target_percent"] == 30.0


PROVINCE_KPI = {"id": "L3.N2.PN1.01", "percent": 29.2, "target_percent": 30.0, "meets_target": False, "agencies": 3,
                "agencies_meeting_target": 1, "agencies_all_layers_ok": 0}  # (62.5 + 12.5 + 12.5) / 3


def test_the_month_data_is_what_the_expectations_assume(month):
    _, alerts, _, _ = month
    for agency, delay_hours in (("so-a", [5] + [1] * 5), ("so-b", [30] * 6)):
        found = alerts[agency]
        assert [a["severity"] in ("high", "critical") for a in found] == [True] * 6
        assert [(ecs.parse_time(a["acknowledged_at"]) - ecs.parse_time(a["first_seen"])).total_seconds() / H
                for a in found] == delay_hours


def test_each_layer_state_reasons_and_kpi_in_the_report_data(month):
    suite, alerts, _, _ = month
    period = parse_period("2026-10", suite.settings.tz)
    data = gather(suite.store, suite.inventory, suite.ruleset, None, period)
    assert data.layers["period"] == {"start": "2026-09-30T17:00:00.000Z", "end": "2026-10-31T17:00:00.000Z"}
    _check(data.layers["agencies"], alerts)
    assert data.layers["province"] == PROVINCE_KPI
    one = gather(suite.store, suite.inventory, suite.ruleset, "so-a", period)
    assert list(one.layers["agencies"]) == ["so-a"] and "province" not in one.layers
    _check(one.layers["agencies"], alerts, ("so-a",))


def test_posture_shows_the_month_with_tenancy(month):
    _, alerts, client, keys = month
    doc = client.get("/api/v1/posture", params={"month": "2026-10"},
                     headers={"X-API-Key": keys["national_centre"]}).json()
    assert doc["layers_period"]["month"] == "2026-10" and doc["layers_period"]["complete"] is True
    by_id = {a["id"]: a for a in doc["agencies"]}
    _check(by_id, alerts)
    assert doc["province"]["kpi"] == PROVINCE_KPI
    assert "log_sources" in by_id["so-a"] and "open_alerts" in by_id["so-a"]  # the existing fields stay
    own = client.get("/api/v1/posture", params={"month": "2026-10"}, headers={"X-API-Key": keys["so-b"]}).json()
    assert [a["id"] for a in own["agencies"]] == ["so-b"] and "province" not in own
    _check({"so-b": own["agencies"][0]}, alerts, ("so-b",))
    assert client.get("/api/v1/posture", params={"month": "2026-10", "agency": "so-a"},
                      headers={"X-API-Key": keys["so-b"]}).status_code == 403
    for bad in ("2026-13", "October", "2099-01"):
        assert client.get("/api/v1/posture", params={"month": bad},
                          headers={"X-API-Key": keys["national_centre"]}).status_code == 422
    current = client.get("/api/v1/posture", headers={"X-API-Key": keys["so-a"]}).json()
    assert current["layers_period"]["complete"] is False  # the current month so far
    assert set(current["agencies"][0]["layers"]) == {"on_site", "monitoring", "assessment", "national"}


def test_the_report_shows_the_section_in_vietnamese_and_english(month, tmp_path):
    suite, _, _, _ = month
    built = build_report(suite.store, suite.inventory, suite.ruleset, scope=None,
                         period=parse_period("2026-10", suite.settings.tz), langs=("vi", "en"), formats=("html",),
                         out_dir=tmp_path, zone=suite.settings.tz)
    html = {b.record["lang"]: b.files["html"].read_text(encoding="utf-8") for b in built}
    vi, en = html["vi"], html["en"]
    assert "12. Bốn lớp bảo vệ và chỉ tiêu L3.N2.PN1.01" in vi
    assert "Toàn tỉnh, 2026-10: 29,2 % (mục tiêu tối thiểu 30 %): chưa đạt mục tiêu. 1/3 đơn vị đạt mục tiêu" in vi
    assert "Đã phân công người phụ trách an toàn thông tin: Phạm Thu Trang." in vi
    assert "Chỉ 5/6 cảnh báo mức cao hoặc nghiêm trọng được tiếp nhận trong 4,0 giờ (83,3 %" in vi
    assert "12. The four layers of protection and the KPI L3.N2.PN1.01" in en
    assert "Province, 2026-10: 29.2 % (target at least 30 %): target not met. 1 of 3 agencies reach the target" in en
    assert "No security officer named in the inventory." in en
    assert "1 open findings past their due date (1 open)." in en
    assert "Antivirus console reporting: a-av-01." in en
    assert "62.5 %" in en and "62,5 %" in vi
    for text in (vi, en):
        assert text.count("L3.N2.PN1.01") >= 2


def test_security_officer_is_validated_and_kept_by_the_inventory_editor(month):
    suite, _, _, _ = month
    for bad in ({"name": "Nguyễn Văn A"}, {"name": "A\nB", "phone": "+84 200 000 0000"},
                {"name": "<script>", "email": "a@b.example"}, {"name": "A", "email": "not an address"},
                {"name": "A", "phone": "12"}, {"name": "x" * 121, "phone": "+84 200 000 0000"}):
        with pytest.raises(ValidationError):
            SecurityOfficer.model_validate(bad)

    def retitle(doc: dict) -> None:
        next(a for a in doc["assets"] if a["id"] == "a-app-01")["role"] = "application"

    edit_inventory(suite, retitle)
    assert suite.inventory.agencies["so-a"].security_officer.name == OFFICER["name"]
    assert suite.inventory.assets["a-app-01"].role == "application"

    def bad_officer(doc: dict) -> None:
        next(a for a in doc["agencies"] if a["id"] == "so-b")["security_officer"] = {"name": "B\x00"}

    with pytest.raises(InventoryEditError):
        edit_inventory(suite, bad_officer)
    assert suite.inventory.agencies["so-b"].security_officer is None


def test_the_console_posture_view_shows_the_layers_in_both_languages(month):
    from soc_api.console.posture_pages import posture_view

    suite, _, client, keys = month
    doc = client.get("/api/v1/posture", params={"month": "2026-10"},
                     headers={"X-API-Key": keys["national_centre"]}).json()
    vi = posture_view(doc, suite.inventory, "vi")["layers"]
    en = posture_view(doc, suite.inventory, "en")["layers"]
    assert vi["month"] == "2026-10" and vi["complete"] is True
    assert vi["province_text"] == "29,2 %" and en["province_text"] == "29.2 %"
    so_a = next(a for a in en["agencies"] if a["name"].startswith("Department of Information"))
    assert [layer["state"] for layer in so_a["layers"]] == ["ok", "missing", "partial", "ok"]
    assert so_a["kpi_text"] == "62.5 %"
    assert "Security officer named: Phạm Thu Trang." in so_a["layers"][0]["reasons"]
    assert "Last assessment 2026-10-28 02:00 UTC, 3.6 days before the end of the period (required every 90 days)." \
        in so_a["layers"][2]["reasons"]
    so_b = next(a for a in vi["agencies"] if a["name"].startswith("Sở Y tế"))
    assert [layer["state_text"] for layer in so_b["layers"]] == ["chưa có", "chưa có", "chưa có", "đạt một phần"]
