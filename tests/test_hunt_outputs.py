"""`soc hunt`'s outputs, checked against the EVTX records themselves (read here as XML, not through the hunt's code):
record_id is the record's EventRecordID; the timeline is in event time with a details line per event kind; the
summary counts what was written; the ATT&CK Navigator layer loads as the Navigator's layer format requires.

A few corpus files and four rules of our own (logon, process creation, service installation, network connection),
so that every detection's expected content is known.
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET  # nosec B405 - the test's own reading of corpus files
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest

from tests.conftest import CORPUS, PROJECT

SAMPLES = CORPUS / "evtx-attack-samples"
FILES = [SAMPLES / "Lateral Movement" / "LM_WMI_4624_4688_TargetHost.evtx",  # 4624, 4688
         SAMPLES / "Credential Access" / "CA_4624_4625_LogonType2_LogonProc_chrome.evtx",  # 4624, 4625
         SAMPLES / "Lateral Movement" / "LM_Remote_Service02_7045.evtx",  # 7045
         SAMPLES / "Lateral Movement" / "LM_DCOM_MSHTA_LethalHTA_Sysmon_3_1.evtx",  # Sysmon 1 and 3
         SAMPLES / "Lateral Movement" / "LM_4624_mimikatz_sekurlsa_pth_source_machine.evtx"]  # 4624, 4688
RULES = {
    "logon.yml": ("Test Logon", "00000000-0000-4000-8000-000000004624", "medium", "security", None,
                  "EventID: 4624", ["attack.initial-access", "attack.t1078"]),
    "process.yml": ("Test Process Creation", "00000000-0000-4000-8000-000000000001", "low", None,
                    "process_creation", "Image|endswith: '.exe'", ["attack.execution", "attack.t1059.001"]),
    "service.yml": ("Test Service Installed", "00000000-0000-4000-8000-000000007045", "high", "system", None,
                    "EventID: 7045", ["attack.persistence", "attack.t1543.003"]),
    "network.yml": ("Test Network Connection", "00000000-0000-4000-8000-000000000003", "medium", "sysmon", None,
                    "EventID: 3", ["attack.command-and-control", "attack.t1071"]),
}
NS = "{http://schemas.microsoft.com/win/2004/08/events/event}"
SYSMON = "Microsoft-Windows-Sysmon/Operational"


def write_rules(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, (title, rule_id, level, service, category, selection, tags) in RULES.items():
        source = f"service: {service}" if service else f"category: {category}"
        (folder / name).write_text(textwrap.dedent(f"""\
            title: {title}
            id: {rule_id}
            status: test
            logsource:
                product: windows
                {source}
            detection:
                selection:
                    {selection}
                condition: selection
            level: {level}
            tags: {json.dumps(tags)}
            """))
    return folder


def xml_records(path: Path) -> list[dict]:
    """Every record of an EVTX file from its XML: System facts, the header number, and the named data."""
    import evtx

    records = []
    for raw in evtx.PyEvtxParser(str(path)).records():
        root = ET.fromstring(raw["data"].encode("utf-8"))  # nosec B314 - corpus file, read by the test
        system = root.find(f"{NS}System")
        records.append({
            "header": raw["event_record_id"],
            "EventRecordID": int(system.findtext(f"{NS}EventRecordID")),
            "EventID": int(system.findtext(f"{NS}EventID")),
            "Channel": system.findtext(f"{NS}Channel"),
            "Computer": system.findtext(f"{NS}Computer"),
            "time": system.find(f"{NS}TimeCreated").get("SystemTime"),
            "data": {d.get("Name"): d.text or "" for d in root.iter(f"{NS}Data") if d.get("Name")},
        })
    return records


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text)


@pytest.fixture(scope="module")
def records() -> dict[tuple[str, int], dict]:
    """(file, EventRecordID) -> the record, for every record of FILES."""
    return {(str(path), r["EventRecordID"]): r for path in FILES for r in xml_records(path)}


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    from detections.engine import DetectionEngine
    from detections.sigma.loader import load_rules

    ruleset = load_rules([write_rules(tmp_path_factory.mktemp("rules"))], workers=1)
    assert ruleset.loaded == len(RULES), [h.reason for h in ruleset.health if h.status == "failed"]
    return DetectionEngine(ruleset)


# --- record_id ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("workers", [1, 2])
def test_record_id_is_the_windows_eventrecordid(engine, workers):
    from detections.hunt import HuntErrors, detection_record, hunt_parallel

    path = FILES[0]
    xml = xml_records(path)
    logons = [r for r in xml if r["EventID"] == 4624]
    # The file is one where the header number and EventRecordID differ: the test fails on a hunt that reports the
    # header number.
    assert logons and all(r["header"] != r["EventRecordID"] for r in logons)
    errors = HuntErrors()
    found = [detection_record(rule, event, False)
             for rule, event in hunt_parallel(engine, [path, FILES[1]], errors, workers)]
    assert not errors
    mine = [d for d in found if d["file"] == str(path) and d["rule"]["title"] == "Test Logon"]
    # The logon rule fires on every 4624 and on nothing else: one detection per 4624 record, in file order.
    assert [d["record_id"] for d in mine] == [r["EventRecordID"] for r in logons]
    assert [moment(d["timestamp"]) for d in mine] == [moment(r["time"]) for r in logons]
    assert all("line" not in d for d in found)  # an EVTX record has no line


def test_json_lines_keep_the_line_and_use_the_documents_eventrecordid(engine, tmp_path):
    import evtx

    from detections.hunt import HuntErrors, detection_record, hunt_parallel

    path = FILES[0]
    lines = [json.loads(r["data"]) for r in evtx.PyEvtxParser(str(path)).records_json()]
    first = lines[0]["Event"]["System"]
    winlogbeat = {"@timestamp": "2024-05-01T10:00:00.5Z", "event": {"code": "4624"},
                  "winlog": {"channel": "Security", "event_id": 4624, "record_id": "987654",
                             "computer_name": "WS1", "event_data": {"TargetUserName": "alice", "LogonType": "3"}}}
    flat = {"Channel": "Security", "EventID": 4624, "Computer": "WS2", "TargetUserName": "bob"}  # no record id
    jsonl = tmp_path / "events.jsonl"
    jsonl.write_text("\n".join(json.dumps(doc) for doc in [*lines, winlogbeat, {"not": "windows"}, flat]) + "\n")
    errors = HuntErrors()
    found = [detection_record(rule, event, False) for rule, event in hunt_parallel(engine, [jsonl], errors, 1)
             if rule.meta.title == "Test Logon"]
    xml = {r["EventRecordID"]: r for r in xml_records(path)}
    from_evtx = [d for d in found if d["line"] <= len(lines)]
    assert from_evtx and first["EventRecordID"] != 1
    for d in from_evtx:
        doc = lines[d["line"] - 1]["Event"]["System"]
        assert d["record_id"] == doc["EventRecordID"] and xml[d["record_id"]]["EventID"] == 4624
    beat = next(d for d in found if d["line"] == len(lines) + 1)
    assert beat["record_id"] == 987654 and beat["timestamp"] == "2024-05-01T10:00:00.500000Z"
    bare = next(d for d in found if d["line"] == len(lines) + 3)
    assert bare["record_id"] is None


# --- one command, every output ----------------------------------------------------------------------------------------
def run_hunt(tmp: Path, rules: Path, workers: int, timeline_name: str, *extra: str) -> dict:
    outputs = {"timeline": tmp / timeline_name, "summary": tmp / "summary.json", "navigator": tmp / "layer.json"}
    result = subprocess.run(
        [sys.executable, "-m", "suite.cli", "hunt", "-q", "--no-event", "--rules", str(rules), "--cache-dir",
         str(tmp / "cache"), "--workers", str(workers), "--timeline", str(outputs["timeline"]), "--summary",
         str(outputs["summary"]), "--navigator", str(outputs["navigator"]), *extra, *map(str, FILES)],
        capture_output=True, text=True, timeout=300, cwd=PROJECT)
    assert result.returncode == 0, result.stderr
    detections = [json.loads(line) for line in result.stdout.splitlines()]
    if outputs["timeline"].suffix == ".csv":
        with outputs["timeline"].open(newline="", encoding="utf-8") as fh:
            timeline = list(csv.DictReader(fh))
    else:
        timeline = [json.loads(line) for line in outputs["timeline"].read_text(encoding="utf-8").splitlines()]
    return {"detections": detections, "timeline": timeline, "stderr": result.stderr,
            "summary": json.loads(outputs["summary"].read_text(encoding="utf-8")),
            "layer": json.loads(outputs["navigator"].read_text(encoding="utf-8")),
            "spill": sorted(p.name for p in tmp.iterdir() if p.name.startswith(".soc-timeline-"))}


@pytest.fixture(scope="module")
def hunted(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("hunt")
    return run_hunt(tmp, write_rules(tmp / "rules"), 2, "timeline.csv")


def _key(file: str, record_id, rule_id: str) -> tuple:
    return (file, int(record_id), rule_id)


def test_one_run_writes_detections_timeline_summary_and_layer(hunted, records):
    detections = hunted["detections"]
    titles = Counter(d["rule"]["title"] for d in detections)
    assert set(titles) == {title for title, *_ in RULES.values()}, titles  # every kind of event is there
    # Every detection names a real record, and the record is of the rule's kind.
    for d in detections:
        record = records[(d["file"], d["record_id"])]
        assert moment(d["timestamp"]) == moment(record["time"])
    assert hunted["spill"] == []  # the timeline's sort file is gone
    assert "detections from" in hunted["stderr"] and "by level:" in hunted["stderr"]


def test_timeline_is_sorted_by_event_time_and_holds_every_detection(hunted, records):
    detections, timeline = hunted["detections"], hunted["timeline"]
    times = [moment(row["timestamp"]) for row in timeline]
    assert times == sorted(times)
    # ...which the hunt's own order is not: the sort did something.
    arrival = [moment(d["timestamp"]) for d in detections]
    assert arrival != sorted(arrival)
    assert Counter(_key(r["file"], r["record_id"], r["rule_id"]) for r in timeline) == \
        Counter(_key(d["file"], d["record_id"], d["rule"]["id"]) for d in detections)
    for row in timeline:
        record = records[(row["file"], int(row["record_id"]))]
        assert (row["computer"], row["channel"], int(row["event_id"])) == \
            (record["Computer"], record["Channel"], record["EventID"])
        rule = next(r for r in RULES.values() if r[1] == row["rule_id"])
        assert (row["rule"], row["level"]) == (rule[0], rule[2])
        assert row["techniques"] == ";".join(t[7:].upper() for t in rule[6] if t.startswith("attack.t"))


def _details(row: dict) -> dict[str, str]:
    return dict(part.split(": ", 1) for part in row["details"].split(" ¦ "))


def _host(address: str) -> str:
    """The address of "10.0.0.1:445", "[::1]:445", "::1" or "10.0.0.1"."""
    if address.startswith("["):
        return address[1:address.index("]")]
    return address.rsplit(":", 1)[0] if address.count(":") == 1 else address


LOGON_TYPES = {"2": "Interactive", "3": "Network", "5": "Service", "9": "NewCredentials", "10": "RemoteInteractive"}


def test_timeline_details_by_event_kind(hunted, records):
    seen = Counter()
    for row in hunted["timeline"]:
        record = records[(row["file"], int(row["record_id"]))]
        data, kind, fields = record["data"], (record["Channel"], record["EventID"]), _details(row)
        if kind == ("Security", 4624):
            assert fields["User"] == f"{data['TargetDomainName']}\\{data['TargetUserName']}"
            assert fields["LogonType"] == f"{data['LogonType']} ({LOGON_TYPES[data['LogonType']]})"
            if data["IpAddress"] not in ("", "-"):
                assert _host(fields["SrcIP"]) == data["IpAddress"]
        elif kind in (("Security", 4688), (SYSMON, 1)):
            image, parent = ("NewProcessName", "ParentProcessName") if kind[1] == 4688 else ("Image", "ParentImage")
            assert fields["Image"] == data[image]
            assert fields.get("ParentImage") == (data.get(parent) or None)  # Windows 7's 4688 has no parent
            if data.get("CommandLine"):
                assert fields["CommandLine"] == " ".join(data["CommandLine"].split())
        elif kind == ("System", 7045):
            assert fields["Service"] == data["ServiceName"] and fields["Path"] == " ".join(data["ImagePath"].split())
        elif kind == (SYSMON, 3):
            assert fields["Image"] == data["Image"]
            assert fields["Dst"] == f"{data['DestinationIp']}:{data['DestinationPort']}"
        else:
            continue
        seen[kind] += 1
    assert {("Security", 4624), ("System", 7045), (SYSMON, 3)} <= set(seen), seen
    assert seen[("Security", 4688)] + seen[(SYSMON, 1)] > 0, seen


def test_summary_counts_equal_the_detections(hunted, records):
    detections, summary = hunted["detections"], hunted["summary"]
    assert summary["detections"] == len(detections) > 0
    assert summary["by_level"] == dict(Counter(d["rule"]["level"] for d in detections))
    computers = Counter(records[(d["file"], d["record_id"])]["Computer"] for d in detections)
    assert summary["by_computer"] == dict(computers)
    times = [moment(records[(d["file"], d["record_id"])]["time"]) for d in detections]
    assert (moment(summary["first_seen"]), moment(summary["last_seen"])) == (min(times), max(times))
    assert {r["id"]: r["count"] for r in summary["top_rules"]} == dict(Counter(d["rule"]["id"] for d in detections))
    counts = [r["count"] for r in summary["top_rules"]]
    assert counts == sorted(counts, reverse=True)
    assert summary["files"] == len(FILES) and summary["events"] == sum(
        1 for key in records) and summary["unreadable_records"] == 0


# --- the Navigator layer ------------------------------------------------------------------------------------------------
def _load_layer(layer: dict, capsys):
    """The layer through mitreattack-python's Layer, which checks each field against the layer format and prints
    (does not raise) what it refuses; a refused layer is left unloaded."""
    from mitreattack.navlayers import Layer
    from mitreattack.navlayers.core.layerobj import _LayerObj

    capsys.readouterr()
    loaded = Layer(init_data=json.loads(json.dumps(layer)), strict=True)
    complaints = capsys.readouterr().out
    return loaded, isinstance(loaded.layer, _LayerObj), complaints


def test_navigator_layer_loads_as_the_layer_format_requires(hunted, capsys):
    layer, detections = hunted["layer"], hunted["detections"]
    loaded, ok, complaints = _load_layer(layer, capsys)
    assert ok and complaints == "", complaints
    assert loaded.to_dict()["versions"] == {"layer": "4.5", "navigator": layer["versions"]["navigator"],
                                            "attack": layer["versions"]["attack"]}
    # What the Navigator's format document requires, checked here too.
    assert layer["versions"]["layer"] == "4.5" and re.fullmatch(r"5\.\d+\.\d+", layer["versions"]["navigator"])
    assert layer["domain"] == "enterprise-attack" and isinstance(layer["name"], str) and layer["name"]
    for entry in layer["techniques"]:
        assert re.fullmatch(r"T\d{4}(\.\d{3})?", entry["techniqueID"])
        assert isinstance(entry.get("score", 0), int) and isinstance(entry.get("comment", ""), str)
    assert layer["gradient"]["maxValue"] >= max(e.get("score", 0) for e in layer["techniques"])
    # Scores are detections per technique; the comment names the rules.
    expected = Counter(t for d in detections for t in d["attack"]["techniques"])
    scored = {e["techniqueID"]: e for e in layer["techniques"] if "score" in e}
    assert {t: e["score"] for t, e in scored.items()} == dict(expected)
    assert "Test Process Creation" in scored["T1059.001"]["comment"]
    parents = {e["techniqueID"]: e for e in layer["techniques"] if "score" not in e}
    assert parents["T1059"]["showSubtechniques"] and parents["T1543"]["showSubtechniques"]


def test_the_layer_check_refuses_a_broken_layer(hunted, capsys):
    """The check above can fail: a layer the format does not allow is refused."""
    broken = json.loads(json.dumps(hunted["layer"]))
    broken["techniques"][0]["hits"] = 3  # not a technique property
    assert not _load_layer(broken, capsys)[1]
    broken = json.loads(json.dumps(hunted["layer"]))
    broken["domain"] = "attack"
    assert not _load_layer(broken, capsys)[1]


def test_one_worker_and_json_lines_timeline_agree(hunted, tmp_path):
    single = run_hunt(tmp_path, write_rules(tmp_path / "rules"), 1, "timeline.jsonl")
    assert sorted(map(json.dumps, single["detections"])) == sorted(map(json.dumps, hunted["detections"]))
    rows = single["timeline"]
    assert [moment(r["timestamp"]) for r in rows] == [moment(r["timestamp"]) for r in hunted["timeline"]]
    assert all(isinstance(r["techniques"], list) and isinstance(r["record_id"], int) for r in rows)
    assert Counter((r["file"], r["record_id"], r["rule_id"], r["details"]) for r in rows) == \
        Counter((r["file"], int(r["record_id"]), r["rule_id"], r["details"]) for r in hunted["timeline"])


# --- the timeline's sort is bounded ---------------------------------------------------------------------------------
def test_timeline_reads_its_rows_in_order_through_the_index(tmp_path):
    """The rows come back in time order through the index kept in the file, not from a sort held at the end."""
    from detections.hunt import HuntEvent
    from detections.sigma.loader import RuleMeta
    from detections.timeline import Timeline

    timeline = Timeline(tmp_path / "t.csv")
    meta = RuleMeta(id="r", name=None, title="R", level="high", tags=["attack.t1078"], description="", path="x")
    stamps = [f"2024-01-01T00:00:{s:02d}.000000Z" for s in (30, 10, 50, 20, 40)] + [None]
    for n, stamp in enumerate(stamps):
        view = {"Channel": "Security", "EventID": 4624, "Computer": f"pc{n}"}
        timeline.add(meta, HuntEvent(view, (), "f", n, stamp), stamp, "")
    plan = " ".join(str(row) for row in timeline.db.execute("EXPLAIN QUERY PLAN " + Timeline.ORDERED))
    assert "in_time" in plan and "TEMP B-TREE" not in plan.upper(), plan
    assert not timeline.spill.exists() and not timeline.folder.exists()  # open, and already without a name
    assert timeline.close() == len(stamps) and list(tmp_path.iterdir()) == [tmp_path / "t.csv"]
    with (tmp_path / "t.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["timestamp"] for r in rows] == sorted(s for s in stamps if s) + [""]  # no time: last


# --- the cold start -------------------------------------------------------------------------------------------------
# What the hunt and its children used, read by the process that ran it (children it waited for count: a pool of
# rule parsers forked at the cold start, the hunt's workers).
_CHILD_CPU = """
import resource, runpy, sys
sys.argv = ["soc"] + sys.argv[1:]
try:
    runpy.run_module("suite.cli", run_name="__main__")
except SystemExit:
    pass
finally:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    print("CHILD_CPU", usage.ru_utime + usage.ru_stime, file=sys.stderr)
"""


@pytest.mark.parametrize("workers", [1, 2])
def test_the_hunts_workers_bound_the_rule_loading(tmp_path, workers):
    """A cold start over SigmaHQ's Windows rules (over the loader's PARALLEL_FROM files) with one file to hunt:
    with --workers 1 no process is forked at all, neither to parse the rules nor to hunt; with 2 the parsing is
    spread over child processes. Measured from outside, on the real command: the CPU its children used."""
    result = subprocess.run([sys.executable, "-c", _CHILD_CPU, "hunt", "-q", "--no-cache", "--no-event",
                             "--workers", str(workers), "--rules", str(CORPUS / "sigmahq" / "rules" / "windows"),
                             str(FILES[0])], capture_output=True, text=True, cwd=PROJECT, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    child_cpu = float(re.search(r"CHILD_CPU ([0-9.]+)", result.stderr).group(1))
    assert int(re.search(r"rules: (\d+) loaded", result.stderr).group(1)) > 2000
    if workers == 1:
        assert child_cpu == 0.0
    else:
        assert child_cpu > 0.2  # thousands of rule files parsed in the children
