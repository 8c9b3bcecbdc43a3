"""Hosts for the assessment tests, in a network namespace of their own with real servers (needs root).

    root namespace (the scanner) .1 ──veth── soc-as-XXXX: .2 web host (HTTPS on 443, an extra listener on 8081)
                                                          .3 SSH host (Debian's sshd on 22)
                                                          .4, .5 canaries (any connection to them is logged)

A random 10.A.B.0/29 no route of the host uses; traffic never leaves the namespace. ``weak_web()`` /
``fixed_web()`` and ``weak_ssh()`` / ``fixed_ssh()`` restart the servers planted or fixed; ``close()`` stops every
process and deletes the namespace.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import yaml

from tests.netns_firewall import LabUnavailable, _free_subnet, _run, capability_problem  # noqa: F401

WEB_HOST = "web-01.lab.example"
SSH_HOST = "ssh-01.lab.example"

WEB_SERVER = r"""
import ssl, sys, http.server
mode, address, cert, key = sys.argv[1:5]
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        if mode == "fixed":
            self.send_header("Strict-Transport-Security", "max-age=31536000")
            self.send_header("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'")
            self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        self.wfile.write(b"portal")
    def version_string(self):
        return "web" if mode == "fixed" else super().version_string()
    def log_message(self, *args):
        pass
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
if mode == "fixed":
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers("ECDHE+AESGCM")
else:  # TLS 1.0 and 1.1 on, and a suite without forward secrecy
    ctx.minimum_version = ssl.TLSVersion.TLSv1
    ctx.set_ciphers("ECDHE+AESGCM:AES128-SHA:@SECLEVEL=0")
ctx.load_cert_chain(cert, key)
server = http.server.ThreadingHTTPServer((address, 443), Handler)
server.socket = ctx.wrap_socket(server.socket, server_side=True)
print("listening", flush=True)
server.serve_forever()
"""

LISTENER = r"""
import socket, sys, threading
address, log = sys.argv[1], sys.argv[2]
ports = [int(p) for p in sys.argv[3:]]
def serve(port):
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((address, port))
    srv.listen(16)
    while True:
        conn, peer = srv.accept()
        with open(log, "a") as f:
            f.write(f"{peer[0]} -> {address}:{port}\n")
        conn.close()
for port in ports:
    threading.Thread(target=serve, args=(port,), daemon=True).start()
print("listening", flush=True)
threading.Event().wait()
"""

SSHD_COMMON = """Port 22
ListenAddress {address}
HostKey {host_key}
HostKeyAlgorithms ssh-ed25519
PidFile {pid}
UsePAM no
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
LogLevel ERROR
"""
SSHD_WEAK = """KexAlgorithms sntrup761x25519-sha512@openssh.com,diffie-hellman-group14-sha1
Ciphers aes256-gcm@openssh.com,aes128-cbc
MACs hmac-sha2-256-etm@openssh.com,hmac-sha1
"""
SSHD_FIXED = """KexAlgorithms sntrup761x25519-sha512@openssh.com
Ciphers aes256-gcm@openssh.com,aes128-gcm@openssh.com,aes256-ctr
MACs hmac-sha2-256-etm@openssh.com,hmac-sha2-512-etm@openssh.com
"""


def _certificates(workdir: Path) -> None:
    """weak.pem: self-signed, expired, for another name. good.pem: signed by a test CA, valid, for the web host."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.timezone.utc)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def write(stem: str, cert, key) -> None:
        (workdir / f"{stem}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (workdir / f"{stem}.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                                serialization.PrivateFormat.PKCS8,
                                                                serialization.NoEncryption()))

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    weak = (x509.CertificateBuilder().subject_name(name("old.example")).issuer_name(name("old.example"))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=400)).not_valid_after(now - dt.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("old.example")]), critical=False)
            .sign(key, hashes.SHA256()))
    write("weak", weak, key)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("Lab CA")).issuer_name(name("Lab CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=365))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True).sign(ca_key, hashes.SHA256()))
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder().subject_name(name(WEB_HOST)).issuer_name(ca.subject)
            .public_key(leaf_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=90))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(WEB_HOST)]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    write("good", leaf, leaf_key)
    with open(workdir / "good.pem", "ab") as chain:
        chain.write(ca.public_bytes(serialization.Encoding.PEM))


class AssessmentLab:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.suffix = secrets.token_hex(3)
        self.ns = f"soc-as-{self.suffix}"
        net = _free_subnet()
        self.subnet = ipaddress.ip_network(f"{net.network_address}/29")
        base = int(self.subnet.network_address)
        self.scanner, self.web, self.ssh, self.other, self.stray = (str(ipaddress.ip_address(base + n))
                                                                    for n in (1, 2, 3, 4, 5))
        self.canary_log = workdir / "canary.log"
        self.procs: dict[str, subprocess.Popen] = {}
        self.made = False

    # --- building ---------------------------------------------------------------------------------------------
    def start(self) -> "AssessmentLab":
        try:
            _run("ip", "netns", "add", self.ns)
            self.made = True
            root, inner = f"sa{self.suffix}r", f"sa{self.suffix}n"
            _run("ip", "link", "add", root, "type", "veth", "peer", "name", inner)
            _run("ip", "link", "set", inner, "netns", self.ns)
            _run("ip", "addr", "add", f"{self.scanner}/29", "dev", root)
            _run("ip", "link", "set", root, "up")
            self._ns("ip", "link", "set", "lo", "up")
            for address in (self.web, self.ssh, self.other, self.stray):
                self._ns("ip", "addr", "add", f"{address}/29", "dev", inner)
            self._ns("ip", "link", "set", inner, "up")
            _certificates(self.workdir)
            _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.workdir / "ssh_host_ed25519_key"))
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
            for address in (self.other, self.stray):
                self._spawn(f"canary-{address}", [sys.executable, "-c", LISTENER, address, str(self.canary_log),
                                                  "22", "80", "443", "8080"], address, 443)
            self.canary_log.unlink(missing_ok=True)  # the start-up probes above were ours
        except BaseException:
            self.close()
            raise
        return self

    def _ns(self, *args: str) -> subprocess.CompletedProcess:
        return _run("ip", "netns", "exec", self.ns, *args)

    def _spawn(self, name: str, argv: list[str], address: str, port: int) -> None:
        self.stop(name)
        log = open(self.workdir / f"{name}.log", "ab")
        proc = subprocess.Popen(["ip", "netns", "exec", self.ns, *argv], stdout=subprocess.DEVNULL, stderr=log)
        log.close()
        self.procs[name] = proc
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited: {(self.workdir / f'{name}.log').read_text()}")
            probe = subprocess.run(["ip", "netns", "exec", self.ns, sys.executable, "-c",
                                    "import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 1)",
                                    address, str(port)], capture_output=True)
            if probe.returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError(f"{name} did not listen on {address}:{port}")

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)

    # --- planting and fixing ------------------------------------------------------------------------------------
    def web_server(self, mode: str) -> None:
        cert = "weak" if mode == "weak" else "good"
        self._spawn("web", [sys.executable, "-c", WEB_SERVER, mode, self.web, str(self.workdir / f"{cert}.pem"),
                            str(self.workdir / f"{cert}.key")], self.web, 443)

    def extra_listener(self, on: bool) -> None:
        if on:
            self._spawn("extra", [sys.executable, "-c", LISTENER, self.web, str(self.workdir / "extra.log"), "8081"],
                        self.web, 8081)
        else:
            self.stop("extra")

    def ssh_server(self, mode: str) -> None:
        config = self.workdir / f"sshd_{mode}.conf"
        config.write_text(SSHD_COMMON.format(address=self.ssh, host_key=self.workdir / "ssh_host_ed25519_key",
                                             pid=self.workdir / "sshd.pid")
                          + (SSHD_WEAK if mode == "weak" else SSHD_FIXED))
        self._spawn("sshd", ["/usr/sbin/sshd", "-f", str(config), "-D", "-e"], self.ssh, 22)

    def ssh_banner(self) -> str:
        out = self._ns(sys.executable, "-c", "import socket,sys; s=socket.create_connection((sys.argv[1], 22), 5); "
                       "print(s.recv(256).decode().strip())", self.ssh)
        return out.stdout.strip()

    def canary_hits(self) -> str:
        return self.canary_log.read_text() if self.canary_log.exists() else ""

    def inventory(self, path: Path) -> Path:
        doc = {
            "province": {"id": "province", "name_vi": "Tỉnh thử", "name_en": "Test province", "kind": "province"},
            "agencies": [
                {"id": "lab", "name_vi": "Phòng thử", "name_en": "Lab agency", "kind": "department",
                 "parent": "province", "networks": [{"cidr": str(self.subnet)}]},
                {"id": "other", "name_vi": "Sở khác", "name_en": "Another agency", "kind": "department",
                 "parent": "province"}],
            "assets": [
                {"id": "lab-web-01", "hostname": WEB_HOST, "kind": "server", "agency": "lab",
                 "addresses": [self.web], "services": ["https"]},
                {"id": "lab-ssh-01", "hostname": SSH_HOST, "kind": "server", "agency": "lab",
                 "addresses": [self.ssh], "services": ["ssh"]},
                # In the allowed network, but of an agency the configuration does not allow.
                {"id": "other-srv-01", "hostname": "other-srv-01", "kind": "server", "agency": "other",
                 "addresses": [self.other], "services": ["https"]},
            ],
        }
        path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
        return path

    # --- tearing down -------------------------------------------------------------------------------------------
    def close(self) -> None:
        for name in list(self.procs):
            self.stop(name)
        if self.made:
            for pid in _run("ip", "netns", "pids", self.ns, check=False).stdout.split():
                try:
                    import os

                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            _run("ip", "netns", "del", self.ns, check=False)
            self.made = False
