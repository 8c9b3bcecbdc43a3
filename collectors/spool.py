"""The disk spool between the sources and the pipeline: what makes delivery at-least-once from receipt to store.

A source appends each message it accepts; the spool writes it to an append-only segment file before the source
reads further from its socket (TCP, TLS) or answers the sender (HTTP). The pipeline worker reads records in order,
and only after the store has confirmed a batch does it commit the batch's end position; fully committed segments
are deleted. After a crash (even ``kill -9``) the next start replays from the committed position: the events of
a batch that was stored but not yet committed are written again under the same deterministic ``event.id``, so the
store holds each of them once.

Record on disk: ``u32 length | u32 crc32 | payload``; payload = ``f64 received, u16 peer_port, u8 flags``, six u16
string lengths, the strings ``transport, peer, agency, sender_name, format, origin`` and the message bytes. A torn record at
the tail of the last segment (the process died mid-write) is detected by its length or checksum and cut off.

The spool is bounded: ``pending_bytes`` (written and not yet committed) is compared with ``max_bytes`` by the
callers, which slow (TCP, TLS), refuse with a retry signal (HTTP) or count a drop (UDP).
"""

from __future__ import annotations

import fcntl
import logging
import os
import struct
import threading
import time
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Sequence

from collectors.message import RawMessage
from soc import metrics
from soc.files import atomic_write

log = logging.getLogger(__name__)

_RECORD_HEAD = struct.Struct("<II")  # payload length, crc32 of the payload
_PAYLOAD_HEAD = struct.Struct("<dHB6H")  # received, peer_port, flags, six string lengths
_TRUNCATED = 1
SEGMENT_SUFFIX = ".seg"
COMMITTED_FILE = "committed"

SPOOL_BYTES = metrics.Gauge("soc_spool_pending_bytes", "Bytes in the disk spool not yet confirmed by the store")
SPOOL_RECORDS = metrics.Counter("soc_spool_records_total", "Messages written to the disk spool")
SPOOL_TORN = metrics.Counter("soc_spool_torn_records_total",
                             "Partly written records cut off the spool's tail at start (the process died mid-write)")


class SpoolError(Exception):
    """The spool cannot be used (its directory is locked by another process, unwritable, ...)."""


@dataclass(frozen=True, order=True)
class Position:
    segment: int
    offset: int


@lru_cache(maxsize=4096)  # the strings repeat for every message of a connection (bounded: file origins vary)
def _strings(*values: str) -> tuple[tuple[int, ...], bytes]:
    encoded = [s.encode("utf-8", "surrogateescape")[:65535] for s in values]
    return tuple(map(len, encoded)), b"".join(encoded)


def encode(msg: RawMessage) -> bytes:
    lengths, strings = _strings(msg.transport, msg.peer, msg.agency, msg.sender_name, msg.format, msg.origin)
    payload = b"".join((_PAYLOAD_HEAD.pack(msg.received.timestamp(), msg.peer_port & 0xFFFF,
                                           _TRUNCATED if msg.truncated else 0, *lengths), strings, msg.data))
    return _RECORD_HEAD.pack(len(payload), zlib.crc32(payload)) + payload


@lru_cache(maxsize=4096)  # one connection's messages carry the same strings: decoded once
def _decoded_strings(lengths: tuple[int, ...], block: bytes) -> tuple[str, ...]:
    strings, at = [], 0
    for length in lengths:
        strings.append(block[at:at + length].decode("utf-8", "surrogateescape"))
        at += length
    return tuple(strings)


@lru_cache(maxsize=1024)  # the messages of one read share their reception time
def _moment(received: float) -> datetime:
    return datetime.fromtimestamp(received, timezone.utc)


def decode(payload: bytes | memoryview) -> RawMessage:
    received, port, flags, *lengths = _PAYLOAD_HEAD.unpack_from(payload)
    at = _PAYLOAD_HEAD.size
    end = at + sum(lengths)
    transport, peer, agency, sender_name, fmt, origin = _decoded_strings(tuple(lengths), bytes(payload[at:end]))
    return RawMessage(data=bytes(payload[end:]), transport=transport, peer=peer, peer_port=port,
                      received=_moment(received), truncated=bool(flags & _TRUNCATED),
                      agency=agency, sender_name=sender_name, format=fmt, origin=origin)


def _segment_path(directory: Path, number: int) -> Path:
    return directory / f"{number:012d}{SEGMENT_SUFFIX}"


def _valid_end(path: Path, limit: int = -1) -> tuple[int, int]:
    """The end of the last whole record of a segment, or of its first ``limit`` bytes (a torn tail is ignored),
    and the number of records before it."""
    end = count = 0
    with open(path, "rb") as handle:
        data = handle.read(limit)
    while end + _RECORD_HEAD.size <= len(data):
        length, crc = _RECORD_HEAD.unpack_from(data, end)
        stop = end + _RECORD_HEAD.size + length
        if stop > len(data) or zlib.crc32(data[end + _RECORD_HEAD.size:stop]) != crc:
            break
        end = stop
        count += 1
    return end, count


class Spool:
    """One writer (the sources' event loop) and one reader (the pipeline worker) over a directory of segments."""

    def __init__(self, directory: str | Path, *, max_bytes: int = 1 << 30, segment_bytes: int = 64 << 20,
                 buffer_bytes: int = 1 << 20):
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.buffer_bytes = buffer_bytes
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._lock_handle = open(self.directory / "lock", "w")
        except OSError as exc:
            raise SpoolError(f"the spool directory {self.directory} cannot be used: {exc}") from exc
        try:
            fcntl.flock(self._lock_handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            self._lock_handle.close()
            raise SpoolError(f"the spool directory {self.directory} is in use by another collector process") from exc
        self._cond = threading.Condition()
        self._closed = False
        # Segment number -> bytes of whole records written to it (what the reader may read).
        self._sizes: dict[int, int] = {}
        self.committed = self._read_committed()
        self.recovered_records = 0  # records from before this start still to be stored
        self._recover()
        self._records_written = self.recovered_records
        self._records_committed = 0
        self._write_segment = max(self._sizes, default=self.committed.segment) + 1
        self._write_handle = open(_segment_path(self.directory, self._write_segment), "ab", buffering=0)
        self._sizes[self._write_segment] = 0
        self._buffer = bytearray()
        self._buffered_records = 0
        self._read_handle = None
        self._read_segment = -1
        self.read_position = self.committed
        self._update_gauge()

    # --- start-up ---------------------------------------------------------------------------------------------
    def _read_committed(self) -> Position:
        try:
            segment, offset = (self.directory / COMMITTED_FILE).read_text().split()
            return Position(int(segment), int(offset))
        except FileNotFoundError:
            return Position(0, 0)
        except (ValueError, OSError) as exc:
            # Replaying from the oldest segment is safe (idempotent ids); skipping ahead would lose events.
            log.error("the spool's commit mark is unreadable (%s); replaying every segment", exc)
            return Position(0, 0)

    def _recover(self) -> None:
        segments = sorted(int(p.name[:-len(SEGMENT_SUFFIX)]) for p in self.directory.glob("*" + SEGMENT_SUFFIX)
                          if p.name[:-len(SEGMENT_SUFFIX)].isdigit())
        for number in segments:
            path = _segment_path(self.directory, number)
            if number < self.committed.segment:
                path.unlink()  # committed before the crash, not yet deleted
                continue
            size = path.stat().st_size
            if number == self.committed.segment and self.committed.offset:
                # records before the commit mark are done: count only those after it
                _, done_count = _valid_end(path, self.committed.offset)
                self.recovered_records -= done_count
            end, count = _valid_end(path)
            if end < size:
                SPOOL_TORN.inc()
                log.warning("spool segment %s: %d bytes of a partly written record cut off", path.name, size - end)
                with open(path, "r+b") as handle:
                    handle.truncate(end)
            self._sizes[number] = end
            self.recovered_records += count
        pending = sum(self._sizes.values()) - (self.committed.offset if self.committed.segment in self._sizes
                                                else 0)
        if pending:
            log.info("spool %s: %d bytes from before the last stop will be replayed", self.directory, pending)
        if self.committed.segment not in self._sizes:
            # The committed segment was finished and deleted: continue with the next one that exists.
            later = [n for n in self._sizes if n > self.committed.segment]
            self.committed = Position(min(later), 0) if later else Position(self.committed.segment, 0)

    # --- the writer's side (sources) --------------------------------------------------------------------------
    @property
    def pending_bytes(self) -> int:
        with self._cond:
            written = sum(self._sizes.values())
            done = self.committed.offset if self.committed.segment in self._sizes else 0
        return written - done + len(self._buffer)

    def full(self) -> bool:
        return self.pending_bytes >= self.max_bytes

    def depth(self) -> int:
        """Messages accepted and not yet confirmed by the store."""
        return self._records_written - self._records_committed

    def room_for(self, messages: Sequence[RawMessage]) -> int:
        """How many of ``messages``, from the first, go in before the bound: while there is room the next one goes
        in, so the bound is passed by one message at most."""
        room = self.max_bytes - self.pending_bytes
        taken = 0
        for msg in messages:
            if room <= 0:
                break
            lengths, _ = _strings(msg.transport, msg.peer, msg.agency, msg.sender_name, msg.format, msg.origin)
            room -= _RECORD_HEAD.size + _PAYLOAD_HEAD.size + sum(lengths) + len(msg.data)
            taken += 1
        return taken

    def append(self, msg: RawMessage) -> None:
        self.extend((msg,))

    def extend(self, messages: Sequence[RawMessage]) -> None:
        self._buffer += b"".join(map(encode, messages))
        self._buffered_records += len(messages)
        self._records_written += len(messages)
        if len(self._buffer) >= self.buffer_bytes:
            self.flush()

    def flush(self) -> None:
        """Hand the buffered records to the operating system: from here they survive the death of the process."""
        if not self._buffer:
            return
        data = bytes(self._buffer)
        with self._cond:
            self._write_handle.write(data)
            self._sizes[self._write_segment] += len(data)
            if self._sizes[self._write_segment] >= self.segment_bytes:
                self._roll()
            self._cond.notify_all()
        SPOOL_RECORDS.inc(self._buffered_records)
        self._buffer.clear()
        self._buffered_records = 0
        self._update_gauge()

    def sync(self) -> None:
        """fsync what was flushed: the records then also survive a crash of the machine (HTTP answers after this).
        Called from a thread other than the writer's: it syncs a duplicate of the descriptor, outside the lock."""
        with self._cond:
            if self._closed:
                return
            descriptor = os.dup(self._write_handle.fileno())
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)

    def _roll(self) -> None:
        os.fsync(self._write_handle.fileno())
        self._write_handle.close()
        self._write_segment += 1
        self._write_handle = open(_segment_path(self.directory, self._write_segment), "ab", buffering=0)
        self._sizes[self._write_segment] = 0

    # --- the reader's side (the pipeline worker) --------------------------------------------------------------
    def read(self, max_records: int, timeout: float, raw: bool = False) -> list:
        """Up to ``max_records`` messages after the read position, waiting up to ``timeout`` for any to come.
        ``read_position`` is then the position to commit once they are stored. ``raw``: the records' payloads as
        bytes, for ``decode`` elsewhere (a parse worker), instead of messages."""
        messages: list = []
        deadline = time.monotonic() + timeout
        while True:
            self._read_available(messages, max_records, raw)
            if messages or self._closed:
                return messages
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return messages
            with self._cond:
                if not self._has_unread() and not self._closed:
                    self._cond.wait(remaining)

    def _has_unread(self) -> bool:
        position = self.read_position
        if self._sizes.get(position.segment, 0) > position.offset:
            return True
        return any(n > position.segment and size for n, size in self._sizes.items())

    def _read_available(self, out: list, max_records: int, raw: bool = False) -> None:
        while len(out) < max_records:
            with self._cond:
                position = self.read_position
                size = self._sizes.get(position.segment)
                later = [n for n in self._sizes if n > position.segment]
            if size is None or position.offset >= size:
                if later:
                    self.read_position = Position(min(later), 0)  # the segment is finished: go on to the next
                    continue
                return
            if self._read_segment != position.segment:
                if self._read_handle is not None:
                    self._read_handle.close()
                self._read_handle = open(_segment_path(self.directory, position.segment), "rb")
                self._read_segment = position.segment
            self._read_handle.seek(position.offset)
            chunk = self._read_handle.read(min(size - position.offset, 4 << 20))
            view = memoryview(chunk)
            at = 0
            while at + _RECORD_HEAD.size <= len(chunk) and len(out) < max_records:
                length, crc = _RECORD_HEAD.unpack_from(chunk, at)
                stop = at + _RECORD_HEAD.size + length
                if stop > len(chunk):
                    break  # the rest of this record is in the next chunk
                payload = view[at + _RECORD_HEAD.size:stop]
                if zlib.crc32(payload) != crc:
                    # Only the writer of this process wrote here since the start-up check: this is disk damage.
                    raise SpoolError(f"spool segment {position.segment} is damaged at byte {position.offset + at}")
                out.append(bytes(payload) if raw else decode(payload))
                at = stop
            self.read_position = Position(position.segment, position.offset + at)
            if at == 0:
                return

    def commit(self, position: Position, records: int = 0) -> None:
        """The store has confirmed everything before ``position``: remember it and delete finished segments."""
        # Not synced here: the segments are, and a commit mark lost in a crash only replays (ids make it harmless).
        atomic_write(self.directory / COMMITTED_FILE, f"{position.segment} {position.offset}\n", durable=False)
        with self._cond:
            self.committed = position
            self._records_committed += records
            finished = [n for n in self._sizes if n < position.segment]
            for number in finished:
                del self._sizes[number]
        for number in finished:
            try:
                _segment_path(self.directory, number).unlink()
            except FileNotFoundError:
                pass
        self._update_gauge()

    def _update_gauge(self) -> None:
        SPOOL_BYTES.set(self.pending_bytes)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        if self._closed:
            return
        self.flush()
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            os.fsync(self._write_handle.fileno())
            self._write_handle.close()
        if self._read_handle is not None:
            self._read_handle.close()
        self._lock_handle.close()
