"""The province overview, the posture page and the audit reports in Debian's Chromium against a real `soc serve`: a
week of alerts and events in its store, reports built by the real `soc report` command line. An analyst opens the
overview (its charts drawn on the server, their figures as a table), the posture and the reports and downloads a PDF;
an agency user opens its own posture and reports, downloads an HTML report, and gets nothing of another agency by
editing the URL. axe-core on every page; screenshots of each page in Vietnamese and English."""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, timezone

import pytest

from soc import ecs
from soc_api.posture import SOURCE_STATUS
from tests.browser.conftest import switch_language as _switch_language, check_accessibility, screenshot

AGENCIES = ("so-tttt", "so-yt", "so-gddt", "so-tc", "ubnd-h1", "vp-ubnd")
SEVERITIES = ("informational", "low", "medium", "high", "critical")


def _previous_month(today: date) -> str:
    last = today.replace(day=1) - timedelta(days=1)
    return f"{last.year:04d}-{last.month:02d}"


@pytest.fixture(scope="module")
def seeded(console_server):
    """A week of alerts (some acknowledged and closed) and events for a few agencies, written beside the running
    suite; a source that reported a minute ago; and last month's reports of two agencies, by `soc report`."""
    now = datetime.now(timezone.utc)
    agencies = [a for a in AGENCIES if a in _inventory_agencies(console_server)]
    alerts, events = [], []
    for ago in range(7):
        day = datetime.combine((now - timedelta(days=ago)).date(), time.min, timezone.utc)
        span = (now - day) if ago == 0 else timedelta(days=1)
        for n in range(4 + (ago * 5) % 9):
            agency = agencies[(n + ago) % len(agencies)]
            at = day + span * (n + 1) / 20
            doc = {"id": f"overview-{ago}-{n}", "fingerprint": f"overview-{ago}-{n}",
                   "status": ("new", "acknowledged", "in_progress", "closed")[(n + ago) % 4],
                   "severity": SEVERITIES[(n * 3 + ago) % 5], "summary": f"seeded alert {ago}-{n}",
                   "organization": {"id": agency},
                   "rule": {"id": "seeded", "name": "seeded", "title": "Seeded rule", "type": "rule", "tags": []},
                   "first_seen": ecs.utc_iso(at), "last_seen": ecs.utc_iso(at), "created": ecs.utc_iso(at),
                   "count": 1, "evidence": [], "labels": {}, "entities": {"ip": [f"192.0.2.{n + 1}"]},
                   "history": [{"at": ecs.utc_iso(at), "by": "detections", "action": "raised"}]}
            if doc["status"] != "new":
                doc["acknowledged_at"] = ecs.utc_iso(at + timedelta(minutes=3 + 7 * n))
            if doc["status"] == "closed":
                doc["closed_at"] = ecs.utc_iso(at + timedelta(hours=1 + n))
            alerts.append(doc)
        for i in range(40 + 25 * ((ago * 3) % 5)):
            agency = agencies[i % len(agencies)]
            events.append({"@timestamp": ecs.utc_iso(day + span * (i + 1) / 400),
                           "event": {"id": f"overview-e-{ago}-{i}", "original": "seeded event",
                                     "dataset": "system.auth"},
                           "organization": {"id": agency}, "host": {"name": f"{agency}-host"}})
    with console_server.store() as store:
        store.write_events(events)
        store.upsert_alerts(alerts)
        store.put_documents(SOURCE_STATUS, [{"id": "so-tttt-web-01", "organization": {"id": "so-tttt"},
                                             "last_seen": ecs.utc_iso(now - timedelta(minutes=1)), "datasets": {}}])
    period = _previous_month(now.astimezone(timezone(timedelta(hours=7))).date())
    for agency in ("so-tttt", "so-yt"):
        console_server.soc("report", "--agency", agency, "--period", period, "--lang", "vi", "--lang", "en",
                           "--format", "pdf", "--format", "html")
    return {"period": period, "alerts": alerts}


def _inventory_agencies(server) -> set[str]:
    import yaml

    document = yaml.safe_load((server.folder / "province.yaml").read_text(encoding="utf-8"))
    return {a["id"] for a in document["agencies"]} | {document["province"]["id"]}


def _h1(page) -> str:
    return page.get_by_role("heading", level=1).inner_text()


def test_an_analyst_reads_the_overview_the_posture_and_the_reports(signed_in_page, console_server, seeded,
                                                                   axe_source):
    page = signed_in_page("analyst", next_path="/console/overview")
    assert page.locator("html").get_attribute("lang") == "vi"
    assert _h1(page) == "Tổng quan toàn tỉnh"
    # The charts: drawn on the server, named for a screen reader, every day of the week a bar.
    chart = page.locator("svg#chart-severity")
    assert chart.get_attribute("role") == "img"
    assert page.locator("#chart-severity-title").text_content().startswith("Cảnh báo phát sinh mỗi ngày")
    assert chart.locator("g.chart-bar").count() == 7
    drawn = sum(float(x) for x in chart.locator("g.chart-bar").evaluate_all(
        "bars => bars.map(b => b.getAttribute('data-total'))"))
    assert drawn >= len(seeded["alerts"])  # the seeded week (and whatever the other tests raised)
    assert page.locator("svg#chart-trend circle[data-series='events']").count() == 7
    # ... and the same figures as a table, under a <details>: opened from the keyboard.
    summary = page.locator("figure.chart details summary").first
    summary.focus()
    page.keyboard.press("Enter")
    table = page.locator("#chart-severity-table")
    assert table.is_visible() and table.locator("tbody tr").count() == 7
    summary.click()  # closed again for the screenshot
    page.evaluate("document.activeElement.blur(); window.scrollTo(0, 0)")
    rows = page.locator("#agency-table tbody tr")
    assert rows.count() == len(_inventory_agencies(console_server))  # every agency of the inventory
    assert page.locator("#agency-table tr[data-agency='so-tttt'] td.ov-sources").inner_text().startswith("1 / 1")
    check_accessibility(page)
    screenshot(page, "overview-vi")
    # 30 days, and the agencies needing attention first: links, no script
    page.get_by_role("link", name="30 ngày qua").click()
    page.wait_for_url("**/console/overview?days=30")
    assert page.locator("svg#chart-severity g.chart-bar").count() == 30
    _switch_language(page, "en", "English")
    assert _h1(page) == "Province overview"
    check_accessibility(page)
    page.get_by_role("link", name="Last 7 days").click()
    page.wait_for_url("**/console/overview")
    screenshot(page, "overview-en")

    # The posture, in English then Vietnamese; one agency's own.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Posture").click()
    page.wait_for_url("**/console/posture")
    assert _h1(page) == "Posture"
    assert page.locator("#posture-agencies tbody tr").count() == len(_inventory_agencies(console_server))
    check_accessibility(page)
    screenshot(page, "posture-en")
    page.locator("#p-agency").select_option("so-tttt")
    page.get_by_role("button", name="Show").click()
    page.wait_for_url("**/console/posture?agency=so-tttt")
    assert _h1(page) == "Posture: Department of Information and Communications"
    check_accessibility(page)
    _switch_language(page, "vi", "Tiếng Việt")
    page.goto(f"{console_server.url}/console/posture")
    assert _h1(page) == "Tình trạng an toàn"
    check_accessibility(page)
    screenshot(page, "posture-vi")

    # The reports: every agency's; a PDF downloaded is the report's file.
    page.get_by_role("navigation", name="Chính").get_by_role("link", name="Báo cáo").click()
    page.wait_for_url("**/console/reports")
    assert _h1(page) == "Báo cáo kiểm tra"
    ids = page.locator("#report-list tbody tr[data-report-id]").evaluate_all(
        "rows => rows.map(r => r.getAttribute('data-report-id'))")
    period = seeded["period"]
    assert {f"so-tttt_{period}_vi", f"so-yt_{period}_en"} <= set(ids)
    check_accessibility(page)
    screenshot(page, "reports-vi")
    row = page.locator(f"#report-list tr[data-report-id='so-yt_{period}_vi']")
    with page.expect_download() as info:
        row.get_by_role("link", name=re.compile(r"^Tải về PDF")).click()
    download = info.value
    assert download.suggested_filename == f"so-yt_{period}_vi.pdf"
    assert open(download.path(), "rb").read(5) == b"%PDF-"
    _switch_language(page, "en", "English")
    assert _h1(page) == "Audit reports"
    check_accessibility(page)
    screenshot(page, "reports-en")


def test_an_agency_user_sees_its_own_posture_and_reports_only(signed_in_page, console_server, seeded, axe_source):
    period = seeded["period"]
    page = signed_in_page("agency", "so-tttt", next_path="/console/posture")
    assert _h1(page) == "Tình trạng an toàn: Sở Thông tin và Truyền thông"
    assert page.locator("#p-agency").count() == 0  # no other agency to choose
    check_accessibility(page)
    screenshot(page, "posture-agency-vi")
    # A URL edit to another agency: still its own page, nothing of the other.
    page.goto(f"{console_server.url}/console/posture?agency=so-yt")
    assert _h1(page) == "Tình trạng an toàn: Sở Thông tin và Truyền thông"
    assert "Sở Y tế" not in page.content() and "so-yt-app-01" not in page.content()
    # The overview is the province's: not an agency user's.
    answer = page.goto(f"{console_server.url}/console/overview")
    assert answer.status == 403 and "chart-bar" not in page.content()

    page.goto(f"{console_server.url}/console/reports")
    ids = page.locator("#report-list tbody tr[data-report-id]").evaluate_all(
        "rows => rows.map(r => r.getAttribute('data-report-id'))")
    assert sorted(ids) == [f"so-tttt_{period}_en", f"so-tttt_{period}_vi"]
    assert "Sở Y tế" not in page.content()
    check_accessibility(page)
    screenshot(page, "reports-agency-vi")
    with page.expect_download() as info:
        page.locator(f"#report-list tr[data-report-id='so-tttt_{period}_vi']").get_by_role(
            "link", name=re.compile(r"^Tải về HTML")).click()
    html = open(info.value.path(), encoding="utf-8").read()
    assert "Sở Thông tin và Truyền thông" in html and "<html" in html
    # Another agency's report by URL: 404, the file never sent.
    for fmt in ("pdf", "html"):
        answer = page.goto(f"{console_server.url}/console/reports/so-yt_{period}_vi/{fmt}")
        assert answer.status == 404 and "text/html" in answer.headers["content-type"]
        assert "Sở Y tế" not in page.content()
    page.goto(f"{console_server.url}/console/reports?agency=so-yt")
    assert page.locator("#report-list tbody tr[data-report-id^='so-yt']").count() == 0
    _switch_language(page, "en", "English")
    assert _h1(page) == "Audit reports"
    check_accessibility(page)
    screenshot(page, "reports-agency-en")
    page.goto(f"{console_server.url}/console/posture")
    assert _h1(page) == "Posture: Department of Information and Communications"
    check_accessibility(page)
    screenshot(page, "posture-agency-en")
