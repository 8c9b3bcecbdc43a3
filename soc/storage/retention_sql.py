"""Retention on the embedded SQLite store: expired rows deleted in small batches.

Each batch is its own short transaction, so the collector, which writes every fraction of a second, waits for one
batch at most and never for the whole deletion. The events' and alerts' time columns are indexed, so a batch finds its
rows without reading the table.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

from soc.storage.base import StoreError
from soc.storage.retention import DOCUMENT_CLASSES

if TYPE_CHECKING:
    from soc.storage.retention import Progress

BATCH = 5000
# (table, the column or JSON path that dates a row, extra condition) per data class; table and column names are
# these constants only, never caller text.
_TARGETS = {
    "events": [("events", "ts", None)],
    "alerts": [("alerts", "last_seen", None)],
    "dead_letters": [("dead_letters", "received", None)],
}


def _targets(data_class: str) -> list[tuple[str, str, str | None]]:
    if data_class in _TARGETS:
        return _TARGETS[data_class]
    if data_class in DOCUMENT_CLASSES:
        return [("documents", f"json_extract(doc, '$.\"{field}\"')", collection)
                for collection, field in DOCUMENT_CLASSES[data_class]]
    raise StoreError(f"unknown data class {data_class!r}")


def _where(column: str, collection: str | None) -> str:
    return f"{column} < ?" + (" AND collection = ?" if collection else "")


def expire(conn: sqlite3.Connection, data_class: str, cutoff: str, *, dry_run: bool = False,
           progress: "Progress | None" = None) -> int:
    gone = 0
    for table, column, collection in _targets(data_class):
        args = [cutoff] + ([collection] if collection else [])
        where = _where(column, collection)
        try:
            # Fixed table and column names from _TARGETS / DOCUMENT_CLASSES; the cutoff and collection are bound.
            total = conn.execute(f"SELECT count(*) FROM {table} WHERE {where}", args).fetchone()[0]  # nosec B608
            if dry_run or total == 0:
                gone += total
                continue
            done = 0
            what = f"deleting {data_class}" + (f" ({collection})" if collection else "")
            while True:
                cursor = conn.execute(f"DELETE FROM {table} WHERE rowid IN "  # nosec B608 - fixed names, bound values
                                      f"(SELECT rowid FROM {table} WHERE {where} LIMIT {BATCH})", args)
                done += cursor.rowcount
                if progress is not None:
                    progress(what, float(done), float(total))
                if cursor.rowcount < BATCH:
                    break
            gone += done
        except sqlite3.Error as exc:
            raise StoreError(f"retention of {data_class} failed: {exc}", transient="locked" in str(exc)) from exc
    return gone


def status(conn: sqlite3.Connection) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for data_class in ("events", "alerts", "dead_letters", *DOCUMENT_CLASSES):
        count, olds, news, where = 0, [], [], []
        for table, column, collection in _targets(data_class):
            args = [collection] if collection else []
            condition = "WHERE collection = ?" if collection else ""
            # Table and column names from _targets only; the collection is bound.
            sql = f"SELECT count(*), min({column}), max({column}) FROM {table} {condition}"  # nosec B608
            row = conn.execute(sql, args).fetchone()
            count += row[0]
            olds += [row[1]] if row[1] else []
            news += [row[2]] if row[2] else []
            where.append(f"{table}" + (f" {collection}" if collection else ""))
        out[data_class] = {"count": count, "oldest": min(olds) if olds else None,
                           "newest": max(news) if news else None, "where": ", ".join(where)}
    return out
