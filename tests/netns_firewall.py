"""A real Linux firewall for the playbook tests: network namespaces joined by veth pairs, nftables and Debian's sshd.

    root namespace (the suite) ──mgmt veth──▶ soc-fw-XXXX (ip forwarding, nftables, sshd on the management address)
    soc-atk-XXXX (attacker + a second, innocent source) ──veth──▶ soc-fw-XXXX ──veth──▶ soc-srv-XXXX (TCP listener)

Every name carries a random suffix and every address sits in a random 10.A.B.0/24 that no route of the host uses,
so parallel sessions do not collide. Only the management /30 is reachable from the root namespace; traffic never
leaves the namespaces this helper creates. ``close()`` kills every process it started and deletes the namespaces
(their veths go with them), and is safe to call twice or after a half-finished ``start()``.

Both sshds present one ed25519 host key; ``known_hosts`` (in the work folder) pins it for both ports, as
`soc devices trust` would, so tests that are not about pinning pass it as ``known_hosts_file``.
``rotate_host_key()`` gives the firewall a new host key (as an impostor, or a reinstalled device, would present).
"""

from __future__ import annotations

import ipaddress
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

PROBE = r"""
import socket, sys
src, dst, port, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
s = socket.socket()
s.settimeout(timeout)
s.bind((src, 0))
try:
    s.connect((dst, port))
    s.sendall(b"hello\n")
    print("open" if s.recv(16).startswith(b"ok") else "odd")
except socket.timeout:
    print("timeout")
except ConnectionRefusedError:
    print("refused")
except OSError as exc:
    print("error", exc.errno)
"""

LISTENER = r"""
import socket, sys
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((sys.argv[1], int(sys.argv[2])))
srv.listen(64)
print("listening", flush=True)
while True:
    conn, _ = srv.accept()
    try:
        conn.settimeout(2)
        conn.recv(16)
        conn.sendall(b"ok\n")
    except OSError:
        pass
    finally:
        conn.close()
"""

# A firmware that says yes and does nothing: `nft add element` and `nft delete element` exit 0 without a change.
FAULTY_NFT = """#!/bin/sh
case "$*" in
  *"add element"*|*"delete element"*) exit 0 ;;
esac
exec /usr/sbin/nft "$@"
"""


class LabUnavailable(Exception):
    """This machine cannot create the namespace firewall (not root, no netns, a tool missing)."""


def capability_problem() -> str | None:
    if os.geteuid() != 0:
        return "the namespace firewall needs root (network namespaces, veth pairs, sshd)"
    for tool in ("ip", "nft", "ssh-keygen"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            return f"{tool} is not installed (Debian: iproute2, nftables, openssh-client)"
    if not Path("/usr/sbin/sshd").exists():
        return "/usr/sbin/sshd is not installed (Debian: openssh-server)"
    probe = f"soc-cap-{secrets.token_hex(3)}"
    result = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if result.returncode != 0:
        return f"cannot create a network namespace: {result.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(list(args), capture_output=True, text=True)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


def _used_networks() -> list[ipaddress.IPv4Network]:
    nets = []
    for line in _run("ip", "-4", "route", "show", "table", "all", check=False).stdout.splitlines():
        word = line.split()[0] if line.split() else ""
        if word in ("local", "broadcast", "unreachable", "blackhole", "prohibit"):
            word = line.split()[1]
        try:
            nets.append(ipaddress.ip_network(word, strict=False))
        except ValueError:
            continue
    for line in _run("ip", "-4", "-o", "addr", check=False).stdout.splitlines():
        parts = line.split()
        if "inet" in parts:
            nets.append(ipaddress.ip_interface(parts[parts.index("inet") + 1]).network)
    return nets


def _free_subnet() -> ipaddress.IPv4Network:
    used = _used_networks()
    for _ in range(200):
        candidate = ipaddress.ip_network(f"10.{random.randint(150, 249)}.{random.randint(0, 255)}.0/24")
        if not any(candidate.overlaps(n) for n in used if n.prefixlen > 0):
            return candidate
    raise LabUnavailable("no free 10.x /24 for the namespace firewall")


@dataclass
class NamespaceFirewall:
    workdir: Path
    suffix: str = field(default_factory=lambda: secrets.token_hex(3))
    ssh_port: int = 22
    processes: list[subprocess.Popen] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        net = _free_subnet()
        base = int(net.network_address)
        addr = lambda n: str(ipaddress.ip_address(base + n))  # noqa: E731
        self.subnet = net
        self.fw_ns, self.atk_ns, self.srv_ns = (f"soc-fw-{self.suffix}", f"soc-atk-{self.suffix}",
                                                f"soc-srv-{self.suffix}")
        # management /30: .1 in the root namespace (the suite, "the SOC itself"), .2 on the firewall
        self.soc_address, self.management_address = addr(1), addr(2)
        # attacker link .64/27: firewall .65, attacker .70, an innocent neighbour .71
        self.fw_outside, self.attacker, self.bystander = addr(65), addr(70), addr(71)
        # protected link .128/27: firewall .129, server .140
        self.fw_inside, self.server = addr(129), addr(140)
        self.server_port = 8080
        self.key_file = self.workdir / "id_ed25519"
        self.faulty_port = 2222
        self.host_key = self.workdir / "ssh_host_ed25519_key"
        self.known_hosts = self.workdir / "known_hosts"  # the host key pinned for both sshds
        self._sshds: dict[str, tuple[subprocess.Popen, Path, int]] = {}

    # --- building ----------------------------------------------------------------------------------------------
    def start(self) -> "NamespaceFirewall":
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def _veth(self, left: str, left_ns: str | None, right: str, right_ns: str) -> None:
        _run("ip", "link", "add", left, "type", "veth", "peer", "name", right)
        if left_ns:
            _run("ip", "link", "set", left, "netns", left_ns)
        _run("ip", "link", "set", right, "netns", right_ns)

    def _ns(self, ns: str, *args: str) -> subprocess.CompletedProcess:
        return _run("ip", "netns", "exec", ns, *args)

    def _build(self) -> None:
        s = self.suffix
        for ns in (self.fw_ns, self.atk_ns, self.srv_ns):
            _run("ip", "netns", "add", ns)
            self.namespaces.append(ns)
            self._ns(ns, "ip", "link", "set", "lo", "up")
        mgmt_root, mgmt_fw = f"sm{s}r", f"sm{s}f"
        self._veth(mgmt_root, None, mgmt_fw, self.fw_ns)
        _run("ip", "addr", "add", f"{self.soc_address}/30", "dev", mgmt_root)
        _run("ip", "link", "set", mgmt_root, "up")
        self._ns(self.fw_ns, "ip", "addr", "add", f"{self.management_address}/30", "dev", mgmt_fw)
        self._ns(self.fw_ns, "ip", "link", "set", mgmt_fw, "up")
        self._veth(f"sa{s}a", self.atk_ns, f"sa{s}f", self.fw_ns)
        self._ns(self.atk_ns, "ip", "addr", "add", f"{self.attacker}/27", "dev", f"sa{s}a")
        self._ns(self.atk_ns, "ip", "addr", "add", f"{self.bystander}/27", "dev", f"sa{s}a")
        self._ns(self.atk_ns, "ip", "link", "set", f"sa{s}a", "up")
        self._ns(self.atk_ns, "ip", "route", "add", "default", "via", self.fw_outside)
        self._ns(self.fw_ns, "ip", "addr", "add", f"{self.fw_outside}/27", "dev", f"sa{s}f")
        self._ns(self.fw_ns, "ip", "link", "set", f"sa{s}f", "up")
        self._veth(f"ss{s}s", self.srv_ns, f"ss{s}f", self.fw_ns)
        self._ns(self.srv_ns, "ip", "addr", "add", f"{self.server}/27", "dev", f"ss{s}s")
        self._ns(self.srv_ns, "ip", "link", "set", f"ss{s}s", "up")
        self._ns(self.srv_ns, "ip", "route", "add", "default", "via", self.fw_inside)
        self._ns(self.fw_ns, "ip", "addr", "add", f"{self.fw_inside}/27", "dev", f"ss{s}f")
        self._ns(self.fw_ns, "ip", "link", "set", f"ss{s}f", "up")
        self._ns(self.fw_ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        # The firewall's own filter table, as an admin would have it; the suite adds its table beside it.
        self._ns(self.fw_ns, "nft", "add table inet filter; add chain inet filter forward "
                 "{ type filter hook forward priority 0; policy accept; }")
        self._start_listener()
        self._start_sshd()

    def _start_listener(self) -> None:
        proc = subprocess.Popen(["ip", "netns", "exec", self.srv_ns, sys.executable, "-c", LISTENER, self.server,
                                 str(self.server_port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.processes.append(proc)
        line = proc.stdout.readline()
        if "listening" not in line:
            raise RuntimeError(f"listener did not start: {proc.stderr.read()}")

    def _sshd_config(self, name: str, port: int, extra: str = "") -> Path:
        config = self.workdir / f"{name}_config"
        config.write_text(f"""Port {port}
ListenAddress {self.management_address}
HostKey {self.host_key}
PidFile {self.workdir / f'{name}.pid'}
AuthorizedKeysFile {self.workdir / 'authorized_keys'}
PermitRootLogin prohibit-password
AllowUsers root
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PrintMotd no
PrintLastLog no
UseDNS no
LogLevel ERROR
{extra}
""")
        return config

    def _start_sshd(self) -> None:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation directory
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.host_key))
        self.write_known_hosts(self.known_hosts)
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"soc-test-{self.suffix}", "-f",
             str(self.key_file))
        (self.workdir / "authorized_keys").write_text((self.workdir / "id_ed25519.pub").read_text())
        self._spawn_sshd(self._sshd_config("sshd", self.ssh_port), self.ssh_port)
        # A second sshd on the same firewall whose `nft` acknowledges changes without making them (a faulty
        # device): the test of verify-then-roll-back talks to it.
        fakebin = self.workdir / "fakebin"
        fakebin.mkdir()
        (fakebin / "nft").write_text(FAULTY_NFT)
        (fakebin / "nft").chmod(0o755)
        shell = f"env PATH={fakebin}:/usr/sbin:/usr/bin:/sbin:/bin /bin/bash --noprofile --norc -i"
        self._spawn_sshd(self._sshd_config("sshd_faulty", self.faulty_port, f"ForceCommand {shell}"),
                         self.faulty_port)

    def _spawn_sshd(self, config: Path, port: int) -> None:
        with open(self.workdir / f"{config.stem}.log", "ab") as log:
            proc = subprocess.Popen(["ip", "netns", "exec", self.fw_ns, "/usr/sbin/sshd", "-f", str(config), "-D",
                                     "-e"], stdout=subprocess.DEVNULL, stderr=log)
        self.processes.append(proc)
        self._sshds[config.stem] = (proc, config, port)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {(self.workdir / f'{config.stem}.log').read_text()}")
            try:
                with socket.create_connection((self.management_address, port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("sshd did not start listening in time")

    # --- host keys --------------------------------------------------------------------------------------------
    def host_key_fingerprint(self) -> str:
        """The sshds' host key fingerprint as ``ssh-keygen -lf`` prints it: ``SHA256:…``."""
        return _run("ssh-keygen", "-lf", f"{self.host_key}.pub").stdout.split()[1]

    def known_hosts_lines(self) -> str:
        """known_hosts lines pinning the host key for both sshds (port 22 bare, any other port as [host]:port)."""
        kind, blob = Path(f"{self.host_key}.pub").read_text().split()[:2]
        names = [self.management_address if port == 22 else f"[{self.management_address}]:{port}"
                 for port in (self.ssh_port, self.faulty_port)]
        return "".join(f"{name} {kind} {blob}\n" for name in names)

    def write_known_hosts(self, path: Path) -> Path:
        path.write_text(self.known_hosts_lines())
        return path

    def rotate_host_key(self) -> str:
        """Give the firewall a new host key and restart its sshds with it (sessions already open stay up, as on a
        real device). Returns the new fingerprint. ``known_hosts`` keeps the old key."""
        for suffix in ("", ".pub"):
            Path(f"{self.host_key}{suffix}").unlink(missing_ok=True)
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.host_key))
        for name, (proc, config, port) in list(self._sshds.items()):
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
            self.processes.remove(proc)
            self._spawn_sshd(config, port)
        return self.host_key_fingerprint()

    # --- using ------------------------------------------------------------------------------------------------
    def connect(self, source: str, timeout: float = 1.0) -> str:
        """A TCP connection from `source` (inside the attacker namespace) to the protected server's listener:
        'open' if it went through, 'timeout' if something dropped it."""
        result = _run("ip", "netns", "exec", self.atk_ns, sys.executable, "-c", PROBE, source, self.server,
                      str(self.server_port), str(timeout), check=False)
        return result.stdout.strip() or f"probe failed: {result.stderr.strip()}"

    def nft(self, *args: str) -> str:
        return self._ns(self.fw_ns, "nft", *args).stdout

    def blocked_elements(self) -> str:
        result = _run("ip", "netns", "exec", self.fw_ns, "nft", "list", "set", "inet", "soc", "block4", check=False)
        return result.stdout if result.returncode == 0 else ""

    def inventory(self, path: Path, *, never_block: list[str] | None = None, core: bool = False) -> Path:
        """A small inventory: one agency owning the protected server, the namespace firewall as a managed device,
        and a second entry for the faulty sshd on the same firewall."""
        agency_net = str(ipaddress.ip_network(f"{self.server}/27", strict=False))
        doc = {
            "province": {"id": "province", "name_vi": "Tỉnh thử", "name_en": "Test province", "kind": "province"},
            "agencies": [{"id": "lab", "name_vi": "Phòng thử", "name_en": "Lab agency", "kind": "department",
                          "parent": "province", "networks": [{"cidr": agency_net, "zone": "internal"}]}],
            "assets": [
                # The protected server also sends its own logs from the suite's loopback (127.0.0.1): lines about
                # itself over TCP are trusted evidence; a sender the inventory does not know (127.0.0.2) is not.
                {"id": "lab-srv-01", "hostname": "lab-srv-01", "kind": "server", "agency": "lab",
                 "addresses": [self.server, "127.0.0.1"], "services": ["ssh"]},
                # The agency's syslog relay: it may name the agency's hosts, but cannot vouch for lines it forwards.
                {"id": "lab-relay-01", "hostname": "lab-relay-01", "kind": "server", "agency": "lab",
                 "addresses": ["127.0.0.3"], "role": "syslog-relay"},
                {"id": "lab-fw-01", "hostname": "lab-fw-01", "kind": "firewall", "agency": "lab",
                 "addresses": [self.management_address], "role": "wan-edge", "vendor": "Debian",
                 "model": "nftables"},
                {"id": "lab-fw-faulty", "hostname": "lab-fw-faulty", "kind": "firewall", "agency": "lab",
                 "addresses": [], "role": "test-faulty", "vendor": "Debian", "model": "nftables (nft that lies)"},
            ],
            "devices": [
                {"id": "lab-fw-01", "asset": "lab-fw-01", "management_address": self.management_address,
                 "port": self.ssh_port, "device_type": "linux", "driver": "nftables", "core": core,
                 "credentials": {"username": "root", "key_file": str(self.key_file)}},
                {"id": "lab-fw-faulty", "asset": "lab-fw-faulty", "management_address": self.management_address,
                 "port": self.faulty_port, "device_type": "linux", "driver": "nftables",
                 "credentials": {"username": "root", "key_file": str(self.key_file)}},
            ],
            # The protected server's network is the government's; the attacker's is outside.
            "government_networks": [agency_net],
            "never_block": never_block if never_block is not None else [f"{self.server}/32"],
        }
        path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
        return path

    # --- tearing down -----------------------------------------------------------------------------------------
    def close(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.processes:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
            for stream in (proc.stdout, proc.stderr):
                if stream:
                    stream.close()
        self.processes.clear()
        for ns in reversed(self.namespaces):
            # Any process still inside (an sshd child) keeps the namespace alive: kill what `ip netns pids` lists.
            pids = _run("ip", "netns", "pids", ns, check=False).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            _run("ip", "netns", "del", ns, check=False)
        self.namespaces.clear()


def need_lab() -> None:
    """Skip loudly here, fail in CI (CI=true), when this machine cannot build the namespace firewall."""
    import pytest

    problem = capability_problem()
    if problem is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"the namespace firewall tests must run in CI, but: {problem}")
    pytest.skip(f"!!! NAMESPACE FIREWALL TESTS SKIPPED: {problem} !!!")
