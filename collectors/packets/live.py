"""Live capture with scapy's sniff, through the same pipeline as capture files.

Only where capturing is permitted: it needs the rights to open a packet socket (root or CAP_NET_RAW). Flows
still open when the capture stops are ended then, so their records are not lost.
"""

from __future__ import annotations

import os
from typing import Callable

from collectors.packets.dissectors import FAST
from collectors.packets.extractor import Extractor
from collectors.packets.headers import DLT_EN10MB, DLT_IPV4, DLT_IPV6, DLT_LINUX_SLL, DLT_LINUX_SLL2, DLT_NULL, \
    decode
from collectors.packets.payloads import PayloadStore


def _linktype(pkt) -> int | None:
    from scapy.layers.inet import IP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import CookedLinux, CookedLinuxV2, Ether, Loopback

    for cls, linktype in ((Ether, DLT_EN10MB), (CookedLinux, DLT_LINUX_SLL), (CookedLinuxV2, DLT_LINUX_SLL2),
                          (Loopback, DLT_NULL), (IP, DLT_IPV4), (IPv6, DLT_IPV6)):
        if isinstance(pkt, cls):
            return linktype
    return None


def _is_loopback(iface: str) -> bool:
    try:
        return bool(int(open(f"/sys/class/net/{iface}/flags").read(), 16) & 0x8)  # IFF_LOOPBACK
    except (OSError, ValueError):
        return False


def capture(iface: str, on_record: Callable[[dict], None], count: int = 0, timeout: float | None = None,
            bpf: str | None = None, payload_dir: str | os.PathLike | None = None,
            on_start: Callable[[], None] | None = None, on_packet: Callable[[], None] | None = None) -> Extractor:
    """Capture on ``iface`` until ``count`` packets (0: no limit) or ``timeout`` seconds, calling ``on_record``
    for each record as it completes. Returns the extractor (its ``stats`` and ``payloads``)."""
    from scapy.sendrecv import sniff

    extractor = Extractor(FAST, PayloadStore(payload_dir), log_path=None)

    def handle(pkt) -> None:
        linktype = _linktype(pkt)
        decoded = decode(linktype, bytes(pkt), int(pkt.time * 1_000_000_000)) if linktype is not None else None
        if decoded is None:
            extractor.stats["frames_not_ip"] += 1
        else:
            extractor.packet(decoded)
            for doc in extractor.drain():
                on_record(doc)
        if on_packet is not None:
            on_packet()

    options = {}
    if _is_loopback(iface):
        # A packet socket on loopback sees every packet twice, leaving and arriving; like libpcap, keep one
        # (scapy's L2Socket drops the outgoing copy, its default listen socket does not).
        from scapy.config import conf
        options["L2socket"] = conf.L2socket
    sniff(iface=iface, count=count, timeout=timeout, filter=bpf, prn=handle, store=False,
          started_callback=on_start, **options)
    extractor.finish()
    for doc in extractor.drain():
        on_record(doc)
    return extractor
