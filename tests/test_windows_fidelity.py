"""What Hayabusa found on Windows events and the suite missed (issue 19), each through the paths that serve it: an
EVTX record as `soc hunt` sees it, and the same event as a Winlogbeat document as the live suite stores and
evaluates it (soc/windows.py builds both views). Rules are SigmaHQ's own, from ../shared/corpus, unchanged; events
are the corpus's real EVTX records or records built from the Windows event schema (the fields Windows writes).
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import evtx
import pytest

from detections.engine import DetectionEngine
from detections.sigma.loader import load_rules
from detections.sigma.logsource import view_of
from soc import windows
from tests.conftest import CORPUS, PROJECT

SIGMA = CORPUS / "sigmahq" / "rules" / "windows"
EVTX = CORPUS / "evtx-attack-samples"
PROCESS = SIGMA / "process_creation"


def _engine(*rules: Path) -> DetectionEngine:
    ruleset = load_rules(list(rules), cache_dir=None)
    assert ruleset.loaded and not ruleset.failed, [h.reason for h in ruleset.health if h.status == "failed"]
    return DetectionEngine(ruleset)


def _record(channel: str, event_id: int, data: dict, record_id: int = 1) -> dict:
    """An EVTX record as the evtx package gives it (the JSON of its XML)."""
    return {"Event": {"System": {
        "Provider": {"#attributes": {"Name": "Microsoft-Windows-Security-Auditing"}}, "EventID": event_id,
        "Channel": channel, "Computer": "PC01.example.corp", "EventRecordID": record_id,
        "TimeCreated": {"#attributes": {"SystemTime": "2026-12-01T10:00:00.000000Z"}}}, "EventData": data}}


def _views(record: dict) -> dict[str, dict]:
    """The views of one event the rules are evaluated on: as `soc hunt` reads an EVTX file, as the suite stores it
    from an EVTX file (`soc ingest`), and as a Winlogbeat agent sends it (numbers, no aliases yet)."""
    stored = windows.winlogbeat_from_evtx(record)
    agent = copy.deepcopy(stored)
    agent["winlog"]["event_data"] = dict(record["Event"]["EventData"])
    agent["winlog"]["event_id"] = int(agent["winlog"]["event_id"])
    return {"evtx": windows.view_from_evtx(record), "stored": view_of(stored)[0],
            "agent": view_of(windows.normalize_winlogbeat(agent))[0]}


def _titles(engine: DetectionEngine, view: dict) -> set[str]:
    return {rule.meta.title for rule in engine.match(view, windows.routing_key(view))}


def _corpus_titles(engine: DetectionEngine, path: Path) -> dict[str, set[int]]:
    """Rule title -> EventRecordIDs it detects in a corpus EVTX file, read as `soc hunt` and as stored documents."""
    from collectors.sources.evtx import iter_evtx_documents

    found: dict[str, set[int]] = {}
    for record in evtx.PyEvtxParser(str(path)).records_json():
        view = windows.view_from_evtx(json.loads(record["data"]))
        for title in _titles(engine, view):
            found.setdefault(title, set()).add(int(view["EventRecordID"]))
    stored: dict[str, set[int]] = {}
    for doc in iter_evtx_documents(path):
        view, key = view_of(doc)
        for rule in engine.match(view, key):
            stored.setdefault(rule.meta.title, set()).add(int(view["EventRecordID"]))
    assert stored == found, "a stored event must match exactly what hunting its EVTX record matches"
    return found


# --- Security 4688: IntegrityLevel, User, LogonId ------------------------------------------------------------------
def _process_4688(**data) -> dict:
    base = {"SubjectUserSid": "S-1-5-18", "SubjectUserName": "PC01$", "SubjectDomainName": "EXAMPLE",
            "SubjectLogonId": "0x3e7", "NewProcessId": "0x1fc", "TokenElevationType": "%%1936",
            "ProcessId": "0x278", "TargetUserSid": "S-1-0-0", "TargetUserName": "-", "TargetDomainName": "-",
            "TargetLogonId": "0x0", "MandatoryLabel": "S-1-16-16384"}
    return _record("Security", 4688, {**base, **data})


def test_4688_integrity_level_reaches_process_creation_rules():
    """"Conhost legacy option" names the level both ways ('High', 'S-1-16-12288'); 4688 carries the SID as
    MandatoryLabel, some renderers the words."""
    engine = _engine(PROCESS / "proc_creation_win_conhost_legacy_option.yml")
    command = "\\??\\C:\\Windows\\system32\\conhost.exe 0xffffffff -ForceV1"
    for label in ("S-1-16-12288", "Mandatory Label\\High Mandatory Level"):
        record = _process_4688(NewProcessName="C:\\Windows\\System32\\conhost.exe", CommandLine=command,
                               MandatoryLabel=label)
        for path, view in _views(record).items():
            assert _titles(engine, view) == {"Suspicious High IntegrityLevel Conhost Legacy Option"}, (label, path)
    medium = _process_4688(NewProcessName="C:\\Windows\\System32\\conhost.exe", CommandLine=command,
                           MandatoryLabel="S-1-16-8192")
    assert not any(_titles(engine, view) for view in _views(medium).values())


def test_4688_user_is_the_new_process_account_as_sysmon_names_it():
    """"tscon as SYSTEM" asks User to contain AUTHORI: 4688 names SYSTEM by its SID and the machine account."""
    engine = _engine(PROCESS / "proc_creation_win_tscon_localsystem.yml")
    as_system = _process_4688(NewProcessName="C:\\Windows\\System32\\tscon.exe", CommandLine="tscon 2 /dest:rdp-tcp#0")
    title = {rule.meta.title for rule in engine.ruleset.rules}
    for path, view in _views(as_system).items():
        assert view["User"] == "NT AUTHORITY\\SYSTEM", path
        assert _titles(engine, view) == title, path
    as_user = _process_4688(NewProcessName="C:\\Windows\\System32\\tscon.exe", SubjectUserSid="S-1-5-21-1-2-3-1001",
                            SubjectUserName="alice", SubjectDomainName="EXAMPLE", SubjectLogonId="0x5a1f2")
    for view in _views(as_user).values():
        assert view["User"] == "EXAMPLE\\alice" and view["LogonId"] == "0x5a1f2"
        assert not _titles(engine, view)


def test_4688_logon_id_makes_the_null_filter_exclude_only_what_it_should():
    """WmiPrvSE Spawned A Process excludes LogonId 0x3e7 and ``LogonId: null``. Without the mapping every 4688
    had no LogonId, so the null filter excluded them all; now only SYSTEM's children are excluded, and a child
    running as another account (Windows 10's Target fields) is detected."""
    engine = _engine(PROCESS / "proc_creation_win_wmiprvse_spawning_process.yml")
    title = {rule.meta.title for rule in engine.ruleset.rules}
    parent = "C:\\Windows\\System32\\wbem\\WmiPrvSE.exe"
    relayed = _process_4688(NewProcessName="C:\\Windows\\System32\\cmd.exe", ParentProcessName=parent,
                            CommandLine="cmd.exe /Q /c cd \\ 1> \\\\127.0.0.1\\ADMIN$\\__1 2>&1",
                            SubjectUserSid="S-1-5-20", SubjectUserName="PC01$", SubjectLogonId="0x3e4",
                            TargetUserSid="S-1-0-0", TargetUserName="Administrator", TargetDomainName="EXAMPLE",
                            TargetLogonId="0x82215a", MandatoryLabel="S-1-16-12288")
    system_child = _process_4688(NewProcessName="C:\\Windows\\System32\\cmd.exe", ParentProcessName=parent)
    for path, view in _views(relayed).items():
        assert (view["LogonId"], view["User"]) == ("0x82215a", "EXAMPLE\\Administrator"), path
        assert _titles(engine, view) == title, path
    for view in _views(system_child).values():
        assert view["LogonId"] == "0x3e7" and not _titles(engine, view)
    # The corpus: an NTLM self-relay whose WmiPrvSE starts notepad as Administrator (record 21374).
    found = _corpus_titles(engine, EVTX / "Privilege Escalation" / "NTLM2SelfRelay-med0x2e-security_4624_4688.evtx")
    assert found == {"WmiPrvSE Spawned A Process": {21374}}


# --- Security 5156 as a network connection ---------------------------------------------------------------------------
def test_5156_is_a_network_connection():
    engine = _engine(SIGMA / "network_connection")
    found = _corpus_titles(engine, EVTX / "Command and Control" / "DE_RDP_Tunnel_5156.evtx")
    # Outbound RDP through plink; the same capture's Kerberos connections come from lsass, which the Kerberos
    # rule's filter names by drive path (C:\Windows\System32\lsass.exe) and 5156 by device path.
    assert set(found) == {"Outbound RDP Connections Over Non-Standard Tools"}
    assert len(found["Outbound RDP Connections Over Non-Standard Tools"]) == 2
    record = _record("Security", 5156, {
        "ProcessID": 4242, "Application": "\\device\\harddiskvolume2\\users\\bob\\plink.exe", "Direction": "%%14593",
        "SourceAddress": "10.1.2.3", "SourcePort": "50123", "DestAddress": "10.9.9.9", "DestPort": "3389",
        "Protocol": 6, "FilterRTID": 0, "LayerName": "%%14611", "LayerRTID": 48})
    for path, view in _views(record).items():
        assert view["Initiated"] == "true" and view["DestinationPort"] == "3389", path
        assert [str(v) for v in view["Protocol"]] == ["6", "tcp"], path
        assert view["Image"][1] == "C:\\users\\bob\\plink.exe", path
        assert _titles(engine, view) == {"Outbound RDP Connections Over Non-Standard Tools"}, path
    inbound = copy.deepcopy(record)
    inbound["Event"]["EventData"]["Direction"] = "%%14592"
    assert not any(_titles(engine, view) for view in _views(inbound).values())


# --- keyword rules on EVTX and Winlogbeat JSON ----------------------------------------------------------------------
def _sysmon_1(command: str, event_id: int = 1) -> dict:
    record = _record("Microsoft-Windows-Sysmon/Operational", event_id, {
        "UtcTime": "2026-12-01 10:00:00.000", "ProcessGuid": "{00000000-0000-0000-0000-000000000001}",
        "ProcessId": "4242", "Image": "C:\\Users\\bob\\m.exe", "CommandLine": command,
        "User": "EXAMPLE\\bob", "IntegrityLevel": "High", "ParentImage": "C:\\Windows\\System32\\cmd.exe"})
    record["Event"]["System"]["Provider"]["#attributes"]["Name"] = "Microsoft-Windows-Sysmon"
    return record


def test_keyword_rules_search_the_values_of_windows_events(tmp_path):
    engine = _engine(SIGMA / "builtin" / "win_alert_mimikatz_keywords.yml")
    hit = _sysmon_1("m.exe privilege::debug sekurlsa::logonpasswords exit")
    for path, view in _views(hit).items():
        assert "message" not in view and "event.original" not in view, path
        assert _titles(engine, view) == {"Mimikatz Use"}, path
    # The rule's filter (Sysmon 15, file streams) still excludes, and a clean command line matches nothing.
    assert not any(_titles(engine, view) for view in _views(_sysmon_1("sekurlsa::", event_id=15)).values())
    assert not any(_titles(engine, view) for view in _views(_sysmon_1("whoami /all")).values())
    # A Winlogbeat document whose rendered message holds the text matches as before.
    doc = windows.winlogbeat_from_evtx(_sysmon_1("notepad.exe"))
    doc["message"] = "Process Create: CommandLine: lsadump::sam"
    assert _titles(engine, view_of(doc)[0]) == {"Mimikatz Use"}


def test_soc_hunt_finds_keyword_rules_in_evtx_records(tmp_path):
    """Through `soc hunt` itself, on a JSON-lines file of EVTX records (the evtx package's JSON)."""
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(json.dumps(r) for r in (_sysmon_1("m.exe lsadump::dcsync /user:krbtgt"),
                                                         _sysmon_1("whoami"))) + "\n")
    out = subprocess.run([sys.executable, "-m", "suite.cli", "hunt", str(events), "--rules",
                          str(SIGMA / "builtin" / "win_alert_mimikatz_keywords.yml"), "--no-cache", "--quiet",
                          "--workers", "1"], capture_output=True, text=True, cwd=PROJECT, timeout=120)
    assert out.returncode == 0, out.stderr
    detections = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    assert [d["rule"]["title"] for d in detections] == ["Mimikatz Use"]


# --- trailing whitespace ---------------------------------------------------------------------------------------------
def test_values_with_trailing_whitespace_match_rules_written_without_it():
    """Windows writes LogonProcessName "NtLmSsp " (a trailing space); SigmaHQ's Pass the Hash 2 says 'NtLmSsp'."""
    engine = _engine(SIGMA / "builtin" / "security" / "account_management" / "win_security_pass_the_hash_2.yml")
    found = _corpus_titles(engine, EVTX / "Lateral Movement" / "ImpersonateUser-via local Pass The Hash Sysmon "
                                                               "and Security.evtx")
    assert set(found) == {"Pass the Hash Activity 2"}


def test_a_condition_matches_the_value_as_written_or_trimmed(tmp_path):
    """Both forms match, so a rule written with the space (SigmaHQ has endswith ' ') keeps matching, and a filter
    written without it still excludes."""
    rules = tmp_path / "rules"
    rules.mkdir()
    for name, detection in {
        "plain": "selection: {EventID: 4688, CommandLine|endswith: '.zip'}\n    condition: selection",
        "spaced": "selection: {EventID: 4688, CommandLine|endswith: '.zip '}\n    condition: selection",
        "filtered": "selection: {EventID: 4688}\n    filter: {NewProcessName: 'C:\\\\x\\\\7z.exe'}\n"
                    "    condition: selection and not filter",
        "exact": "selection: {EventID: 4688, CommandLine: '7z a out.zip'}\n    condition: selection",
    }.items():
        (rules / f"{name}.yml").write_text(
            f"title: {name}\nid: 00000000-0000-4000-8000-{abs(hash(name)) % 10**12:012d}\nstatus: test\n"
            f"logsource: {{product: windows, service: security}}\ndetection:\n    {detection}\nlevel: high\n")
    engine = _engine(rules)
    record = _process_4688(NewProcessName="C:\\x\\7z.exe ", CommandLine="7z a out.zip ")
    for path, view in _views(record).items():
        assert view["CommandLine"] == "7z a out.zip ", "the event keeps its value as written"
        assert _titles(engine, view) == {"plain", "spaced", "exact"}, path
    # Without the trailing space, the spaced rule no longer matches: the space is not invented.
    bare = _process_4688(NewProcessName="C:\\x\\7z.exe", CommandLine="7z a out.zip")
    assert all(_titles(engine, view) == {"plain", "exact"} for view in _views(bare).values())


@pytest.mark.parametrize("text", ["\u00a0x\u00a0", "x\u202f", "x\x85"])
def test_trimming_removes_only_what_the_index_trims(text):
    """The cluster's trim filter (Java's Character.isWhitespace) keeps no-break spaces and NEL: so does streaming,
    or the two evaluations would disagree."""
    assert windows.trimmed(text) == text
    assert windows.trimmed(" \tx \r\n\u3000") == "x"


# --- rule exceptions in `soc hunt` -----------------------------------------------------------------------------------
def _hunt(tmp_path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "suite.cli", "hunt", str(EVTX / "Command and Control" /
                                                                         "DE_RDP_Tunnel_5156.evtx"),
                           "--rules", str(SIGMA / "network_connection"), "--cache-dir", str(tmp_path / "cache"),
                           "--quiet", "--workers", "1", "--no-event", *extra],
                          capture_output=True, text=True, cwd=PROJECT, timeout=180,
                          env={**os.environ, "COLUMNS": "400", "NO_COLOR": "1"})


def test_soc_hunt_applies_the_suites_rule_exceptions(tmp_path):
    """The exceptions file the live suite applies (detections.rule_exceptions_file) tunes `soc hunt` too: an entry
    limited to one computer and one destination turns away exactly those matches."""
    found = _hunt(tmp_path)
    assert found.returncode == 0, found.stderr
    before = [json.loads(line) for line in found.stdout.splitlines() if line.strip()]
    assert len(before) == 2 and {d["rule"]["title"] for d in before} == {
        "Outbound RDP Connections Over Non-Standard Tools"}
    rule_id = before[0]["rule"]["id"]
    exceptions = tmp_path / "exceptions.yaml"
    exceptions.write_text(f"exceptions:\n  - rule: {rule_id}\n    reason: the jump host tunnels RDP\n"
                          f"    author: test\n    computers: [PC01.example.corp]\n"
                          f"    match:\n      DestinationPort: '3389'\n")
    tuned = _hunt(tmp_path, "--exceptions", str(exceptions))
    assert tuned.returncode == 0, tuned.stderr
    assert tuned.stdout.strip() == ""
    elsewhere = tmp_path / "elsewhere.yaml"
    elsewhere.write_text(exceptions.read_text().replace("PC01.example.corp", "PC02.example.corp"))
    assert len(_hunt(tmp_path, "--exceptions", str(elsewhere)).stdout.splitlines()) == 2
    broken = tmp_path / "broken.yaml"
    broken.write_text("exceptions:\n  - rule: x\n    surprise: 1\n")
    refused = _hunt(tmp_path, "--exceptions", str(broken))
    assert refused.returncode == 2 and "broken.yaml: exceptions.0" in refused.stderr
