"""The decoded packet every later stage works on: addresses, ports, TCP state and the transport payload.

Both decoders produce it: the fast one (``headers.py``, struct over the raw frame) and the scapy reference
(``naive.py``, full scapy dissection). Everything after decoding (flows, reassembly, DNS/HTTP/TLS) sees only this,
which is what lets the two be compared record for record.
"""

from __future__ import annotations

TCP, UDP, ICMP, ICMPV6 = 6, 17, 1, 58
TRANSPORT_NAMES = {TCP: "tcp", UDP: "udp", ICMP: "icmp", ICMPV6: "ipv6-icmp", 132: "sctp", 47: "gre", 50: "esp"}

# Packet.fragment
WHOLE, FIRST_FRAGMENT, LATER_FRAGMENT = 0, 1, 2

# TCP flag bits
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10


class Packet:
    """One IP packet. ``sport``/``dport`` are the ports (TCP/UDP) or the ICMP type/code; 0 when the protocol has
    neither. ``fragment`` says whether this is an IP fragment: a first fragment counts towards its flow but its payload
    is incomplete, so no application decoder sees it; a later fragment has no transport header at all."""

    __slots__ = ("ts", "ip_version", "src", "dst", "proto", "sport", "dport", "length", "flags", "seq", "payload",
                 "fragment", "layer")

    def __init__(self, ts: int, ip_version: int, src: str, dst: str, proto: int, sport: int, dport: int,
                 length: int, flags: int = 0, seq: int = 0, payload: bytes = b"", fragment: int = WHOLE,
                 layer: object = None) -> None:
        self.ts = ts  # nanoseconds since the epoch
        self.ip_version = ip_version
        self.src = src
        self.dst = dst
        self.proto = proto
        self.sport = sport
        self.dport = dport
        self.length = length  # IP packet length from its header (what the flow counts as bytes)
        self.flags = flags
        self.seq = seq
        self.payload = payload
        self.fragment = fragment
        self.layer = layer  # the scapy application layer the reference decoder found (DNS), else None

    def key(self) -> tuple:
        return (self.ip_version, self.src, self.dst, self.proto, self.sport, self.dport)

    def __repr__(self) -> str:
        return (f"Packet({self.src}:{self.sport} > {self.dst}:{self.dport} proto={self.proto} len={self.length} "
                f"flags={self.flags:#x} seq={self.seq} payload={len(self.payload)}B{' frag' if self.fragment else ''})")
