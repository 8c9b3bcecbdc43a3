"""Rule packs installed as files: versions under the data folder and a pointer to the current one.

```
<data_dir>/rules/packs/                 (detections.rule_packs.dir)
    current.json                        {"current": "<version>", "previous": ["<version>" or null, ...]}
    20261122T101500Z-3f2a9c0b1d4e/
        pack.json                       where it came from, its checksum and how it was verified, what it holds
        rules/...                       the pack's rule files (nothing else is written)
```

Installing copies the archive once into a private staging file (0600, in the pack folder) while hashing it, checks
that hash, and extracts that copy — never the path again, which someone could have changed since it was hashed —
into a staging folder (detections/pack_archive.py: hostile input), renames it to its version folder, and nothing
else: the caller compares it with the current version, then ``switch_to`` makes
it current by rewriting ``current.json`` atomically (soc/files.py). A running suite watches that pointer and swaps
its rules (detections/active_rules.py); ``rollback`` points it back at the version that was current before. Old
versions beyond ``keep_versions`` are removed; those a rollback could still go back to are kept first.

Installs and rollbacks take a lock on the folder, so two at once cannot interleave.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from detections.pack_archive import ArchiveRefused, Extracted, Limits, extract_rules
from soc.files import atomic_write, fsync_folder

POINTER = "current.json"
META = "pack.json"
RULES = "rules"
STAGING_PREFIX = ".staging-"


class PackError(Exception):
    """A pack cannot be installed, or the pack folder cannot be used; the message says why."""


class ChecksumMismatch(PackError):
    pass


@dataclass(frozen=True)
class Verification:
    sha256: str  # of the archive file ("" for a folder)
    checked_by: str  # "--sha256", "<file>.sha256", or "" when nothing was given to check it against


@dataclass(frozen=True)
class PackVersion:
    id: str
    folder: Path
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def rules_dir(self) -> Path:
        """The folder the suite loads rules from."""
        return self.folder / RULES

    @property
    def verification(self) -> Verification:
        """How the archive was checked when it was installed."""
        return Verification(self.meta.get("sha256") or "", self.meta.get("checked_by") or "")

    def describe(self) -> dict[str, Any]:
        return {"id": self.id, **{k: self.meta.get(k) for k in ("installed", "source", "sha256", "checked_by",
                                                                  "rule_files", "ignored", "content_digest")}}


@dataclass
class Pointer:
    current: str | None = None
    previous: list[str | None] = field(default_factory=list)  # what was current before, most recent last

    def as_json(self) -> str:
        return json.dumps({"current": self.current, "previous": self.previous}, indent=2) + "\n"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1024 * 1024), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _hex(value: str, where: str) -> str:
    """``value`` as a SHA-256 (64 hexadecimal digits, any case), or PackError."""
    digest = value.strip().lower()
    if len(digest) != 64 or not all(c in "0123456789abcdef" for c in digest):
        raise PackError(f"{where}: {value.strip()[:80]!r} is not a SHA-256 (64 hexadecimal digits)")
    return digest


def _expected_from_file(checksum_file: Path, archive_name: str) -> str:
    """The archive's hash in a ``sha256sum`` file ("HEX  name" or "HEX *name" lines; a lone HEX is taken too)."""
    try:
        text = checksum_file.read_text(encoding="utf-8", errors="replace")[:1024 * 1024]
    except OSError as exc:
        raise PackError(f"cannot read the checksum file {checksum_file}: {exc.strerror or exc}") from exc
    lines = [line.split(maxsplit=1) for line in text.splitlines() if line.strip() and not line.startswith("#")]
    for parts in lines:
        name = parts[1].lstrip("*").strip() if len(parts) > 1 else None
        if (name is None and len(lines) == 1) or (name is not None and Path(name).name == archive_name):
            return _hex(parts[0], f"the checksum file {checksum_file}")
    raise PackError(f"the checksum file {checksum_file} has no line for {archive_name}")


def verify(source: Path, sha256: str | None, required: bool | str, actual: str | None = None) -> Verification:
    """Check the archive against ``sha256`` or the ``<archive>.sha256`` file beside it; ChecksumMismatch when they
    differ, PackError when a check is required and there is nothing to check against.

    ``required`` (``detections.rule_packs.require_checksum``): False, True (``sha256`` or the file beside), or
    ``"argument"`` (``sha256`` only: a checksum file that travels with the archive shows it was not damaged on the
    way, not that nobody changed both). ``actual``: the SHA-256 of the bytes that will be installed (``PackStore.
    install`` gives that of its private copy); by default the file's now."""
    beside = source.with_name(source.name + ".sha256")
    if source.is_dir():
        if sha256:
            raise PackError("a checksum verifies an archive file, not a folder")
        if required:
            raise PackError("detections.rule_packs.require_checksum is on: install an archive with its checksum")
        return Verification("", "")
    actual = actual or sha256_of(source)
    if sha256:
        expected, how = _hex(sha256, "--sha256"), "--sha256"
    elif required == "argument":
        raise PackError("detections.rule_packs.require_checksum is 'argument': give the archive's SHA-256 with "
                        "--sha256, as read from the publisher (a checksum file beside the archive is not enough: "
                        "whoever could change the archive could change it too)")
    elif beside.is_file():
        expected, how = _expected_from_file(beside, source.name), beside.name
    elif required:
        raise PackError(f"detections.rule_packs.require_checksum is on and there is neither {beside.name} beside "
                        "the archive nor --sha256")
    else:
        return Verification(actual, "")
    if not secrets.compare_digest(expected, actual):
        raise ChecksumMismatch(f"the archive's SHA-256 is {actual}, not {expected} ({how}): not installed")
    return Verification(actual, how)


def _content_digest(rules: Path) -> str:
    """One hash over every rule file's path and content: the same pack gives the same digest, however packed."""
    digest = hashlib.sha256()
    for path in sorted(p for p in rules.rglob("*") if p.is_file()):
        digest.update(path.relative_to(rules).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


class PackStore:
    """The pack folder of one data folder."""

    def __init__(self, root: str | Path, config: Any):
        """``config``: ``detections.rule_packs`` (RulePacksConfig)."""
        self.root = Path(root)
        self.config = config

    @classmethod
    def of(cls, detections: Any, data_dir: str | Path) -> "PackStore":
        """The pack folder the settings name (``detections.rule_packs.dir``, relative to the data folder)."""
        return cls(Path(data_dir) / detections.rule_packs.dir, detections.rule_packs)

    # --- reading ---------------------------------------------------------------------------------------------------
    @property
    def pointer_file(self) -> Path:
        return self.root / POINTER

    def pointer(self) -> Pointer:
        """The current pointer (no pack yet: an empty one); PackError when it cannot be read."""
        try:
            data = json.loads(self.pointer_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return Pointer()
        except (OSError, ValueError) as exc:
            raise PackError(f"the pack pointer {self.pointer_file} cannot be read: {exc}") from exc
        if not isinstance(data, dict) or not isinstance(data.get("previous", []), list):
            raise PackError(f"the pack pointer {self.pointer_file} is not a pointer")
        current = data.get("current")
        return Pointer(current if isinstance(current, str) else None,
                       [p if isinstance(p, str) else None for p in data.get("previous", [])])

    def version(self, version_id: str | None) -> PackVersion | None:
        if not version_id or "/" in version_id or version_id.startswith("."):
            return None
        folder = self.root / version_id
        if not (folder / RULES).is_dir():
            return None
        try:
            meta = json.loads((folder / META).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            meta = {}
        return PackVersion(version_id, folder, meta if isinstance(meta, dict) else {})

    def current(self) -> PackVersion | None:
        """The current version; PackError when the pointer names one that is not there."""
        pointer = self.pointer()
        version = self.version(pointer.current)
        if pointer.current and version is None:
            raise PackError(f"the current pack {pointer.current} is missing from {self.root}")
        return version

    def versions(self) -> list[PackVersion]:
        """Every version on disk, newest first."""
        if not self.root.is_dir():
            return []
        found = [self.version(p.name) for p in self.root.iterdir() if p.is_dir()]
        return sorted((v for v in found if v is not None), key=lambda v: v.id, reverse=True)

    # --- changing --------------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def locked(self, wait: bool = True) -> Iterator[None]:
        """One install or rollback at a time on this folder (``wait=False``: PackError if one is under way)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+b") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError as exc:
                raise PackError("another rule pack install or rollback is under way") from exc
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def install(self, source: Path, sha256: str | None = None) -> tuple[PackVersion, Extracted]:
        """Verify ``source`` (``verify``: against ``sha256`` or the checksum file beside it, as
        ``require_checksum`` wants) and extract it as a new version (not current yet: ``switch_to`` makes it so);
        ``version.verification`` says how it was checked. An archive is read once, into a private copy whose hash is
        the one checked and which is what is extracted. Call under ``locked``. ChecksumMismatch, ArchiveRefused or
        PackError when it cannot be installed; nothing is left behind then."""
        if not source.exists():
            raise PackError(f"{source} does not exist")
        self.root.mkdir(parents=True, exist_ok=True)
        for leftover in self.root.glob(STAGING_PREFIX + "*"):  # an install interrupted earlier
            if leftover.is_dir() and not leftover.is_symlink():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)
        token = secrets.token_hex(6)
        staging = self.root / f"{STAGING_PREFIX}{token}"
        copy: Path | None = None
        try:
            if source.is_dir():
                verification = verify(source, sha256, self.config.require_checksum)
                origin = source
            else:
                copy, actual = self._receive(source, self.root / f"{STAGING_PREFIX}{token}.archive")
                verification = verify(source, sha256, self.config.require_checksum, actual=actual)
                origin = copy
            extracted = extract_rules(origin, staging / RULES, Limits.of(self.config))
            if extracted.rule_files == 0:
                raise ArchiveRefused("no rule file (*.yml, *.yaml) in it")
            digest = _content_digest(staging / RULES)
            version_id = self._new_id(verification.sha256 or digest)
            meta = {"installed": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "source": str(source),
                    "sha256": verification.sha256 or None, "checked_by": verification.checked_by or None,
                    "rule_files": extracted.rule_files, "ignored": extracted.ignored, "content_digest": digest}
            atomic_write(staging / META, json.dumps(meta, indent=2) + "\n", mode=0o644)
            os.replace(staging, self.root / version_id)
            fsync_folder(self.root)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        finally:
            if copy is not None:
                copy.unlink(missing_ok=True)
        version = self.version(version_id)
        if version is None:  # renamed a moment ago: only someone else's hand in the folder could do this
            raise PackError(f"the new version {version_id} vanished from {self.root}")
        return version, extracted

    def _receive(self, source: Path, copy: Path) -> tuple[Path, str]:
        """Copy the archive at ``source`` to ``copy`` (created here, 0600, never through a link) and hash it on the
        way: (the copy, its SHA-256). At most ``max_archive_bytes`` are read, whatever the file's size said."""
        limit = self.config.max_archive_bytes
        digest = hashlib.sha256()
        try:  # O_NONBLOCK: a FIFO handed in as the archive must not hang the command (it is refused below)
            handle = os.open(source, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        except OSError as exc:
            raise PackError(f"cannot read {source}: {exc.strerror or exc}") from exc
        with open(handle, "rb") as src:
            info = os.fstat(src.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise PackError(f"{source} is neither a regular file nor a folder")
            if info.st_size > limit:
                raise ArchiveRefused(f"the archive is {info.st_size} bytes, over {limit} "
                                     f"(detections.rule_packs.max_archive_bytes)")
            target = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0),
                             0o600)
            try:
                with open(target, "wb") as out:
                    copied = 0
                    for chunk in iter(lambda: src.read(1024 * 1024), b""):
                        copied += len(chunk)
                        if copied > limit:
                            raise ArchiveRefused(f"the archive is over {limit} bytes "
                                                 f"(detections.rule_packs.max_archive_bytes)")
                        digest.update(chunk)
                        out.write(chunk)
            except BaseException:
                copy.unlink(missing_ok=True)
                raise
        return copy, digest.hexdigest()

    def _new_id(self, digest: str) -> str:
        base = f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{digest[:12]}"
        candidate, n = base, 1
        while (self.root / candidate).exists():
            n += 1
            candidate = f"{base}-{n}"
        return candidate

    def switch_to(self, version_id: str | None) -> Pointer:
        """Make ``version_id`` current (None: no pack, the suite's own rules only); the old current becomes the
        one a rollback returns to. Call under ``locked``."""
        if version_id is not None and self.version(version_id) is None:
            raise PackError(f"no pack version {version_id} in {self.root}")
        pointer = self.pointer()
        if pointer.current != version_id:
            pointer.previous.append(pointer.current)
        pointer.current = version_id
        self._write(pointer)
        return pointer

    def rollback(self) -> tuple[str | None, str | None]:
        """Back to the version current before this one: (from, to). PackError when there is none. Call under
        ``locked``."""
        pointer = self.pointer()
        while pointer.previous:
            target = pointer.previous.pop()
            if target is None or self.version(target) is not None:
                was = pointer.current
                pointer.current = target
                self._write(pointer)
                return was, target
        raise PackError("there is no earlier rule pack to go back to")

    def _write(self, pointer: Pointer) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write(self.pointer_file, pointer.as_json(), mode=0o644)

    def prune(self) -> list[str]:
        """Remove versions beyond ``keep_versions``: the current one and those a rollback would go back to are kept
        first, then the newest. The ids removed. Call under ``locked``."""
        pointer = self.pointer()
        on_disk = [v.id for v in self.versions()]
        keep: list[str] = []
        for wanted in [pointer.current, *reversed(pointer.previous), *on_disk]:
            if wanted and wanted in on_disk and wanted not in keep and len(keep) < self.config.keep_versions:
                keep.append(wanted)
        removed = [v for v in on_disk if v not in keep]
        for version_id in removed:
            shutil.rmtree(self.root / version_id, ignore_errors=True)
        previous = [p for p in pointer.previous if p is None or p in keep][-self.config.keep_versions:]
        if previous != pointer.previous:
            pointer.previous = previous
            self._write(pointer)
        return removed
