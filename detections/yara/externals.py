"""Per-file values of the externals the rules use: filename, filepath, extension, filetype, owner.

They follow the conventions of the signature-base rules (written for THOR): ``extension`` is lower case with its dot
(".jpg"), ``filetype`` is a short upper-case name from the file's magic bytes ("EXE", "DLL", "ELF", "PDF"...) or ""
when the type is not one of the simple ones below, ``owner`` is the owning user's name.
"""

from __future__ import annotations

import os
import pwd
import struct
from functools import lru_cache
from pathlib import PurePath

HEAD_BYTES = 1024  # enough for the PE header offset check below in nearly every real file

# (offset, magic, type), first match wins.
_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\x7fELF", "ELF"),
    (0, b"\xfe\xed\xfa\xce", "MACH-O"), (0, b"\xfe\xed\xfa\xcf", "MACH-O"),
    (0, b"\xce\xfa\xed\xfe", "MACH-O"), (0, b"\xcf\xfa\xed\xfe", "MACH-O"),
    (0, b"%PDF", "PDF"),
    (0, b"GIF87a", "GIF"), (0, b"GIF89a", "GIF"),
    (0, b"\x89PNG\r\n\x1a\n", "PNG"),
    (0, b"\xff\xd8\xff", "JPEG"),
    (0, b"{\\rtf", "RTF"),
    (0, b"MDMP", "MDMP"),
    (0, b"PK\x03\x04", "ZIP"),
    (0, b"Rar!\x1a\x07", "RAR"),
    (0, b"7z\xbc\xaf\x27\x1c", "7Z"),
    (0, b"\x1f\x8b", "GZIP"),
    (0, b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "OLE"),
    (0, b"MSCF", "CAB"),
    (0, b"ElfFile\x00", "EVTX"),
    (0, b"\xd4\xc3\xb2\xa1", "PCAP"), (0, b"\xa1\xb2\xc3\xd4", "PCAP"), (0, b"\x0a\x0d\x0d\x0a", "PCAPNG"),
    (0, b"<?php", "PHP"),
    (0, b"#!/usr/bin/python", "Python"), (0, b"#!/usr/bin/env python", "Python"),
)


def filetype(head: bytes) -> str:
    """The simple file type from the first bytes; "EXE" or "DLL" for a PE file (DLL flag in the COFF header)."""
    if head[:2] == b"MZ":
        return _pe_kind(head)
    for offset, magic, name in _MAGIC:
        if head[offset:offset + len(magic)] == magic:
            return name
    return ""


def _pe_kind(head: bytes) -> str:
    if len(head) >= 0x40:
        (pe_offset,) = struct.unpack_from("<I", head, 0x3C)
        # COFF header: "PE\0\0", machine (2), sections (2), timestamp (4), symbols (4+4), optional size (2), flags
        if pe_offset + 24 <= len(head) and head[pe_offset:pe_offset + 4] == b"PE\x00\x00":
            (characteristics,) = struct.unpack_from("<H", head, pe_offset + 22)
            if characteristics & 0x2000:  # IMAGE_FILE_DLL
                return "DLL"
    return "EXE"


def extension(name: str) -> str:
    return PurePath(name).suffix.lower()


@lru_cache(maxsize=1024)
def owner_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _text(value: str) -> str:
    """yara takes externals as UTF-8: undecodable bytes of a file name (surrogate escapes) become U+FFFD."""
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def for_file(path: str, head: bytes, uid: int | None) -> dict[str, str]:
    """Externals for a file on disk; ``path`` as it will be reported (absolute)."""
    name = _text(os.path.basename(path))
    return {"filename": name, "filepath": _text(path), "extension": extension(name), "filetype": filetype(head),
            "owner": owner_name(uid) if uid is not None else ""}


def for_payload(name: str, data: bytes, path: str = "") -> dict[str, str]:
    """Externals for a payload the collectors extracted (an HTTP body, a transferred file): no owner on disk."""
    filename = _text(PurePath(name).name) if name else ""
    return {"filename": filename, "filepath": _text(path or name), "extension": extension(filename),
            "filetype": filetype(data[:HEAD_BYTES]), "owner": ""}
