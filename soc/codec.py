"""JSON encoding of documents on the store path: orjson (C, about 10x the standard library), with the standard
library as the fallback for what orjson refuses (integers beyond 64 bits), so no document is ever refused here."""

from __future__ import annotations

import json
from typing import Any

import orjson

# Keys that are not text (an integer key a parser left) are written as text; orjson's option for it costs every
# document a third more, so it is only asked for when the plain call refuses a document.
_NON_STR_KEYS = orjson.OPT_NON_STR_KEYS


def _default(value: Any) -> Any:
    # What the standard library would have stored for a set or another odd value left in a document: its text.
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


def dumps_bytes(doc: Any) -> bytes:
    """Compact UTF-8 JSON. NaN and infinities become null (they are not JSON)."""
    try:
        return orjson.dumps(doc, default=_default)
    except TypeError:
        pass
    try:
        return orjson.dumps(doc, default=_default, option=_NON_STR_KEYS)
    except TypeError:
        # An integer beyond 64 bits (written exactly), or a lone surrogate a JSON body carried as "\udc80" (kept
        # escaped: it is not UTF-8).
        return json.dumps(doc, separators=(",", ":"), default=_default).encode("ascii")


def dumps(doc: Any) -> str:
    return dumps_bytes(doc).decode("utf-8")


# orjson reads an integer beyond 64 bits as a float, losing digits; the standard library reads it exactly. Such a
# float (|x| >= 2**63) can only have come from one: only those documents are read again, exactly.
_BIG = float(2 ** 63)


def _lost_digits(value: Any) -> bool:
    stack = [value]
    while stack:
        node = stack.pop()
        if type(node) is float:
            if abs(node) >= _BIG:
                return True
        elif type(node) is dict:
            stack.extend(node.values())
        elif type(node) is list:
            stack.extend(node)
    return False


def loads(text: str | bytes) -> Any:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:  # NaN or Infinity, which older versions stored through the standard library
        return json.loads(text)
    return json.loads(text) if _lost_digits(value) else value
