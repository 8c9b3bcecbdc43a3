"""The aggregation contract (soc/storage/aggregations.py): SQLite and a real OpenSearch node give the same answers,
and both give what reading every document and counting in Python gives (the reference below)."""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone

import pytest

from soc import ecs
from soc.storage import StoreError, open_store
from soc.storage.aggregations import AggregateQuery, Metric, percentile

START = datetime(2026, 11, 1, tzinfo=timezone.utc)
AGENCIES = ("so-a", "so-b", "so-c")
HOSTS = ("SRV-01", "srv-02", "Máy-Chủ-Ba")  # mixed case and Vietnamese: the engines index event strings lowercased


def _events(n: int = 600) -> list[dict]:
    rnd = random.Random(3)
    out = []
    for i in range(n):
        moment = START + timedelta(seconds=rnd.randrange(10 * 86400))
        doc = {
            "@timestamp": ecs.utc_iso(moment),
            "event": {"id": f"e{i:05d}", "dataset": rnd.choice(("system.auth", "sophos_xg.firewall", "nginx.access")),
                      "original": f"line {i} {'Failed password' if i % 3 == 0 else 'ok'}",
                      "category": rnd.choice((["authentication"], ["network", "intrusion_detection"], []))},
            "organization": {"id": AGENCIES[i % 3]},
            "host": {"name": HOSTS[rnd.randrange(3)]},
            "source": {"ip": f"198.51.100.{rnd.randrange(40)}", "port": 1024 + rnd.randrange(100)},
        }
        if i % 7:  # some events have no user: they fall in the None group
            doc["user"] = {"name": rnd.choice(("root", "admin", "Nguyễn"))}
        if not doc["event"]["category"]:
            del doc["event"]["category"]
        out.append(doc)
    return out


def _alerts(n: int = 120) -> list[dict]:
    rnd = random.Random(5)
    out = []
    for i in range(n):
        first = START + timedelta(seconds=rnd.randrange(10 * 86400))
        doc = {"id": f"a{i:04d}", "fingerprint": f"f{i}", "status": rnd.choice(("new", "acknowledged", "closed")),
               "severity": rnd.choice(("low", "high", "critical")), "organization": {"id": AGENCIES[i % 3]},
               "rule": {"id": f"rule-{i % 4}", "name": "r", "title": "R", "type": "rule"},
               "first_seen": ecs.utc_iso(first), "last_seen": ecs.utc_iso(first + timedelta(minutes=i % 50)),
               "@timestamp": ecs.utc_iso(first), "count": 1, "evidence": [], "labels": {}, "entities": {},
               "summary": "s", "threat": {"tactic": [], "technique": []}}
        if doc["status"] != "new":
            doc["acknowledged_at"] = ecs.utc_iso(first + timedelta(seconds=60 * (1 + i % 30)))
        out.append(doc)
    return out


def _value(doc: dict, name: str):
    return ecs.get(doc, name)


def _reference(docs: list[dict], group_by: tuple[str, ...], lower: bool, interval: int | None = None,
               time_field: str = "@timestamp", keep=lambda d: True) -> Counter:
    """Counting the slow way: every document, in Python."""
    counts: Counter = Counter()
    for doc in docs:
        if not keep(doc):
            continue
        keys = [[]]
        for name in group_by:
            value = _value(doc, name)
            values = value if isinstance(value, list) else [value]
            if not values:
                values = [None]
            if lower:
                values = [v.lower() if isinstance(v, str) and name not in ("organization.id", "event.id") else v
                          for v in values]
            keys = [k + [v] for k in keys for v in values]
        if interval:
            epoch = int(ecs.parse_time(_value(doc, time_field)).timestamp()) // interval * interval
            keys = [k + [ecs.utc_iso(datetime.fromtimestamp(epoch, timezone.utc))] for k in keys]
        for key in keys:
            counts[tuple(key) if len(key) > 1 else key[0]] += 1
    return counts


@pytest.fixture
def store(backend_settings):
    store = open_store(backend_settings)
    store.write_events(_events())
    store.upsert_alerts(_alerts())
    store.refresh()
    yield store
    store.close()


def test_counts_by_field_match_counting_every_document(store):
    events = _events()
    for fields in (("event.dataset",), ("host.name",), ("user.name",), ("organization.id",), ("event.category",),
                   ("organization.id", "event.dataset"), ("source.ip",), ("source.port",)):
        result = store.aggregate(AggregateQuery(group_by=fields))
        assert result.total == len(events)
        assert result.counts() == _reference(events, fields, lower=True), fields
    # Lowercased keys on every backend: the three spellings of hosts are three groups, not more.
    hosts = store.aggregate(AggregateQuery(group_by=("host.name",))).counts()
    assert set(hosts) == {"srv-01", "srv-02", "máy-chủ-ba"}
    # Alerts keep their keys as written.
    alerts = store.aggregate(AggregateQuery(collection="alerts", group_by=("status", "severity")))
    assert alerts.counts() == _reference(_alerts(), ("status", "severity"), lower=False)


def test_filters_narrow_what_is_counted(store):
    events = _events()
    start, end = ecs.utc_iso(START + timedelta(days=2)), ecs.utc_iso(START + timedelta(days=5))
    query = AggregateQuery(start=start, end=end, agency="so-b", terms={"event.dataset": ["system.auth", "nginx.access"]},
                           group_by=("event.dataset",))

    def keep(doc):
        return (start <= doc["@timestamp"] < end and doc["organization"]["id"] == "so-b"
                and doc["event"]["dataset"] in ("system.auth", "nginx.access"))

    result = store.aggregate(query)
    assert result.counts() == _reference(events, ("event.dataset",), lower=True, keep=keep)
    assert result.total == sum(1 for d in events if keep(d))
    text = store.aggregate(AggregateQuery(text="Failed password", group_by=("organization.id",)))
    assert text.counts() == _reference(events, ("organization.id",), lower=True,
                                       keep=lambda d: "Failed password" in d["event"]["original"])


def test_time_buckets_alone_and_per_field(store):
    events = _events()
    hourly = store.aggregate(AggregateQuery(interval_seconds=3600))
    assert hourly.counts() == _reference(events, (), lower=True, interval=3600)
    assert sum(hourly.counts().values()) == len(events)
    daily = store.aggregate(AggregateQuery(group_by=("event.dataset",), interval_seconds=86400))
    assert daily.counts() == _reference(events, ("event.dataset",), lower=True, interval=86400)
    # A day in Hanoi (UTC+7) starts at 17:00 UTC: the offset moves the buckets' edges.
    hanoi = store.aggregate(AggregateQuery(interval_seconds=86400, offset_seconds=17 * 3600))
    expected: Counter = Counter()
    for doc in events:
        epoch = int(ecs.parse_time(doc["@timestamp"]).timestamp())
        edge = (epoch - 17 * 3600) // 86400 * 86400 + 17 * 3600
        expected[ecs.utc_iso(datetime.fromtimestamp(edge, timezone.utc))] += 1
    assert hanoi.counts() == expected
    alerts_daily = store.aggregate(AggregateQuery(collection="alerts", time_field="first_seen", interval_seconds=86400))
    assert alerts_daily.counts() == _reference(_alerts(), (), lower=False, interval=86400, time_field="first_seen")


def test_top_n_keeps_the_biggest_groups_and_counts_the_rest(store):
    events = _events()
    every = _reference(events, ("source.ip",), lower=True)
    top = store.aggregate(AggregateQuery(group_by=("source.ip",), top=5))
    ordered = sorted(every.items(), key=lambda kv: (-kv[1], kv[0]))
    assert [(r.key[0], r.count) for r in top.rows] == ordered[:5]
    assert top.other == sum(c for _, c in ordered[5:])
    # The missing group takes part like any other.
    users = store.aggregate(AggregateQuery(group_by=("user.name",), top=2))
    expected = sorted(_reference(events, ("user.name",), lower=True).items(),
                      key=lambda kv: (-kv[1], (0, "") if kv[0] is None else (2, kv[0])))
    assert [(r.key[0], r.count) for r in users.rows] == expected[:2]
    # Top-N over several fields.
    pairs = store.aggregate(AggregateQuery(group_by=("organization.id", "event.dataset"), top=3))
    assert len(pairs.rows) == 3 and pairs.other == len(events) - sum(r.count for r in pairs.rows)


def test_metrics_min_max_distinct_and_percentiles_of_durations(store):
    events = _events()
    result = store.aggregate(AggregateQuery(group_by=("organization.id",), metrics=(
        Metric("first", "min", "@timestamp"), Metric("last", "max", "@timestamp"),
        Metric("sources", "distinct", "source.ip"), Metric("users", "distinct", "user.name"),
        Metric("low_port", "min", "source.port"))))
    for row in result.rows:
        mine = [d for d in events if d["organization"]["id"] == row.key[0]]
        assert row.values["first"] == min(d["@timestamp"] for d in mine)
        assert row.values["last"] == max(d["@timestamp"] for d in mine)
        assert row.values["sources"] == len({d["source"]["ip"] for d in mine})
        assert row.values["users"] == len({d["user"]["name"].lower() for d in mine if "user" in d})
        assert row.values["low_port"] == min(d["source"]["port"] for d in mine)
    # Time to acknowledge per agency: seconds from first_seen to acknowledged_at, of the alerts acknowledged.
    alerts = _alerts()
    tta = store.aggregate(AggregateQuery(collection="alerts", time_field="first_seen", group_by=("organization.id",),
                                         metrics=(Metric("tta", "percentiles", "first_seen", until="acknowledged_at",
                                                         percents=(50.0, 90.0)),)))
    for row in tta.rows:
        durations = sorted((ecs.parse_time(a["acknowledged_at"]) - ecs.parse_time(a["first_seen"])).total_seconds()
                           for a in alerts if a["organization"]["id"] == row.key[0] and "acknowledged_at" in a)
        assert row.values["tta"]["n"] == len(durations)
        assert row.values["tta"]["mean"] == pytest.approx(sum(durations) / len(durations))
        for p in (50.0, 90.0):
            got = row.values["tta"]["percentiles"][p]
            if store.name == "sqlite":
                assert got == pytest.approx(percentile(durations, p)), (row.key, p)
            else:  # the engines' t-digest interpolates its own way: between the neighbouring ranks' values
                rank = (len(durations) - 1) * p / 100
                low = durations[max(0, math.floor(rank) - 1)]
                high = durations[min(len(durations) - 1, math.ceil(rank) + 1)]
                assert low <= got <= high, (row.key, p, got, low, high)
    # No grouping: one row with the figures of every document; nothing matching: no row.
    whole = store.aggregate(AggregateQuery(metrics=(Metric("hosts", "distinct", "host.name"),)))
    assert whole.total == len(events) and whole.rows[0].values["hosts"] == 3
    none = store.aggregate(AggregateQuery(agency="no-such-agency", group_by=("event.dataset",)))
    assert none.total == 0 and none.rows == []


def test_hostile_field_names_and_shapes_are_refused(store):
    for bad in ("a'; DROP TABLE events; --", "doc[0]", "", "x" * 300, "a..b", "$.event", "event.id\n"):
        with pytest.raises(StoreError):
            store.aggregate(AggregateQuery(group_by=(bad,)))
        with pytest.raises(StoreError):
            store.aggregate(AggregateQuery(terms={bad: "x"}))
        with pytest.raises(StoreError):
            store.aggregate(AggregateQuery(metrics=(Metric("m", "max", bad),)))
    for query in (AggregateQuery(interval_seconds=0), AggregateQuery(top=0),
                  AggregateQuery(collection="alerts", text="x"), AggregateQuery(collection="Bad/Name"),
                  AggregateQuery(group_by=("a", "b", "c", "d", "e")),
                  AggregateQuery(metrics=(Metric("p", "percentiles", "first_seen"),))):
        with pytest.raises(StoreError):
            store.aggregate(query)
    # The store is still there and answers.
    assert store.aggregate(AggregateQuery()).total == len(_events())
