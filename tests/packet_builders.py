"""Builders for synthetic captures used by the packet tests: TCP conversations with exact sequence numbers, so a
test can reorder, duplicate or drop segments and know what the extractor must make of them."""

from __future__ import annotations

from decimal import Decimal

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.utils import PcapNgWriter, PcapWriter


# Fixed MAC addresses: a bare Ether() makes scapy look the destination up with ARP, which would send packets.
MACS = dict(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")


class Conversation:
    """A TCP connection between a client and a server; ``data()`` returns the segments of one send."""

    def __init__(self, client=("10.20.0.5", 40123), server=("10.20.0.80", 80), start=Decimal("1700000000")):
        self.client, self.server = client, server
        self.seq = {True: 1000, False: 500000}
        self.t = start

    def _pkt(self, from_client: bool, flags: str, seq: int, payload: bytes = b""):
        (src, sport), (dst, dport) = (self.client, self.server) if from_client else (self.server, self.client)
        ack = self.seq[not from_client]
        self.t += Decimal("0.001")  # exact: pcap and pcapng writers round floats differently
        pkt = Ether(**MACS) / IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags=flags, seq=seq, ack=ack)
        if payload:
            pkt = pkt / payload
        pkt.time = self.t
        return pkt

    def handshake(self) -> list:
        out = [self._pkt(True, "S", self.seq[True] - 1), self._pkt(False, "SA", self.seq[False] - 1),
               self._pkt(True, "A", self.seq[True])]
        return out

    def data(self, from_client: bool, payload: bytes, pieces: int = 1) -> list:
        """The payload cut into ``pieces`` segments, in order."""
        out, size = [], max(1, -(-len(payload) // pieces))
        for i in range(0, len(payload), size):
            out.append(self._pkt(from_client, "PA", self.seq[from_client] + i, payload[i:i + size]))
        self.seq[from_client] += len(payload)
        return out

    def close(self) -> list:
        out = [self._pkt(True, "FA", self.seq[True]), self._pkt(False, "FA", self.seq[False])]
        self.seq[True] += 1
        self.seq[False] += 1
        out.append(self._pkt(True, "A", self.seq[True]))
        return out


def udp(src, dst, payload: bytes, t: float):
    pkt = Ether(**MACS) / IP(src=src[0], dst=dst[0]) / UDP(sport=src[1], dport=dst[1]) / payload
    pkt.time = t
    return pkt


def write_pcap(path, packets) -> None:
    with PcapWriter(str(path), linktype=1, sync=True) as out:
        for pkt in packets:
            out.write(pkt)


def write_pcapng(path, packets) -> None:
    with PcapNgWriter(str(path)) as out:
        for pkt in packets:
            out.write(pkt)
