"""Rule exceptions as data (detections/exceptions.py): a known-benign event matched by a rule raises no alert, in the
engine (and so in `soc hunt`, which asks the engine for matches) and in a running suite fed through HTTP ingest;
entries limited to agencies or computers, expiry, correlations, a changed file reloaded, a broken file refused at
start and, in a running suite, the last good one kept."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from datetime import date, timedelta

import pytest

from detections.engine import DetectionEngine
from detections.exceptions import ExceptionsError, load_exceptions, parse_exceptions
from detections.settings import DetectionsConfig
from detections.sigma.loader import load_rules
from soc.errors import ConfigError
from soc.storage.base import AlertQuery
from soc.windows import routing_key, view_from_winlogbeat
from tests.api_fixtures import AGENCY_A, call, client_for, keys_for, running_suite
from tests.conftest import CORPUS, PROJECT, make_settings, wait_for
from tests.ingest_samples import WINLOGBEAT_4688, line

PROCESS_CREATION = CORPUS / "sigmahq" / "rules" / "windows" / "process_creation"
DOWNLOAD = "19b08b1c-861d-4e75-a1ef-ea0c1baf202b"  # Suspicious Download Via Certutil.EXE (test, medium)
DIRECT_IP = "13e6fe51-d478-4c7e-b0f2-6da9b400a829"  # ... From Direct IP Via Certutil.EXE (test, high)
RULE_FILES = ("proc_creation_win_certutil_download.yml", "proc_creation_win_certutil_download_direct_ip.yml")


def _rules(tmp_path):
    folder = tmp_path / "rules"
    folder.mkdir(exist_ok=True)
    for name in RULE_FILES:
        shutil.copy(PROCESS_CREATION / name, folder / name)
    return folder


def _event(agency: str = "so-a", computer: str = "PC-KT-07.sokhdt.local", record: int = 884301,
           command: str | None = None) -> dict:
    doc = copy.deepcopy(WINLOGBEAT_4688)
    doc["organization"] = {"id": agency}
    doc["winlog"]["computer_name"] = computer
    doc["winlog"]["record_id"] = str(record)
    if command:
        doc["winlog"]["event_data"]["CommandLine"] = command
    return doc


def _engine(tmp_path, text: str | None) -> DetectionEngine:
    exceptions = parse_exceptions(text, "test.yaml") if text is not None else None
    return DetectionEngine(load_rules([_rules(tmp_path)]), exceptions=exceptions)


def _fired(engine: DetectionEngine, doc: dict) -> set[str]:
    return {d.meta.id for d in engine.evaluate([doc])}


PATCH_SERVER = f"""
exceptions:
  - rule: {DOWNLOAD}
    reason: the patch server fetches its updates with certutil
    author: nguyen.van.a
    match:
      CommandLine|contains: 203.0.113.9
      Image|endswith: '\\certutil.exe'
"""


def test_an_exception_turns_away_the_match_of_its_rule_only(tmp_path):
    assert _fired(_engine(tmp_path, None), _event()) == {DOWNLOAD, DIRECT_IP}
    engine = _engine(tmp_path, PATCH_SERVER)
    assert _fired(engine, _event()) == {DIRECT_IP}
    assert engine.suppressed == 1
    # Every condition must hold (AND): another address is not the patch server.
    other = _event(command="certutil.exe -urlcache -split -f http://198.51.100.7/a.exe a.exe")
    assert _fired(engine, other) == {DOWNLOAD, DIRECT_IP}


def test_entries_for_one_rule_are_alternatives_and_values_of_a_condition_too(tmp_path):
    text = f"""
exceptions:
  - rule: {DOWNLOAD}
    reason: first
    author: a
    match: {{CommandLine|contains: [nothing-like-this, 198.51.100.7]}}
  - rule: suspicious download via certutil.exe is not a rule id
    reason: never applies
    author: a
    match: {{CommandLine|contains: 203.0.113.9}}
  - rule: {DOWNLOAD.upper()}
    reason: second (ids compare case-insensitively)
    author: a
    match: {{CommandLine|startswith: CERTUTIL.EXE -urlcache -split -f http://203.}}
"""
    engine = _engine(tmp_path, text)
    assert _fired(engine, _event()) == {DIRECT_IP}
    assert _fired(engine, _event(command="certutil.exe -urlcache -f http://198.51.100.7/x")) == {DIRECT_IP}
    assert _fired(engine, _event(command="certutil.exe -urlcache -f http://192.0.2.1/x")) == {DOWNLOAD, DIRECT_IP}


def test_agency_and_computer_limits(tmp_path):
    text = f"""
exceptions:
  - rule: {DOWNLOAD}
    reason: only this agency's patch server
    author: a
    agencies: [so-a]
    computers: [pc-kt-07.sokhdt.local, PC-KT-10]
"""
    engine = _engine(tmp_path, text)
    assert _fired(engine, _event()) == {DIRECT_IP}  # PC-KT-07.sokhdt.local is pc-kt-07.sokhdt.local
    assert _fired(engine, _event(agency="so-b")) == {DOWNLOAD, DIRECT_IP}
    assert _fired(engine, _event(computer="PC-KT-08.sokhdt.local")) == {DOWNLOAD, DIRECT_IP}
    # Names compare whole: a short name is not the first label of a longer one (which any sender may write).
    assert _fired(engine, _event(computer="PC-KT-10")) == {DIRECT_IP}
    assert _fired(engine, _event(computer="PC-KT-10.evil.lan")) == {DOWNLOAD, DIRECT_IP}
    assert _fired(engine, _event(computer="PC-KT-07")) == {DOWNLOAD, DIRECT_IP}
    # ECS events name their computer in host.name.
    ecs_text = """
exceptions:
  - rule: soc_ssh_failed_login
    reason: the scanner tests its own logins
    author: a
    computers: [scanner-01.so-a.local]
"""
    ssh = DetectionEngine(load_rules([PROJECT / "detections" / "rules" / "linux" / "ssh_failed_login.yml"]),
                          exceptions=parse_exceptions(ecs_text, "x"))
    doc = {"@timestamp": "2026-11-22T10:00:00Z", "event": {"dataset": "system.auth", "action": "ssh_login",
                                                          "outcome": "failure"},
           "process": {"name": "sshd"}, "host": {"name": "scanner-01.so-a.local"}, "organization": {"id": "so-a"}}
    assert ssh.match(*_ecs_view(doc)) == []
    doc["host"]["name"] = "web-01"
    assert [r.meta.name for r in ssh.match(*_ecs_view(doc))] == ["soc_ssh_failed_login"]


def _ecs_view(doc):
    from detections.sigma.logsource import view_of

    return view_of(doc)


def test_an_expired_entry_no_longer_applies(tmp_path):
    yesterday, tomorrow = date.today() - timedelta(days=2), date.today() + timedelta(days=1)
    for day, fired in ((yesterday, {DOWNLOAD, DIRECT_IP}), (tomorrow, {DIRECT_IP})):
        engine = _engine(tmp_path, PATCH_SERVER + f"    expires: {day.isoformat()}\n")
        assert _fired(engine, _event()) == fired, day
    past = parse_exceptions(PATCH_SERVER + f"    expires: {yesterday.isoformat()}\n", "x").entries[0]
    assert past.expired() and "expired" in past.describe()


def test_the_hunt_path_applies_exceptions_too(tmp_path):
    """`soc hunt` builds DetectionEngine(ruleset, exceptions=load_exceptions(path)) and asks it for matches."""
    path = tmp_path / "exceptions.yaml"
    path.write_text(PATCH_SERVER, encoding="utf-8")
    engine = DetectionEngine(load_rules([_rules(tmp_path)]), exceptions=load_exceptions(path))
    view = view_from_winlogbeat(_event())
    assert {r.meta.id for r in engine.match(view, routing_key(view))} == {DIRECT_IP}


def test_a_correlation_exception_is_checked_against_its_group_values(tmp_path):
    rules = load_rules([PROJECT / "detections" / "rules" / "linux"])
    text = """
exceptions:
  - rule: soc_ssh_brute_force
    reason: the vulnerability scanner
    author: a
    match: {source.ip: 198.51.100.50}
"""

    def failures(address):
        return [{"@timestamp": f"2026-11-22T10:00:{n:02d}Z", "event": {"dataset": "system.auth",
                 "action": "ssh_login", "outcome": "failure", "id": f"{address}-{n}"}, "process": {"name": "sshd"},
                 "source": {"ip": address}, "user": {"name": "root"}, "host": {"name": "web-01"},
                 "organization": {"id": "so-a"}} for n in range(12)]

    plain = DetectionEngine(rules)
    assert "soc_ssh_brute_force" in {d.meta.name for d in plain.evaluate(failures("198.51.100.50"))}
    tuned = DetectionEngine(rules, exceptions=parse_exceptions(text, "x"))
    assert "soc_ssh_brute_force" not in {d.meta.name for d in tuned.evaluate(failures("198.51.100.50"))}
    assert "soc_ssh_brute_force" in {d.meta.name for d in tuned.evaluate(failures("198.51.100.51"))}


BROKEN = [
    ("exceptions: [", "", "not valid YAML"),
    ("- just a list", "", "mapping"),
    ("exceptions:\n  - rule: r\n    reason: x\n    author: y\n    match: {a|re: x}\n", "exceptions.0.match",
     "|contains"),
    ("exceptions:\n  - rule: r\n    reason: x\n    author: y\n    colour: red\n    match: {a: 1}\n",
     "exceptions.0.colour", "unknown key"),
    ("exceptions:\n  - rule: r\n    author: y\n    match: {a: 1}\n", "exceptions.0.reason", "required"),
    ("exceptions:\n  - rule: r\n    reason: x\n    author: y\n", "exceptions.0", "ids_exclude"),
    ("exceptions:\n  - rule: r\n    reason: x\n    author: y\n    match: {a|contains: ''}\n", "exceptions.0.match",
     "non-empty"),
    ("exceptions:\n  - rule: r\n    reason: x\n    author: y\n    expires: someday\n    match: {a: 1}\n",
     "exceptions.0.expires", ""),
]


@pytest.mark.parametrize("text,key,reason", BROKEN)
def test_a_broken_file_names_the_entry_and_the_reason(tmp_path, text, key, reason):
    path = tmp_path / "exceptions.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ExceptionsError) as caught:
        load_exceptions(path)
    assert isinstance(caught.value, ConfigError) and caught.value.source == str(path)
    assert caught.value.key.startswith(key) and reason in caught.value.reason, caught.value


def test_a_broken_file_stops_the_start_and_config_check_says_why(tmp_path):
    path = tmp_path / "exceptions.yaml"
    path.write_text("exceptions:\n  - rule: r\n", encoding="utf-8")
    settings = make_settings(tmp_path, SOC__DETECTIONS__RULE_EXCEPTIONS_FILE=str(path))
    from suite.runtime import Suite

    with pytest.raises(ExceptionsError):
        Suite(settings)
    config = tmp_path / "soc.yaml"
    config.write_text(json.dumps({"data_dir": str(tmp_path), "detections": {"rule_exceptions_file": str(path)}}))
    check = subprocess.run([sys.executable, "-m", "suite.cli", "config", "check", "--config", str(config)],
                           capture_output=True, text=True, cwd=PROJECT, timeout=120)
    assert check.returncode == 2 and str(path) in check.stderr and "exceptions.0" in check.stderr, check.stderr


def test_soc_rules_check_lists_each_rules_exceptions(tmp_path):
    path = tmp_path / "exceptions.yaml"
    path.write_text(PATCH_SERVER + """  - rule: no-such-rule
    reason: a typo
    author: b
    agencies: [so-a]
""", encoding="utf-8")
    config = tmp_path / "soc.yaml"
    config.write_text(json.dumps({"data_dir": str(tmp_path), "detections": {
        "sigma_rule_dirs": [str(_rules(tmp_path))], "rule_exceptions_file": str(path)}}))
    check = subprocess.run([sys.executable, "-m", "suite.cli", "rules", "check", "--json", "--config", str(config)],
                           capture_output=True, text=True, cwd=PROJECT, timeout=120)
    assert check.returncode == 0, check.stderr
    rules = {r["id"]: r for r in map(json.loads, check.stdout.splitlines())}
    [entry] = rules[DOWNLOAD]["exceptions"]
    assert entry["reason"].startswith("the patch server") and entry["author"] == "nguyen.van.a"
    assert entry["match"] == ["CommandLine|contains '203.0.113.9'", "Image|endswith '\\\\certutil.exe'"]
    assert rules[DIRECT_IP]["exceptions"] == []
    assert "exception #2 is for 'no-such-rule'" in check.stderr and "2 exceptions" in check.stderr


# --- in a running suite, through HTTP ingest -----------------------------------------------------------------------
def test_a_running_suite_applies_reloads_and_survives_a_broken_exceptions_file(tmp_path):
    from detections.active_rules import RULE_RELOADS

    path = tmp_path / "exceptions.yaml"
    path.write_text(f"""
exceptions:
  - rule: {DOWNLOAD}
    reason: the patch server
    author: a
    computers: [PC-KT-07.sokhdt.local]
""", encoding="utf-8")
    with running_suite(tmp_path / "suite", rule_dirs=[_rules(tmp_path)], extensions="[]",
                       SOC__DETECTIONS__RULE_EXCEPTIONS_FILE=str(path),
                       SOC__DETECTIONS__RULES_RELOAD_INTERVAL_SECONDS="0.2") as suite:
        keys = keys_for(suite.store)

        def send(*docs):
            with client_for(suite) as client:
                answer = call(client, "POST", "/api/v1/ingest", keys[AGENCY_A],
                              content=b"".join(line(d) + b"\n" for d in docs),
                              headers={"Content-Type": "application/x-ndjson"})
                assert answer.status_code == 202, answer.text
            assert suite.drain(30)

        def alerts(rule_id):
            suite.store.refresh()
            return suite.store.list_alerts(AlertQuery(rule_id=rule_id, limit=100))

        # The patch server's event: only the direct-IP rule alerts; the same from another computer: both.
        send(_event(record=1))
        wait_for(lambda: alerts(DIRECT_IP), 30, "the direct-IP alert")
        assert alerts(DOWNLOAD) == []
        send(_event(computer="PC-KT-08.sokhdt.local", record=2))
        wait_for(lambda: alerts(DOWNLOAD), 30, "the alert of an unexcepted computer")
        assert {h for a in alerts(DOWNLOAD) for h in json.dumps(a).split('"') if h.startswith("PC-KT")} \
            == {"PC-KT-08.sokhdt.local"}

        # A changed file is taken while the suite runs: now PC-KT-09 is excepted too.
        path.write_text(path.read_text().replace("[PC-KT-07.sokhdt.local]", "[PC-KT-07.sokhdt.local, PC-KT-09]"),
                        encoding="utf-8")
        wait_for(lambda: len(suite.ruleset.exceptions.entries[0].computers) == 2, 10, "the reload")
        send(_event(computer="PC-KT-09", record=3))
        send(_event(computer="PC-KT-08.sokhdt.local", record=4, command="certutil -urlcache -f http://x/y"))
        wait_for(lambda: sum(a["count"] for a in alerts(DOWNLOAD)) >= 2, 30, "the second PC-KT-08 alert")
        assert "PC-KT-09" not in json.dumps(alerts(DOWNLOAD))

        # A broken file: logged, counted, and the last good exceptions stay in use.
        failed = RULE_RELOADS.labels(what="exceptions", result="failed")._value.get()
        path.write_text("exceptions: [ {rule: x", encoding="utf-8")
        wait_for(lambda: RULE_RELOADS.labels(what="exceptions", result="failed")._value.get() > failed, 10,
                 "the failed reload to be counted")
        assert len(suite.ruleset.exceptions.entries[0].computers) == 2
        assert "not taken" in suite.ruleset.last_error
        send(_event(record=5))
        send(_event(computer="PC-KT-08.sokhdt.local", record=6, command="certutil -urlcache -f http://x/z"))
        wait_for(lambda: sum(a["count"] for a in alerts(DOWNLOAD)) >= 3, 30, "the third PC-KT-08 alert")
        assert "PC-KT-07" not in json.dumps(alerts(DOWNLOAD))


def test_the_default_has_no_exceptions_file():
    assert DetectionsConfig().rule_exceptions_file is None
