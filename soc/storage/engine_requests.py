"""Plain REST calls to Elasticsearch or OpenSearch, for the APIs the two clients name differently or not at all
(snapshots, index lifecycle, tasks): one ``request`` that both clients carry, errors as StoreError with the reason,
and the polling of a long job (a task) with progress.

The store's own reads and writes stay on the clients' named methods (search.py); these are the maintenance calls.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from soc.storage.base import StoreError

if TYPE_CHECKING:
    from soc.storage.retention import Progress
    from soc.storage.search import SearchStore


def status_of(exc: BaseException) -> int | None:
    """The HTTP status of a client error (the two clients keep it in different places), None when there was none."""
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        return status
    meta = getattr(exc, "meta", None)
    status = getattr(meta, "status", None)
    return status if isinstance(status, int) else None


def request(store: "SearchStore", method: str, path: str, *, params: dict[str, str] | None = None,
            body: Any = None, what: str = "request", missing: Any = StoreError) -> Any:
    """One REST call; its answer as parsed JSON. A 404 returns ``missing`` when one is given (an index or snapshot
    that does not exist is often an answer, not a failure); any other error is a StoreError saying what failed."""
    try:
        if store.engine.flavour == "opensearch":
            params = dict(params or {})
            if missing is not StoreError:
                # An expected 404 is an answer: taken as one by the client, so it is not logged as a failed request.
                params["ignore"] = 404
            answer = store.client.transport.perform_request(method, path, params=params or None, body=body)
            if missing is not StoreError and isinstance(answer, dict) and answer.get("status") == 404 \
                    and "error" in answer:
                return missing
            return answer
        headers = {"accept": "application/json"}
        if body is not None:
            headers["content-type"] = "application/json"
        return store.client.perform_request(method, path, params=params, headers=headers, body=body).body
    except store.engine.errors as exc:
        status = status_of(exc)
        if status == 404 and missing is not StoreError:
            return missing
        transient = status is None or status == 429 or status >= 500
        error = StoreError(f"{store.name} {what} failed: {exc}", transient=transient)
        error.status = status  # what the engine answered, for callers that tell "no such API" from a failure
        raise error from exc


def wait_task(store: "SearchStore", task_id: str, *, progress: "Progress | None", what: str,
              done_key: str, interval: float = 0.5) -> dict:
    """Poll a task started with wait_for_completion=false (delete by query, reindex) until it ends; its response.
    ``done_key`` names the status counter that moves (``deleted``, ``created``), shown against the task's total."""
    while True:
        answer = request(store, "GET", f"/_tasks/{task_id}", what=f"{what} (task {task_id})")
        status = answer.get("task", {}).get("status", {}) or {}
        if progress is not None:
            total = status.get("total")
            progress(what, float(status.get(done_key, 0) + status.get("version_conflicts", 0)),
                     float(total) if total else None)
        if answer.get("completed"):
            if answer.get("error"):
                raise StoreError(f"{store.name} {what} failed: {answer['error']}")
            response = answer.get("response", {}) or {}
            if response.get("failures"):
                raise StoreError(f"{store.name} {what} failed on some documents: {response['failures'][:3]}")
            return response
        time.sleep(interval)
