"""Backups on both backends (embedded SQLite with its online backup API, a real OpenSearch node with a filesystem
snapshot repository under its path.repo): snapshot, delete an index or rows, restore, find every document again —
with what was written after the snapshot still there; ``--replace`` rolls the store back to the snapshot; the
commands show progress and say what they did."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest
import yaml
from typer.testing import CliRunner

from soc import ecs
from soc.storage import AlertQuery, DeadLetter, DocumentQuery, EventQuery, StoreError, open_store, snapshots
from suite.cli import app
from tests.conftest import _drop_indices, cannot_run, make_settings, need_opensearch

TODAY = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)


@pytest.fixture(params=["sqlite", "opensearch"])
def backend(request, tmp_path):
    """(settings, store, where) on each backend; on OpenSearch the indices, snapshots and repository go after."""
    name = f"snaptest-{uuid.uuid4().hex[:10]}"
    sections = {"store": {"snapshots": {"repository": name, "location": name}}}
    if request.param == "sqlite":
        settings = make_settings(tmp_path, sections=sections)
    else:
        settings = make_settings(tmp_path, store_url=need_opensearch(), index_prefix=name, sections=sections)
    store = open_store(settings)
    where = snapshots.target(settings.store.snapshots, settings.data_dir, sqlite=request.param == "sqlite")
    yield settings, store, where
    if request.param == "opensearch":
        try:
            for snap in store.list_snapshots(where):
                store.delete_snapshot(where, snap["name"])
            store.client.snapshot.delete_repository(repository=where.repository)
        except Exception:
            pass
        _drop_indices(need_opensearch(), name)
    store.close()


def _snapshot(store, where, name):
    try:
        return store.snapshot(where, name)
    except StoreError as exc:
        if "path.repo" in str(exc):  # a node started without path.repo (not by scripts/opensearch.sh)
            cannot_run(f"the OpenSearch node cannot take snapshots: {exc}",
                       f"the OpenSearch node of the run has no path.repo: {exc}")
        raise


def _seed(store) -> None:
    yesterday, today = TODAY - timedelta(days=1), TODAY
    store.write_events([{"@timestamp": ecs.utc_iso(day + timedelta(minutes=i)),
                         "event": {"id": f"{tag}-{i:03d}", "kind": "event", "original": f"{tag} {i}"},
                         "organization": {"id": "so-a"}, "message": f"{tag} {i}"}
                        for tag, day in (("yesterday", yesterday), ("today", today)) for i in range(120)])
    store.upsert_alerts([{"id": f"alert-{i}", "fingerprint": f"fp-{i}", "status": "new", "severity": "high",
                          "organization": {"id": "so-a"}, "rule": {"id": "r"}, "first_seen": ecs.utc_iso(day),
                          "last_seen": ecs.utc_iso(day), "count": i, "evidence": [], "entities": {}, "summary": "s",
                          "@timestamp": ecs.utc_iso(day)}
                         for i, day in enumerate([yesterday] * 3 + [today] * 3)])
    store.write_dead_letters([DeadLetter(received=ecs.utc_iso(today), source="udp://x", reason=f"r{i}",
                                         raw=bytes([i, 0, 255])) for i in range(4)])
    store.put_documents("audit", [{"id": f"audit-{i}", "@timestamp": ecs.utc_iso(today), "action": "a"}
                                  for i in range(5)])
    store.put_documents("incidents", [{"id": "inc-1", "title": "as snapshotted"}])
    store.put_api_key({"id": "key-1", "hash": "h", "role": "analyst"})
    store.refresh()


def _contents(store) -> dict:
    store.refresh()
    return {
        "events": {e["event"]["id"]: e["message"] for e in store.search_events(EventQuery(limit=1000))},
        "alerts": {a["id"]: a["count"] for a in store.list_alerts(AlertQuery(limit=100))},
        "dead_letters": {(d.reason, d.raw) for d in store.list_dead_letters(100)},
        "audit": {d["id"] for d in store.find_documents("audit", DocumentQuery(limit=100))},
        "incidents": {d["id"]: d["title"] for d in store.find_documents("incidents", DocumentQuery(limit=100))},
        "keys": {k["id"] for k in store.list_api_keys()},
    }


def _lose_some(store) -> None:
    """Yesterday's events (on OpenSearch: their whole daily index), old alerts, an audit record and a document."""
    cut = ecs.utc_iso(TODAY)
    assert store.expire("events", cut) == 120
    assert store.expire("alerts", cut) == 3
    assert store.delete_document("audit", "audit-0")
    assert store.delete_document("incidents", "inc-1")


def test_snapshot_delete_restore_finds_every_document_and_keeps_newer_writes(backend):
    _, store, where = backend
    _seed(store)
    before = _contents(store)
    assert len(before["events"]) == 240 and len(before["alerts"]) == 6
    record = _snapshot(store, where, "before-the-loss")
    assert record["state"] == "SUCCESS" and record["name"] == "before-the-loss"
    assert [s["name"] for s in store.list_snapshots(where)] == ["before-the-loss"]

    _lose_some(store)
    if store.name != "sqlite":
        assert not store.client.indices.exists(index=store.event_index(ecs.utc_iso(TODAY - timedelta(days=1))))
    # Written after the snapshot: a restore must keep these as they are.
    store.write_events([{"@timestamp": ecs.utc_iso(TODAY + timedelta(hours=1)), "event": {"id": "after-1"},
                         "organization": {"id": "so-a"}, "message": "after"}])
    store.upsert_alerts([{"id": "alert-5", "fingerprint": "fp-5", "status": "closed", "severity": "high",
                          "organization": {"id": "so-a"}, "rule": {"id": "r"}, "first_seen": ecs.utc_iso(TODAY),
                          "last_seen": ecs.utc_iso(TODAY), "count": 500, "evidence": [], "entities": {},
                          "summary": "s", "@timestamp": ecs.utc_iso(TODAY)}])
    store.refresh()

    steps = []
    result = store.restore(where, "before-the-loss", progress=lambda what, done, total: steps.append(what))
    after = _contents(store)
    expected = {**before,
                "events": {**before["events"], "after-1": "after"},
                "alerts": {**before["alerts"], "alert-5": 500}}
    assert after == expected
    assert steps, "a restore reports its progress"
    if store.name == "sqlite":
        assert result["restored_rows"]["events"] == 120 and result["restored_rows"]["alerts"] == 3
    else:
        assert store.event_index(ecs.utc_iso(TODAY - timedelta(days=1))) in result["restored_indices"]
        assert result["merged"][store.alerts_index] == 3  # the alerts lost, and not alert-5's old version
        assert store.client.indices.get(index=f"{store.prefix}-restoring-*") == {}  # no temporary index left
    # A second restore finds nothing missing and changes nothing.
    store.restore(where, "before-the-loss")
    assert _contents(store) == expected


def test_restore_replace_makes_the_store_the_snapshot(backend):
    _, store, where = backend
    _seed(store)
    before = _contents(store)
    _snapshot(store, where, "known-good")
    _lose_some(store)
    store.write_events([{"@timestamp": ecs.utc_iso(TODAY + timedelta(days=1, hours=1)), "event": {"id": "later"},
                         "organization": {"id": "so-a"}, "message": "later"}])
    store.put_documents("audit", [{"id": "audit-1", "@timestamp": ecs.utc_iso(TODAY), "action": "changed"}])
    store.refresh()
    store.restore(where, "known-good", replace=True)
    assert _contents(store) == before  # "later" (in a day the snapshot did not have) is gone too
    assert store.get_document("audit", "audit-1")["action"] == "a"


def test_unknown_snapshot_and_bad_names_are_clear_errors(backend):
    _, store, where = backend
    with pytest.raises(StoreError, match="no snapshot"):
        store.restore(where, "never-taken")
    with pytest.raises(StoreError, match="not valid"):
        store.snapshot(where, "../escape")
    with pytest.raises(StoreError, match="schedule"):
        snapshots.check_name("auto-mine")


def test_the_commands_snapshot_list_and_restore_with_progress(backend, tmp_path):
    settings, store, where = backend
    _seed(store)
    before = _contents(store)
    config = tmp_path / "cli.yaml"
    config.write_text(yaml.safe_dump({"data_dir": settings.data_dir, "store": settings.store.model_dump()}),
                      encoding="utf-8")
    runner = CliRunner()
    made = runner.invoke(app, ["store", "snapshot", "--name", "by-hand", "--config", str(config)])
    if made.exit_code != 0 and "path.repo" in made.output:
        cannot_run(made.output, made.output)
    assert made.exit_code == 0, made.output
    assert "snapshot by-hand: SUCCESS" in made.output
    assert "snapshot by-hand (bytes)" in made.output  # the progress bar (CliRunner mixes stderr in)
    listed = runner.invoke(app, ["store", "snapshots", "--config", str(config)])
    assert listed.exit_code == 0 and "by-hand" in listed.output and "SUCCESS" in listed.output
    assert runner.invoke(app, ["store", "snapshot", "--name", "auto-x", "--config", str(config)]).exit_code == 2

    _lose_some(store)
    restored = runner.invoke(app, ["store", "restore", "by-hand", "--config", str(config)])
    assert restored.exit_code == 0, restored.output
    assert "missing documents brought back" in restored.output or "restored index" in restored.output
    assert _contents(store) == before
    missing = runner.invoke(app, ["store", "restore", "no-such", "--config", str(config)])
    assert missing.exit_code == 1 and "no snapshot 'no-such'" in missing.output
