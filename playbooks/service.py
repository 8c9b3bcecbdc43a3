"""The playbook service inside the suite: alerts start the playbooks that match them, and a background task removes
blocks whose time is up (and, after a restart, marks interrupted runs and reads half-made blocks back).

Enable it with ``extensions: [playbooks.service]`` in the configuration. The alert hook only matches and hands the
run to a small thread pool, so the pipeline never waits for a device.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from inventory.lookup import Inventory
from playbooks.loader import Library, load_library
from playbooks.records import RunFilter
from playbooks.runner import Actor, ConditionNotMet, Runner, RunError
from playbooks.safety import SafetyRefusal
from playbooks.settings import PlaybookSettings, load_playbook_settings
from soc import metrics
from soc.storage.base import Store

log = logging.getLogger(__name__)

RUNS_STARTED = metrics.Counter("soc_playbook_runs", "Playbook runs created, by playbook and how they were started",
                               ["playbook", "started_by"])
RUNS_FINISHED = metrics.Counter("soc_playbook_runs_finished", "Playbook runs finished, by playbook and state",
                                ["playbook", "state"])
BLOCKS_EXPIRED = metrics.Counter("soc_playbook_blocks_expired", "Blocks removed at the end of their time to live")


class PlaybookService:
    def __init__(self, store: Store, inventory: Inventory, settings: PlaybookSettings, *, data_dir: str = "data",
                 library: Library | None = None, runner: Runner | None = None):
        self.settings = settings
        self.library = library or load_library(settings.library_dirs)
        for error in self.library.errors:
            log.error("playbook not loaded: %s", error)
        self.runner = runner or Runner(store, inventory, self.library, settings, data_dir=data_dir)
        self.executor = ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="soc-playbook")
        self._claimed: set[tuple[str, str]] = set()
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
                    self._claimed.add(key)
                self.executor.submit(self._run_for_alert, playbook.name, alert)

    def _run_for_alert(self, name: str, alert: dict) -> dict | None:
        runner = self.runner
        try:
            if runner.records.find_runs(RunFilter(alert_id=alert["id"], playbook=name, limit=1)):
                return None  # already run before a restart
            run = runner.create(name, actor=Actor("alert", f"alert {alert['id']}"), alert=alert)
            RUNS_STARTED.labels(playbook=name, started_by="alert").inc()
            if run["state"] == "running":
                run = runner.execute(run["id"])
                RUNS_FINISHED.labels(playbook=name, state=run["state"]).inc()
            return run
        except ConditionNotMet as exc:
            runner.records.audit("run_not_applicable", run={"playbook": name}, alert_id=alert["id"], reason=str(exc))
        except SafetyRefusal as exc:
            RUNS_FINISHED.labels(playbook=name, state="failed").inc()
            log.warning("playbook %s for alert %s refused: %s", name, alert["id"], exc)
        except (RunError, ValueError) as exc:
            runner.records.audit("run_not_started", run={"playbook": name}, alert_id=alert["id"], reason=str(exc))
            log.warning("playbook %s for alert %s not started: %s", name, alert["id"], exc)
        except Exception:
            log.exception("playbook %s for alert %s failed", name, alert["id"])
        return None

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


def service_for(suite: Any) -> PlaybookService:
    """The suite's playbook service: the attached one, or one built on demand (the API without the extension)."""
    service = getattr(suite, "playbooks", None)
    if service is None:
        settings = load_playbook_settings(suite.settings)
        service = PlaybookService(suite.store, suite.inventory, settings, data_dir=suite.settings.data_dir)
        suite.playbooks = service
    return service


def attach(suite: Any) -> None:
    service = service_for(suite)
    suite.alert_hooks.append(service.on_alerts)
    suite.background.append(service.run_background)
    original_close = suite.close

    def close() -> None:
        service.close()
        original_close()

    suite.close = close
    log.info("playbooks: %d loaded from %s, %d failed", len(service.library.playbooks),
             ", ".join(str(Path(d)) for d in service.settings.library_dirs), len(service.library.errors))
