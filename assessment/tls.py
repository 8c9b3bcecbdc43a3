"""TLS with sslyze (its Python API): protocol versions, cipher suites and the certificate of a port.

- SSL 2.0 / 3.0 accepted: high; TLS 1.0 / 1.1 accepted: medium (one finding per protocol version).
- A weak cipher suite, one finding per suite whatever the versions it is offered under: broken primitives (NULL,
  anonymous, EXPORT, RC4, DES, 3DES, MD5, keys under 128 bits): high; static RSA key exchange (no forward secrecy):
  medium.
- The leaf certificate: expired (high), not yet valid (medium), self-signed (medium), a name that matches none of
  the asset's names (its inventory host name and certificate names, or its address; medium), an RSA key under
  2048 bits (medium), a SHA-1 signature (medium).

sslyze connects to the checked address (``ip_address``) and sends the asset's host name as SNI; it resolves nothing.
"""

from __future__ import annotations

import datetime as dt
import ipaddress

from assessment.findings import Observation
from assessment.nmap import ToolError
from assessment.scope import Target, check_allowed
from assessment.settings import AssessmentSettings

_LEGACY = {"ssl_2_0_cipher_suites": ("SSL 2.0", "high"), "ssl_3_0_cipher_suites": ("SSL 3.0", "high"),
           "tls_1_0_cipher_suites": ("TLS 1.0", "medium"), "tls_1_1_cipher_suites": ("TLS 1.1", "medium")}
_ALL = [*_LEGACY, "tls_1_2_cipher_suites", "tls_1_3_cipher_suites"]
_BROKEN = ("NULL", "ANON", "EXPORT", "RC4", "3DES", "DES", "MD5")


def cipher_weakness(name: str, key_size: int) -> tuple[str, str] | None:
    """(severity, why) for an IANA cipher suite name that is weak, else None."""
    upper = name.upper()
    for word in _BROKEN:
        if f"_{word}" in upper or upper.startswith(f"{word}_"):
            return "high", f"uses {word}"
    if 0 < key_size < 128:
        return "high", f"{key_size}-bit key"
    if upper.startswith("TLS_RSA_WITH_") or upper.startswith("SSL_RSA_WITH_"):
        return "medium", "static RSA key exchange: no forward secrecy"
    return None


def _names_match(cert, names: tuple[str, ...], address: str) -> bool:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    dns: list[str] = []
    ips: list[str] = []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = [d.lower() for d in san.get_values_for_type(x509.DNSName)]
        ips = [str(i) for i in san.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        dns = [a.value.lower() for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
               if isinstance(a.value, str)]
    if str(ipaddress.ip_address(address)) in ips:
        return True
    for name in names:
        for pattern in dns:
            if pattern == name:
                return True
            if pattern.startswith("*.") and "." in name and name.split(".", 1)[1] == pattern[2:]:
                return True
    return False


def certificate_findings(cert, target: Target, port: int, now: dt.datetime) -> list[Observation]:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import rsa

    out = []
    subject, issuer = cert.subject.rfc4514_string(), cert.issuer.rfc4514_string()
    base = {"tool": "sslyze", "subject": subject, "issuer": issuer, "serial": format(cert.serial_number, "x"),
            "not_before": cert.not_valid_before_utc.isoformat(), "not_after": cert.not_valid_after_utc.isoformat()}

    def add(detail: str, severity: str, title: str, **extra) -> None:
        out.append(Observation("tls", f"{port}/certificate/{detail}", title, severity, port, dict(base, **extra)))

    if cert.not_valid_after_utc < now:
        add("expired", "high", f"TLS certificate on port {port} expired on {cert.not_valid_after_utc.date()}")
    if cert.not_valid_before_utc > now:
        add("not-yet-valid", "medium", f"TLS certificate on port {port} is not valid before "
                                       f"{cert.not_valid_before_utc.date()}")
    if cert.subject == cert.issuer:
        add("self-signed", "medium", f"TLS certificate on port {port} is self-signed")
    if not _names_match(cert, target.names, target.address):
        add("name-mismatch", "medium", f"TLS certificate on port {port} names none of {', '.join(target.names)}",
            expected_names=list(target.names))
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < 2048:
        add("weak-key", "medium", f"TLS certificate on port {port} has a {key.key_size}-bit RSA key")
    algorithm = cert.signature_hash_algorithm
    if algorithm is not None and isinstance(algorithm, (hashes.SHA1, hashes.MD5)):
        add("weak-signature", "medium", f"TLS certificate on port {port} is signed with {algorithm.name}")
    return out


def assess(settings: AssessmentSettings, target: Target, port: int,
           now: dt.datetime | None = None) -> list[Observation]:
    from sslyze import (Scanner, ScanCommand, ScanCommandAttemptStatusEnum, ServerNetworkLocation,
                        ServerScanRequest, ServerScanStatusEnum)

    now = now or dt.datetime.now(dt.timezone.utc)
    address = check_allowed(settings, target.address)
    location = ServerNetworkLocation(hostname=target.hostname, port=port, ip_address=address)
    commands = {ScanCommand.CERTIFICATE_INFO, ScanCommand.SSL_2_0_CIPHER_SUITES, ScanCommand.SSL_3_0_CIPHER_SUITES,
                ScanCommand.TLS_1_0_CIPHER_SUITES, ScanCommand.TLS_1_1_CIPHER_SUITES,
                ScanCommand.TLS_1_2_CIPHER_SUITES, ScanCommand.TLS_1_3_CIPHER_SUITES}
    scanner = Scanner(per_server_concurrent_connections_limit=settings.tls_max_connections,
                      concurrent_server_scans_limit=1)
    scanner.queue_scans([ServerScanRequest(server_location=location, scan_commands=commands)])
    results = list(scanner.get_results())
    if not results or results[0].scan_status != ServerScanStatusEnum.COMPLETED:
        trace = results[0].connectivity_error_trace if results else None
        raise ToolError(f"sslyze could not reach {address}:{port}: {trace or 'no result'}")
    scan = results[0].scan_result
    out: list[Observation] = []
    weak: dict[str, dict] = {}
    for attribute in _ALL:
        attempt = getattr(scan, attribute)
        if attempt.status != ScanCommandAttemptStatusEnum.COMPLETED:
            raise ToolError(f"sslyze {attribute} on {address}:{port} failed: {attempt.error_reason}")
        accepted = attempt.result.accepted_cipher_suites
        version = attempt.result.tls_version_used.name
        if accepted and attribute in _LEGACY:
            label, severity = _LEGACY[attribute]
            out.append(Observation("tls", f"{port}/protocol/{label}", f"{label} accepted on port {port}", severity,
                                   port, {"tool": "sslyze", "protocol": version,
                                          "accepted_cipher_suites": [c.cipher_suite.name for c in accepted]}))
        for suite in accepted:
            cipher = suite.cipher_suite
            why = cipher_weakness(cipher.name, cipher.key_size)
            if why:
                entry = weak.setdefault(cipher.name, {"severity": why[0], "why": why[1], "protocols": [],
                                                      "openssl_name": cipher.openssl_name,
                                                      "key_size": cipher.key_size})
                entry["protocols"].append(version)
    for name, entry in sorted(weak.items()):
        out.append(Observation("tls", f"{port}/cipher/{name}", f"Weak cipher suite {name} on port {port} "
                                                                f"({entry['why']})", entry["severity"], port,
                               {"tool": "sslyze", "cipher_suite": name, "openssl_name": entry["openssl_name"],
                                "key_size": entry["key_size"], "protocols": entry["protocols"],
                                "why": entry["why"]}))
    certificate = scan.certificate_info
    if certificate.status != ScanCommandAttemptStatusEnum.COMPLETED:
        raise ToolError(f"sslyze certificate_info on {address}:{port} failed: {certificate.error_reason}")
    deployments = certificate.result.certificate_deployments
    if deployments and deployments[0].received_certificate_chain:
        out.extend(certificate_findings(deployments[0].received_certificate_chain[0], target, port, now))
    return out
