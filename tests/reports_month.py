"""A realistic month (October 2026) of logs for two agencies, played through the suite's real pipeline and detections.

Used by tests/test_reports*.py. Nothing here touches the network: lines are handed to ``Suite.process`` as the
syslog listener would, with the sender's address as data only. What the generator sends is tallied per asset and
log source, so tests can check the report's numbers against both the store and what was sent.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import yaml

from collectors.message import RawMessage
from soc import ecs

ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
MONTH = "2026-10"
PERSISTENT = "203.0.113.50"  # attacks so-b's web server again and again, comes back after its block expires
GUESSER = "198.51.100.23"  # brute-forces so-a's web server and gets in

INVENTORY = {
    "province": {"id": "province", "name_vi": "Ủy ban nhân dân tỉnh (thử nghiệm)",
                 "name_en": "Provincial People's Committee (test)", "kind": "province",
                 "networks": [{"cidr": "10.10.1.0/24"}]},
    "agencies": [
        {"id": "so-a", "name_vi": "Sở Thông tin và Truyền thông (thử nghiệm)",
         "name_en": "Department of Information and Communications (test)", "kind": "department",
         "parent": "province", "networks": [{"cidr": "10.20.1.0/24"}]},
        {"id": "so-b", "name_vi": "Sở Y tế (thử nghiệm)", "name_en": "Department of Health (test)",
         "kind": "department", "parent": "province", "networks": [{"cidr": "10.20.2.0/24"}]},
    ],
    "assets": [
        {"id": "a-web-01", "hostname": "a-web-01", "kind": "server", "agency": "so-a", "addresses": ["10.20.1.10"],
         "criticality": "high", "services": ["ssh", "https"], "log_sources": ["linux-auth", "syslog", "nginx"]},
        {"id": "a-app-01", "hostname": "a-app-01", "kind": "server", "agency": "so-a", "addresses": ["10.20.1.11"],
         "services": ["ssh"], "log_sources": ["linux-auth", "syslog"]},
        {"id": "a-fw-01", "hostname": "a-fw-01", "kind": "firewall", "agency": "so-a", "addresses": ["10.20.1.1"],
         "vendor": "Cisco", "model": "ASA 5516-X", "services": ["ssh", "https"], "log_sources": ["cisco-asa"]},
        {"id": "b-web-01", "hostname": "b-web-01", "kind": "server", "agency": "so-b", "addresses": ["10.20.2.10"],
         "criticality": "critical", "services": ["ssh", "https"], "log_sources": ["linux-auth", "syslog"]},
        {"id": "b-db-01", "hostname": "b-db-01", "kind": "server", "agency": "so-b", "addresses": ["10.20.2.20"],
         "services": ["ssh", "postgresql"], "log_sources": ["linux-auth", "syslog"]},
    ],
    "government_networks": ["10.0.0.0/8"],
}
ASSET_AGENCY = {a["id"]: a["agency"] for a in INVENTORY["assets"]}
ADDRESS = {a["id"]: a["addresses"][0] for a in INVENTORY["assets"]}
SILENT_FROM = datetime(2026, 10, 20, 12, 0, tzinfo=ZONE)  # b-db-01 stops sending anything
OUTAGE = (datetime(2026, 10, 9, 6, 0, tzinfo=ZONE), datetime(2026, 10, 10, 12, 0, tzinfo=ZONE))  # a-app-01 syslog


@dataclass
class Month:
    messages: list[RawMessage] = field(default_factory=list)
    sent: Counter = field(default_factory=Counter)  # (asset, log source) -> lines
    per_agency: Counter = field(default_factory=Counter)
    attacks: list[tuple[str, str, datetime, bool]] = field(default_factory=list)  # (attacker, asset, when, got in)


def write_inventory(folder: Path) -> Path:
    path = folder / "inventory.yaml"
    path.write_text(yaml.safe_dump(INVENTORY, allow_unicode=True), encoding="utf-8")
    return path


def _line(pri: int, moment: datetime, host: str, app: str, text: str) -> str:
    return f"<{pri}>1 {moment.isoformat(timespec='seconds')} {host} {app} {abs(hash(text)) % 30000} - - {text}"


def generate(seed: int = 2026) -> Month:
    rng = random.Random(seed)
    month = Month()
    items: list[tuple[datetime, str, str, tuple[str, ...]]] = []  # (when, asset, line, log sources it counts for)

    def emit(moment: datetime, asset: str, pri: int, app: str, text: str, sources: tuple[str, ...]) -> None:
        if asset == "b-db-01" and moment >= SILENT_FROM:
            return
        if asset == "a-app-01" and "syslog" in sources and OUTAGE[0] <= moment < OUTAGE[1]:
            return
        items.append((moment, asset, _line(pri, moment, asset, app, text), sources))

    severities = [6] * 16 + [5] * 2 + [4] + [3]  # informational, notice, warning, error
    for day in range(1, 32):
        base = datetime(2026, 10, day, tzinfo=ZONE)
        for asset in ("a-web-01", "a-app-01", "b-web-01", "b-db-01"):
            for hour in range(24):
                moment = base + timedelta(hours=hour, minutes=rng.randrange(60), seconds=rng.randrange(60))
                emit(moment, asset, 9 * 8 + rng.choice(severities), "CRON",
                     "(root) CMD (run-parts /etc/cron.hourly)", ("syslog",))
            for _ in range(2):  # administrators log in from the agency LAN
                moment = base + timedelta(hours=rng.randrange(8, 18), minutes=rng.randrange(60))
                emit(moment, asset, 4 * 8 + 6, "sshd",
                     f"Accepted publickey for admin from {ADDRESS[asset].rsplit('.', 1)[0]}.5 port "
                     f"{rng.randrange(40000, 60000)} ssh2", ("linux-auth",))
        for _ in range(12):  # the web server's access log over syslog
            moment = base + timedelta(hours=rng.randrange(24), minutes=rng.randrange(60))
            stamp = moment.strftime("%d/%b/%Y:%H:%M:%S %z")
            emit(moment, "a-web-01", 23 * 8 + 6, "nginx",
                 f'10.20.1.{rng.randrange(20, 200)} - - [{stamp}] "GET /tin-tuc/{rng.randrange(999)} HTTP/1.1" 200 '
                 f'5120 "-" "Mozilla/5.0 (Windows NT 10.0; Win64; x64)"', ("nginx",))

    def attack(attacker: str, asset: str, start: datetime, success: bool) -> None:
        month.attacks.append((attacker, asset, start, success))
        for i in range(8):
            emit(start + timedelta(seconds=9 * i), asset, 4 * 8 + 5, "sshd",
                 f"Failed password for root from {attacker} port {41000 + i} ssh2", ("linux-auth",))
        if success:
            emit(start + timedelta(seconds=120), asset, 4 * 8 + 6, "sshd",
                 f"Accepted password for root from {attacker} port 42000 ssh2", ("linux-auth",))

    for day in (3, 12, 18, 25):
        attack(PERSISTENT, "b-web-01", datetime(2026, 10, day, 2, 14, tzinfo=ZONE), False)
    attack(GUESSER, "a-web-01", datetime(2026, 10, 7, 23, 5, tzinfo=ZONE), True)
    for i, (asset, day) in enumerate([("a-app-01", 5), ("b-db-01", 9), ("a-web-01", 15), ("b-web-01", 22),
                                      ("a-app-01", 28)]):
        attack(f"203.0.113.{60 + i}", asset, datetime(2026, 10, day, 14, 30, tzinfo=ZONE), False)

    items.sort(key=lambda item: item[0])
    for moment, asset, line, sources in items:
        for source in sources:
            month.sent[(asset, source)] += 1
        month.per_agency[ASSET_AGENCY[asset]] += 1
        month.messages.append(RawMessage(data=line.encode(), transport="tcp", peer=ADDRESS[asset],
                                         peer_port=514, received=moment.astimezone(ZONE)))
    return month


def play(suite, month: Month, batch: int = 500) -> None:
    for i in range(0, len(month.messages), batch):
        suite.process(month.messages[i:i + batch])


def handle_alerts(store, analyst_delay_hours=(1, 3, 30)) -> list[dict]:
    """Analysts at work: acknowledge most high and critical alerts, close some; leave one critical one new."""
    from soc.storage.base import AlertQuery

    alerts = sorted(store.list_alerts(AlertQuery(limit=1000)), key=lambda a: (a["first_seen"], a["id"]))
    serious = [a for a in alerts if a["severity"] in ("high", "critical")]
    changed = []
    for i, alert in enumerate(serious[:-1]):
        opened = ecs.parse_time(alert["first_seen"])
        ack = opened + timedelta(hours=analyst_delay_hours[i % len(analyst_delay_hours)])
        alert["history"].append({"at": ecs.utc_iso(ack), "by": "analyst1", "action": "acknowledged"})
        alert["status"] = "acknowledged"
        if i % 2 == 0:
            alert["history"].append({"at": ecs.utc_iso(ack + timedelta(hours=20)), "by": "analyst1",
                                     "action": "closed"})
            alert["status"] = "closed"
        changed.append(alert)
    store.upsert_alerts(changed)
    return alerts


def other_components(store) -> None:
    """Records the playbook, threat-intelligence and incident components keep, in the shapes reports read."""
    blocked_at = datetime(2026, 10, 3, 3, 0, tzinfo=ZONE)
    store.put_documents("playbook_runs", [
        {"id": "run-0001", "playbook": "block_ip", "status": "succeeded", "started": ecs.utc_iso(blocked_at),
         "organization": {"id": "so-b"},
         "actions": [{"type": "block_ip", "address": PERSISTENT, "device": "b-fw-01", "status": "applied",
                      "expires": ecs.utc_iso(blocked_at + timedelta(days=2))}]},
        {"id": "run-0002", "playbook": "block_ip", "status": "failed", "started": "2026-10-07T16:30:00.000Z",
         "organization": {"id": "so-a"}, "actions": [{"type": "block_ip", "address": GUESSER,
                                                       "status": "failed"}]},
        {"id": "run-0003", "playbook": "isolate_host", "status": "succeeded", "started": "2026-09-20T01:00:00.000Z",
         "organization": {"id": "so-a"}, "actions": []},  # September: outside the period
    ])
    store.put_documents("indicators", [
        {"id": "ind-1", "type": "ipv4-addr", "value": "198.51.100.77", "source": "national_centre",
         "direction": "received", "created": "2026-10-02T01:00:00.000Z"},
        {"id": "ind-2", "type": "domain-name", "value": "update-check.example", "source": "national_centre",
         "direction": "received", "created": "2026-10-15T01:00:00.000Z"},
        {"id": "ind-3", "type": "ipv4-addr", "value": PERSISTENT, "source": "province-soc", "direction": "shared",
         "organization": {"id": "so-b"}, "created": "2026-10-13T01:00:00.000Z"},
        {"id": "ind-4", "type": "ipv4-addr", "value": "192.0.2.99", "source": "national_centre",
         "direction": "received", "created": "2026-11-02T01:00:00.000Z"},  # November: outside the period
    ])


def month_days() -> tuple[date, date]:
    return date(2026, 10, 1), date(2026, 11, 1)
