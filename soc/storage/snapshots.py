"""Backups of the store: where they go, what they are named, and the scheduled ones.

A search engine snapshots the suite's indices into a filesystem snapshot repository (snapshots_search.py); the
embedded store copies its database file with SQLite's online backup API (snapshots_sql.py). Both answer the same
commands (`soc store snapshot`, `soc store snapshots`, `soc store restore`), and restore the same way:

- by default a restore brings back what is missing now and leaves what is there: rows or documents deleted since the
  snapshot come back, and everything written since stays as it is;
- ``replace`` makes the store what the snapshot holds: whatever was written or changed since is gone.

Names and locations come from the configuration or the command line and end up in an engine's URL or a file path,
so each is checked (soc/config.py ``check_snapshot_name``, ``check_location``) before anything is touched.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from soc.config import check_location, check_snapshot_name
from soc.storage.base import StoreError

if TYPE_CHECKING:
    from soc.config import SnapshotConfig
    from soc.storage.base import Store

log = logging.getLogger(__name__)

# Scheduled snapshots are named "auto-…" and only they are pruned to ``keep``; a name given on the command line may
# not take that form, so a manual snapshot is never pruned by the schedule.
SCHEDULED = "auto-"


@dataclass(frozen=True)
class SnapshotTarget:
    repository: str  # the engine's repository name
    location: str  # engines: as configured (under path.repo); SQLite: the folder, resolved


def target(config: "SnapshotConfig", data_dir: str | Path, *, sqlite: bool, location: str | None = None,
           repository: str | None = None) -> SnapshotTarget:
    """Where snapshots go, with a location or repository from the command line checked like the configuration's."""
    try:
        repo = check_snapshot_name(repository if repository is not None else config.repository,
                                   "snapshot repository name")
        where = check_location(location if location is not None else config.location)
    except ValueError as exc:
        raise StoreError(str(exc)) from exc
    if sqlite:
        path = Path(where)
        where = str(path if path.is_absolute() else Path(data_dir).resolve() / path)
    return SnapshotTarget(repo, where)


def check_name(name: str, *, scheduled: bool = False) -> str:
    try:
        check_snapshot_name(name)
    except ValueError as exc:
        raise StoreError(str(exc)) from exc
    if name.startswith(SCHEDULED) and not scheduled:
        raise StoreError(f"snapshot names starting with {SCHEDULED!r} are the schedule's (they are pruned to "
                         "store.snapshots.keep); choose another name")
    return name


def new_name(kind: str, now: datetime | None = None) -> str:
    """manual-20261207-101500 or auto-20261207-101500 (UTC): sortable, unique to the second."""
    stamp = (now or datetime.now(timezone.utc)).astimezone(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{SCHEDULED if kind == 'scheduled' else 'manual-'}{stamp}"


def scheduled_due(store: "Store", where: SnapshotTarget, every_hours: float, now: datetime | None = None) -> bool:
    """A scheduled snapshot is due when the newest one is older than the interval (none yet: due). Read from the
    repository, so a restarted suite keeps the rhythm instead of starting over."""
    now = now or datetime.now(timezone.utc)
    taken = [s["started"] for s in store.list_snapshots(where) if s["name"].startswith(SCHEDULED) and s.get("started")]
    if not taken:
        return True
    newest = datetime.fromisoformat(max(taken).replace("Z", "+00:00"))
    return (now - newest).total_seconds() >= every_hours * 3600


def take_scheduled(store: "Store", where: SnapshotTarget, keep: int, now: datetime | None = None) -> dict:
    """One scheduled snapshot, then the oldest scheduled ones beyond ``keep`` deleted (manual ones stay)."""
    record = store.snapshot(where, new_name("scheduled", now), kind="scheduled")
    scheduled = sorted((s for s in store.list_snapshots(where) if s["name"].startswith(SCHEDULED)),
                       key=lambda s: s["name"])
    pruned = []
    for old in scheduled[:max(0, len(scheduled) - keep)]:
        store.delete_snapshot(where, old["name"])
        pruned.append(old["name"])
    if pruned:
        log.info("scheduled snapshots pruned to %d: deleted %s", keep, ", ".join(pruned))
    return dict(record, pruned=pruned)
