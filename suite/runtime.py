"""The composition root: the suite built from its settings, then served.

``Suite(settings)`` builds every service once and wires them — the store, the one current inventory
(inventory/holder.py), the parsing pipeline (collectors/pipeline.py), the rules in use (detections/active_rules.py:
the suite's own Sigma rules and the current rule pack, selected, with the rule exceptions) and the detection stage
(detections/stage.py), the intake that takes sources' messages through the disk spool to the store
(collectors/intake.py) — then asks each configured extension to ``register(services, registry)`` (soc/plugins.py)
and wires what they registered: event and alert hooks, matchers, background tasks, things to close, named services.
``serve()`` starts the syslog listeners and the API beside them until asked to stop.

Nothing else builds these parts; nothing outside reaches into them but through what this object offers.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import logging
import threading
from typing import Any, Callable

from collectors.intake import BatchOutcome, Intake
from collectors.message import RawMessage
from collectors.pipeline import Pipeline, build_context
from collectors.sources import syslog as syslog_source
from collectors.sources import syslog_tls
from detections import rule_arrivals
from detections.active_rules import ActiveRules
from detections.alerts import AlertManager
from detections.engine import DetectionEngine
from detections.sigma.placeholders import placeholder_values
from detections.stage import DetectionStage
from inventory.holder import InventoryHolder
from inventory.lookup import Inventory
from soc.plugins import JobRunner, Registry, Services, run_hooks
from soc.storage import Store, open_store
from suite.settings import Settings

log = logging.getLogger(__name__)


class Suite:
    def __init__(self, settings: Settings, store: Store | None = None):
        self.settings = settings
        self.store = store or open_store(settings)
        # The one current inventory: every reader asks for it at the moment of use.
        self.inventory_holder = InventoryHolder.load(settings.inventory.path)
        self.pipeline = Pipeline(build_context(settings, self.inventory))
        self.inventory_holder.subscribe(self.pipeline.use_inventory)
        # The rules in use now: read through this holder at the moment of use (a rule pack installed or rolled back,
        # or a changed exceptions file, replaces them while the suite runs). A broken exceptions file stops the start.
        self.rules = ActiveRules(settings.detections, settings.data_dir, self._placeholders).start()
        self.engine = DetectionEngine(self.rules.current, exceptions=self.rules.exceptions)
        self.rules.subscribe(self.engine.use_rules, self.engine.use_exceptions)
        # When each rule arrived (for the digest's "new rules covering your sources"): now, and at each new pack.
        rule_arrivals.record(self.store, self.rules.current)
        self.rules.subscribe(lambda ruleset: rule_arrivals.record(self.store, ruleset), lambda exceptions: None)
        self.alerts = AlertManager(self.store, dedup_window_seconds=settings.detections.dedup_window_seconds,
                                   max_evidence=settings.detections.max_evidence_per_alert)
        self.registry = Registry()
        self.detection = DetectionStage(self.engine, self.alerts, self.store, self.registry.alert_hooks,
                                        self.registry.alert_edit_hooks)
        self.jobs = JobRunner()
        self.services = Services(settings=settings, store=self.store, inventory_holder=self.inventory_holder,
                                 alerts=self.detection, jobs=self.jobs, ruleset=self.rules,
                                 provided=self.registry.provided)
        self.intake = Intake(settings.pipeline, settings.data_dir, self.pipeline, self.store, downstream=self)
        self.bound: dict[str, int] = {}  # actual ports: syslog_udp, syslog_tcp, syslog_tls, api
        self.ready = threading.Event()
        self._stop_async: asyncio.Event | None = None
        register_extensions(settings.extensions, self.services, self.registry)
        self.engine.matchers.extend(self.registry.matchers)

    def _placeholders(self) -> dict[str, list[str]]:
        """%placeholder% values for the rules, from the inventory current when rules are loaded."""
        return placeholder_values(self.inventory, self.settings.detections.placeholders)

    # --- what the suite offers ---------------------------------------------------------------------------------
    @property
    def inventory(self) -> Inventory:
        return self.inventory_holder.current

    @property
    def ruleset(self) -> ActiveRules:
        """The rules in use now, read like a RuleSet (``rules``, ``correlations``, ``health``, ``loaded``...)."""
        return self.rules

    def add_extension(self, register: Callable[..., None], *args: Any) -> None:
        """One more extension after the start (tests, one-shot commands): ``register(services, registry, *args)``,
        its matchers wired at once; its background tasks run if the suite is served after this."""
        before = len(self.registry.matchers)
        register(self.services, self.registry, *args)
        self.engine.matchers.extend(self.registry.matchers[before:])

    def service(self, name: str) -> Any:
        """A service an extension provided (``playbooks``, ``yara``, ``indicators``, ...), or None."""
        return self.services.service(name)

    async def accept(self, messages: list[RawMessage]) -> None:
        """HTTP ingest: the batch on disk and synced, or Backpressure (collectors/intake.py)."""
        await self.intake.accept(messages)

    def queue_depth(self) -> int:
        """Messages accepted and not yet processed."""
        spool = self.intake.spool
        return spool.depth() if spool is not None else 0

    def unknown_senders(self) -> list[dict]:
        """Senders no agency owns, as the pipeline heard them (bounded, in memory)."""
        return self.pipeline.context.unknown_senders.snapshot()

    def process(self, messages: list[RawMessage]) -> BatchOutcome:
        """Messages through the pipeline, the store and the detections at once (tests and file ingest)."""
        return self.intake.process(messages)

    def drain(self, timeout: float = 60.0) -> bool:
        return self.intake.drain(timeout)

    def job(self):
        return self.jobs.job()

    # --- downstream of the intake: what happens to each stored batch ------------------------------------------
    @property
    def needs_events(self) -> bool:
        return not self.detection.idle or bool(self.registry.event_hooks) or bool(self.registry.alert_hooks)

    def stored(self, events: list[dict], retry: Callable[..., Any]) -> list[dict]:
        run_hooks(self.registry.event_hooks, events)
        return self.detection.process(events, retry)

    # --- serving ---------------------------------------------------------------------------------------------
    async def serve(self) -> None:
        import uvicorn

        from soc_api.app import create_app

        self._stop_async = asyncio.Event()
        self.intake.start()
        cfg = self.settings
        closers = []
        if cfg.syslog.enabled:
            udp = await syslog_source.start_udp(cfg.syslog.host, cfg.syslog.udp_port, self.intake.submit_nowait)
            self.bound["syslog_udp"] = udp.get_extra_info("sockname")[1]
            closers.append(udp.close)
            tcp = await syslog_source.start_tcp(cfg.syslog.host, cfg.syslog.tcp_port, self.intake.submit,
                                                keep_bytes=cfg.syslog.dead_letter_max_bytes,
                                                after_chunk=self.intake.flush_spool)
            self.bound["syslog_tcp"] = tcp.sockets[0].getsockname()[1]
            closers.append(tcp.close)
            if cfg.syslog.tls_cert_file:
                tls = await syslog_tls.start_tls(cfg.syslog.host, cfg.syslog.tls_port, self.intake.submit,
                                                 keep_bytes=cfg.syslog.dead_letter_max_bytes,
                                                 after_chunk=self.intake.flush_spool,
                                                 context=syslog_tls.tls_context(cfg.syslog, cfg.source),
                                                 handshake_timeout=cfg.syslog.tls_handshake_timeout_seconds)
                self.bound["syslog_tls"] = tls.sockets[0].getsockname()[1]
                closers.append(tls.close)
        server = None
        api_task = None
        if cfg.api.enabled:
            app = create_app(self)
            server = uvicorn.Server(uvicorn.Config(app, host=cfg.api.host, port=cfg.api.port, log_level="warning",
                                                   access_log=False, lifespan="off", **_api_tls(cfg.api)))
            server.install_signal_handlers = lambda: None  # the CLI owns signals
            api_task = asyncio.create_task(server.serve())
            while not server.started:
                if api_task.done():
                    api_task.result()  # raises the bind error
                await asyncio.sleep(0.02)
            self.bound["api"] = server.servers[0].sockets[0].getsockname()[1]
        tasks = [asyncio.create_task(factory()) for factory in self.registry.background]
        tasks.append(asyncio.create_task(self.intake.keep_spool_synced()))
        tasks.append(asyncio.create_task(self._watch_inventory_file()))
        tasks.append(asyncio.create_task(self._watch_rules()))
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
        await self.intake.stop()

    async def _watch_inventory_file(self) -> None:
        """A changed inventory file is taken as soon as it is seen (an invalid one is reported and not taken)."""
        interval = self.settings.inventory.reload_interval_seconds
        loop = asyncio.get_running_loop()
        while interval > 0:
            await asyncio.sleep(interval)
            await loop.run_in_executor(None, self.inventory_holder.reload_if_changed)

    async def _watch_rules(self) -> None:
        """A new current rule pack (`soc rules install`, `soc rules rollback`) and a changed exceptions file are
        taken as soon as they are seen. Loading a pack is slow (parsing thousands of rules when they are not in the
        rule cache): it runs in a worker thread while ingest goes on with the rules in use."""
        interval = self.settings.detections.rules_reload_interval_seconds
        loop = asyncio.get_running_loop()
        while interval > 0:
            await asyncio.sleep(interval)
            try:
                await loop.run_in_executor(None, self.rules.reload_if_changed)
            except Exception:  # the watcher must outlive one bad reload
                log.exception("reloading the rules failed")

    def request_stop(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        if self._stop_async is None:
            return
        if loop is None:
            self._stop_async.set()
        else:
            loop.call_soon_threadsafe(self._stop_async.set)

    @property
    def closing(self) -> bool:
        return self.jobs.closing

    def close(self, jobs_timeout: float = 120.0) -> None:
        self.jobs.close(jobs_timeout)
        for closer in reversed(self.registry.closers):
            try:
                closer()
            except Exception:  # one extension failing to close must not keep the store open
                log.exception("closing %s failed", getattr(closer, "__qualname__", closer))
        self.intake.close()
        self.store.close()


def _api_tls(api) -> dict[str, Any]:
    """uvicorn's TLS options for the API (none when it serves plain HTTP)."""
    if not api.tls_cert_file:
        return {}
    import ssl

    required = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}
    return {"ssl_certfile": api.tls_cert_file, "ssl_keyfile": api.tls_key_file,
            "ssl_ca_certs": api.tls_ca_file, "ssl_cert_reqs": required[api.tls_client_certificates]}


def register_extensions(names: list[str], services: Services, registry: Registry) -> None:
    """Each configured extension module's ``register(services, registry)``."""
    for name in names:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            raise RuntimeError(f"extension {name!r} in the configuration cannot be imported: {exc}") from exc
        register = getattr(module, "register", None)
        if register is None:
            raise RuntimeError(f"extension {name!r} has no register(services, registry)")
        register(services, registry)


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


@contextlib.contextmanager
def running(settings: Settings, store: Store | None = None):
    """A served suite for the time of a ``with`` (tests, the demo)."""
    runner = SuiteThread(Suite(settings, store)).start()
    try:
        yield runner.suite
    finally:
        runner.stop()
