"""Sigma rules evaluated on the stream: modifiers, conditions, correlations, rule health and alert dedup."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from detections.alerts import AlertManager
from detections.engine import DetectionEngine
from detections.sigma.loader import load_rules
from soc.storage import AlertQuery, store_from_url


def _rule(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / f"{name}.yml"
    path.write_text(textwrap.dedent(body))
    return path


def _event(i: int, ts: str = "2026-11-22T10:00:00.000Z", **fields) -> dict:
    doc = {"@timestamp": ts, "event": {"id": f"e{i}", "dataset": "system.auth"}, "process": {"name": "sshd"},
           "organization": {"id": "so-a", "name": "A"}}
    for dotted, value in fields.items():
        node = doc
        parts = dotted.split("__")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return doc


HEADER = """
title: {title}
id: {id}
name: {name}
logsource:
    product: linux
    service: sshd
level: high
"""


def _single(tmp_path, detection: str, name="t") -> DetectionEngine:
    body = HEADER.format(title="T", id="11111111-1111-4111-8111-111111111111", name=name) + detection
    ruleset = load_rules([_rule(tmp_path, name, body)])
    assert ruleset.failed == 0, [h.reason for h in ruleset.health]
    return DetectionEngine(ruleset)


def _fires(engine: DetectionEngine, doc: dict) -> bool:
    return bool(engine.evaluate([doc]))


@pytest.mark.parametrize("detection, hit, miss", [
    ("detection:\n  sel:\n    message|contains: 'Failed Password'\n  condition: sel",
     {"message": "xx failed password yy"}, {"message": "accepted"}),
    ("detection:\n  sel:\n    message|startswith: 'Acc'\n  condition: sel",
     {"message": "accepted publickey"}, {"message": "not Accepted"}),
    ("detection:\n  sel:\n    message|endswith: 'ssh2'\n  condition: sel",
     {"message": "port 22 ssh2"}, {"message": "ssh2 port"}),
    ("detection:\n  sel:\n    message: 'Fail*for ?oot'\n  condition: sel",
     {"message": "Failed password for root"}, {"message": "Failed password for admin"}),
    ("detection:\n  sel:\n    message|contains|all: ['alpha', 'beta']\n  condition: sel",
     {"message": "beta then alpha"}, {"message": "alpha only"}),
    ("detection:\n  sel:\n    message|re: '^Failed \\w+ for r[o]+t$'\n  condition: sel",
     {"message": "Failed password for root"}, {"message": "failed password for root"}),
    ("detection:\n  sel:\n    message|re|i: '^failed'\n  condition: sel",
     {"message": "FAILED x"}, {"message": "x failed"}),
    ("detection:\n  sel:\n    source.ip|cidr: '203.0.113.0/24'\n  condition: sel",
     {"source__ip": "203.0.113.9"}, {"source__ip": "198.51.100.9"}),
    ("detection:\n  sel:\n    source.port|gte: 1024\n  condition: sel",
     {"source__port": 50000}, {"source__port": 22}),
    ("detection:\n  sel:\n    user.name|exists: true\n  condition: sel",
     {"user__name": "root"}, {}),
    ("detection:\n  sel:\n    user.name: null\n  condition: sel",
     {}, {"user__name": "root"}),
    ("detection:\n  sel:\n    event.category: authentication\n  condition: sel",
     {"event__category": ["session", "authentication"]}, {"event__category": ["network"]}),
    ("detection:\n  sel:\n    message|base64offset|contains: 'whoami'\n  condition: sel",
     {"message": "powershell -enc d2hvYW1p"}, {"message": "whoami"}),
    ("detection:\n  sel:\n    message|cased: 'Root'\n  condition: sel",
     {"message": "Root"}, {"message": "root"}),
    ("detection:\n  sel:\n    user.name|fieldref: user.effective.name\n  condition: sel",
     {"user__name": "root", "user__effective__name": "ROOT"}, {"user__name": "a", "user__effective__name": "b"}),
    ("detection:\n  a:\n    message|contains: x\n  b:\n    message|contains: y\n  f:\n    user.name: admin\n"
     "  condition: (a or b) and not f",
     {"message": "y", "user__name": "root"}, {"message": "x", "user__name": "admin"}),
    ("detection:\n  sel_a:\n    message|contains: x\n  sel_b:\n    message|contains: y\n  condition: all of sel_*",
     {"message": "xy"}, {"message": "x"}),
    ("detection:\n  sel_a:\n    message|contains: x\n  sel_b:\n    message|contains: y\n  condition: 1 of sel_*",
     {"message": "y"}, {"message": "z"}),
    ("detection:\n  sel:\n    message|windash|contains: ' -enc '\n  condition: sel",
     {"message": "powershell /enc SQBFAFgA"}, {"message": "powershell enc SQBFAFgA"}),
    ("detection:\n  sel:\n    message|wide|base64offset|contains: 'ping'\n  condition: sel",
     {"message": "-EncodedCommand cABpAG4AZwAgADEAMAAuADAALgAwAC4AMQA="}, {"message": "cGluZw=="}),
    ("detection:\n  sel:\n    message|wide|base64|contains: 'whoami'\n  condition: sel",
     {"message": "x dwBoAG8AYQBtAGkA y"}, {"message": "d2hvYW1p"}),
    ("detection:\n  sel:\n    message|utf16be|base64|contains: 'whoami'\n  condition: sel",
     {"message": "x AHcAaABvAGEAbQBp y"}, {"message": "dwBoAG8AYQBtAGkA"}),
    ("detection:\n  sel:\n    source.port|neq: 22\n  condition: sel",
     {"source__port": 2222}, {"source__port": 22}),
    ("detection:\n  sel:\n    event.created|hour: 3\n  condition: sel",
     {"event__created": "2026-11-22T03:59:00.000Z"}, {"event__created": "2026-11-22T04:00:00.000Z"}),
    ("detection:\n  sel:\n    message|base64|contains: 'whoami'\n  condition: sel",
     {"message": "x d2hvYW1p y"}, {"message": "whoami"}),
    ("detection:\n  sel:\n    source.port|lt: 1024\n  condition: sel",
     {"source__port": 22}, {"source__port": "not a number"}),
    ("detection:\n  keywords:\n    - 'POSSIBLE BREAK-IN'\n  condition: keywords",
     {"message": "reverse mapping - possible break-in attempt!"}, {"message": "hello"}),
])
def test_modifiers_and_conditions(tmp_path, detection, hit, miss):
    engine = _single(tmp_path, detection)
    assert _fires(engine, _event(1, **hit))
    assert not _fires(engine, _event(2, **miss))


def test_logsource_routing_keeps_rules_to_their_events(tmp_path):
    engine = _single(tmp_path, "detection:\n  sel:\n    message|contains: x\n  condition: sel")
    other = _event(3, message="x")
    other["event"]["dataset"] = "nginx.access"
    other["process"]["name"] = "nginx"
    assert not _fires(engine, other)


def test_rule_health_says_why_a_rule_cannot_run(tmp_path):
    _rule(tmp_path, "ok", HEADER.format(title="OK", id="22222222-2222-4222-8222-222222222222", name="ok")
          + "detection:\n  sel:\n    message: x\n  condition: sel\n")
    _rule(tmp_path, "placeholder", HEADER.format(title="PH", id="33333333-3333-4333-8333-333333333333",
                                                 name="ph") + "detection:\n  sel:\n    user.name|expand: '%admins%'\n"
                                                              "  condition: sel\n")
    _rule(tmp_path, "broken", "title: broken\nlogsource: {product: linux}\ndetection:\n  condition: nope\n")
    _rule(tmp_path, "dangling", textwrap.dedent("""
        title: Dangling
        id: 44444444-4444-4444-8444-444444444444
        correlation:
            type: event_count
            rules: [no_such_rule]
            group-by: [source.ip]
            timespan: 5m
            condition: {gte: 2}
        """))
    ruleset = load_rules([tmp_path])
    status = {h.title: (h.status, h.reason) for h in ruleset.health}
    assert status["OK"] == ("loaded", "")
    assert status["PH"][0] == "failed" and "admins" in status["PH"][1]
    assert status["broken"][0] == "failed" and "No detections" in status["broken"][1]
    assert status["Dangling"][0] == "failed" and "no_such_rule" in status["Dangling"][1]
    assert ruleset.loaded == 1 and ruleset.failed == 3


def _ts(second: int) -> str:
    return f"2026-11-22T10:{second // 60:02d}:{second % 60:02d}.000Z"


@pytest.fixture
def demo_engine() -> DetectionEngine:
    from detections.settings import DetectionsConfig

    ruleset = load_rules(DetectionsConfig().sigma_rule_dirs)
    assert ruleset.failed == 0
    return DetectionEngine(ruleset)


def _failure(i: int, second: int, ip: str = "203.0.113.50", agency: str = "so-a") -> dict:
    doc = _event(i, _ts(second), source__ip=ip, user__name="root", event__action="ssh_login",
                 event__outcome="failure")
    doc["organization"]["id"] = agency
    return doc


def _success(i: int, second: int, ip: str = "203.0.113.50") -> dict:
    return _event(i, _ts(second), source__ip=ip, user__name="root", event__action="ssh_login",
                  event__outcome="success")


def test_event_count_needs_the_threshold_within_the_window(demo_engine):
    # 4 failures in 5 minutes: nothing; failures spread over 20 minutes never reach 5 in a window.
    assert not [d for d in demo_engine.evaluate([_failure(i, i) for i in range(4)])
                if d.meta.name == "soc_ssh_brute_force"]
    spread = [_failure(100 + i, 200 + i * 240, ip="203.0.113.51") for i in range(6)]
    assert not [d for d in demo_engine.evaluate(spread) if d.meta.name == "soc_ssh_brute_force"]
    fired = [d for d in demo_engine.evaluate([_failure(4, 10)]) if d.meta.name == "soc_ssh_brute_force"]
    assert len(fired) == 1 and fired[0].count == 5 and fired[0].labels == {"source.ip": "203.0.113.50"}


def test_correlations_are_per_agency(demo_engine):
    mixed = [_failure(i, i, agency="so-a" if i % 2 else "so-b") for i in range(8)]
    assert not [d for d in demo_engine.evaluate(mixed) if d.meta.name == "soc_ssh_brute_force"]


def test_login_after_brute_force_needs_the_order(demo_engine):
    ip = "203.0.113.60"
    assert not [d for d in demo_engine.evaluate([_success(1, 0, ip)] + [_failure(10 + i, 1 + i, ip) for i in range(6)])
                if d.meta.name == "soc_ssh_login_after_brute_force"]
    fired = [d for d in demo_engine.evaluate([_success(2, 30, ip)]) if d.meta.name == "soc_ssh_login_after_brute_force"]
    assert len(fired) == 1
    assert "e2" in {e["event"]["id"] for e in fired[0].events}


def test_repeats_update_one_alert_with_the_count(demo_engine, tmp_path):
    store = store_from_url(f"sqlite:///{tmp_path / 'a.db'}")
    store.open()
    manager = AlertManager(store, dedup_window_seconds=3600)
    for i in range(12):
        manager.handle(demo_engine.evaluate([_failure(i, i * 3)]))
    brute = store.list_alerts(AlertQuery(rule_id="3c1a9f0e-8e2d-4b6a-a7c5-9d0e1f2a3b03"))
    assert len(brute) == 1
    assert brute[0]["count"] == 12 and len(brute[0]["evidence"]) == 12
    assert brute[0]["threat"]["technique"] == ["T1110.001"] and brute[0]["threat"]["tactic"] == ["credential-access"]
    # A new manager (a restart) finds the open alert in the store and keeps counting on it.
    again = AlertManager(store, dedup_window_seconds=3600)
    again.handle(demo_engine.evaluate([_failure(50, 40)]))
    brute = store.list_alerts(AlertQuery(rule_id="3c1a9f0e-8e2d-4b6a-a7c5-9d0e1f2a3b03"))
    assert len(brute) == 1 and brute[0]["count"] == 13
    # Closed alerts are not reopened: the next detection raises a new one.
    brute[0]["status"] = "closed"
    store.upsert_alerts([brute[0]])
    third = AlertManager(store, dedup_window_seconds=3600)
    third.handle(demo_engine.evaluate([_failure(51, 41)]))
    assert len(store.list_alerts(AlertQuery(rule_id="3c1a9f0e-8e2d-4b6a-a7c5-9d0e1f2a3b03"))) == 2
    store.close()


def test_a_yaml_error_costs_only_its_own_file(tmp_path):
    _rule(tmp_path, "good", HEADER.format(title="Good", id="55555555-5555-4555-8555-555555555555", name="good")
          + "detection:\n  sel:\n    message: x\n  condition: sel\n")
    (tmp_path / "bad.yml").write_text("title: Bad\ndescription: colon: in: a plain scalar: breaks\n  - x\n")
    ruleset = load_rules([tmp_path], pipeline=None)
    status = {h.title: h for h in ruleset.health}
    assert status["Good"].status == "loaded"
    assert status["bad.yml"].status == "failed" and "cannot parse" in status["bad.yml"].reason


def test_yaml_that_is_not_a_rule_is_reported(tmp_path):
    (tmp_path / "list.yml").write_text("- a\n- b\n")
    ruleset = load_rules([tmp_path], pipeline=None)
    assert [h.status for h in ruleset.health] == ["failed"]
    assert "not a Sigma rule" in ruleset.health[0].reason or "cannot parse" in ruleset.health[0].reason


def test_temporal_correlation_needs_every_rule_in_any_order(tmp_path):
    for name, rid, cond in (("a", "66666666-6666-4666-8666-666666666666", "message|contains: alpha"),
                            ("b", "77777777-7777-4777-8777-777777777777", "message|contains: beta")):
        _rule(tmp_path, name, HEADER.format(title=name, id=rid, name=f"rule_{name}")
              + f"detection:\n  sel:\n    {cond}\n  condition: sel\n")
    _rule(tmp_path, "both", textwrap.dedent("""
        title: Both
        id: 88888888-8888-4888-8888-888888888888
        name: both
        correlation:
            type: temporal
            rules: [rule_a, rule_b]
            group-by: [source.ip]
            timespan: 1m
        level: high
        """))
    engine = DetectionEngine(load_rules([tmp_path], pipeline=None))
    ip = {"source__ip": "203.0.113.5"}
    # beta before alpha still counts (unordered); alpha alone or too far apart does not.
    assert not [d for d in engine.evaluate([_event(1, _ts(0), message="alpha", **ip)]) if d.meta.name == "both"]
    assert not [d for d in engine.evaluate([_event(2, _ts(120), message="beta", **ip)]) if d.meta.name == "both"]
    fired = [d for d in engine.evaluate([_event(3, _ts(150), message="alpha", **ip)]) if d.meta.name == "both"]
    assert len(fired) == 1 and {e["event"]["id"] for e in fired[0].events} == {"e2", "e3"}
    other = [d for d in engine.evaluate([_event(4, _ts(151), message="beta", source__ip="203.0.113.6")])
             if d.meta.name == "both"]
    assert not other  # group-by keeps addresses apart


def test_soc_hunt_prints_one_json_detection_per_line(tmp_path):
    import json
    import subprocess
    import sys

    from tests.conftest import CORPUS, PROJECT

    case = next((CORPUS / "sigmahq" / "regression_data").rglob("proc_creation_win_dtrace_kernel_dump"))
    rule = next((CORPUS / "sigmahq" / "rules" / "windows").rglob("proc_creation_win_dtrace_kernel_dump.yml"))
    broken = tmp_path / "rules"
    broken.mkdir()
    (broken / "broken.yml").write_text("title: [unclosed\n")
    result = subprocess.run([sys.executable, "-m", "suite.cli", "hunt", "-q", "--rules", str(rule), "--rules",
                             str(broken), "--cache-dir", str(tmp_path / "cache"), str(case)],
                            capture_output=True, text=True, timeout=120, cwd=PROJECT)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 2 and {d["record_id"] for d in lines} == {33630917, 33630948}  # EventRecordID
    assert all(d["rule"]["title"].startswith("Kernel Memory Dump Via") or "dtrace" in d["rule"]["title"].lower()
               or d["rule"]["id"] for d in lines)
    assert lines[0]["attack"]["techniques"] and lines[0]["file"].endswith(".evtx")
    assert "Image" in lines[0]["event"] and lines[0]["event"]["EventID"] == 1
    assert "1 loaded, 1 failed" in " ".join(result.stderr.split())


def test_windows_channel_table_is_pysigmas():
    from sigma.pipelines.common import windows_logsource_mapping

    from soc.windows import SERVICE_CHANNELS

    assert SERVICE_CHANNELS == windows_logsource_mapping


def test_correlation_state_stays_bounded_under_a_scan_from_many_addresses():
    """Groups that never see a second hit must not pile up: passed windows are swept, and the live ones capped."""
    from detections import engine as engine_module
    from detections.engine import CorrelationEngine
    from detections.sigma.loader import CompiledCorrelation

    from detections.settings import DetectionsConfig

    corr = next(c for c in load_rules(DetectionsConfig().sigma_rule_dirs).correlations
                if c.meta.name == "soc_ssh_brute_force")
    source = corr.rules[0]
    base = 1_790_000_000.0

    def flat(i: int) -> dict:
        values = {name: f"v{i}" for name in corr.group_by}
        values["source.ip"] = f"10.{i // 65536}.{i // 256 % 256}.{i % 256}"
        return values

    # 30,000 addresses, one failed login each, one second apart: all but the last window's worth are stale.
    correlations = CorrelationEngine([corr])
    for i in range(30_000):
        correlations.feed(source, "so-a", flat(i), base + i, [{"@timestamp": "x"}])
    assert len(correlations.state) <= corr.timespan + engine_module.SWEEP_EVERY < 30_000
    # All inside one window: the cap holds.
    crowded = CorrelationEngine([corr])
    for i in range(engine_module.MAX_GROUPS + 2 * engine_module.SWEEP_EVERY):
        crowded.feed(source, "so-a", flat(i), base, [{"@timestamp": "x"}])
    assert len(crowded.state) <= engine_module.MAX_GROUPS + engine_module.SWEEP_EVERY


def _correlation(kind: str, rules: list[str], count: int = 3, timespan: int = 3600):
    from detections.sigma.loader import CompiledCorrelation, RuleMeta

    meta = RuleMeta(id=f"corr-{kind}-{'-'.join(rules)}", name=None, title=kind, level="high", tags=[], description="", path="")
    return CompiledCorrelation(meta=meta, type=kind, rules=rules, group_by=["source.ip"], timespan=timespan,
                               op="gte", count=count if kind in ("event_count", "value_count") else len(rules),
                               fieldref=None, aliases={})


def _evidence_event(name: str, second: int) -> dict:
    return {"@timestamp": f"2026-09-21T10:{second // 60:02d}:{second % 60:02d}.000Z", "event": {"id": name}}


def test_correlation_evidence_is_bounded_over_all_groups_and_counts_stay_right():
    """A flood that matches a counting correlation in many groups without firing it must not keep every event as
    evidence (each group may keep MAX_PENDING): past the total budget the oldest hits give up their events, and an
    alert that fires later still counts every event of its window, with the window's times."""
    from detections.engine import CorrelationEngine

    corr = _correlation("event_count", ["failed-login"], count=4)
    correlations = CorrelationEngine([corr], evidence_limit=50)
    base = 1_790_000_000.0
    for group in range(40):  # 40 addresses, each one hit short of firing
        for i in range(3):
            assert correlations.feed("failed-login", "so-a", {"source.ip": f"g{group}"}, base + i,
                                     [_evidence_event(f"g{group}-{i}", i)]) == []
    kept = sum(len(hit.events) for g in correlations.state.values() for hit in g.pending)
    assert kept <= 50 < 40 * 3
    # Group 0's evidence went first; its next hit fires, counting all four events and their first time.
    fired = correlations.feed("failed-login", "so-a", {"source.ip": "g0"}, base + 3, [_evidence_event("g0-3", 3)])
    assert len(fired) == 1
    assert (fired[0].count, fired[0].first_seen) == (4, "2026-09-21T10:00:00.000Z")
    assert [e["event"]["id"] for e in fired[0].events] == ["g0-3"]
    # The last group kept all of its evidence, which comes back as the documents that were fed.
    fired = correlations.feed("failed-login", "so-a", {"source.ip": "g39"}, base + 3, [_evidence_event("g39-3", 3)])
    assert [e["event"]["id"] for e in fired[0].events] == [f"g39-{i}" for i in range(4)]


def test_reported_evidence_does_not_use_up_the_budget():
    """Hits already reported hold no events: a busy group firing again and again must not take a slow group's
    evidence away."""
    from detections.engine import CorrelationEngine

    busy = _correlation("event_count", ["failed-login"], count=1, timespan=10)
    slow = _correlation("event_count", ["port-scan"], count=3)
    correlations = CorrelationEngine([busy, slow], evidence_limit=100)
    base = 1_790_000_000.0
    for i in range(2):
        correlations.feed("port-scan", "so-a", {"source.ip": "slow"}, base + i, [_evidence_event(f"slow-{i}", i)])
    for i in range(500):  # each fires at once and is reported
        assert correlations.feed("failed-login", "so-a", {"source.ip": "busy"}, base + 2 + i / 1000,
                                 [_evidence_event(f"busy-{i}", 2)])
    fired = correlations.feed("port-scan", "so-a", {"source.ip": "slow"}, base + 3, [_evidence_event("slow-2", 3)])
    assert [e["event"]["id"] for e in fired[0].events] == ["slow-0", "slow-1", "slow-2"]


def test_a_long_sequence_reports_the_event_that_started_it():
    """A temporal correlation reports every event of its window: more than MAX_PENDING hits in it must not cost the
    first ones their evidence."""
    from detections import engine as engine_module
    from detections.engine import CorrelationEngine

    correlations = CorrelationEngine([_correlation("temporal_ordered", ["a", "b", "c"])])
    base = 1_790_000_000.0
    correlations.feed("a", "so-a", {"source.ip": "x"}, base, [_evidence_event("a", 0)])
    hits = engine_module.MAX_PENDING + 50
    for i in range(hits):
        assert correlations.feed("b", "so-a", {"source.ip": "x"}, base + 1 + i, [_evidence_event(f"b{i}", 1)]) == []
    fired = correlations.feed("c", "so-a", {"source.ip": "x"}, base + 1 + hits, [_evidence_event("c", 2)])
    assert len(fired) == 1
    ids = [e["event"]["id"] for e in fired[0].events]
    assert ids[0] == "a" and ids[-1] == "c" and len(ids) == hits + 2
    assert (fired[0].count, fired[0].first_seen) == (hits + 2, "2026-09-21T10:00:00.000Z")


def test_untrusted_evidence_is_counted_even_when_the_budget_drops_its_events():
    """Containment trusts a correlation only if every event behind it came from a trusted sender: the count of
    untrusted events survives the evidence budget, so an attacker cannot hide forged lines by flooding."""
    from detections.engine import CorrelationEngine

    def event(eid: str, i: int, trusted: bool) -> dict:
        doc = _evidence_event(eid, i)
        doc["soc"] = {"sender": {"trusted": trusted}}
        return doc

    corr = _correlation("event_count", ["failed-login"], count=4)
    correlations = CorrelationEngine([corr], evidence_limit=10)
    base = 1_790_000_000.0
    for i in range(3):  # the forged lines come first...
        correlations.feed("failed-login", "so-a", {"source.ip": "x"}, base + i, [event(f"forged-{i}", i, False)])
    for group in range(30):  # ...a flood pushes their events out of the budget...
        correlations.feed("failed-login", "so-a", {"source.ip": f"flood{group}"}, base + 3, [event("f", 3, True)])
    assert sum(len(h.events) for h in correlations.state[(corr.meta.id, "so-a", ("x",))].pending) < 3
    # ...and the trusted line that makes it fire does not make the whole detection trusted
    [fired] = correlations.feed("failed-login", "so-a", {"source.ip": "x"}, base + 4, [event("real", 4, True)])
    assert fired.count == 4 and fired.untrusted == 3
    [clean] = [d for i in range(4) for d in correlations.feed("failed-login", "so-a", {"source.ip": "y"}, base + 5 + i,
                                                            [event(f"y{i}", 5, True)])]
    assert clean.untrusted == 0
