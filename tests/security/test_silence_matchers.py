"""Silence and inhibition matchers run in linear time on the label values a sender chose.

*Attack demonstrated:* an analyst's silence matcher ``{"name": "host.name", "op": "=~", "value": "(a|aa)*c"}`` and one
syslog line whose host name is 45 "a" froze the whole suite at 100% CPU: the matcher ran on Python's re (which
backtracks exponentially on it and holds the GIL), under the alert manager's lock; SIGTERM was not heard.

Through the real path: `soc serve` in a process of its own, the silence posted through the API with an analyst key,
the line sent over syslog TCP. The alert is stored within seconds (the attack's silence does not match it; a second,
ordinary regex silence does, so matching still works), and SIGTERM stops the suite. What RE2 cannot run with re's
meaning is refused with a 422 that says why, for silences and inhibition rules alike. Then the matchers alone on
64 KB values of textbook catastrophic patterns, the cap on what matchers see of a label value, and a stored matcher
that is refused now (one stored before) that must not stop the alert manager.
"""

from __future__ import annotations

import socket
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from detections.alerts import AlertManager
from detections.engine import Detection
from detections.inhibition import Inhibitor
from detections.silences import MAX_LABEL_VALUE, LabelMatcher, MatcherError, Silences, match_labels
from detections.sigma.loader import RuleMeta
from soc.storage import open_store
from soc.storage.base import AlertQuery
from tests.conftest import make_settings, wait_until
from tests.security.suite_process import suite_process
from tests.security.timing import LIMIT_SECONDS, too_slow

ATTACK = "(a|aa)*c"
HOST = "a" * 45
SIZE = 64 * 1024
# Textbook catastrophic patterns (exponential or high-degree polynomial on re) and what they consume.
CATASTROPHIC = [ATTACK, "(a+)+b", "(a*)*b", "(a|a?)+b", "(.*a){12}x", "(\\w+\\s?)*;", "(x+x+)+y", ".*.*.*=.*;",
                "((a+)|(b+))*c", "(\\d+\\.?)+x"]
FILLERS = ["a", "x", "a ", "1", "1.", "="]


def _later(hours: float = 1) -> str:
    return (datetime.now(timezone.utc) + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _silence(value: str, name: str = "host.name") -> dict:
    return {"matchers": [{"name": name, "op": "=~", "value": value}], "ends_at": _later(), "comment": "red team"}


def test_a_silence_regex_and_a_crafted_host_name_do_not_freeze_the_suite(tmp_path):
    with suite_process(tmp_path, keys=[("analyst", None)]) as (served, [analyst]):
        api = httpx.Client(base_url=served.api, headers={"X-API-Key": analyst}, timeout=10)
        attack = api.post("/api/v1/silences", json=_silence(ATTACK))
        assert attack.status_code == 201, attack.text
        ordinary = api.post("/api/v1/silences", json=_silence("a+|b+"))
        assert ordinary.status_code == 201, ordinary.text
        line = f"<38>Nov 22 10:00:00 {HOST} sshd[4242]: Accepted password for root from 203.0.113.5 port 22 ssh2"
        with socket.create_connection(("127.0.0.1", served.settings.syslog.tcp_port)) as sock:
            sock.sendall(line.encode() + b"\n")

        def alerts():
            found = api.get("/api/v1/alerts", params={"status": "suppressed", "limit": 50}).json()["alerts"]
            return [a for a in found if (a.get("labels") or {}).get("host.name") == HOST]

        # Before the fix: the suite froze here (100% CPU, every thread stopped), and this request timed out.
        raised = wait_until(alerts, timeout=30)
        assert raised, api.get("/api/v1/alerts").text
        for alert in raised:  # the ordinary silence matched; the attack's did not
            assert alert["suppressed_by"]["silences"] == [ordinary.json()["id"]], alert["suppressed_by"]
        assert httpx.get(f"{served.api}/api/v1/health", timeout=LIMIT_SECONDS * 5).status_code == 200

        # What RE2 cannot run with re's meaning is refused, with the reason, for silences and inhibition rules.
        for pattern in ("(a)\\1", "a(?=b)", "\\bword"):
            refused = api.post("/api/v1/silences", json=_silence(pattern))
            assert refused.status_code == 422, refused.text
            assert "linear time" in refused.text and "RE2" in refused.text, refused.text
            refused = api.post("/api/v1/inhibit-rules", json={
                "source_matchers": [{"name": "rule.name", "op": "=", "value": "x"}],
                "target_matchers": [{"name": "host.name", "op": "!~", "value": pattern}]})
            assert refused.status_code == 422 and "linear time" in refused.text, refused.text


@pytest.mark.parametrize("pattern", CATASTROPHIC)
def test_matchers_take_linear_time_on_64kb_values(pattern):
    """The matchers alone, both ops, on 64 KB runs of what the pattern consumes (the cap below is a second guard)."""
    slow = []
    for op in ("=~", "!~"):
        matcher = LabelMatcher.parse({"name": "host.name", "op": op, "value": pattern})
        for filler in FILLERS:
            labels = {"host.name": filler * (SIZE // len(filler))}
            took = too_slow(matcher.matches, labels)
            if took is not None:
                slow.append(f"{op} {filler!r}: {took:.2f} s")
    assert not slow, slow


def test_matchers_see_at_most_max_label_value_characters():
    alert = {"labels": {"host.name": "a" * SIZE, "tags": ["b" * 600] * 100}, "rule": {"title": "t" * SIZE},
             "severity": "high", "organization": {"id": "so-a"}}
    labels = match_labels(alert)
    assert {len(labels[k]) for k in ("host.name", "tags", "alertname")} == {MAX_LABEL_VALUE}
    assert labels["tags"].startswith("b" * 600 + ",b")
    assert LabelMatcher.parse({"name": "host.name", "op": "=~", "value": "a+"}).matches(labels)


@pytest.mark.parametrize("pattern", ["(?i)SO-.*", "(?s)a.b", "10\\.20\\..*", "[\\w.-]+", "x$"])
def test_what_analysts_write_still_works(pattern):
    LabelMatcher.parse({"name": "x", "op": "=~", "value": pattern})  # accepted
    with pytest.raises(MatcherError, match="linear time"):
        LabelMatcher.parse({"name": "x", "op": "=~", "value": pattern + "(?=y)"})


def test_a_stored_matcher_refused_now_does_not_stop_the_alert_manager(tmp_path):
    """A silence or inhibition rule stored before matchers ran on RE2 may hold what RE2 refuses: it is ignored (it
    matches nothing) and logged; the other silences still apply and alerts still flow."""
    store = open_store(make_settings(tmp_path))
    try:
        later = _later()
        store.put_documents("silences", [
            {"id": "old", "matchers": [{"name": "host.name", "op": "=~", "value": "(a)\\1"}], "starts_at": "2000",
             "ends_at": later, "created_by": "t", "comment": "c"},
            {"id": "good", "matchers": [{"name": "host.name", "op": "=~", "value": "h.*"}], "starts_at": "2000",
             "ends_at": later, "created_by": "t", "comment": "c"}])
        store.put_documents("inhibit_rules", [
            {"id": "old-rule", "source_matchers": [{"name": "x", "op": "=~", "value": "a(?!b)"}],
             "target_matchers": [{"name": "x", "op": "=", "value": ""}], "equal": []}])
        manager = AlertManager(store, silences=Silences(store), inhibitor=Inhibitor(store, seed_defaults=False))
        meta = RuleMeta(id="r1", name="r1", title="R", level="high", tags=[], description="", path="r1.yml")
        event = {"@timestamp": "2026-11-22T10:00:00.000Z", "event": {"id": "e1"}, "host": {"name": "host-1"},
                 "organization": {"id": "so-a"}}
        presented = manager.handle([Detection(meta=meta, kind="rule", agency="so-a", labels={}, events=[event],
                                              count=1, first_seen=event["@timestamp"], last_seen=event["@timestamp"])])
        assert presented == []  # suppressed by the good silence
        [alert] = store.list_alerts(AlertQuery(limit=10))
        assert alert["status"] == "suppressed" and alert["suppressed_by"] == {"silences": ["good"], "inhibited_by": []}
    finally:
        store.close()
