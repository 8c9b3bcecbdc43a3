"""The event model: Elastic Common Schema documents as nested dicts, and the few helpers every stage needs.

Events travel as plain nested dicts with ECS names (``{"source": {"ip": "..."}}``), because that is what the
stores index and what the API returns. Stages that look fields up many times (Sigma evaluation) flatten a document
once into dotted keys.
"""

from __future__ import annotations

import hashlib
import time
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any

ECS_VERSION = "8.17.0"

_MISSING = object()


# Field names repeat all day: each dotted name is split once. A plain dict, not lru_cache: these two functions run
# dozens of times per event, and an LRU's bookkeeping on every hit cost more than the lookup (bounded by clearing:
# JSON documents bring arbitrary names).
_PATHS: dict[str, tuple[tuple[str, ...], str]] = {}
_PATHS_MAX = 8192


def _split(dotted: str) -> tuple[tuple[str, ...], str]:
    *parents, leaf = dotted.split(".")
    entry = (tuple(parents), leaf)
    if len(_PATHS) >= _PATHS_MAX:
        _PATHS.clear()
    _PATHS[dotted] = entry
    return entry


def get(doc: dict, dotted: str, default: Any = None) -> Any:
    """``get(doc, "source.ip")``; also finds keys that are themselves dotted (``{"source.ip": ...}``)."""
    value = doc.get(dotted, _MISSING)
    if value is not _MISSING:
        return value
    parents, leaf = _PATHS.get(dotted) or _split(dotted)
    if not parents:
        return default
    node = doc.get(parents[0], _MISSING)  # the whole name at the top was looked up above
    if node is _MISSING:
        return default
    for i in range(1, len(parents)):
        if not isinstance(node, dict):
            return default
        child = node.get(parents[i], _MISSING)
        if child is _MISSING:  # the rest of the name may be one dotted key here ({"event": {"module.x": ...}})
            return node.get(".".join(parents[i:]) + "." + leaf, default)
        node = child
    return node.get(leaf, default) if isinstance(node, dict) else default


def put(doc: dict, dotted: str, value: Any) -> None:
    """Set a nested field, creating the parents: ``put(doc, "source.ip", "203.0.113.7")``."""
    parents, leaf = _PATHS.get(dotted) or _split(dotted)
    node = doc
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[leaf] = value


def put_if(doc: dict, dotted: str, value: Any) -> None:
    """Set a field only when there is a value (None and empty strings are not stored)."""
    if value is not None and value != "":
        put(doc, dotted, value)


def flatten(doc: dict, prefix: str = "") -> dict[str, Any]:
    """Nested dict to dotted keys; lists stay lists (a Sigma value matches if any element matches)."""
    out: dict[str, Any] = {}
    _flatten_into(out, doc, prefix)
    return out


def _flatten_into(out: dict[str, Any], node: dict, prefix: str) -> None:
    # Recursion into the output dict, not nested generators: it runs for every event the detections see.
    for key, value in node.items():
        if type(value) is dict:
            _flatten_into(out, value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value


@lru_cache(maxsize=4096)  # events of one second and one read share their timestamps
def utc_iso(moment: datetime) -> str:
    """ISO 8601 in UTC with milliseconds, the form both stores sort and range-query correctly."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(value: str) -> datetime:
    """Parse an ISO 8601 timestamp as stored in events (always timezone-aware)."""
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment


_NOW: tuple[int, str] = (0, "")


def now_iso() -> str:
    global _NOW
    millis = time.time_ns() // 1_000_000
    stamp = _NOW  # one tuple, swapped whole: threads never see a time with another time's text
    if stamp[0] != millis:
        stamp = _NOW = (millis, utc_iso(datetime.fromtimestamp(millis / 1000, timezone.utc)))
    return stamp[1]


def event_id(*parts: str | bytes | None) -> str:
    """A stable id from what identifies an event, so a replay of the same event overwrites instead of duplicating."""
    digest = hashlib.blake2b(digest_size=16)
    for part in parts:
        if part is None:
            part = b""
        digest.update(part if isinstance(part, bytes) else part.encode("utf-8", "surrogateescape"))
        digest.update(b"\x1f")
    return digest.hexdigest()
