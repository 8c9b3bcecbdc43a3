"""Alert → block in force on a real namespace firewall (nftables behind Debian's sshd, through netmiko).

Measured in one run, on the same firewall:
  baseline  a fresh netmiko SSH login plus one `nft add element`: the least a block with a new session can cost;
  cold      a stored brute-force alert handed to the playbook service's alert hook, with no pooled session, until
            the run has read the block back from the device (verified in force);
  warm      the same with the pooled session;
  burst     50 alerts for 50 addresses at once on one firewall: latency of each, and how many SSH sessions opened.
A sample of the blocked addresses is checked with real TCP connections from the attacker namespace.
Target: p95 of alert → block in force under 2 s, session included (cold). Needs root (network namespaces).
Run: .venv/bin/python bench/bench_playbook_block.py
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.report import write_section  # noqa: E402
from inventory.lookup import Inventory  # noqa: E402
from playbooks.connections import netmiko_opener, resolve_credentials  # noqa: E402
from playbooks.records import RunFilter  # noqa: E402
from playbooks.service import PlaybookService  # noqa: E402
from playbooks.settings import PlaybookSettings  # noqa: E402
from soc import ecs  # noqa: E402
from soc.storage import store_from_url  # noqa: E402
from tests.netns_firewall import NamespaceFirewall, capability_problem  # noqa: E402

COLD, WARM, BURST = 20, 20, 50


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def alert_for(address: str) -> dict:
    """A brute-force alert document as detections/alerts.py stores it."""
    now = ecs.now_iso()
    return {"id": uuid.uuid4().hex, "fingerprint": uuid.uuid4().hex, "@timestamp": now,
            "labels": {"rule.id": "3c1a9f0e-8e2d-4b6a-a7c5-9d0e1f2a3b03", "organization.id": "lab",
                       "source.ip": address},
            "rule": {"id": "3c1a9f0e-8e2d-4b6a-a7c5-9d0e1f2a3b03", "name": "soc_ssh_brute_force",
                     "title": "SSH Brute Force", "type": "correlation", "tags": ["attack.credential-access"]},
            "severity": "high", "status": "new", "organization": {"id": "lab", "name": "Lab agency"},
            "entities": {"ip": [address]}, "count": 5, "first_seen": now, "last_seen": now, "evidence": [],
            "created": now, "updated": now, "summary": "bench"}


def seconds_between(start_wall: float, iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() - start_wall


def wait_runs(service: PlaybookService, alert_ids: list[str], timeout: float = 120) -> dict[str, dict]:
    deadline = time.monotonic() + timeout
    done: dict[str, dict] = {}
    while time.monotonic() < deadline and len(done) < len(alert_ids):
        for alert_id in alert_ids:
            if alert_id in done:
                continue
            runs = service.runner.records.find_runs(RunFilter(alert_id=alert_id, limit=1))
            if runs and runs[0]["state"] in ("succeeded", "failed"):
                done[alert_id] = runs[0]
        time.sleep(0.01)
    return done


def one_alert(service: PlaybookService, address: str) -> float:
    alert = alert_for(address)
    service.runner.store.upsert_alerts([alert])
    started = time.time()
    service.on_alerts([alert])
    run = wait_runs(service, [alert["id"]])[alert["id"]]
    assert run["state"] == "succeeded", run["result"]
    return seconds_between(started, run["finished"])


def main() -> int:
    problem = capability_problem()
    if problem:
        print(f"bench_playbook_block: cannot run here: {problem}", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="bench-playbook-"))
    lab = NamespaceFirewall(work).start()
    try:
        inventory = Inventory.load(lab.inventory(work / "inventory.yaml"))
        store = store_from_url(f"sqlite:///{work / 'soc.db'}")
        store.open()
        settings = PlaybookSettings(lock_dir=str(work / "locks"), soc_addresses=[f"{lab.soc_address}/32"],
                                    known_hosts_file=str(lab.known_hosts))
        device = inventory.devices["lab-fw-01"]
        creds = resolve_credentials(device)
        base = lab.attacker.rsplit(".", 1)[0]

        baseline = []
        for i in range(COLD):
            started = time.perf_counter()
            connection = netmiko_opener(device, creds, settings)
            connection.send_command(f"nft add table inet bench; nft 'add set inet bench s{i} "
                                    f"{{ type ipv4_addr; }}'; nft add element inet bench s{i} '{{ {base}.{200 + i} }}'")
            baseline.append(time.perf_counter() - started)
            connection.disconnect()
        lab.nft("delete", "table", "inet", "bench")

        service = PlaybookService(store, inventory, settings, data_dir=str(work))
        one_alert(service, f"{base}.99")  # warm-up: first use of the store, the thread pool and the driver code
        cold = []
        for i in range(COLD):
            service.runner.pool.close_all()
            cold.append(one_alert(service, lab.attacker if i == 0 else f"{base}.{100 + i}"))
        warm = [one_alert(service, f"{base}.{30 + i}") for i in range(WARM)]

        service.runner.pool.close_all()
        opened_before = service.runner.pool.opened.get("lab-fw-01", 0)
        # outside every network of the test inventory (the protected server's /27 is .128-.159)
        burst_alerts = [alert_for(f"{base}.{160 + i}") for i in range(BURST)]
        store.upsert_alerts(burst_alerts)
        started = time.time()
        service.on_alerts(burst_alerts)
        runs = wait_runs(service, [a["id"] for a in burst_alerts], timeout=300)
        burst = [seconds_between(started, r["finished"]) for r in runs.values()]
        assert all(r["state"] == "succeeded" for r in runs.values()), [r["result"] for r in runs.values()
                                                                         if r["state"] != "succeeded"][:3]
        burst_sessions = service.runner.pool.opened.get("lab-fw-01", 0) - opened_before
        blocked_sample = [lab.connect(lab.attacker, timeout=0.5), lab.connect(lab.bystander, timeout=0.5)]
        in_set = lab.blocked_elements()
        assert all(f"{base}.{30 + i}" in in_set for i in range(WARM))
        service.close()
    finally:
        lab.close()
        shutil.rmtree(work, ignore_errors=True)

    rows = [("baseline: new SSH login + one nft command", baseline), (f"cold: alert → verified block, new session "
             f"({COLD})", cold), (f"warm: alert → verified block, pooled session ({WARM})", warm),
            (f"burst: {BURST} alerts at once, one firewall", burst)]
    table = "| case | p50 s | p95 s | max s |\n|---|---:|---:|---:|\n" + "\n".join(
        f"| {name} | {statistics.median(v):.3f} | {pct(v, 0.95):.3f} | {max(v):.3f} |" for name, v in rows)
    target = pct(cold, 0.95) < 2.0 and pct(warm, 0.95) < 2.0
    body = f"""{table}

- Target p95 alert → block in force < 2 s, SSH session included: **{'met' if target else 'NOT met'}** (cold p95
  {pct(cold, 0.95):.3f} s, warm p95 {pct(warm, 0.95):.3f} s; the bare login + command baseline p50 is
  {statistics.median(baseline):.3f} s).
- "In force" means the run read the block back from the firewall (`nft -j list set`) before finishing. Traffic check
  afterwards: the attacker (blocked by the first cold run) got `{blocked_sample[0]}` on a TCP connection to the
  protected server, its unblocked neighbour `{blocked_sample[1]}`.
- Burst: {BURST} blocks on one firewall opened **{burst_sessions}** SSH session(s) (pooled, one change at a time per
  device, so the burst is served in turn: the last block lands after ~{max(burst):.1f} s).
"""
    write_section("bench_playbook_block", "Playbooks: alert → block in force (namespace firewall)", body)
    print(body)
    return 0 if target and burst_sessions <= 1 else 1


if __name__ == "__main__":
    sys.exit(main())
