"""Content-addressed storage of extracted payloads (HTTP bodies), for YARA scanning and for analysts.

A payload is stored once under ``DIR/ab/abcdef…`` (its sha256), whatever number of flows carried it; writing
goes through a temporary file and a rename, so a scanner never sees half a file.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from soc.files import atomic_write


@dataclass(frozen=True)
class ExtractedPayload:
    sha256: str
    size: int
    path: str | None  # None when no payload directory was given (hashed, not kept)
    direction: str  # "request" or "response"
    protocol: str  # "http"
    mime_type: str | None = None
    content_encoding: str | None = None
    decode_error: str | None = None
    complete: bool = True
    truncated: bool = False
    community_id: str | None = None
    url: str | None = None

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


class PayloadStore:
    def __init__(self, directory: str | os.PathLike | None) -> None:
        self.directory = Path(directory) if directory is not None else None
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)

    def put(self, data: bytes) -> tuple[str, str | None]:
        """(sha256, path or None) of the data, writing it if a directory is set and it is not there yet."""
        digest = hashlib.sha256(data).hexdigest()
        if self.directory is None:
            return digest, None
        target = self.directory / digest[:2] / digest
        if not target.exists():
            target.parent.mkdir(exist_ok=True)
            atomic_write(target, data, durable=False)  # content-addressed: a lost file is written again
        return digest, str(target)
