"""`soc demo`: an SSH brute force and a successful login from the same outside address, through the real path.

The lines go over the syslog TCP socket of a running suite (or of one the demo starts itself), are parsed, enriched,
stored and matched by the Sigma rules; the demo then reads the alerts back through the API with an analyst key.
"""

from __future__ import annotations

import random
import socket
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import httpx

from suite.settings import Settings
from soc.storage import open_store
from soc_api.keys import create_key

DEMO_ASSET = "so-tttt-web-01"
FAILURES = 8
BRUTE_FORCE_RULE = "soc_ssh_brute_force"
LOGIN_AFTER_RULE = "soc_ssh_login_after_brute_force"


@dataclass
class DemoResult:
    attacker: str
    alerts: list[dict]
    brute_force: dict | None
    login_after: dict | None
    diagnosis: str = ""

    @property
    def ok(self) -> bool:
        return self.brute_force is not None and self.login_after is not None and \
            self.brute_force["count"] >= FAILURES


def scenario_lines(attacker: str, host: str, zone, now: datetime | None = None) -> list[bytes]:
    """sshd lines as rsyslog forwards them (RFC 3164, local time of the province)."""
    now = (now or datetime.now(timezone.utc)).astimezone(zone)
    users = ["root", "admin", "administrator", "oracle", "ubuntu", "test", "root", "admin", "root", "support"]
    lines = []
    for i in range(FAILURES):
        at = now - timedelta(seconds=FAILURES + 1 - i)
        user = users[i % len(users)]
        invalid = "" if user == "root" else "invalid user "
        lines.append(f"<38>{at:%b} {at.day:2d} {at:%H:%M:%S} {host} sshd[{41000 + i}]: Failed password for "
                     f"{invalid}{user} from {attacker} port {50000 + i * 7} ssh2")
    lines.append(f"<38>{now:%b} {now.day:2d} {now:%H:%M:%S} {host} sshd[41990]: Accepted password for root from "
                 f"{attacker} port 50990 ssh2")
    return [line.encode() for line in lines]


def send_tcp(host: str, port: int, lines: list[bytes]) -> None:
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(b"".join(line + b"\n" for line in lines))


def _client_host(host: str) -> str:
    # A listener on every interface is reached on loopback; this compares a setting, it binds nothing.
    return "127.0.0.1" if host in ("0.0.0.0", "") else ("::1" if host == "::" else host)  # nosec B104


def suite_answers(api_url: str) -> bool:
    try:
        return httpx.get(f"{api_url}/api/v1/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def play(settings: Settings, *, syslog_host: str, syslog_port: int, api_url: str, timeout: float = 60.0,
         progress=print) -> DemoResult:
    attacker = f"203.0.113.{random.randint(100, 250)}"  # nosec B311 - TEST-NET-3 address, data only
    store = open_store(settings)
    try:
        key, _ = create_key(store, "analyst", name="soc demo", expires_in_days=1)
    finally:
        store.close()
    started = datetime.now(timezone.utc) - timedelta(minutes=1)
    lines = scenario_lines(attacker, DEMO_ASSET, settings.tz)
    progress(f"sending {len(lines)} sshd lines from {attacker} to syslog tcp://{syslog_host}:{syslog_port} ...")
    send_tcp(syslog_host, syslog_port, lines)
    deadline = time.monotonic() + timeout
    headers = {"X-API-Key": key}
    brute = after = None
    alerts: list[dict] = []
    while time.monotonic() < deadline:
        response = httpx.get(f"{api_url}/api/v1/alerts", headers=headers,
                             params={"since": started.isoformat().replace("+00:00", "Z"), "limit": 200}, timeout=10)
        response.raise_for_status()
        alerts = [a for a in response.json()["alerts"] if attacker in a.get("entities", {}).get("ip", [])]
        brute = next((a for a in alerts if a["rule"]["name"] == BRUTE_FORCE_RULE), None)
        after = next((a for a in alerts if a["rule"]["name"] == LOGIN_AFTER_RULE), None)
        if brute and after and brute["count"] >= FAILURES:
            break
        time.sleep(0.3)
    result = DemoResult(attacker=attacker, alerts=alerts, brute_force=brute, login_after=after)
    if not result.ok:
        result.diagnosis = _diagnose(settings, attacker)
    return result


def _diagnose(settings: Settings, attacker: str) -> str:
    """Where did the lines go? Said when the alerts did not come, so the failure explains itself."""
    from soc.storage import EventQuery

    store = open_store(settings)
    try:
        store.refresh()
        events = store.search_events(EventQuery(terms={"source.ip": attacker}, limit=100))
        letters = [d for d in store.list_dead_letters(50) if attacker.encode() in d.raw]
    finally:
        store.close()
    return (f"{len(events)} of the demo's events are in the store "
            f"({sum(1 for e in events if e.get('event', {}).get('outcome') == 'failure')} failures), "
            f"{len(letters)} are dead letters" + (f" (first: {letters[0].reason})" if letters else ""))


def describe(result: DemoResult) -> str:
    lines = [f"attacker {result.attacker}: {len(result.alerts)} alert(s)"]
    for alert in sorted(result.alerts, key=lambda a: a["first_seen"]):
        org = alert.get("organization", {})
        lines.append(f"  [{alert['severity']:>8}] {alert['rule']['title']}: count={alert['count']} "
                     f"agency={org.get('id')} ({org.get('name')}) status={alert['status']} id={alert['id']}")
    lines.append("demo " + ("passed: brute force and login-after-failures alerts raised" if result.ok
                            else f"FAILED: the expected alerts did not appear; {result.diagnosis}"))
    return "\n".join(lines)
