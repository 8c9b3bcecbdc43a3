"""Syslog sources: UDP (one message per datagram) and TCP with newline framing or octet counting (RFC 6587); TLS
(RFC 5425) is in syslog_tls.py and frames the same way.

Sources only receive and frame; they hand the messages as raw bytes to ``deliver`` (a stream's, those of each
read together). A line longer than the limit is
not allowed to grow memory without bound: its first ``keep_bytes`` are kept (for the dead letter), the rest is read
and discarded up to the newline, and the message is marked truncated. ``keep_bytes`` is at least ``max_line``, so
an oversized line shows by its length. A sender is never disconnected for bad data.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone
from typing import Awaitable, Callable

from collectors.message import RawMessage
from soc import metrics

log = logging.getLogger(__name__)

Deliver = Callable[[list[RawMessage]], Awaitable[None]]  # the messages framed from one read of a stream
DeliverNowait = Callable[[RawMessage], bool]  # False when the queue is full (the message is counted as dropped)

READ_CHUNK = 256 * 1024


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, deliver_nowait: DeliverNowait):
        self.deliver_nowait = deliver_nowait

    def datagram_received(self, data: bytes, addr) -> None:  # type: ignore[override]
        metrics.EVENTS_RECEIVED.labels(transport="udp").inc()
        self.deliver_nowait(RawMessage(data=data, transport="udp", peer=addr[0], peer_port=addr[1]))

    def error_received(self, exc: Exception) -> None:
        log.warning("syslog UDP socket error: %s", exc)


async def start_udp(host: str, port: int, deliver_nowait: DeliverNowait) -> asyncio.DatagramTransport:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: _UdpProtocol(deliver_nowait), local_addr=(host, port))
    return transport  # type: ignore[return-value]


async def _read_lines(reader: asyncio.StreamReader, peer: tuple, deliver: Deliver, keep_bytes: int, *,
                      transport: str = "tcp", sender_name: str = "",
                      after_chunk: Callable[[], None] | None = None) -> None:
    """Frame a TCP stream: RFC 6587 octet counting ("LEN SP MSG") when a frame starts with a digit, else a line.

    Both framings may be mixed on one connection: a syslog message starts with "<", never with a digit, so the first
    byte of each frame tells them apart (as rsyslog's imtcp does).
    TLS streams (RFC 5425: octet counting) are framed here too, once decrypted.
    The messages framed from one read are delivered together, then ``after_chunk`` runs, then the next read.
    """
    received_counter = metrics.EVENTS_RECEIVED.labels(transport=transport)
    out: list[RawMessage] = []
    received = datetime.now(timezone.utc)

    def emit(data: bytes, cut: bool) -> None:
        if data.endswith(b"\r"):
            data = data[:-1]
        if data:  # blank keep-alive lines are not messages
            # An oversized line shows by its length (> max_line); the pipeline dead-letters it with the reason.
            out.append(RawMessage(data=data, transport=transport, peer=peer[0], peer_port=peer[1], truncated=cut,
                                  sender_name=sender_name, received=received))

    buffer = bytearray()
    cut = False  # bytes of the current line beyond keep_bytes were dropped
    pending = b""  # bytes read but not yet framed
    while True:
        if out:
            received_counter.inc(len(out))
            await deliver(out)
            out = []
        if after_chunk is not None:
            after_chunk()  # what was framed so far is in the spool before more is read (at-least-once)
        chunk = await reader.read(READ_CHUNK)
        if not chunk:
            break
        received = datetime.now(timezone.utc)  # one reading time for the messages of one read
        data = pending + chunk
        pending = b""
        start = 0
        size = len(data)
        while start < size:
            first = data[start]
            if not buffer and 48 <= first <= 57:  # a digit: an octet-counted frame
                space = data.find(b" ", start, start + 12)
                if space < 0:
                    if size - start < 12:
                        pending = data[start:]  # the length is split across reads
                        break
                    space = start  # not a length after all: fall through to line framing
                else:
                    length_text = data[start:space]
                    if length_text.isdigit() and 0 < int(length_text) <= keep_bytes:
                        length = int(length_text)
                        end = space + 1 + length
                        if end > size:
                            more = await reader.readexactly(end - size) if not reader.at_eof() else b""
                            data += more
                            size = len(data)
                            if end > size:  # the sender closed inside the frame: keep what came
                                emit(data[space + 1:], True)
                                start = size
                                break
                        emit(data[space + 1:end], False)
                        start = end
                        continue
            newline = data.find(b"\n", start)
            if not buffer and 0 <= newline - start <= keep_bytes:  # a whole line in this read: the common case
                emit(data[start:newline], False)
                start = newline + 1
                continue
            piece = data[start:] if newline < 0 else data[start:newline]
            if len(buffer) + len(piece) > keep_bytes:
                piece = piece[: max(keep_bytes - len(buffer), 0)]
                cut = True
            buffer += piece
            if newline < 0:
                break
            emit(bytes(buffer), cut)
            buffer, cut = bytearray(), False
            start = newline + 1
    if pending:
        buffer += pending
    if buffer:  # the sender closed without a final newline: still a message
        emit(bytes(buffer), cut)
    if out:
        received_counter.inc(len(out))
        await deliver(out)
    if after_chunk is not None:
        after_chunk()


async def serve_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: tuple,
                           deliver: Deliver, keep_bytes: int, *, transport: str = "tcp", sender_name: str = "",
                           after_chunk: Callable[[], None] | None = None,
                           ends: tuple[type[BaseException], ...] = ()) -> None:
    """Read one stream connection (TCP or TLS) to its end; a sender going away ends it quietly, never the listener."""
    try:
        await _read_lines(reader, peer, deliver, keep_bytes, transport=transport, sender_name=sender_name,
                          after_chunk=after_chunk)
    except (ConnectionError, asyncio.IncompleteReadError, *ends) as exc:
        log.info("syslog %s connection from %s ended: %s", transport.upper(), peer[0], exc)
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (ConnectionError, OSError):
            pass


async def start_tcp(host: str, port: int, deliver: Deliver, *, keep_bytes: int,
                    after_chunk: Callable[[], None] | None = None) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername") or ("", 0)
        await serve_connection(reader, writer, peer, deliver, keep_bytes, after_chunk=after_chunk)

    return await asyncio.start_server(handle, host, port, limit=READ_CHUNK)
