"""Which code reads the application payloads. The fast path uses the struct parsers of this package (and scapy's
DNS layer); the reference path (``naive.py``) uses scapy's own layers for all of them. The rest of the pipeline is
shared, which is what makes their records comparable one for one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from collectors.packets import dns, http, tls
from collectors.packets.packet import Packet


@dataclass(frozen=True)
class Dissectors:
    name: str
    udp_dns: Callable[[Packet], dict | None]  # the DNS message in a UDP packet on a DNS port
    dns_message: Callable[[bytes], dict | None]  # one DNS message (DNS over TCP, length prefix removed)
    http_head: Callable[[bytes], "http.Head | None"]
    client_hello: Callable[[bytes], dict | None]
    server_hello: Callable[[bytes], dict | None]


FAST = Dissectors("fast", udp_dns=lambda pkt: dns.parse_message(pkt.payload), dns_message=dns.parse_message,
                  http_head=http.parse_head, client_hello=tls.parse_client_hello,
                  server_hello=tls.parse_server_hello)
