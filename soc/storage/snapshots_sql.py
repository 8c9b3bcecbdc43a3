"""Snapshots of the embedded SQLite store with SQLite's online backup API (``sqlite3.Connection.backup``).

A snapshot is ``<location>/<name>.db``, one self-contained SQLite file. It is copied in one backup step: one read
transaction, so the copy is the database at one instant while the collector goes on writing (WAL). A backup in many
small steps would restart from the beginning each time another connection wrote between two steps, which the
collector does every fraction of a second. Progress is the copy's size against the database's, read beside it.
The copy is written under a hidden temporary name and renamed when complete: a file named like a snapshot is one.

Restore (soc/storage/snapshots.py says what each mode promises): by default the snapshot is attached and every row it
holds that the store lacks is inserted (``INSERT OR IGNORE``: a row present now is left as it is), table by table in
batches; ``replace`` copies the snapshot over the whole database with the same backup API.
"""

from __future__ import annotations

import os
import re
import sqlite3
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from soc.config import SNAPSHOT_NAME
from soc.storage.base import StoreError
from soc.storage.snapshots import check_name

if TYPE_CHECKING:
    from soc.storage.retention import Progress
    from soc.storage.snapshots import SnapshotTarget

SUFFIX = ".db"
TABLES = ("events", "alerts", "dead_letters", "documents", "api_keys")
BATCH = 20_000


def _file(where: "SnapshotTarget", name: str) -> Path:
    # Checked here too, whoever calls: a valid name has no separator and no "..", so the file is in the folder.
    check_name(name, scheduled=True)
    return Path(where.location) / f"{name}{SUFFIX}"


def snapshot(db_path: str, where: "SnapshotTarget", name: str, *, progress: "Progress | None" = None) -> dict:
    if db_path == ":memory:":
        raise StoreError("an in-memory store has nothing to snapshot")
    folder = Path(where.location)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot make the snapshot folder {folder}: {exc.strerror or exc}") from exc
    final = _file(where, name)
    if final.exists():
        raise StoreError(f"a snapshot named {name!r} exists already in {folder}")
    partial = folder / f".{name}{SUFFIX}.partial"
    partial.unlink(missing_ok=True)
    total = Path(db_path).stat().st_size + (Path(db_path + "-wal").stat().st_size
                                             if Path(db_path + "-wal").exists() else 0)
    failure: list[BaseException] = []
    finished = threading.Event()

    def copy() -> None:
        # Connections are made in the thread that uses them (sqlite3's rule); the suite's own are untouched.
        try:
            source = sqlite3.connect(db_path, timeout=30)
            target = sqlite3.connect(str(partial))
            try:
                source.backup(target)
                # The copy carries the source's WAL mode; a snapshot is one file, so make it a rollback-journal one.
                target.execute("PRAGMA journal_mode=DELETE")
            finally:
                target.close()
                source.close()
        except BaseException as exc:  # reported to the caller below, whatever it is
            failure.append(exc)
        finally:
            finished.set()

    worker = threading.Thread(target=copy, name="soc-sqlite-snapshot", daemon=True)
    worker.start()
    while not finished.wait(0.5):
        if progress is not None:
            progress(f"snapshot {name} (bytes)", float(partial.stat().st_size if partial.exists() else 0),
                     float(total))
    worker.join()
    if failure:
        partial.unlink(missing_ok=True)
        raise StoreError(f"snapshot {name} failed: {failure[0]}") from failure[0]
    os.replace(partial, final)
    if progress is not None:
        size = final.stat().st_size
        progress(f"snapshot {name} (bytes)", float(size), float(size))
    return _record(final)


def _record(path: Path) -> dict:
    stat = path.stat()
    return {"name": path.name[:-len(SUFFIX)], "state": "SUCCESS",
            "started": datetime.fromtimestamp(stat.st_mtime, timezone.utc).isoformat(timespec="seconds")
            .replace("+00:00", "Z"),
            "kind": "scheduled" if path.name.startswith("auto-") else "manual", "bytes": stat.st_size,
            "file": str(path)}


def list_snapshots(where: "SnapshotTarget") -> list[dict]:
    folder = Path(where.location)
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.name.endswith(SUFFIX) and p.is_file()
             and re.match(SNAPSHOT_NAME, p.name[:-len(SUFFIX)])]
    return sorted((_record(p) for p in found), key=lambda r: r["name"])


def delete_snapshot(where: "SnapshotTarget", name: str) -> None:
    path = _file(where, name)
    if not path.is_file():
        raise StoreError(f"no snapshot {name!r} in {where.location}")
    path.unlink()


def _open_snapshot(where: "SnapshotTarget", name: str) -> Path:
    path = _file(where, name)
    if not path.is_file():
        raise StoreError(f"no snapshot {name!r} in {where.location}")
    return path


def restore(conn: sqlite3.Connection, db_path: str, where: "SnapshotTarget", name: str, *, replace: bool = False,
            progress: "Progress | None" = None) -> dict:
    path = _open_snapshot(where, name)
    if replace:
        return _replace(db_path, path, name, progress)
    result: dict[str, Any] = {"snapshot": name, "restored_rows": {}}
    try:
        # The path is a bound parameter, not SQL text; only SELECTs read from it.
        conn.execute("ATTACH DATABASE ? AS snap", [str(path)])
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open snapshot {name}: {exc}") from exc
    try:
        have = {r[0] for r in conn.execute("SELECT name FROM snap.sqlite_master WHERE type = 'table'")}
        if "events" not in have:
            raise StoreError(f"{path} is not a snapshot of the suite's store (it has no events table)")
        for table in TABLES:
            if table not in have:
                continue
            # Columns both sides have, by name: a snapshot made by an older version may lack a later column.
            mine = [r[1] for r in conn.execute(f"PRAGMA main.table_info({table})")]
            theirs = {r[1] for r in conn.execute(f"PRAGMA snap.table_info({table})")}
            columns = ", ".join(f'"{c}"' for c in mine if c in theirs)
            total = conn.execute(f"SELECT count(*) FROM snap.{table}").fetchone()[0]  # nosec B608 - fixed names
            last, read, added = 0, 0, 0
            while True:
                # TABLES and the columns both tables have: no caller text; the bounds are bound.
                row = conn.execute(f"SELECT max(rowid), count(*) FROM (SELECT rowid FROM snap.{table} "  # nosec B608
                                   f"WHERE rowid > ? ORDER BY rowid LIMIT {BATCH})", [last]).fetchone()
                if not row[1]:
                    break
                # The same fixed names; a row present now is kept (OR IGNORE), so newer writes survive the restore.
                cursor = conn.execute(f"INSERT OR IGNORE INTO main.{table} ({columns}) SELECT {columns} "  # nosec B608
                                      f"FROM snap.{table} WHERE rowid > ? AND rowid <= ?", [last, row[0]])
                added += max(cursor.rowcount, 0)
                read += row[1]
                last = row[0]
                if progress is not None:
                    progress(f"restoring {table}", float(read), float(total))
            result["restored_rows"][table] = added
    except sqlite3.Error as exc:
        raise StoreError(f"restore of {name} failed: {exc}") from exc
    finally:
        try:
            conn.execute("DETACH DATABASE snap")
        except sqlite3.Error:
            pass
    return result


def _replace(db_path: str, path: Path, name: str, progress: "Progress | None") -> dict:
    if progress is not None:
        progress(f"replacing the store with {name}", 0.0, None)
    try:
        source = sqlite3.connect(path.as_uri() + "?mode=ro", uri=True)
        target = sqlite3.connect(db_path, timeout=60)
        try:
            if not source.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'events'").fetchone():
                raise StoreError(f"{path} is not a snapshot of the suite's store (it has no events table)")
            source.backup(target)
            target.execute("PRAGMA journal_mode=WAL")  # the snapshot's rollback mode came along: the store is WAL
        finally:
            target.close()
            source.close()
    except sqlite3.Error as exc:
        raise StoreError(f"restore of {name} failed: {exc}") from exc
    if progress is not None:
        progress(f"replacing the store with {name}", 1.0, 1.0)
    return {"snapshot": name, "replaced": True}
