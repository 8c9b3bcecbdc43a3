"""The running suite: sources → spool → pipeline → store → detections → alerts, and the API beside them.

Sources run on an asyncio loop and append raw messages to the disk spool (collectors/spool.py) before they read
further (TCP, TLS) or answer (HTTP). One worker thread reads the spool in batches, parses and enriches them, writes
events and dead letters to the store, runs detection and writes alerts, and only then commits the batch in the
spool. When the store fails the worker retries the same batch with backoff: the spool grows to its bound, then TCP
senders are slowed (their reads pause), HTTP senders are told to retry later and UDP overflow is counted as dropped
— memory stays bounded, nothing accepted is thrown away, and a crash replays from the last commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import queue
import threading
import time
from pathlib import Path
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from collectors.message import RawMessage
from collectors.parse_workers import Abandoned, ParseWorkers, Ticket, messages_of
from collectors.pipeline import Pipeline, build_context
from collectors.sources import syslog as syslog_source
from collectors.sources import syslog_tls
from collectors.spool import Spool
from detections.alerts import AlertManager
from detections.engine import DetectionEngine
from detections.sigma.loader import RuleSet, load_rules
from detections.sigma.placeholders import placeholder_values
from inventory.holder import InventoryHolder
from inventory.lookup import Inventory
from soc import codec, ecs, metrics
from soc.config import Settings
from soc.storage import DeadLetter, Store, StoreError, open_store

log = logging.getLogger(__name__)

UDP_DROPPED = metrics.Counter("soc_udp_dropped", "UDP syslog messages dropped because the spool was full")
REFUSED = metrics.Counter("soc_ingest_refused", "Batches refused with a retry signal because the spool was full",
                          ["transport"])


class _Aborted(Exception):
    """The suite is stopping while the store is unreachable: the batch stays in the spool for the next start."""


class JobRefused(Exception):
    """The suite is closing: no new extension job may start."""


class Backpressure(Exception):
    """The suite cannot take more now (the spool is at its bound): the sender should retry after ``retry_after``."""

    def __init__(self, retry_after: float = 5.0, detail: str = "the collector's spool is full"):
        self.retry_after = retry_after
        super().__init__(detail)


@dataclass
class BatchOutcome:
    events: list[dict] = field(default_factory=list)
    dead_letters: int = 0
    alerts: list[dict] = field(default_factory=list)


class Suite:
    def __init__(self, settings: Settings, store: Store | None = None):
        self.settings = settings
        self.store = store or open_store(settings)
        # The one current inventory: every reader asks for it at the moment of use (see inventory/holder.py).
        self.inventory_holder = InventoryHolder.load(settings.inventory.path)
        self.pipeline = Pipeline(build_context(settings, self.inventory))
        self.inventory_holder.subscribe(self.pipeline.use_inventory)
        det = settings.detections
        cache_dir = Path(settings.data_dir) / det.rule_cache_dir if det.rule_cache_dir else None
        self.ruleset: RuleSet = load_rules(det.sigma_rule_dirs, pipeline=det.sigma_pipeline, cache_dir=cache_dir,
                                           placeholders=placeholder_values(self.inventory, det.placeholders))
        metrics.RULES_LOADED.labels(kind="sigma").set(self.ruleset.loaded)
        metrics.RULES_FAILED.labels(kind="sigma").set(self.ruleset.failed)
        for health in self.ruleset.health:
            if health.status == "failed":
                log.warning("Sigma rule %s (%s) failed to load: %s", health.title, health.path, health.reason)
        self.engine = DetectionEngine(self.ruleset)
        self.alerts = AlertManager(self.store, dedup_window_seconds=settings.detections.dedup_window_seconds,
                                   max_evidence=settings.detections.max_evidence_per_alert)
        self.spool: Spool | None = None  # opened by open_spool() when the suite starts receiving
        self._worker: threading.Thread | None = None  # reads the spool and parses
        self._writer: threading.Thread | None = None  # stores, detects, commits
        self._handoff: queue.Queue = queue.Queue(maxsize=1)
        self._parse_workers: ParseWorkers | None = None  # processes that parse, when pipeline.parse_workers > 0
        self._jobs = 0  # extension work running in other threads (see job())
        self._jobs_changed = threading.Condition()
        self._closing = False
        self._stopping = threading.Event()
        self._abort = threading.Event()
        self._stop_async: asyncio.Event | None = None
        self.bound: dict[str, int] = {}  # actual ports: syslog_udp, syslog_tcp, syslog_tls, api
        self.ready = threading.Event()
        self.processed = 0
        self.accepted = 0  # messages written to the spool by sources
        self.completed = 0  # of those, processed and committed by the worker
        # Extensions (playbooks, probes, report schedules) hook in here; see attach_extensions().
        self.alert_hooks: list[Callable[[list[dict]], None]] = []
        self.event_hooks: list[Callable[[list[dict]], None]] = []  # called with each batch of stored events
        self.background: list[Callable[[], Awaitable[None]]] = []
        attach_extensions(self, settings.extensions)

    @property
    def inventory(self) -> Inventory:
        return self.inventory_holder.current

    @inventory.setter
    def inventory(self, inventory: Inventory) -> None:
        self.inventory_holder.replace(inventory)

    async def _watch_inventory_file(self) -> None:
        """A changed inventory file is taken as soon as it is seen (an invalid one is reported and not taken)."""
        interval = self.settings.inventory.reload_interval_seconds
        loop = asyncio.get_running_loop()
        while interval > 0:
            await asyncio.sleep(interval)
            await loop.run_in_executor(None, self.inventory_holder.reload_if_changed)

    # --- the processing path (also used directly by tests and file ingest) -----------------------------------
    def process(self, messages: list[RawMessage]) -> BatchOutcome:
        started = time.perf_counter()
        return self._store_and_detect(self.pipeline.process_batch(messages), len(messages), started)

    def _store_and_detect(self, result, count: int, started: float) -> BatchOutcome:
        """The second half of processing a batch: store events and dead letters, run detections, store alerts."""
        result.publish(self.pipeline.context.unknown_senders)
        encoded = result.encoded_events()
        # Events from a parse worker arrive serialised; they are decoded only when something here reads them.
        wanted = result.events or not self.engine.idle or self.event_hooks or self.alert_hooks
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
            self._run_hooks(self.event_hooks, outcome.events)
            evaluate_started = time.perf_counter()
            detections = self.engine.evaluate(outcome.events)
            metrics.RULE_EVAL_SECONDS.observe(time.perf_counter() - evaluate_started)
            if detections:
                try:
                    outcome.alerts = self._with_retry("alerts", self.alerts.handle, detections)
                    self._run_hooks(self.alert_hooks, outcome.alerts)
                except StoreError as exc:
                    log.error("alerts could not be stored: %s", exc)
                    letters = [DeadLetter(received=ecs.now_iso(), source="detections",
                                          reason=f"alert_rejected: {exc}",
                                          raw=json.dumps(d.meta.__dict__, default=str).encode())
                               for d in detections]
                    self._with_retry("dead letters", self.store.write_dead_letters, letters)
        metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
        self.processed += count
        return outcome

    @staticmethod
    def _run_hooks(hooks: list[Callable[[list[dict]], None]], items: list[dict]) -> None:
        for hook in hooks:
            try:
                hook(items)
            except Exception:  # an extension's bug must not stop the pipeline
                log.exception("hook %s failed", getattr(hook, "__qualname__", hook))

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

    # --- the spool and the worker thread -----------------------------------------------------------------------
    def open_spool(self) -> Spool:
        if self.spool is None:
            cfg = self.settings.pipeline
            directory = Path(cfg.spool_dir)
            if not directory.is_absolute():
                directory = Path(self.settings.data_dir) / directory
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
        batch_size = self.settings.pipeline.batch_size
        flush = self.settings.pipeline.flush_interval_seconds
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
                self._store_and_detect(result, len(batch), started)
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

    def start_worker(self) -> None:
        self.open_spool()
        count = self.settings.pipeline.parse_worker_count()
        if count and self._parse_workers is None:
            # Each record within pipeline.parse_timeout_seconds, or its worker is killed (collectors/parse_workers.py)
            self._parse_workers = ParseWorkers(self.pipeline, count, abort=self._abort,
                                               timeout=self.settings.pipeline.parse_timeout_seconds)
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

    async def _sync_spool_periodically(self) -> None:
        interval = self.settings.pipeline.spool_sync_interval_seconds
        last_sync = time.monotonic()
        while True:
            await asyncio.sleep(0.02)
            spool = self.spool
            if spool is None or spool.closed:
                continue
            spool.flush()  # UDP messages (and the tail of TCP chunks) become readable for the worker
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

    # --- serving ---------------------------------------------------------------------------------------------
    async def serve(self) -> None:
        import uvicorn

        from soc_api.app import create_app

        self._stop_async = asyncio.Event()
        self.start_worker()
        cfg = self.settings
        closers = []
        if cfg.syslog.enabled:
            udp = await syslog_source.start_udp(cfg.syslog.host, cfg.syslog.udp_port, self.submit_nowait)
            self.bound["syslog_udp"] = udp.get_extra_info("sockname")[1]
            closers.append(udp.close)
            tcp = await syslog_source.start_tcp(cfg.syslog.host, cfg.syslog.tcp_port, self.submit,
                                                keep_bytes=cfg.syslog.dead_letter_max_bytes,
                                                after_chunk=self.flush_spool)
            self.bound["syslog_tcp"] = tcp.sockets[0].getsockname()[1]
            closers.append(tcp.close)
            if cfg.syslog.tls_cert_file:
                tls = await syslog_tls.start_tls(cfg.syslog.host, cfg.syslog.tls_port, self.submit,
                                                 keep_bytes=cfg.syslog.dead_letter_max_bytes,
                                                 after_chunk=self.flush_spool,
                                                 context=syslog_tls.tls_context(cfg.syslog, cfg.source),
                                                 handshake_timeout=cfg.syslog.tls_handshake_timeout_seconds)
                self.bound["syslog_tls"] = tls.sockets[0].getsockname()[1]
                closers.append(tls.close)
        server = None
        api_task = None
        if cfg.api.enabled:
            app = create_app(self)
            server = uvicorn.Server(uvicorn.Config(app, host=cfg.api.host, port=cfg.api.port, log_level="warning",
                                                   access_log=False, lifespan="off"))
            server.install_signal_handlers = lambda: None  # the CLI owns signals
            api_task = asyncio.create_task(server.serve())
            while not server.started:
                if api_task.done():
                    api_task.result()  # raises the bind error
                await asyncio.sleep(0.02)
            self.bound["api"] = server.servers[0].sockets[0].getsockname()[1]
        tasks = [asyncio.create_task(factory()) for factory in self.background]
        tasks.append(asyncio.create_task(self._sync_spool_periodically()))
        tasks.append(asyncio.create_task(self._watch_inventory_file()))
        log.info("suite running: store=%s syslog udp/tcp=%s/%s api=%s", self.store.name,
                 self.bound.get("syslog_udp"), self.bound.get("syslog_tcp"), self.bound.get("api"))
        # Everything loaded so far (rules, inventory, the app) lives as long as the process: keep it out of the
        # garbage collector's full passes, whose pauses would otherwise show as latency spikes in the API.
        gc.collect()
        gc.freeze()
        self.ready.set()
        await self._stop_async.wait()
        for task in tasks:
            task.cancel()
        for close in closers:
            close()
        if server is not None:
            server.should_exit = True
            await api_task
        loop = asyncio.get_running_loop()
        self.spool.flush()
        # The worker stores what is spooled for a while; whatever is left (the store is down, say) waits on disk.
        self._stopping.set()
        if not await loop.run_in_executor(None, self._join_workers, self.settings.pipeline.shutdown_drain_seconds):
            log.warning("stopping with %d messages still in the spool; they are processed at the next start",
                        self.spool.depth())
            self._abort.set()
            # Whatever a parse worker is doing (a record within its budget, or stuck), it is killed now: the parser
            # thread may be blocked sending it a batch, and nothing it holds is committed (replayed at the start).
            if self._parse_workers is not None:
                self._parse_workers.kill()
            await loop.run_in_executor(None, self._join_workers, None)
        self.spool.close()
        self._close_parse_workers()

    def _close_parse_workers(self) -> None:
        if self._parse_workers is not None:
            self._parse_workers.close()
            self._parse_workers = None

    def request_stop(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        if self._stop_async is None:
            return
        if loop is None:
            self._stop_async.set()
        else:
            loop.call_soon_threadsafe(self._stop_async.set)

    @contextlib.contextmanager
    def job(self):
        """Work of an extension in a thread of its own (a report build) that uses the store: ``close`` waits for it
        (a store closed under a running statement can crash the process). Raises JobRefused once closing."""
        with self._jobs_changed:
            if self._closing:
                raise JobRefused("the suite is stopping")
            self._jobs += 1
        try:
            yield
        finally:
            with self._jobs_changed:
                self._jobs -= 1
                self._jobs_changed.notify_all()

    @property
    def closing(self) -> bool:
        return self._closing

    def close(self, jobs_timeout: float = 120.0) -> None:
        with self._jobs_changed:
            self._closing = True
            if not self._jobs_changed.wait_for(lambda: self._jobs == 0, timeout=jobs_timeout):
                log.warning("closing the store with %d extension jobs still running", self._jobs)
        if self.spool is not None and not self.spool.closed:
            self.spool.close()
        self._close_parse_workers()
        self.store.close()


def attach_extensions(suite: "Suite", names: list[str]) -> None:
    """Each configured extension module has ``attach(suite)``, which may add alert hooks and background tasks."""
    import importlib

    for name in names:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            raise RuntimeError(f"extension {name!r} in the configuration cannot be imported: {exc}") from exc
        module.attach(suite)


class SuiteThread:
    """Run a suite on its own event loop in a background thread (tests and `soc demo` use this)."""

    def __init__(self, suite: Suite):
        self.suite = suite
        self.loop = asyncio.new_event_loop()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="soc-suite", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.suite.serve())
        except BaseException as exc:  # surfaced by start()
            self.error = exc
            self.suite.ready.set()

    def start(self, timeout: float = 30.0) -> "SuiteThread":
        self.thread.start()
        if not self.suite.ready.wait(timeout):
            raise RuntimeError("the suite did not start in time")
        if self.error is not None:
            raise self.error
        return self

    def stop(self) -> None:
        self.suite.request_stop(self.loop)
        self.thread.join(timeout=60)
        self.suite.close()
