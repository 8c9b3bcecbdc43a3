"""The alert model's rules as data: label matchers (Alertmanager semantics), silence states, status transitions with
reasons, merging, grouping, and analysts' edits under the pipeline's lock (a repeat arriving meanwhile is neither lost
nor undoes the edit)."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest

from detections import lifecycle
from detections.alerts import AlertManager
from detections.engine import Detection
from detections.lifecycle import LifecycleError
from detections.silences import LabelMatcher, MatcherError, new_silence, silence_state
from detections.sigma.loader import RuleMeta
from soc import ecs
from soc.storage import open_store
from soc.storage.base import AlertQuery
from tests.conftest import make_settings


@pytest.mark.parametrize("op,value,labels,expected", [
    ("=", "a", {"x": "a"}, True),
    ("=", "a", {"x": "ab"}, False),
    ("!=", "a", {"x": "b"}, True),
    ("=~", "10\\.20\\..*", {"x": "10.20.1.5"}, True),
    ("=~", "10\\.20", {"x": "10.20.1.5"}, False),  # anchored: the whole value must match
    ("!~", "so-.*", {"x": "dc"}, True),
    ("=", "", {}, True),  # a missing label reads as ""
    ("!=", "", {}, False),
])
def test_matcher_semantics(op, value, labels, expected):
    assert LabelMatcher.parse({"name": "x", "op": op, "value": value}).matches(labels) is expected


@pytest.mark.parametrize("raw", [{"name": "x", "op": "~", "value": "a"}, {"name": "x", "op": "=~", "value": "("},
                                 {"op": "=", "value": "a"}, {"name": "x", "op": "=~", "value": "a" * 600}])
def test_bad_matchers_are_refused(raw):
    with pytest.raises(MatcherError):
        LabelMatcher.parse(raw)


def test_silence_needs_matchers_and_a_real_window():
    later = ecs.utc_iso(datetime.now(timezone.utc) + timedelta(hours=1))
    with pytest.raises(MatcherError):
        new_silence([], starts_at=None, ends_at=later, created_by="t", comment="c")
    with pytest.raises(MatcherError):
        new_silence([{"name": "a", "value": "b"}], starts_at=later, ends_at=ecs.now_iso(), created_by="t",
                    comment="c")
    pending = new_silence([{"name": "a", "value": "b"}], starts_at=later,
                          ends_at=ecs.utc_iso(datetime.now(timezone.utc) + timedelta(hours=2)), created_by="t",
                          comment="c")
    assert silence_state(pending) == "pending"


def _alert(status="new") -> dict:
    return {"id": "a", "status": status, "severity": "high", "rule": {"title": "R"}, "first_seen": "1",
            "last_seen": "2", "organization": {"id": "so-a"}, "history": []}


def test_transitions_reasons_and_times():
    alert = _alert()
    lifecycle.set_status(alert, "in_progress", by="lan")
    assert alert["acknowledged_by"] == "lan" and alert["acknowledged_at"]
    with pytest.raises(LifecycleError):
        lifecycle.set_status(alert, "closed", by="lan")  # no reason
    with pytest.raises(LifecycleError) as info:
        lifecycle.set_status(alert, "new", by="lan")
    assert info.value.conflict
    lifecycle.set_status(alert, "closed", by="lan", reason="benign")
    assert alert["closed_at"] and alert["close_reason"] == "benign"
    with pytest.raises(LifecycleError):
        lifecycle.set_status(alert, "in_progress", by="lan")  # re-opening needs a reason
    lifecycle.set_status(alert, "in_progress", by="lan", comment="came back")
    assert "closed_at" not in alert and alert["reopened_at"]
    assert [h["to"] for h in alert["history"] if h["action"] == "status"] == ["in_progress", "closed", "in_progress"]
    with pytest.raises(LifecycleError):
        lifecycle.add_note(alert, "   ", by="lan")


def test_merge_is_one_agency_and_once():
    a, b, c = _alert(), dict(_alert(), id="b", first_seen="0"), dict(_alert(), id="c", organization={"id": "so-b"})
    incident = lifecycle.new_incident([a, b], by="lan")
    assert incident["primary"] == "b" and incident["alerts"] == ["b", "a"] and a["incident"] == incident["id"]
    with pytest.raises(LifecycleError):
        lifecycle.new_incident([a, dict(_alert(), id="d")], by="lan")  # a is taken
    with pytest.raises(LifecycleError):
        lifecycle.new_incident([dict(_alert(), id="e"), c], by="lan")


def _detection(i: int, ip: str = "203.0.113.1") -> Detection:
    meta = RuleMeta(id="r-life", name="r", title="R", level="medium", tags=[], description="", path="")
    ts = ecs.utc_iso(datetime(2026, 11, 22, 10, 0, tzinfo=timezone.utc) + timedelta(seconds=i))
    event = {"@timestamp": ts, "event": {"id": f"e{i}-{ip}"}, "source": {"ip": ip}, "organization": {"id": "so-a"}}
    return Detection(meta=meta, kind="rule", agency="so-a", labels={}, events=[event], count=1, first_seen=ts,
                     last_seen=ts)


def test_groups_and_edits_under_the_lock_keep_repeats(tmp_path):
    store = open_store(make_settings(tmp_path))
    manager = AlertManager(store)
    first = manager.handle([_detection(0)])[0]
    other = manager.handle([_detection(1, "203.0.113.2")])[0]
    assert first["group"] == other["group"] and first["group"]["labels"] == {"organization.id": "so-a",
                                                                             "rule.id": "r-life"}
    stop = threading.Event()
    sent = []

    def repeats():
        i = 2
        while not stop.is_set() and i < 400:
            manager.handle([_detection(i)])
            sent.append(i)
            i += 1

    worker = threading.Thread(target=repeats)
    worker.start()
    try:
        for _ in range(20):
            manager.edit(first["id"], lambda a: lifecycle.add_note(a, "looking", by="lan"))
        manager.edit(first["id"], lambda a: lifecycle.set_status(a, "in_progress", by="lan"))
    finally:
        stop.set()
        worker.join()
    stored = store.get_alert(first["id"])
    assert stored["status"] == "in_progress" and len(stored["notes"]) == 20
    # Every repeat folded into the alert while it was being edited: none lost, none undid the edit.
    assert sent and stored["count"] == 1 + len(sent)
    # A failed edit writes nothing.
    with pytest.raises(LifecycleError):
        manager.edit(first["id"], lambda a: lifecycle.set_status(a, "new", by="lan"))
    assert store.get_alert(first["id"])["status"] == "in_progress"
    # Closing it makes the next repeat a new alert.
    manager.edit(first["id"], lambda a: lifecycle.set_status(a, "closed", by="lan", reason="true_positive"))
    again = manager.handle([_detection(1000)])[0]
    assert again["id"] != first["id"] and again["status"] == "new"
    assert len(store.list_alerts(AlertQuery(rule_id="r-life"))) == 3
    store.close()


def test_default_inhibition_rule_is_data_and_stays_deleted(tmp_path):
    from detections.inhibition import COLLECTION, Inhibitor

    store = open_store(make_settings(tmp_path))
    assert [r.doc["id"] for r in Inhibitor(store).rules()] == ["uplink-down-mutes-silent-sources"]
    assert store.delete_document(COLLECTION, "uplink-down-mutes-silent-sources")
    assert Inhibitor(store).rules() == []  # a restart does not bring it back
    store.close()


def test_untrusted_evidence_makes_an_alert_of_its_own(tmp_path):
    """Forged lines raise their own alert: a later detection from trusted senders of the same thing is not absorbed
    by it (and so not held back behind its approval), and the trusted alert carries its own trust."""
    store = open_store(make_settings(tmp_path))
    manager = AlertManager(store)
    [untrusted] = manager.handle([_detection(1)])  # its event says nothing of a trusted sender
    real = _detection(2)
    real.events[0]["soc"] = {"sender": {"trusted": True}}
    real.untrusted = -1
    real.__post_init__()  # counted again from its (now trusted) event
    [trusted] = manager.handle([real])
    assert untrusted["id"] != trusted["id"] and untrusted["labels"]["soc.evidence"] == "untrusted"
    assert untrusted["trust"] == {"untrusted_events": 1, "trusted": False}
    assert trusted["trust"] == {"untrusted_events": 0, "trusted": True} and "soc.evidence" not in trusted["labels"]
    store.close()


def test_an_untrusted_alert_never_inhibits_a_trusted_one(tmp_path):
    """An inhibition rule pairing alerts on an address: forged lines' alert must not suppress the trusted alert of
    the same address (and with it the containment it would start); a trusted source still inhibits."""
    from detections.inhibition import COLLECTION

    store = open_store(make_settings(tmp_path))
    store.put_documents(COLLECTION, [{"id": "by-ip", "source": [{"name": "rule.id", "op": "=", "value": "r-life"}],
                                      "target": [{"name": "rule.id", "op": "=", "value": "r-other"}],
                                      "equal": ["source.ip"]}])
    manager = AlertManager(store)
    [forged] = manager.handle([_detection(1)])  # untrusted: its event says nothing of a trusted sender
    assert forged["trust"]["trusted"] is False
    target = _detection(2)
    target.meta = RuleMeta(id="r-other", name="o", title="O", level="high", tags=[], description="", path="")
    target.events[0]["soc"] = {"sender": {"trusted": True}}
    target.untrusted = 0
    [real] = manager.handle([target])
    assert real["status"] != "suppressed", real.get("suppressed_by")
    store.close()
