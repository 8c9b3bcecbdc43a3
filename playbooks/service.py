"""The playbook service inside the suite: alerts start the playbooks that match them, and a background task removes
blocks whose time is up (and, after a restart, marks interrupted runs and reads half-made blocks back).

Enable it with ``extensions: [playbooks.service]`` in the configuration. The alert hook only matches and hands the
run to a small thread pool, so the pipeline never waits for a device.

A managed device that presents another SSH host key than the recorded one is refused (connections.py) and raises a
critical alert, rule ``soc_device_host_key_changed``, naming the device and both fingerprints.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from inventory.holder import InventoryHolder
from inventory.lookup import Inventory
from inventory.model import ManagedDevice
from playbooks.connections import ConnectionPool, HostKeyInfo
from playbooks.loader import Library, load_library
from playbooks.records import RunFilter, RunState
from playbooks.runner import Actor, ConditionNotMet, Runner, RunError
from playbooks.safety import SafetyRefusal
from playbooks.settings import PlaybookSettings, known_hosts_path, load_playbook_settings
from soc import ecs, metrics
from soc.storage.base import Store

log = logging.getLogger(__name__)
CLAIMED_MAX = 50_000

RUNS_STARTED = metrics.Counter("soc_playbook_runs", "Playbook runs created, by playbook and how they were started",
                               ["playbook", "started_by"])
RUNS_FINISHED = metrics.Counter("soc_playbook_runs_finished", "Playbook runs finished, by playbook and state",
                                ["playbook", "state"])
BLOCKS_EXPIRED = metrics.Counter("soc_playbook_blocks_expired", "Blocks removed at the end of their time to live")
HOST_KEY_MISMATCHES = metrics.Counter("soc_device_host_key_mismatches", "Connections to managed devices refused "
                                      "because the device presented another SSH host key than the recorded one",
                                      ["device"])

HOST_KEY_RULE = "soc_device_host_key_changed"


def _host_key_rule():
    from detections.sigma.loader import RuleMeta

    return RuleMeta(id=HOST_KEY_RULE, name=HOST_KEY_RULE, title="Managed Device SSH Host Key Changed",
                    level="critical", tags=["attack.credential-access", "attack.t1557"],
                    description="A managed network device presented another SSH host key than the one recorded for "
                                "it. The suite refused the connection before sending any credential. Someone may be "
                                "impersonating the device on the management path (to harvest its credentials), or "
                                "the device was reinstalled or its key regenerated: check the key on the device "
                                "itself before trusting the new one (`soc devices trust NAME --replace`).",
                    path="playbooks/connections.py")


class PlaybookService:
    def __init__(self, store: Store, inventory: Inventory | InventoryHolder, settings: PlaybookSettings, *, data_dir: str = "data",
                 library: Library | None = None, runner: Runner | None = None, alerts: Any = None):
        self.settings = settings
        self.store = store
        self.data_dir = data_dir
        # The suite's alert sink (soc/plugins.py AlertSink: stores and tells every alert hook); without a suite (a
        # one-shot command) an AlertManager of our own on the store.
        self.alerts = alerts
        self._alerts_guard = threading.Lock()
        self.library = library or load_library(settings.library_dirs)
        for error in self.library.errors:
            log.error("playbook not loaded: %s", error)
        if runner is None:
            pool = ConnectionPool(settings, data_dir=data_dir, on_host_key_mismatch=self.host_key_changed)
            runner = Runner(store, inventory, self.library, settings, data_dir=data_dir, pool=pool)
        elif runner.pool.on_host_key_mismatch is None:
            runner.pool.on_host_key_mismatch = self.host_key_changed
        self.runner = runner
        self.executor = ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="soc-playbook")
        # (alert, playbook) pairs already started here; bounded (the oldest forgotten first): a forgotten pair is
        # still found in the store's runs before a second run is made (_run_for_alert).
        self._claimed: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._guard = threading.Lock()
        self.recovered: dict | None = None

    # --- alerts → runs ---------------------------------------------------------------------------------------
    def on_alerts(self, alerts: list[dict]) -> None:
        """The suite's alert hook: runs in the pipeline's worker, so it only matches and submits."""
        if not self.settings.auto_trigger:
            return
        for alert in alerts:
            for playbook in self.library.matching(alert):
                key = (alert["id"], playbook.name)
                with self._guard:
                    if key in self._claimed:
                        continue  # the same alert updated again: one run per alert and playbook
                    self._claimed[key] = None
                    if len(self._claimed) > CLAIMED_MAX:
                        self._claimed.popitem(last=False)
                self.executor.submit(self._run_for_alert, playbook.name, alert)

    def _run_for_alert(self, name: str, alert: dict) -> dict | None:
        runner = self.runner
        try:
            if runner.records.find_runs(RunFilter(alert_id=alert["id"], playbook=name, limit=1)):
                return None  # already run before a restart
            run = runner.create(name, actor=Actor("alert", f"alert {alert['id']}"), alert=alert)
            RUNS_STARTED.labels(playbook=name, started_by="alert").inc()
            if run["state"] == RunState.RUNNING:
                run = runner.execute(run["id"])
                RUNS_FINISHED.labels(playbook=name, state=run["state"]).inc()
            return run
        except ConditionNotMet as exc:
            runner.records.audit("run_not_applicable", run={"playbook": name}, alert_id=alert["id"], reason=str(exc))
        except SafetyRefusal as exc:
            RUNS_FINISHED.labels(playbook=name, state=RunState.FAILED).inc()
            log.warning("playbook %s for alert %s refused: %s", name, alert["id"], exc)
        except (RunError, ValueError) as exc:
            runner.records.audit("run_not_started", run={"playbook": name}, alert_id=alert["id"], reason=str(exc))
            log.warning("playbook %s for alert %s not started: %s", name, alert["id"], exc)
        except Exception:
            log.exception("playbook %s for alert %s failed", name, alert["id"])
        return None

    @property
    def inventory(self) -> Inventory:
        return self.runner.inventory  # the current one

    # --- a device presented another host key ----------------------------------------------------------------
    def host_key_changed(self, device: ManagedDevice, expected: HostKeyInfo, presented: HostKeyInfo) -> list[dict]:
        """Raise (or update) the critical alert for a changed device host key, with an event as its evidence.
        Called by the connection pool after it refused the connection."""
        from detections.alerts import AlertManager
        from detections.engine import Detection

        HOST_KEY_MISMATCHES.labels(device=device.id).inc()
        inventory = getattr(self.inventory, "current", self.inventory)  # an inventory, or a holder of the current one
        asset = inventory.assets.get(device.asset)
        agency_id = asset.agency if asset is not None else None
        agency = inventory.agencies.get(agency_id) if agency_id else None
        known_hosts = str(getattr(self.runner.pool, "known_hosts", known_hosts_path(self.settings, self.data_dir)))
        now = ecs.now_iso()
        doc: dict = {"@timestamp": now}
        ecs.put(doc, "event.kind", "alert")
        ecs.put(doc, "event.category", ["network", "intrusion_detection"])
        ecs.put(doc, "event.type", ["connection", "denied"])
        ecs.put(doc, "event.outcome", "failure")
        ecs.put(doc, "event.module", "soc")
        ecs.put(doc, "event.dataset", "soc.playbooks")
        ecs.put(doc, "event.action", "ssh_host_key_mismatch")
        if agency_id:
            ecs.put(doc, "organization.id", agency_id)
        if agency is not None:
            ecs.put(doc, "organization.name", agency.name_en)
        ecs.put(doc, "host.name", asset.hostname if asset is not None else device.id)
        ecs.put(doc, "soc.asset.id", device.asset)
        ecs.put(doc, "destination.ip", device.management_address)
        ecs.put(doc, "destination.port", device.port)
        ecs.put(doc, "soc.device", {"id": device.id, "driver": device.driver})
        ecs.put(doc, "soc.ssh_host_key", {
            "expected": {"type": expected.name, "fingerprint": expected.fingerprint},
            "presented": {"type": presented.name, "fingerprint": presented.fingerprint},
            "known_hosts_file": known_hosts})
        ecs.put(doc, "message", f"managed device {device.id} ({device.management_address}:{device.port}) presented "
                                f"SSH host key {presented}, expected {expected}: connection refused")
        ecs.put(doc, "event.created", now)
        ecs.put(doc, "ecs.version", ecs.ECS_VERSION)
        ecs.put(doc, "event.id", ecs.event_id("host_key", device.id, presented.fingerprint, now))
        labels = {"soc.device.id": device.id, "ssh.host_key.expected": expected.fingerprint,
                  "ssh.host_key.presented": presented.fingerprint}
        detection = Detection(meta=_host_key_rule(), kind="host_key", agency=agency_id, labels=labels,
                              events=[doc], count=1, first_seen=now, last_seen=now, untrusted=0)  # the suite's own
        self.store.write_events([doc])
        with self._alerts_guard:
            alerts = self.alerts
        if alerts is None:
            return AlertManager(self.store).handle([detection])
        return alerts.raise_alerts([detection])

    def submit_execute(self, run_id: str) -> Future:
        def work() -> dict:
            run = self.runner.execute(run_id)
            RUNS_FINISHED.labels(playbook=run["playbook"], state=run["state"]).inc()
            return run

        return self.executor.submit(work)

    # --- background: recovery, then expiry -------------------------------------------------------------------
    def tick(self) -> list[dict]:
        results = self.runner.expire_due()
        BLOCKS_EXPIRED.inc(sum(1 for r in results if r.get("ok")))
        self.runner.pool.close_idle()
        return results

    async def run_background(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            self.recovered = await loop.run_in_executor(self.executor, self.runner.recover)
            if self.recovered["interrupted"] or self.recovered["reconciled"]:
                log.warning("playbooks after restart: %s", self.recovered)
        except Exception:
            log.exception("playbook recovery after restart failed; expiry goes on")
        while True:
            try:
                await loop.run_in_executor(self.executor, self.tick)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("playbook expiry pass failed; retrying")
            await asyncio.sleep(self.settings.expiry_interval_seconds)

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=False)
        self.runner.pool.close_all()


def build_service(services: Any) -> PlaybookService:
    """A playbook service on the suite's services: its store, its inventory holder (plans use the inventory current
    at that moment: an API edit counts at once), its alert sink."""
    settings = load_playbook_settings(services.settings)
    return PlaybookService(services.store, services.inventory_holder, settings, data_dir=services.settings.data_dir,
                           alerts=services.alerts)


def register(services: Any, registry: Any) -> None:
    """Suite extension (soc/plugins.py): alerts start the playbooks that match them; expiry and recovery run in the
    background; the service is provided as ``playbooks`` (the API reads it)."""
    service = build_service(services)
    registry.provide("playbooks", service)
    registry.on_alerts(service.on_alerts)
    registry.run_in_background(service.run_background)
    registry.on_close(service.close)
    log.info("playbooks: %d loaded from %s, %d failed", len(service.library.playbooks),
             ", ".join(str(Path(d)) for d in service.settings.library_dirs), len(service.library.errors))
