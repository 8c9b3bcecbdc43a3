"""`soc hunt` streams: a detection is handed on (and written) while files are still being read, with one process or
several, and nothing is held until the end.

No timing: the last file is a named pipe (FIFO) whose lines are written only once the test has seen a detection of
the other file. A hunt that holds its detections until every file is read never shows one, and the pipe is then
written after a guard time so that the hunt ends and the test fails instead of hanging.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from tests.conftest import PROJECT

GUARD_SECONDS = 60  # how long a test waits for a streamed detection before giving up (the hunt is then unblocked)
RULE = textwrap.dedent("""\
    title: Test Logon
    id: 00000000-0000-4000-8000-000000004624
    status: test
    logsource:
        product: windows
        service: security
    detection:
        selection:
            EventID: 4624
        condition: selection
    level: medium
    tags: [attack.t1078]
    """)


def logon(user: str, record_id: int) -> str:
    return json.dumps({"Channel": "Security", "EventID": 4624, "Computer": "WS1", "TargetUserName": user,
                       "EventRecordID": record_id, "TimeCreated": f"2024-01-01T00:00:{record_id % 60:02d}Z"})


@pytest.fixture()
def rules(tmp_path) -> Path:
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "logon.yml").write_text(RULE)
    return folder


@pytest.fixture()
def engine(rules):
    from detections.engine import DetectionEngine
    from detections.sigma.loader import load_rules

    return DetectionEngine(load_rules([rules], workers=1))


@pytest.fixture()
def files(tmp_path) -> tuple[Path, Path]:
    small = tmp_path / "small.jsonl"
    small.write_text("\n".join(logon("small", n) for n in range(1, 4)) + "\n")
    pipe = tmp_path / "held.jsonl"
    os.mkfifo(pipe)
    return small, pipe


class HeldPipe:
    """Writes the pipe's lines when released, or after the guard time (then ``timed_out``)."""

    def __init__(self, path: Path, lines: list[str]):
        self.path, self.lines = path, lines
        self.release = threading.Event()
        self.released_at_detection = False
        self.timed_out = False
        self.thread = threading.Thread(target=self._write, daemon=True)
        self.thread.start()

    def _write(self) -> None:
        with self.path.open("w") as fh:  # waits for the hunt to open the pipe
            if not self.release.wait(GUARD_SECONDS):
                self.timed_out = True
            fh.write("\n".join(self.lines) + "\n")

    def let_go(self) -> None:
        self.release.set()


@pytest.mark.parametrize("workers", [1, 2])
def test_detections_come_out_while_a_file_is_still_being_read(engine, files, workers):
    from detections.hunt import HuntErrors, hunt_parallel

    small, pipe = files
    held = HeldPipe(pipe, [logon("held", n) for n in range(100, 105)])
    finished: list[str] = []
    errors = HuntErrors()
    order: list[tuple[str, bool]] = []  # (file, was the pipe still held when it came)

    def on_progress(source: str, events: int, nbytes: int, done: bool) -> None:
        if done:
            finished.append(Path(source).name)

    for rule, event in hunt_parallel(engine, [small, pipe], errors, workers, on_progress):
        order.append((Path(event.source).name, not held.release.is_set()))
        if event.source == str(small):
            held.let_go()  # only now may the last file be read to its end
    held.thread.join(5)
    assert not held.timed_out, "no detection came out before the last file was read"
    assert order[0] == ("small.jsonl", True)
    assert [name for name, _ in order].count("small.jsonl") == 3 and len(order) == 8
    assert finished.index("small.jsonl") < finished.index("held.jsonl") and not errors


@pytest.mark.parametrize("workers", [1, 2])
def test_soc_hunt_writes_detection_lines_while_a_file_is_still_being_read(rules, files, tmp_path, workers):
    small, pipe = files
    held = HeldPipe(pipe, [logon("held", n) for n in range(100, 105)])
    proc = subprocess.Popen([sys.executable, "-m", "suite.cli", "hunt", "-q", "--no-event", "--workers", str(workers),
                             "--rules", str(rules), "--cache-dir", str(tmp_path / "cache"), str(small), str(pipe)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=PROJECT,
                            env={k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"})  # as a user runs it
    # stderr is a few lines (-q): it fits the pipe until it is read at the end.
    lines: queue.Queue = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True)
    reader.start()
    try:
        first = lines.get(timeout=GUARD_SECONDS + 30)  # rule loading included
        still_held = not held.release.is_set() and not held.timed_out
        held.let_go()
        proc.wait(timeout=120)
    finally:
        held.let_go()
        if proc.poll() is None:
            proc.kill()
    reader.join(5)
    stderr = proc.stderr.read()
    assert proc.returncode == 0, stderr
    assert still_held, "the first detection line came only after the last file was read"
    detection = json.loads(first)
    assert detection["file"] == str(small) and detection["record_id"] in (1, 2, 3) and detection["line"] >= 1
    rest = [json.loads(lines.get_nowait()) for _ in range(lines.qsize())]
    assert len(rest) == 7 and {d["record_id"] for d in rest if d["file"] == str(pipe)} == set(range(100, 105))


# --- workers that fail or die do not hang the hunt ------------------------------------------------------------------
def test_a_failing_worker_fails_the_hunt_with_its_traceback(engine, tmp_path):
    from detections.hunt import HuntErrors, HuntWorkerError, hunt_parallel

    paths = []
    for n in range(3):
        path = tmp_path / f"f{n}.jsonl"
        path.write_text(logon("x", n + 1) + "\n")
        paths.append(path)

    def broken(view, key):
        raise ValueError("rule evaluation broke")

    engine.match = broken  # the workers fork with it
    with pytest.raises(HuntWorkerError, match="rule evaluation broke"):
        list(hunt_parallel(engine, paths, HuntErrors(), 2))


def test_a_worker_that_dies_costs_its_file_only(engine, tmp_path):
    from detections.hunt import HuntErrors, hunt_parallel

    paths = []
    for n in range(4):
        path = tmp_path / f"f{n}.jsonl"
        path.write_text("\n".join(logon(f"user{n}", n * 10 + k) for k in range(1, 3)) + "\n")
        paths.append(path)
    match = engine.match

    def dies_on_user2(view, key):
        if view.get("TargetUserName") == "user2":
            os.kill(os.getpid(), signal.SIGKILL)
        return match(view, key)

    engine.match = dies_on_user2
    errors = HuntErrors()
    found = [(event.source, event.record) for _, event in hunt_parallel(engine, paths, errors, 2)]
    assert {Path(source).name for source, _ in found} == {"f0.jsonl", "f1.jsonl", "f3.jsonl"}
    assert len(found) == 6
    assert len(errors) == 1 and errors[0].source == str(paths[2]) and "died" in errors[0].reason


def test_unreadable_records_are_counted_and_only_the_first_kept(engine, tmp_path):
    from detections.hunt import HuntErrors, hunt_parallel

    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n" * 5000 + logon("after", 7) + "\n")
    other = tmp_path / "other.jsonl"
    other.write_text("[1]\n" * 10)
    errors = HuntErrors(keep=100)
    found = list(hunt_parallel(engine, [bad, other], errors, 2))
    assert len(found) == 1 and found[0][1].record == 7 and found[0][1].line == 5001
    assert len(errors) == 5010 and len(list(errors)) == 100


def test_files_a_dead_worker_had_not_started_are_hunted_by_another(engine, tmp_path):
    """A worker holds the file it reads and the next: when it dies, the next goes to another worker (and a new
    worker takes its place), so only the file it was reading is lost."""
    from detections.hunt import HuntErrors, hunt_parallel

    paths = []
    for n in range(9):
        path = tmp_path / f"f{n}.jsonl"
        path.write_text("\n".join(logon(f"user{n}", n * 10 + k) for k in range(1, 3)) + "\n")
        paths.append(path)
    match = engine.match

    def dies_on_user0_and_user5(view, key):
        if view.get("TargetUserName") in ("user0", "user5"):
            os.kill(os.getpid(), signal.SIGKILL)
        return match(view, key)

    engine.match = dies_on_user0_and_user5
    errors = HuntErrors()
    found = [Path(event.source).name for _, event in hunt_parallel(engine, paths, errors, 2)]
    assert sorted(set(found)) == [f"f{n}.jsonl" for n in range(9) if n not in (0, 5)] and len(found) == 14
    assert sorted(e.source for e in errors) == [str(paths[0]), str(paths[5])]
    assert all("died" in e.reason for e in errors)


def test_a_hunt_whose_workers_all_die_ends(engine, tmp_path):
    """Every file kills the worker reading it: the hunt still ends, with every file reported."""
    from detections.hunt import HuntErrors, hunt_parallel

    paths = []
    for n in range(5):
        path = tmp_path / f"f{n}.jsonl"
        path.write_text(logon("x", n + 1) + "\n")
        paths.append(path)

    def dies(view, key):
        os.kill(os.getpid(), signal.SIGKILL)

    engine.match = dies
    errors = HuntErrors()
    assert list(hunt_parallel(engine, paths, errors, 2)) == []
    assert sorted(e.source for e in errors) == sorted(map(str, paths)) and all("died" in e.reason for e in errors)
