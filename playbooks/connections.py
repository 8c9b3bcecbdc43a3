"""Sessions to managed devices: credentials by reference, a pool that reuses sessions, transcripts with secrets
masked.

Credentials come from the inventory's references at the moment of use (an environment variable, a key file); the
secret never enters the inventory, a log or a transcript. The pool keeps one live session per device, so a burst of
blocks on one firewall pays for one SSH login, not fifty; the device lock (locks.py) makes its use exclusive.
"""

from __future__ import annotations

import os
import re
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from inventory.model import ManagedDevice
from playbooks.drivers.base import Driver, DriverError
from playbooks.settings import PlaybookSettings
from soc import ecs


class CredentialError(Exception):
    """A credential reference cannot be resolved. The message names the reference, never a secret."""


class DeviceUnreachable(Exception):
    pass


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


# Configuration lines that carry secrets on the vendors we drive, whatever the value is.
_SECRET_LINES = [
    re.compile(r"(?im)\b(password|passwd|secret|pre-shared-key|psk|community|key-string|authentication-key)"
               r"(\s+(?:\d\s+)?)(\S+)"),
    re.compile(r"(?is)(<Password>)(.*?)(</Password>)"),
]
MASK = "********"


class Masker:
    def __init__(self, secrets: list[str] | None = None):
        self.secrets = sorted({s for s in (secrets or []) if len(s) >= 3}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        text = _SECRET_LINES[0].sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
        return _SECRET_LINES[1].sub(lambda m: f"{m.group(1)}{MASK}{m.group(3)}", text)


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

    def record(self, phase: str, command: str, answer: str, started_wall: str, seconds: float) -> None:
        self.transcript.append(Exchange(self.device_id, phase, self.masker(command), self.masker(answer),
                                        started_wall, round(seconds * 1000, 1)))

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
        self.record(phase, command, answer, wall, time.perf_counter() - started)
        return answer

    def configure(self, commands: list[str], *, phase: str, commit: bool = False, comment: str = "") -> str:
        wall, started = ecs.now_iso(), time.perf_counter()
        answer = self.connection.send_config_set(commands, read_timeout=self.timeout, exit_config_mode=not commit)
        if commit:
            answer += "\n" + self.connection.commit(comment=comment or "soc playbook")
            answer += self.connection.exit_config_mode()
        self.record(phase, "\n".join(commands) + ("\ncommit" if commit else ""), answer, wall,
                    time.perf_counter() - started)
        return answer

    def alive(self) -> bool:
        try:
            return bool(self.connection.is_alive())
        except Exception:
            return False

    def close(self) -> None:
        try:
            self.connection.disconnect()
        except Exception:
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
        self.record(phase, command, response.text, wall, time.perf_counter() - started)
        return response.text

    def configure(self, commands: list[str], *, phase: str, commit: bool = False, comment: str = "") -> str:
        return "\n".join(self.send(c, phase=phase) for c in commands)

    def alive(self) -> bool:
        return not self.client.is_closed

    def close(self) -> None:
        self.client.close()


def netmiko_opener(device: ManagedDevice, creds: Credentials, settings: PlaybookSettings) -> Any:
    from netmiko import ConnectHandler

    params: dict[str, Any] = dict(
        device_type=device.device_type, host=device.management_address, port=device.port,
        username=creds.username, password=creds.password or "", secret=creds.secret or "",
        use_keys=bool(creds.key_file), key_file=creds.key_file, allow_agent=False,
        conn_timeout=settings.connect_timeout_seconds, auth_timeout=settings.connect_timeout_seconds,
        banner_timeout=settings.connect_timeout_seconds, fast_cli=True, session_log=None,
    )
    if settings.known_hosts_file:
        params.update(ssh_strict=True, system_host_keys=False, alt_host_keys=True,
                      alt_key_file=settings.known_hosts_file)
    connection = ConnectHandler(**params)
    if creds.secret:
        connection.enable()
    return connection


@dataclass
class _Pooled:
    session: Any
    last_used: float


class ConnectionPool:
    def __init__(self, settings: PlaybookSettings,
                 opener: Callable[[ManagedDevice, Credentials, PlaybookSettings], Any] = netmiko_opener,
                 environ: dict[str, str] | None = None):
        self.settings = settings
        self.opener = opener
        self.environ = environ
        self._pooled: dict[str, _Pooled] = {}
        self._guard = threading.Lock()
        self.opened: dict[str, int] = {}  # sessions opened per device (the pool's whole point)

    def _open(self, device: ManagedDevice, driver: Driver):
        creds = resolve_credentials(device, self.environ)
        masker = Masker(creds.secrets)
        try:
            if driver.transport == "http":
                session = SophosApiSession(device, creds, masker, self.settings.command_timeout_seconds)
            else:
                connection = self.opener(device, creds, self.settings)
                session = NetmikoSession(device.id, connection, masker, self.settings.command_timeout_seconds)
        except CredentialError:
            raise
        except Exception as exc:  # netmiko raises its own timeouts and auth errors; the message says which
            raise DeviceUnreachable(f"device {device.id} ({device.management_address}:{device.port}): "
                                    f"{type(exc).__name__}: {masker(str(exc)).splitlines()[0] if str(exc) else ''}"
                                    ) from exc
        with self._guard:
            self.opened[device.id] = self.opened.get(device.id, 0) + 1
        return session

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
