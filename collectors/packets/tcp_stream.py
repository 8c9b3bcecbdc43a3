"""In-order reassembly of one direction of a TCP connection, by sequence number.

Retransmitted bytes are dropped (the first copy wins), segments that arrive early wait until the hole before them
is filled, and a hole that is never filled (a packet the capture missed) is skipped when too much waits behind it
or when the connection ends; the consumer is told of the gap so it can stop trusting its framing.
"""

from __future__ import annotations

from typing import Callable

_MASK = 0xFFFFFFFF
_HALF = 0x80000000
MAX_PENDING_BYTES = 4 * 1024 * 1024
MAX_PENDING_SEGMENTS = 2048


class StreamReassembler:
    __slots__ = ("next_seq", "pending", "pending_bytes", "deliver", "on_gap", "gaps")

    def __init__(self, deliver: Callable[[bytes], None], on_gap: Callable[[int], None]) -> None:
        self.next_seq: int | None = None  # sequence number of the next byte owed to the consumer
        self.pending: dict[int, bytes] = {}
        self.pending_bytes = 0
        self.deliver = deliver
        self.on_gap = on_gap
        self.gaps = 0

    def syn(self, seq: int) -> None:
        if self.next_seq is None:
            self.next_seq = (seq + 1) & _MASK

    def segment(self, seq: int, data: bytes) -> None:
        if self.next_seq is None:  # joined mid-connection: start at the first data seen
            self.next_seq = seq
        offset = (seq - self.next_seq) & _MASK
        if offset >= _HALF:  # starts before what was delivered: a retransmission, maybe with new bytes at its end
            old = (self.next_seq - seq) & _MASK
            if old >= len(data):
                return
            data = data[old:]
            offset = 0
        if offset:
            kept = self.pending.get(seq)
            if kept is None or len(kept) < len(data):
                self.pending_bytes += len(data) - (len(kept) if kept else 0)
                self.pending[seq] = data
            if self.pending_bytes > MAX_PENDING_BYTES or len(self.pending) > MAX_PENDING_SEGMENTS:
                self._skip_gap()
            return
        self.next_seq = (self.next_seq + len(data)) & _MASK
        self.deliver(data)
        if self.pending:
            self._drain()

    def _drain(self) -> None:
        progress = True
        while self.pending and progress:
            progress = False
            for seq in list(self.pending):
                offset = (seq - self.next_seq) & _MASK
                if offset and offset < _HALF:
                    continue
                data = self.pending.pop(seq)
                self.pending_bytes -= len(data)
                if offset:  # overlaps what was delivered
                    old = (self.next_seq - seq) & _MASK
                    if old >= len(data):
                        continue
                    data = data[old:]
                self.next_seq = (self.next_seq + len(data)) & _MASK
                self.deliver(data)
                progress = True

    def _skip_gap(self) -> None:
        nearest = min(self.pending, key=lambda s: (s - self.next_seq) & _MASK)
        missing = (nearest - self.next_seq) & _MASK
        self.gaps += 1
        self.on_gap(missing)
        self.next_seq = nearest
        self._drain()

    def flush(self) -> None:
        """The connection is over: deliver what waits behind holes, telling the consumer about each hole."""
        while self.pending:
            self._skip_gap()
