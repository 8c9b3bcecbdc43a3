"""The event model: Elastic Common Schema documents as nested dicts, and the few helpers every stage needs.

Events travel as plain nested dicts with ECS names (``{"source": {"ip": "..."}}``), because that is what the
stores index and what the API returns. Stages that look fields up many times (Sigma evaluation) flatten a document
once into dotted keys.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from typing import Any, Iterator

ECS_VERSION = "8.17.0"

_MISSING = object()


def get(doc: dict, dotted: str, default: Any = None) -> Any:
    """``get(doc, "source.ip")``; also finds keys that are themselves dotted (``{"source.ip": ...}``)."""
    if dotted in doc:
        return doc[dotted]
    node: Any = doc
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        if not isinstance(node, dict):
            return default
        if part in node:
            node = node[part]
            continue
        rest = ".".join(parts[i:])
        return node.get(rest, default)
    return node


def put(doc: dict, dotted: str, value: Any) -> None:
    """Set a nested field, creating the parents: ``put(doc, "source.ip", "203.0.113.7")``."""
    node = doc
    parts = dotted.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[parts[-1]] = value


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


def _walk(node: dict, prefix: str) -> Iterator[tuple[str, Any]]:
    for key, value in node.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from _walk(value, name + ".")
        else:
            yield name, value


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


def now_iso() -> str:
    return utc_iso(datetime.now(timezone.utc))


def event_id(*parts: str | bytes | None) -> str:
    """A stable id from what identifies an event, so a replay of the same event overwrites instead of duplicating."""
    digest = hashlib.blake2b(digest_size=16)
    for part in parts:
        if part is None:
            part = b""
        digest.update(part if isinstance(part, bytes) else part.encode("utf-8", "surrogateescape"))
        digest.update(b"\x1f")
    return digest.hexdigest()
