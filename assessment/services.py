"""What an inventory service name means on the wire: the TCP ports it exposes, and how the checks treat them.

``Asset.services`` (inventory/model.py) names services ("ssh", "https", ...). A port open on an asset that none of
its services accounts for is an unexpected open port. Names not listed here expose no port the scan can verify
(ipsec is UDP, for example).
"""

from __future__ import annotations

# service name -> (ports, kind): kind "tls" gets the TLS and HTTP-header checks over TLS, "http" the header checks,
# "ssh" the SSH check; None only counts the port as expected.
SERVICES: dict[str, tuple[tuple[int, ...], str | None]] = {
    "ssh": ((22,), "ssh"),
    "telnet": ((23,), None),
    "ftp": ((21,), None),
    "smtp": ((25, 587), None),
    "smtps": ((465,), "tls-plain"),
    "dns": ((53,), None),
    "http": ((80,), "http"),
    "https": ((443,), "tls"),
    "http-alt": ((8080,), "http"),
    "https-alt": ((8443,), "tls"),
    "anyconnect": ((443,), "tls"),
    "ipsec": ((), None),  # UDP 500/4500: not in a TCP scan
    "ldap": ((389,), None),
    "ldaps": ((636,), "tls-plain"),
    "ad": ((53, 88, 135, 139, 389, 445, 464, 636, 3268, 3269), None),
    "kerberos": ((88,), None),
    "smb": ((139, 445), None),
    "rdp": ((3389,), None),
    "winrm": ((5985, 5986), None),
    "mssql": ((1433,), None),
    "mysql": ((3306,), None),
    "postgresql": ((5432,), None),
    "oracle": ((1521,), None),
    "snmp": ((), None),  # UDP
    "syslog": ((514, 6514), None),
    "ntp": ((), None),  # UDP
    "imap": ((143,), None),
    "imaps": ((993,), "tls-plain"),
    "pop3s": ((995,), "tls-plain"),
    "antivirus": ((), None),
}


def parse_service(name: str) -> tuple[str, int | None]:
    """``https`` or ``https:8443`` (a service on a port of its own) -> (name, port or None)."""
    base, _, port = name.partition(":")
    if port:
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"service {name!r}: the port must be 1 to 65535")
        return base.lower(), int(port)
    return base.lower(), None


def expected_ports(services: list[str]) -> dict[int, str | None]:
    """port -> check kind for an asset's services."""
    out: dict[int, str | None] = {}
    for name in services:
        try:
            base, port = parse_service(name)
        except ValueError:
            continue
        ports, kind = SERVICES.get(base, ((), None))
        for p in ((port,) if port else ports):
            if out.get(p) is None:
                out[p] = kind
    return out
