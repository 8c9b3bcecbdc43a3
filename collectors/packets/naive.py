"""The reference extractor: the "naive" scapy loop, ``for pkt in PcapReader(path)`` with full dissection of every
packet, and scapy's own DNS, HTTP and TLS layers for the application fields.

It exists for two reasons: it is the baseline the fast path is measured against (bench/bench_pcap.py), and it is
an independent reading of every header and hello that the fast path parses itself, so comparing the two record
sets checks the fast parsers field by field (tests/test_packets_equivalence.py). Flow keeping, TCP reassembly and
HTTP framing are shared (``extractor.py``): scapy's read loop has none of its own.
"""

from __future__ import annotations

import os
import re
from typing import Iterator

from scapy.layers.dns import DNS
from scapy.layers.http import HTTPRequest, HTTPResponse
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import (IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop,
                                IPv6ExtHdrRouting, _ICMPv6)
from scapy.layers.l2 import CookedLinux, CookedLinuxV2, Dot1AD, Dot1Q, Ether, Loopback
from scapy.layers.tls.extensions import (TLS_Ext_ALPN, TLS_Ext_ServerName, TLS_Ext_SignatureAlgorithms,
                                         TLS_Ext_SupportedGroups, TLS_Ext_SupportedPointFormat,
                                         TLS_Ext_SupportedVersion_CH, TLS_Ext_SupportedVersion_SH)
from scapy.layers.tls.handshake import TLSClientHello, TLSServerHello
from scapy.layers.tls.record import TLS  # noqa: F401 - binds TLS to port 443, as a scapy user's loop would have it
from scapy.packet import bind_layers
from scapy.utils import PcapReader

from collectors.packets import dns, packet as P
from collectors.packets.dissectors import Dissectors
from collectors.packets.extractor import Extractor, run
from collectors.packets.http import Head
from collectors.packets.payloads import PayloadStore

# scapy knows DLT_NULL's IPv4 but not every BSD's number for IPv6 (macOS writes 30): a scapy user reading such
# captures has to bind them, as here.
for _family in (24, 28, 30):
    bind_layers(Loopback, IPv6, type=_family)

_LINK = (Ether, Dot1Q, Dot1AD, CookedLinux, CookedLinuxV2, Loopback)
_IPV6_EXTENSIONS = (IPv6ExtHdrHopByHop, IPv6ExtHdrRouting, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment)
_FIRST_LINE = {"Method", "Path", "Http_Version", "Status_Code", "Reason_Phrase", "Unknown_Headers"}


def _data(layer, header_length: int, length: int | None = None) -> bytes:
    """The bytes a transport layer carries, as captured. Taken from the bytes scapy dissected the layer from
    (IP's padding already cut off), because scapy files a partial TLS record under Padding, like an Ethernet
    trailer, and rebuilding a layer may change its bytes."""
    raw = layer.original if layer.original is not None else bytes(layer)
    end = len(raw) if length is None or not header_length <= length <= len(raw) else length
    return bytes(raw[header_length:end])


def packet_from_scapy(pkt) -> P.Packet | None:
    ts = int(pkt.time * 1_000_000_000)
    layer = pkt
    while isinstance(layer, _LINK):
        layer = layer.payload
    if isinstance(layer, IP):
        if layer.ihl < 5 or layer.len < layer.ihl * 4:
            return None
        if layer.frag:
            return P.Packet(ts, 4, layer.src, layer.dst, layer.proto, 0, 0, layer.len, fragment=P.LATER_FRAGMENT)
        fragment = P.FIRST_FRAGMENT if layer.flags.MF else P.WHOLE
        version, length, proto, l4 = 4, layer.len, layer.proto, layer.payload
    elif isinstance(layer, IPv6):
        version, length, fragment, proto, l4 = 6, 40 + layer.plen, P.WHOLE, layer.nh, layer.payload
        while isinstance(l4, _IPV6_EXTENSIONS):
            proto = l4.nh
            if isinstance(l4, IPv6ExtHdrFragment):
                if l4.offset:
                    return P.Packet(ts, 6, layer.src, layer.dst, proto, 0, 0, length, fragment=P.LATER_FRAGMENT)
                fragment = P.FIRST_FRAGMENT if l4.m else P.WHOLE
            l4 = l4.payload
    else:
        return None
    src, dst = layer.src, layer.dst
    if proto == P.TCP:
        if not isinstance(l4, TCP) or l4.dataofs < 5:
            return None
        return P.Packet(ts, version, src, dst, P.TCP, l4.sport, l4.dport, length, int(l4.flags) & 0xFF, l4.seq,
                        _data(l4, l4.dataofs * 4), fragment)
    if proto == P.UDP:
        if not isinstance(l4, UDP):
            return None
        found = l4.payload if isinstance(l4.payload, DNS) else None
        return P.Packet(ts, version, src, dst, P.UDP, l4.sport, l4.dport, length, 0, 0, _data(l4, 8, l4.len), fragment,
                        layer=found)
    if proto in (P.ICMP, P.ICMPV6):
        if not isinstance(l4, (ICMP, _ICMPv6)):
            return None
        code = getattr(l4, "code", None)  # a few ICMPv6 classes have no code field: read the byte
        if code is None:
            code = bytes(l4.original or bytes(l4))[1]
        return P.Packet(ts, version, src, dst, proto, l4.type, code, length, 0, 0, b"", fragment)
    return P.Packet(ts, version, src, dst, proto, 0, 0, length, 0, 0, b"", fragment)


def _udp_dns(pkt: P.Packet) -> dict | None:
    if pkt.layer is None or len(pkt.payload) < 12:
        return None
    return dns.message_from_scapy(pkt.layer)


def _text(value) -> str:
    return value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else str(value)


def http_head(raw: bytes) -> Head | None:
    response = raw.lstrip().startswith(b"HTTP/")
    layer = HTTPResponse(raw) if response else HTTPRequest(raw)
    headers = {name.lower(): _text(value) for name, value in layer.fields.items() if name not in _FIRST_LINE}
    for name, value in (layer.fields.get("Unknown_Headers") or {}).items():
        headers[_text(name).strip().replace("-", "_").lower()] = _text(value)
    if response:
        if "Status_Code" in layer.fields:
            first = (_text(layer.Http_Version), _text(layer.Status_Code), _text(layer.Reason_Phrase))
        else:  # scapy needs a reason phrase; a status line without one is still a response
            parts = re.split(rb"\s+", raw.partition(b"\r\n")[0].strip(), maxsplit=2)
            if len(parts) != 2:
                return None
            first = (_text(parts[0]), _text(parts[1]), "")
        return Head(first, headers)
    if "Method" not in layer.fields or not layer.Http_Version.startswith(b"HTTP/"):
        return None
    return Head((_text(layer.Method), _text(layer.Path), _text(layer.Http_Version)), headers)


def client_hello(message: bytes) -> dict | None:
    try:
        layer = TLSClientHello(message)
    except Exception:  # scapy's TLS dissection raises on some malformed hellos
        return None
    if message[:1] != b"\x01" or layer.ciphers is None:
        return None
    extensions = list(layer.ext or [])
    hello = {"version": layer.version, "ciphers": list(layer.ciphers), "extensions": [e.type for e in extensions],
             "server_name": None, "alpn": [], "groups": [], "point_formats": [], "sig_algs": [],
             "supported_versions": []}
    for ext in extensions:
        if isinstance(ext, TLS_Ext_ServerName):
            names = [n.servername for n in (ext.servernames or []) if n.nametype == 0]
            hello["server_name"] = _text(names[0]) if names else None
        elif isinstance(ext, TLS_Ext_ALPN):
            hello["alpn"] = [bytes(p.protocol) for p in (ext.protocols or [])]
        elif isinstance(ext, TLS_Ext_SupportedGroups):
            hello["groups"] = list(ext.groups or [])
        elif isinstance(ext, TLS_Ext_SupportedPointFormat):
            hello["point_formats"] = list(ext.ecpl or [])
        elif isinstance(ext, TLS_Ext_SignatureAlgorithms):
            hello["sig_algs"] = list(ext.sig_algs or [])
        elif isinstance(ext, TLS_Ext_SupportedVersion_CH):
            hello["supported_versions"] = list(ext.versions or [])
    return hello


def server_hello(message: bytes) -> dict | None:
    if len(message) >= 6 and message[4] == 0x7F and message[5] < 22:
        # TLS 1.3 drafts before 22 have no session id and no compression method; scapy only knows the final
        # layout, so the reference puts the two empty fields in for it.
        body = message[4:38] + b"\x00" + message[38:40] + b"\x00" + message[40:]
        message = message[:1] + len(body).to_bytes(3, "big") + body
    try:
        layer = TLSServerHello(message)
    except Exception:
        return None
    if message[:1] != b"\x02" or layer.cipher is None:
        return None
    extensions = list(layer.ext or [])
    selected = next((e.version for e in extensions if isinstance(e, TLS_Ext_SupportedVersion_SH)), None)
    return {"version": layer.version, "cipher": layer.cipher, "extensions": [e.type for e in extensions],
            "selected_version": selected}


NAIVE = Dissectors("naive", udp_dns=_udp_dns, dns_message=dns.parse_with_scapy, http_head=http_head,
                   client_hello=client_hello, server_hello=server_hello)


def naive_records(path: str | os.PathLike, payload_dir: str | os.PathLike | None = None) -> Iterator[dict]:
    """The same records as ``iter_pcap_records``, the slow way."""
    extractor = Extractor(NAIVE, PayloadStore(payload_dir), log_path=str(path))
    with PcapReader(str(path)) as reader:
        yield from run((p for p in (packet_from_scapy(pkt) for pkt in reader) if p is not None), extractor)
