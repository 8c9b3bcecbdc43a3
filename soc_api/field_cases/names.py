"""Names a sender gives (a manifest's paths, the name in an upload's URL, a case id) are hostile input.

A manifest path must name a file inside a case (field/manifest.py ``safe_name``: relative, POSIX, no ``.``/``..``,
no NUL or backslash) and be at most MAX_NAME bytes; nothing else about it is trusted. No sender's name ever becomes
a path component here: a file is kept under a key derived from its name (``blob_key``), and a case under the id the
province derived from its manifest's bytes (``case_id``)."""

from __future__ import annotations

import hashlib
import re

from field.errors import FieldError
from field.manifest import safe_name

MAX_NAME = 1024  # bytes of UTF-8: longer names are refused (a manifest holding one is refused whole)
CASE_ID = re.compile(r"^[0-9a-f]{32}$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
# C0 and C1 controls, DEL: a name shown in a page, a terminal or a Content-Disposition header holds none.
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class NameRefused(ValueError):
    """A name that may not name a file of a case, with why."""


def check_name(value) -> str:
    """``value`` if it may name a file of a case, else NameRefused (the reason, with the name shown escaped)."""
    if not isinstance(value, str):
        raise NameRefused("a file name must be text")
    try:
        encoded = value.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate, from a "\\udXXX" escape in the manifest's JSON
        raise NameRefused("a file name is not valid Unicode") from exc
    if len(encoded) > MAX_NAME:
        raise NameRefused(f"a file name is longer than {MAX_NAME} bytes")
    if CONTROL.search(value):
        raise NameRefused("a file name holds a control character")
    try:
        return safe_name(value)
    except FieldError as exc:
        raise NameRefused(str(exc)) from exc


def case_id(manifest_bytes: bytes) -> str:
    """The province's id of a case: the first 32 hex digits of the SHA-256 of its manifest's exact bytes. The same
    sealed case forwarded again is the same case; a sender never chooses it."""
    return hashlib.sha256(manifest_bytes).hexdigest()[:32]


def blob_key(name: str) -> str:
    """Where a file of a case is kept inside the case's folder: a digest of its name, never the name itself."""
    return hashlib.sha256(name.encode("utf-8")).hexdigest()[:40]


def shown(value, limit: int = 200) -> str:
    """A name from outside as it may appear in a message or audit record: control characters shown escaped, not
    obeyed; bounded."""
    from detections.timeline import printable

    text = printable(value if isinstance(value, str) else repr(value))
    return text if len(text) <= limit else text[:limit] + "…"
