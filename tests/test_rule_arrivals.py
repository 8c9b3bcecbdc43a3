"""The digest's "new rules that cover the agency's sources": the suite records when each rule first ran, and the
digest (API and monthly report) lists the rules that arrived in a period whose Sigma log source applies to the kinds
of events that agency sent — not another agency's kinds, not rules that arrived before."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from detections import rule_arrivals
from soc import ecs
from tests.api_fixtures import AGENCY_A, AGENCY_B, call, client_for, keys_for, running_suite

NOW = datetime.now(timezone.utc)


def _event(i: int, agency: str, dataset: str, program: str | None) -> dict:
    doc = {"@timestamp": ecs.utc_iso(NOW - timedelta(hours=2, minutes=i)),
           "event": {"id": f"arr-{agency}-{i}", "dataset": dataset, "original": f"line {i}"},
           "organization": {"id": agency}}
    if program:
        doc["process"] = {"name": program}
    return doc


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    with running_suite(tmp_path_factory.mktemp("rule-arrivals")) as running:
        store = running.store
        # Agency A sends SSH logins, agency B only web server logs.
        store.write_events([_event(i, AGENCY_A, "system.auth", "sshd") for i in range(5)]
                           + [_event(i, AGENCY_B, "nginx.access", None) for i in range(5)])
        store.refresh()
        yield running


def test_each_rule_is_recorded_once_with_the_time_it_first_ran(suite):
    store = suite.store
    recorded = {d["id"]: d for d in store.find_documents(rule_arrivals.COLLECTION, _all())}
    assert set(recorded) == {r.meta.id for r in suite.ruleset.rules} | {c.meta.id for c in suite.ruleset.correlations}
    assert all(d["logsource"] for d in recorded.values())
    # Loaded again (a restart, the same pack again): nothing new, first times kept.
    assert rule_arrivals.record(store, suite.ruleset.current, now="2099-01-01T00:00:00.000Z") == 0
    again = {d["id"]: d["arrived"] for d in store.find_documents(rule_arrivals.COLLECTION, _all())}
    assert again == {k: v["arrived"] for k, v in recorded.items()}


def _all():
    from soc.storage.base import DocumentQuery

    return DocumentQuery(limit=10_000)


def test_the_digest_lists_new_rules_for_the_agencys_own_kinds_of_events(suite):
    store = suite.store
    docs = store.find_documents(rule_arrivals.COLLECTION, _all())
    old = ecs.utc_iso(NOW - timedelta(days=60))
    for doc in docs:
        doc["arrived"] = old  # every Linux rule arrived long ago...
    fresh = next(d for d in docs if d["title"].lower().startswith("ssh brute"))
    fresh["arrived"] = ecs.utc_iso(NOW - timedelta(days=1))  # ...but one, yesterday
    windows = {"id": "arrival-test-windows", "title": "A Windows rule", "level": "high",
               "logsource": {"product": "windows", "service": "security"}, "arrived": fresh["arrived"]}
    store.put_documents(rule_arrivals.COLLECTION, docs + [windows])
    store.refresh()
    since = ecs.utc_iso(NOW - timedelta(days=7))
    keys = keys_for(store)
    with client_for(suite) as client:
        mine = call(client, "GET", "/api/v1/digest", keys[AGENCY_A], params={"since": since}).json()["new_rules"]
        assert [r["id"] for r in mine["rules"]] == [fresh["id"]] and mine["total"] == 1
        theirs = call(client, "GET", "/api/v1/digest", keys[AGENCY_B], params={"since": since}).json()["new_rules"]
        assert theirs == {"total": 0, "rules": []}  # nginx logs: no SSH rule covers them
        everyone = call(client, "GET", "/api/v1/digest", keys["analyst"], params={"since": since}).json()
        assert [r["id"] for r in everyone["new_rules"]["rules"]] == [fresh["id"]]
        later = call(client, "GET", "/api/v1/digest", keys[AGENCY_A],
                     params={"since": ecs.utc_iso(NOW - timedelta(hours=1))}).json()["new_rules"]
        assert later["total"] == 0  # it arrived before that


def test_a_store_that_refuses_does_not_stop_the_suite(suite):
    """A store that cannot be reached (a real client to a loopback port nobody listens on) is logged, not raised."""
    from soc.storage import store_from_url
    from tests.conftest import free_port

    down = store_from_url(f"opensearch://127.0.0.1:{free_port()}", index_prefix="arrivals-down", timeout=2)
    try:
        assert rule_arrivals.record(down, suite.ruleset.current) == 0
    finally:
        down.close()
