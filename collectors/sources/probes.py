"""Active probes of inventory assets: reachability (TCP connect; ICMP echo where the host permits it), HTTP(S)
status and latency, TLS certificate expiry, SSH banner. Each result becomes an ECS event (``event.dataset:
soc.probe``) and Prometheus gauges.

What to probe comes from each asset's ``services`` (``ssh``, ``https``, ``rdp``, ...); a service may carry its port
(``https:8443``), which is how a test points probes at servers it started on loopback. Probes never run unless the
configuration enables them (monitoring.probes.enabled): loading an inventory must never send traffic by itself.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import struct
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

import httpx
from prometheus_client import Counter, Gauge

from inventory.lookup import Inventory
from soc import ecs

PROBE_UP = Gauge("soc_probe_up", "Whether the last probe of an asset's service succeeded (1) or not (0)",
                 ["agency", "asset", "check", "port"])
PROBE_LATENCY = Gauge("soc_probe_latency_seconds", "Latency of the last probe (connect, banner or HTTP response)",
                      ["agency", "asset", "check", "port"])
PROBE_HTTP_STATUS = Gauge("soc_probe_http_status", "HTTP status code of the last HTTP(S) probe",
                          ["agency", "asset", "port"])
TLS_EXPIRY = Gauge("soc_tls_cert_expiry_timestamp_seconds", "When the TLS certificate served by an asset expires "
                   "(Unix time)", ["agency", "asset", "port"])
PROBES_RUN = Counter("soc_probes", "Probes run, by check and result", ["check", "result"])
PROBE_ROUND = Gauge("soc_probe_last_round_timestamp_seconds", "When the last round of probes finished (Unix time)")

# service name -> (checks, default port). A service not listed here is not probed.
SERVICES: dict[str, tuple[tuple[str, ...], int]] = {
    "ssh": (("ssh_banner",), 22),
    "https": (("http", "tls"), 443),
    "http": (("http",), 80),
    "tls": (("tls",), 443),
    "imaps": (("tls",), 993),
    "smtp": (("tcp",), 25),
    "rdp": (("tcp",), 3389),
    "dns": (("tcp",), 53),
    "ldap": (("tcp",), 389),
    "mssql": (("tcp",), 1433),
    "postgresql": (("tcp",), 5432),
    "syslog": (("tcp",), 514),
    "tcp": (("tcp",), 0),  # tcp:PORT, a bare port check
}


@dataclass(frozen=True)
class Target:
    asset: str
    agency: str
    hostname: str
    address: str
    check: str  # icmp | tcp | ssh_banner | http | tls
    port: int = 0
    scheme: str = ""  # http | https for the http check


@dataclass
class ProbeResult:
    target: Target
    up: bool
    latency: float | None = None
    at: str = field(default_factory=ecs.now_iso)
    status_code: int | None = None
    banner: str | None = None
    not_after: str | None = None
    days_left: float | None = None
    subject: str | None = None
    issuer: str | None = None
    error: str | None = None


def targets(inventory: Inventory, icmp: bool = True) -> list[Target]:
    out: list[Target] = []
    for asset in inventory.assets.values():
        if not asset.addresses:
            continue
        address = asset.addresses[0]
        base = dict(asset=asset.id, agency=asset.agency, hostname=asset.hostname, address=address)
        if icmp:
            out.append(Target(check="icmp", **base))
        for spec in asset.services:
            name, _, port_text = spec.partition(":")
            known = SERVICES.get(name.lower())
            if known is None:
                continue
            checks, default_port = known
            port = int(port_text) if port_text.isdigit() else default_port
            if not port:
                continue
            for check in checks:
                scheme = ("https" if name.lower() == "https" else "http") if check == "http" else ""
                out.append(Target(check=check, port=port, scheme=scheme, **base))
    return sorted(set(out), key=lambda t: (t.asset, t.check, t.port))


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


async def probe_tcp(target: Target, timeout: float) -> ProbeResult:
    started = time.perf_counter()
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(target.address, target.port), timeout)
    except (OSError, asyncio.TimeoutError) as exc:
        return ProbeResult(target, False, error=_why(exc))
    latency = time.perf_counter() - started
    writer.close()
    await _closed(writer)
    return ProbeResult(target, True, latency)


async def probe_ssh_banner(target: Target, timeout: float) -> ProbeResult:
    started = time.perf_counter()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(target.address, target.port), timeout)
    except (OSError, asyncio.TimeoutError) as exc:
        return ProbeResult(target, False, error=_why(exc))
    try:
        # RFC 4253: the server may send other lines first; the identification line starts with "SSH-".
        for _ in range(10):
            line = await asyncio.wait_for(reader.readline(), timeout)
            if not line:
                break
            text = line.decode("utf-8", "replace").strip()
            if text.startswith("SSH-"):
                return ProbeResult(target, True, time.perf_counter() - started, banner=text[:255])
        return ProbeResult(target, False, time.perf_counter() - started, error="no SSH identification line")
    except (OSError, asyncio.TimeoutError) as exc:
        return ProbeResult(target, False, error=_why(exc))
    finally:
        writer.close()
        await _closed(writer)


async def probe_http(target: Target, timeout: float) -> ProbeResult:
    url = f"{target.scheme}://{_host(target.address)}:{target.port}/"
    started = time.perf_counter()
    # Internal services often use a private CA or a self-signed certificate: the tls check reports on the
    # certificate; this check is about whether the service answers.
    try:
        # Certificate checks off on purpose (the tls check reports on certificates): only a GET is sent and
        # nothing read back is trusted.
        async with httpx.AsyncClient(verify=False, timeout=timeout, follow_redirects=False) as client:  # nosec B501
            response = await client.get(url, headers={"User-Agent": "soc-suite-probe/1"})
    except httpx.HTTPError as exc:
        return ProbeResult(target, False, error=_why(exc))
    latency = time.perf_counter() - started
    return ProbeResult(target, response.status_code < 500, latency, status_code=response.status_code,
                       error=None if response.status_code < 500 else f"HTTP {response.status_code}")


async def probe_tls(target: Target, timeout: float) -> ProbeResult:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # read whatever certificate is served, trusted or not
    started = time.perf_counter()
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(target.address, target.port, ssl=context, server_hostname=target.hostname),
            timeout)
    except (OSError, asyncio.TimeoutError, ssl.SSLError) as exc:
        return ProbeResult(target, False, error=_why(exc))
    latency = time.perf_counter() - started
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    await _closed(writer)
    if not der:
        return ProbeResult(target, False, latency, error="no certificate presented")
    from cryptography import x509

    cert = x509.load_der_x509_certificate(der)
    not_after = cert.not_valid_after_utc
    days_left = (not_after - datetime.now(timezone.utc)).total_seconds() / 86400
    return ProbeResult(target, days_left > 0, latency, not_after=ecs.utc_iso(not_after), days_left=days_left,
                       subject=cert.subject.rfc4514_string(), issuer=cert.issuer.rfc4514_string(),
                       error=None if days_left > 0 else "certificate expired")


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def _icmp_socket(v6: bool) -> tuple[socket.socket, bool] | None:
    """An ICMP socket: unprivileged (ping_group_range) first, raw (root / CAP_NET_RAW) next; None if neither."""
    family, proto = (socket.AF_INET6, socket.IPPROTO_ICMPV6) if v6 else (socket.AF_INET, socket.IPPROTO_ICMP)
    for kind in (socket.SOCK_DGRAM, socket.SOCK_RAW):
        try:
            return socket.socket(family, kind, proto), kind == socket.SOCK_RAW
        except (PermissionError, OSError):
            continue
    return None


async def probe_icmp(target: Target, timeout: float) -> ProbeResult:
    v6 = ":" in target.address
    opened = _icmp_socket(v6)
    if opened is None:
        return ProbeResult(target, False, error="not_permitted: ICMP sockets are not allowed for this process")
    sock, raw = opened
    sock.setblocking(False)
    ident, seq = os.getpid() & 0xFFFF, int(time.monotonic() * 1000) & 0xFFFF
    kind = 128 if v6 else 8
    payload = b"soc-suite-probe!"
    header = struct.pack("!BBHHH", kind, 0, 0, ident, seq)
    packet = struct.pack("!BBHHH", kind, 0, 0 if v6 else _checksum(header + payload), ident, seq) + payload
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    try:
        await loop.sock_sendto(sock, packet, (target.address, 0))
        deadline = started + timeout
        while True:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                raise asyncio.TimeoutError
            data = await asyncio.wait_for(loop.sock_recv(sock, 2048), remaining)
            if raw and not v6:
                data = data[(data[0] & 0x0F) * 4:]  # a raw IPv4 socket hands over the IP header too
            reply = 129 if v6 else 0
            if len(data) >= 8 and data[0] == reply:
                _, _, _, r_ident, r_seq = struct.unpack("!BBHHH", data[:8])
                # An unprivileged socket's id is rewritten by the kernel; the sequence number still matches.
                if r_seq == seq and (r_ident == ident or not raw):
                    return ProbeResult(target, True, time.perf_counter() - started)
    except (OSError, asyncio.TimeoutError) as exc:
        return ProbeResult(target, False, error=_why(exc))
    finally:
        sock.close()


CHECKS = {"tcp": probe_tcp, "ssh_banner": probe_ssh_banner, "http": probe_http, "tls": probe_tls,
          "icmp": probe_icmp}


async def run_probes(target_list: list[Target], timeout: float = 5.0, concurrency: int = 50) -> list[ProbeResult]:
    gate = asyncio.Semaphore(concurrency)

    async def one(target: Target) -> ProbeResult:
        async with gate:
            try:
                return await CHECKS[target.check](target, timeout)
            except Exception as exc:  # a probe's bug is that probe's failed result, not the round's end
                return ProbeResult(target, False, error=f"internal_error: {type(exc).__name__}: {exc}")

    results = await asyncio.gather(*(one(t) for t in target_list))
    for result in results:
        export(result)
    PROBE_ROUND.set(time.time())
    return list(results)


def export(result: ProbeResult) -> None:
    t = result.target
    labels = dict(agency=t.agency, asset=t.asset, check=t.check, port=str(t.port))
    PROBE_UP.labels(**labels).set(1 if result.up else 0)
    if result.latency is not None:
        PROBE_LATENCY.labels(**labels).set(result.latency)
    if result.status_code is not None:
        PROBE_HTTP_STATUS.labels(t.agency, t.asset, str(t.port)).set(result.status_code)
    if result.not_after:
        TLS_EXPIRY.labels(t.agency, t.asset, str(t.port)).set(ecs.parse_time(result.not_after).timestamp())
    outcome = "up" if result.up else ("not_permitted" if (result.error or "").startswith("not_permitted") else "down")
    PROBES_RUN.labels(t.check, outcome).inc()


def to_event(result: ProbeResult, inventory: Inventory) -> dict:
    """The probe result as an ECS event, stored beside the logs."""
    t = result.target
    doc: dict = {"@timestamp": result.at}
    ecs.put(doc, "event.kind", "metric")
    ecs.put(doc, "event.module", "soc")
    ecs.put(doc, "event.dataset", "soc.probe")
    ecs.put(doc, "event.category", ["network"])
    ecs.put(doc, "event.type", ["connection" if t.check in ("tcp", "ssh_banner", "tls") else "info"])
    ecs.put(doc, "event.action", f"probe_{t.check}")
    ecs.put(doc, "event.outcome", "success" if result.up else "failure")
    if result.latency is not None:
        ecs.put(doc, "event.duration", int(result.latency * 1e9))
    ecs.put(doc, "destination.ip", t.address)
    if t.port:
        ecs.put(doc, "destination.port", t.port)
    ecs.put(doc, "network.transport", "icmp" if t.check == "icmp" else "tcp")
    ecs.put(doc, "host.name", t.hostname)
    ecs.put(doc, "observer.type", "soc-probe")
    if t.check == "http":
        ecs.put(doc, "url.full", f"{t.scheme}://{_host(t.address)}:{t.port}/")
    ecs.put_if(doc, "http.response.status_code", result.status_code)
    if result.not_after:
        ecs.put(doc, "tls.server.not_after", result.not_after)
        ecs.put_if(doc, "tls.server.subject", result.subject)
        ecs.put_if(doc, "tls.server.issuer", result.issuer)
    agency = inventory.agencies.get(t.agency)
    ecs.put(doc, "organization.id", t.agency)
    if agency is not None:
        ecs.put(doc, "organization.name", agency.name_en)
    ecs.put(doc, "soc.asset.id", t.asset)
    probe = {"check": t.check, "up": result.up}
    if result.latency is not None:
        probe["latency_ms"] = round(result.latency * 1000, 3)
    if result.days_left is not None:
        probe["days_left"] = round(result.days_left, 2)
    if result.banner:
        probe["banner"] = result.banner
    if result.error:
        probe["error"] = result.error[:500]
    ecs.put(doc, "soc.probe", probe)
    ecs.put(doc, "message", f"probe {t.check} {t.hostname} {t.address}:{t.port} "
                            f"{'up' if result.up else 'down'}{': ' + result.error if result.error else ''}")
    ecs.put(doc, "event.created", ecs.now_iso())
    ecs.put(doc, "ecs.version", ecs.ECS_VERSION)
    ecs.put(doc, "event.id", ecs.event_id("probe", t.asset, t.check, str(t.port), result.at))
    return doc


def _why(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timeout"
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:300]


async def _closed(writer) -> None:
    try:
        await writer.wait_closed()
    except (OSError, ssl.SSLError):
        pass
