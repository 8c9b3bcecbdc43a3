"""The outbox: what waits on disk to go to the upstream suite, in the order it came, until the upstream confirms it.

One SQLite file under ``data_dir/<tiers.upstream.spool_dir>`` (WAL): a row per event, per alert version and per
agency list, deleted only when the upstream answered that it stored them, so a suite killed at any moment sends
again after its start what was not confirmed (at least once; the upstream keeps each id once). An alert's newer
version replaces the one waiting (the upstream wants the alert as it is now); if a version is in flight
meanwhile, the newer one still goes after it.

Bounded: the events waiting may take ``max_bytes``; past that the oldest low-value events go first (an event no
alert rests on), then the oldest evidence, each counted in ``dropped``. Alerts and agencies are never dropped: they
are few, and losing one would lose the incident.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

EVENT, ALERT, AGENCIES = "event", "alert", "agencies"
LOW, EVIDENCE = 0, 1  # an event's value: what is dropped first when the outbox is full

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    key TEXT,
    value INTEGER NOT NULL DEFAULT 0,
    added REAL NOT NULL,
    size INTEGER NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_kind ON outbox (kind, seq);
CREATE INDEX IF NOT EXISTS outbox_drop ON outbox (kind, value, seq);
CREATE UNIQUE INDEX IF NOT EXISTS outbox_key ON outbox (kind, key) WHERE key IS NOT NULL;
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, n INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS state (name TEXT PRIMARY KEY, value TEXT);
"""


@dataclass(frozen=True)
class Pending:
    seq: int
    key: str | None
    body: bytes


class Outbox:
    def __init__(self, directory: str | Path, *, max_bytes: int):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.directory / "outbox.db", check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL: a transaction survives the process being killed (the WAL is written before the answer); only a
        # power cut may lose the last moments, which the events' own store still holds.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        # What waits, per kind, kept in memory (read once here): the figures shown after every batch must not cost
        # a scan of the whole outbox under its lock.
        self._waiting = {kind: [0, 0] for kind in (EVENT, ALERT, AGENCIES)}  # kind -> [records, bytes]
        for kind, records, size in self._db.execute("SELECT kind, count(*), coalesce(sum(size), 0) FROM outbox "
                                                    "GROUP BY kind"):
            self._waiting[kind] = [records, size]

    @property
    def _event_bytes(self) -> int:
        return self._waiting[EVENT][1]

    def _changed(self, kind: str, records: int, size: int) -> None:
        figures = self._waiting.setdefault(kind, [0, 0])
        figures[0] += records
        figures[1] += size

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- adding ------------------------------------------------------------------------------------------------
    def add_events(self, bodies: Iterable[tuple[bytes, int]]) -> int:
        """Events (JSON bytes, value); how many older events were dropped to keep within the bound."""
        rows = [(EVENT, None, value, time.time(), len(body), body) for body, value in bodies]
        if not rows:
            return 0
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("INSERT INTO outbox (kind, key, value, added, size, body) VALUES (?,?,?,?,?,?)",
                                     rows)
                self._changed(EVENT, len(rows), sum(r[4] for r in rows))
                dropped = self._keep_bound()
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return dropped

    def _keep_bound(self) -> int:
        dropped = 0
        for value in (LOW, EVIDENCE):
            while self._event_bytes > self.max_bytes:
                victims = self._db.execute("SELECT seq, size FROM outbox WHERE kind = ? AND value = ? ORDER BY seq "
                                           "LIMIT 1000", [EVENT, value]).fetchall()
                if not victims:
                    break
                over = self._event_bytes - self.max_bytes
                chosen, freed = [], 0
                for seq, size in victims:
                    chosen.append(seq)
                    freed += size
                    if freed >= over:
                        break
                self._db.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in chosen])
                self._changed(EVENT, -len(chosen), -freed)
                dropped += len(chosen)
                self._count(f"dropped_{'evidence' if value == EVIDENCE else 'events'}", len(chosen))
        return dropped

    def put_latest(self, kind: str, items: Iterable[tuple[str, bytes]]) -> None:
        """Keyed items (an alert by id, the agency list): a waiting older version is replaced by this one."""
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for key, body in items:
                    # Deleted and inserted under a new seq, never updated in place: the confirmation of a version
                    # already in flight (by its seq) must not take this newer one with it.
                    before = self._db.execute("SELECT size FROM outbox WHERE kind = ? AND key = ?",
                                              [kind, key]).fetchone()
                    if before is not None:
                        self._db.execute("DELETE FROM outbox WHERE kind = ? AND key = ?", [kind, key])
                        self._changed(kind, -1, -before[0])
                    self._changed(kind, 1, len(body))
                    self._db.execute("INSERT INTO outbox (kind, key, value, added, size, body) VALUES (?,?,?,?,?,?)",
                                     [kind, key, 1, now, len(body), body])
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    # --- sending -----------------------------------------------------------------------------------------------
    def next_batch(self, kind: str, max_items: int, max_bytes: int) -> list[Pending]:
        with self._lock:
            rows = self._db.execute("SELECT seq, key, body FROM outbox WHERE kind = ? ORDER BY seq LIMIT ?",
                                    [kind, max_items]).fetchall()
        batch, size = [], 0
        for seq, key, body in rows:
            if batch and size + len(body) > max_bytes:
                break
            batch.append(Pending(seq, key, bytes(body)))
            size += len(body)
        return batch

    def confirm(self, kind: str, batch: list[Pending]) -> None:
        """The upstream stored (or refused for good) these: they leave the outbox."""
        if not batch:
            return
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                marks = ",".join("?" * len(batch))
                records, gone = self._db.execute(  # what of the batch is still here (a newer version replaced some)
                    f"SELECT count(*), coalesce(sum(size), 0) FROM outbox WHERE seq IN ({marks})",  # nosec B608 - "?" marks
                    [p.seq for p in batch]).fetchone()
                self._changed(kind, -records, -gone)
                self._db.executemany("DELETE FROM outbox WHERE seq = ?", [(p.seq,) for p in batch])
                self._count(f"sent_{kind}", len(batch))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    # --- what is waiting, what happened --------------------------------------------------------------------------
    def _count(self, name: str, n: int) -> None:
        self._db.execute("INSERT INTO counters (name, n) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET n = n + ?",
                         [name, n, n])

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._count(name, n)

    def counters(self) -> dict[str, int]:
        with self._lock:
            return dict(self._db.execute("SELECT name, n FROM counters").fetchall())

    def backlog(self) -> dict[str, dict]:
        """Per kind: records and bytes waiting, and when the oldest was added (epoch seconds, or None)."""
        out = {}
        with self._lock:
            for kind, (records, size) in self._waiting.items():
                oldest = self._db.execute("SELECT added FROM outbox WHERE kind = ? ORDER BY seq LIMIT 1",
                                          [kind]).fetchone() if records else None
                out[kind] = {"records": records, "bytes": size, "oldest": oldest[0] if oldest else None}
        return out

    def get_state(self, name: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM state WHERE name = ?", [name]).fetchone()
        return row[0] if row else None

    def set_state(self, name: str, value: str) -> None:
        with self._lock:
            self._db.execute("INSERT INTO state (name, value) VALUES (?, ?) "
                             "ON CONFLICT(name) DO UPDATE SET value = excluded.value", [name, value])
