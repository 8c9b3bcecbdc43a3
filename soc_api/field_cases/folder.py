"""A received case on disk: ``<data_dir>/field-cases/<case id>/``.

- ``manifest.json`` and ``manifest.sig``, as the sender announced them (the manifest's exact bytes: what was signed);
- ``files/<key>``: the copy the province holds of each file of the manifest, under a digest of its name;
- ``receipts/<key>.json``: what arrived for that name — the held copy's SHA-256 and size, every other copy offered
  (a changed file), how many bodies came whole;
- ``unexpected.json``: names the sender tried to upload that its manifest does not list (at most MAX_UNEXPECTED);
- ``parts/``: bodies while they arrive, renamed into ``files/`` once whole and checked.

Every path here is made of the case id (hex, derived from the manifest) and digests: no name from a sender becomes a
path component. Every file is written to a new temporary file (``O_EXCL|O_NOFOLLOW``) and renamed over its target.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

from field.manifest import file_hash
from soc_api.field_cases.names import CASE_ID, blob_key

MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
MAX_UNEXPECTED = 100
MAX_OFFERED = 20  # distinct other copies of one file kept in its receipt
STALE_PART_SECONDS = 6 * 3600


def _write_new(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


class CaseFolder:
    def __init__(self, root: Path, case_id: str):
        if not CASE_ID.match(case_id):  # the province's own ids only (names.case_id)
            raise ValueError("not a field case id")
        self.path = Path(root) / case_id
        self.parts = self.path / "parts"

    def exists(self) -> bool:
        return (self.path / MANIFEST).is_file()

    def create(self, manifest: bytes, signature: bytes) -> None:
        for folder in (self.path, self.path / "files", self.path / "receipts", self.parts):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.replace(self.path / SIGNATURE, signature)
        self.replace(self.path / MANIFEST, manifest)  # last: its presence says the folder is whole

    def replace(self, path: Path, data: bytes) -> None:
        """``data`` written whole to a new temporary file, then renamed over ``path``."""
        tmp = self.parts / f"{uuid.uuid4().hex}.tmp"
        _write_new(tmp, data)
        os.replace(tmp, path)

    def read(self, name: str) -> bytes:
        with open(self.path / name, "rb") as fh:
            return fh.read()

    # --- the files of the case ------------------------------------------------------------------------------------
    def blob(self, name: str) -> Path:
        return self.path / "files" / blob_key(name)

    def new_part(self) -> tuple[Path, int]:
        """A new temporary file for a body on its way in: (its path, an open descriptor)."""
        path = self.parts / f"{uuid.uuid4().hex}.part"
        return path, os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)

    def sweep_parts(self, older_than: float = STALE_PART_SECONDS) -> None:
        """Remove what uploads cut off by a restart of the province left behind (an upload going on writes to its
        part at least every megabyte, so a part untouched this long is nobody's)."""
        now = time.time()
        for path in self.parts.glob("*"):
            try:
                if now - path.lstat().st_mtime > older_than:
                    path.unlink()
            except FileNotFoundError:
                pass

    def keep(self, part: Path, name: str) -> None:
        """A whole, checked body becomes the copy held for ``name``."""
        os.replace(part, self.blob(name))

    def rehash(self, name: str) -> tuple[int, str] | None:
        """(size, SHA-256) of the held copy as it is on disk now; None when there is none."""
        return file_hash(self.blob(name))

    # --- receipts -------------------------------------------------------------------------------------------------
    def _receipt_path(self, name: str) -> Path:
        return self.path / "receipts" / f"{blob_key(name)}.json"

    def receipt(self, name: str) -> dict:
        try:
            with open(self._receipt_path(name), "rb") as fh:
                return json.loads(fh.read())
        except FileNotFoundError:
            return {"name": name, "held": None, "offered": [], "bodies": 0, "bytes": 0, "repeats": 0}

    def write_receipt(self, receipt: dict) -> None:
        self.replace(self._receipt_path(receipt["name"]), json.dumps(receipt, ensure_ascii=False).encode())

    # --- names not in the manifest --------------------------------------------------------------------------------
    def unexpected(self) -> list[str]:
        try:
            with open(self.path / "unexpected.json", "rb") as fh:
                return json.loads(fh.read())
        except FileNotFoundError:
            return []

    def add_unexpected(self, name: str) -> None:
        names = self.unexpected()
        if name not in names and len(names) < MAX_UNEXPECTED:
            self.replace(self.path / "unexpected.json", json.dumps([*names, name], ensure_ascii=False).encode())
