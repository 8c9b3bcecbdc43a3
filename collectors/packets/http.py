"""HTTP/1.x over a reassembled TCP stream: request and response heads, bodies (Content-Length, chunked, until
close; gzip/deflate decoded) and ECS ``http.*``/``url.*``/``user_agent.*``.

A ``MessageStream`` reads one direction of a connection as a sequence of messages; the session (``session.py``)
pairs requests with responses and turns each exchange into one record.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, field
from typing import Callable

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 32 * 1024 * 1024  # bodies are kept for YARA up to this size; the rest is counted, not kept
_METHOD = re.compile(rb"[A-Z][A-Z_-]{1,19} ")
_SPACES = re.compile(rb"\s+")
_KNOWN_METHODS = {b"GET", b"POST", b"HEAD", b"PUT", b"DELETE", b"OPTIONS", b"CONNECT", b"TRACE", b"PATCH",
                  b"PROPFIND", b"PROPPATCH", b"MKCOL", b"COPY", b"MOVE", b"LOCK", b"UNLOCK", b"SEARCH", b"REPORT"}


def looks_like_request(data: bytes) -> bool:
    """The start of a client stream is an HTTP/1.x request line: a method token and a space, and the line ends in
    an HTTP version (or, not complete yet, starts with a well-known method). "USER anonymous" is not HTTP."""
    match = _METHOD.match(data)
    if match is None:
        return False
    line_end = data.find(b"\n")
    if line_end >= 0:
        return data[:line_end].rstrip(b"\r").rsplit(b" ", 1)[-1].startswith(b"HTTP/")
    return match.group(0)[:-1] in _KNOWN_METHODS


@dataclass
class Head:
    """A request or response head. Header names are lower case with '-' as '_' (so both decoders agree)."""
    first: tuple[str, ...]  # (method, target, version) or (version, status, reason)
    headers: dict[str, str]

    def header(self, key: str) -> str | None:
        return self.headers.get(key)


def _text(value: bytes) -> str:
    return value.decode("utf-8", "backslashreplace")


def parse_head(head: bytes) -> Head | None:
    """A message head up to and including its empty line, or None if its first line is not HTTP."""
    first_line, _, rest = head.partition(b"\r\n")
    parts = _SPACES.split(first_line.strip(), maxsplit=2)
    if len(parts) < 2:
        return None
    headers: dict[str, str] = {}
    for line in rest.split(b"\r\n"):
        key, colon, value = line.partition(b":")
        if colon:
            headers[_text(key.strip()).replace("-", "_").lower()] = _text(value.strip())
    first = tuple(_text(p) for p in parts)
    if first[0].startswith("HTTP/"):  # a status line: version, code[, reason]
        return Head(first if len(first) == 3 else first + ("",), headers)
    if len(first) != 3 or not first[2].startswith("HTTP/"):
        return None
    return Head(first, headers)


@dataclass
class Body:
    data: bytearray = field(default_factory=bytearray)
    length: int = 0  # bytes of the message body (after de-chunking)
    complete: bool = False
    truncated: bool = False  # longer than MAX_BODY_BYTES: only the start is kept

    def add(self, chunk: bytes) -> None:
        self.length += len(chunk)
        room = MAX_BODY_BYTES - len(self.data)
        if room >= len(chunk):
            self.data += chunk
        else:
            self.data += chunk[:max(room, 0)]
            self.truncated = True


# framing of a body, decided by the session from the head
NO_BODY, LENGTH, CHUNKED, UNTIL_CLOSE = "none", "length", "chunked", "close"
_HEAD, _BODY, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILER, _LOST = range(7)


class MessageStream:
    """One direction of an HTTP connection. ``on_head(head_bytes)`` returns (framing, length) for the body that
    follows; ``on_done(body)`` is called when the message is complete. After a gap or garbage the stream stops
    (``lost``): nothing after it can be framed reliably."""

    def __init__(self, on_head: Callable[[bytes], tuple[str, int]], on_done: Callable[[Body | None], None]) -> None:
        self.on_head = on_head
        self.on_done = on_done
        self.buf = bytearray()
        self.state = _HEAD
        self.remaining = 0
        self.body: Body | None = None

    @property
    def lost(self) -> bool:
        return self.state == _LOST

    def feed(self, data: bytes) -> None:
        if self.state == _LOST:
            return
        self.buf += data
        while self.buf and self.state != _LOST:
            if not self._step():
                break

    def _step(self) -> bool:
        buf = self.buf
        if self.state == _HEAD:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD_BYTES:
                    self.state = _LOST
                return False
            head = bytes(buf[:end + 4])
            del buf[:end + 4]
            framing, length = self.on_head(head)
            if framing == NO_BODY or (framing == LENGTH and length == 0):
                self.on_done(Body(complete=True) if framing == LENGTH else None)
            elif framing == LENGTH:
                self.body, self.remaining, self.state = Body(), length, _BODY
            elif framing == CHUNKED:
                self.body, self.state = Body(), _CHUNK_SIZE
            elif framing == UNTIL_CLOSE:
                self.body, self.remaining, self.state = Body(), -1, _BODY
            else:
                self.state = _LOST
            return True
        if self.state == _BODY:
            if self.remaining < 0:  # until the connection closes
                self.body.add(bytes(buf))
                buf.clear()
                return False
            take = min(self.remaining, len(buf))
            self.body.add(bytes(buf[:take]))
            del buf[:take]
            self.remaining -= take
            if self.remaining == 0:
                self._finish_body()
            return True
        if self.state == _CHUNK_SIZE:
            end = buf.find(b"\r\n")
            if end < 0:
                if len(buf) > 1024:
                    self.state = _LOST
                return False
            size_text = bytes(buf[:end]).split(b";", 1)[0].strip()
            del buf[:end + 2]
            try:
                self.remaining = int(size_text, 16)
            except ValueError:
                self.state = _LOST
                return False
            self.state = _CHUNK_DATA if self.remaining else _TRAILER
            return True
        if self.state == _CHUNK_DATA:
            take = min(self.remaining, len(buf))
            self.body.add(bytes(buf[:take]))
            del buf[:take]
            self.remaining -= take
            if self.remaining == 0:
                self.state = _CHUNK_END
            return True
        if self.state == _CHUNK_END:
            if len(buf) < 2:
                return False
            del buf[:2]
            self.state = _CHUNK_SIZE
            return True
        if self.state == _TRAILER:
            end = buf.find(b"\r\n")
            if end < 0:
                return False
            del buf[:end + 2]
            if end == 0:  # the empty line after the trailers
                self._finish_body()
            return True
        return False

    def _finish_body(self) -> None:
        body, self.body = self.body, None
        body.complete = True
        self.state = _HEAD
        self.on_done(body)

    def stop(self) -> None:
        self.state = _LOST
        self.buf.clear()

    def gap(self) -> None:
        """Bytes of this direction were never captured: the message in progress ends incomplete."""
        if self.body is not None:
            body, self.body = self.body, None
            self.on_done(body)
        self.state = _LOST

    def close(self) -> None:
        """The connection ended: a body read until close is complete; anything else in progress is not."""
        if self.body is not None:
            body, self.body = self.body, None
            body.complete = self.remaining < 0
            self.on_done(body)
        self.state = _LOST


def decode_content(data: bytes, encoding: str | None) -> tuple[bytes, str | None]:
    """Undo Content-Encoding (gzip, deflate); (data, error) — on error the data is returned as it came."""
    encoding = (encoding or "").strip().lower()
    if encoding in ("gzip", "x-gzip"):
        wbits = 16 + zlib.MAX_WBITS
    elif encoding == "deflate":
        wbits = zlib.MAX_WBITS if data[:1] == b"\x78" else -zlib.MAX_WBITS  # zlib-wrapped or raw, both are seen
    else:
        return data, None if encoding in ("", "identity") else f"content encoding {encoding!r} is not decoded"
    try:
        decoder = zlib.decompressobj(wbits)
        out = decoder.decompress(data, MAX_BODY_BYTES)  # bounded: a decompression bomb is cut, not followed
    except zlib.error as exc:
        return data, f"cannot decode {encoding}: {exc}"
    if decoder.unconsumed_tail:
        return out, f"decoded body longer than {MAX_BODY_BYTES} bytes: cut there"
    return out, None if decoder.eof else "compressed body is incomplete"


def split_target(target: str) -> tuple[str | None, str, str | None]:
    """(host from an absolute-form target or None, path, query) of a request target."""
    host = None
    if "://" in target[:10]:
        rest = target.split("://", 1)[1]
        host, slash, rest = rest.partition("/")
        target = slash + rest
    path, question, query = target.partition("?")
    return host, path, (query if question else None)


def split_host(host: str) -> tuple[str, int | None]:
    if host.startswith("["):  # [v6]:port
        inside, _, rest = host[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
        return inside, _port(port)
    name, colon, port = host.rpartition(":")
    if colon and name and _port(port) is not None:
        return name, _port(port)
    return host, None


def _port(text: str) -> int | None:
    return int(text) if text.isdigit() and 0 < int(text) < 65536 else None
