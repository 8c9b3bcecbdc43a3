"""Audit reports from a realistic month (October 2026) of two agencies' logs played through the real pipeline and
detections (tests/reports_month.py): the numbers are checked against the store and against what was sent, every
figure's evidence is checked to exist and belong to the agency, and the PDFs are turned into page images with
pdftoppm (kept under tests/artifacts/reports/) to prove they render."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from datetime import date
from pathlib import Path

import pytest

from reports import i18n
from reports.builder import build_report
from reports.periods import PeriodError, parse_period
from soc import ecs
from suite.runtime import Suite
from soc.storage.base import AlertQuery, DocumentQuery, EventQuery
from tests import reports_month as month_data
from tests.conftest import PROJECT, make_settings

ARTIFACTS = PROJECT / "tests" / "artifacts" / "reports"


@pytest.fixture(scope="module")
def month(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report-month")
    inventory = month_data.write_inventory(folder)
    settings = make_settings(folder, SOC__INVENTORY__PATH=str(inventory))
    suite = Suite(settings)
    generated = month_data.generate()
    month_data.play(suite, generated)
    month_data.handle_alerts(suite.store)
    month_data.other_components(suite.store)
    yield suite, generated, folder
    suite.close()


def _build(suite, scope, period="2026-10", langs=("vi", "en"), formats=("pdf", "html"), out=None):
    return build_report(suite.store, suite.inventory, suite.ruleset, scope=scope,
                        period=parse_period(period, suite.settings.tz), langs=langs, formats=formats,
                        out_dir=out or Path(suite.settings.data_dir) / "reports", zone=suite.settings.tz)


def _store_alerts(store, agency):
    return store.list_alerts(AlertQuery(agency=agency, limit=1000))


def test_catalogues_have_the_same_keys():
    vi, en = i18n.flat_keys(i18n.catalogue("vi")), i18n.flat_keys(i18n.catalogue("en"))
    assert vi == en, f"only in vi: {vi - en}; only in en: {en - vi}"
    assert i18n.Texts("vi")("rec.silent_source", hostname="h", source="syslog", last_seen="x").startswith("h: nguồn")


def test_periods_are_local_months_and_quarters(month):
    suite, _, _ = month
    october = parse_period("2026-10", suite.settings.tz)
    assert (october.start_iso, october.end_iso) == ("2026-09-30T17:00:00.000Z", "2026-10-31T17:00:00.000Z")
    assert len(october.buckets()) == 31
    q4 = parse_period("2026-q4", suite.settings.tz)
    assert q4.label == "2026-Q4" and q4.end_iso == "2026-12-31T17:00:00.000Z" and len(q4.buckets()) == 14
    for bad in ("2026-13", "2026-Q5", "october", "2026-1"):
        with pytest.raises(PeriodError):
            parse_period(bad, suite.settings.tz)


@pytest.mark.parametrize("agency", ["so-a", "so-b"])
def test_numbers_match_the_store_and_what_was_sent(month, agency):
    suite, sent, _ = month
    store = suite.store
    data = _build(suite, agency, formats=("html",), langs=("en",))[0].data
    assert data.events_total == store.count_events(agency) == sent.per_agency[agency]
    alerts = _store_alerts(store, agency)
    assert data.alerts_total == len(alerts) > 0
    assert data.alerts_by_severity == Counter(a["severity"] for a in alerts)
    assert data.alerts_by_rule == Counter(a["rule"]["title"] for a in alerts)
    severities = Counter(e["log"]["syslog"]["severity"]["name"]
                         for e in store.search_events(EventQuery(agency=agency, limit=100_000)))
    assert data.events_by_severity == severities
    assert sum(sum(v) for v in data.events_over_time.values()) == sum(data.events_by_source.values())
    rows = {(r.asset, r.source): r for r in data.sources}
    expected = {(a["id"], s) for a in month_data.INVENTORY["assets"] if a["agency"] == agency
                for s in a["log_sources"]}
    assert expected <= set(rows)
    for key in expected:
        assert rows[key].events == sent.sent.get(key, 0), key
    attackers = {row.address: row for row in data.top_attackers}
    for address, row in attackers.items():
        assert row.alerts == sum(1 for a in alerts if a["labels"].get("source.ip") == address)
    if agency == "so-a":
        assert rows[("a-fw-01", "cisco-asa")].status == "never"
        outage = rows[("a-app-01", "syslog")]
        assert outage.status == "gaps" and 29 <= outage.longest_gap_hours <= 31
        nginx = rows[("a-web-01", "nginx")]  # 12 lines a day at random hours: short quiet spells, nothing long
        assert nginx.status in ("ok", "gaps") and nginx.longest_gap_hours < 24
        assert data.alerts_by_severity["critical"] >= 1  # the guessed password
        assert month_data.GUESSER in attackers and not attackers[month_data.GUESSER].blocked  # its block failed
    else:
        assert rows[("b-db-01", "syslog")].status == "silent"
        assert rows[("b-db-01", "syslog")].last_seen < "2026-10-20T05:00:00.000Z"
        assert rows[("b-web-01", "syslog")].status == "ok"
        top = data.top_attackers[0]
        assert top.address == month_data.PERSISTENT and top.blocked and top.alerts == 4
        assert data.top_assets[0].asset == "b-web-01"
        assert [r.id for r in data.playbook_runs] == ["run-0001"]
        assert [i.id for i in data.indicators_shared] == ["ind-3"]
    # Received indicators are province-wide; the November one is outside the period.
    assert sorted(i.id for i in data.indicators_received) == ["ind-1", "ind-2"]
    # Analysts acknowledged after 1, 3 or 30 hours (tests/reports_month.py); the last serious alert is untouched.
    ttas = sorted({round(h.tta_hours, 3) for h in data.handled if h.tta_hours is not None})
    assert set(ttas) <= {1.0, 3.0, 30.0} and ttas


def test_recommendations_come_from_the_data(month):
    suite, _, _ = month
    so_a = _build(suite, "so-a", formats=("html",), langs=("en",))[0].data
    so_b = _build(suite, "so-b", formats=("html",), langs=("en",))[0].data
    kinds_a = {(r.kind, r.params.get("hostname"), r.params.get("source")) for r in so_a.recommendations}
    assert ("never_reported", "a-fw-01", "cisco-asa") in kinds_a
    assert ("source_gaps", "a-app-01", "syslog") in kinds_a
    kinds_b = {r.kind: r for r in so_b.recommendations}
    assert {"silent_source", "repeated_alerts", "reoffending_block"} <= set(kinds_b)
    reoffend = kinds_b["reoffending_block"]
    assert reoffend.params["address"] == month_data.PERSISTENT and reoffend.params["alerts"] == 3
    evidence = so_b.evidence[reoffend.evidence_key]
    assert evidence.other == {"playbook_runs": ["run-0001"]} and len(evidence.alerts) == 3
    assert all(a["last_seen"] > reoffend.params["expired"] for a in map(suite.store.get_alert, evidence.alerts))
    repeated = next(r for r in so_b.recommendations if r.kind == "repeated_alerts")
    assert repeated.params["hostname"] == "b-web-01" and repeated.params["count"] == 5
    # Nothing recommended about healthy sources.
    assert not any(r.params.get("hostname") == "b-web-01" and r.kind.endswith("source") for r in so_b.recommendations)


def test_every_figure_links_to_evidence_that_exists_and_belongs_to_the_agency(month):
    suite, _, _ = month
    store = suite.store
    for agency in ("so-a", "so-b"):
        built = _build(suite, agency, langs=("vi",), formats=("html",))[0]
        data = built.data
        for key, ev in data.evidence.items():
            for alert_id in ev.alerts:
                alert = store.get_alert(alert_id)
                assert alert is not None and alert["organization"]["id"] == agency, (key, alert_id)
            found = store.get_events(ev.events)
            assert len(found) == len(ev.events), key
            assert all(ecs.get(e, "organization.id") == agency for e in found), key
            if ev.query:
                assert ev.query.get("agency") == agency
        html = built.files["html"].read_text(encoding="utf-8")
        links = set(re.findall(r'href="#ev-(E\d+)"', html))
        anchors = set(re.findall(r'id="ev-(E\d+)"', html))
        assert links and links == anchors
        # Every row of the alert and source tables carries an evidence link.
        for table in re.findall(r"<table>.*?</table>", html, re.S):
            for row in re.findall(r"<tr><td.*?</tr>", table, re.S)[:50]:
                if "Đã chặn" in table or "<th>Mã</th>" in table:
                    continue
                numbers = re.findall(r'<td class="num">([\d.,]+)', row)
                if numbers and any(n not in ("0", "0,0") for n in numbers):
                    assert 'href="#ev-' in row, row


def _pages(pdf: Path, name: str) -> list[Path]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob(f"{name}-page-*.png"):
        old.unlink()
    subprocess.run(["pdftoppm", "-r", "50", "-png", str(pdf), str(ARTIFACTS / f"{name}-page")], check=True,
                   timeout=120)
    return sorted(ARTIFACTS.glob(f"{name}-page-*.png"))


@pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="poppler-utils is installed by make test")
def test_pdfs_render_in_both_languages_and_pages_are_kept(month):
    import matplotlib.image

    suite, _, _ = month
    for item in _build(suite, "so-b", formats=("pdf",)):
        pdf = item.files["pdf"]
        assert pdf.read_bytes().startswith(b"%PDF")
        pages = _pages(pdf, item.record["id"])
        assert len(pages) >= 4
        for page in pages:
            pixels = matplotlib.image.imread(str(page))
            assert pixels.std() > 0.02, f"{page} looks blank"  # a page with text and tables, not an empty sheet
        text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True,
                              check=True).stdout
        total = item.data.events_total
        if item.record["lang"] == "vi":
            # The glyphs are real text (the font has them): Vietnamese survives extraction intact.
            assert "Nguồn nhật ký: theo danh mục và thực tế gửi về" in text
            assert f"{total:,}".replace(",", ".") in text
        else:
            assert "Log sources: expected and reporting" in text and f"{total:,}" in text
        assert "b-db-01" in text and month_data.PERSISTENT in text


def test_province_rollup_adds_up_the_agencies(month):
    suite, sent, _ = month
    built = _build(suite, None, langs=("vi",))
    data = built[0].data
    assert data.rollup and data.scope == "province"
    assert data.events_total == suite.store.count_events() == sum(sent.per_agency.values())
    rows = {r.agency: r for r in data.by_agency}
    assert set(rows) == {"so-a", "so-b"}
    for agency in ("so-a", "so-b"):
        assert rows[agency].events == sent.per_agency[agency]
        assert rows[agency].alerts == len(_store_alerts(suite.store, agency))
    assert rows["so-a"].sources_expected == 6 and rows["so-b"].silent_sources == 2
    assert built[0].files["pdf"].stat().st_size > 10_000
    if shutil.which("pdftoppm"):
        assert len(_pages(built[0].files["pdf"], built[0].record["id"])) >= 4


def test_a_period_without_data_renders_no_data_sections(month):
    suite, _, folder = month
    built = _build(suite, "so-a", period="2026-08", langs=("en",), out=folder / "empty")[0]
    assert built.data.events_total == 0 and built.data.alerts_total == 0
    html = built.files["html"].read_text(encoding="utf-8")
    assert html.count("No data for this period.") >= 4
    assert "No records: this component keeps none yet" in html
    assert built.files["pdf"].read_bytes().startswith(b"%PDF")
    assert {r.kind for r in built.data.recommendations} == {"never_reported"}


def test_schedule_builds_last_month_once_and_quarters_in_their_first_month(month):
    from reports.config import ReportsConfig
    from reports.service import due_periods, run_due

    suite, _, _ = month
    zone = suite.settings.tz
    config = ReportsConfig()
    assert [p.label for p in due_periods(date(2026, 11, 1), zone, config)] == ["2026-10"]
    assert [p.label for p in due_periods(date(2027, 1, 1), zone, config)] == ["2026-12", "2026-Q4"]
    assert due_periods(date(2026, 11, 1), zone, ReportsConfig(day_of_month=2)) == []
    for earlier in suite.store.find_documents("reports", DocumentQuery(limit=1000)):  # from the tests above
        suite.store.delete_document("reports", earlier["id"])
    quick = ReportsConfig(formats=["html"])  # the PDFs are proven above; here it is about what is due and kept
    built = run_due(suite, today=date(2026, 11, 1), config=quick)
    assert sorted(built) == sorted(f"{s}_2026-10_{lang}" for s in ("so-a", "so-b", "province")
                                   for lang in ("vi", "en"))
    for rid in built:
        record = suite.store.get_document("reports", rid)
        assert {"html", "evidence"} <= set(record["files"])
        assert Path(record["files"]["html"]["path"]).is_file()
    assert run_due(suite, today=date(2026, 11, 2), config=quick) == []  # kept, not rebuilt


def test_cli_report(month, monkeypatch):
    from typer.testing import CliRunner

    from suite.cli import app

    suite, _, folder = month
    env = {"SOC__DATA_DIR": str(folder), "SOC__STORE__URL": suite.settings.store.url,
           "SOC__INVENTORY__PATH": suite.settings.inventory.path}
    out = folder / "cli"
    result = CliRunner().invoke(app, ["report", "--agency", "so-a", "--period", "2026-10", "--lang", "en",
                                      "--format", "html", "--out", str(out)], env=env)
    assert result.exit_code == 0, result.output
    assert (out / "2026-10" / "so-a_2026-10_en.html").is_file()
    assert f"{suite.store.count_events('so-a')} events" in result.output
    bad = CliRunner().invoke(app, ["report", "--agency", "nope", "--period", "2026-10"], env=env)
    assert bad.exit_code == 2 and "not in the inventory" in bad.output
    bad = CliRunner().invoke(app, ["report", "--agency", "so-a", "--period", "2026-13"], env=env)
    assert bad.exit_code == 2 and "01 to 12" in bad.output


def test_the_same_report_from_a_real_opensearch_store(tmp_path, opensearch_prefix):
    """The gathering uses only the store interface: the same month in OpenSearch gives the same numbers."""
    url, prefix = opensearch_prefix
    inventory = month_data.write_inventory(tmp_path)
    suite = Suite(make_settings(tmp_path, store_url=url, index_prefix=prefix, SOC__INVENTORY__PATH=str(inventory)))
    try:
        sent = month_data.generate()
        month_data.play(suite, sent)
        suite.store.refresh()
        month_data.handle_alerts(suite.store)
        month_data.other_components(suite.store)
        suite.store.refresh()
        built = _build(suite, "so-b", langs=("vi",), formats=("pdf",))
        data = built[0].data
        assert data.events_total == sent.per_agency["so-b"] == suite.store.count_events("so-b")
        alerts = _store_alerts(suite.store, "so-b")
        assert data.alerts_by_severity == Counter(a["severity"] for a in alerts) and alerts
        rows = {(r.asset, r.source): r for r in data.sources}
        for (asset, source), count in sent.sent.items():
            if month_data.ASSET_AGENCY[asset] == "so-b":
                assert rows[(asset, source)].events == count
        assert {"silent_source", "repeated_alerts", "reoffending_block"} <= {r.kind for r in data.recommendations}
        assert built[0].files["pdf"].read_bytes().startswith(b"%PDF")
        listed = suite.store.find_documents("reports", DocumentQuery(terms={"scope": "so-b"}, sort="generated",
                                                                     descending=True))
        assert [r["id"] for r in listed] == ["so-b_2026-10_vi"]
    finally:
        suite.close()


def _every_event(store, period, scope):
    """The period's events, read one page after another (what the report counted before the store aggregated)."""
    from soc.storage.base import EventQuery

    after = None
    while True:
        page = store.search_events(EventQuery(start=period.start_iso, end=period.end_iso, agency=scope, limit=2000,
                                              after=after))
        yield from page
        if len(page) < 2000:
            return
        after = (page[-1]["@timestamp"], page[-1]["event"]["id"])


@pytest.mark.parametrize("scope", [None, "so-a"])
def test_event_figures_are_what_counting_every_event_gives(month, scope):
    """The store's aggregations give the report the figures that reading and counting every event gives."""
    from collections import Counter, defaultdict

    from collectors.sources.log_source_table import sources_of
    from reports.gather import event_severity, gather

    suite, _, _ = month
    period = parse_period("2026-10", suite.settings.tz)
    data = gather(suite.store, suite.inventory, suite.ruleset, scope, period)
    total, by_severity, by_source, per_agency = 0, Counter(), Counter(), Counter()
    over_time = defaultdict(lambda: [0] * len(data.bucket_labels))
    spans: dict = {}
    for doc in _every_event(suite.store, period, scope):
        dataset = ecs.get(doc, "event.dataset") or ""
        if dataset.startswith("soc."):
            continue
        total += 1
        by_severity[event_severity(doc)] += 1
        per_agency[ecs.get(doc, "organization.id")] += 1
        program = ecs.get(doc, "process.name")
        names = sources_of(dataset, program if isinstance(program, str) else "") or frozenset({"other"})
        moment = ecs.parse_time(doc["@timestamp"])
        for name in names:
            by_source[name] += 1
            over_time[name][period.bucket_of(moment)] += 1
            asset = ecs.get(doc, "soc.asset.id")
            if asset and name != "other":
                span = spans.setdefault((asset, name), [0, doc["@timestamp"], doc["@timestamp"], set()])
                span[0] += 1
                span[1], span[2] = min(span[1], doc["@timestamp"]), max(span[2], doc["@timestamp"])
                span[3].add(int((moment - period.start).total_seconds() // 3600))
    assert total > 1000 and data.events_total == total
    assert dict(data.events_by_severity) == dict(by_severity)
    assert dict(data.events_by_source) == dict(by_source)
    assert data.events_over_time == dict(over_time)
    rows = {(r.asset, r.source): r for r in data.sources if r.events}
    assert set(rows) == set(spans)
    for key, (events, first, last, hours) in spans.items():
        row = rows[key]
        assert (row.events, row.first_seen, row.last_seen) == (events, first, last), key
        # The gaps are the hours without events that the hour sets give.
        assert all(h not in hours for gap in row.gaps
                   for h in range(int((ecs.parse_time(gap[0]) - period.start).total_seconds() // 3600),
                                  int((ecs.parse_time(gap[1]) - period.start).total_seconds() // 3600))), key
    if scope is None:
        assert {r.agency: r.events for r in data.by_agency if r.events} == {k: v for k, v in per_agency.items() if v}
    # Each source row's evidence names its first and last events.
    for row in rows.values():
        ids = data.ev(row.key).events
        found = {e["event"]["id"]: e["@timestamp"] for e in suite.store.get_events(ids)}
        assert row.first_seen in found.values() and row.last_seen in found.values(), row.key


def test_too_many_groups_for_the_store_reads_the_events_instead(month, monkeypatch):
    """A sender naming a new program on every line makes more groups than the store answers: the report does not
    fail, it reads the month's events one by one and its figures are the same."""
    from soc.storage import aggregate_search, aggregate_sql
    from reports.gather import gather

    suite, _, _ = month
    period = parse_period("2026-10", suite.settings.tz)
    counted = gather(suite.store, suite.inventory, suite.ruleset, "so-a", period)
    monkeypatch.setattr(aggregate_sql, "MAX_GROUPS", 5)
    monkeypatch.setattr(aggregate_search, "MAX_GROUPS", 5)
    read = gather(suite.store, suite.inventory, suite.ruleset, "so-a", period)
    assert read.events_total == counted.events_total > 1000
    assert read.events_by_severity == counted.events_by_severity
    assert read.events_by_source == counted.events_by_source
    assert read.events_over_time == counted.events_over_time
    shape = lambda rows: [(r.asset, r.source, r.events, r.first_seen, r.last_seen, r.status, r.gaps) for r in rows]
    assert shape(read.sources) == shape(counted.sources)
