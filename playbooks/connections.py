"""Sessions to managed devices: credentials by reference, pinned SSH host keys, a pool that reuses sessions,
transcripts with secrets masked.

Credentials come from the inventory's references at the moment of use (an environment variable, a key file); the
secret never enters the inventory, a log or a transcript. The pool keeps one live session per device, so a burst of
blocks on one firewall pays for one SSH login, not fifty; the device lock (locks.py) makes its use exclusive.

Every SSH device is pinned: its host key must be recorded in the suite's known-hosts file (``known_hosts_file``,
default ``<data_dir>/known_hosts``; ``soc devices trust NAME`` records it). A device whose key is not recorded is not
contacted at all, and one that presents another key is refused after the key exchange, before any credential is
sent (paramiko's RejectPolicy, this file only: never ``~/.ssh/known_hosts``); the pool reports a changed key to its
``on_host_key_mismatch`` callback, which the playbook service turns into an alert.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import logging
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from inventory.model import ManagedDevice
from playbooks.drivers.base import Driver, DriverError
from playbooks.settings import PlaybookSettings, known_hosts_path
from soc import ecs, linear_re
from soc.files import atomic_write

log = logging.getLogger(__name__)


class CredentialError(Exception):
    """A credential reference cannot be resolved. The message names the reference, never a secret."""


class DeviceUnreachable(Exception):
    pass


# --- pinned host keys --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HostKeyInfo:
    """What an operator compares: the key's type and size and its SHA256 fingerprint, as ``ssh-keygen -lf``
    prints them (``256 SHA256:… (ED25519)``)."""

    name: str  # the SSH key type: ssh-ed25519, ecdsa-sha2-nistp256, ssh-rsa
    kind: str  # ED25519, ECDSA, RSA (ssh-keygen's word)
    bits: int
    fingerprint: str  # SHA256:base64 without padding
    md5: str  # MD5:aa:bb:… (what some device consoles still show)

    @classmethod
    def of(cls, key: Any) -> "HostKeyInfo":
        blob = key.asbytes()
        sha = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
        md5 = hashlib.md5(blob, usedforsecurity=False).hexdigest()  # a display format, not a check
        return cls(key.get_name(), key.algorithm_name, key.get_bits(), f"SHA256:{sha}",
                   "MD5:" + ":".join(md5[i:i + 2] for i in range(0, 32, 2)))

    def matches(self, fingerprint: str) -> bool:
        """An operator's fingerprint (``SHA256:…`` with or without padding, or ``MD5:aa:bb:…``) names this key."""
        given = fingerprint.strip()
        if given.upper().startswith("MD5:"):
            return given[4:].lower().replace("-", ":") == self.md5[4:]
        if given.upper().startswith("SHA256:"):
            given = given[7:]
        return bool(given) and given.rstrip("=") == self.fingerprint[7:]

    def __str__(self) -> str:
        return f"{self.kind} {self.fingerprint}"


class HostKeyNotTrusted(DeviceUnreachable):
    """The device's host key is not recorded: the suite does not contact it."""

    def __init__(self, device: ManagedDevice, known_hosts: Path):
        self.device_id, self.known_hosts = device.id, known_hosts
        super().__init__(f"device {device.id} ({device.management_address}:{device.port}): its SSH host key is not "
                         f"recorded in {known_hosts}, so the suite does not connect to it; check the device and run "
                         f"`soc devices trust {device.id}`")


class HostKeyMismatch(DeviceUnreachable):
    """The device presented another host key than the recorded one: someone may be in the management path."""

    def __init__(self, device: ManagedDevice, expected: HostKeyInfo, presented: HostKeyInfo, known_hosts: Path):
        self.device_id, self.expected, self.presented, self.known_hosts = device.id, expected, presented, known_hosts
        super().__init__(f"device {device.id} ({device.management_address}:{device.port}): SSH host key CHANGED: "
                         f"recorded {expected} in {known_hosts}, presented {presented}; connection refused before "
                         f"any credential was sent. If the key was changed on purpose, check the new fingerprint on "
                         f"the device and run `soc devices trust {device.id} --replace --fingerprint "
                         f"{presented.fingerprint}`")


class KnownHostsError(Exception):
    """The known-hosts file cannot be read as one."""


def host_key_name(address: str, port: int) -> str:
    """The device's name in known_hosts, as OpenSSH and paramiko write it: ``[host]:port`` unless port 22."""
    return address if port == 22 else f"[{address}]:{port}"


class KnownHosts:
    """The suite's known-hosts file (OpenSSH format). Read on every use, so a key recorded by `soc devices trust`
    counts at the next connection without a restart; written atomically under a lock, keeping other lines as
    they were."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def keys_for(self, address: str, port: int) -> dict[str, Any]:
        """The recorded keys of ``address:port`` by key type (empty if none). A damaged line stops here, with its
        number (paramiko would stop on it too, for every device)."""
        import paramiko

        if not self.path.is_file():
            return {}
        name, found = host_key_name(address, port), {}
        for number, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            try:
                entry = paramiko.hostkeys.HostKeyEntry.from_line(line, number)
            except Exception as exc:
                raise KnownHostsError(f"{self.path}:{number}: not a known_hosts line paramiko can read "
                                      f"({type(exc).__name__}); fix or remove it") from exc
            if entry is not None and _names_match(entry.hostnames, name):
                found[entry.key.get_name()] = entry.key
        return found

    def pinned(self, device: ManagedDevice) -> list[HostKeyInfo]:
        return [HostKeyInfo.of(k) for k in self.keys_for(device.management_address, device.port).values()]

    def record(self, address: str, port: int, key: Any, *, replace: bool = False) -> None:
        """Add the key for ``address:port``; with ``replace``, every other key recorded for it goes."""
        import paramiko

        name = host_key_name(address, port)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            lines = self.path.read_text(encoding="utf-8").splitlines() if self.path.exists() else []
            kept = []
            for line in lines:
                entry = None
                if line.strip() and not line.lstrip().startswith("#"):
                    try:
                        entry = paramiko.hostkeys.HostKeyEntry.from_line(line.strip())
                    except Exception:  # a line paramiko cannot read (a marker, a damaged key) is kept as it is
                        entry = None
                if entry is not None and _names_match(entry.hostnames, name) and (
                        replace or entry.key.get_name() == key.get_name()):
                    others = [h for h in entry.hostnames if not _names_match([h], name)]
                    if not others:
                        continue
                    line = f"{','.join(others)} {entry.key.get_name()} {entry.key.get_base64()}"
                kept.append(line)
            kept.append(f"{name} {key.get_name()} {key.get_base64()}")
            atomic_write(self.path, "\n".join(kept) + "\n", mode=0o644)


def _names_match(names: list[str], name: str) -> bool:
    import paramiko

    for h in names:
        if h == name:
            return True
        if h.startswith("|1|"):
            try:
                if paramiko.HostKeys.hash_host(name, h) == h:
                    return True
            except Exception:  # nosec B112 - a damaged hashed name matches nothing; the next line may match
                continue
    return False


def fetch_host_key(address: str, port: int, timeout: float, prefer: list[str] | None = None) -> Any:
    """The host key the SSH server at ``address:port`` presents (key exchange only: no login, nothing sent but
    the SSH handshake). ``prefer`` puts key types first, so a device with several keys shows the recorded type."""
    import socket

    import paramiko

    sock = socket.create_connection((address, port), timeout=timeout)
    transport = paramiko.Transport(sock)
    try:
        if prefer:
            options = transport.get_security_options()
            wanted = [t for t in prefer if t in options.key_types]
            if "ssh-rsa" in prefer:  # a recorded RSA key is offered through its SHA-2 signature algorithms
                wanted += [t for t in ("rsa-sha2-512", "rsa-sha2-256") if t in options.key_types]
            options.key_types = wanted + [t for t in options.key_types if t not in wanted]
        transport.banner_timeout = timeout
        transport.start_client(timeout=timeout)
        return transport.get_remote_server_key()
    finally:
        transport.close()
        sock.close()


def _cause(exc: BaseException, kind: type) -> BaseException | None:
    """``exc`` or an exception it was raised from or while handling (netmiko wraps paramiko's)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, kind):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


@dataclass
class Credentials:
    username: str
    password: str | None = None
    key_file: str | None = None
    secret: str | None = None

    @property
    def secrets(self) -> list[str]:
        return [s for s in (self.password, self.secret) if s]


def resolve_credentials(device: ManagedDevice, environ: dict[str, str] | None = None) -> Credentials:
    environ = os.environ if environ is None else environ
    ref = device.credentials
    password = secret = key_file = None
    if ref.password_env:
        password = environ.get(ref.password_env)
        if not password:
            raise CredentialError(f"device {device.id}: environment variable {ref.password_env} is not set")
    if ref.key_file:
        if not Path(ref.key_file).is_file():
            raise CredentialError(f"device {device.id}: key file {ref.key_file} does not exist")
        key_file = ref.key_file
    if ref.secret_env:
        secret = environ.get(ref.secret_env)
        if not secret:
            raise CredentialError(f"device {device.id}: environment variable {ref.secret_env} is not set")
    return Credentials(username=ref.username, password=password, key_file=key_file, secret=secret)


# Configuration lines that carry secrets on the vendors we drive, whatever the value is. Device answers are text a
# compromised device chooses: both run on RE2, in time linear in the answer (soc/linear_re.py). On re, the second
# (lazy, DOTALL) was quadratic: 660 kB of "<Password>" held the API for minutes. "\b" before the keyword is written
# as a start or a non-word character (RE2 has no Unicode \b); an unclosed <Password> (a cut answer) is masked to
# the end.
_SECRET_LINES = [
    linear_re.compile(r"(\A|\W)(password|passwd|secret|pre-shared-key|psk|community|key-string|authentication-key)"
                      r"(\s+(?:\d\s+)?)(\S+)", linear_re.IGNORECASE),
    linear_re.compile(r"(<Password>)(.*?)(</Password>|\Z)", linear_re.IGNORECASE | linear_re.DOTALL),
]
MASK = "********"
# What the suite keeps of one device answer: drivers read at most ANSWER_MAX_CHARS of it (the SOC's own block list
# of some 25,000 entries), a transcript keeps at most TRANSCRIPT_MAX_CHARS of each command and answer (runs are
# stored documents, read by people). What is cut is replaced by a line that says so (cut()).
ANSWER_MAX_CHARS = 1 << 20
TRANSCRIPT_MAX_CHARS = 64 << 10


def cut(text: str, limit: int) -> str:
    """``text``, or its first ``limit`` characters and a line saying it was cut."""
    return text if len(text) <= limit else text[:limit] + cut_marker(len(text), limit)


def cut_marker(size: int, limit: int) -> str:
    return f"\n[soc: cut here: the device answered {size} characters, the suite keeps {limit}]"


class Masker:
    def __init__(self, secrets: list[str] | None = None):
        self.secrets = sorted({s for s in (secrets or []) if len(s) >= 3}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        text = _SECRET_LINES[0].sub(lambda m: f"{m.group(1)}{m.group(2)}{m.group(3)}{MASK}", text)
        return _SECRET_LINES[1].sub(lambda m: f"{m.group(1)}{MASK}{m.group(3)}", text)

    def transcript(self, text: str, limit: int = TRANSCRIPT_MAX_CHARS) -> str:
        """What a transcript keeps of a command or answer: at most ``limit`` characters, masked, then the cut
        marker. A cut through a secret would leave its start, which replace() no longer finds: that start goes
        too. (The masked text has no secret left, so cutting it again, where masks made it longer, is safe.)"""
        if len(text) <= limit:
            masked = self(text)
            return masked if len(masked) <= limit else masked[:limit] + cut_marker(len(text), limit)
        kept = text[:limit]
        # The longest start of a secret the cut may have left: removing it removes every one.
        started = max((size for secret in self.secrets for size in range(1, len(secret))
                       if kept.endswith(secret[:size])), default=0)
        return self(kept[:len(kept) - started])[:limit] + cut_marker(len(text), limit)


@dataclass
class Exchange:
    device: str
    phase: str  # prepare | check | apply | verify | rollback | revert
    command: str
    answer: str
    started: str
    duration_ms: float

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


@dataclass
class _Recorder:
    device_id: str
    masker: Masker
    transcript: list[Exchange] = field(default_factory=list)

    def record(self, phase: str, command: str, answer: str, started_wall: str, seconds: float) -> str:
        """Keeps the exchange (masked, cut to TRANSCRIPT_MAX_CHARS) and returns the answer as drivers read it (cut
        to ANSWER_MAX_CHARS)."""
        self.transcript.append(Exchange(self.device_id, phase, self.masker.transcript(command),
                                        self.masker.transcript(answer), started_wall, round(seconds * 1000, 1)))
        return cut(answer, ANSWER_MAX_CHARS)

    def take(self) -> list[Exchange]:
        taken, self.transcript = self.transcript, []
        return taken


class NetmikoSession(_Recorder):
    """One netmiko connection. Every command and answer is recorded (masked) with its timing."""

    def __init__(self, device_id: str, connection: Any, masker: Masker, timeout: float):
        super().__init__(device_id, masker)
        self.connection = connection
        self.timeout = timeout

    def send(self, command: str, *, phase: str) -> str:
        wall, started = ecs.now_iso(), time.perf_counter()
        # The prompt was found at login and the suite never changes it: asking for it again before every command
        # (netmiko's default) costs a round trip per command.
        answer = self.connection.send_command(command, read_timeout=self.timeout, auto_find_prompt=False)
        return self.record(phase, command, answer, wall, time.perf_counter() - started)

    def configure(self, commands: list[str], *, phase: str, commit: bool = False, comment: str = "") -> str:
        wall, started = ecs.now_iso(), time.perf_counter()
        answer = self.connection.send_config_set(commands, read_timeout=self.timeout, exit_config_mode=not commit)
        if commit:
            answer += "\n" + self.connection.commit(comment=comment or "soc playbook")
            answer += self.connection.exit_config_mode()
        return self.record(phase, "\n".join(commands) + ("\ncommit" if commit else ""), answer, wall,
                           time.perf_counter() - started)

    def alive(self) -> bool:
        try:
            return bool(self.connection.is_alive())
        except Exception:
            return False

    def close(self) -> None:
        try:
            self.connection.disconnect()
        except Exception:  # nosec B110 - closing a session that is already gone: nothing left to do
            pass


class SophosApiSession(_Recorder):
    """Sophos Firewall XML API over HTTPS (port 4444 unless the inventory says otherwise)."""

    def __init__(self, device: ManagedDevice, creds: Credentials, masker: Masker, timeout: float,
                 verify: bool | str = True):
        import httpx

        from playbooks.drivers.sophos_xg import login_xml

        super().__init__(device.id, masker)
        port = 4444 if device.port == 22 else device.port
        self.client = httpx.Client(base_url=f"https://{device.management_address}:{port}", timeout=timeout,
                                   verify=verify)
        self._login = login_xml(creds.username, creds.password or "")

    def send(self, command: str, *, phase: str) -> str:
        wall, started = ecs.now_iso(), time.perf_counter()
        request = f"<Request>{self._login}{command}</Request>"
        response = self.client.post("/webconsole/APIController", data={"reqxml": request})
        return self.record(phase, command, response.text, wall, time.perf_counter() - started)

    def configure(self, commands: list[str], *, phase: str, commit: bool = False, comment: str = "") -> str:
        return "\n".join(self.send(c, phase=phase) for c in commands)

    def alive(self) -> bool:
        return not self.client.is_closed

    def close(self) -> None:
        self.client.close()


def netmiko_opener(device: ManagedDevice, creds: Credentials, settings: PlaybookSettings) -> Any:
    """A logged-in netmiko connection, only to a device whose host key is recorded and matches (strict: netmiko's
    ``ssh_strict`` is paramiko's RejectPolicy; the suite's known-hosts file alone, never the user's)."""
    import paramiko
    from netmiko import ConnectHandler

    known_hosts = known_hosts_path(settings)
    pinned = KnownHosts(known_hosts).keys_for(device.management_address, device.port)
    if not pinned:
        raise HostKeyNotTrusted(device, known_hosts)  # not even a TCP connection
    params: dict[str, Any] = dict(
        device_type=device.device_type, host=device.management_address, port=device.port,
        username=creds.username, password=creds.password or "", secret=creds.secret or "",
        use_keys=bool(creds.key_file), key_file=creds.key_file, allow_agent=False,
        conn_timeout=settings.connect_timeout_seconds, auth_timeout=settings.connect_timeout_seconds,
        banner_timeout=settings.connect_timeout_seconds, fast_cli=True, session_log=None,
        ssh_strict=True, system_host_keys=False, alt_host_keys=True, alt_key_file=str(known_hosts),
    )
    try:
        connection = ConnectHandler(**params)
    except Exception as exc:
        bad = _cause(exc, paramiko.BadHostKeyException)
        if bad is not None:
            raise HostKeyMismatch(device, HostKeyInfo.of(bad.expected_key), HostKeyInfo.of(bad.key),
                                  known_hosts) from exc
        if "not found in known_hosts" in str(exc):  # the entry went away between the check and the connection
            raise HostKeyNotTrusted(device, known_hosts) from exc
        raise
    if creds.secret:
        connection.enable()
    return connection


@dataclass
class _Pooled:
    session: Any
    last_used: float


HostKeyCallback = Callable[[ManagedDevice, HostKeyInfo, HostKeyInfo], None]


class ConnectionPool:
    """``on_host_key_mismatch(device, expected, presented)`` is told when a device presents another host key than
    the recorded one (at most once a minute per device and key); the connection is refused either way."""

    MISMATCH_REPORT_SECONDS = 60.0

    def __init__(self, settings: PlaybookSettings,
                 opener: Callable[[ManagedDevice, Credentials, PlaybookSettings], Any] = netmiko_opener,
                 environ: dict[str, str] | None = None, *, data_dir: str | Path = "data",
                 on_host_key_mismatch: HostKeyCallback | None = None):
        self.settings = settings
        self.opener = opener
        self.environ = environ
        self.known_hosts = known_hosts_path(settings, data_dir)
        # What the opener sees: the settings with the known-hosts file resolved (the data folder's by default).
        self._opener_settings = settings.model_copy(update={"known_hosts_file": str(self.known_hosts)})
        self.on_host_key_mismatch = on_host_key_mismatch
        self._pooled: dict[str, _Pooled] = {}
        self._guard = threading.Lock()
        self._mismatches: dict[tuple[str, str], float] = {}  # (device, presented key) -> when last reported
        self.opened: dict[str, int] = {}  # sessions opened per device (the pool's whole point)

    def _open(self, device: ManagedDevice, driver: Driver):
        creds = resolve_credentials(device, self.environ)
        masker = Masker(creds.secrets)
        try:
            if driver.transport == "http":
                session = SophosApiSession(device, creds, masker, self.settings.command_timeout_seconds)
            else:
                connection = self.opener(device, creds, self._opener_settings)
                session = NetmikoSession(device.id, connection, masker, self.settings.command_timeout_seconds)
        except HostKeyMismatch as exc:
            log.error("%s", exc)
            self._report_mismatch(device, exc)
            raise
        except (CredentialError, DeviceUnreachable):
            raise
        except Exception as exc:  # netmiko raises its own timeouts and auth errors; the message says which
            raise DeviceUnreachable(f"device {device.id} ({device.management_address}:{device.port}): "
                                    f"{type(exc).__name__}: {masker(str(exc)).splitlines()[0] if str(exc) else ''}"
                                    ) from exc
        with self._guard:
            self.opened[device.id] = self.opened.get(device.id, 0) + 1
        return session

    def _report_mismatch(self, device: ManagedDevice, exc: HostKeyMismatch) -> None:
        if self.on_host_key_mismatch is None:
            return
        key, now = (device.id, exc.presented.fingerprint), time.monotonic()
        with self._guard:
            last = self._mismatches.get(key)
            if last is not None and now - last < self.MISMATCH_REPORT_SECONDS:
                return
            self._mismatches[key] = now
        try:
            self.on_host_key_mismatch(device, exc.expected, exc.presented)
        except Exception:  # the refusal stands whatever the report does
            log.exception("reporting the changed host key of %s failed", device.id)

    @contextmanager
    def session(self, device: ManagedDevice, driver: Driver) -> Iterator[Any]:
        """A live session to the device, reused from the pool when it still answers. The caller holds the
        device's lock. A session that failed mid-use is closed, not returned to the pool."""
        with self._guard:
            pooled = self._pooled.pop(device.id, None)
        now = time.monotonic()
        session = None
        if pooled is not None:
            if now - pooled.last_used < self.settings.connection_idle_seconds and pooled.session.alive():
                session = pooled.session
            else:
                pooled.session.close()
        if session is None:
            session = self._open(device, driver)
        try:
            yield session
        except DriverError:
            # The device refused a command or answered oddly: the session itself still works, so keep it.
            self._return(device.id, session)
            raise
        except BaseException:
            session.close()
            raise
        self._return(device.id, session)

    def _return(self, device_id: str, session: Any) -> None:
        with self._guard:
            self._pooled[device_id] = _Pooled(session, time.monotonic())

    def close_idle(self) -> int:
        now = time.monotonic()
        with self._guard:
            idle = [k for k, p in self._pooled.items() if now - p.last_used >= self.settings.connection_idle_seconds]
            closing = [self._pooled.pop(k) for k in idle]
        for pooled in closing:
            pooled.session.close()
        return len(closing)

    def close_all(self) -> None:
        with self._guard:
            closing, self._pooled = list(self._pooled.values()), {}
        for pooled in closing:
            pooled.session.close()
