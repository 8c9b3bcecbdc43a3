"""The tiers' outbox on its own (tiers/outbox.py): order, confirmation, the bound and what it drops, restart."""

from __future__ import annotations

import json

from tiers.merge import merged, triage_at
from tiers.outbox import AGENCIES, ALERT, EVENT, EVIDENCE, LOW, Outbox


def _event(n: int, size: int = 100) -> bytes:
    return json.dumps({"event": {"id": f"e{n:03d}"}, "pad": "x" * size}).encode()  # each the same size


def test_the_bound_drops_the_oldest_low_value_events_first_then_evidence_and_never_alerts(tmp_path):
    outbox = Outbox(tmp_path, max_bytes=10 * len(_event(0)))
    outbox.put_latest(ALERT, [("a1", b'{"id":"a1"}')])
    outbox.add_events([(_event(i), EVIDENCE) for i in range(3)])
    dropped = outbox.add_events([(_event(i), LOW) for i in range(3, 15)])  # 15 events for room of 10
    assert dropped == 5
    waiting = [json.loads(p.body)["event"]["id"] for p in outbox.next_batch(EVENT, 100, 1 << 20)]
    assert waiting == ["e000", "e001", "e002"] + [f"e{i:03d}" for i in range(8, 15)]  # evidence kept, oldest low-value gone
    assert outbox.counters()["dropped_events"] == 5
    # Now only evidence and newer events: more drops take the oldest evidence too, then the alert is still there.
    outbox.add_events([(_event(i), EVIDENCE) for i in range(15, 27)])
    assert outbox.counters().get("dropped_evidence", 0) > 0
    assert [p.key for p in outbox.next_batch(ALERT, 10, 1 << 20)] == ["a1"]
    assert outbox.backlog()[EVENT]["bytes"] <= 10 * len(_event(0))


def test_a_batch_leaves_only_when_confirmed_and_a_newer_alert_version_survives_an_older_ones_confirmation(tmp_path):
    outbox = Outbox(tmp_path, max_bytes=1 << 20)
    outbox.add_events([(_event(i), LOW) for i in range(5)])
    first = outbox.next_batch(EVENT, 3, 1 << 20)
    assert [json.loads(p.body)["event"]["id"] for p in first] == ["e000", "e001", "e002"]
    assert len(outbox.next_batch(EVENT, 10, 1 << 20)) == 5  # not confirmed: still there
    outbox.confirm(EVENT, first)
    assert [json.loads(p.body)["event"]["id"] for p in outbox.next_batch(EVENT, 10, 1 << 20)] == ["e003", "e004"]

    outbox.put_latest(ALERT, [("a1", b'{"v":1}')])
    in_flight = outbox.next_batch(ALERT, 10, 1 << 20)
    outbox.put_latest(ALERT, [("a1", b'{"v":2}')])  # changed while version 1 was being sent
    outbox.confirm(ALERT, in_flight)
    assert [p.body for p in outbox.next_batch(ALERT, 10, 1 << 20)] == [b'{"v":2}']
    # The figures kept in memory are the outbox's own (what a scan of it says).
    assert outbox.backlog()[ALERT]["records"] == 1 and outbox.backlog()[ALERT]["bytes"] == len(b'{"v":2}')
    assert outbox.backlog()[EVENT]["records"] == 2 and outbox.backlog()[EVENT]["oldest"] is not None
    outbox.put_latest(AGENCIES, [("all", b"[1]")])
    outbox.put_latest(AGENCIES, [("all", b"[1,2]")])
    assert [p.body for p in outbox.next_batch(AGENCIES, 10, 1 << 20)] == [b"[1,2]"]


def test_what_was_not_confirmed_is_there_after_a_restart_with_its_counters(tmp_path):
    outbox = Outbox(tmp_path, max_bytes=1 << 20)
    outbox.add_events([(_event(i), LOW) for i in range(4)])
    outbox.confirm(EVENT, outbox.next_batch(EVENT, 1, 1 << 20))
    outbox.set_state("changes_after", "12:ab")
    outbox.close()
    again = Outbox(tmp_path, max_bytes=1 << 20)
    assert [json.loads(p.body)["event"]["id"] for p in again.next_batch(EVENT, 10, 1 << 20)] == ["e001", "e002", "e003"]
    assert again.counters()["sent_event"] == 1 and again.get_state("changes_after") == "12:ab"
    assert again.backlog()[EVENT]["records"] == 3


def test_merging_two_tiers_versions_keeps_the_newer_triage_and_one_history():
    raised = {"at": "2026-12-07T01:00:00.000Z", "by": "detections", "action": "raised"}
    city = {"id": "a", "status": "closed", "close_reason": "true_positive", "count": 9, "incident": "city-inc",
            "history": [raised, {"at": "2026-12-07T01:10:00.000Z", "by": "lan", "action": "status", "to": "closed"}]}
    province = {"id": "a", "status": "acknowledged", "count": 5, "incident": "prov-inc", "tier": {"link": "h"},
                "history": [raised, {"at": "2026-12-07T01:05:00.000Z", "by": "minh", "action": "status",
                                     "to": "acknowledged"}]}
    kept = merged(province, city, remote_owns_detection=True)
    assert kept["status"] == "closed" and kept["close_reason"] == "true_positive" and kept["count"] == 9
    assert kept["incident"] == "prov-inc" and kept["tier"] == {"link": "h"}
    assert [h["action"] for h in kept["history"]] == ["raised", "status", "status"]
    assert triage_at(kept) == "2026-12-07T01:10:00.000Z"
    # An older change from the other tier does not undo a newer one here.
    late = dict(province, history=[raised, {"at": "2026-12-07T00:59:00.000Z", "by": "x", "action": "status",
                                            "to": "acknowledged"}])
    assert merged(kept, late, remote_owns_detection=False)["status"] == "closed"
