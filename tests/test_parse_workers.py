"""Parse workers (collectors/parse_workers.py): the pipeline in other processes, fed from the spool.

What must hold: the stored documents are the ones the suite's own thread would have made; what the workers count
reaches the suite's metrics and unknown-sender table; a worker killed mid-stream loses nothing (its batches are
parsed by the suite, each event stored once) and is replaced; an inventory edit reaches the workers at once.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
from datetime import datetime, timezone
from pathlib import Path

from bench.bench_parsers import MIX, syslog_lines
from soc import ecs, metrics
from suite.runtime import Suite, SuiteThread
from soc.storage import EventQuery
from soc_api.inventory_edit import edit_inventory
from tests.conftest import make_settings, wait_until

PROJECT = Path(__file__).resolve().parent.parent
# Fields that differ between two runs of the same input by nature: when it was received and from which port.
RUN_FIELDS = ("event.created", "event.ingested", "log.source.address")


def _lines(count: int) -> list[bytes]:
    fixtures = [line for fmt in MIX for line in syslog_lines(fmt)]
    return [f"{fixtures[i % len(fixtures)]} n{i}".encode() for i in range(count)]


def _send(port: int, lines: list[bytes]) -> None:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"\n".join(lines) + b"\n")


def _served(tmp_path, workers: int) -> SuiteThread:
    inventory = tmp_path / "province.yaml"  # its own copy: a test may edit it
    tmp_path.mkdir(parents=True, exist_ok=True)
    shutil.copy(PROJECT / "inventory" / "sample" / "province.yaml", inventory)
    return SuiteThread(Suite(make_settings(tmp_path, SOC__PIPELINE__PARSE_WORKERS=str(workers),
                                           SOC__PIPELINE__BATCH_SIZE="200",
                                           SOC__INVENTORY__PATH=str(inventory)))).start()


def _all_events(store) -> dict[str, dict]:
    out, after = {}, None
    while True:
        page = store.search_events(EventQuery(limit=1000, after=after))
        if not page:
            return out
        for doc in page:
            out[doc["event"]["id"]] = doc
        after = (page[-1]["@timestamp"], page[-1]["event"]["id"])


def _strip(doc: dict) -> dict:
    flat = ecs.flatten(doc)
    return {k: v for k, v in flat.items() if k not in RUN_FIELDS}


def _parsed_total() -> float:
    return sum(sample.value for family in metrics.EVENTS_PARSED.collect() for sample in family.samples
               if sample.name.endswith("_total"))


def test_workers_store_what_the_suite_would_and_report_their_counts(tmp_path):
    lines = _lines(3000)
    results = {}
    for workers in (0, 2):
        runner = _served(tmp_path / f"w{workers}", workers)
        suite = runner.suite
        try:
            assert (suite.intake._parse_workers is not None) == (workers > 0)
            parsed_before = _parsed_total()
            _send(suite.bound["syslog_tcp"], lines)
            assert wait_until(lambda: suite.intake.completed >= len(lines), timeout=120)
            letters = suite.store.list_dead_letters(len(lines))
            results[workers] = (_all_events(suite.store), sorted(d.reason for d in letters))
            # Counted in this process, whichever process parsed.
            assert _parsed_total() - parsed_before == len(lines) - len(letters)
            unknown = {(u["address"], u["transport"]): u for u in
                       suite.pipeline.context.unknown_senders.snapshot()}
            assert unknown[("127.0.0.1", "tcp")]["count"] == len(lines) - len(letters)
        finally:
            runner.stop()
    (here, here_letters), (there, there_letters) = results[0], results[2]
    assert len(here) > 2500 and here.keys() == there.keys()
    assert here_letters == there_letters and here_letters  # the fixtures include invalid records
    for event_id, doc in here.items():
        assert _strip(there[event_id]) == _strip(doc), event_id


def test_a_killed_worker_loses_nothing_and_is_replaced(tmp_path, caplog):
    runner = _served(tmp_path, 2)
    suite = runner.suite
    try:
        lines = _lines(20000)
        port = suite.bound["syslog_tcp"]
        _send(port, lines)
        assert wait_until(lambda: suite.intake.completed > 0, timeout=60)
        victim = suite.intake._parse_workers._workers[0].process
        assert suite.intake.completed < len(lines) / 2  # batches of 200: the worker has some in hand or waiting
        os.kill(victim.pid, signal.SIGKILL)
        assert victim.wait(10) == -signal.SIGKILL
        more = [f"<38>Nov 22 10:00:00 web sshd[7]: Failed password for root from 203.0.113.{i % 250} port {i} ssh2"
                .encode() for i in range(2000)]
        _send(port, more)  # the next batches go to the replacement
        total = len(lines) + len(more)
        assert wait_until(lambda: suite.intake.completed >= total, timeout=180)
        assert suite.intake._parse_workers.restarts >= 1
        assert "parse worker stopped with a batch" in caplog.text  # ... and the suite parsed it instead
        assert all(w.alive() for w in suite.intake._parse_workers._workers)
        stored, dead = suite.store.count_events(), suite.store.count_dead_letters()
        # Each event once: a batch the dead worker held was parsed again here, under the same event ids.
        assert stored + dead == total, (stored, dead, total)
        assert len(_all_events(suite.store)) == stored
    finally:
        runner.stop()


def test_an_inventory_edit_reaches_the_workers(tmp_path):
    runner = _served(tmp_path, 2)
    suite = runner.suite
    try:
        now = datetime.now(timezone.utc).astimezone(suite.settings.tz)

        def line(n: int) -> bytes:
            return (f"<38>{now:%b} {now.day:2d} {now:%H:%M:%S} relay-01 sshd[7]: Failed password for root from "
                    f"203.0.113.9 port {n} ssh2").encode()

        port = suite.bound["syslog_tcp"]

        def one_batch_each(numbers) -> None:  # batches go to the workers in turn: each worker parses some
            for n in numbers:
                _send(port, [line(n)])
                assert wait_until(lambda: suite.store.count_events() > n)

        one_batch_each(range(6))
        before = _all_events(suite.store)
        assert all("unknown_sender" in d["tags"] for d in before.values())
        agency = suite.inventory.document.agencies[0].id
        edit_inventory(suite, lambda data: data["assets"].append(
            {"id": "relay-01", "hostname": "relay-01", "kind": "server", "agency": agency,
             "addresses": ["127.0.0.1"], "criticality": "high"}))
        one_batch_each(range(6, 12))
        after = [d for i, d in _all_events(suite.store).items() if i not in before]
        assert len(before) == 6 and len(after) == 6
        assert all(d["organization"]["id"] == agency and d["soc"]["asset"]["id"] == "relay-01" for d in after)
        assert not any("unknown_sender" in d.get("tags", ()) for d in after)
    finally:
        runner.stop()
