"""Posture and the province overview over many alerts: the time to build the posture document (``GET /api/v1/posture``,
also pushed to the national centre) and the overview's figures (``/console/overview``), before and after they were
counted by the store's aggregations.

"Before" is the code at git commit 3397d37 (posture read the alerts page by page, 200,000 at most per question; the
overview read at most 20,000 alerts and 12,000 events and estimated the rest), checked out with ``git worktree`` into
a temporary folder; "after" is this working tree. Each is timed in a subprocess of its own, importing only its own
tree, against the same store — so no old code is kept in the product for the benchmark.

SQLite by default: N alerts (bench/bench_api.py's generator: the inventory's agencies, every status and severity, a
month of last_seen) written with ``store.upsert_alerts`` in batches, and M events over the month, in a temporary
folder. OpenSearch with ``--store opensearch://HOST:PORT``: a fresh index prefix loaded the same way and removed at the
end, or with ``--prefix P --no-load`` an existing one only read (nothing is written to it, not even index templates).

    .venv/bin/python bench/bench_posture.py [--alerts N] [--events M] [--repeat R] [--store URL [--prefix P]
                                            [--no-load]] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_api import load_alerts, make_alert  # noqa: E402
from bench.report import write_section  # noqa: E402
from soc import ecs  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BEFORE = "3397d37"
OLD_POSTURE_CAP = 200_000  # soc_api/posture.py ALERT_CAP at BEFORE
BATCH = 5000
FIGURES = {"posture": "posture document, the province (every agency)",
           "posture_agency": "posture document, one agency",
           "overview_7": "overview figures, last 7 days",
           "overview_30": "overview figures, last 30 days"}
# Each timing is repeated up to --repeat times, but not begun again once a side has spent this long (the old posture
# takes minutes at 200,000 alerts).
TIME_BUDGET = 150.0

# Run in a subprocess with the tree to time first on sys.path: builds a stand-in for the suite (the store, the sample
# inventory, the API's default settings; no source tracker, no rules, so both sides do the same work) and times
# build_posture and build_overview, printing one JSON line. The same text runs against both trees.
HARNESS = r"""
import json, statistics, sys, time
from types import SimpleNamespace
tree, url, prefix, repeat, budget = sys.argv[1], sys.argv[2], sys.argv[3] or None, int(sys.argv[4]), float(sys.argv[5])
wanted = sys.argv[6].split(",")
sys.path.insert(0, tree)
from datetime import datetime, timezone
from zoneinfo import ZoneInfo
from inventory.lookup import Inventory
from soc.storage import store_from_url
from soc_api.console import overview
from soc_api.data import Data
from soc_api.keys import Principal
from soc_api.posture import build_posture
from soc_api.settings import ApiSettings
assert overview.__file__.startswith(tree), (overview.__file__, tree)  # the tree asked for, not the installed one

store = store_from_url(url, index_prefix=prefix or "soc")
if url.startswith("sqlite"):
    store.open()  # an SQLite file: its tables are there already; an engine's prefix is only read (no templates)
class Suite:  # a class of its own, not a SimpleNamespace: the API keeps per-suite state in a weak dictionary
    def __init__(self):
        self.store = store
        self.inventory = Inventory.load(tree + "/inventory/sample/province.yaml")
        self.settings = SimpleNamespace(soc_api=ApiSettings())
        self.ruleset = SimpleNamespace(rules=[], correlations=[], loaded=0, failed=0)

    def service(self, name):
        return None

suite = Suite()
data = Data(None, Principal(key_id="-", role="national_centre", agency=None, name="bench", user="bench"), suite)
zone = ZoneInfo("Asia/Ho_Chi_Minh")
agency = sorted(suite.inventory.agencies)[0]

def timed(name, fn):
    times, result, spent = [], None, 0.0
    for _ in range(repeat if name in wanted else 0):
        began = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - began)
        spent += times[-1]
        if spent > budget:
            break
    return times, result

out = {}
out["posture"], posture = timed("posture", lambda: build_posture(data))
out["posture_agency"], _ = timed("posture_agency", lambda: build_posture(data, agency))
out["overview_7"], ov7 = timed("overview_7", lambda: overview.build_overview(data, 7, zone))
out["overview_30"], _ = timed("overview_30", lambda: overview.build_overview(data, 30, zone))
posture = posture or build_posture(data)  # the figures are compared whichever were timed
ov7 = ov7 or overview.build_overview(data, 7, zone)
keep = ("open_alerts", "alerts_in_window", "mean_time_to_acknowledge_seconds", "mean_time_to_resolve_seconds")
out["figures"] = {
    "posture": {a["id"]: {k: a[k] for k in keep} | {"seen": a["attack"]["seen"]} for a in posture["agencies"]},
    "posture_province": {k: posture["province"][k] for k in keep},
    "overview": {"open_total": ov7["province"]["open_total"], "raised": ov7["province"]["raised"],
                 "tta": ov7["province"]["tta"], "ttr": ov7["province"]["ttr"],
                 "alerts_per_day": [d["alerts"] for d in ov7["per_day"]],
                 "events_per_day": [d["events"] for d in ov7["per_day"]],
                 "bounded": {k: ov7[k] for k in ("open_complete", "sample_complete", "events_estimated") if k in ov7}},
}
store.close()
print("RESULT " + json.dumps(out))
"""


def events_for(n: int, agencies: list[str], rnd: random.Random):
    """n events over the last 30 days, by agency, in batches of BATCH."""
    start = datetime.now(timezone.utc) - timedelta(days=30)
    batch = []
    for i in range(n):
        agency = agencies[i % len(agencies)]
        batch.append({"@timestamp": ecs.utc_iso(start + timedelta(seconds=rnd.randrange(30 * 86400))),
                      "event": {"id": f"bench-posture-e{i}", "dataset": "system.auth", "original": f"event {i}"},
                      "organization": {"id": agency}, "host": {"name": f"{agency}-srv-{i % 20:02d}"}})
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def load(store, alerts: int, events: int, agencies: list[str], engine: bool) -> float:
    began = time.perf_counter()
    if engine:
        load_alerts(store, alerts, agencies)  # bench_api's bulk load (refresh off while loading)
    else:
        rnd = random.Random(7)
        start = datetime.now(timezone.utc) - timedelta(days=30)
        for first in range(0, alerts, BATCH):
            store.upsert_alerts([make_alert(i, agencies, start, rnd) for i in range(first, min(alerts, first + BATCH))])
    for batch in events_for(events, agencies, random.Random(9)):
        store.write_events(batch)
    store.refresh()
    return time.perf_counter() - began


def run_side(tree: Path, url: str, prefix: str | None, repeat: int, figures: list[str]) -> dict:
    answer = subprocess.run([sys.executable, "-c", HARNESS, str(tree), url, prefix or "", str(repeat), str(TIME_BUDGET),
                             ",".join(figures)],
                            cwd=tree, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(tree)})
    for line in answer.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise SystemExit(f"the timing in {tree} failed:\n{answer.stdout[-2000:]}\n{answer.stderr[-4000:]}")


def before_tree() -> tuple[Path, bool]:
    """A checkout of BEFORE (a git worktree in a temporary folder): (its path, whether made here)."""
    path = Path(tempfile.gettempdir()) / "posture-before"
    if (path / "soc_api" / "posture.py").exists():
        return path, False
    subprocess.run(["git", "worktree", "add", "--detach", str(path), BEFORE], cwd=ROOT, check=True,
                   capture_output=True)
    return path, True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=200_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="timings of each figure (the median is reported)")
    parser.add_argument("--store", default=None, help="opensearch://HOST:PORT (default: SQLite in a temporary folder)")
    parser.add_argument("--prefix", default=None, help="the engine's index prefix (default: a fresh one)")
    parser.add_argument("--no-load", action="store_true", help="load nothing: time what the store holds")
    parser.add_argument("--figures", default=",".join(FIGURES),
                        help=f"which to time, of {', '.join(FIGURES)} (the old code takes minutes for each posture "
                             "at a million alerts)")
    parser.add_argument("--report-from", default=None, help="no timing: write the report of a run's saved results")
    parser.add_argument("--no-write", action="store_true", help="print the results, do not touch docs/benchmarks.md")
    args = parser.parse_args()
    if args.report_from:
        run = json.loads(Path(args.report_from).read_text(encoding="utf-8"))
    else:
        run = measure(args, [f for f in args.figures.split(",") if f in FIGURES])
        saved = Path(tempfile.gettempdir()) / f"bench-posture-{run['backend']}.json"
        saved.write_text(json.dumps(run), encoding="utf-8")
        print(f"results kept in {saved} (--report-from writes their report again)")
    body = report(run)
    print(body)
    if not args.no_write:
        write_section("bench_posture", "Posture and province overview: aggregations against page-by-page reads",
                      with_other_backend(run["backend"], body))
    return 0


def measure(args, figures: list[str]) -> dict:
    from inventory.lookup import Inventory
    from soc.storage import store_from_url

    engine = bool(args.store)
    tmp = Path(tempfile.mkdtemp(prefix="bench-posture-"))
    prefix = (args.prefix or f"benchposture-{uuid.uuid4().hex[:8]}") if engine else None
    url = args.store or f"sqlite:///{tmp / 'soc.db'}"
    agencies = sorted(Inventory.load(ROOT / "inventory" / "sample" / "province.yaml").agencies)[:30]
    store = store_from_url(url, index_prefix=prefix or "soc")
    tree, made = before_tree()
    loaded = None
    try:
        if not args.no_load:
            store.open()
            loaded = load(store, args.alerts, args.events, agencies, engine)
            store.close()  # SQLite: its write-ahead log checkpointed before the timings
            store = store_from_url(url, index_prefix=prefix or "soc")
        alerts = store.aggregate(_count("alerts")).total
        events = store.aggregate(_count("events")).total
        print(f"{alerts:,} alerts, {events:,} events" + (f" (loaded in {loaded:.0f} s)" if loaded else ""))
        results = {}
        for side, where in (("after", ROOT), ("before", tree)):
            began = time.perf_counter()
            results[side] = run_side(where, url, prefix, args.repeat, figures)
            print(f"{side}: {time.perf_counter() - began:.0f} s", {k: v for k, v in results[side].items()
                                                                   if k != "figures"})
    finally:
        store.close()
        if engine and not args.no_load and not args.prefix:
            cleanup = store_from_url(url, index_prefix=prefix)
            cleanup.client.indices.delete(index=f"{prefix}-*", params={"ignore_unavailable": "true"})
            cleanup.close()
        shutil.rmtree(tmp, ignore_errors=True)
        if made:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, capture_output=True)
    return {"results": results, "alerts": alerts, "events": events, "repeat": args.repeat,
            "backend": "OpenSearch" if engine else "SQLite"}


def _count(collection: str):
    from soc.storage.aggregations import AggregateQuery

    return AggregateQuery(collection=collection)


def timing(values: list[float]) -> str:
    """The first timing, and the median of all when there are several (an engine caches an aggregation's answer
    until the index changes, so its later timings of the same question can be much shorter than the first)."""
    if len(values) == 1:
        return f"{values[0]:.2f} s"
    return f"{values[0]:.2f} s, median {statistics.median(values):.2f} s"


def report(run: dict) -> str:
    before, after = run["results"]["before"], run["results"]["after"]
    rows = []
    for key, label in FIGURES.items():
        b, a = before.get(key), after.get(key)
        if not b or not a:
            continue
        first, median = b[0] / a[0], statistics.median(b) / statistics.median(a)
        rows.append(f"| {label} | {timing(b)} | {timing(a)} | {first:.{0 if first >= 10 else 1}f}× "
                    f"(median {median:.{0 if median >= 10 else 1}f}×) |")
    fb, fa = before["figures"], after["figures"]
    same_open = all(fb["posture"][k]["open_alerts"] == fa["posture"][k]["open_alerts"] for k in fa["posture"])
    window = {side: sum(a["alerts_in_window"] for a in figures["posture"].values()) for side, figures in
              (("before", fb), ("after", fa))}
    means = max(abs((fb["posture_province"][k] or 0) - (fa["posture_province"][k] or 0))
                for k in ("mean_time_to_acknowledge_seconds", "mean_time_to_resolve_seconds"))
    # The old posture read at most OLD_POSTURE_CAP alerts per question (each open status, then the window): past it,
    # its figures were those of the alerts it read.
    capped = window["before"] >= OLD_POSTURE_CAP
    ob, oa = fb["overview"], fa["overview"]
    bounded = ob.get("bounded") or {}
    lines = [
        f"**{run['backend']}**: {run['alerts']:,} alerts, {run['events']:,} events. Up to {run['repeat']} timings "
        f"each (fewer when a side took over {TIME_BUDGET:.0f} s), each side in its own process against the same "
        f"store; \"before\" is commit {BEFORE} (a `git worktree`), \"after\" this tree. Neither side has a source "
        "tracker or rules loaded, so both make the same log-source queries.",
        "",
        f"| figure | before ({BEFORE}) | after | speed-up |",
        "|---|---|---|---|",
        *rows,
        "",
        f"- posture, open alerts by agency and severity: {'identical' if same_open else 'different'}; alerts in the "
        f"30-day window: before {window['before']:,}, after {window['after']:,}"
        + (f" (the old code stopped at its cap of {OLD_POSTURE_CAP:,} alerts per question, so its counts and means "
           f"were those of the alerts it read)" if capped else " (the window moved on between the two runs)")
        + f"; the province's mean times to acknowledge and resolve: at most {means:.1f} s apart.",
        f"- overview, open alerts: before {ob['open_total']:,}"
        f"{' (a lower bound: its read stopped at 20,000)' if bounded.get('open_complete') is False else ''}, "
        f"after {oa['open_total']:,} (exact); alerts raised in the 7 days: before {ob['raised']:,}"
        f"{' (of the 20,000 alerts it read)' if bounded.get('sample_complete') is False else ''}, after "
        f"{oa['raised']:,}.",
        f"- overview, events per day: before {', '.join(f'{n:,}' for n in ob['events_per_day'])}"
        f"{' (estimated)' if bounded.get('events_estimated') else ''}; after "
        f"{', '.join(f'{n:,}' for n in oa['events_per_day'])} (counted).",
    ]
    if run["backend"] != "SQLite":
        lines += ["", "The engine keeps an aggregation's answer in its shard request cache until the index changes: "
                  "the overview asks the same questions again (its days start at local midnight), so after its first "
                  "timing on a node — or from the first, when an earlier run asked them — the answers may come "
                  "from that cache. The posture's window moves with the clock: never cached."]
    return "\n".join(lines)


def with_other_backend(backend: str, body: str) -> str:
    """This run's part of the section, and the other backend's part as its last run left it (each run replaces
    only its own backend's part)."""
    from bench.report import DOC

    parts = {backend: body.strip()}
    text = DOC.read_text(encoding="utf-8") if DOC.exists() else ""
    for other in ("SQLite", "OpenSearch"):
        found = re.search(rf"<!-- posture:{other} -->\n(.*?)\n<!-- /posture:{other} -->", text, re.S)
        if other != backend and found:
            parts[other] = found.group(1).strip()
    return "\n\n".join(f"<!-- posture:{name} -->\n{parts[name]}\n<!-- /posture:{name} -->"
                         for name in ("SQLite", "OpenSearch") if name in parts)


if __name__ == "__main__":
    raise SystemExit(main())
