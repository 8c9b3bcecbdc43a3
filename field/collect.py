"""Copying evidence into the case: regular files only, symlinks never followed (a symlink met in a folder is skipped
and reported; one given on the command line is refused), device files, FIFOs and sockets refused, sizes bounded,
and each file's SHA-256 computed from the bytes copied, recorded with the time of collection."""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from field.case import COLLECTION_LOG, EVIDENCE, MANIFEST, append_line, now_iso, open_case, read_lines
from field.errors import FieldError

CHUNK = 1024 * 1024
DEFAULT_MAX_FILE = 2 * 1024 ** 3  # bytes of one file
DEFAULT_MAX_TOTAL = 20 * 1024 ** 3  # bytes of one collection

EVTX_MAGIC = b"ElfFile\x00"
PCAP_MAGICS = (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d", b"\x0a\x0d\x0d\x0a")
LOG_SUFFIXES = (".log", ".txt", ".syslog", ".json", ".jsonl", ".ndjson", ".csv", ".out")


def kind_of(head: bytes, name: str) -> str:
    """evtx, pcap, log (text lines) or file (scanned with YARA only)."""
    if head.startswith(EVTX_MAGIC):
        return "evtx"
    if head[:4] in PCAP_MAGICS:
        return "pcap"
    lower = name.lower()
    if (lower.endswith(LOG_SUFFIXES) or ".log." in lower or lower.endswith(".log")) and b"\x00" not in head:
        return "log"
    return "file"


@dataclass
class Collected:
    files: list[dict] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (path, why)
    bytes: int = 0


def _check_argument(path: Path) -> os.stat_result:
    if ".." in path.parts:
        raise FieldError(f"{path}: a path with '..' is refused; give the file or folder itself")
    try:
        st = os.lstat(path)
    except FileNotFoundError as exc:
        raise FieldError(f"{path}: no such file or folder") from exc
    except OSError as exc:
        raise FieldError(f"{path}: cannot read: {exc.strerror}") from exc
    if stat.S_ISLNK(st.st_mode):
        raise FieldError(f"{path}: a symbolic link is refused (links are not followed); give its target itself")
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        raise FieldError(f"{path}: not a regular file or folder (a device, FIFO or socket is refused)")
    return st


def _walk(root: Path, refused: list) -> list[tuple[Path, Path]]:
    """(source file, path relative to the root's parent) of every regular file under ``root``, no link followed."""
    if stat.S_ISREG(os.lstat(root).st_mode):
        return [(root, Path(root.name))]
    found = []
    for folder, dirs, files in os.walk(root, followlinks=False):
        for name in sorted(dirs):  # os.walk does not descend into a linked folder: say so
            if os.path.islink(os.path.join(folder, name)):
                refused.append((os.path.join(folder, name), "symbolic link not followed"))
        dirs.sort()
        for name in sorted(files):
            path = Path(folder) / name
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                refused.append((str(path), "symbolic link not followed"))
            elif not stat.S_ISREG(st.st_mode):
                refused.append((str(path), "not a regular file (device, FIFO or socket)"))
            else:
                found.append((path, Path(root.name) / path.relative_to(root)))
    return found


def _slot(evidence: Path, rel: Path) -> Path:
    """A new folder under evidence/ for one argument: 001-<name>, 002-<name>, ..."""
    n = 1 + sum(1 for _ in os.scandir(evidence))
    while True:
        slot = evidence / f"{n:03d}"
        try:
            os.mkdir(slot, 0o700)
            return slot
        except FileExistsError:
            n += 1


def _copy(source: Path, dest: Path, max_file: int) -> tuple[int, str, bytes]:
    """Copy one regular file, never following a link or opening a device; (size, sha256, first bytes)."""
    try:
        fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        raise FieldError(f"{source}: cannot open: {exc.strerror}") from exc
    with os.fdopen(fd, "rb") as src:
        st = os.fstat(src.fileno())
        if not stat.S_ISREG(st.st_mode):  # swapped for a device or FIFO since it was listed
            raise FieldError(f"{source}: not a regular file")
        if st.st_size > max_file:
            raise FieldError(f"{source}: {st.st_size} bytes, over the limit of {max_file} (--max-file-mb)")
        dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        out_fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        digest, size, head = hashlib.sha256(), 0, b""
        try:
            with os.fdopen(out_fd, "wb") as out:
                while chunk := src.read(CHUNK):
                    size += len(chunk)
                    if size > max_file:  # it grew while being copied
                        raise FieldError(f"{source}: grew over the limit of {max_file} bytes while copied")
                    if len(head) < 4096:
                        head += chunk[:4096 - len(head)]
                    digest.update(chunk)
                    out.write(chunk)
        except BaseException:
            os.unlink(dest)
            raise
    os.chmod(dest, 0o400)  # evidence is read-only in the case
    return size, digest.hexdigest(), head


def collect(case_dir: Path, paths: list[Path], *, max_file: int = DEFAULT_MAX_FILE,
            max_total: int = DEFAULT_MAX_TOTAL, progress: Callable[[str, int, int], None] | None = None) -> Collected:
    """Copy ``paths`` into the case. Arguments are all checked before anything is copied (a refused argument ends
    the collection with nothing copied); inside folders, links and special files are skipped and reported."""
    open_case(case_dir)
    if (case_dir / MANIFEST).exists():
        raise FieldError(f"case {case_dir} is sealed: collecting now would change it")
    case_root = case_dir.resolve()
    for path in paths:
        st = _check_argument(path)
        if stat.S_ISREG(st.st_mode) and st.st_size > max_file:
            raise FieldError(f"{path}: {st.st_size} bytes, over the limit of {max_file} (--max-file-mb); nothing copied")
        real = path.resolve()
        if real == case_root or case_root in real.parents or real in case_root.parents:
            raise FieldError(f"{path}: is the case folder, inside it or holds it")
    result = Collected()
    plan = []
    for path in paths:
        files = _walk(path, result.refused)
        plan.append((path, files))
    sizes = {src: os.lstat(src).st_size for _, files in plan for src, _ in files}
    total = sum(sizes.values())
    if total > max_total:
        raise FieldError(f"{total} bytes to collect, over the limit of {max_total} (--max-total-mb); nothing copied")
    evidence = case_dir / EVIDENCE
    done = 0
    for path, files in plan:
        if not files:
            continue
        slot = _slot(evidence, path)
        for source, rel in files:
            dest = slot / rel
            try:
                size, sha, head = _copy(source, dest, max_file)
            except FieldError as exc:
                result.refused.append((str(source), str(exc)))
                continue
            entry = {"source": str(source.absolute()), "path": dest.relative_to(case_dir).as_posix(), "size": size,
                     "sha256": sha, "kind": kind_of(head, source.name), "collected_at": now_iso()}
            append_line(case_dir / COLLECTION_LOG, entry)
            result.files.append(entry)
            result.bytes += size
            done += sizes.get(source, size)
            if progress:
                progress(str(source), done, total)
    for source, why in result.refused:
        append_line(case_dir / COLLECTION_LOG, {"source": str(source), "refused": why, "time": now_iso()})
    return result


def collected(case_dir: Path) -> list[dict]:
    """The collected files of the case's log; a log naming a file outside evidence/ (edited) is refused."""
    entries = [e for e in read_lines(case_dir / COLLECTION_LOG) if "sha256" in e]
    for entry in entries:
        path = entry.get("path")
        parts = Path(path).parts if isinstance(path, str) else ()
        if not parts or parts[0] != EVIDENCE or ".." in parts or Path(path).is_absolute() or "\x00" in path:
            raise FieldError(f"{COLLECTION_LOG} names {path!r}, not a file under {EVIDENCE}/: refused")
        if entry.get("kind") not in ("evtx", "pcap", "log", "file"):
            raise FieldError(f"{COLLECTION_LOG}: {path!r} has an unknown kind: refused")
    return entries
