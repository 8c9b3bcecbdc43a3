"""Syslog over TLS (RFC 5425): the TCP source's framing behind a TLS 1.2+ handshake, with an optional or required
client certificate whose verified name identifies the sender.

Each connection is accepted as plain TCP with reading paused, then upgraded with ``loop.start_tls``. That way a failed
handshake (no certificate, an untrusted one, a plain-text client, a timeout) raises here, where it can be logged with
the peer's address and counted; ``asyncio.start_server(ssl=...)`` would swallow it at debug level.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Callable

from prometheus_client import Counter

from collectors.sources.syslog import READ_CHUNK, Deliver, serve_connection
from soc.errors import ConfigError

log = logging.getLogger(__name__)

HANDSHAKE_FAILURES = Counter("soc_syslog_tls_handshake_failures", "Syslog TLS connections refused in the handshake",
                             ["reason"])

_VERIFY = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}

# OpenSSL reason codes -> a closed set of metric labels (addresses and free text never become labels).
_REASONS = {
    "PEER_DID_NOT_RETURN_A_CERTIFICATE": "no_client_certificate",
    "CERTIFICATE_VERIFY_FAILED": "bad_client_certificate",
    "SSLV3_ALERT_BAD_CERTIFICATE": "bad_client_certificate",
    "WRONG_VERSION_NUMBER": "not_tls",
    "HTTP_REQUEST": "not_tls",
    "UNSUPPORTED_PROTOCOL": "protocol_version",
    "TLSV1_ALERT_PROTOCOL_VERSION": "protocol_version",
    "NO_SHARED_CIPHER": "no_shared_cipher",
    "TLSV1_ALERT_UNKNOWN_CA": "server_certificate_refused",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN": "server_certificate_refused",
    "TLSV1_ALERT_DECRYPT_ERROR": "server_certificate_refused",
}


def _readable(path: str, key: str, source: str) -> None:
    try:
        with open(path, "rb") as handle:
            handle.read(1)
    except OSError as exc:
        raise ConfigError(source, f"syslog.{key}", f"cannot read {path}: {exc.strerror or exc}") from exc


def tls_context(cfg, source: str = "(configuration)") -> ssl.SSLContext:
    """The server context from ``SyslogConfig``; a file that is missing, unreadable or not PEM is a ConfigError that
    names the key and the file."""
    for key in ("tls_cert_file", "tls_key_file", "tls_ca_file"):
        if getattr(cfg, key):
            _readable(getattr(cfg, key), key, source)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cfg.tls_cert_file, cfg.tls_key_file)
    except ssl.SSLError as exc:
        raise ConfigError(source, "syslog.tls_cert_file", f"{cfg.tls_cert_file} with key {cfg.tls_key_file}: not a "
                          f"PEM certificate chain and its matching key ({exc.reason or exc})") from exc
    context.verify_mode = _VERIFY[cfg.tls_client_certificates]
    if cfg.tls_ca_file:
        try:
            context.load_verify_locations(cafile=cfg.tls_ca_file)
        except ssl.SSLError as exc:
            raise ConfigError(source, "syslog.tls_ca_file", f"{cfg.tls_ca_file}: no PEM CA certificate in it "
                              f"({exc.reason or exc})") from exc
    return context


def certificate_name(peercert: dict | None) -> str:
    """The sender's name in a verified certificate: its first DNS subjectAltName, else its subject CN."""
    if not peercert:
        return ""
    for kind, value in peercert.get("subjectAltName", ()):
        if kind == "DNS" and value:
            return value.lower()
    for rdn in peercert.get("subject", ()):
        for attribute, value in rdn:
            if attribute == "commonName" and value:
                return value.lower()
    return ""


def _reason(exc: BaseException) -> str:
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError, ConnectionAbortedError)):
        return "timeout"  # asyncio aborts a handshake that outlives ssl_handshake_timeout this way
    if isinstance(exc, ssl.SSLError):
        return _REASONS.get(exc.reason or "", "other")
    if isinstance(exc, (ConnectionError, EOFError, OSError)):
        return "closed"
    return "other"


class _Paused(asyncio.Protocol):
    """Holds a fresh connection, not reading, until start_tls takes it over: no ClientHello byte is consumed early."""

    def __init__(self, upgrade: Callable[[asyncio.Transport], None]) -> None:
        self.upgrade = upgrade

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.pause_reading()  # type: ignore[attr-defined]
        self.upgrade(transport)  # type: ignore[arg-type]


async def start_tls(host: str, port: int, deliver: Deliver, *, keep_bytes: int, context: ssl.SSLContext,
                    handshake_timeout: float = 10.0,
                    after_chunk: Callable[[], None] | None = None) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    connections: set[asyncio.Task] = set()  # strong references: the loop keeps only weak ones to tasks

    async def upgrade(raw: asyncio.Transport) -> None:
        peer = raw.get_extra_info("peername") or ("", 0)
        reader = asyncio.StreamReader(limit=READ_CHUNK)
        protocol = asyncio.StreamReaderProtocol(reader)
        try:
            transport = await loop.start_tls(raw, protocol, context, server_side=True,
                                             ssl_handshake_timeout=handshake_timeout)
        except Exception as exc:  # whatever the client did, the listener goes on
            reason = _reason(exc)
            HANDSHAKE_FAILURES.labels(reason=reason).inc()
            log.warning("syslog TLS handshake with %s:%s failed (%s): %s", peer[0], peer[1], reason, exc)
            raw.close()
            return
        protocol.connection_made(transport)
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        sender_name = certificate_name(transport.get_extra_info("peercert"))
        await serve_connection(reader, writer, peer, deliver, keep_bytes, transport="tls", sender_name=sender_name,
                               after_chunk=after_chunk, ends=(ssl.SSLError,))

    def track(raw: asyncio.Transport) -> None:
        task = loop.create_task(upgrade(raw))
        connections.add(task)
        task.add_done_callback(connections.discard)

    return await loop.create_server(lambda: _Paused(track), host, port)
