"""The per-record time budget of the parse workers (collectors/parse_workers.py, pipeline.parse_timeout_seconds).

A record that overruns the budget becomes a dead letter with reason ``parse_timeout`` (its raw bytes, its sender and
the reason, like any dead letter), the worker that was parsing it is killed and replaced, and the other records of
its batch are parsed and stored: nothing is lost. To overrun deterministically the test registers a format of its own
("slowpoke", a test-only parser that sleeps on lines marked SLOW) in the parse workers, without any hook in the
suite's code: the workers are fresh interpreters, and a sitecustomize module on their PYTHONPATH adds the format's
module to the registry before anything else runs. The suite's own process does not know the format.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from soc import metrics
from collectors.settings import PipelineConfig
from suite.runtime import Suite, SuiteThread
from soc.storage import EventQuery
from tests.conftest import make_settings, wait_until

PROJECT = Path(__file__).resolve().parent.parent.parent
BUDGET = 1.0

SLOW_FORMAT = '''
"""Test-only format (tests/security/test_parser_budget.py): sleeps on a line marked SLOW, as a runaway parser would."""
import time

from collectors.parsers.registry import ParserSpec


def parse(doc, ctx):
    if "SLOW" in (doc.get("message") or ""):
        time.sleep(3600)
    return doc


SPEC = ParserSpec(name="slowpoke", dataset="slowpoke.log", carrier="syslog", parse=parse, programs=("slowpoke",),
                  description="test only: sleeps on lines marked SLOW")
'''
SITECUSTOMIZE = '''
import collectors.parsers.registry as registry

registry.PARSER_MODULES = (*registry.PARSER_MODULES, "slowpoke_format")
'''


def slow_format_path(folder: Path) -> str:
    """A PYTHONPATH under which every new interpreter (the parse workers) knows the slowpoke format."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "slowpoke_format.py").write_text(SLOW_FORMAT)
    (folder / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return os.pathsep.join([str(folder), str(PROJECT)])


@pytest.fixture
def served(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", slow_format_path(tmp_path / "slow"))
    settings = make_settings(tmp_path, SOC__PIPELINE__PARSE_WORKERS="1", SOC__PIPELINE__BATCH_SIZE="1000",
                             SOC__PIPELINE__FLUSH_INTERVAL_SECONDS="0.3",
                             SOC__PIPELINE__PARSE_TIMEOUT_SECONDS=str(BUDGET), SOC__EXTENSIONS="[]")
    runner = SuiteThread(Suite(settings)).start()
    yield runner.suite
    runner.stop()


def _line(n: int, marker: str = "") -> bytes:
    return (f"<38>Nov 22 10:00:00 web-01 slowpoke[7]: request {n} {marker}").rstrip().encode()


def _send(port: int, lines: list[bytes]) -> None:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"\n".join(lines) + b"\n")  # one write: the lines arrive together, in one batch


def _timeouts_counted() -> float:
    return sum(sample.value for family in metrics.DEAD_LETTERS.collect() for sample in family.samples
               if sample.name.endswith("_total") and sample.labels.get("reason") == "parse_timeout")


def test_a_record_over_the_budget_is_a_dead_letter_and_the_rest_of_its_batch_is_stored(served):
    suite = served
    workers = suite.intake._parse_workers
    assert workers is not None and len(workers) == 1 and workers.timeout == BUDGET
    first = workers._workers[0].process
    counted = _timeouts_counted()
    slow = _line(50, "SLOW")
    lines = [_line(n) for n in range(50)] + [slow] + [_line(n) for n in range(51, 100)]
    port = suite.bound["syslog_tcp"]
    started = time.monotonic()
    _send(port, lines)
    assert wait_until(lambda: suite.intake.completed >= len(lines), timeout=60), (suite.intake.completed, len(lines))
    took = time.monotonic() - started
    assert took < BUDGET + 15, took  # the budget, a worker start or two, not the hour the parser would sleep

    letters = suite.store.list_dead_letters(10)
    assert len(letters) == 1
    letter = letters[0]
    assert letter.reason.startswith("parse_timeout: ") and f"{BUDGET:g} s" in letter.reason
    assert letter.raw == slow and letter.source == f"tcp://127.0.0.1:{letter.source.rsplit(':', 1)[1]}"
    assert _timeouts_counted() == counted + 1
    stored = suite.store.search_events(EventQuery(limit=500))
    assert len(stored) == len(lines) - 1 == suite.store.count_events()
    assert {e["event"]["original"].rsplit(" ", 1)[1] for e in stored} == {str(n) for n in range(100) if n != 50}
    assert all(e["event"]["dataset"] == "slowpoke.log" for e in stored)  # parsed by the format, in a worker

    # The worker that was on the slow record was killed; the next batch goes to its replacement.
    assert first.wait(5) is not None and workers.timeouts == 1
    _send(port, [_line(200)])
    assert wait_until(lambda: suite.store.count_events() == len(lines), timeout=30)
    assert workers.restarts >= 1 and workers._workers[0].process.pid != first.pid
    assert all(w.alive() for w in workers._workers)


def test_two_slow_records_in_one_batch_are_both_set_aside(served):
    suite = served
    lines = [_line(n, "SLOW" if n in (3, 7) else "") for n in range(10)]
    _send(suite.bound["syslog_tcp"], lines)
    assert wait_until(lambda: suite.intake.completed >= len(lines), timeout=60)
    letters = suite.store.list_dead_letters(10)
    assert sorted(letter.raw for letter in letters) == sorted([lines[3], lines[7]])
    assert all(letter.reason.startswith("parse_timeout: ") for letter in letters)
    assert suite.store.count_events() == 8 and suite.intake._parse_workers.timeouts == 2


def test_auto_always_has_a_worker_to_enforce_the_budget():
    assert PipelineConfig().parse_worker_count() >= 1
    assert PipelineConfig(parse_workers=0).parse_worker_count() == 0  # the operator's choice: no budget (documented)
    assert PipelineConfig().parse_timeout_seconds == 2.0
