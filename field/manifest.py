"""Chain of custody: ``seal`` writes manifest.json (every file of the case with its size and SHA-256, the collection
log, the responder, the agency, the kit's public key) and manifest.sig (Ed25519 over the manifest's exact bytes);
``verify`` checks the signature and re-hashes every file, reporting each changed, missing or added one.

Verification reads only inside the case folder: a manifest naming a path outside it (``..``, absolute) is refused
as a whole, and no link is followed (a link in the case is reported as changed)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from cryptography.exceptions import InvalidSignature

from field import keys
from field.case import COLLECTION_LOG, MANIFEST, NOTES, SIGNATURE, now_iso, open_case, read_lines, write_new
from field.errors import FieldError

FORMAT = "soc-field-manifest/1"
MAX_MANIFEST = 64 * 1024 * 1024
SKIP = {MANIFEST, SIGNATURE}


def file_hash(path: Path) -> tuple[int, str] | None:
    """(size, sha256) of a regular file of the case; None when it is not one (a link, a device...)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            return None
        digest, size = hashlib.sha256(), 0
        while chunk := fh.read(1024 * 1024):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def case_files(case_dir: Path) -> dict[str, os.stat_result]:
    """Every entry of the case that is not a folder (links and special files included), by POSIX relative path."""
    out = {}
    for folder, dirs, files in os.walk(case_dir, followlinks=False):
        for name in dirs + files:
            path = Path(folder) / name
            st = os.lstat(path)
            if stat.S_ISDIR(st.st_mode):
                continue
            rel = path.relative_to(case_dir).as_posix()
            if rel not in SKIP:
                out[rel] = st
    return out


def seal(case_dir: Path, private_key) -> dict:
    info = open_case(case_dir)
    for name in SKIP:
        if os.path.lexists(case_dir / name):
            raise FieldError(f"case {case_dir} is already sealed ({name} exists)")
    public = keys.public_text(private_key.public_key())
    if public != info.get("kit_public_key"):
        raise FieldError("this kit's key is not the key the case was opened with (case.json kit_public_key); "
                         "give the case's key with --key")
    files = []
    for rel, st in sorted(case_files(case_dir).items()):
        hashed = file_hash(case_dir / rel)
        if hashed is None:
            raise FieldError(f"{rel}: not a regular file in the case; nothing sealed")
        files.append({"path": rel, "size": hashed[0], "sha256": hashed[1]})
    manifest = {
        "format": FORMAT, "sealed_at": now_iso(), "agency": info["agency"], "responder": info["responder"],
        "case_created": info["created"], "public_key": public, "key_id": keys.key_id(public),
        "collections": [{k: e.get(k) for k in ("source", "path", "size", "sha256", "kind", "collected_at")}
                        for e in read_lines(case_dir / COLLECTION_LOG) if "sha256" in e],
        "notes": len(read_lines(case_dir / NOTES)),
        "files": files,
    }
    data = json.dumps(manifest, ensure_ascii=False, indent=2, sort_keys=True).encode("utf-8") + b"\n"
    signature = private_key.sign(data)
    write_new(case_dir / MANIFEST, data, 0o444)
    write_new(case_dir / SIGNATURE, base64.b64encode(signature) + b"\n", 0o444)
    return manifest


@dataclass
class Verification:
    signature_ok: bool = False
    key_id: str = ""
    trusted: bool | None = None  # None: no trusted key to compare with
    changed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    checked: int = 0

    @property
    def ok(self) -> bool:
        return self.signature_ok and self.trusted is not False and not (self.changed or self.missing or self.added)


def safe_name(value) -> str:
    """``value`` if it names a file inside the case (relative, POSIX, no ``.``/``..``, no NUL or backslash, not the
    manifest itself), else FieldError."""
    if not isinstance(value, str) or not value or "\x00" in value or "\\" in value:
        raise FieldError(f"manifest names an invalid path {value!r}; refused")
    p = PurePosixPath(value)
    if p.is_absolute() or ".." in p.parts or "." in p.parts or value != p.as_posix():
        raise FieldError(f"manifest names a path outside the case: {value!r}; refused, nothing read")
    if value in SKIP:
        raise FieldError(f"manifest names itself ({value}); refused")
    return value


def read_small(path: Path, limit: int) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError as exc:
        raise FieldError(f"{path}: missing (is the case sealed?)") from exc
    except OSError as exc:
        raise FieldError(f"{path}: cannot read: {exc.strerror}") from exc
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise FieldError(f"{path}: not a regular file")
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise FieldError(f"{path}: larger than {limit} bytes")
    return data


def parse_manifest(data: bytes) -> tuple[dict, dict[str, dict]]:
    """A manifest's bytes read and checked: (the manifest, its file entries by path). Any entry naming a path outside
    the case, or without a size and SHA-256, refuses the whole manifest (FieldError). What the kit's ``verify`` and
    the province's receiving end (soc_api/field_cases) both read a manifest with."""
    try:
        manifest = json.loads(data)
    except (ValueError, RecursionError) as exc:  # RecursionError: nested deeper than any manifest is
        raise FieldError("manifest.json is not valid JSON") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or not isinstance(manifest.get("files"), list):
        raise FieldError("manifest.json is not a field-kit manifest")
    expected: dict[str, dict] = {}
    for entry in manifest["files"]:
        if not isinstance(entry, dict):
            raise FieldError("manifest.json: a file entry is not an object")
        rel = safe_name(entry.get("path"))
        if not isinstance(entry.get("sha256"), str) or not isinstance(entry.get("size"), int):
            raise FieldError(f"manifest.json: entry {rel!r} has no size or sha256")
        expected[rel] = entry
    if not isinstance(manifest.get("public_key"), str):
        raise FieldError("manifest.json names no public key")
    return manifest, expected


def signature_valid(data: bytes, signature_text: bytes, public: str) -> bool:
    """Whether ``signature_text`` (manifest.sig: base64) is an Ed25519 signature of exactly ``data`` by ``public``."""
    try:
        keys.public_from_text(public).verify(base64.b64decode(signature_text.strip(), validate=True), data)
        return True
    except (InvalidSignature, ValueError, FieldError):
        return False


def public_key_id(public: str) -> str:
    """The id of the manifest's public key, or "?" when the text is not base64."""
    return keys.key_id(public) if _b64ok(public) else "?"


def verify(case_dir: Path, trusted_public: str | None = None) -> tuple[Verification, dict]:
    """Check the signature (against the manifest's key, and ``trusted_public`` when given) and every file."""
    open_case(case_dir)
    data = read_small(case_dir / MANIFEST, MAX_MANIFEST)
    sig_text = read_small(case_dir / SIGNATURE, 4096)
    manifest, expected = parse_manifest(data)
    result = Verification()
    public = manifest["public_key"]
    result.key_id = public_key_id(public)
    result.signature_ok = signature_valid(data, sig_text, public)
    if trusted_public is not None:
        result.trusted = trusted_public.strip() == public
    present = case_files(case_dir)
    for rel, entry in sorted(expected.items()):
        if rel not in present:
            result.missing.append(rel)
            continue
        hashed = file_hash(case_dir / rel)
        result.checked += 1
        if hashed is None or hashed != (entry["size"], entry["sha256"]):
            result.changed.append(rel)
    result.added = sorted(set(present) - set(expected))
    return result, manifest


def _b64ok(text: str) -> bool:
    try:
        base64.b64decode(text, validate=True)
        return True
    except ValueError:
        return False
