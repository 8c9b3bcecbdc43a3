"""The fast decoder: link, IP and transport headers read with ``struct`` straight from the frame bytes.

Full scapy dissection builds a Python object per layer and field, which is what makes a scapy read loop slow.
Here one frame costs a few ``unpack_from`` calls and one slice for the payload; the few payloads that matter
(DNS, a TLS hello, HTTP heads) are decoded later, only for the flows that carry them.

Anything that does not decode (too short, wrong version, a header length that points outside the frame) gives
None: the frame is counted as undecoded and never raises.
"""

from __future__ import annotations

import socket
import struct

from collectors.packets.packet import FIRST_FRAGMENT, ICMP, ICMPV6, LATER_FRAGMENT, TCP, UDP, WHOLE, Packet

# pcap link types (https://www.tcpdump.org/linktypes.html)
DLT_NULL, DLT_EN10MB, DLT_RAW, DLT_LOOP, DLT_LINUX_SLL, DLT_IPV4, DLT_IPV6, DLT_LINUX_SLL2 = 0, 1, 101, 108, 113, 228, \
    229, 276
_RAW_LINKTYPES = (DLT_RAW, 12, 14, DLT_IPV4, DLT_IPV6)
ETH_IPV4, ETH_IPV6 = 0x0800, 0x86DD
_VLAN_TAGS = (0x8100, 0x88A8, 0x9100)
_BSD_AF_INET6 = (24, 28, 30)  # AF_INET6 differs between the BSDs; DLT_NULL carries the capturing host's value
IPV6_EXTENSIONS = (0, 43, 60)  # hop-by-hop, routing, destination options (44, fragment, is handled on its own)

_H = struct.Struct("!H").unpack_from
_HH = struct.Struct("!HH").unpack_from
_TCP = struct.Struct("!HHIIH").unpack_from
_IPV4_FIELDS = struct.Struct("!BxHxxHxB").unpack_from  # version/ihl, total length, fragment word, protocol

_names4: dict[bytes, str] = {}
_names6: dict[bytes, str] = {}


def _ip4(raw: bytes) -> str:
    name = _names4.get(raw)
    if name is None:
        if len(_names4) > 100_000:  # a scan of a /8 must not grow the cache forever
            _names4.clear()
        name = _names4[raw] = socket.inet_ntop(socket.AF_INET, raw)
    return name


def _ip6(raw: bytes) -> str:
    name = _names6.get(raw)
    if name is None:
        if len(_names6) > 100_000:
            _names6.clear()
        name = _names6[raw] = socket.inet_ntop(socket.AF_INET6, raw)
    return name


def network_offset(linktype: int, frame: bytes) -> tuple[int, int] | None:
    """(ethertype, offset of the IP header) for the link types captures use, or None for anything else."""
    if linktype == DLT_EN10MB:
        if len(frame) < 14:
            return None
        ethertype = _H(frame, 12)[0]
        offset = 14
        while ethertype in _VLAN_TAGS:
            if len(frame) < offset + 4:
                return None
            ethertype = _H(frame, offset + 2)[0]
            offset += 4
        return ethertype, offset
    if linktype in _RAW_LINKTYPES:
        if not frame:
            return None
        version = frame[0] >> 4
        return (ETH_IPV4 if version == 4 else ETH_IPV6 if version == 6 else 0), 0
    if linktype == DLT_LINUX_SLL:
        return (_H(frame, 14)[0], 16) if len(frame) >= 16 else None
    if linktype == DLT_LINUX_SLL2:
        return (_H(frame, 0)[0], 20) if len(frame) >= 20 else None
    if linktype in (DLT_NULL, DLT_LOOP):
        if len(frame) < 4:
            return None
        family = int.from_bytes(frame[:4], "big" if linktype == DLT_LOOP else "little")
        if family > 0xFFFF:  # written by a host of the other byte order
            family = int.from_bytes(frame[:4], "big")
        if family == 2:
            return ETH_IPV4, 4
        if family in _BSD_AF_INET6:
            return ETH_IPV6, 4
        return None
    return None


def decode(linktype: int, frame: bytes, ts: int) -> Packet | None:
    """One captured frame to a Packet, or None if it is not IP or its headers do not hold together."""
    link = network_offset(linktype, frame)
    if link is None:
        return None
    ethertype, off = link
    if ethertype == ETH_IPV4:
        return _ipv4(frame, off, ts)
    if ethertype == ETH_IPV6:
        return _ipv6(frame, off, ts)
    return None


def _ipv4(frame: bytes, off: int, ts: int) -> Packet | None:
    if len(frame) < off + 20:
        return None
    vihl, total, frag, proto = _IPV4_FIELDS(frame, off)
    ihl = (vihl & 0x0F) * 4
    if vihl >> 4 != 4 or ihl < 20 or total < ihl:
        return None
    src = _ip4(frame[off + 12:off + 16])
    dst = _ip4(frame[off + 16:off + 20])
    end = off + total
    if end > len(frame):
        end = len(frame)  # cut by the snap length: keep what was captured
    if frag & 0x1FFF:  # a later fragment: no transport header in it
        return Packet(ts, 4, src, dst, proto, 0, 0, total, fragment=LATER_FRAGMENT)
    return _transport(frame, off + ihl, end, ts, 4, src, dst, proto, total,
                      FIRST_FRAGMENT if frag & 0x2000 else WHOLE)


def _ipv6(frame: bytes, off: int, ts: int) -> Packet | None:
    if len(frame) < off + 40 or frame[off] >> 4 != 6:
        return None
    payload_length = _H(frame, off + 4)[0]
    proto = frame[off + 6]
    src = _ip6(frame[off + 8:off + 24])
    dst = _ip6(frame[off + 24:off + 40])
    total = 40 + payload_length
    end = off + total
    if end > len(frame):
        end = len(frame)
    pos = off + 40
    fragment = WHOLE
    while proto in IPV6_EXTENSIONS or proto == 44:
        if proto == 44:
            if pos + 8 > end:
                return None
            word = _H(frame, pos + 2)[0]
            proto = frame[pos]
            pos += 8
            if word >> 3:  # a later fragment
                return Packet(ts, 6, src, dst, proto, 0, 0, total, fragment=LATER_FRAGMENT)
            fragment = FIRST_FRAGMENT if word & 1 else WHOLE
        else:
            if pos + 2 > end:
                return None
            proto, pos = frame[pos], pos + (frame[pos + 1] + 1) * 8
            if pos > end:
                return None
    return _transport(frame, pos, end, ts, 6, src, dst, proto, total, fragment)


def _transport(frame: bytes, pos: int, end: int, ts: int, version: int, src: str, dst: str, proto: int,
               length: int, fragment: int) -> Packet | None:
    if proto == TCP:
        if pos + 20 > end:
            return None
        sport, dport, seq, _ack, word = _TCP(frame, pos)
        data_offset = (word >> 12) * 4
        if data_offset < 20:
            return None
        start = pos + data_offset
        payload = frame[start:end] if start < end else b""
        return Packet(ts, version, src, dst, TCP, sport, dport, length, word & 0xFF, seq, payload, fragment)
    if proto == UDP:
        if pos + 8 > end:
            return None
        sport, dport = _HH(frame, pos)
        udp_length = _H(frame, pos + 4)[0]
        stop = pos + udp_length if 8 <= udp_length and pos + udp_length < end else end
        return Packet(ts, version, src, dst, UDP, sport, dport, length, 0, 0, frame[pos + 8:stop], fragment)
    if proto == ICMP or proto == ICMPV6:
        if pos + 2 > end:
            return None
        return Packet(ts, version, src, dst, proto, frame[pos], frame[pos + 1], length, 0, 0, b"", fragment)
    return Packet(ts, version, src, dst, proto, 0, 0, length, 0, 0, b"", fragment)
