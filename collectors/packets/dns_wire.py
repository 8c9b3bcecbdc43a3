"""A struct reader for the common DNS message, the fast path in front of scapy's DNS layer.

It reads the header, the questions and the answer section of well-formed messages whose answers are of the
everyday types, producing exactly what ``dns.message_from_scapy`` produces from scapy's dissection. Anything
unusual (a cut message, a compression loop, DNSSEC and other record types scapy has classes for, values scapy
reads as signed) raises Unusual, and the caller hands the message to scapy instead: scapy stays the authority for
the odd cases, this only saves its cost on the ordinary ones.
"""

from __future__ import annotations

import socket
import struct

_HEADER = struct.Struct("!HHH").unpack_from  # id, flags, qdcount (ancount read separately)
_H = struct.Struct("!H").unpack_from
_RR = struct.Struct("!HHIH").unpack_from  # type, class, ttl, rdlength
_SCAPY_CLASSES = {3, 4, 13, 35, 41, 43, 46, 47, 48, 50, 51, 64, 65, 250, 32769}  # scapy has its own class for these
_NAME_TYPES = (2, 5, 12, 39)
_SIGNED = 0x80000000  # scapy reads TTL and SOA numbers as signed 32-bit


class Unusual(Exception):
    """This message is for scapy."""


def _name(data: bytes, pos: int, limit: int) -> tuple[bytes, int]:
    """(name with trailing dot, position after it); labels before the first pointer must end before limit."""
    labels = []
    after = None
    hops = 0
    while True:
        if pos >= limit:
            raise Unusual
        length = data[pos]
        if length == 0:
            pos += 1
            break
        if length & 0xC0:
            if length & 0xC0 != 0xC0 or pos + 1 >= limit:
                raise Unusual
            target = ((length & 0x3F) << 8) | data[pos + 1]
            if after is None:
                after = pos + 2
            hops += 1
            if hops > 16 or target >= len(data):
                raise Unusual
            pos, limit = target, len(data)
            continue
        end = pos + 1 + length
        if end > limit:
            raise Unusual
        labels.append(data[pos + 1:end])
        pos = end
    return (b".".join(labels) + b".") if labels else b".", (after if after is not None else pos)


def _text(value: bytes) -> str:
    value = value.decode("utf-8", "backslashreplace")
    return value[:-1] if value.endswith(".") and value != "." else value


def _rdata(data: bytes, rtype: int, start: int, end: int) -> str:
    if rtype == 1:
        if end - start != 4:
            raise Unusual
        return socket.inet_ntop(socket.AF_INET, data[start:end])
    if rtype == 28:
        if end - start != 16:
            raise Unusual
        return socket.inet_ntop(socket.AF_INET6, data[start:end])
    if rtype in _NAME_TYPES:
        return _text(_name(data, start, end)[0])
    if rtype == 16:
        parts, pos = [], start
        while pos < end:
            stop = pos + 1 + data[pos]
            if stop > end:
                raise Unusual
            parts.append(data[pos + 1:stop].decode("utf-8", "backslashreplace"))
            pos = stop
        return " ".join(parts)
    if rtype == 6:
        mname, pos = _name(data, start, end)
        rname, pos = _name(data, pos, end)
        if pos + 20 > end:
            raise Unusual
        numbers = struct.unpack_from("!IIIII", data, pos)
        if any(n >= _SIGNED for n in numbers):
            raise Unusual
        return f"{_text(mname)} {_text(rname)} " + " ".join(str(n) for n in numbers)
    if rtype == 15:
        if start + 2 > end:
            raise Unusual
        return f"{_H(data, start)[0]} {_text(_name(data, start + 2, end)[0])}"
    if rtype == 33:
        if start + 6 > end:
            raise Unusual
        priority, weight, port = struct.unpack_from("!HHH", data, start)
        return f"{priority} {weight} {port} {_text(_name(data, start + 6, end)[0])}"
    return data[start:end].hex()


def parse(data: bytes) -> dict:
    """The message as ``dns.message_from_scapy`` would give it; raises Unusual for anything else."""
    if len(data) < 12:
        raise Unusual
    ident, flags, qdcount = _HEADER(data, 0)
    ancount = _H(data, 6)[0]
    size = len(data)
    pos = 12
    questions = []
    for _ in range(qdcount):
        qname, pos = _name(data, pos, size)
        if pos + 4 > size:
            raise Unusual
        qtype, qclass = struct.unpack_from("!HH", data, pos)
        pos += 4
        questions.append((_text(qname), qtype, qclass & 0x7FFF))
    answers = []
    for _ in range(ancount):
        rname, pos = _name(data, pos, size)
        if pos + 10 > size:
            raise Unusual
        rtype, rclass, ttl, rdlength = _RR(data, pos)
        start = pos + 10
        pos = start + rdlength
        if pos > size or ttl >= _SIGNED or rtype in _SCAPY_CLASSES:
            raise Unusual
        answers.append((_text(rname), rtype, rclass if rtype == 6 else rclass & 0x7FFF, ttl,
                        _rdata(data, rtype, start, pos)))
    return {"id": ident, "qr": flags >> 15, "opcode": (flags >> 11) & 0xF, "rcode": flags & 0xF,
            "flags": [flag for flag, bit in (("AA", 10), ("TC", 9), ("RD", 8), ("RA", 7), ("AD", 5), ("CD", 4))
                      if flags >> bit & 1],
            "questions": questions, "answers": answers}
