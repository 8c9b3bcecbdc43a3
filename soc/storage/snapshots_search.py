"""Snapshots on Elasticsearch / OpenSearch: a filesystem ("fs") snapshot repository under the nodes' path.repo.

A snapshot holds this suite's indices only (its prefix's events, alerts, dead letters, API keys and documents), not
the cluster's global state: the index templates are the suite's to install (Store.open), and another tenant of the
cluster (another prefix, a benchmark's indices) is neither copied nor touched by a restore.

Restoring (soc/storage/snapshots.py says what each mode promises):

- an index missing now is restored whole;
- an index that exists is restored beside it under a temporary name, and the documents it lacks are copied back with
  ``_reindex`` in ``create`` mode (a document that exists is left as it is), then the temporary index is deleted;
- with ``replace``, the suite's indices that the snapshot does not hold are deleted, the others closed and restored
  over.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from soc.storage.base import StoreError
from soc.storage.engine_requests import request, wait_task
from soc.storage.snapshots import check_name

if TYPE_CHECKING:
    from soc.storage.retention import Progress
    from soc.storage.search import SearchStore
    from soc.storage.snapshots import SnapshotTarget

POLL = 0.5
STALLED = 600.0  # seconds without a byte restored before a restore is declared stuck


def patterns(store: "SearchStore") -> list[str]:
    """The suite's own indices, named one by one: "<prefix>-*" would also take another suite's "<prefix>-x-…"."""
    return [store.events_pattern, store.alerts_index, store.dead_letter_index, store.keys_index,
            f"{store.prefix}-doc-*"]


def _temporary(store: "SearchStore") -> str:
    # Under the prefix (so a test's or an operator's "<prefix>-*" cleanup finds a leftover), matched by no pattern
    # the store reads.
    return f"{store.prefix}-restoring-"


def ensure_repository(store: "SearchStore", where: "SnapshotTarget") -> None:
    body = {"type": "fs", "settings": {"location": where.location, "compress": True}}
    try:
        request(store, "PUT", f"/_snapshot/{where.repository}", body=body, what="snapshot repository")
    except StoreError as exc:
        if "path.repo" in str(exc) or "repository_exception" in str(exc):
            raise StoreError(f"the engine refused the snapshot repository {where.repository!r} at "
                             f"{where.location!r}: every node needs path.repo in its settings naming a folder that "
                             f"holds that location (relative locations are under path.repo). The engine said: "
                             f"{str(exc)[:400]}") from exc
        raise


def _ours(store: "SearchStore", snapshot: dict) -> bool:
    return (snapshot.get("metadata") or {}).get("prefix") == store.prefix


def _record(snapshot: dict) -> dict:
    started = snapshot.get("start_time_in_millis")
    return {
        "name": snapshot["snapshot"],
        "state": snapshot.get("state"),
        "started": (datetime.fromtimestamp(started / 1000, timezone.utc).isoformat(timespec="seconds")
                    .replace("+00:00", "Z") if started else None),
        "kind": (snapshot.get("metadata") or {}).get("kind", "manual"),
        "indices": sorted(snapshot.get("indices", [])),
        "shards": snapshot.get("shards", {}),
    }


def list_snapshots(store: "SearchStore", where: "SnapshotTarget") -> list[dict]:
    answer = request(store, "GET", f"/_snapshot/{where.repository}/_all", what="snapshot list",
                     missing={"snapshots": []})
    return sorted((_record(s) for s in answer.get("snapshots", []) if _ours(store, s)), key=lambda r: r["name"])


def snapshot(store: "SearchStore", where: "SnapshotTarget", name: str, *, kind: str = "manual",
             progress: "Progress | None" = None) -> dict:
    check_name(name, scheduled=True)  # it becomes a URL path segment, whoever calls
    ensure_repository(store, where)
    body = {"indices": ",".join(patterns(store)), "ignore_unavailable": True, "include_global_state": False,
            "metadata": {"taken_by": "soc suite", "prefix": store.prefix, "kind": kind}}
    request(store, "PUT", f"/_snapshot/{where.repository}/{name}", body=body, what=f"snapshot {name}",
            params={"wait_for_completion": "false"})
    total = None
    while True:
        # Progress from _status; the end from the snapshot itself: _status says SUCCESS once every shard is copied,
        # a moment before the snapshot is finalised in the repository (still IN_PROGRESS there).
        if progress is not None:
            answer = request(store, "GET", f"/_snapshot/{where.repository}/{name}/_status", what=f"snapshot {name}")
            stats = (answer.get("snapshots") or [{}])[0].get("stats", {})
            total = stats.get("incremental", {}).get("size_in_bytes") or stats.get("total", {}).get("size_in_bytes")
            progress(f"snapshot {name} (bytes)", float(stats.get("processed", {}).get("size_in_bytes", 0)),
                     float(total) if total else None)
        final = request(store, "GET", f"/_snapshot/{where.repository}/{name}", what=f"snapshot {name}")
        if (final.get("snapshots") or [{}])[0].get("state") not in ("IN_PROGRESS", "INIT", "STARTED", None):
            break
        time.sleep(POLL)
    if progress is not None and total:
        progress(f"snapshot {name} (bytes)", float(total), float(total))
    record = _record(final["snapshots"][0])
    if record["state"] != "SUCCESS":
        raise StoreError(f"snapshot {name} ended {record['state']}: {final['snapshots'][0].get('failures')}")
    return record


def delete_snapshot(store: "SearchStore", where: "SnapshotTarget", name: str) -> None:
    check_name(name, scheduled=True)  # it becomes a URL path segment, whoever calls
    request(store, "DELETE", f"/_snapshot/{where.repository}/{name}", what=f"deletion of snapshot {name}")


def _existing(store: "SearchStore") -> set[str]:
    found: set[str] = set()
    for pattern in patterns(store):
        rows = request(store, "GET", f"/_cat/indices/{pattern}", what="index list", missing=[],
                       params={"format": "json", "h": "index", "expand_wildcards": "open,closed"}) or []
        found.update(r["index"] for r in rows)
    return found


def _wait_restored(store: "SearchStore", indices: list[str], progress: "Progress | None", what: str) -> None:
    """Until every primary shard of ``indices`` is recovered from the snapshot (the recovery API's SNAPSHOT
    recoveries, DONE), then until the indices answer (yellow or green)."""
    joined = ",".join(indices)
    seen, moved = None, time.monotonic()
    while True:
        recovery = request(store, "GET", f"/{joined}/_recovery", what="restore progress", missing={},
                           params={"ignore_unavailable": "true", "allow_no_indices": "true"}) or {}
        done = total = 0
        finished = set()
        for index, entry in recovery.items():
            primaries = [s for s in entry.get("shards", []) if s.get("primary")]
            for shard in primaries:
                size = shard.get("index", {}).get("size", {})
                done += size.get("recovered_in_bytes", 0)
                total += size.get("total_in_bytes", 0)
            # An earlier recovery of a closed index (EXISTING_STORE) is not this restore: only SNAPSHOT counts.
            if primaries and all(s.get("type") == "SNAPSHOT" and s.get("stage") == "DONE" for s in primaries):
                finished.add(index)
        if progress is not None:
            progress(what, float(done), float(total) if total else None)
        if finished >= set(indices):
            break
        if (done, len(finished)) != seen:
            seen, moved = (done, len(finished)), time.monotonic()
        elif time.monotonic() - moved > STALLED:  # a shard that failed to restore never reports DONE
            raise StoreError(f"{what}: no progress for {STALLED:.0f} s (recovered {done} of {total} bytes; see "
                             f"GET /{joined}/_recovery and the cluster's allocation explain)")
        time.sleep(POLL)
    # Polled rather than waited for: a "timeout" parameter would be taken by the Python client as its own.
    for _ in range(120):
        health = request(store, "GET", f"/_cluster/health/{joined}", what="restore progress")
        if health.get("status") in ("yellow", "green"):
            return
        time.sleep(POLL)
    raise StoreError(f"{what}: restored, but the indices did not become available: {health.get('status')}")


def _restore_call(store: "SearchStore", where: "SnapshotTarget", name: str, indices: list[str],
                  rename_to: str | None = None) -> None:
    body: dict[str, Any] = {"indices": ",".join(indices), "include_global_state": False, "include_aliases": False}
    if rename_to:
        body.update(rename_pattern="(.+)", rename_replacement=f"{rename_to}$1")
    request(store, "POST", f"/_snapshot/{where.repository}/{name}/_restore", body=body, what=f"restore of {name}",
            params={"wait_for_completion": "false"})


def restore(store: "SearchStore", where: "SnapshotTarget", name: str, *, replace: bool = False,
            progress: "Progress | None" = None) -> dict:
    check_name(name, scheduled=True)  # it becomes a URL path segment, whoever calls
    found = request(store, "GET", f"/_snapshot/{where.repository}/{name}", what=f"snapshot {name}", missing=None)
    snapshots = (found or {}).get("snapshots") or []
    if not snapshots or not _ours(store, snapshots[0]):
        raise StoreError(f"no snapshot {name!r} of this store (prefix {store.prefix}) in repository "
                         f"{where.repository!r}")
    held = sorted(snapshots[0].get("indices", []))
    existing = _existing(store)
    result: dict[str, Any] = {"snapshot": name, "restored_indices": [], "merged": {}, "deleted_indices": []}
    if replace:
        newer = sorted(existing - set(held))
        if newer:
            request(store, "DELETE", f"/{','.join(newer)}", what="deletion of indices the snapshot lacks")
            result["deleted_indices"] = newer
        present = sorted(existing & set(held))
        if present:  # a restore may write over an index only when it is closed
            request(store, "POST", f"/{','.join(present)}/_close", what="closing indices to restore over")
        _restore_call(store, where, name, held)
        _wait_restored(store, held, progress, f"restoring {name} (bytes)")
        result["restored_indices"] = held
        return result
    missing = [i for i in held if i not in existing]
    if missing:
        _restore_call(store, where, name, missing)
        _wait_restored(store, missing, progress, f"restoring {name} (bytes)")
        result["restored_indices"] = missing
    present = [i for i in held if i in existing]
    if present:
        temporary = _temporary(store)
        request(store, "DELETE", f"/{temporary}*", what="removal of a previous restore's leftovers",
                params={"ignore_unavailable": "true", "allow_no_indices": "true"}, missing=None)
        _restore_call(store, where, name, present, rename_to=temporary)
        copies = [temporary + i for i in present]
        try:
            _wait_restored(store, copies, progress, f"restoring {name} beside the live indices (bytes)")
            for index in present:
                started = request(store, "POST", "/_reindex", what=f"merge of {index}",
                                  params={"wait_for_completion": "false", "refresh": "true"},
                                  body={"source": {"index": temporary + index},
                                        "dest": {"index": index, "op_type": "create"}, "conflicts": "proceed"})
                response = wait_task(store, started["task"], progress=progress, what=f"copying back into {index}",
                                     done_key="created")
                result["merged"][index] = int(response.get("created", 0))
        finally:
            request(store, "DELETE", f"/{','.join(copies)}", what="removal of the temporary indices",
                    params={"ignore_unavailable": "true"}, missing=None)
    store.refresh()
    return result
