"""The packet pipeline: decoded packets → flows → application decoders → ECS records.

    frames ─ decode (headers.py) ─ Extractor.packet ─ flow table ─┬─ UDP DNS ─ record
                                                                  └─ TCP reassembly ─ HTTP / TLS / DNS sessions
    end of input or idle flow ─ sessions closed ─ flow record

Records come out as soon as they are complete (a DNS message at once, an HTTP exchange when its response has
been read); flow records when a flow ends (idle, closed and reused, or end of input).
"""

from __future__ import annotations

from collections import Counter
from typing import Iterator

from collectors.packets import dns, ftp, http, tls
from collectors.packets.dissectors import FAST, Dissectors
from collectors.packets.flows import Flow, flow_key
from collectors.packets.packet import ACK, FIN, LATER_FRAGMENT, RST, SYN, TCP, UDP, Packet
from collectors.packets.payloads import ExtractedPayload, PayloadStore
from collectors.packets.tcp_stream import StreamReassembler

IDLE_TIMEOUT_NS = 300 * 10**9  # a flow without packets for this long (capture time) is over
CLOSED_TIMEOUT_NS = 30 * 10**9
SWEEP_EVERY = 4096  # packets between two looks for idle flows
MAX_EARLY_SERVER_BYTES = 64 * 1024


class Extractor:
    def __init__(self, dissectors: Dissectors = FAST, payloads: PayloadStore | None = None,
                 log_path: str | None = None) -> None:
        self.dissectors = dissectors
        self.payload_store = payloads or PayloadStore(None)
        self.log_path = log_path
        self.flows: dict[tuple, Flow] = {}
        self.out: list[dict] = []
        self.extracted_payloads: list[ExtractedPayload] = []
        self.stats: Counter = Counter()
        self._until_sweep = SWEEP_EVERY
        self._now = 0  # capture time of the packet being reassembled, for the records it completes
        self.expected: dict[tuple[str, int], object] = {}  # data connections announced by FTP control sessions

    # -- output ----------------------------------------------------------------------------------------------------
    def emit(self, doc: dict) -> None:
        if self.log_path:
            doc.setdefault("log", {})["file"] = {"path": self.log_path}
        self.stats[doc["event"]["dataset"]] += 1
        self.out.append(doc)

    def drain(self) -> list[dict]:
        out, self.out = self.out, []
        return out

    # -- packets ---------------------------------------------------------------------------------------------------
    def packet(self, pkt: Packet) -> None:
        self.stats["packets"] += 1
        if pkt.fragment == LATER_FRAGMENT:
            self.stats["ip_fragments_skipped"] += 1  # a later fragment: no ports to find its flow by
            return
        key, sender, receiver = flow_key(pkt)
        flow = self.flows.get(key)
        if flow is not None and pkt.proto == TCP and pkt.flags & (SYN | ACK) == SYN and flow.closed:
            self._end(flow)  # the 5-tuple is reused by a new connection
            flow = None
        if flow is None:
            flow = self.flows[key] = Flow(key, pkt, sender, receiver)
        from_client = sender == flow.client
        if from_client:
            flow.client_packets += 1
            flow.client_bytes += pkt.length
        else:
            flow.server_packets += 1
            flow.server_bytes += pkt.length
        if pkt.ts > flow.end:
            flow.end = pkt.ts
        if pkt.proto == TCP:
            self._tcp(flow, pkt, from_client)
        elif pkt.proto == UDP and pkt.payload and not pkt.fragment and \
                (pkt.sport in dns.DNS_PORTS or pkt.dport in dns.DNS_PORTS):
            message = self.dissectors.udp_dns(pkt)
            if message is not None:
                flow.protocol = "dns"
                self.emit(dns.fill_record(flow.base_record(pkt.ts, "network.dns", "protocol"), message))
        self._until_sweep -= 1
        if self._until_sweep <= 0:
            self._until_sweep = SWEEP_EVERY
            self._sweep(pkt.ts)

    def _tcp(self, flow: Flow, pkt: Packet, from_client: bool) -> None:
        flags = pkt.flags
        if flags & RST:
            flow.rst = True
        if flags & FIN:
            flow.fins |= 1 if from_client else 2
        if flow.protocol is None and flow.streams is None and flow.session is None:
            if self.expected:
                expectation = self.expected.pop(flow.server, None)
                if expectation is not None:
                    flow.protocol = "ftp-data"
                    flow.session = ftp.FtpDataSession(self, flow, expectation)
            flow.streams = [StreamReassembler(lambda data, f=flow: self._client_bytes(f, data),
                                              lambda size, f=flow: self._gap(f, True, size)),
                            StreamReassembler(lambda data, f=flow: self._server_bytes(f, data),
                                              lambda size, f=flow: self._gap(f, False, size))]
        streams = flow.streams
        if streams is None:
            return
        stream = streams[0 if from_client else 1]
        if flags & SYN:
            stream.syn(pkt.seq)
        if pkt.payload and not pkt.fragment:
            self._now = pkt.ts
            stream.segment(pkt.seq + (1 if flags & SYN else 0), pkt.payload)
            if flow.session is not None and flow.session.done:
                flow.streams = None  # the decoder has what it wanted: stop reassembling this flow

    # -- application detection -------------------------------------------------------------------------------------
    def _client_bytes(self, flow: Flow, data: bytes) -> None:
        if flow.session is None:
            if flow.protocol is not None:
                return
            flow.session = self._detect(flow, data)
            if flow.session is None:
                flow.streams = None
                flow.pending = None
                return
            early, flow.pending = flow.pending or [], None
            for chunk, ts in early:
                flow.session.data(False, chunk, ts)
        flow.session.data(True, data, self._now)

    def _server_bytes(self, flow: Flow, data: bytes) -> None:
        if flow.session is not None:
            flow.session.data(False, data, self._now)
            return
        if flow.protocol is not None:
            return
        flow.pending = flow.pending or []
        flow.pending.append((data, self._now))
        if sum(len(chunk) for chunk, _ in flow.pending) > MAX_EARLY_SERVER_BYTES:
            flow.protocol, flow.pending, flow.streams = "unknown", None, None  # a server that talks first

    def _gap(self, flow: Flow, from_client: bool, size: int) -> None:
        self.stats["tcp_gaps"] += 1
        if flow.session is not None:
            flow.session.gap(from_client, size)

    def _detect(self, flow: Flow, data: bytes):
        """The application decoder for a TCP flow, from the first bytes its client sent (None: not decoded)."""
        from collectors.packets.http_session import HttpSession
        from collectors.packets.tls_session import TlsSession

        if http.looks_like_request(data):
            flow.protocol = "http"
            return HttpSession(self, flow)
        if tls.looks_like_tls(data):
            flow.protocol = "tls"
            return TlsSession(self, flow)
        _, server_port = flow.server
        early = flow.pending[0][0] if flow.pending else b""
        if ftp.looks_like_ftp(data, early, server_port):
            flow.protocol = "ftp"
            return ftp.FtpSession(self, flow)
        if server_port in dns.DNS_PORTS:
            flow.protocol = "dns"
            return dns.TcpDnsSession(self, flow)
        if data.startswith(b"SSH-"):
            flow.protocol = "ssh"
        elif data[4:8] in (b"\xffSMB", b"\xfeSMB"):
            flow.protocol = "smb"
        else:
            flow.protocol = "unknown"
        return None

    # -- flow ends -------------------------------------------------------------------------------------------------
    def _end(self, flow: Flow) -> None:
        self.flows.pop(flow.key, None)
        if flow.streams is not None:
            self._now = flow.end
            for stream in flow.streams:
                stream.flush()
        if flow.session is not None:
            flow.session.close()
        if flow.protocol == "unknown":
            flow.protocol = None
        self.emit(flow.record())

    def _sweep(self, now: int) -> None:
        for flow in [f for f in self.flows.values()
                     if now - f.end > (CLOSED_TIMEOUT_NS if f.closed else IDLE_TIMEOUT_NS)]:
            self._end(flow)

    def finish(self) -> None:
        """End of input: every flow still open ends now, oldest first."""
        for flow in sorted(self.flows.values(), key=lambda f: (f.start, f.key)):
            self._end(flow)

    def expect_data_connection(self, server: tuple[str, int], expectation) -> None:
        if len(self.expected) > 10_000:  # announced but never used: forget the oldest
            self.expected.pop(next(iter(self.expected)))
        self.expected[server] = expectation

    # -- payloads --------------------------------------------------------------------------------------------------
    def store_payload(self, data: bytes, **meta) -> ExtractedPayload:
        sha256, path = self.payload_store.put(data)
        payload = ExtractedPayload(sha256=sha256, size=len(data), path=path, **meta)
        self.extracted_payloads.append(payload)
        self.stats["payloads"] += 1
        return payload


def run(packets: Iterator[Packet], extractor: Extractor) -> Iterator[dict]:
    """Feed packets through an extractor, yielding records as they complete, then the rest at the end."""
    for pkt in packets:
        extractor.packet(pkt)
        if extractor.out:
            yield from extractor.drain()
    extractor.finish()
    yield from extractor.drain()
