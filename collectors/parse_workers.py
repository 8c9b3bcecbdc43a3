"""Parse workers: the pipeline run in other processes, so parsing uses every core (in one process the GIL lets
one thread parse at a time).

The suite's parser thread sends each batch it reads from the spool (the records as they are on disk: the worker
decodes them) to the next worker in turn; the writer thread
takes the results back in the same order, so batches are still stored and committed in spool order. A worker
receives the pipeline's limits and time zone once and the inventory again whenever it changes (an edit through the API), and
sends back the events already serialised (the writer passes that JSON to the store as it is: no pickling of
nested documents), the dead letters, and the batch's counts for the suite's metrics.

Nothing is lost to a worker: one that dies (killed, out of memory) is started again, and each batch it held is
parsed in the suite's own process instead. Workers stop with the suite, and on their own when it is gone (their
socket closes).
"""

from __future__ import annotations

import gc
import logging
import socket
import subprocess
import sys
import threading
from multiprocessing.connection import Connection
from typing import Any

from collectors import spool
from collectors.message import RawMessage
from collectors.pipeline import BatchResult, Context, Pipeline

log = logging.getLogger(__name__)

# A worker is a fresh interpreter (subprocess) talking over a socket pair with multiprocessing's framing. Not a
# fork: it inherits none of the suite's threads, sockets or locks. Not multiprocessing.Process either: its start
# methods add a forkserver and a resource-tracker process (about 50 MB resident between them) that a worker needs
# neither of. Starting one costs the pipeline's imports, about half a second, at start-up and after a crash.
_BOOT = ("import sys; sys.path[:0] = sys.argv[2:]; "
         "from collectors.parse_workers import main; main(int(sys.argv[1]))")


def main(fd: int) -> None:
    """A worker's life: its settings and inventory first, then batches until told to stop or the suite is gone."""
    conn = Connection(fd)
    try:
        limits, inventory = conn.recv()
    except (EOFError, OSError):
        return
    _serve(conn, limits, inventory)


def _serve(conn: Connection, limits: dict, inventory: Any) -> None:
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
        try:
            result: BatchResult | str = pipeline.process_batch(messages_of(payload), encode=True)
        except Exception as exc:  # process_batch keeps each message's failure; this is a bug around it
            log.exception("a parse worker failed on a batch")
            result = f"{type(exc).__name__}: {exc}"
        try:
            conn.send(result)
        except (OSError, ValueError):
            return


def messages_of(batch: list) -> list[RawMessage]:
    """A batch as the parser thread read it: spool records (bytes) for a worker, or messages."""
    return [spool.decode(item) if isinstance(item, bytes) else item for item in batch]


class Ticket:
    """A batch handed to a worker: ``result()`` waits for it, or parses it here if the worker is gone."""

    def __init__(self, workers: "ParseWorkers", conn: Connection | None, batch: list):
        self._workers, self._conn, self._batch = workers, conn, batch

    def result(self) -> BatchResult:
        if self._conn is not None:
            try:
                answer = self._conn.recv()
                if isinstance(answer, BatchResult):
                    return answer
                log.error("a parse worker could not parse a batch (%s); parsing it here", answer)
            except (EOFError, OSError):
                log.error("a parse worker stopped with a batch of %d messages; parsing it here", len(self._batch))
        return self._workers.parse_here(self._batch)


class _Worker:
    def __init__(self, limits: dict, inventory: Any):
        ours, theirs = socket.socketpair()
        with theirs:
            # It ends on its own when the suite is gone: its end of the pair reads EOF. Its own session: a Ctrl-C
            # at the terminal is the suite's to handle (it stops its workers), even while a worker is starting.
            self.process = subprocess.Popen([sys.executable, "-c", _BOOT, str(theirs.fileno()), *sys.path],
                                            pass_fds=(theirs.fileno(),), start_new_session=True)
        self.conn = Connection(ours.detach())
        try:
            self.conn.send((limits, inventory))
        except OSError as exc:  # it died starting: seen as dead before its first batch, and started again
            log.error("parse worker (pid %s) did not take its settings: %s", self.process.pid, exc)

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float) -> None:
        try:
            self.conn.send(("stop", None))
        except (OSError, ValueError):
            pass
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:  # never seen; the other workers must still be stopped
                log.error("parse worker (pid %s) did not end after SIGKILL", self.process.pid)
        self.conn.close()


class ParseWorkers:
    """``count`` worker processes fed in turn. Only the parser thread calls ``submit``; only the writer thread
    calls ``Ticket.result``."""

    def __init__(self, pipeline: Pipeline, count: int):
        self.pipeline = pipeline  # the suite's own: its inventory is the one to use; it parses when a worker cannot
        context = pipeline.context
        self._limits = {"zone": context.zone, "max_line_bytes": context.max_line_bytes,
                        "dead_letter_max_bytes": context.dead_letter_max_bytes,
                        "max_json_bytes": context.max_json_bytes, "max_json_depth": context.max_json_depth}
        self._inventory = context.inventory
        self._here = threading.Lock()
        self._workers = [_Worker(self._limits, self._inventory) for _ in range(count)]
        self._next = 0
        self.restarts = 0

    def __len__(self) -> int:
        return len(self._workers)

    def submit(self, batch: list) -> Ticket:
        inventory = self.pipeline.context.inventory
        if inventory is not self._inventory:  # edited: every worker takes it before its next batch
            self._inventory = inventory
            for worker in self._workers:
                self._send(worker, ("inventory", inventory))
        index = self._next
        self._next = (index + 1) % len(self._workers)
        worker = self._workers[index]
        if not worker.alive():
            log.error("parse worker %d (pid %s) died (exit code %s); starting another", index, worker.process.pid,
                      worker.process.returncode)
            # Its connection is not closed here: the writer thread may be reading it for a ticket; it closes when
            # the last ticket holding it is done.
            worker = self._workers[index] = _Worker(self._limits, self._inventory)
            self.restarts += 1
        if not self._send(worker, ("batch", batch)):
            return Ticket(self, None, batch)
        return Ticket(self, worker.conn, batch)

    @staticmethod
    def _send(worker: _Worker, item: tuple) -> bool:
        try:
            worker.conn.send(item)
            return True
        except (OSError, ValueError):
            return False

    def parse_here(self, batch: list) -> BatchResult:
        with self._here:
            return self.pipeline.process_batch(messages_of(batch))

    def close(self, timeout: float = 5.0) -> None:
        for worker in self._workers:
            worker.stop(timeout)
        self._workers = []
