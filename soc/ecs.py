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
# How far after its arrival an event may say it happened (a sender's clock may be off by minutes); a time further
# ahead is replaced by the arrival time (collectors) and never believed by correlations (detections).
FUTURE_TOLERANCE_SECONDS = 900

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
    """``get(doc, "source.ip")``. The nested path wins: a key that is itself dotted is read only where the nested
    path stops (a flat view ``{"source.ip": ...}``, a map of dotted names such as alert labels
    ``{"labels": {"source.ip": ...}}``). Documents are nested at intake (collectors/pipeline.py, :func:`nest`), so a
    sender's dotted ``"organization.id"`` can never stand in front of the ``organization.id`` the suite set."""
    parents, leaf = _PATHS.get(dotted) or _split(dotted)
    if not parents:
        return doc.get(leaf, default)
    node = doc.get(parents[0], _MISSING)
    if node is _MISSING:  # no such object: the name may be one dotted key (a flattened view)
        return doc.get(dotted, default)
    for i in range(1, len(parents)):
        if not isinstance(node, dict):
            return default
        child = node.get(parents[i], _MISSING)
        if child is _MISSING:  # the rest of the name may be one dotted key here ({"labels": {"source.ip": ...}})
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


class FieldNameError(ValueError):
    """A document whose field names cannot be made nested: ``kind`` is ``dotted_conflict`` (a dotted key and a nested
    path, or two dotted keys, give one field two values, or a value and an object) or ``bad_field_name``."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


# Maps whose keys are names of another kind than ECS paths (Windows data names, osquery columns, syslog structured
# data parameters): a dotted key inside them is one name, kept as it is by nest().
DATA_MAPS = ("winlog.event_data", "winlog.user_data", "osquery.result.columns", "osquery.result.decorations",
             "osquery.result.snapshot", "osquery.result.diff_results", "log.syslog.structured_data")


def nest(node: dict, keep: tuple[str, ...] = DATA_MAPS) -> dict:
    """A received document with every dotted key made nested, at every depth: ``{"organization.id": "x"}`` →
    ``{"organization": {"id": "x"}}``, ``{"soc.asset": {"id": 1}}`` → ``{"soc": {"asset": {"id": 1}}}`` — what
    Elasticsearch and OpenSearch make of dotted names when they index, so every reader (the pipeline, ecs.get, the
    detections, the stores) sees one field where the sender wrote it either way. Raises FieldNameError when the two
    forms disagree (the same field given twice with different values, or as a value and as an object) and for
    empty name parts (``"a..b"``). ``keep``: dotted paths of maps whose keys are names of another kind, copied as
    they are (DATA_MAPS: ``winlog.event_data`` holds Windows data names). A document without dotted keys comes back
    equal."""
    return _nest(node, (), frozenset(tuple(k.split(".")) for k in keep))


def _nest(node: dict, path: tuple[str, ...], keep: frozenset) -> dict:
    out: dict = {}
    for key, value in node.items():
        if type(key) is str and "." in key:
            parts = key.split(".")
            if "" in parts:
                raise FieldNameError("bad_field_name", f"field name {'.'.join(path + (key,))!r} has an empty part")
        else:
            parts = (key,)
        target, at = out, path
        for part in parts[:-1]:
            at += (part,)
            child = target.get(part, _MISSING)
            if child is _MISSING:
                child = target[part] = {}
            elif not isinstance(child, dict):
                raise FieldNameError("dotted_conflict", f"{'.'.join(at)!r} is a value and, by {key!r}, an object")
            target = child
        at += (parts[-1],)
        _place(target, parts[-1], _nested_value(value, at, keep), at, key)
    return out


def _nested_value(value: Any, path: tuple[str, ...], keep: frozenset) -> Any:
    if path in keep:
        return dict(value) if isinstance(value, dict) else value  # a copy: it may be merged into
    if isinstance(value, dict):
        return _nest(value, path, keep)
    if isinstance(value, list):
        return [_nested_value(item, path, keep) for item in value]
    return value


def _place(target: dict, leaf: str, value: Any, path: tuple[str, ...], key: str) -> None:
    existing = target.get(leaf, _MISSING)
    if existing is _MISSING:
        target[leaf] = value
    elif isinstance(existing, dict) and isinstance(value, dict):
        for name, child in value.items():  # both already nested: merge, the same rules below
            _place(existing, name, child, path + (name,), key)
    elif existing != value or type(existing) is not type(value):
        raise FieldNameError("dotted_conflict", f"{'.'.join(path)!r} is given twice with different values "
                                                f"(by {key!r} and by another key)")


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
