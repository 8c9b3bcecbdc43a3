"""Posture and the province overview counted by the store's aggregations, on SQLite and on a real OpenSearch node, past
every bound the old page-by-page reads had: more open alerts than the overview read (20,000), more alerts in its
period than it sampled (20,000). Each figure is held to counting every seeded alert in Python: open alerts by agency
and severity, alerts per local day by severity (a day of 23 or 25 hours included), alerts raised per agency with
the number, mean and median of their times to acknowledge and resolve, and the posture's window figures."""

from __future__ import annotations

import random
import statistics
import uuid
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from soc import ecs
from soc.vocabulary import known_severity
from soc_api.console import overview
from soc_api.data import Data
from soc_api.keys import Principal
from soc_api.posture import build_posture
from tests.api_fixtures import AGENCY_A, AGENCY_B, running_suite
from tests.conftest import _drop_indices, need_opensearch

NOW = datetime.now(timezone.utc)
CROWD = 24_000
# Most alerts open and raised in the last week: past the old caps of 20,000 open alerts and 20,000 of the period.
STATUSES = ["new"] * 12 + ["acknowledged"] * 3 + ["in_progress"] * 2 + ["closed"] * 2 + ["suppressed"]
OPEN = ("new", "acknowledged", "in_progress")
SEVERITIES = ("informational", "low", "medium", "high", "critical", "bogus", None)  # unknown ones count as medium
GONE = ("retired-1", "retired-2")  # agencies no longer in the inventory
BERLIN = ZoneInfo("Europe/Berlin")


def iso(moment: datetime) -> str:
    return ecs.utc_iso(moment)


def _alert(i: int, rnd: random.Random, created: datetime) -> dict:
    agency = rnd.choice((AGENCY_A,) * 8 + (AGENCY_B,) * 8 + GONE + (None,))
    status = rnd.choice(STATUSES)
    severity = rnd.choice(SEVERITIES)
    doc = {"id": f"crowd-{i:05d}", "fingerprint": f"crowd-f{i:05d}", "status": status,
           "organization": {"id": agency} if agency else {},
           "rule": {"id": "r1", "name": "r1", "title": "Rule r1", "type": "rule", "tags": []},
           "first_seen": iso(created - timedelta(seconds=rnd.randrange(600))),
           "last_seen": iso(min(NOW, created + timedelta(seconds=rnd.randrange(2 * 86400)))),
           "created": iso(created), "count": 1, "evidence": [], "labels": {}, "entities": {}, "summary": "crowd",
           "threat": {"tactic": [], "technique": rnd.choice(([], ["T1110"], ["t1059.001", "T1110"]))}}
    if severity is not None:
        doc["severity"] = severity
    if status in ("acknowledged", "in_progress", "closed"):
        doc["acknowledged_at"] = iso(created + timedelta(seconds=rnd.randrange(1, 7200)))
    if status == "closed":
        doc["closed_at"] = iso(created + timedelta(seconds=rnd.randrange(7200, 90_000)))
    return doc


def _dst_day() -> datetime:
    """Berlin's last day of 23 or 25 hours more than five weeks ago (a daylight-saving change)."""
    day = (NOW - timedelta(days=36)).astimezone(BERLIN).date()
    while True:
        start = datetime.combine(day, datetime.min.time(), BERLIN)
        end = datetime.combine(day + timedelta(days=1), datetime.min.time(), BERLIN)
        if end.timestamp() - start.timestamp() != 86400:
            return start
        day -= timedelta(days=1)


def _crowd() -> list[dict]:
    rnd = random.Random(11)
    out = []
    for i in range(CROWD):
        back = rnd.randrange(7 * 86400) if i % 10 else rnd.randrange(7 * 86400, 40 * 86400)
        out.append(_alert(i, rnd, NOW - timedelta(seconds=back)))
    # A fortnight around a daylight-saving change, for the days of the Berlin overview below.
    change = _dst_day()
    for i in range(CROWD, CROWD + 600):
        out.append(_alert(i, rnd, change - timedelta(days=7) + timedelta(seconds=rnd.randrange(14 * 86400))))
    return out


ALERTS = _crowd()


@pytest.fixture(scope="module", params=["sqlite", "opensearch"])
def suite(request, tmp_path_factory):
    url = prefix = None
    if request.param == "opensearch":
        url, prefix = need_opensearch(), f"soctest-{uuid.uuid4().hex[:10]}"
    try:
        with running_suite(tmp_path_factory.mktemp("posture-figures"), store_url=url, index_prefix=prefix) as suite:
            for start in range(0, len(ALERTS), 5000):
                suite.store.upsert_alerts(ALERTS[start:start + 5000])
            suite.store.refresh()
            yield suite
    finally:
        if prefix:
            _drop_indices(url, prefix)


def _data(suite) -> Data:
    return Data(None, Principal(key_id="t", role="analyst", agency=None, name="t", user="t"), suite)


def _seconds(start: str, end: str) -> float:
    return (ecs.parse_time(end) - ecs.parse_time(start)).total_seconds()


def _agency(alert: dict):
    return (alert.get("organization") or {}).get("id")


def _check_times(got: dict, values: list[float], engine: bool) -> None:
    """n and mean exact; the median exact on SQLite, the engines' t-digest estimate within 1 % on OpenSearch."""
    assert got["n"] == len(values)
    assert got["mean"] == pytest.approx(sum(values) / len(values), abs=0.051)
    median = statistics.median(values)
    assert got["median"] == pytest.approx(median, abs=0.051 if not engine else max(0.051, median * 0.01))


def test_the_crowd_is_past_the_old_bounds():
    assert sum(1 for a in ALERTS if a["status"] in OPEN) > 20_000
    assert sum(1 for a in ALERTS if a["last_seen"] >= iso(NOW - timedelta(days=7))) > 20_000


@pytest.mark.parametrize("zone", [ZoneInfo("UTC"), ZoneInfo("Asia/Ho_Chi_Minh")])
def test_overview_figures_are_every_alert_counted(suite, zone):
    engine = suite.store.name != "sqlite"
    figures = overview.build_overview(_data(suite), 7, zone, NOW)
    rows = {row["id"]: row for row in figures["agencies"]}
    inventory = set(suite.inventory.agencies)
    strays = {a for a in (_agency(x) for x in ALERTS) if a not in inventory}
    assert strays == set(GONE) | {None}

    def row_of(alert) -> str:
        return _agency(alert) if _agency(alert) in inventory else overview.UNKNOWN

    # open alerts, however old, by agency and severity
    opened: dict[str, Counter] = defaultdict(Counter)
    for alert in ALERTS:
        if alert["status"] in OPEN:
            opened[row_of(alert)][known_severity(alert.get("severity")).value] += 1
    for agency in (AGENCY_A, AGENCY_B, overview.UNKNOWN):
        assert rows[agency]["open"] == {s: opened[agency][s] for s in overview.SEVERITY_ORDER}, agency
    assert figures["province"]["open_total"] == sum(sum(c.values()) for c in opened.values())
    # alerts per local day, by severity, by when first seen
    days = [datetime.fromisoformat(d["day"]).date() for d in figures["per_day"]]
    per_day = {d: Counter() for d in days}
    for alert in ALERTS:
        local = ecs.parse_time(alert["first_seen"]).astimezone(zone).date()
        if local in per_day:
            per_day[local][known_severity(alert.get("severity")).value] += 1
    for day in figures["per_day"]:
        want = per_day[datetime.fromisoformat(day["day"]).date()]
        assert day["severities"] == {s: want[s] for s in overview.SEVERITY_ORDER}, day["day"]
    # raised in the period (first seen since its first local midnight), with their times from when raised
    start = figures["start"]
    raised = [a for a in ALERTS if a["first_seen"] >= start]
    for agency in (AGENCY_A, AGENCY_B):
        mine = [a for a in raised if _agency(a) == agency]
        assert rows[agency]["raised"] == len(mine)
        _check_times(rows[agency]["tta"], [_seconds(a["created"], a["acknowledged_at"]) for a in mine
                                           if "acknowledged_at" in a], engine)
        _check_times(rows[agency]["ttr"], [_seconds(a["created"], a["closed_at"]) for a in mine
                                           if "closed_at" in a], engine)
    assert figures["province"]["raised"] == len(raised)
    _check_times(figures["province"]["tta"], [_seconds(a["created"], a["acknowledged_at"]) for a in raised
                                              if "acknowledged_at" in a], engine)
    # alerts of no agency and of agencies gone: one row, its counts and mean exact; no filter picks "none or
    # these" out, so its median is left out rather than guessed
    gone = [a for a in raised if _agency(a) not in inventory]
    acks = [_seconds(a["created"], a["acknowledged_at"]) for a in gone if "acknowledged_at" in a]
    unknown = rows[overview.UNKNOWN]
    assert unknown["raised"] == len(gone) and unknown["tta"]["n"] == len(acks)
    assert unknown["tta"]["mean"] == pytest.approx(sum(acks) / len(acks), abs=0.051)
    assert unknown["tta"]["median"] is None


def test_agencies_outside_the_inventory_with_an_id_are_asked_for_together(suite):
    """When every agency left over has an id, one filtered aggregation gives their median exactly."""
    engine = suite.store.name != "sqlite"
    start = iso(NOW - timedelta(days=7))
    result = overview.raised_alerts(_data(suite), start, {AGENCY_A, None})
    others = [a for a in ALERTS if a["first_seen"] >= start and _agency(a) not in (AGENCY_A, None)]
    row = result.per_agency[overview.UNKNOWN]
    assert row["raised"] == len(others)
    _check_times(row["tta"], [_seconds(a["created"], a["acknowledged_at"]) for a in others
                              if "acknowledged_at" in a], engine)
    _check_times(row["ttr"], [_seconds(a["created"], a["closed_at"]) for a in others if "closed_at" in a], engine)


def test_days_of_a_daylight_saving_change_are_counted_whole(suite):
    """A 25-hour (or 23-hour) local day fits no fixed day bucket: it is counted apart, and every day still holds
    exactly the alerts first seen on it."""
    change = _dst_day()
    now = change + timedelta(days=6, hours=12)
    figures = overview.build_overview(_data(suite), 30, BERLIN, now)
    period = overview.period_days(30, BERLIN, now)
    assert any(not regular for _, regular in overview.day_runs(period))
    counted = Counter(ecs.parse_time(a["first_seen"]).astimezone(BERLIN).date().isoformat() for a in ALERTS)
    assert change.date().isoformat() in [d["day"] for d in figures["per_day"]]
    for day in figures["per_day"]:
        assert day["alerts"] == counted.get(day["day"], 0), day["day"]
    assert sum(d["alerts"] for d in figures["per_day"]) > 500


def test_posture_figures_are_every_alert_counted(suite):
    document = build_posture(_data(suite))
    window = document["window"]["start"]
    by_id = {a["id"]: a for a in document["agencies"]}
    province_acks = []
    for agency in (AGENCY_A, AGENCY_B):
        mine = [a for a in ALERTS if _agency(a) == agency]
        opened = Counter(known_severity(a.get("severity")).value for a in mine if a["status"] in OPEN)
        assert by_id[agency]["open_alerts"] == {s: opened[s] for s in overview.SEVERITY_ORDER[::-1]}
        recent = [a for a in mine if a["last_seen"] >= window]
        assert by_id[agency]["alerts_in_window"] == len(recent)
        acks = [_seconds(a["created"], a["acknowledged_at"]) for a in recent if "acknowledged_at" in a]
        closes = [_seconds(a["created"], a["closed_at"]) for a in recent if "closed_at" in a]
        province_acks += acks
        assert by_id[agency]["mean_time_to_acknowledge_seconds"] == pytest.approx(sum(acks) / len(acks), abs=0.051)
        assert by_id[agency]["mean_time_to_resolve_seconds"] == pytest.approx(sum(closes) / len(closes), abs=0.051)
        seen = {t.upper() for a in recent for t in a["threat"]["technique"]}
        assert by_id[agency]["attack"]["seen"] == sorted(seen) == ["T1059.001", "T1110"]
    province = document["province"]
    assert province["mean_time_to_acknowledge_seconds"] == pytest.approx(
        sum(province_acks) / len(province_acks), abs=0.051)
    assert province["alerts_in_window"] == sum(by_id[a]["alerts_in_window"] for a in (AGENCY_A, AGENCY_B))
    assert sum(province["open_alerts"].values()) == sum(
        1 for a in ALERTS if _agency(a) in (AGENCY_A, AGENCY_B) and a["status"] in OPEN)
    # an agency asked for: the same figures as in the province's document
    one = build_posture(_data(suite), AGENCY_B)
    (only,) = one["agencies"]
    assert only["open_alerts"] == by_id[AGENCY_B]["open_alerts"]
    assert only["mean_time_to_acknowledge_seconds"] == by_id[AGENCY_B]["mean_time_to_acknowledge_seconds"]
