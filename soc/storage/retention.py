"""Retention: how long each data class is kept, and the one loop that deletes what is older, on either store.

The data classes are the store's kinds of data that grow with time: ``events`` (by @timestamp), ``alerts`` (by
last_seen, so an alert still being seen is kept), ``dead_letters`` (by received), ``audit`` (the API's and the
playbooks' audit records) and ``indicators`` (indicators past their valid_until, sightings by last_seen). Everything
else the store keeps is state (users, keys, silences, runs, incidents, reports) and is never deleted by age.

Each store deletes its own way (``Store.expire``): SQLite deletes rows in small batches (retention_sql.py); a search
engine drops whole daily event indices once their last day is past the period and deletes by query inside the one
index that straddles the cutoff and in the single-index classes (retention_search.py). The result is the same on
both: nothing older than the period remains, nothing younger goes.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Callable

from soc import ecs

if TYPE_CHECKING:
    from soc.config import RetentionConfig
    from soc.storage.base import Store

log = logging.getLogger(__name__)

# progress(what is being done, how far, out of how much or None when unknown): long jobs show it on the terminal.
Progress = Callable[[str, float, "float | None"], None]

DATA_CLASSES = ("events", "alerts", "dead_letters", "audit", "indicators")
# Document collections of a data class and the field that dates each document. The names are the owning packages'
# (soc_api/deps.py AUDIT, playbooks/records.py AUDIT, detections/indicators/model.py COLLECTION and SIGHTINGS),
# written out here because soc/ imports no feature package.
DOCUMENT_CLASSES: dict[str, tuple[tuple[str, str], ...]] = {
    "audit": (("audit", "@timestamp"), ("playbook_audit", "at")),
    "indicators": (("indicators", "valid_until"), ("sightings", "last_seen")),
}
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def parse_period(period: str) -> timedelta:
    """"30m", "12h", "365d" (already checked by the configuration's model) as a timedelta."""
    return timedelta(**{_UNITS[period[-1]]: int(period[:-1])})


def periods(config: "RetentionConfig") -> dict[str, timedelta | None]:
    return {name: (parse_period(getattr(config, name)) if getattr(config, name) else None) for name in DATA_CLASSES}


def cutoff(period: timedelta, now: datetime | None = None) -> str:
    """The instant before which a data class's documents are expired, in the stores' own ISO form (so that both
    compare it with stored times as text or as dates alike)."""
    return ecs.utc_iso((now or datetime.now(timezone.utc)) - period)


def apply(store: "Store", config: "RetentionConfig", *, now: datetime | None = None, dry_run: bool = False,
          only: tuple[str, ...] | None = None, progress: Progress | None = None) -> dict[str, dict]:
    """Delete (or, with ``dry_run``, count) what each data class holds beyond its period. Returns, per data class,
    ``{"period", "cutoff", "deleted"|"would_delete"}``; a class kept forever is ``{"period": None}``. One class's
    failure does not stop the others: it is reported as ``{"error": ...}`` and logged."""
    now = now or datetime.now(timezone.utc)
    report: dict[str, dict] = {}
    for name, period in periods(config).items():
        if only and name not in only:
            continue
        if period is None:
            report[name] = {"period": None}
            continue
        limit = cutoff(period, now)
        entry: dict = {"period": getattr(config, name), "cutoff": limit}
        try:
            count = store.expire(name, limit, dry_run=dry_run, progress=progress)
        except Exception as exc:  # one data class's trouble (an index refused, a lock) must not keep the rest forever
            log.exception("retention of %s failed", name)
            entry["error"] = str(exc)[:500]
        else:
            entry["would_delete" if dry_run else "deleted"] = count
            if count and not dry_run:
                log.info("retention: %d %s older than %s (%s) deleted", count, name, limit, entry["period"])
        report[name] = entry
    return report


def engine_index_age(period: timedelta) -> str:
    """The age at which an engine's lifecycle policy may delete a daily event index: the period plus the day the
    index covers, because an index is created on (or after) the first instant of its day and holds events up to the
    end of that day, none of which may go before it is older than the period. As an engine time value."""
    age = period + timedelta(days=1)
    minutes = int(age.total_seconds() // 60)
    if minutes % (24 * 60) == 0:
        return f"{minutes // (24 * 60)}d"
    if minutes % 60 == 0:
        return f"{minutes // 60}h"
    return f"{minutes}m"
