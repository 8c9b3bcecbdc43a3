"""The embedded store: one SQLite file in WAL mode, so a fresh machine runs the whole suite with no server.

Each thread gets its own connection (SQLite connections are not shared across threads); WAL lets the API read while
the pipeline writes. Documents are kept as JSON text; the columns beside them are what queries filter and sort on.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any, Sequence

from soc import codec, ecs
import re

from soc.storage import aggregate_sql
from soc.storage.aggregations import AggregateQuery, AggregateResult

from soc.storage.base import (
    agency_values,
    COLLECTION_NAME,
    AlertQuery,
    DeadLetter,
    DocumentQuery,
    EncodedEvent,
    EventQuery,
    Store,
    StoreError,
    encode_event,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY,
    ts TEXT NOT NULL,
    agency TEXT,
    doc TEXT NOT NULL
);
-- By time alone (SQLite appends the rowid): with the 32-character id in them too, these two indexes cost the
-- collector a third of its store time, and ties on a millisecond are few enough to sort. Stores made before keep
-- their (ts, id) indexes under the same names, which serve the same queries.
CREATE INDEX IF NOT EXISTS events_ts ON events (ts);
CREATE INDEX IF NOT EXISTS events_agency_ts ON events (agency, ts);
CREATE TABLE IF NOT EXISTS alerts (
    id TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    status TEXT NOT NULL,
    severity TEXT,
    agency TEXT,
    rule_id TEXT,
    first_seen TEXT,
    last_seen TEXT NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_last_seen ON alerts (last_seen, id);
CREATE INDEX IF NOT EXISTS alerts_fingerprint ON alerts (fingerprint, status);
CREATE INDEX IF NOT EXISTS alerts_agency ON alerts (agency, last_seen);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received TEXT NOT NULL,
    source TEXT NOT NULL,
    reason TEXT NOT NULL,
    raw BLOB NOT NULL,
    truncated INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS documents (
    collection TEXT NOT NULL,
    id TEXT NOT NULL,
    doc TEXT NOT NULL,
    PRIMARY KEY (collection, id)
);
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    doc TEXT NOT NULL
);
"""


def _json_path(field: str) -> str:
    return "$." + ".".join(f'"{p}"' for p in field.split("."))


def _check_collection(name: str) -> None:
    if not re.match(COLLECTION_NAME, name):
        raise StoreError(f"invalid collection name {name!r}")


_dumps = codec.dumps


class SqliteStore(Store):
    name = "sqlite"

    def __init__(self, path: str | Path):
        self.path = str(path)
        self._local = threading.local()

    # --- lifecycle -------------------------------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            except sqlite3.Error as exc:
                raise StoreError(f"cannot open SQLite store {self.path}: {exc}") from exc
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            # Fewer, larger checkpoints: the collector writes ~1 MB per batch and each checkpoint syncs the file.
            conn.execute("PRAGMA wal_autocheckpoint=16384")
            conn.execute("PRAGMA busy_timeout=30000")
            aggregate_sql.install_functions(conn)
            self._local.conn = conn
        return conn

    def open(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._conn().executescript(SCHEMA)

    def close(self) -> None:
        # Only this thread's connection is closed here. Another thread's may be running a statement (an extension's
        # job finishing late), and closing a connection under a running statement crashes CPython's sqlite3; its
        # connection closes when the last reference goes, at the latest when that statement returns.
        own = getattr(self._local, "conn", None)
        self._local = threading.local()
        if own is not None:
            try:
                own.close()
            except sqlite3.Error:
                pass

    def refresh(self) -> None:
        return None

    def health(self) -> dict[str, Any]:
        try:
            self._conn().execute("SELECT 1").fetchone()
        except sqlite3.Error as exc:
            return {"status": "red", "backend": self.name, "error": str(exc)}
        return {"status": "green", "backend": self.name, "path": self.path}

    # --- events ----------------------------------------------------------------------------------------------
    def write_events(self, events: Sequence[dict]) -> int:
        return self.write_encoded([encode_event(doc) for doc in events])

    def write_encoded(self, events: Sequence[EncodedEvent]) -> int:
        conn = self._conn()
        conn.execute("BEGIN")
        try:
            # The JSON comes as UTF-8 bytes; CAST keeps it TEXT (what json_extract reads) without a conversion.
            conn.executemany(
                "INSERT INTO events (id, ts, agency, doc) VALUES (?, ?, ?, CAST(? AS TEXT)) "
                "ON CONFLICT(id) DO UPDATE SET ts=excluded.ts, agency=excluded.agency, doc=excluded.doc",
                events,
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return len(events)

    def get_events(self, ids: Sequence[str]) -> list[dict]:
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        rows = self._conn().execute(f"SELECT doc FROM events WHERE id IN ({marks})",  # nosec B608 - "?" marks only
                                    list(ids)).fetchall()
        by_id = {d["event"]["id"]: d for d in (codec.loads(r[0]) for r in rows)}
        return [by_id[i] for i in ids if i in by_id]

    def search_events(self, query: EventQuery) -> list[dict]:
        where, args = [], []
        if query.start:
            where.append("ts >= ?")
            args.append(query.start)
        if query.end:
            where.append("ts < ?")
            args.append(query.end)
        agencies = agency_values(query.agency)
        if agencies is not None:
            where.append(f"agency IN ({','.join('?' * len(agencies))})")  # nosec B608 - "?" marks only
            args.extend(agencies)
        for field, value in query.terms.items():
            # json_extract takes a JSON path; ECS names are nested objects in the stored document.
            where.append("json_extract(doc, ?) = ?")
            args.extend(["$." + ".".join(f'"{p}"' for p in field.split(".")), value])
        if query.text:
            where.append("instr(lower(json_extract(doc, '$.event.original')), lower(?)) > 0")
            args.append(query.text)
        if query.after:
            # "ts >= ?" first: a range the time index can seek to.
            where.append("ts >= ? AND (ts > ? OR id > ?)")
            args.extend([query.after[0], query.after[0], query.after[1]])
        sql = "SELECT doc FROM events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY ts, id LIMIT ?"
        args.append(query.limit)
        return [codec.loads(r[0]) for r in self._conn().execute(sql, args).fetchall()]

    def count_events(self, agency: str | tuple[str, ...] | None = None) -> int:
        agencies = agency_values(agency)
        if agencies is not None:
            marks = ",".join("?" * len(agencies))
            return self._conn().execute(f"SELECT count(*) FROM events WHERE agency IN ({marks})",  # nosec B608 - "?" marks
                                        agencies).fetchone()[0]
        return self._conn().execute("SELECT count(*) FROM events").fetchone()[0]

    # --- aggregations ----------------------------------------------------------------------------------------
    def aggregate(self, query: AggregateQuery) -> AggregateResult:
        try:
            return aggregate_sql.aggregate(self._conn(), query)
        except sqlite3.Error as exc:
            raise StoreError(f"aggregation failed: {exc}") from exc

    # --- alerts ----------------------------------------------------------------------------------------------
    def upsert_alerts(self, alerts: Sequence[dict]) -> None:
        rows = [
            (
                a["id"],
                a["fingerprint"],
                a["status"],
                a.get("severity"),
                ecs.get(a, "organization.id"),
                ecs.get(a, "rule.id"),
                a.get("first_seen"),
                a["last_seen"],
                _dumps(a),
            )
            for a in alerts
        ]
        conn = self._conn()
        conn.execute("BEGIN")
        try:
            conn.executemany(
                "INSERT INTO alerts (id, fingerprint, status, severity, agency, rule_id, first_seen, last_seen, doc) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET fingerprint=excluded.fingerprint, "
                "status=excluded.status, severity=excluded.severity, agency=excluded.agency, "
                "rule_id=excluded.rule_id, first_seen=excluded.first_seen, last_seen=excluded.last_seen, "
                "doc=excluded.doc",
                rows,
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def get_alert(self, alert_id: str) -> dict | None:
        row = self._conn().execute("SELECT doc FROM alerts WHERE id = ?", [alert_id]).fetchone()
        return codec.loads(row[0]) if row else None

    def list_alerts(self, query: AlertQuery) -> list[dict]:
        where, args = [], []
        agencies = agency_values(query.agency)
        if agencies is not None:
            where.append(f"agency IN ({','.join('?' * len(agencies))})")  # nosec B608 - "?" marks only
            args.extend(agencies)
        for column, value in (
            ("status", query.status),
            ("severity", query.severity),
            ("rule_id", query.rule_id),
            ("fingerprint", query.fingerprint),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if query.since:
            where.append("last_seen >= ?")
            args.append(query.since)
        if query.entity is not None:
            # entities is {"ip": [...], "user": [...], ...}: any value of any kind, exactly.
            where.append("EXISTS (SELECT 1 FROM json_each(doc, '$.entities') AS kind, json_each(kind.value) AS item "
                         "WHERE item.value = ?)")
            args.append(query.entity)
        if query.tactics:
            marks = ",".join("?" * len(query.tactics))
            where.append("EXISTS (SELECT 1 FROM json_each(doc, '$.threat.tactic') AS t "  # nosec B608 - "?" marks
                         f"WHERE t.value IN ({marks}))")
            args.extend(query.tactics)
        if query.after:
            where.append("(last_seen < ? OR (last_seen = ? AND id < ?))")
            args.extend([query.after[0], query.after[0], query.after[1]])
        sql = "SELECT doc FROM alerts"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY last_seen DESC, id DESC LIMIT ?"
        args.append(query.limit)
        return [codec.loads(r[0]) for r in self._conn().execute(sql, args).fetchall()]

    # --- dead letters ----------------------------------------------------------------------------------------
    def write_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        conn = self._conn()
        conn.execute("BEGIN")
        try:
            conn.executemany(
                "INSERT INTO dead_letters (received, source, reason, raw, truncated) VALUES (?, ?, ?, ?, ?)",
                [(d.received, d.source, d.reason, bytes(d.raw), int(d.truncated)) for d in letters],
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def list_dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        rows = self._conn().execute(
            "SELECT id, received, source, reason, raw, truncated FROM dead_letters ORDER BY id DESC LIMIT ?", [limit]
        ).fetchall()
        return [
            DeadLetter(id=str(r[0]), received=r[1], source=r[2], reason=r[3], raw=bytes(r[4]), truncated=bool(r[5]))
            for r in rows
        ]

    def count_dead_letters(self) -> int:
        return self._conn().execute("SELECT count(*) FROM dead_letters").fetchone()[0]

    # --- API keys --------------------------------------------------------------------------------------------
    def put_api_key(self, record: dict) -> None:
        self._conn().execute(
            "INSERT INTO api_keys (id, doc) VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET doc=excluded.doc",
            [record["id"], _dumps(record)],
        )

    def get_api_key(self, key_id: str) -> dict | None:
        row = self._conn().execute("SELECT doc FROM api_keys WHERE id = ?", [key_id]).fetchone()
        return codec.loads(row[0]) if row else None

    def list_api_keys(self) -> list[dict]:
        return [codec.loads(r[0]) for r in self._conn().execute("SELECT doc FROM api_keys ORDER BY id").fetchall()]

    # --- documents ------------------------------------------------------------------------------------------
    def put_documents(self, collection: str, docs: Sequence[dict]) -> None:
        _check_collection(collection)
        conn = self._conn()
        conn.execute("BEGIN")
        try:
            conn.executemany(
                "INSERT INTO documents (collection, id, doc) VALUES (?, ?, ?) "
                "ON CONFLICT(collection, id) DO UPDATE SET doc=excluded.doc",
                [(collection, str(d["id"]), _dumps(d)) for d in docs],
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def get_document(self, collection: str, doc_id: str) -> dict | None:
        _check_collection(collection)
        row = self._conn().execute("SELECT doc FROM documents WHERE collection = ? AND id = ?",
                                   [collection, doc_id]).fetchone()
        return codec.loads(row[0]) if row else None

    def find_documents(self, collection: str, query: DocumentQuery) -> list[dict]:
        _check_collection(collection)
        where, args = ["collection = ?"], [collection]
        for field, value in query.terms.items():
            values = value if isinstance(value, (list, tuple, set)) else [value]
            # A field holding a list matches if any element equals any wanted value.
            marks = ",".join("?" * len(values))  # field paths and values are bound parameters
            where.append(f"(json_extract(doc, ?) IN ({marks}) OR EXISTS (SELECT 1 FROM json_each(doc, ?) "  # nosec B608
                         f"WHERE json_each.value IN ({marks})))")
            args.extend([_json_path(field), *values, _json_path(field), *values])
        for field, (low, high) in query.ranges.items():
            if low is not None:
                where.append("json_extract(doc, ?) >= ?")
                args.extend([_json_path(field), low])
            if high is not None:
                where.append("json_extract(doc, ?) < ?")
                args.extend([_json_path(field), high])
        sort_expr = "id" if query.sort == "id" else "json_extract(doc, ?)"
        sort_args = [] if query.sort == "id" else [_json_path(query.sort)]
        if query.after is not None:
            op = "<" if query.descending else ">"
            where.append(f"({sort_expr} {op} ? OR ({sort_expr} = ? AND id {op} ?))")
            args.extend(sort_args + [query.after[0]] + sort_args + [query.after[0], query.after[1]])
        direction = "DESC" if query.descending else "ASC"
        # Every piece is one of the fixed fragments above (with "?" marks) or ASC/DESC: no caller text.
        sql = (f"SELECT doc FROM documents WHERE {' AND '.join(where)} "  # nosec B608
               f"ORDER BY {sort_expr} {direction}, id {direction} LIMIT ?")
        rows = self._conn().execute(sql, args + sort_args + [query.limit]).fetchall()
        return [codec.loads(r[0]) for r in rows]

    def delete_document(self, collection: str, doc_id: str) -> bool:
        _check_collection(collection)
        cursor = self._conn().execute("DELETE FROM documents WHERE collection = ? AND id = ?", [collection, doc_id])
        return cursor.rowcount > 0

    # --- retention and backups (soc/storage/retention_sql.py, soc/storage/snapshots_sql.py) --------------------
    def expire(self, data_class, cutoff, *, dry_run=False, progress=None) -> int:
        from soc.storage import retention_sql

        return retention_sql.expire(self._conn(), data_class, cutoff, dry_run=dry_run, progress=progress)

    def data_status(self) -> dict[str, dict]:
        from soc.storage import retention_sql

        return retention_sql.status(self._conn())

    def lifecycle(self, events_period, *, install=False) -> dict:
        # No engine to hand the job to: retention here is the suite's schedule (soc/storage/schedule.py) alone.
        return {"engine": "SQLite", "available": False,
                "note": "the embedded store has no lifecycle engine: the suite deletes expired rows on its schedule"}

    def snapshot(self, where, name, *, kind="manual", progress=None) -> dict:
        from soc.storage import snapshots_sql

        return snapshots_sql.snapshot(self.path, where, name, progress=progress)

    def list_snapshots(self, where) -> list[dict]:
        from soc.storage import snapshots_sql

        return snapshots_sql.list_snapshots(where)

    def restore(self, where, name, *, replace=False, progress=None) -> dict:
        from soc.storage import snapshots_sql

        return snapshots_sql.restore(self._conn(), self.path, where, name, replace=replace, progress=progress)

    def delete_snapshot(self, where, name) -> None:
        from soc.storage import snapshots_sql

        snapshots_sql.delete_snapshot(where, name)
