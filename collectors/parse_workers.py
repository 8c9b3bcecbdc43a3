"""Parse workers: the pipeline run in other processes, so parsing uses every core (in one process the GIL lets
one thread parse at a time), and so no record can hold the suite: each record has a time budget.

The suite's parser thread sends each batch it reads from the spool (the records as they are on disk: the worker
decodes them) to the next worker in turn; the writer thread takes the results back in the same order, so batches
are still stored and committed in spool order. A worker receives the pipeline's limits and time zone once and the
inventory again whenever it changes (an edit through the API), and sends back the events already serialised (the
writer passes that JSON to the store as it is: no pickling of nested documents), the dead letters, and the batch's
counts for the suite's metrics.

The time budget (``pipeline.parse_timeout_seconds``, 2 s): before each record a worker writes which batch and record
it is on, and since when, into a few bytes of memory it shares with the suite (_Slot). The writer thread, while it
waits for a batch, reads them; a record still running after the budget gets its worker killed (SIGKILL: whatever the
worker is doing, C code included, it stops; CPython's re checks for signals while matching, RE2 and other C code do
not, so nothing inside the worker could be relied on). That record becomes a dead letter with reason
``parse_timeout`` (raw bytes, sender, reason, like any other), the batch's other records are parsed again in a spare
worker (under the same budget: another slow record there is set aside the same way), and the killed worker is
replaced before its next batch. A budget cannot be enforced on parsing in the suite's own thread
(``pipeline.parse_workers: 0``): there only the parsers' linear time (soc/linear_re.py) holds a
record's cost down.

Nothing is lost to a worker: one that dies (killed, out of memory) is started again, and each batch it held is
parsed again, in the spare worker. Workers stop with the suite (those that do not stop within a second or two are
killed), and on their own when it is gone (their socket closes).
"""

from __future__ import annotations

import gc
import itertools
import logging
import mmap
import os
import socket
import struct
import subprocess  # nosec B404 - workers are this interpreter started again: fixed argv, no shell
import sys
import tempfile
import threading
import time
from collections import Counter
from multiprocessing.connection import Connection
from typing import Any, Iterable, Iterator

from collectors import spool
from collectors.message import RawMessage
from collectors.pipeline import BatchResult, Context, Pipeline, Tally

log = logging.getLogger(__name__)

# A worker is a fresh interpreter (subprocess) talking over a socket pair with multiprocessing's framing. Not a
# fork: it inherits none of the suite's threads, sockets or locks. Not multiprocessing.Process either: its start
# methods add a forkserver and a resource-tracker process (about 50 MB resident between them) that a worker needs
# neither of. Starting one costs the pipeline's imports, about half a second, at start-up and after a crash.
_BOOT = ("import sys; sys.path[:0] = sys.argv[3:]; "
         "from collectors.parse_workers import main; main(int(sys.argv[1]), int(sys.argv[2]))")
DEFAULT_TIMEOUT = 2.0  # seconds a record may take (pipeline.parse_timeout_seconds)
_POLL = 0.05  # how often a waiting writer looks at the worker's record clock
STOP_SECONDS = 2.0  # how long stopping waits for workers to end by themselves before killing them


class Abandoned(Exception):
    """The suite is stopping (its abort is set) while a batch is still being parsed: the batch is not committed in
    the spool, and is parsed again at the next start."""


# --- the record clock shared between a worker and the suite ----------------------------------------------------------
class _Slot:
    """32 bytes of shared memory: (sequence, batch, record index, started in CLOCK_MONOTONIC ns; 0 between records).

    The worker writes, the suite reads. The sequence is odd while a write is in progress (a seqlock): a read that
    sees it odd or changed is discarded and retried at the next poll. CLOCK_MONOTONIC is one clock for every process
    of the machine, so the suite compares the start with its own time.monotonic_ns()."""

    SIZE = 32
    _SEQUENCE = struct.Struct("<q")
    _STATE = struct.Struct("<qqq")

    def __init__(self, fd: int | None = None):
        if fd is None:
            fd = _shared_memory_fd(self.SIZE)
        self.fd: int | None = fd
        self._map = mmap.mmap(fd, self.SIZE)
        self._sequence = 0

    def close_fd(self) -> None:
        """The mapping stays; the descriptor is no longer needed (the worker got its own copy when it started)."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    # worker side
    def _write(self, batch: int, index: int, started: int) -> None:
        self._sequence += 1
        self._SEQUENCE.pack_into(self._map, 0, self._sequence)
        self._STATE.pack_into(self._map, 8, batch, index, started)
        self._sequence += 1
        self._SEQUENCE.pack_into(self._map, 0, self._sequence)

    def begin(self, batch: int, index: int) -> None:
        self._write(batch, index, time.monotonic_ns())

    def idle(self) -> None:
        self._write(0, 0, 0)

    # suite side
    def read(self) -> tuple[int, int, int] | None:
        """(batch, record index, started ns), or None when caught in the middle of a write."""
        before = self._SEQUENCE.unpack_from(self._map, 0)[0]
        state = self._STATE.unpack_from(self._map, 8)
        after = self._SEQUENCE.unpack_from(self._map, 0)[0]
        return state if before == after and not before % 2 else None


def _shared_memory_fd(size: int) -> int:
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("soc-parse-worker")  # anonymous, in memory (close-on-exec until passed on)
    else:  # pragma: no cover (not Linux)
        fd, path = tempfile.mkstemp(prefix="soc-parse-worker-")
        os.unlink(path)
    os.ftruncate(fd, size)
    return fd


# --- the worker process ---------------------------------------------------------------------------------------------
def main(fd: int, slot_fd: int) -> None:
    """A worker's life: its settings and inventory first, then batches until told to stop or the suite is gone."""
    conn = Connection(fd)
    slot = _Slot(slot_fd)
    slot.close_fd()
    try:
        limits, inventory = conn.recv()
    except (EOFError, OSError):
        return
    _serve(conn, limits, inventory, slot)


def _tracked(slot: _Slot, batch: int, messages: list[RawMessage]) -> Iterator[RawMessage]:
    """The batch's messages, the record clock set as each one is taken (process_batch parses it next)."""
    for index, message in enumerate(messages):
        slot.begin(batch, index)
        yield message
    slot.idle()


def _serve(conn: Connection, limits: dict, inventory: Any, slot: _Slot) -> None:
    # Only the pipeline's own settings travel (not the whole configuration): a worker imports no more than the
    # pipeline needs, and stays small.
    pipeline = Pipeline(Context(inventory=inventory, **limits))
    gc.collect()
    gc.freeze()  # what the worker keeps for good (parsers, inventory) stays out of the collector's passes
    while True:
        try:
            kind, payload = conn.recv()
        except (EOFError, OSError):
            return
        if kind == "stop":
            return
        if kind == "inventory":
            pipeline.context.inventory = payload
            continue
        batch_id, batch = payload
        try:
            result: BatchResult | str = pipeline.process_batch(_tracked(slot, batch_id, messages_of(batch)),
                                                               encode=True)
        except Exception as exc:  # process_batch keeps each message's failure; this is a bug around it
            log.exception("a parse worker failed on a batch")
            result = f"{type(exc).__name__}: {exc}"
        finally:
            slot.idle()
        try:
            conn.send((batch_id, result))
        except (OSError, ValueError):
            return


def messages_of(batch: list) -> list[RawMessage]:
    """A batch as the parser thread read it: spool records (bytes) for a worker, or messages."""
    return [spool.decode(item) if isinstance(item, bytes) else item for item in batch]


# --- the suite's side -------------------------------------------------------------------------------------------------
class _Overrun:
    """A worker was killed because the record at ``index`` of its batch ran over the budget."""

    def __init__(self, index: int, seconds: float, pid: int):
        self.index, self.seconds, self.pid = index, seconds, pid


_DIED = object()  # the worker ended (or its connection broke) without answering


class Ticket:
    """A batch handed to a worker: ``result()`` waits for it (under the time budget), or parses it again in the
    spare worker if the worker is gone."""

    def __init__(self, workers: "ParseWorkers", worker: "_Worker | None", batch_id: int, batch: list):
        self._workers, self._worker, self._batch_id, self._batch = workers, worker, batch_id, batch

    def result(self) -> BatchResult:
        return self._workers.collect(self._worker, self._batch_id, self._batch)


class _Worker:
    def __init__(self, limits: dict, inventory: Any):
        ours, theirs = socket.socketpair()
        self.slot = _Slot()
        with theirs:
            # It ends on its own when the suite is gone: its end of the pair reads EOF. Its own session: a Ctrl-C
            # at the terminal is the suite's to handle (it stops its workers), even while a worker is starting.
            # argv: this interpreter, the fixed _BOOT program, two descriptor numbers and sys.path; no shell
            self.process = subprocess.Popen(  # nosec B603 - nothing in it comes from outside the suite
                [sys.executable, "-c", _BOOT, str(theirs.fileno()), str(self.slot.fd), *sys.path],
                pass_fds=(theirs.fileno(), self.slot.fd), start_new_session=True)
        self.slot.close_fd()
        self.conn = Connection(ours.detach())
        self.inventory = inventory
        try:
            self.conn.send((limits, inventory))
        except OSError as exc:  # it died starting: seen as dead before its first batch, and started again
            log.error("parse worker (pid %s) did not take its settings: %s", self.process.pid, exc)

    def alive(self) -> bool:
        return self.process.poll() is None

    def send(self, item: tuple) -> bool:
        try:
            self.conn.send(item)
            return True
        except (OSError, ValueError):
            return False

    def kill(self) -> None:
        try:
            self.process.kill()
        except OSError:
            pass
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:  # never seen; nothing more can be done from here
            log.error("parse worker (pid %s) did not end after SIGKILL", self.process.pid)

    def ask_to_stop(self) -> None:
        self.send(("stop", None))  # read after the batches it holds: a busy worker is killed by finish()

    def finish(self, timeout: float) -> None:
        try:
            self.process.wait(max(timeout, 0.0))
        except subprocess.TimeoutExpired:
            self.kill()
        self.conn.close()


class ParseWorkers:
    """``count`` worker processes fed in turn, plus a spare one (started when first needed) that parses again the
    batches of a worker that was killed or died. Only the parser thread calls ``submit``; only the writer thread
    calls ``Ticket.result``."""

    def __init__(self, pipeline: Pipeline, count: int, timeout: float = DEFAULT_TIMEOUT,
                 abort: threading.Event | None = None):
        self.pipeline = pipeline  # the suite's own: its inventory is the one to use; it parses when a worker cannot
        self.timeout = timeout
        self._abort = abort or threading.Event()  # set by the suite when it stops without waiting for parsing
        context = pipeline.context
        self._limits = {"zone": context.zone, "max_line_bytes": context.max_line_bytes,
                        "dead_letter_max_bytes": context.dead_letter_max_bytes,
                        "max_json_bytes": context.max_json_bytes, "max_json_depth": context.max_json_depth}
        self._inventory = context.inventory
        self._here = threading.Lock()
        self._ids = itertools.count(1)
        self._workers = [_Worker(self._limits, self._inventory) for _ in range(count)]
        self._spare: _Worker | None = None
        self._next = 0
        self.restarts = 0  # workers started again after they died or were killed
        self.timeouts = 0  # records set aside because they ran over the budget

    def __len__(self) -> int:
        return len(self._workers)

    # --- the parser thread ---------------------------------------------------------------------------------------
    def submit(self, batch: list) -> Ticket:
        if self._abort.is_set() or not self._workers:
            raise Abandoned("the suite is stopping: no more batches are parsed")
        inventory = self.pipeline.context.inventory
        if inventory is not self._inventory:  # edited: every worker takes it before its next batch
            self._inventory = inventory
            for worker in self._workers:
                if worker.send(("inventory", inventory)):
                    worker.inventory = inventory
        index = self._next
        self._next = (index + 1) % len(self._workers)
        worker = self._workers[index]
        if not worker.alive():
            log.error("parse worker %d (pid %s) ended (exit code %s); starting another", index, worker.process.pid,
                      worker.process.returncode)
            # Its connection is not closed here: the writer thread may be reading it for a ticket; it closes when
            # the last ticket holding it is done.
            worker = self._workers[index] = _Worker(self._limits, self._inventory)
            self.restarts += 1
        batch_id = next(self._ids)
        if not worker.send(("batch", (batch_id, batch))):
            return Ticket(self, None, batch_id, batch)
        return Ticket(self, worker, batch_id, batch)

    # --- the writer thread ---------------------------------------------------------------------------------------
    def collect(self, worker: _Worker | None, batch_id: int, batch: list) -> BatchResult:
        """The parsed batch: the worker's answer, or, when a record ran over the budget, that record as a
        ``parse_timeout`` dead letter and the others parsed again; when the worker died, the whole batch again."""
        if worker is None:
            return self._guarded(batch)
        answer = self._await(worker, batch_id)
        if isinstance(answer, BatchResult):
            return answer
        if isinstance(answer, _Overrun):
            letter = self._timeout_letter(batch[answer.index], answer)
            return _merged([self._guarded(batch[:answer.index] + batch[answer.index + 1:])], [letter])
        if isinstance(answer, str):
            log.error("a parse worker could not parse a batch (%s); parsing it here", answer)
            return self.parse_here(batch)
        log.error("a parse worker stopped with a batch of %d messages; parsing it again in the spare worker",
                  len(batch))
        return self._guarded(batch)

    def _await(self, worker: _Worker, batch_id: int):
        """The worker's answer for ``batch_id``, watching the record clock meanwhile: the answer (BatchResult or
        the error text), an _Overrun (the worker was killed), or _DIED. Raises Abandoned once the suite aborts."""
        budget = int(self.timeout * 1e9)
        conn = worker.conn
        while True:
            try:
                if conn.poll(_POLL):
                    answered, answer = conn.recv()
                    if answered == batch_id:
                        return answer
                    log.error("parse worker (pid %s) answered batch %s while batch %s was awaited",
                              worker.process.pid, answered, batch_id)
                    continue
            except (EOFError, OSError, ValueError, TypeError):
                return _DIED
            if self._abort.is_set():
                raise Abandoned(f"the suite is stopping; batch {batch_id} is left in the spool")
            state = worker.slot.read()
            if state is not None and state[0] == batch_id and state[2]:
                running = time.monotonic_ns() - state[2]
                if running > budget:
                    worker.kill()
                    self.timeouts += 1
                    log.warning("a record took more than %.1f s to parse (record %d of a batch of parse worker "
                                "pid %s): the worker was killed, the record is kept as a parse_timeout dead letter",
                                self.timeout, state[1], worker.process.pid)
                    return _Overrun(state[1], running / 1e9, worker.process.pid)
            # (a worker that ended is seen by poll(): its end of the socket closed, recv() raises EOFError)

    def _spare_worker(self) -> _Worker:
        spare = self._spare
        if spare is None or not spare.alive():
            if spare is not None:
                spare.conn.close()
                self.restarts += 1
            spare = self._spare = _Worker(self._limits, self.pipeline.context.inventory)
        elif spare.inventory is not self.pipeline.context.inventory:
            if spare.send(("inventory", self.pipeline.context.inventory)):
                spare.inventory = self.pipeline.context.inventory
        return spare

    def _guarded(self, batch: list) -> BatchResult:
        """Parse ``batch`` in the spare worker under the budget; a record that runs over it is set aside as a dead
        letter and the rest parsed again, until every record has an answer."""
        results: list[BatchResult] = []
        letters = []
        while batch:
            if self._abort.is_set():
                raise Abandoned("the suite is stopping: the batch is left in the spool")
            spare = self._spare_worker()
            batch_id = next(self._ids)
            answer = self._await(spare, batch_id) if spare.send(("batch", (batch_id, batch))) else _DIED
            if isinstance(answer, BatchResult):
                results.append(answer)
                break
            if isinstance(answer, _Overrun):
                letters.append(self._timeout_letter(batch[answer.index], answer))
                batch = batch[:answer.index] + batch[answer.index + 1:]
                continue
            if isinstance(answer, str):
                log.error("the spare parse worker could not parse a batch (%s); parsing it here", answer)
            else:
                log.error("the spare parse worker stopped with a batch of %d messages; parsing it here", len(batch))
            results.append(self.parse_here(batch))  # a batch that kills workers twice: as before the budget
            break
        return _merged(results, letters)

    def _timeout_letter(self, item, overrun: _Overrun):
        message = messages_of([item])[0]
        return self.pipeline.dead_letter(
            message, "parse_timeout",
            f"parsing this record took more than {self.timeout:g} s ({overrun.seconds:.1f} s when it was stopped); "
            f"parse worker pid {overrun.pid} was killed and replaced, the other records of its batch were parsed",
            count=False)

    def parse_here(self, batch: list) -> BatchResult:
        with self._here:
            return self.pipeline.process_batch(messages_of(batch))

    # --- stopping -------------------------------------------------------------------------------------------------
    def close(self, timeout: float = STOP_SECONDS) -> None:
        """Ask every worker to stop; kill those still running after ``timeout`` (busy with a batch, or stuck)."""
        workers = [*self._workers, *([self._spare] if self._spare is not None else [])]
        self._workers, self._spare = [], None
        for worker in workers:
            worker.ask_to_stop()
        deadline = time.monotonic() + timeout
        for worker in workers:
            worker.finish(deadline - time.monotonic())

    def kill(self) -> None:
        """Stop every worker at once (the suite is stopping and will not wait for parsing)."""
        self.close(timeout=0.0)


def _merged(results: Iterable[BatchResult], letters: list) -> BatchResult:
    """One batch's result from the results of its parts and the dead letters of the records set aside."""
    out = BatchResult(encoded=[])
    tally = out.tally = Tally()
    for result in results:
        out.encoded.extend(result.encoded_events())  # type: ignore[union-attr]
        out.dead_letters.extend(result.dead_letters)
        tally.parsed.update(result.tally.parsed)
        tally.failed.update(result.tally.failed)
        for key, (count, first, last) in result.tally.unknown_senders.items():
            heard = tally.unknown_senders.setdefault(key, [0, first, last])
            heard[0] += count
            heard[1], heard[2] = min(heard[1], first), max(heard[2], last)
    out.dead_letters.extend(letters)
    if letters:
        tally.failed.update(Counter({"parse_timeout": len(letters)}))
    return out
