"""A rule pack's rule files out of an archive (zip, tar, tar.gz/bz2/xz) or a folder, treating it as hostile.

A pack comes from outside (a release archive carried into an air-gapped site), and whoever made it may try to write
outside the pack's folder or to exhaust the disk, memory or time of the one who opens it. So the whole archive is
refused when any entry:

- has a name that is absolute, climbs out (``..``), holds a backslash, a drive letter or a control character;
- is anything but a regular file or a folder: symbolic and hard links, devices, FIFOs, sparse files;
- is encrypted (zip), or appears twice;

and when the archive is larger than ``max_archive_bytes``, has more than ``max_members`` entries, expands beyond
``max_total_bytes``, or holds a rule file larger than ``max_file_bytes`` (the limits of ``detections.rule_packs``),
or cannot be read (a bad checksum, an unknown compression). A zip's entries are all checked from its central
directory before anything is written (its entries are counted from the raw directory first, so a directory of a
million entries is refused before the standard library builds a million objects); a tar is read as a stream, each
member checked from its header before its data, so members already written to the staging folder are removed with
it when a later one is refused. Sizes are counted again while an entry is read (a zip's declared sizes are not
believed), and the decompressed stream of a tar is cut at the limit. Nothing is written anywhere but the staging
folder the caller gives, which the caller removes when the archive is refused.

Only rule files (``*.yml``, ``*.yaml``) are written, as plain data (files 0644, folders 0755, whatever mode the
archive says); anything else is ignored and counted. Tar members are written by the standard library's safe
extraction (``tarfile`` filter ``"data"``), after the checks above; zip members are copied by this module into paths
it builds itself.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import stat
import struct
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

RULE_SUFFIXES = (".yml", ".yaml")
CHUNK = 64 * 1024
FILE_MODE, FOLDER_MODE = 0o644, 0o755
# What reading a damaged or unusual archive raises besides ArchiveRefused: a bad CRC or header (BadZipFile), an
# unknown compression method (NotImplementedError), a broken stream (zlib, lzma, bz2's OSError, EOFError), an
# encrypted entry (RuntimeError), a name that is not UTF-8 (ValueError).
UNREADABLE = (zipfile.BadZipFile, zipfile.LargeZipFile, tarfile.TarError, NotImplementedError, zlib.error,
              lzma.LZMAError, EOFError, OSError, RuntimeError, ValueError, struct.error)


class ArchiveRefused(Exception):
    """The archive (or folder) is not installed; the message says which entry and why."""


@dataclass(frozen=True)
class Limits:
    max_archive_bytes: int
    max_members: int
    max_total_bytes: int
    max_file_bytes: int

    @classmethod
    def of(cls, config: Any) -> "Limits":
        """From ``detections.rule_packs`` (RulePacksConfig)."""
        return cls(config.max_archive_bytes, config.max_members, config.max_total_bytes, config.max_file_bytes)


@dataclass
class Extracted:
    rule_files: int = 0
    ignored: int = 0  # entries that are not rule files (documentation, tests, other files), left out
    bytes: int = 0  # of the rule files written


def safe_parts(name: str) -> tuple[str, ...]:
    """The path components of an entry's name, or ArchiveRefused if the name could lead anywhere but inside."""
    if not name or any(ord(c) < 0x20 or c == "\x7f" for c in name):
        raise ArchiveRefused(f"entry {name!r}: a control character or an empty name")
    if "\\" in name:
        raise ArchiveRefused(f"entry {name!r}: a backslash in the name")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise ArchiveRefused(f"entry {name!r}: an absolute name")
    parts = tuple(p for p in PurePosixPath(name).parts if p not in ("", "."))
    if ".." in parts:
        raise ArchiveRefused(f"entry {name!r}: climbs out of the pack with '..'")
    return parts


def _is_rule_file(parts: tuple[str, ...]) -> bool:
    # macOS adds "._name" resource forks and a __MACOSX folder to zips: not rules, though named like them.
    return bool(parts) and parts[-1].endswith(RULE_SUFFIXES) and not parts[-1].startswith("._") \
        and "__MACOSX" not in parts


class _Budget:
    """Counts entries and bytes against the limits."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self.members = 0
        self.total = 0
        self.names: set[tuple[str, ...]] = set()

    def entry(self, name: str, parts: tuple[str, ...], size: int, rule_file: bool) -> None:
        self.members += 1
        if self.members > self.limits.max_members:
            raise ArchiveRefused(f"more than {self.limits.max_members} entries (detections.rule_packs.max_members)")
        if parts in self.names:
            raise ArchiveRefused(f"entry {name!r} appears twice")
        self.names.add(parts)
        self.add(name, size, rule_file)

    def add(self, name: str, size: int, rule_file: bool) -> None:
        if size < 0:
            raise ArchiveRefused(f"entry {name!r}: a negative size")
        if rule_file and size > self.limits.max_file_bytes:
            raise ArchiveRefused(f"entry {name!r}: {size} bytes, over the {self.limits.max_file_bytes} a rule file "
                                 f"may have (detections.rule_packs.max_file_bytes)")
        self.total += size
        if self.total > self.limits.max_total_bytes:
            raise ArchiveRefused(f"expands beyond {self.limits.max_total_bytes} bytes "
                                 f"(detections.rule_packs.max_total_bytes)")


def extract_rules(source: Path, dest: Path, limits: Limits) -> Extracted:
    """The rule files of ``source`` (a folder or an archive) into the new folder ``dest``; ArchiveRefused when the
    source breaks a rule (``dest`` may then hold part of it: the caller removes it)."""
    dest.mkdir(parents=True, exist_ok=False)
    if source.is_dir():
        out = _from_folder(source, dest, limits)
    else:
        size = source.stat().st_size
        if size > limits.max_archive_bytes:
            raise ArchiveRefused(f"the archive is {size} bytes, over {limits.max_archive_bytes} "
                                 f"(detections.rule_packs.max_archive_bytes)")
        out = _from_zip(source, dest, limits) if zipfile.is_zipfile(source) else _from_tar(source, dest, limits)
    _settle_modes(dest)
    return out


def _settle_modes(dest: Path) -> None:
    """Rule files 0644 and folders 0755, whatever the archive said (no set-id, sticky or executable bits)."""
    os.chmod(dest, FOLDER_MODE)
    for root, dirs, files in os.walk(dest, followlinks=False):
        for name in dirs + files:
            path = os.path.join(root, name)
            kind = os.lstat(path).st_mode
            if stat.S_ISDIR(kind):
                os.chmod(path, FOLDER_MODE)
            elif stat.S_ISREG(kind):
                os.chmod(path, FILE_MODE)
            else:  # only this module writes here: nothing else can appear, but never follow one
                raise ArchiveRefused(f"entry {os.path.relpath(path, dest)!r}: not a regular file or a folder")


# --- zip -----------------------------------------------------------------------------------------------------------
def _zip_entries_within(source: Path, limit: int) -> None:
    """ArchiveRefused when the zip's central directory holds more than ``limit`` entries, counted the way the
    standard library will walk it (from its end-of-central-directory record) but without building an object per
    entry: ``zipfile.ZipFile`` holds every entry in memory the moment it opens the archive. Anything unreadable is
    left for ``ZipFile`` to refuse."""
    end_record = getattr(zipfile, "_EndRecData", None)  # the standard library's own reader of the end record
    if end_record is None:
        return
    with open(source, "rb") as fh:
        try:
            endrec = end_record(fh)
        except UNREADABLE:
            return
        if not endrec:
            return
        signature, declared, size_cd, location = endrec[0], endrec[4], endrec[5], endrec[9]
        if declared > limit:
            raise ArchiveRefused(f"more than {limit} entries (detections.rule_packs.max_members)")
        start = location - size_cd
        if signature == getattr(zipfile, "stringEndArchive64", b"PK\x06\x06"):
            start -= 56 + 20  # the zip64 end record and its locator
        if start < 0:
            return
        fh.seek(start)
        total = count = 0
        while total < size_cd:
            header = fh.read(46)
            if len(header) != 46 or header[:4] != b"PK\x01\x02":
                return
            count += 1
            if count > limit:
                raise ArchiveRefused(f"more than {limit} entries (detections.rule_packs.max_members)")
            name, extra, comment = struct.unpack("<HHH", header[28:34])
            fh.seek(name + extra + comment, os.SEEK_CUR)
            total += 46 + name + extra + comment


def _from_zip(source: Path, dest: Path, limits: Limits) -> Extracted:
    _zip_entries_within(source, limits.max_members)
    try:
        archive = zipfile.ZipFile(source)
    except UNREADABLE as exc:
        raise ArchiveRefused(f"not a readable zip archive: {exc}") from exc
    with archive:
        return _zip_members(archive, dest, limits)


def _zip_members(archive: zipfile.ZipFile, dest: Path, limits: Limits) -> Extracted:
    out = Extracted()
    budget = _Budget(limits)
    infos = archive.infolist()
    if len(infos) > limits.max_members:
        raise ArchiveRefused(f"more than {limits.max_members} entries (detections.rule_packs.max_members)")
    plan = []
    for info in infos:  # every entry is checked before anything is written
        parts = safe_parts(info.filename)
        kind = stat.S_IFMT(info.external_attr >> 16)  # the Unix file type, when the maker recorded one
        if info.flag_bits & 0x1:
            raise ArchiveRefused(f"entry {info.filename!r}: encrypted")
        if kind == stat.S_IFLNK:
            raise ArchiveRefused(f"entry {info.filename!r}: a symbolic link")
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise ArchiveRefused(f"entry {info.filename!r}: not a regular file or a folder")
        directory = info.is_dir() or kind == stat.S_IFDIR
        rule_file = not directory and _is_rule_file(parts)
        budget.entry(info.filename, parts, 0 if directory else info.file_size, rule_file)
        if rule_file:
            plan.append((info, parts))
        elif not directory:
            out.ignored += 1
    for info, parts in plan:
        try:
            member = archive.open(info)
        except UNREADABLE as exc:
            raise ArchiveRefused(f"entry {info.filename!r} cannot be read: {exc}") from exc
        with member:
            out.bytes += _copy(member, _target(dest, parts), info.filename, limits.max_file_bytes)
        out.rule_files += 1
    return out


def _target(dest: Path, parts: tuple[str, ...]) -> Path:
    target = dest.joinpath(*parts)
    target.parent.mkdir(parents=True, exist_ok=True)
    # The folder is new and only this code writes into it (no link can be there), but make sure all the same.
    if not target.resolve().is_relative_to(dest.resolve()):
        raise ArchiveRefused(f"entry {'/'.join(parts)!r} would be written outside the pack")
    return target


def _copy(source: IO[bytes], target: Path, name: str, max_bytes: int) -> int:
    """Copy at most ``max_bytes`` (more is refused, whatever the header said); the bytes copied."""
    written = 0
    with open(target, "xb") as out:
        while True:
            try:
                chunk = source.read(CHUNK)
            except UNREADABLE as exc:  # a bad CRC, a broken stream: the entry, not the disk being written
                raise ArchiveRefused(f"entry {name!r} cannot be read: {exc}") from exc
            if not chunk:
                return written
            written += len(chunk)
            if written > max_bytes:
                raise ArchiveRefused(f"entry {name!r}: more than {max_bytes} bytes once decompressed "
                                     f"(detections.rule_packs.max_file_bytes)")
            out.write(chunk)


# --- tar -----------------------------------------------------------------------------------------------------------
class _Capped:
    """A stream that refuses to give more than ``limit`` bytes: a decompression bomb stops at the limit."""

    def __init__(self, raw: IO[bytes], limit: int):
        self.raw, self.limit, self.read_bytes = raw, limit, 0

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size if size is not None and size >= 0 else CHUNK)
        self.read_bytes += len(data)
        if self.read_bytes > self.limit:
            raise ArchiveRefused(f"expands beyond {self.limit} bytes (detections.rule_packs.max_total_bytes)")
        return data


def _decompressed(raw: IO[bytes]) -> IO[bytes]:
    magic = raw.read(6)
    raw.seek(0)
    if magic[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=raw)  # type: ignore[return-value]
    if magic[:3] == b"BZh":
        return bz2.BZ2File(raw)  # type: ignore[return-value]
    if magic == b"\xfd7zXZ\x00":
        return lzma.LZMAFile(raw)  # type: ignore[return-value]
    return raw


ALLOWED_TAR_TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.DIRTYPE)


def _from_tar(source: Path, dest: Path, limits: Limits) -> Extracted:
    out = Extracted()
    budget = _Budget(limits)
    # Headers and padding come on top of the content: one block each, and a little more for long names.
    stream_limit = limits.max_total_bytes + 2048 * (limits.max_members + 2)
    with open(source, "rb") as raw:
        capped = _Capped(_decompressed(raw), stream_limit)
        try:
            # Read as a stream, one entry after another: nothing is skipped to without being counted.
            with tarfile.open(fileobj=capped, mode="r|") as archive:  # type: ignore[call-overload]
                for member in archive:
                    _take_tar_member(archive, member, dest, budget, out)
        except UNREADABLE as exc:
            raise ArchiveRefused(f"not a readable zip or tar archive: {exc}") from exc
    return out


def _take_tar_member(archive: tarfile.TarFile, member: tarfile.TarInfo, dest: Path, budget: _Budget,
                     out: Extracted) -> None:
    parts = safe_parts(member.name)
    if member.issym() or member.islnk():
        raise ArchiveRefused(f"entry {member.name!r}: a {'symbolic' if member.issym() else 'hard'} link")
    if member.type not in ALLOWED_TAR_TYPES:
        raise ArchiveRefused(f"entry {member.name!r}: not a regular file or a folder (type {member.type!r})")
    if member.sparse is not None or any(key.startswith("GNU.sparse") for key in member.pax_headers):
        raise ArchiveRefused(f"entry {member.name!r}: a sparse file")  # pax sparse files are regular by their type
    rule_file = member.isfile() and _is_rule_file(parts)
    budget.entry(member.name, parts, member.size if member.isfile() else 0, rule_file)
    try:  # the standard library's own check of what may be extracted, as a second opinion
        tarfile.data_filter(member, str(dest))
    except tarfile.FilterError as exc:
        raise ArchiveRefused(f"entry {member.name!r}: {exc}") from exc
    if not rule_file:
        if member.isfile():
            out.ignored += 1
        return
    if dest.joinpath(*parts).exists():
        raise ArchiveRefused(f"entry {member.name!r} appears twice")
    member.name = "/".join(parts)  # the name as checked ("./a//b.yml" becomes "a/b.yml")
    archive.extract(member, dest, filter="data")
    out.rule_files += 1
    out.bytes += member.size


# --- a folder ------------------------------------------------------------------------------------------------------
def _from_folder(source: Path, dest: Path, limits: Limits) -> Extracted:
    """A folder (a release unpacked by hand, a checkout): its rule files, with the same limits; a link in it is
    refused (it could point anywhere)."""
    out = Extracted()
    budget = _Budget(limits)
    plan = []
    for root, dirs, files in os.walk(source, followlinks=False):
        for name in sorted(dirs) + sorted(files):
            path = Path(root) / name
            relative = path.relative_to(source).as_posix()
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                raise ArchiveRefused(f"entry {relative!r}: a symbolic link")
            if stat.S_ISDIR(info.st_mode):
                continue
            if not stat.S_ISREG(info.st_mode):
                raise ArchiveRefused(f"entry {relative!r}: not a regular file or a folder")
            parts = safe_parts(relative)
            if not _is_rule_file(parts):
                out.ignored += 1
                continue
            budget.entry(relative, parts, info.st_size, True)
            plan.append((path, parts, relative))
    for path, parts, relative in plan:
        try:  # never through a link put there since the walk, and only a regular file
            handle = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        except OSError as exc:
            raise ArchiveRefused(f"entry {relative!r} cannot be opened (a link?): {exc.strerror or exc}") from exc
        with open(handle, "rb") as member:
            if not stat.S_ISREG(os.fstat(member.fileno()).st_mode):
                raise ArchiveRefused(f"entry {relative!r}: not a regular file")
            out.bytes += _copy(member, _target(dest, parts), relative, limits.max_file_bytes)
        out.rule_files += 1
    return out
