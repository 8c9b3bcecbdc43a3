"""A monthly audit report over millions of stored events: counted by the store's aggregations (now) against reading
the month's events page by page (before, the code of an earlier commit run on the same store); target: the report
over 10,000,000 events in under 30 s.

Loads, if missing, a calendar month (November 2026, Asia/Ho_Chi_Minh) of synthetic events for the sample inventory
(bench/synthetic_events.py: every asset's expected log sources, attacker addresses, severities) and alerts for it
(bench/bench_api.py's generator, moved into the month) under an index prefix of its own, then times:

- **after**: ``reports.builder.build_report`` of the province roll-up (the whole month, every agency), Vietnamese,
  HTML and PDF, in this process — gathering (the store's aggregations) and rendering, reported apart;
- **before**: the same, by the code of ``--before`` (default 3397d37, the last commit that read events page by page),
  checked out with ``git worktree`` into a temporary folder and run in a subprocess on the same store.

    .venv/bin/python bench/bench_report.py --store opensearch://127.0.0.1:9260 [--events N] [--prefix P]
                                           [--before COMMIT | --no-before] [--no-write]

Without --store it runs on SQLite in a temporary folder with 1,000,000 events.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

ROOT = Path(__file__).resolve().parent.parent
ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
MONTH = "2026-11"
MONTH_END = datetime(2026, 12, 1, tzinfo=ZONE)
ALERTS = 20_000

# Run inside the worktree of the earlier commit: times its gather and its rendering, prints JSON.
BEFORE_SCRIPT = r"""
import json, sys, time
from pathlib import Path
from zoneinfo import ZoneInfo
from inventory.lookup import Inventory
from reports.builder import build_report
from reports.gather import gather
from reports.periods import parse_period
from soc.storage import store_from_url
from tests.conftest import make_settings
from suite.runtime import Suite
url, prefix, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
zone = ZoneInfo("Asia/Ho_Chi_Minh")
settings = make_settings(out, store_url=url, index_prefix=prefix, SOC__SYSLOG__ENABLED="false")
suite = Suite(settings)
period = parse_period("%s", zone)
began = time.perf_counter()
data = gather(suite.store, suite.inventory, suite.ruleset, None, period)
gathered = time.perf_counter() - began
began = time.perf_counter()
build_report(suite.store, suite.inventory, suite.ruleset, scope=None, period=period, langs=("vi",),
             formats=("html", "pdf"), out_dir=out / "reports", zone=zone)
whole = time.perf_counter() - began
print(json.dumps({"gather": gathered, "report": whole, "events": data.events_total, "alerts": data.alerts_total}))
suite.close()
""" % MONTH


def month_alerts(agencies: list[str], n: int) -> list[dict]:
    from bench.bench_api import make_alert
    from soc import ecs

    start = MONTH_END - timedelta(days=30)
    rnd = random.Random(17)
    out = []
    for i in range(n):
        doc = make_alert(i, agencies, start.astimezone(timezone.utc), rnd)
        doc["id"] = f"benchreport-{i:06d}"
        doc["fingerprint"] = doc["id"]
        if doc["last_seen"] >= ecs.utc_iso(MONTH_END):
            continue
        out.append(doc)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default=None, help="opensearch://HOST:PORT (default: SQLite in a temporary folder)")
    parser.add_argument("--prefix", default="benchreport")
    parser.add_argument("--events", type=int, default=None, help="default 10,000,000 (OpenSearch), 1,000,000 (SQLite)")
    parser.add_argument("--before", default="3397d37", help="the commit whose report read events page by page")
    parser.add_argument("--no-before", action="store_true")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from bench.report import write_section
    from bench.synthetic_events import load_events
    from reports.builder import build_report
    from reports.gather import gather
    from reports.periods import parse_period
    from soc.storage.aggregations import AggregateQuery
    from suite.runtime import Suite
    from tests.conftest import make_settings

    tmp = Path(tempfile.mkdtemp(prefix="bench-report-"))
    url = args.store or f"sqlite:///{tmp / 'soc.db'}"
    backend = "OpenSearch" if args.store else "SQLite"
    wanted = args.events or (10_000_000 if args.store else 1_000_000)
    settings = make_settings(tmp, store_url=url, index_prefix=args.prefix, SOC__SYSLOG__ENABLED="false")
    suite = Suite(settings)
    store = suite.store
    period = parse_period(MONTH, ZONE)
    have = store.aggregate(AggregateQuery(start=period.start_iso, end=period.end_iso)).total
    load_note = "loaded before this run"
    if have < wanted:
        with Progress(TextColumn("loading events"), BarColumn(), TextColumn("{task.completed:,}/{task.total:,}"),
                      TimeRemainingColumn()) as bar:
            task = bar.add_task("load", total=wanted - have)
            seconds = load_events(store, suite.inventory, wanted - have, days=30, end=MONTH_END.astimezone(timezone.utc),
                                  seed=23 + have, progress=lambda d, t: bar.update(task, completed=d))
        load_note = f"{wanted - have:,} loaded in {seconds:.0f} s"
        store.upsert_alerts(month_alerts(sorted(suite.inventory.agencies), ALERTS))
        store.refresh()
    events = store.aggregate(AggregateQuery(start=period.start_iso, end=period.end_iso)).total

    began = time.perf_counter()
    data = gather(store, suite.inventory, suite.ruleset, None, period)
    gathered = time.perf_counter() - began
    began = time.perf_counter()
    build_report(store, suite.inventory, suite.ruleset, scope=None, period=period, langs=("vi",),
                 formats=("html", "pdf"), out_dir=tmp / "reports", zone=ZONE)
    whole = time.perf_counter() - began
    suite.close()
    print(f"after: gather {gathered:.1f} s, report {whole:.1f} s, {data.events_total:,} events, "
          f"{data.alerts_total:,} alerts", flush=True)

    before = None
    if not args.no_before:
        tree = Path(tempfile.mkdtemp(prefix="bench-report-before-")) / "tree"
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), args.before], cwd=ROOT, check=True,
                       capture_output=True)
        try:
            print(f"before ({args.before}): reading {events:,} events page by page ...", flush=True)
            env = {**os.environ, "PYTHONPATH": str(tree)}
            done = subprocess.run([sys.executable, "-c", BEFORE_SCRIPT, url, args.prefix, str(tmp / "before")],
                                  cwd=tree, env=env, capture_output=True, text=True, timeout=6 * 3600)
            if done.returncode != 0:
                print(done.stderr[-3000:], file=sys.stderr)
                return 1
            before = json.loads(done.stdout.strip().splitlines()[-1])
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, capture_output=True)
        print(f"before: gather {before['gather']:.1f} s, report {before['report']:.1f} s", flush=True)

    rows = [f"| **after**: the store's aggregations | {data.events_total:,} | {gathered:.1f} | {whole:.1f} |"]
    if before:
        rows.insert(0, f"| before ({args.before}): every event read page by page | {before['events']:,} | "
                       f"{before['gather']:.1f} | {before['report']:.1f} |")
    verdict = "met" if whole < 30 else "NOT met"
    ratio = f" — {before['report'] / whole:.0f}× faster than before" if before else ""
    load_avg = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    body = f"""
A calendar month ({MONTH}, Asia/Ho_Chi_Minh) of {events:,} events on {backend} ({load_note}; bench/synthetic_events.py:
every asset of the sample inventory and its expected log sources) and {data.alerts_total:,} alerts. The province
roll-up (every agency), Vietnamese, HTML and PDF. "Gather" is reading and counting the month (events, alerts, the
other records); "report" is the whole `build_report` (gather, layout, HTML, PDF, files and records).

| report | events counted | gather s | report s |
|---|---:|---:|---:|
{chr(10).join(rows)}

Target: the report over 10,000,000 events in under 30 s — **{verdict}** ({whole:.1f} s{ratio}).
Machine load average when it finished: {load_avg} (1/5/15 min, {os.cpu_count()} cores).
"""
    print(body)
    if not args.no_write:
        write_section("bench_report", f"Monthly report over stored events ({backend})", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
