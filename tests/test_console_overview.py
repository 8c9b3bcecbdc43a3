"""The console's province overview and posture pages over real HTTP (a running suite, users signed in through the real
form), on SQLite and on a real OpenSearch node: who may open them; the overview's figures for a seeded store (open
alerts by severity, times to acknowledge and resolve, alerts per day by severity and events per day in the charts'
SVG, log sources as the posture API decides them), exact past what the old bounded reads estimated (a day of more
events than they ever read); an agency's figures its own; the posture page showing the API's document, and an agency
user never seeing another agency's posture, whatever the URL says."""

from __future__ import annotations

import html
import re
import uuid
from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from soc import ecs
from soc_api.console import overview
from soc_api.console.charts import format_number, nice_ceiling, stacked_bars, Series
from soc_api.data import Data
from soc_api.keys import Principal
from soc_api.posture import SOURCE_STATUS, build_posture
from tests.api_fixtures import AGENCY_A, AGENCY_B, alert_doc, call, event_doc, keys_for, running_suite
from tests.conftest import _drop_indices, need_opensearch
from tests.console_fixtures import ConsoleClient, add_user, console_api

UTC = ZoneInfo("UTC")
NOW = datetime.now(timezone.utc)
B_NAMES = ("Department of Health", "Sở Y tế", "so-yt-app-01")  # agency B's names and asset: never on A's pages

# (id, agency, days ago, severity, status, seconds to acknowledge, seconds to close)
ALERTS = [
    ("a0", AGENCY_A, 0, "high", "new", None, None),
    ("a1", AGENCY_A, 0, "critical", "acknowledged", 60, None),
    ("a2", AGENCY_A, 1, "medium", "in_progress", 120, None),
    ("a3", AGENCY_A, 2, "low", "closed", 600, 3600),
    ("a4", AGENCY_A, 3, "high", "closed", 1200, 7200),
    ("a5", AGENCY_A, 6, "informational", "suppressed", None, None),
    ("a6", AGENCY_A, 9, "high", "new", None, None),  # before the period: open, but in no day of it
    ("b0", AGENCY_B, 0, "medium", "new", None, None),
    ("b1", AGENCY_B, 4, "critical", "closed", 300, 900),
    ("b2", AGENCY_B, 5, "low", "new", None, None),
    ("r0", "retired-agency", 9, "low", "new", None, None),  # of an agency no longer in the inventory
]
# events per day (days ago: (agency, how many)); five days ago more than the old overview read in all (12,000 events
# for the whole period, about 430 per quarter of a day): it estimated that day, the store's count is exact.
EVENTS = {0: (AGENCY_A, 3), 1: (AGENCY_B, 5), 2: (AGENCY_A, 60), 3: (AGENCY_A, 2), 5: (AGENCY_B, 12_345)}
BUSY = 5


def moment(days_ago: int) -> datetime:
    """Noon of a past day (UTC); for today, half-way between midnight and now (never in the future)."""
    day = (NOW - timedelta(days=days_ago)).date()
    start = datetime.combine(day, time.min, timezone.utc)
    return start + (timedelta(hours=12) if days_ago else (NOW - start) / 2)


def iso(value: datetime) -> str:
    return ecs.utc_iso(value)


def _alerts() -> list[dict]:
    out = []
    for i, (name, agency, ago, severity, status, ack, close) in enumerate(ALERTS):
        doc = alert_doc(i, agency, severity=severity, status=status)
        doc["id"] = f"{agency}-{name}"
        raised = moment(ago)
        doc["first_seen"] = doc["last_seen"] = doc["created"] = iso(raised)
        if ack is not None:
            doc["acknowledged_at"] = iso(raised + timedelta(seconds=ack))
        if close is not None:
            doc["closed_at"] = iso(raised + timedelta(seconds=close))
        out.append(doc)
    return out


def _events() -> list[dict]:
    out = []
    for ago, (agency, count) in EVENTS.items():
        for i in range(count):
            doc = event_doc(i, agency)
            doc["event"]["id"] = f"{agency}-d{ago}-e{i}"
            doc["source"]["ip"] = f"198.51.{100 + i // 256 % 100}.{i % 256}"
            # an afternoon: one event every 6 minutes from noon (today: from half-way to now, a second apart; the
            # busy day: one every 2 seconds, until about 19:00)
            step = timedelta(seconds=1) if not ago else timedelta(seconds=2) if ago == BUSY else timedelta(minutes=6)
            doc["@timestamp"] = iso(moment(ago) + step * i)
            out.append(doc)
    return out


@pytest.fixture(scope="module", params=["sqlite", "opensearch"])
def console(request, tmp_path_factory):
    """A running suite on each store in turn (OpenSearch: a fresh index prefix on the real node, dropped after)."""
    url = prefix = None
    if request.param == "opensearch":
        url, prefix = need_opensearch(), f"soctest-{uuid.uuid4().hex[:10]}"
    try:
        yield from _console(tmp_path_factory, url, prefix)
    finally:
        if prefix:
            _drop_indices(url, prefix)


def _console(tmp_path_factory, url, prefix):
    with running_suite(tmp_path_factory.mktemp("console-overview"), store_url=url, index_prefix=prefix,
                       api=console_api()) as suite:
        store = suite.store
        store.write_events(_events())
        store.upsert_alerts(_alerts())
        # agency A's web server reported a minute ago (what the source tracker writes)
        store.put_documents(SOURCE_STATUS, [{"id": "so-tttt-web-01", "organization": {"id": AGENCY_A},
                                             "last_seen": iso(NOW - timedelta(minutes=1)), "datasets": {}}])
        store.refresh()
        users = {"ana": ("analyst", None), "nc": ("national_centre", None), "boss": ("admin", None),
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


@pytest.fixture(autouse=True)
def fresh(monkeypatch):
    monkeypatch.setattr(overview, "CACHE_SECONDS", 0.0)  # every request computes (each backend's suite its own)
    overview.forget_cached()


def _data(suite, role: str = "analyst", agency: str | None = None) -> Data:
    return Data(None, Principal(key_id="t", role=role, agency=agency, name="t", user="t"), suite)


def _row(page: str, agency: str) -> str:
    found = re.search(rf'<tr data-agency="{re.escape(agency)}">(.*?)</tr>', page, re.S)
    assert found, agency
    return found.group(1)


def _open(row: str) -> dict[str, int]:
    cells = re.findall(r'data-severity="(\w+)">(?:<span[^>]*>)?(\d+)<', row)
    return {severity: int(n) for severity, n in cells}


def _bars(page: str) -> dict[str, dict[str, float]]:
    """The stacked bars' numbers: {day: {severity: value}}, read from the SVG."""
    out = {}
    for day, body in re.findall(r'<g class="chart-bar" data-category="([^"]+)"[^>]*>(.*?)</g>', page, re.S):
        out[day] = {s: float(v) for s, v in re.findall(r'data-series="(\w+)" data-value="([\d.]+)"', body)}
    return out


def _points(page: str, series: str) -> dict[str, tuple[float, bool]]:
    found = re.findall(rf'<circle [^>]*data-category="([^"]+)" data-series="{series}" data-value="([\d.]+)" '
                       r'data-estimated="(\w+)"', page)
    return {day: (float(v), e == "true") for day, v, e in found}


def _day(ago: int) -> str:
    return (NOW - timedelta(days=ago)).date().isoformat()


# --- who may open what ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path, allowed", [
    ("/console/overview", {"ana", "nc", "boss"}),
    ("/console/posture", {"ana", "nc", "boss", "tttt", "yte"}),
])
def test_pages_open_for_their_roles_only(console, path, allowed):
    _, clients, _ = console
    for name, client in clients.items():
        answer = client.get(path)
        if name in allowed:
            assert answer.status_code == 200, (name, answer.text[:300])
            assert "default-src 'self'" in answer.headers["content-security-policy"]
            assert "<script>" not in answer.text and "<style" not in answer.text  # nothing inline
        else:
            assert answer.status_code == 403, name
            assert "data-agency" not in answer.text and "chart-bar" not in answer.text
    anonymous = ConsoleClient(console[0])
    try:
        answer = anonymous.get(path)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/console/signin?next=")
    finally:
        anonymous.close()


# --- the overview ---------------------------------------------------------------------------------------------------
def test_overview_counts_open_alerts_response_times_and_raised_alerts(console):
    _, clients, _ = console
    page = clients["ana"].get("/console/overview").text
    a, b = _row(page, AGENCY_A), _row(page, AGENCY_B)
    # open: new, acknowledged, in progress (however old: a6 too); never suppressed or closed
    assert _open(a) == {"critical": 1, "high": 2, "medium": 1, "low": 0, "informational": 0}
    assert _open(b) == {"critical": 0, "high": 0, "medium": 1, "low": 1, "informational": 0}
    # times of the alerts raised in the period: A acknowledged after 60, 120, 600, 1200 s; closed after 1 h and 2 h
    cells = [html.unescape(c) for c in re.findall(r'<td class="num(?: time)?">([^<]*)</td>', a)]
    assert cells[-5:] == ["6", "8 min 15 s", "6 min", "1 h 30 min", "1 h 30 min"]  # raised, tta mean/median, ttr
    cells = [html.unescape(c) for c in re.findall(r'<td class="num(?: time)?">([^<]*)</td>', b)]
    assert cells[-5:] == ["3", "5 min", "5 min", "15 min", "15 min"]
    # the province: every agency's together
    assert "7 min 36 s" in page and "median 5 min" in page  # acknowledge: 456 s mean, 300 s median
    assert "1 h 5 min" in page and "median 1 h" in page  # resolve: 3900 s mean, 3600 s median
    # agencies with nothing are listed too: every agency of the inventory, and the alerts of none of them
    assert len(re.findall(r'<tr data-agency="', page)) == len(console[0].inventory.agencies) + 1
    gone = _row(page, "-")
    assert "Not in the inventory" in gone and _open(gone)["low"] == 1
    # a link to each agency's posture, and to its open alerts
    assert f'href="/console/posture?agency={AGENCY_A}"' in page and f'href="/console/alerts?agency={AGENCY_A}"' in page
    # the cards: the province's open alerts (suppressed and closed ones not) and the alerts raised in the period
    assert re.search(r'<span class="ov-card-value">7</span>', page)  # a0 a1 a2 a6 b0 b2 r0
    assert re.search(r'<span class="ov-card-value">9</span>', page)  # every alert raised in the last 7 days


def test_overview_charts_draw_the_seeded_numbers(console):
    _, clients, _ = console
    page = clients["ana"].get("/console/overview").text
    bars = _bars(page)
    assert list(bars) == [_day(ago) for ago in range(6, -1, -1)]  # seven days, oldest first
    want = {ago: {} for ago in range(7)}
    for _, _, ago, severity, _, _, _ in ALERTS:
        if ago < 7:
            want[ago][severity] = want[ago].get(severity, 0) + 1
    for ago, counts in want.items():
        drawn = {s: v for s, v in bars[_day(ago)].items() if v}
        assert drawn == counts, ago
    events = _points(page, "events")
    assert events == {_day(ago): (float(EVENTS.get(ago, (None, 0))[1]), False) for ago in range(7)}
    alerts = _points(page, "alerts")
    assert alerts == {_day(ago): (float(sum(want[ago].values())), False) for ago in range(7)}
    # accessible: named and described, with the numbers as a table under a <details>
    svg = re.search(r'<svg class="chart-svg" id="chart-severity".*?</svg>', page, re.S).group(0)
    assert 'role="img"' in svg and 'aria-labelledby="chart-severity-title chart-severity-desc"' in svg
    desc = html.unescape(re.search(r'<desc id="chart-severity-desc">(.*?)</desc>', svg).group(1))
    assert "9 alerts in all" in desc and f"the busiest day was {_day(0)} with 3" in desc
    trend = html.unescape(re.search(r'<desc id="chart-trend-desc">(.*?)</desc>', page).group(1))
    total = sum(count for ago, (_, count) in EVENTS.items() if ago < 7)
    assert f"events ({total:,} in all, the most on {_day(BUSY)})" in trend
    table = re.search(r'<details class="chart-data">.*?</details>', page, re.S).group(0)
    assert f'<th scope="row">{_day(0)}</th>' in table and "<caption>" in table
    # 30 days: the same alerts, thirty bars
    month = clients["ana"].get("/console/overview?days=30").text
    assert len(_bars(month)) == 30 and 'aria-current="true">Last 30 days' in month
    for odd in ("days=999", "days=abc", "days=-7", "sort=%3Cscript%3E", "days=30&days=7&sort="):  # else: 7 days
        answer = clients["ana"].get(f"/console/overview?{odd}")
        assert answer.status_code == 200 and len(_bars(answer.text)) in (7, 30), odd


def test_overview_log_sources_are_the_posture_apis(console):
    suite, clients, keys = console
    page = clients["nc"].get("/console/overview").text
    api = call(clients["nc"].http, "GET", "/api/v1/posture", keys["national_centre"]).json()
    for agency in api["agencies"]:
        row = _row(page, agency["id"])
        expected = agency["log_sources"]["expected"]
        if expected:
            cell = re.search(r'data-reporting="(\d+)" data-expected="(\d+)"', row)
            assert (int(cell.group(1)), int(cell.group(2))) == (agency["log_sources"]["reporting"], expected)
    a = next(x for x in api["agencies"] if x["id"] == AGENCY_A)
    assert a["log_sources"]["reporting"] == a["log_sources"]["expected"] >= 1
    # and the function itself, agency by agency, silent assets included
    data = _data(suite)
    mine = overview.log_sources(data, suite.inventory.agencies, datetime.now(timezone.utc))
    theirs = build_posture(data)
    for agency in theirs["agencies"]:
        ours = mine[agency["id"]]
        assert (ours["expected"], ours["reporting"]) == (agency["log_sources"]["expected"],
                                                         agency["log_sources"]["reporting"])
        assert [s["asset"] for s in ours["silent"]] == [s["asset"] for s in agency["log_sources"]["silent"]]


def test_overview_figures_are_exact_past_the_old_bounds(console):
    """The old overview read at most 12,000 events (and 20,000 alerts) and estimated the rest, saying so with notes,
    stars and "≈"; the store's counts are exact, so the page has nothing to qualify."""
    suite, clients, _ = console
    page = clients["ana"].get("/console/overview").text
    assert _points(page, "events")[_day(BUSY)] == (float(EVENTS[BUSY][1]), False)
    assert "≈" not in page and 'data-estimated="true"' not in page
    assert not re.search(r"\*</text>", page)  # no bar marked as a day counted in part
    assert "ov-notes" not in page and "lower bound" not in page
    assert not re.search(r'<span class="ov-card-value">\d+\+</span>', page)
    # the figures themselves: each day's events as the store holds them, whichever zone the days are in
    now = datetime.now(timezone.utc)
    for zone in (UTC, ZoneInfo("Asia/Ho_Chi_Minh"), ZoneInfo("America/St_Johns")):  # +7, and -3:30 or -2:30
        figures = overview.build_overview(_data(suite), 7, zone, now)
        moments = [ecs.parse_time(e["@timestamp"]) for e in _events()]
        for day in figures["per_day"]:
            first = datetime.fromisoformat(day["day"]).date()
            want = sum(1 for m in moments if m <= now and m.astimezone(zone).date() == first)
            assert day["events"] == want, (zone, day["day"])


def test_an_agencys_figures_are_its_own(console):
    """Data.aggregate pins a tenant's questions to its agency: built for agency A, the overview holds A's row, A's
    open alerts, A's alerts per day and A's events only."""
    suite, _, _ = console
    figures = overview.build_overview(_data(suite, "agency", AGENCY_A), 7, UTC)
    assert [row["id"] for row in figures["agencies"]] == [AGENCY_A] and figures["scope"] == AGENCY_A
    (row,) = figures["agencies"]
    assert row["open"] == {"critical": 1, "high": 2, "medium": 1, "low": 0, "informational": 0}
    assert row["raised"] == figures["province"]["raised"] == 6  # a0 to a5: raised in the period
    mine = [a for a in ALERTS if a[1] == AGENCY_A and a[2] < 7]
    assert [d["alerts"] for d in figures["per_day"]] == [sum(1 for a in mine if a[2] == ago)
                                                         for ago in range(6, -1, -1)]
    assert [d["events"] for d in figures["per_day"]] == [
        EVENTS[ago][1] if ago in EVENTS and EVENTS[ago][0] == AGENCY_A else 0 for ago in range(6, -1, -1)]
    # B's figures, for B
    other = overview.build_overview(_data(suite, "agency", AGENCY_B), 7, UTC)
    assert [d["events"] for d in other["per_day"]][6 - BUSY] == EVENTS[BUSY][1]
    assert other["province"]["open_total"] == 2


def test_posture_counts_the_seeded_alerts_exactly(console):
    """The posture document's alert figures (open by severity, the window's alerts, mean times to acknowledge and
    resolve, techniques seen) against counting the seeded alerts in Python; the window (30 days) holds them all."""
    suite, _, _ = console
    document = build_posture(_data(suite))
    by_id = {a["id"]: a for a in document["agencies"]}
    for agency in (AGENCY_A, AGENCY_B):
        mine = [a for a in ALERTS if a[1] == agency]
        opened = {s: sum(1 for a in mine if a[3] == s and a[4] in ("new", "acknowledged", "in_progress"))
                  for s in ("informational", "low", "medium", "high", "critical")}
        assert by_id[agency]["open_alerts"] == opened
        assert by_id[agency]["alerts_in_window"] == len(mine)
        acks = [a[5] for a in mine if a[5] is not None]
        closes = [a[6] for a in mine if a[6] is not None]
        assert by_id[agency]["mean_time_to_acknowledge_seconds"] == pytest.approx(sum(acks) / len(acks), abs=0.05)
        assert by_id[agency]["mean_time_to_resolve_seconds"] == pytest.approx(sum(closes) / len(closes), abs=0.05)
        assert by_id[agency]["attack"]["seen"] == ["T1110"]
    province = document["province"]
    known = [a for a in ALERTS if a[1] in (AGENCY_A, AGENCY_B)]  # the retired agency's alert is no agency's here
    acks = [a[5] for a in known if a[5] is not None]
    assert province["mean_time_to_acknowledge_seconds"] == pytest.approx(sum(acks) / len(acks), abs=0.05)
    assert province["alerts_in_window"] == len(known)
    assert sum(province["open_alerts"].values()) == 6


def test_overview_days_follow_the_users_time_zone(console):
    _, clients, _ = console
    client = clients["boss"]
    client.http.cookies.set("soc_tz", "Asia/Ho_Chi_Minh")
    try:
        page = client.get("/console/overview").text
    finally:
        client.http.cookies.set("soc_tz", "UTC")
    today = datetime.now(ZoneInfo("Asia/Ho_Chi_Minh")).date()
    assert list(_bars(page))[-1] == today.isoformat()
    assert "Asia/Ho_Chi_Minh" in page


def test_overview_in_vietnamese(console):
    _, clients, _ = console
    client = clients["ana"]
    client.http.cookies.set("soc_lang", "vi")
    try:
        page = client.get("/console/overview?sort=attention").text
    finally:
        client.http.cookies.set("soc_lang", "en")
    assert '<html lang="vi">' in page and "Tổng quan toàn tỉnh" in page and "Cảnh báo phát sinh mỗi ngày" in page
    assert "8 phút 15 giây" in page
    day = (NOW - timedelta(days=0)).date()
    assert f'data-category="{day:%d/%m/%Y}"' in page
    # needing attention first: agencies with silent sources lead
    first = re.search(r'<tr data-agency="([^"]+)">', page).group(1)
    assert first != AGENCY_A  # A reports; agencies with silent assets come first


# --- the posture page -----------------------------------------------------------------------------------------------
def test_posture_page_shows_the_apis_document(console):
    _, clients, keys = console
    page = clients["ana"].get("/console/posture").text
    api = call(clients["ana"].http, "GET", "/api/v1/posture", keys["analyst"]).json()
    assert len(re.findall(r'<tr data-agency="', page)) == len(api["agencies"])
    for agency in api["agencies"]:
        row = _row(page, agency["id"])
        assert _open(row) == agency["open_alerts"], agency["id"]
    silent = sum(len(a["log_sources"]["silent"]) for a in api["agencies"])
    assert f"Silent assets ({silent})" in page and 'data-asset="so-yt-app-01"' in page
    assert re.search(rf'id="rules-loaded">{api["rule_health"]["sigma_loaded"]}<', page)
    # one agency of the province: its own figures
    one = clients["ana"].get("/console/posture", params={"agency": AGENCY_B}).text
    assert "Posture: Department of Health" in one and 'data-asset="so-yt-app-01"' in one
    assert re.search(r'id="open-figure">2<', one)
    unknown = clients["ana"].get("/console/posture", params={"agency": "no-such-agency"}).text
    assert "not in the inventory" in unknown


@pytest.mark.parametrize("params", [{}, {"agency": AGENCY_B}, {"agency": "province"}, {"agency": "no-such"}])
def test_agency_user_sees_its_own_posture_only_whatever_the_url(console, params):
    _, clients, keys = console
    page = clients["tttt"].get("/console/posture", params=params)
    assert page.status_code == 200
    text = page.text
    assert re.findall(r'<tr data-agency="([^"]+)">', text) == []  # no table of agencies: one agency's page
    assert "Posture: Department of Information and Communications" in text
    assert 'name="agency"' not in text  # no choice of agency to make
    for name in B_NAMES:
        assert name not in text, name
    api = call(clients["tttt"].http, "GET", "/api/v1/posture", keys[AGENCY_A]).json()
    (mine,) = api["agencies"]
    assert re.search(rf'id="open-figure">{sum(mine["open_alerts"].values())}<', text)
    assert re.search(rf'id="sources-figure">{mine["log_sources"]["reporting"]} of '
                     rf'{mine["log_sources"]["expected"]}<', text)
    # and agency B sees its own, none of A's
    other = clients["yte"].get("/console/posture", params={"agency": AGENCY_A}).text
    assert "Posture: Department of Health" in other and "so-tttt-web-01" not in other


# --- the charts themselves ------------------------------------------------------------------------------------------
def test_charts_escape_text_and_scale_round():
    assert nice_ceiling(7) == (8, 2) and nice_ceiling(0) == (4.0, 1.0) and nice_ceiling(123_456)[0] == 200_000
    assert format_number(1234567, "vi") == "1.234.567" and format_number(1234567, "en") == "1,234,567"
    chart = str(stacked_bars(chart_id="c", title="<b>T</b>", desc='D "quoted"', categories=["<x>"], ticks=["<x>"],
                             series=[Series("s", "<s>", [3], "#000000")], lang="en", category_header="Day",
                             total_label="Total", details="Table"))
    assert "<b>" not in chart and "&lt;b&gt;T&lt;/b&gt;" in chart and "&lt;x&gt;" in chart
    assert 'data-series="s" data-value="3"' in chart and "<details" in chart


def test_an_agency_user_of_an_agency_gone_from_the_inventory_is_told_so(console):
    suite, _, _ = console
    add_user(suite, "ghost", "agency", agency="gone-agency")
    client = ConsoleClient(suite)
    try:
        assert client.signin("ghost").status_code == 303
        client.http.cookies.set("soc_lang", "en")
        page = client.get("/console/posture", params={"agency": AGENCY_A})
        assert page.status_code == 200 and "not in the inventory" in page.text
        assert "data-agency" not in page.text and "Information and Communications" not in page.text
        assert "Every expected log source is reporting" not in page.text
    finally:
        client.close()
