"""Harmless files that make signature-base rules fire, and benign ones that should not, written on demand.

Used by the tests (equality with the yara command line, the API) and the benchmark (hits among bulk data), and
handy for checking a deployed rule pack. Nothing here is malware: the files only carry marker strings copied from
the rules' own text (the EICAR test string, webshell one-liners, tool banners) or a bare MZ/PE header with no code.
Each sample says which rule it is written for; whether that rule fires is checked against yara itself, not assumed.
"""

from __future__ import annotations

import os
import random
import struct
from dataclasses import dataclass
from pathlib import Path

EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


def pe_stub(dll: bool = False, body: bytes = b"") -> bytes:
    """A bare PE header (MZ, e_lfanew, 'PE\\0\\0', COFF header) and padding: no sections, no code."""
    header = bytearray(0x80)
    header[0:2] = b"MZ"
    header[0x3C:0x40] = struct.pack("<I", 0x80)
    coff = b"PE\x00\x00" + struct.pack("<HHIIIHH", 0x14C, 0, 0, 0, 0, 0xE0, 0x2102 if dll else 0x0102)
    return bytes(header) + coff + b"\x00" * (0x200 - 0x80 - len(coff)) + body


@dataclass(frozen=True)
class Sample:
    name: str  # relative path inside the sample folder (its name and extension matter to some rules)
    data: bytes
    written_for: tuple[str, ...] = ()  # rules this sample is meant to trigger; () for a benign file


SAMPLES: tuple[Sample, ...] = (
    Sample("eicar.com", EICAR, ("SUSP_Just_EICAR",)),
    Sample("www/upload/shell.php", b"<?php @eval($_POST['pass']);?>\n", ("ChinaChopper_Generic",)),
    Sample("www/upload/chopper.aspx",
           b'<%@ Page Language="Jscript"%><%eval(Request.Item["pass"],"unsafe");%>\n', ("ChinaChopper_Generic",)),
    Sample("www/cache/obf.php",
           b"<?php\n$f = 'ev'.'al';\n$g = 'bas'.'e64_decode';\necho 'page';\n?>\n",
           ("webshell_php_by_string_obfuscation",)),
    Sample("tools/Invoke-Stuff.ps1",
           b"function Invoke-Stuff {\n  Write-BytesToMemory -Bytes $Shellcode1 -MemoryAddress $GetCommandLineWAddrTemp\n}\n",
           ("Invoke_Mimikatz",)),
    Sample("admin/asp3.asp",
           b'<%\nif shellpath="" then shellpath = "cmd.exe"\n'
           b'c.open "GET", "http://127.0.0.1:" & port & "/M_Schumacher/upadmin/s3", True\n%>\n',
           ("CN_Honker_Webshell_ASP_asp3",)),
    # Externals: a PE file dressed up as a picture, and an "explorer.exe" without Explorer's strings.
    Sample("pictures/holiday.jpg", pe_stub(), ("SUSP_Known_Type_Cloaked_as_JPG",)),
    Sample("windows/explorer.exe", pe_stub(), ("explorer_ANOMALY",)),
    # Benign: the same kinds of files without the markers.
    Sample("www/index.php", b"<?php echo 'Xin chao'; ?>\n"),
    Sample("docs/readme.txt", b"So Thong tin va Truyen thong - huong dan su dung.\n" * 40),
    Sample("pictures/logo.png", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4),
    Sample("bin/library.dll", pe_stub(dll=True)),
    Sample("data/empty.bin", b""),
)


def write_samples(folder: str | os.PathLike) -> list[Path]:
    root = Path(folder)
    written = []
    for sample in SAMPLES:
        path = root / sample.name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(sample.data)
        written.append(path)
    return written


def write_bulk(folder: str | os.PathLike, total_bytes: int, *, seed: int = 7, file_bytes: int = 2 * 1024 * 1024,
               ) -> list[Path]:
    """Mixed filler for throughput runs: text logs, JSON, HTML/PHP, UTF-16 text and random binary, in files of
    about ``file_bytes``, reproducible from ``seed``; every 25th file carries one of the marker samples inside."""
    rng = random.Random(seed)  # nosec B311 - reproducible filler for benchmarks, not a secret
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    words = ("user", "admin", "login", "failed", "accepted", "session", "GET", "POST", "/index.php", "select",
             "from", "where", "password", "token", "upload", "server", "agency", "so-tttt", "firewall", "allow",
             "deny", "tcp", "udp", "443", "8080", "Mozilla/5.0", "json", "value", "error", "warning")
    kinds = ("log", "json", "html", "utf16", "bin")
    written, n, size = [], 0, 0
    markers = [s for s in SAMPLES if s.written_for and s.name.endswith((".php", ".asp", ".aspx", ".ps1"))]
    while size < total_bytes:
        kind = kinds[n % len(kinds)]
        target = min(file_bytes, total_bytes - size)
        if kind == "bin":
            data = rng.randbytes(target)
        else:
            lines = []
            length = 0
            while length < target:
                text = " ".join(rng.choice(words) for _ in range(rng.randint(6, 16)))
                line = {"log": f"2026-11-22T10:00:{n % 60:02d} host{n % 9} {text}\n",
                        "json": f'{{"n": {length}, "msg": "{text}"}}\n',
                        "html": f"<p class=\"row\">{text}</p>\n",
                        "utf16": f"{text}\r\n"}[kind]
                lines.append(line)
                length += len(line) * (2 if kind == "utf16" else 1)
            body = "".join(lines)
            data = body.encode("utf-16-le") if kind == "utf16" else body.encode()
            data = data[:target]
        if n % 25 == 24 and kind != "bin":
            marker = markers[(n // 25) % len(markers)]
            data = marker.data + data  # at the start: some rules look for the marker near offset 0
            suffix = Path(marker.name).suffix
        else:
            suffix = {"log": ".log", "json": ".json", "html": ".html", "utf16": ".txt", "bin": ".bin"}[kind]
        path = root / f"{n // 100:03d}" / f"f{n:05d}{suffix}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        written.append(path)
        size += len(data)
        n += 1
    return written
