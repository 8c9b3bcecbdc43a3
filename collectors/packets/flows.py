"""Flows: packets grouped by their bidirectional 5-tuple, with who started them, counters and times, and the ECS
base every record of the flow starts from (endpoints, transport, Community ID).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from collectors.packets.community_id import community_id, icmp_ports
from collectors.packets.packet import ACK, ICMP, ICMPV6, SYN, TCP, TRANSPORT_NAMES, UDP, Packet
from soc import ecs

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_PORTED = (TCP, UDP, 132)


def iso(ns: int) -> str:
    return ecs.utc_iso(_EPOCH + timedelta(microseconds=ns // 1000))


def flow_key(pkt: Packet) -> tuple[tuple, tuple[str, int], tuple[str, int]]:
    """(key, this packet's sender, its receiver); both directions of a flow share the key. For ICMP, the type and
    its counterpart stand in for ports, so an echo request and its reply are one flow."""
    sport, dport = pkt.sport, pkt.dport
    if pkt.proto == ICMP or pkt.proto == ICMPV6:
        sport, dport, _ = icmp_ports(pkt.proto, sport, dport)
    a, b = (pkt.src, sport), (pkt.dst, dport)
    return ((pkt.proto, a, b) if a <= b else (pkt.proto, b, a)), a, b


class Flow:
    __slots__ = ("key", "proto", "ip_version", "client", "server", "icmp", "start", "end", "client_packets",
                 "client_bytes", "server_packets", "server_bytes", "protocol", "session", "streams", "pending",
                 "fins", "rst", "_community_id")

    def __init__(self, key: tuple, pkt: Packet, sender: tuple[str, int], receiver: tuple[str, int]) -> None:
        self.key = key
        self.proto = pkt.proto
        self.ip_version = pkt.ip_version
        if _sender_is_server(pkt):
            sender, receiver = receiver, sender
        self.client, self.server = sender, receiver
        self.icmp = (pkt.sport, pkt.dport) if pkt.proto in (ICMP, ICMPV6) else None
        self.start = self.end = pkt.ts
        self.client_packets = self.client_bytes = self.server_packets = self.server_bytes = 0
        self.protocol: str | None = None  # application protocol, once recognised
        self.session = None  # the application decoder of a TCP flow
        self.streams = None  # [client→server, server→client] reassemblers while a decoder needs the bytes
        self.pending: list[tuple[bytes, int]] | None = None  # server bytes seen before the client said anything
        self.fins = 0  # bit 1: client sent FIN, bit 2: server sent FIN
        self.rst = False
        self._community_id: str | None = None

    @property
    def community_id(self) -> str:
        if self._community_id is None:
            (src, sport), (dst, dport) = self.client, self.server
            if self.icmp is not None:
                sport, dport = self.icmp
            elif self.proto not in _PORTED:
                sport = dport = 0
            self._community_id = community_id(src, dst, self.proto, sport, dport)
        return self._community_id

    @property
    def closed(self) -> bool:
        return self.rst or self.fins == 3

    def base_record(self, ts: int, dataset: str, event_type: str) -> dict:
        (src, sport), (dst, dport) = self.client, self.server
        network = {"transport": TRANSPORT_NAMES.get(self.proto, str(self.proto)), "iana_number": str(self.proto),
                   "type": f"ipv{self.ip_version}", "community_id": self.community_id}
        if self.protocol:
            network["protocol"] = self.protocol
        source, destination = {"ip": src}, {"ip": dst}
        if self.proto in _PORTED:
            source["port"], destination["port"] = sport, dport
        return {"@timestamp": iso(ts),
                "event": {"kind": "event", "category": ["network"], "type": [event_type], "dataset": dataset,
                          "module": "packets"},
                "network": network, "source": source, "destination": destination}

    def record(self) -> dict:
        doc = self.base_record(self.start, "network.flow", "connection")
        doc["event"].update(start=iso(self.start), end=iso(self.end), duration=self.end - self.start)
        doc["source"].update(bytes=self.client_bytes, packets=self.client_packets)
        doc["destination"].update(bytes=self.server_bytes, packets=self.server_packets)
        doc["network"].update(bytes=self.client_bytes + self.server_bytes,
                              packets=self.client_packets + self.server_packets)
        return doc


def _sender_is_server(pkt: Packet) -> bool:
    """Whether the first packet seen of a flow came from its server: a SYN-ACK, or (joined mid-flow, or not TCP)
    a packet from a well-known port to an ephemeral one."""
    if pkt.proto == TCP and pkt.flags & SYN:
        return bool(pkt.flags & ACK)
    if pkt.proto in _PORTED:
        return pkt.sport < 1024 <= pkt.dport
    return False
