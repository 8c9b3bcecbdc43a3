"""Community ID v1 flow hashes (https://github.com/corelight/community-id-spec), so a flow found here can be joined
with the same flow in Suricata, Zeek or Elastic data.

ICMP has no ports: its type and the type of its counterpart (echo request/reply...) stand in for them, as in Zeek;
a type without counterpart is "one way" and its type/code are hashed as they are, without reordering.
"""

from __future__ import annotations

import base64
import hashlib
import socket
import struct

from collectors.packets.packet import ICMP, ICMPV6, TCP, UDP

_ICMP4_COUNTERPART = {8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 10: 9, 9: 10, 17: 18, 18: 17}
_ICMP6_COUNTERPART = {128: 129, 129: 128, 133: 134, 134: 133, 135: 136, 136: 135, 130: 131, 131: 130, 139: 140,
                      140: 139, 144: 145, 145: 144}
_WITH_PORTS = (TCP, UDP, 132, ICMP, ICMPV6)


def icmp_ports(proto: int, icmp_type: int, code: int) -> tuple[int, int, bool]:
    """(source port, destination port, one_way) equivalents of an ICMP type and code."""
    table = _ICMP4_COUNTERPART if proto == ICMP else _ICMP6_COUNTERPART
    if icmp_type in table:
        return icmp_type, table[icmp_type], False
    return icmp_type, code, True


def community_id(src: str, dst: str, proto: int, sport: int = 0, dport: int = 0, seed: int = 0) -> str:
    """The Community ID of a flow given as text addresses; for ICMP, pass the type and code as the ports."""
    family = socket.AF_INET6 if ":" in src else socket.AF_INET
    saddr, daddr = socket.inet_pton(family, src), socket.inet_pton(family, dst)
    one_way = False
    if proto in (ICMP, ICMPV6):
        sport, dport, one_way = icmp_ports(proto, sport, dport)
    if not (one_way or saddr < daddr or (saddr == daddr and sport < dport)):
        saddr, daddr, sport, dport = daddr, saddr, dport, sport
    data = struct.pack("!H", seed) + saddr + daddr + struct.pack("!BB", proto, 0)
    if proto in _WITH_PORTS:
        data += struct.pack("!HH", sport, dport)
    return "1:" + base64.b64encode(hashlib.sha1(data, usedforsecurity=False).digest()).decode("ascii")
