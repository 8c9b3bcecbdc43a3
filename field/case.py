"""The case folder: ``case.json`` (who, where, when, the kit's public key), ``evidence/`` (what was collected),
``collection.jsonl`` (each collected file: source, case path, size, SHA-256 at collection, time), ``notes.jsonl``
(the responder's notes), ``derived/`` (ECS documents the scan made from logs and pcaps), ``timeline.jsonl`` and
``timeline.csv`` (detections), and ``manifest.json`` / ``manifest.sig`` once sealed."""

from __future__ import annotations

import json
import os
import stat
from datetime import datetime, timezone
from pathlib import Path

from field.errors import FieldError

CASE_FILE = "case.json"
EVIDENCE = "evidence"
DERIVED = "derived"
COLLECTION_LOG = "collection.jsonl"
NOTES = "notes.jsonl"
TIMELINE_JSONL = "timeline.jsonl"
TIMELINE_CSV = "timeline.csv"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
MAX_NOTE = 64 * 1024  # characters of one note


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _no_parent_refs(path: Path, what: str) -> None:
    if ".." in Path(path).parts:
        raise FieldError(f"{what} {path}: a path with '..' is refused; give the folder itself")


def create_case(case_dir: Path, agency: str, responder: str, public_key: str, key_id: str) -> dict:
    _no_parent_refs(case_dir, "case folder")
    if not agency.strip() or not responder.strip():
        raise FieldError("--agency and --responder must not be empty")
    try:
        st = os.lstat(case_dir)
    except FileNotFoundError:
        st = None
    if st is not None:
        if not stat.S_ISDIR(st.st_mode):
            raise FieldError(f"case folder {case_dir}: exists and is not a folder")
        if any(os.scandir(case_dir)):
            raise FieldError(f"case folder {case_dir}: exists and is not empty")
    else:
        os.makedirs(case_dir, mode=0o700)
    for sub in (EVIDENCE, DERIVED):
        os.mkdir(case_dir / sub, 0o700)
    info = {"format": "soc-field-case/1", "agency": agency, "responder": responder, "created": now_iso(),
            "kit_public_key": public_key, "kit_key_id": key_id}
    write_new(case_dir / CASE_FILE, json.dumps(info, ensure_ascii=False, indent=2).encode() + b"\n")
    return info


def open_case(case_dir: Path) -> dict:
    """The case's case.json, or a FieldError: the folder is missing, is a file or a symlink, or holds no case."""
    _no_parent_refs(case_dir, "case folder")
    try:
        st = os.lstat(case_dir)
    except FileNotFoundError as exc:
        raise FieldError(f"case folder {case_dir}: no such folder (`soc field new` makes one)") from exc
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise FieldError(f"case folder {case_dir}: not a folder")
    try:
        fd = os.open(case_dir / CASE_FILE, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise FieldError(f"case folder {case_dir}: no readable {CASE_FILE} (not a case folder)") from exc
    with os.fdopen(fd, "rb") as fh:
        try:
            info = json.loads(fh.read(1 << 20))
        except ValueError as exc:
            raise FieldError(f"{case_dir / CASE_FILE}: not valid JSON") from exc
    if not isinstance(info, dict) or info.get("format") != "soc-field-case/1":
        raise FieldError(f"{case_dir / CASE_FILE}: not a field case")
    return info


def write_new(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Create a file that must not exist yet, never through a symlink."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def replace_file(path: Path, data: bytes) -> None:
    """Write a file of the case whole (a timeline): a temporary file renamed over it, never through a symlink."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
    write_new(tmp, data)
    os.replace(tmp, path)


def append_line(path: Path, record: dict) -> None:
    """Append one JSON line to a log of the case (never through a symlink)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "ab") as fh:
        fh.write(json.dumps(record, ensure_ascii=False).encode("utf-8", "backslashreplace") + b"\n")


def read_lines(path: Path) -> list[dict]:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return []
    with os.fdopen(fd, "rb") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def add_note(case_dir: Path, text: str) -> dict:
    info = open_case(case_dir)
    if not text.strip():
        raise FieldError("the note is empty")
    if len(text) > MAX_NOTE:
        raise FieldError(f"the note is longer than {MAX_NOTE} characters")
    if (case_dir / MANIFEST).exists():
        raise FieldError(f"case {case_dir} is sealed: a note now would change it (verify first; seal again after)")
    note = {"time": now_iso(), "responder": info["responder"], "text": text}
    append_line(case_dir / NOTES, note)
    return note


def printable(value) -> str:
    """A name or message from outside made safe for a terminal (the hunt's own rule: escapes shown, not obeyed)."""
    from detections.timeline import printable as shown

    return shown(value)
