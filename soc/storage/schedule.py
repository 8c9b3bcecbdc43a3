"""The store's upkeep while the suite serves (an extension, soc/plugins.py): retention and scheduled snapshots.

At start, and before each retention run, the engine's lifecycle policy is installed or brought up to the configured
period (where the engine has one). Then retention runs every ``store.retention.every_minutes`` — the first run one interval after the start, so a
suite started to look at old data (a replay, an investigation) does not delete it at once — and a snapshot is taken
whenever the newest scheduled one is older than ``store.snapshots.every_hours``, the oldest scheduled ones beyond
``keep`` deleted. Each job runs in a worker thread (the API stays responsive) as one of the suite's jobs (the store is
not closed under it); a failure is logged and tried again at the next turn.
"""

from __future__ import annotations

import asyncio
import logging
import time

from soc.plugins import JobRefused
from soc.storage import retention, snapshots

log = logging.getLogger(__name__)
TICK = 30.0  # seconds between looks at what is due, at most


def register(services, registry) -> None:
    cfg = services.settings.store
    keep_cfg, snap_cfg = cfg.retention, cfg.snapshots
    sqlite = services.store.name == "sqlite"

    def as_job(fn, *args):
        try:
            with services.job():
                return fn(*args)
        except JobRefused:
            return None
        except Exception:  # the next turn tries again; a store hiccup must not end the upkeep for good
            log.exception("store upkeep: %s failed", getattr(fn, "__name__", fn))
            return None

    def install_policy() -> None:
        if keep_cfg.lifecycle_policies:
            state = services.store.lifecycle(retention.periods(keep_cfg)["events"], install=True)
            if state.get("available"):
                log.info("store lifecycle policy %s: delete an event index after %s", state.get("policy"),
                         state.get("delete_index_after"))

    def apply_retention() -> None:
        # The policy again first: ILM is attached to the event indices that exist, so new days get it here; for ISM
        # it is a no-op unless the policy was changed or removed behind the suite's back.
        install_policy()
        retention.apply(services.store, keep_cfg)

    def snapshot_if_due() -> None:
        where = snapshots.target(snap_cfg, services.settings.data_dir, sqlite=sqlite)
        if snapshots.scheduled_due(services.store, where, snap_cfg.every_hours):
            record = snapshots.take_scheduled(services.store, where, snap_cfg.keep)
            log.info("scheduled snapshot %s taken", record["name"])

    async def upkeep() -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, as_job, install_policy)
        every = keep_cfg.every_minutes * 60 if keep_cfg.every_minutes else None
        next_retention = time.monotonic() + every if every else None
        while True:
            if next_retention is not None and time.monotonic() >= next_retention:
                await loop.run_in_executor(None, as_job, apply_retention)
                next_retention = time.monotonic() + every
            if snap_cfg.every_hours:
                await loop.run_in_executor(None, as_job, snapshot_if_due)
            waits = [TICK]
            if next_retention is not None:
                waits.append(max(0.05, next_retention - time.monotonic()))
            if snap_cfg.every_hours:
                waits.append(max(0.05, snap_cfg.every_hours * 3600 / 4))
            await asyncio.sleep(min(waits))

    registry.run_in_background(upkeep)
