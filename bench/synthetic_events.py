"""A month of synthetic ECS events for the province's inventory, bulk-loaded into a store: the volume benchmarks'
background (the console over 10,000,000 events, reports and posture over the same).

Each event belongs to one inventory asset and one of the log sources the inventory expects of it (SSH logins,
firewall allow/deny, WAF blocks, Windows logons, antivirus detections, nginx access, plain syslog), spread evenly
over the period, with attacker addresses from the same 198.51.0.0/16 the alert generator of bench_api.py uses, so
entity pages and evidence look like the real thing. Deterministic for a seed: topping up a kept index prefix adds
new events rather than rewriting old ones.

    .venv/bin/python bench/synthetic_events.py --store opensearch://127.0.0.1:9260 --prefix benchconsole --events 10000000
"""

from __future__ import annotations

import argparse
import random
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from soc import codec  # noqa: E402
from soc.storage.base import EncodedEvent  # noqa: E402

SYSLOG_SEVERITY = ("emergency", "alert", "critical", "error", "warning", "notice", "informational", "debug")
BATCH = 5000


def _shape(source: str, rnd: random.Random, attacker: str, port: int) -> dict:
    """The source-specific part of one event."""
    if source == "linux-auth":
        failed = rnd.random() < 0.7
        user = rnd.choice(("root", "admin", "oracle", "ubuntu", "nguyenvana"))
        verb = "Failed password" if failed else "Accepted publickey"
        return {"event": {"dataset": "system.auth", "action": "ssh_login", "category": ["authentication"],
                          "outcome": "failure" if failed else "success", "severity": 5 if failed else 6},
                "process": {"name": "sshd"}, "user": {"name": user}, "source": {"ip": attacker, "port": port},
                "message": f"{verb} for {user} from {attacker} port {port} ssh2"}
    if source in ("sophos-xg", "sonicwall", "cisco-asa", "nftables"):
        denied = rnd.random() < 0.4
        dataset = {"sophos-xg": "sophos_xg.firewall", "sonicwall": "sonicwall.firewall",
                   "cisco-asa": "cisco_asa.firewall", "nftables": "nftables.log"}[source]
        dport = rnd.choice((22, 23, 80, 443, 445, 3389, 8080))
        return {"event": {"dataset": dataset, "action": "deny" if denied else "allow", "category": ["network"],
                          "outcome": "failure" if denied else "success", "severity": 4 if denied else 6},
                "source": {"ip": attacker, "port": port}, "destination": {"port": dport},
                "network": {"transport": "tcp"},
                "message": f"{'Deny' if denied else 'Allow'} tcp src outside:{attacker}/{port} dst inside/{dport}"}
    if source == "modsecurity":
        path = rnd.choice(("/index.php?id=1' OR '1'='1", "/wp-login.php", "/../../etc/passwd", "/search?q=<script>"))
        return {"event": {"dataset": "modsecurity.audit", "action": "block", "category": ["web", "intrusion_detection"],
                          "outcome": "failure", "severity": 3},
                "source": {"ip": attacker, "port": port}, "url": {"original": path},
                "http": {"request": {"method": "GET"}, "response": {"status_code": 403}},
                "message": f"ModSecurity: Access denied with code 403 [uri \"{path}\"]"}
    if source == "windows-security":
        failed = rnd.random() < 0.5
        return {"event": {"dataset": "windows.security", "code": "4625" if failed else "4624",
                          "action": "logon-failed" if failed else "logged-in", "category": ["authentication"],
                          "outcome": "failure" if failed else "success", "severity": 4 if failed else 6},
                "winlog": {"event_id": 4625 if failed else 4624, "channel": "Security"},
                "user": {"name": rnd.choice(("Administrator", "svc_backup", "ketoan01"))},
                "source": {"ip": attacker, "port": port},
                "message": "An account failed to log on." if failed else "An account was successfully logged on."}
    if source == "cef-antivirus":
        return {"event": {"dataset": "cef_antivirus.detection", "action": "quarantined", "category": ["malware"],
                          "outcome": "success", "severity": 3},
                "file": {"name": rnd.choice(("invoice.exe", "update.js", "scan_0412.pdf.exe"))},
                "threat": {"indicator": {"name": "Trojan.Win32.Generic"}},
                "message": "Threat quarantined: Trojan.Win32.Generic"}
    if source == "nginx":
        status = rnd.choice((200, 200, 200, 301, 404, 500))
        return {"event": {"dataset": "nginx.access", "action": "request", "category": ["web"],
                          "outcome": "success" if status < 400 else "failure", "severity": 6},
                "source": {"ip": attacker, "port": port}, "http": {"response": {"status_code": status}},
                "message": f'{attacker} - - "GET / HTTP/1.1" {status} 512'}
    return {"event": {"dataset": "syslog.messages", "action": "log", "severity": 6},
            "process": {"name": "systemd"}, "message": "Started Session of user root."}


class EventMaker:
    """Events for the inventory's assets, evenly over [start, start + days)."""

    def __init__(self, inventory, start: datetime, days: int, seed: int):
        self.pairs = [(asset, source) for asset in sorted(inventory.assets.values(), key=lambda a: a.id)
                      for source in (asset.log_sources or ["syslog"])]
        self.start = start.timestamp()
        self.span = days * 86400
        self.rnd = random.Random(seed)

    def make(self) -> dict:
        rnd = self.rnd
        asset, source = self.pairs[rnd.randrange(len(self.pairs))]
        moment = datetime.fromtimestamp(self.start + rnd.random() * self.span, timezone.utc)
        attacker = f"198.51.{rnd.randrange(256)}.{rnd.randrange(256)}"
        doc = _shape(source, rnd, attacker, 1024 + rnd.randrange(60000))
        doc["@timestamp"] = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
        doc["event"]["id"] = uuid.UUID(int=rnd.getrandbits(128)).hex
        doc["event"]["kind"] = "event"
        doc["log"] = {"syslog": {"severity": {"name": SYSLOG_SEVERITY[doc["event"]["severity"]]}}}
        doc["host"] = {"name": asset.hostname}
        doc["organization"] = {"id": asset.agency}
        doc["soc"] = {"asset": {"id": asset.id, "criticality": asset.criticality.value}}
        if asset.addresses:
            doc.setdefault("destination", {})["ip"] = asset.addresses[0]
        doc["event"]["original"] = doc["message"]
        return doc


def load_events(store, inventory, n: int, *, days: int = 30, seed: int | None = None, end: datetime | None = None,
                progress=None) -> float:
    """Write n events through the store's own bulk path (``write_encoded``), two requests in flight; returns the
    seconds taken. On a search engine, refresh is off while loading and the indices are merged at the end."""
    end = end or datetime.now(timezone.utc)
    maker = EventMaker(inventory, end - timedelta(days=days), days, seed if seed is not None else 11)
    engine_client = getattr(store, "client", None)
    pattern = getattr(store, "events_pattern", None)
    began = time.perf_counter()
    done = 0
    lock = threading.Lock()

    def write(batch: list[EncodedEvent]) -> None:
        nonlocal done
        for attempt in range(5):
            try:
                store.write_encoded(batch)
                break
            except Exception:  # noqa: BLE001 - a busy node (429) is retried; the fifth failure is raised
                if attempt == 4:
                    raise
                time.sleep(2 ** attempt)
        with lock:
            done += len(batch)
            if progress:
                progress(done, n)

    def batch_of(size: int) -> list[EncodedEvent]:
        out = []
        for _ in range(size):
            doc = maker.make()
            out.append(EncodedEvent(doc["event"]["id"], doc["@timestamp"], doc["organization"]["id"],
                                    codec.dumps_bytes(doc)))
        return out

    if engine_client is not None and n:
        write(batch_of(min(n, BATCH)))  # the daily indices now exist; loading goes faster without refreshes
        engine_client.indices.put_settings(index=pattern, body={"index": {"refresh_interval": "-1"}})
    with ThreadPoolExecutor(max_workers=2) as pool:
        pending = []
        while done + sum(len(b) for b, _ in pending) < n:
            size = min(BATCH, n - done - sum(len(b) for b, _ in pending))
            batch = batch_of(size)
            pending.append((batch, pool.submit(write, batch)))
            if len(pending) >= 3:
                batch, future = pending.pop(0)
                future.result()
        for _, future in pending:
            future.result()
    if engine_client is not None:
        engine_client.indices.put_settings(index=pattern, body={"index": {"refresh_interval": "1s"}})
        engine_client.indices.refresh(index=pattern)
        engine_client.indices.forcemerge(index=pattern, max_num_segments=1, request_timeout=3600)
    else:
        store.refresh()
    return time.perf_counter() - began


def main() -> int:
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from inventory.lookup import Inventory
    from soc.storage import store_from_url

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True, help="opensearch://HOST:PORT or sqlite:///PATH")
    parser.add_argument("--prefix", default="soc", help="index prefix (search engines)")
    parser.add_argument("--events", type=int, default=10_000_000, help="the total wanted; only what is missing is added")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--inventory", default=str(Path(__file__).resolve().parent.parent / "inventory" / "sample"
                                                   / "province.yaml"))
    args = parser.parse_args()
    store = store_from_url(args.store, index_prefix=args.prefix)
    store.open()
    inventory = Inventory.load(Path(args.inventory))
    have = store.count_events() if hasattr(store, "count_events") else 0
    missing = max(0, args.events - have)
    with Progress(TextColumn("loading events"), BarColumn(), TextColumn("{task.completed:,}/{task.total:,}"),
                  TimeRemainingColumn()) as bar:
        task = bar.add_task("load", total=missing)
        seconds = load_events(store, inventory, missing, days=args.days, seed=11 + have,
                              progress=lambda d, t: bar.update(task, completed=d))
    print(f"{missing:,} events added in {seconds:.0f} s ({missing / max(seconds, 1e-9):,.0f}/s); "
          f"{have + missing:,} in all")
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
