"""Reading capture files with scapy's raw readers (pcap and pcapng, plain or gzip), with damage made visible.

scapy's raw readers end quietly at the first thing they cannot read (a cut record, a bad block length). For an
investigation that is not good enough: a capture that stops early must say so. ``read_frames`` yields every frame
before the damage and then raises PcapReadError with the offset and the reason.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from scapy.error import Scapy_Exception
from scapy.utils import RawPcapNgReader, RawPcapReader

MAX_FRAME = 262_144  # the largest snap length tools write; scapy's default read size (65,535) would cut jumbo frames


class PcapReadError(Exception):
    """A capture file that cannot be read to its end. ``frames`` frames were read before the damage."""

    def __init__(self, path: str | os.PathLike, reason: str, frames: int = 0, offset: int | None = None) -> None:
        self.path = str(path)
        self.reason = reason
        self.frames = frames
        self.offset = offset
        where = f" at byte {offset}" if offset is not None else ""
        super().__init__(f"{self.path}: {reason}{where} (after {frames} packets)")


@dataclass(frozen=True)
class Frame:
    ts: int  # nanoseconds since the epoch
    linktype: int
    data: bytes
    wirelen: int


class FrameReader:
    """Iterates (ts_ns, linktype, bytes) over one capture; ``position`` is how far into the file it has read."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.frames = 0
        try:
            self.size = self.path.stat().st_size
        except OSError as exc:
            raise PcapReadError(path, f"cannot open: {exc.strerror or exc}") from exc
        try:
            self._reader = RawPcapReader(str(self.path))  # scapy picks the pcapng reader from the magic number
        except (OSError, Scapy_Exception, EOFError, ValueError) as exc:
            raise PcapReadError(path, f"not a readable pcap or pcapng capture: {exc}") from exc
        self._ng = isinstance(self._reader, RawPcapNgReader)
        self._file = self._reader.f
        # A gzip stream's position is in uncompressed bytes, so the end-of-file check only applies to plain files.
        self._plain = hasattr(self._file, "fileno") and not hasattr(self._file, "fileobj")
        self.linktype = getattr(self._reader, "linktype", None)
        self._nano = getattr(self._reader, "nano", False)
        self._last_ts = 0

    def position(self) -> int:
        try:
            pos = self._file.tell()
        except (OSError, ValueError):
            return 0
        return min(pos, self.size) if self._plain else 0

    def close(self) -> None:
        try:
            self._reader.close()
        except (OSError, AttributeError):
            pass

    def __enter__(self) -> "FrameReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __iter__(self) -> Iterator[tuple[int, int, bytes]]:
        read = self._reader._read_packet  # the raw readers' per-record call; iterating would cut frames at 65,535
        offset = 24  # pcap: where the next record starts (kept by arithmetic: a tell() per frame costs time)
        while True:
            start = self.position() if self._ng else offset
            try:
                data, meta = read(MAX_FRAME)
            except EOFError:
                self._check_end(start)
                return
            except (OSError, ValueError, Scapy_Exception) as exc:
                raise PcapReadError(self.path, f"unreadable record: {exc}", self.frames, start) from exc
            if self._ng:
                if meta.tshigh is None:  # simple packet block: no time stamp of its own
                    ts = self._last_ts
                else:
                    ticks = (meta.tshigh << 32) | meta.tslow
                    ts = ticks * 1_000_000_000 // meta.tsresol if meta.tsresol else 0
                linktype = meta.linktype
            else:
                if meta.caplen > MAX_FRAME and meta.caplen > self._reader.snaplen:
                    raise PcapReadError(self.path, f"corrupt record header (captured length {meta.caplen} is larger "
                                        f"than the snap length {self._reader.snaplen})", self.frames, start)
                if len(data) < min(meta.caplen, MAX_FRAME):
                    raise PcapReadError(self.path, f"truncated record ({len(data)} of {meta.caplen} bytes)",
                                        self.frames, start)
                ts = meta.sec * 1_000_000_000 + (meta.usec if self._nano else meta.usec * 1000)
                linktype = self.linktype
                offset += 16 + meta.caplen
            self._last_ts = ts
            self.frames += 1
            yield ts, linktype, data

    def _check_end(self, start: int) -> None:
        if not self._plain:
            return
        end = self.position()
        if end != start or start < self.size:
            raise PcapReadError(self.path, f"damaged or truncated {'block' if self._ng else 'record'}: "
                                f"{self.size - start} bytes left unread", self.frames, start)


def read_frames(path: str | os.PathLike) -> Iterator[tuple[int, int, bytes]]:
    with FrameReader(path) as reader:
        yield from reader
