"""The storage contract: every backend (embedded SQLite, real OpenSearch) behaves the same."""

from __future__ import annotations

import copy

import pytest

from soc.storage import AlertQuery, DeadLetter, EventQuery, open_store


def _event(i: int, agency: str, ts: str, **extra) -> dict:
    doc = {
        "@timestamp": ts,
        "event": {"id": f"evt-{i:04d}", "original": f"line {i} from {agency} Failed password", "kind": "event",
                  "category": ["authentication"], "outcome": "failure" if i % 2 else "success"},
        "organization": {"id": agency, "name": agency.upper()},
        "source": {"ip": f"203.0.113.{i % 250 + 1}", "port": 40000 + i},
        "user": {"name": f"user{i % 3}"},
        "message": f"line {i}",
    }
    doc.update(extra)
    return doc


def _alert(i: int, agency: str, last_seen: str, status: str = "new") -> dict:
    return {
        "id": f"alert-{i:04d}", "fingerprint": f"fp-{i % 5}", "status": status, "severity": "high",
        "organization": {"id": agency}, "rule": {"id": f"rule-{i % 2}", "name": "r", "title": "R", "type": "rule"},
        "first_seen": last_seen, "last_seen": last_seen, "count": i, "evidence": [f"evt-{i:04d}"],
        "labels": {"rule.id": f"rule-{i % 2}"}, "entities": {"ip": ["203.0.113.9"]}, "summary": "s",
        "threat": {"tactic": [], "technique": []}, "@timestamp": last_seen,
    }


@pytest.fixture
def store(backend_settings):
    store = open_store(backend_settings)
    yield store
    store.close()


def _ts(minute: int) -> str:
    return f"2026-11-22T10:{minute:02d}:00.000Z"


def test_events_write_is_idempotent_and_readable(store):
    events = [_event(i, "so-a" if i < 6 else "so-b", _ts(i)) for i in range(10)]
    assert store.write_events(events) == 10
    # A replay of the same events (same ids) must not duplicate anything.
    replay = copy.deepcopy(events)
    replay[0]["message"] = "rewritten"
    store.write_events(replay)
    store.refresh()
    assert store.count_events() == 10
    assert store.count_events(agency="so-a") == 6
    got = store.get_events(["evt-0000", "evt-0009", "missing"])
    assert [e["event"]["id"] for e in got] == ["evt-0000", "evt-0009"]
    assert got[0]["message"] == "rewritten"
    assert got[1]["source"]["ip"] == "203.0.113.10"


def test_events_search_filters_and_cursor(store):
    # Two days, so the search engine spreads them over two daily indices.
    events = [_event(i, "so-a" if i % 2 else "so-b", _ts(i)) for i in range(20)]
    events.append(_event(99, "so-a", "2026-11-23T01:00:00.000Z"))
    store.write_events(events)
    store.refresh()
    all_a = store.search_events(EventQuery(agency="so-a", limit=100))
    assert [e["event"]["id"] for e in all_a] == [f"evt-{i:04d}" for i in range(1, 20, 2)] + ["evt-0099"]
    window = store.search_events(EventQuery(start=_ts(5), end=_ts(10), limit=100))
    assert [e["event"]["id"] for e in window] == [f"evt-{i:04d}" for i in range(5, 10)]
    by_term = store.search_events(EventQuery(terms={"user.name": "user1"}, limit=100))
    assert {e["user"]["name"] for e in by_term} == {"user1"} and len(by_term) == 7
    by_text = store.search_events(EventQuery(text="line 7 from", limit=100))
    assert [e["event"]["id"] for e in by_text] == ["evt-0007"]
    # Cursor pagination walks everything exactly once, in order.
    seen, after = [], None
    while True:
        page = store.search_events(EventQuery(limit=6, after=after))
        if not page:
            break
        seen.extend(e["event"]["id"] for e in page)
        after = (page[-1]["@timestamp"], page[-1]["event"]["id"])
    assert seen == [f"evt-{i:04d}" for i in range(20)] + ["evt-0099"]


def test_alerts_upsert_filter_and_paginate(store):
    alerts = [_alert(i, "so-a" if i < 7 else "so-b", _ts(i), status="closed" if i == 3 else "new")
              for i in range(12)]
    store.upsert_alerts(alerts)
    updated = dict(alerts[2], count=500, status="acknowledged")
    store.upsert_alerts([updated])
    store.refresh()
    assert store.get_alert("alert-0002")["count"] == 500
    assert store.get_alert("nope") is None
    newest_first = store.list_alerts(AlertQuery(limit=100))
    assert [a["id"] for a in newest_first] == [f"alert-{i:04d}" for i in range(11, -1, -1)]
    assert {a["id"] for a in store.list_alerts(AlertQuery(agency="so-b"))} == {f"alert-{i:04d}" for i in range(7, 12)}
    assert [a["id"] for a in store.list_alerts(AlertQuery(status="closed"))] == ["alert-0003"]
    assert {a["id"] for a in store.list_alerts(AlertQuery(fingerprint="fp-1"))} == {"alert-0001", "alert-0006",
                                                                                   "alert-0011"}
    assert len(store.list_alerts(AlertQuery(since=_ts(10)))) == 2
    seen, after = [], None
    while True:
        page = store.list_alerts(AlertQuery(limit=5, after=after))
        if not page:
            break
        seen.extend(a["id"] for a in page)
        after = (page[-1]["last_seen"], page[-1]["id"])
    assert seen == [a["id"] for a in newest_first]


def test_alerts_filter_by_entity_in_the_store(store):
    """The entity filter is the store's (not a bounded scan): exact value, any entity kind, with the others."""
    alerts = []
    for i in range(10):
        alert = _alert(i, "so-a" if i % 2 else "so-b", _ts(i))
        alert["entities"] = {"ip": [f"198.51.100.{i}", "203.0.113.9"], "user": [f"user{i}"],
                             "host": [f"web-{i % 3}"]}
        alerts.append(alert)
    store.upsert_alerts(alerts)
    store.refresh()

    def ids(**query) -> list[str]:
        return [a["id"] for a in store.list_alerts(AlertQuery(**query))]

    assert ids(entity="198.51.100.4") == ["alert-0004"]
    assert ids(entity="user7") == ["alert-0007"]
    assert ids(entity="web-1") == ["alert-0007", "alert-0004", "alert-0001"]
    assert ids(entity="web-1", agency="so-a") == ["alert-0007", "alert-0001"]
    assert len(ids(entity="203.0.113.9")) == 10
    assert ids(entity="203.0.113") == [] and ids(entity="user") == []  # exact values, not parts
    assert ids(entity="203.0.113.9", limit=3, after=(_ts(5), "alert-0005")) == ["alert-0004", "alert-0003",
                                                                                "alert-0002"]


def test_alerts_filter_by_tactic_in_the_store(store):
    alerts = []
    for i, tactics in enumerate((["credential-access"], ["discovery", "credential_access"], ["impact"], [])):
        alert = _alert(i, "so-a", f"2026-11-22T10:0{i}:00.000Z")
        alert["threat"] = {"tactic": tactics, "technique": []}
        alerts.append(alert)
    store.upsert_alerts(alerts)
    store.refresh()
    found = store.list_alerts(AlertQuery(tactics=("credential-access", "credential_access")))
    assert [a["id"] for a in found] == ["alert-0001", "alert-0000"]
    assert [a["id"] for a in store.list_alerts(AlertQuery(tactics=("impact",), agency="so-a"))] == ["alert-0002"]
    assert store.list_alerts(AlertQuery(tactics=("exfiltration",))) == []
    assert len(store.list_alerts(AlertQuery())) == 4


def test_dead_letters_keep_raw_bytes_and_reason(store):
    raw = bytes(range(256)) * 4 + b"\xff\xfe"
    store.write_dead_letters([
        DeadLetter(received=_ts(1), source="udp://127.0.0.1:5000", reason="binary: control bytes", raw=raw),
        DeadLetter(received=_ts(2), source="tcp://127.0.0.1:5001", reason="line_too_long", raw=b"x" * 10,
                   truncated=True),
    ])
    store.refresh()
    assert store.count_dead_letters() == 2
    newest, oldest = store.list_dead_letters(10)
    assert newest.reason == "line_too_long" and newest.truncated
    assert oldest.raw == raw and oldest.source == "udp://127.0.0.1:5000"


def test_api_keys_roundtrip(store):
    store.put_api_key({"id": "k1", "hash": "h", "role": "agency", "agency": "so-a", "name": "n", "revoked": False})
    assert store.get_api_key("k1")["agency"] == "so-a"
    store.put_api_key({"id": "k1", "hash": "h", "role": "agency", "agency": "so-a", "name": "n", "revoked": True})
    assert store.get_api_key("k1")["revoked"] is True
    assert [k["id"] for k in store.list_api_keys()] == ["k1"]
    assert store.get_api_key("k2") is None


def test_everything_survives_reopening(backend_settings):
    store = open_store(backend_settings)
    store.write_events([_event(1, "so-a", _ts(1))])
    store.upsert_alerts([_alert(1, "so-a", _ts(1))])
    store.write_dead_letters([DeadLetter(received=_ts(1), source="tcp://x", reason="r", raw=b"\x00")])
    store.refresh()
    store.close()
    again = open_store(backend_settings)  # a new process would do exactly this
    try:
        assert again.get_events(["evt-0001"])[0]["organization"]["id"] == "so-a"
        assert again.get_alert("alert-0001")["count"] == 1
        assert again.count_dead_letters() == 1
        assert again.health()["status"] in ("green", "yellow")
    finally:
        again.close()


def test_documents_collections(store):
    from soc.storage import DocumentQuery

    runs = [{"id": f"run-{i}", "state": "succeeded" if i % 3 else "failed", "agency": "so-a" if i < 5 else "so-b",
             "started": _ts(i), "devices": ["fw-1", "fw-2"] if i % 2 else ["fw-3"]} for i in range(8)]
    store.put_documents("playbook_runs", runs)
    store.put_documents("playbook_runs", [dict(runs[0], state="rolled_back")])
    assert store.get_document("playbook_runs", "run-0")["state"] == "rolled_back"
    assert store.get_document("playbook_runs", "run-99") is None
    assert store.get_document("silences", "run-0") is None  # collections are apart
    failed = store.find_documents("playbook_runs", DocumentQuery(terms={"state": "failed"}))
    assert [d["id"] for d in failed] == ["run-3", "run-6"]
    on_fw3 = store.find_documents("playbook_runs", DocumentQuery(terms={"devices": "fw-3", "agency": ["so-a"]}))
    assert [d["id"] for d in on_fw3] == ["run-0", "run-2", "run-4"]
    window = store.find_documents("playbook_runs", DocumentQuery(ranges={"started": (_ts(2), _ts(5))},
                                                                sort="started", descending=True))
    assert [d["id"] for d in window] == ["run-4", "run-3", "run-2"]
    seen, after = [], None
    while True:
        page = store.find_documents("playbook_runs", DocumentQuery(sort="started", limit=3, after=after))
        if not page:
            break
        seen += [d["id"] for d in page]
        after = (page[-1]["started"], page[-1]["id"])
    assert seen == [f"run-{i}" for i in range(8)]
    assert store.delete_document("playbook_runs", "run-1") is True
    assert store.delete_document("playbook_runs", "run-1") is False
    assert store.get_document("playbook_runs", "run-1") is None
    with pytest.raises(Exception):
        store.put_documents("Bad Name", [{"id": "x"}])
