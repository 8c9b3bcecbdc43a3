"""Intake: every source's way into the disk spool, and the two threads that take batches out of it.

Sources append raw messages to the spool (collectors/spool.py) before they read further (TCP, TLS: ``submit``, which
waits while the spool is full, so the sender is slowed) or answer (HTTP: ``accept``, after an fsync, or
``Backpressure`` with a retry delay when the spool has no room); UDP cannot wait (``submit_nowait``: dropped and
counted when full). The reader thread takes batches from the spool and parses them (itself or through the parse
workers, collectors/parse_workers.py); the writer thread stores the events and dead letters, hands the stored events
to what is downstream (event hooks and detection: detections/stage.py), and only then commits the batch in the
spool. When the store fails the writer retries the same batch with backoff, so the spool grows to its bound and the
sources are held back as above: memory stays bounded, nothing accepted is thrown away, and a crash replays from the
last commit.
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

from collectors.message import RawMessage
from collectors.parse_workers import Abandoned, ParseWorkers, Ticket, messages_of
from collectors.pipeline import Pipeline
from collectors.settings import PipelineConfig
from collectors.spool import Spool
from soc import codec, ecs, metrics
from soc.storage import DeadLetter, Store, StoreError

log = logging.getLogger(__name__)

UDP_DROPPED = metrics.Counter("soc_udp_dropped", "UDP syslog messages dropped because the spool was full")
REFUSED = metrics.Counter("soc_ingest_refused", "Batches refused with a retry signal because the spool was full",
                          ["transport"])


class Backpressure(Exception):
    """The suite cannot take more now (the spool is at its bound): the sender should retry after ``retry_after``."""

    def __init__(self, retry_after: float = 5.0, detail: str = "the collector's spool is full"):
        self.retry_after = retry_after
        super().__init__(detail)


class _Aborted(Exception):
    """The suite is stopping while the store is unreachable: the batch stays in the spool for the next start."""


@dataclass
class BatchOutcome:
    events: list[dict] = field(default_factory=list)
    dead_letters: int = 0
    alerts: list[dict] = field(default_factory=list)


class Downstream(Protocol):
    """What the writer hands stored events to (the composition root wires event hooks and detection here)."""

    @property
    def needs_events(self) -> bool:
        """Whether anything downstream reads the events (else a parse worker's batch is never decoded)."""

    def stored(self, events: list[dict], retry: Callable[..., Any]) -> list[dict]:
        """Handle a stored batch; the alerts it raised."""


class Intake:
    def __init__(self, config: PipelineConfig, data_dir: str, pipeline: Pipeline, store: Store,
                 downstream: Downstream):
        self.config = config
        self.data_dir = data_dir
        self.pipeline = pipeline
        self.store = store
        self.downstream = downstream
        self.spool: Spool | None = None  # opened by open_spool() when the suite starts receiving
        self._worker: threading.Thread | None = None  # reads the spool and parses
        self._writer: threading.Thread | None = None  # stores, hands downstream, commits
        self._handoff: queue.Queue = queue.Queue(maxsize=1)
        self._parse_workers: ParseWorkers | None = None  # processes that parse, when pipeline.parse_workers > 0
        self._stopping = threading.Event()
        self._abort = threading.Event()
        self.processed = 0
        self.accepted = 0  # messages written to the spool by sources
        self.completed = 0  # of those, processed and committed by the writer

    # --- the processing path (also used directly by tests and file ingest) -----------------------------------
    def process(self, messages: list[RawMessage]) -> BatchOutcome:
        started = time.perf_counter()
        return self._store_and_hand_on(self.pipeline.process_batch(messages), len(messages), started)

    def _store_and_hand_on(self, result, count: int, started: float) -> BatchOutcome:
        """The second half of processing a batch: store events and dead letters, then hand the stored events to the
        stages downstream (event hooks, detection); what they raised comes back in the outcome."""
        result.publish(self.pipeline.context.unknown_senders)
        encoded = result.encoded_events()
        # Events from a parse worker arrive serialised; they are decoded only when something here reads them.
        wanted = result.events or self.downstream.needs_events
        outcome = BatchOutcome(events=result.decoded_events() if wanted else [],
                               dead_letters=len(result.dead_letters))
        if encoded:
            write_started = time.perf_counter()
            stored = len(encoded)
            try:
                self._with_retry("events", self.store.write_encoded, encoded)
            except StoreError as exc:
                # The store refused them for good (a mapping conflict, say): keep every one as a dead letter.
                rejected = exc.rejected or [(codec.loads(e.source), str(exc)) for e in encoded]
                refused_ids = {ecs.get(doc, "event.id") for doc, _ in rejected if doc}
                result.dead_letters.extend(self._event_dead_letter(doc, reason) for doc, reason in rejected if doc)
                outcome.events = [e for e in outcome.events if ecs.get(e, "event.id") not in refused_ids]
                outcome.dead_letters = len(result.dead_letters)
                stored -= len(refused_ids)
            metrics.STORE_WRITE_SECONDS.observe(time.perf_counter() - write_started)
            metrics.EVENTS_STORED.labels(store=self.store.name).inc(stored)
        if result.dead_letters:
            self._with_retry("dead letters", self.store.write_dead_letters, result.dead_letters)
        if outcome.events:
            outcome.alerts = self.downstream.stored(outcome.events, self._with_retry)
        metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
        self.processed += count
        return outcome

    @staticmethod
    def _event_dead_letter(doc: dict, reason: str) -> DeadLetter:
        metrics.EVENTS_FAILED.labels(reason="store_rejected").inc()
        metrics.DEAD_LETTERS.labels(reason="store_rejected").inc()
        raw = (ecs.get(doc, "event.original") or json.dumps(doc, default=str)).encode("utf-8", "surrogateescape")
        return DeadLetter(received=ecs.get(doc, "event.created") or ecs.now_iso(),
                          source=ecs.get(doc, "log.source.address") or "pipeline",
                          reason=f"store_rejected: {reason}", raw=raw)

    def _with_retry(self, what: str, fn, *args):
        """Retry transient store failures with backoff for as long as it takes; raise permanent ones."""
        delay = 0.2
        while True:
            try:
                return fn(*args)
            except StoreError as exc:
                metrics.STORE_ERRORS.labels(store=self.store.name).inc()
                if not exc.transient:
                    raise
                if self._abort.is_set():
                    raise _Aborted() from exc
                log.warning("store write of %s failed, retrying in %.1fs: %s", what, delay, exc)
                time.sleep(delay)
                delay = min(delay * 2, 10.0)

    def open_spool(self) -> Spool:
        if self.spool is None:
            cfg = self.config
            directory = Path(cfg.spool_dir)
            if not directory.is_absolute():
                directory = Path(self.data_dir) / directory
            self.spool = Spool(directory, max_bytes=cfg.spool_max_bytes, segment_bytes=cfg.spool_segment_bytes)
            if self.spool.recovered_records:
                log.info("%d messages from before the last stop are in the spool and will be processed",
                         self.spool.recovered_records)
                self.accepted += self.spool.recovered_records
        return self.spool

    # Two threads: the parser reads the spool and parses the next batches (itself, or by handing them to the parse
    # workers) while the writer stores, detects and commits the oldest. One writer keeps commits in spool order;
    # the handoff queue bounds the batches in flight.
    def _run_worker(self) -> None:
        spool = self.spool
        if spool is None:
            raise RuntimeError("the spool is opened before the worker starts")
        batch_size = self.config.batch_size
        flush = self.config.flush_interval_seconds
        raw = self._parse_workers is not None  # workers decode the spool's records themselves
        try:
            while not self._abort.is_set():
                batch = spool.read(batch_size, timeout=0.2, raw=raw)
                if not batch:
                    if self._stopping.is_set():
                        return
                    continue
                deadline = time.monotonic() + flush
                while len(batch) < batch_size:
                    remaining = deadline - time.monotonic()
                    more = spool.read(batch_size - len(batch), timeout=remaining, raw=raw) if remaining > 0 else []
                    if not more:
                        break
                    batch.extend(more)
                started = time.perf_counter()
                try:
                    workers = self._parse_workers
                    result = workers.submit(batch) if workers else self.pipeline.process_batch(batch)
                except Abandoned:
                    return  # stopping: what was read stays in the spool
                except Exception:  # a bug must not kill the worker: the writer keeps the batch as dead letters
                    log.exception("parsing a batch of %d messages failed", len(batch))
                    result = None
                if not self._hand_over((batch, result, spool.read_position, started)):
                    return
        finally:
            self._hand_over(None)

    def _hand_over(self, item) -> bool:
        while not self._abort.is_set():
            if self._writer is not None and not self._writer.is_alive():
                return False
            try:
                self._handoff.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _run_writer(self) -> None:
        spool = self.spool
        if spool is None:
            raise RuntimeError("the spool is opened before the writer starts")
        while True:
            try:
                item = self._handoff.get(timeout=0.2)
            except queue.Empty:
                if self._abort.is_set():
                    return
                continue
            if item is None:
                return
            batch, result, position, started = item
            try:
                if isinstance(result, Ticket):
                    result = result.result()
                if result is None:
                    raise RuntimeError("the pipeline failed on this batch")
                self._store_and_hand_on(result, len(batch), started)
            except (_Aborted, Abandoned):
                return  # not committed: the next start processes this batch again
            except Exception as exc:  # a bug must not kill the writer or lose the batch: keep it as dead letters
                log.exception("processing a batch of %d messages failed", len(batch))
                letters = [self.pipeline.dead_letter(msg, "internal_error", f"{type(exc).__name__}: {exc}")
                           for msg in messages_of(batch)]
                try:
                    self._with_retry("dead letters", self.store.write_dead_letters, letters)
                except _Aborted:
                    return
                except StoreError:
                    log.exception("the batch could not be kept as dead letters either; it stays in the spool")
                    self._abort.set()
                    return
            spool.commit(position, len(batch))
            self.completed += len(batch)

    def start(self) -> None:
        self.open_spool()
        count = self.config.parse_worker_count()
        if count and self._parse_workers is None:
            # Each record within pipeline.parse_timeout_seconds, or its worker is killed (collectors/parse_workers.py)
            self._parse_workers = ParseWorkers(self.pipeline, count, abort=self._abort,
                                               timeout=self.config.parse_timeout_seconds)
        # Batches in flight: one being stored, one per worker being parsed (or one being parsed here).
        self._handoff = queue.Queue(maxsize=max(1, count))
        self._writer = threading.Thread(target=self._run_writer, name="soc-store-writer", daemon=True)
        self._worker = threading.Thread(target=self._run_worker, name="soc-pipeline", daemon=True)
        self._writer.start()
        self._worker.start()

    def _join_workers(self, timeout: float | None) -> bool:
        """Wait for the parser, then the writer; True when both have finished."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in (self._worker, self._writer):
            if thread is None:
                continue
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not any(t is not None and t.is_alive() for t in (self._worker, self._writer))

    def submit_nowait(self, msg: RawMessage) -> bool:
        """For sources that cannot wait (UDP): the message is dropped, and counted, when the spool is full."""
        spool = self.spool or self.open_spool()
        if spool.full() or spool.closed:
            UDP_DROPPED.inc()
            return False
        spool.append(msg)
        self.accepted += 1
        return True

    async def submit(self, messages: list[RawMessage]) -> None:
        """Backpressure for stream sources: wait (and so stop reading the socket) while the spool is full. The
        messages of one read go in as far as there is room (the bound is passed by one message at most), the rest
        after the spool has drained below its bound."""
        spool = self.spool or self.open_spool()
        at = 0
        while at < len(messages):
            while spool.full():
                spool.flush()
                await asyncio.sleep(0.05)
            if spool.closed:
                raise ConnectionAbortedError("the collector is stopping")  # the sender reconnects to the next start
            end = at + spool.room_for(messages[at:])
            spool.extend(messages[at:end])
            self.accepted += end - at
            at = end

    def flush_spool(self) -> None:
        """Stream sources call this after each chunk they read: what they framed is on disk before they read more."""
        if self.spool is not None and not self.spool.closed:
            self.spool.flush()

    async def accept(self, messages: list[RawMessage]) -> None:
        """Take a batch from an acknowledging source (HTTP ingest): returns once the batch is on disk and synced,
        so the sender may be told it was accepted; raises Backpressure when the spool has no room for it."""
        spool = self.spool or self.open_spool()
        if spool.closed:
            raise Backpressure(retry_after=10.0, detail="the collector is stopping")
        size = sum(len(m.data) + 64 for m in messages)
        if spool.pending_bytes + size > spool.max_bytes:
            REFUSED.labels(transport=messages[0].transport if messages else "http").inc()
            raise Backpressure(retry_after=5.0)
        spool.extend(messages)
        self.accepted += len(messages)
        spool.flush()
        await asyncio.get_running_loop().run_in_executor(None, spool.sync)

    async def keep_spool_synced(self) -> None:
        interval = self.config.spool_sync_interval_seconds
        last_sync = time.monotonic()
        while True:
            await asyncio.sleep(0.02)
            spool = self.spool
            if spool is None or spool.closed:
                continue
            spool.flush()  # UDP messages (and the tail of TCP chunks) become readable for the worker
            depth = spool.depth()
            metrics.SPOOL_DEPTH.labels("disk").set(depth)
            metrics.QUEUE_DEPTH.set(depth)
            if time.monotonic() - last_sync >= interval:
                last_sync = time.monotonic()
                await asyncio.get_running_loop().run_in_executor(None, spool.sync)

    def drain(self, timeout: float = 60.0) -> bool:
        """Wait until every message accepted so far has been processed (tests, demo, shutdown)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.completed >= self.accepted:
                return True
            time.sleep(0.02)
        return False


    async def stop(self) -> None:
        """Stop taking from the spool: what is spooled is stored for a while (``shutdown_drain_seconds``); whatever
        is left (the store is down, say) waits on disk for the next start."""
        loop = asyncio.get_running_loop()
        if self.spool is None:
            return
        self.spool.flush()
        self._stopping.set()
        if not await loop.run_in_executor(None, self._join_workers, self.config.shutdown_drain_seconds):
            log.warning("stopping with %d messages still in the spool; they are processed at the next start",
                        self.spool.depth())
            self._abort.set()
            # Whatever a parse worker is doing (a record within its budget, or stuck), it is killed now: the parser
            # thread may be blocked sending it a batch, and nothing it holds is committed (replayed at the start).
            if self._parse_workers is not None:
                self._parse_workers.kill()
            if not await loop.run_in_executor(None, self._join_workers, 5.0):
                log.error("the pipeline threads did not stop; the spool is left as it is on disk")
                return
        self.spool.close()
        self._close_parse_workers()

    def _close_parse_workers(self) -> None:
        if self._parse_workers is not None:
            self._parse_workers.close()
            self._parse_workers = None

    def close(self) -> None:
        if self.spool is not None and not self.spool.closed:
            self.spool.close()
        self._close_parse_workers()
