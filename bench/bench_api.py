"""Alert list latency through the API: 50 concurrent clients over 1 million alerts on OpenSearch; target p99 < 100 ms.

Set SOC_BENCH_API_KEEP=PREFIX to reuse (and keep) alerts already loaded under that index prefix.

Bulk-loads N alerts (default 1,000,000: 30 agencies, every status and severity, a month of last_seen) into a fresh
index prefix, starts the suite's API on that store, and runs C concurrent clients (default 50, each its own HTTP
connection and key: analysts and agency keys) issuing the alert listings analysts use — newest first, by status, by
severity, one agency, and the next page by cursor — for a fixed time. The baseline, measured in the same run, is the
same queries made directly on the store (no HTTP, no API), one at a time: what the API adds on top of OpenSearch.

    .venv/bin/python bench/bench_api.py [--alerts N] [--clients C] [--seconds S] [--store opensearch://HOST:PORT]
                                        [--no-write]

Without --store it uses $SOC_BENCH_OPENSEARCH, else starts its own node (scripts/opensearch.sh, port 9271) and stops
it afterwards. The index prefix is removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn  # noqa: E402

from bench.report import write_section  # noqa: E402
from soc import ecs  # noqa: E402
from soc.storage.base import AlertQuery  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OWN_PORT = 9271
SEVERITIES = ("informational", "low", "medium", "high", "critical")
STATUSES = ("new", "new", "new", "acknowledged", "in_progress", "closed", "closed", "closed", "suppressed")
RULES = [(f"rule-{i:03d}", f"Rule {i}", ["attack.t1110", "attack.credential-access"]) for i in range(120)]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def make_alert(i: int, agencies: list[str], start: datetime, rnd: random.Random) -> dict:
    agency = agencies[i % len(agencies)]
    rule_id, title, tags = RULES[rnd.randrange(len(RULES))]
    last = start + timedelta(seconds=rnd.randrange(30 * 86400))
    first = last - timedelta(seconds=rnd.randrange(3600))
    ip = f"198.51.{rnd.randrange(256)}.{rnd.randrange(256)}"
    status = STATUSES[rnd.randrange(len(STATUSES))]
    aid = uuid.UUID(int=rnd.getrandbits(128)).hex
    doc = {
        "id": aid, "fingerprint": aid[:32], "@timestamp": ecs.utc_iso(first),
        "labels": {"rule.id": rule_id, "organization.id": agency, "source.ip": ip},
        "rule": {"id": rule_id, "name": rule_id, "title": title, "type": "rule", "tags": tags},
        "severity": SEVERITIES[rnd.randrange(5)], "threat": {"tactic": ["credential-access"], "technique": ["T1110"]},
        "status": status, "organization": {"id": agency, "name": agency}, "group": {"key": rule_id, "labels": {}},
        "entities": {"ip": [ip], "user": ["root"], "host": [f"{agency}-srv-{rnd.randrange(20):02d}"]},
        "count": rnd.randrange(1, 500), "first_seen": ecs.utc_iso(first), "last_seen": ecs.utc_iso(last),
        "evidence": [uuid.UUID(int=rnd.getrandbits(128)).hex for _ in range(3)],
        "created": ecs.utc_iso(first), "updated": ecs.utc_iso(last),
        "summary": f"{title} ({ip}) on {agency}-srv - events",
        "history": [{"at": ecs.utc_iso(first), "by": "detections", "action": "raised"}],
    }
    if status in ("acknowledged", "in_progress", "closed"):
        doc["acknowledged_at"] = ecs.utc_iso(first + timedelta(minutes=5))
    if status == "closed":
        doc["closed_at"], doc["close_reason"] = ecs.utc_iso(last), "true_positive"
    return doc


def load_alerts(store, n: int, agencies: list[str]) -> float:
    """Bulk-load n alerts; returns seconds. Refresh off while loading, one refresh at the end."""
    from opensearchpy import helpers

    client = store.client
    client.indices.put_settings(index=store.alerts_index, body={"index": {"refresh_interval": "-1"}})
    already = client.count(index=store.alerts_index)["count"]
    rnd = random.Random(7 + already)  # topping up a kept prefix adds new alerts, it does not rewrite the old ones
    start = datetime.now(timezone.utc) - timedelta(days=30)

    def actions():
        for i in range(n):
            doc = make_alert(i, agencies, start, rnd)
            yield {"_op_type": "index", "_index": store.alerts_index, "_id": doc["id"], "_source": doc}

    began = time.perf_counter()
    with Progress(TextColumn("loading alerts"), BarColumn(), TextColumn("{task.completed:,}/{task.total:,}"),
                  TimeRemainingColumn()) as bar:
        task = bar.add_task("load", total=n)
        for ok, item in helpers.streaming_bulk(client, actions(), chunk_size=5000, max_retries=5,
                                               raise_on_error=True, request_timeout=120):
            bar.advance(task)
    client.indices.put_settings(index=store.alerts_index, body={"index": {"refresh_interval": "1s"}})
    client.indices.refresh(index=store.alerts_index)
    client.indices.forcemerge(index=store.alerts_index, max_num_segments=1, request_timeout=600)
    return time.perf_counter() - began


def queries(agencies: list[str], rnd: random.Random) -> dict:
    """One analyst query: the kinds an SOC console issues."""
    kind = rnd.randrange(5)
    if kind == 0:
        return {"limit": 50}
    if kind == 1:
        return {"limit": 50, "status": "new"}
    if kind == 2:
        return {"limit": 50, "severity": rnd.choice(("high", "critical"))}
    if kind == 3:
        return {"limit": 50, "agency": rnd.choice(agencies), "status": "new"}
    return {"limit": 50, "page2": True}


async def client_loop(base: str, key: str, agencies: list[str], timing: dict, seed: int, latencies: list[float],
                      errors: list[str], own_agency: str | None, interval: float | None) -> None:
    """One client: back to back (interval None), or one listing every ``interval`` seconds on average (Poisson).

    Every client first opens its connection with one untimed request, then waits for the others: setting up 50
    HTTP clients takes the bench process about a second, and requests due in that second would otherwise leave in
    one burst, measuring the bench's start-up rather than the API."""
    rnd = random.Random(seed)
    async with httpx.AsyncClient(base_url=base, headers={"X-API-Key": key}, timeout=30,
                                 limits=httpx.Limits(max_connections=1)) as client:
        await client.get("/api/v1/alerts", params={"limit": 1})
        timing["ready"] += 1
        if timing["ready"] == timing["clients"]:  # the last one ready starts the clock for all
            timing["began"] = time.perf_counter()
            timing["deadline"] = timing["began"] + timing["seconds"]
            timing["go"].set()
        await timing["go"].wait()
        deadline = timing["deadline"]
        next_at = time.perf_counter() + (rnd.expovariate(1 / interval) if interval else 0)
        while time.perf_counter() < deadline:
            if interval:
                await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
                next_at += rnd.expovariate(1 / interval)
                if time.perf_counter() >= deadline:
                    break
            params = queries(agencies, rnd)
            if own_agency:
                params.pop("agency", None)
            page2 = params.pop("page2", False)
            if page2:
                first = await client.get("/api/v1/alerts", params=params)
                cursor = first.json().get("next_cursor")
                if cursor:
                    params["cursor"] = cursor
            began = time.perf_counter()
            response = await client.get("/api/v1/alerts", params=params)
            elapsed = time.perf_counter() - began
            if response.status_code != 200:
                errors.append(f"{response.status_code} {response.text[:100]}")
                continue
            latencies.append(elapsed)


async def run_clients(base: str, keys: list[tuple[str, str | None]], agencies: list[str], seconds: float,
                      interval: float | None = None) -> tuple[list[float], list[str], float]:
    latencies: list[float] = []
    errors: list[str] = []
    timing = {"ready": 0, "clients": len(keys), "go": asyncio.Event(), "seconds": seconds}
    await asyncio.gather(*[client_loop(base, key, agencies, timing, i, latencies, errors, agency, interval)
                           for i, (key, agency) in enumerate(keys)])
    return latencies, errors, time.perf_counter() - timing["began"]


def knob_baselines(store, agencies: list[str], count: int = 400) -> dict[str, list[float]]:
    """The same queries straight to OpenSearch: a plain search (exact hit count, whole response), without the hit
    count, and as the store sends them now (no hit count, only the documents: ``filter_path``)."""
    out: dict[str, list[float]] = {}
    for name, total, only_documents in (("plain search: exact hit count, whole response", None, False),
                                        ("+ track_total_hits false", False, False),
                                        ("+ only the documents (filter_path): as the store sends them", False, True)):
        rnd = random.Random(11)
        times = []
        for _ in range(count):
            params = queries(agencies, rnd)
            params.pop("page2", None)
            filters = [{"term": {f: params[k]}} for k, f in (("status", "status"), ("severity", "severity"),
                                                             ("agency", "organization.id")) if k in params]
            body = {"query": {"bool": {"filter": filters}}, "size": 50,
                    "sort": [{"last_seen": {"order": "desc"}}, {"id": {"order": "desc"}}]}
            if total is not None:
                body["track_total_hits"] = total
            began = time.perf_counter()
            store.client.search(index=store.alerts_index, body=body,
                                params={"filter_path": "hits.hits._source"} if only_documents else None)
            times.append(time.perf_counter() - began)
        out[name] = times
    return out


def baseline(store, agencies: list[str], count: int = 400) -> list[float]:
    rnd = random.Random(11)
    out = []
    for _ in range(count):
        params = queries(agencies, rnd)
        page2 = params.pop("page2", False)
        q = AlertQuery(limit=params["limit"], status=params.get("status"), severity=params.get("severity"),
                       agency=params.get("agency"))
        if page2:
            first = store.list_alerts(q)
            q.after = (first[-1]["last_seen"], first[-1]["id"])
        began = time.perf_counter()
        store.list_alerts(q)
        out.append(time.perf_counter() - began)
    return out


def start_own_node() -> str:
    env = dict(os.environ, OPENSEARCH_HEAP=os.environ.get("OPENSEARCH_HEAP", "2g"))
    subprocess.run([str(ROOT / "scripts" / "opensearch.sh"), "start", "--port", str(OWN_PORT)], check=True, env=env)
    return f"opensearch://127.0.0.1:{OWN_PORT}"


def start_server(tmp: Path, env: dict, cache_seconds: float, port: int) -> subprocess.Popen:
    """The API as it runs in production: `soc serve`, in its own process (the clients must not share its
    interpreter), with the rate limit out of the way and the given alert-list cache."""
    api_config = tmp / "soc.yaml"
    api_config.write_text(f"soc_api:\n  rate_limit: {{requests_per_second: 100000, burst: 100000}}\n"
                          f"  alert_list_cache_seconds: {cache_seconds}\n")
    server_log = (tmp / "serve.log").open("ab")  # a file: a full pipe would stall the server
    server = subprocess.Popen([sys.executable, "-m", "suite.cli", "serve"], cwd=ROOT,
                              env=dict(os.environ, **env, SOC_CONFIG=str(api_config)),
                              stdout=subprocess.DEVNULL, stderr=server_log)
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"soc serve did not start: {(tmp / 'serve.log').read_text()[-2000:]}")
        time.sleep(0.5)


def stop_server(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(timeout=60)
    except subprocess.TimeoutExpired:
        server.kill()


def cache_hit_ratio(base: str) -> float | None:
    text = httpx.get(f"{base}/metrics", timeout=10).text
    counts = {}
    for line in text.splitlines():
        if line.startswith("soc_api_alert_list_cache_total{"):
            counts[line.split('result="')[1].split('"')[0]] = float(line.rsplit(" ", 1)[1])
    total = sum(counts.values())
    return counts.get("hit", 0.0) / total if total else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=1_000_000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--store", default=None)
    parser.add_argument("--interval", type=float, default=1.0,
                        help="paced phase: mean seconds between one client's listings (a console refreshing)")
    parser.add_argument("--no-write", action="store_true", help="print the results, do not touch docs/benchmarks.md")
    args = parser.parse_args()

    from soc.storage import open_store, store_from_url
    from soc_api.keys import create_key
    from tests.conftest import free_port, make_settings

    own = False
    url = args.store or os.environ.get("SOC_BENCH_OPENSEARCH")
    if not url:
        url, own = start_own_node(), True
    keep = os.environ.get("SOC_BENCH_API_KEEP")
    prefix = keep or f"benchapi-{uuid.uuid4().hex[:8]}"
    tmp = Path(tempfile.mkdtemp(prefix="bench-api-"))
    server = None
    errors: list[str] = []
    try:
        port = free_port()
        env = {
            "SOC__DATA_DIR": str(tmp), "SOC__STORE__URL": url, "SOC__STORE__INDEX_PREFIX": prefix,
            "SOC__SYSLOG__ENABLED": "false", "SOC__API__PORT": str(port),
            "SOC__DETECTIONS__SIGMA_RULE_DIRS": f'["{ROOT / "detections" / "rules" / "linux"}"]',
        }
        settings = make_settings(tmp, store_url=url, index_prefix=prefix, SOC__SYSLOG__ENABLED="false")
        store = open_store(settings)
        from inventory.lookup import Inventory

        agencies = sorted(Inventory.load(settings.inventory.path).agencies)[:30]
        count = store.client.count(index=store.alerts_index)["count"]
        load_seconds = None
        if count < args.alerts:
            load_seconds = load_alerts(store, args.alerts - count, agencies)
            count = store.client.count(index=store.alerts_index)["count"]
        keys = []
        for i in range(args.clients):
            if i % 5 == 4:  # one client in five is an agency
                agency = agencies[i % len(agencies)]
                keys.append((create_key(store, "agency", agency=agency)[0], agency))
            else:
                keys.append((create_key(store, "analyst")[0], None))
        base_lat = baseline(store, agencies)
        knobs = knob_baselines(store, agencies)
        results = {}
        for label, ttl in (("no cache", 0.0), ("1 s list cache", 1.0)):
            server = start_server(tmp, env, ttl, port)
            base = f"http://127.0.0.1:{port}"
            asyncio.run(run_clients(base, keys[:5], agencies, 3.0))  # warm-up (caches, connections)
            paced, paced_errors, paced_wall = asyncio.run(run_clients(base, keys, agencies, args.seconds,
                                                                      interval=args.interval))
            closed, closed_errors, closed_wall = asyncio.run(run_clients(base, keys, agencies, args.seconds))
            hit_ratio = cache_hit_ratio(base)
            stop_server(server)
            server = None
            results[label] = (paced, paced_wall, closed, closed_wall, hit_ratio)
            errors += paced_errors + closed_errors
        store.close()
    finally:
        if server is not None:
            stop_server(server)
        try:
            if keep:
                raise RuntimeError(f"kept {prefix}-* (SOC_BENCH_API_KEEP)")
            cleanup = store_from_url(url, index_prefix=prefix)
            cleanup.client.indices.delete(index=f"{prefix}-*", params={"ignore_unavailable": "true"})
            cleanup.close()
        except Exception as exc:  # noqa: BLE001
            print(f"not removed: {exc}", file=sys.stderr)
        if own:
            subprocess.run([str(ROOT / "scripts" / "opensearch.sh"), "stop", "--port", str(OWN_PORT)], check=False)

    ms = lambda v: f"{v * 1000:.1f}"  # noqa: E731

    def row(name: str, values: list[float], seconds: float | None) -> str:
        rate = f"{len(values) / seconds:.0f}" if seconds else "—"
        return (f"| {name} | {len(values):,} | {ms(percentile(values, 50))} | {ms(percentile(values, 95))} | "
                f"{ms(percentile(values, 99))} | {rate} |")

    loaded = f", loaded in {load_seconds:.0f} s" if load_seconds else " (loaded before this run)"
    load_text = " / ".join(f"{x:.1f}" for x in os.getloadavg()) + f" (1/5/15 min, {os.cpu_count()} cores)"
    rows, verdicts = [], []
    for label, (paced, paced_wall, closed, closed_wall, hits) in results.items():
        hit_text = f", {hits:.0%} cache hits" if hits is not None and label != "no cache" else ""
        rows.append(row(f"API ({label}), {args.clients} clients, paced{hit_text}", paced, paced_wall))
        rows.append(row(f"API ({label}), {args.clients} clients, closed loop", closed, closed_wall))
        for phase, values in (("paced", paced), ("closed loop", closed)):
            p99 = percentile(values, 99)
            verdicts.append(f"{label}, {phase}: **{'met' if p99 < 0.100 else 'NOT met'}** ({ms(p99)} ms)")
    rows_text = "\n".join(rows)
    knob_text = "\n".join(row(name, times, None) for name, times in knobs.items())
    body = f"""
{count:,} alerts in one OpenSearch index (30 agencies, {len(RULES)} rules, a month of `last_seen`){loaded}.
{args.clients} concurrent clients (one in five with an agency key), each on its own connection; queries: newest
first, `status=new`, `severity=high|critical`, one agency's new alerts, and the second page by cursor; `limit=50`.
One API process (`soc serve`, uvloop and httptools), OpenSearch and the clients (another process) share the machine.
Every client opens its connection (one untimed request) before the clock starts. Two phases of
{args.seconds:.0f} s: *paced* — each client lists alerts every {args.interval:g} s on average (Poisson arrivals; an
analyst console refreshing), and *closed loop* — each client sends its next request as soon as the last one is
answered (saturation: latency there is queueing, {args.clients} / throughput). Each with the alert-list cache off and
on (`soc_api.alert_list_cache_seconds`: one answer per scope and query for a second, emptied by any analyst change).

| | requests | p50 ms | p95 ms | p99 ms | requests/s |
|---|---:|---:|---:|---:|---:|
{rows_text}
{row("baseline: the same queries on the store directly, one at a time", base_lat, None)}

The store's own query time, one at a time, straight to OpenSearch: what `soc/storage/search.py` saves by asking
for no exact total-hit count and only the documents back (it also talks to the node without gzip by default,
`store.compress`):

| OpenSearch query | requests | p50 ms | p95 ms | p99 ms | |
|---|---:|---:|---:|---:|---:|
{knob_text}

Machine load average when it finished: {load_text}.

Target p99 < 100 ms — {"; ".join(verdicts)}. Errors: {len(errors)}{' (first: ' + errors[0] + ')' if errors else ''}.
"""
    print(body)
    if not args.no_write:
        write_section("bench_api", "API: alert list latency over 1M alerts (OpenSearch)", body)
    return 0 if not errors else 1


if __name__ == "__main__":
    sys.exit(main())
