"""Console server time: the alert queue and an alert page over many alerts and events; target p95 < 300 ms, and
the queue's first screen drawn in headless Chromium in under 1 s.

Loads N alerts (bench/bench_api.py's generator: 30 agencies, 120 rules, every status and severity, a month of
last_seen) and M events (bench/synthetic_events.py: a month of the inventory's log sources) into a store — SQLite
by default (100,000 alerts and 1,000,000 events, written through the store's own bulk paths), or OpenSearch with
``--store opensearch://HOST:PORT`` or $SOC_BENCH_OPENSEARCH (1,000,000 alerts and 10,000,000 events by default) —
plus the evidence events of the alerts the benchmark opens. Then it serves the suite's real application
(soc_api/app.py: the console's routes, sessions, CSRF, templates) in this process and asks it for pages as
signed-in users (an analyst, and one request in five as an agency user), one request at a time.

Then the same application is served on a loopback port (uvicorn) and Debian's Chromium, driven by Playwright, opens
the alert queue as a signed-in analyst in a fresh browser context each time (no cache: a first visit), and the time
from navigation start to the first frame painted with the queue's rows in it is read from the page's own clock.

Server time is measured inside the process, around the application: from the request reaching it to the last byte
of the answer leaving it (no sockets, no client) — session lookup, the store's queries, the template. The baseline,
in the same run, is the store's own query for the same first page (``Data.list_alerts``): what the page adds.

    .venv/bin/python bench/bench_console.py [--alerts N] [--events M] [--requests R] [--loads L] [--store URL]
                                            [--no-write]

With OpenSearch the index prefix is removed at the end (SOC_BENCH_CONSOLE_KEEP=PREFIX keeps and reuses one).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from html import unescape
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402

from bench.bench_api import RULES, load_alerts, make_alert, percentile  # noqa: E402
from bench.report import write_section  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_EVERY = 97  # every 97th alert is one the benchmark may open (its evidence events are written)
EVIDENCE_PER_ALERT = 3
NEXT_LINK = re.compile(r'<a href="([^"]+)" rel="next">')

# What an analyst asks the queue for (one kind per request, in turn); "page2" is the next page by cursor.
QUEUE_KINDS = {
    "newest first": {},
    "status new": {"status": "new"},
    "severity high": {"severity": "high"},
    "one agency, new": {"agency": None, "status": "new"},
    "most severe first": {"sort": "severity"},
    "grouped by rule": {"group": "rule"},
    "tactic credential-access (every alert)": {"tactic": "credential-access"},
    "tactic impact (no alert has it)": {"tactic": "impact"},
    "last 24 hours": {"range": "24h"},
    "next page (cursor)": {"page2": True},
}
ENTITY_KIND = "entity (an address)"
# Pages over the events (not under the target, shown for what they cost at this volume).
EVENT_KINDS = {
    "event search: last 24 hours": ("/console/events", {"range": "24h"}),
    "event search: free text, 7 days": ("/console/events", {"range": "7d", "q": "Failed password"}),
    "entity page (an address)": (None, None),
}


class Timed:
    """The application, timed from the request's arrival to the last byte of its answer."""

    def __init__(self, app):
        self.app = app
        self.last = 0.0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        began = time.perf_counter()

        async def timed_send(message):
            if message["type"] == "http.response.body" and not message.get("more_body"):
                self.last = time.perf_counter() - began
            await send(message)

        await self.app(scope, receive, timed_send)


def sqlite_load(store, n: int, agencies: list[str]) -> float:
    start = datetime.now(timezone.utc) - timedelta(days=30)
    rnd = random.Random(7)
    began = time.perf_counter()
    batch = []
    for i in range(n):
        batch.append(make_alert(i, agencies, start, rnd))
        if len(batch) == 5000:
            store.upsert_alerts(batch)
            batch = []
    if batch:
        store.upsert_alerts(batch)
    return time.perf_counter() - began


def top_up_events(store, settings, missing: int, seed: int) -> float:
    """Add the missing background events (a month of the inventory's log sources) through the store's bulk path."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from bench.synthetic_events import load_events
    from inventory.lookup import Inventory

    inventory = Inventory.load(settings.inventory.path)
    with Progress(TextColumn("loading events"), BarColumn(), TextColumn("{task.completed:,}/{task.total:,}"),
                  TimeRemainingColumn()) as bar:
        task = bar.add_task("load", total=missing)
        return load_events(store, inventory, missing, seed=seed, progress=lambda d, t: bar.update(task, completed=d))


FIRST_SCREEN_JS = """() => new Promise(resolve => requestAnimationFrame(() => requestAnimationFrame(() => {
    const paint = performance.getEntriesByName('first-contentful-paint')[0];
    resolve({drawn: performance.now(), fcp: paint ? paint.startTime : null,
             response: performance.getEntriesByType('navigation')[0].responseEnd});
})))"""


def first_screens(app, session_token: str, loads: int) -> list[dict]:
    """The queue's first screen in headless Chromium: the application served by uvicorn on a loopback port, a fresh
    browser context for each load (nothing cached), the time from navigation start until the first frame painted
    with the queue's rows in the page (two animation frames after the rows exist), on the page's own clock."""
    import socket
    import threading

    import uvicorn
    from playwright.sync_api import sync_playwright

    from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, VIEWPORT

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    results = []
    try:
        with sync_playwright() as driver:
            browser = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            base = f"http://127.0.0.1:{port}"
            for i in range(loads + 2):  # the first two warm the server's caches and Chromium's own start
                context = browser.new_context(viewport=VIEWPORT, locale="vi-VN")
                context.add_cookies([{"name": "soc_session", "value": session_token, "url": base},
                                     {"name": "soc_lang", "value": "vi", "url": base},
                                     {"name": "soc_tz", "value": "Asia/Ho_Chi_Minh", "url": base}])
                page = context.new_page()
                page.goto(f"{base}/console/alerts", wait_until="commit")
                page.wait_for_selector("#alert-queue tr[data-alert-id]", state="visible")
                measured = page.evaluate(FIRST_SCREEN_JS)
                if i >= 2:
                    results.append(measured)
                context.close()
            browser.close()
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    return results


def evidence_events(alerts: list[dict]) -> list[dict]:
    events = []
    for alert in alerts:
        for n, event_id in enumerate(alert["evidence"]):
            ip = alert["entities"]["ip"][0]
            events.append({
                "@timestamp": alert["last_seen"], "message": f"Failed password for root from {ip} port {4000 + n}",
                "event": {"id": event_id, "original": f"sshd[7]: Failed password for root from {ip} port {4000 + n}",
                          "dataset": "system.auth", "action": "ssh_login", "outcome": "failure"},
                "source": {"ip": ip, "port": 4000 + n}, "user": {"name": "root"},
                "host": {"name": alert["entities"]["host"][0]}, "organization": {"id": alert["organization"]["id"]},
            })
    return events


def sampled_alerts(store, count: int) -> list[dict]:
    """Alerts to open: every SAMPLE_EVERY-th of the newest ``count * SAMPLE_EVERY``, read back from the store."""
    from soc.storage.base import AlertQuery

    out, after = [], None
    while len(out) < count:
        batch = store.list_alerts(AlertQuery(limit=1000, after=after))
        if not batch:
            break
        out += batch[::SAMPLE_EVERY]
        after = (batch[-1]["last_seen"], batch[-1]["id"])
    return out[:count]


async def run(app, cookies: dict[str, str], agencies: list[str], samples: dict[str, list[dict]], requests: int,
              timed: Timed) -> tuple[dict[str, list[float]], list[str], dict[str, int]]:
    times: dict[str, list[float]] = {}
    errors: list[str] = []
    sizes: dict[str, int] = {}
    rnd = random.Random(5)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
    clients = {who: httpx.AsyncClient(transport=transport, base_url="http://console.bench", cookies={
        "soc_session": token, "soc_lang": "vi", "soc_tz": "Asia/Ho_Chi_Minh"}, follow_redirects=False)
        for who, token in cookies.items()}
    kinds = list(QUEUE_KINDS) + [ENTITY_KIND, "alert page"] + list(EVENT_KINDS)
    try:
        async def get(client, path, params=None) -> httpx.Response | None:
            response = await client.get(path, params=params)
            if response.status_code != 200:
                errors.append(f"{path} {response.status_code} {response.text[:120]}")
                return None
            return response

        for warm in range(20):  # templates compiled, caches and connections warm
            await get(clients["analyst"], "/console/alerts")
        for i in range(requests * len(kinds)):
            kind = kinds[i % len(kinds)]
            who = "agency" if i % 5 == 4 else "analyst"
            client = clients[who]
            own = samples[who]
            if kind == "alert page":
                path, params = f"/console/alerts/{rnd.choice(own)['id']}", None
            elif kind == "entity page (an address)":
                path, params = f"/console/entities/ip/{rnd.choice(own)['entities']['ip'][0]}", None
            elif kind in EVENT_KINDS:
                path, params = EVENT_KINDS[kind]
            elif kind == ENTITY_KIND:
                path, params = "/console/alerts", {"entity": rnd.choice(own)["entities"]["ip"][0]}
            else:
                params = dict(QUEUE_KINDS[kind])
                if "agency" in params:
                    if who == "agency":
                        params.pop("agency")
                    else:
                        params["agency"] = rnd.choice(agencies)
                path = "/console/alerts"
                if params.pop("page2", False):
                    first = await get(client, path, params)
                    found = NEXT_LINK.search(first.text) if first is not None else None
                    if not found:
                        continue
                    path, params = unescape(found.group(1)), None
            response = await get(client, path, params)
            if response is None:
                continue
            times.setdefault(kind, []).append(timed.last)
            sizes[kind] = max(sizes.get(kind, 0), len(response.content))
    finally:
        for client in clients.values():
            await client.aclose()
    return times, errors, sizes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=None, help="default: 100,000 on SQLite, 1,000,000 on OpenSearch")
    parser.add_argument("--events", type=int, default=None,
                        help="default: 1,000,000 on SQLite, 10,000,000 on OpenSearch (only what is missing is added)")
    parser.add_argument("--requests", type=int, default=60, help="timed requests of each kind")
    parser.add_argument("--loads", type=int, default=20, help="first-screen loads in Chromium (0: none)")
    parser.add_argument("--store", default=None, help="opensearch://HOST:PORT (default: $SOC_BENCH_OPENSEARCH, "
                                                      "else SQLite in a temporary folder)")
    parser.add_argument("--no-write", action="store_true", help="print the results, do not touch docs/benchmarks.md")
    args = parser.parse_args()

    from inventory.lookup import Inventory
    from soc_api.app import create_app
    from soc_api.console import sessions
    from soc_api.data import AlertFilter, Data
    from soc_api.keys import Principal, create_user
    from soc.storage import store_from_url
    from suite.runtime import Suite
    from tests.conftest import make_settings

    url = args.store or os.environ.get("SOC_BENCH_OPENSEARCH")
    backend = "OpenSearch" if url else "SQLite"
    n = args.alerts or (1_000_000 if url else 100_000)
    n_events = args.events if args.events is not None else (10_000_000 if url else 1_000_000)
    tmp = Path(tempfile.mkdtemp(prefix="bench-console-"))
    keep = os.environ.get("SOC_BENCH_CONSOLE_KEEP")
    prefix = (keep or f"benchconsole-{uuid.uuid4().hex[:8]}") if url else None
    url = url or f"sqlite:///{tmp / 'soc.db'}"
    settings = make_settings(tmp, store_url=url, index_prefix=prefix,
                             sections={"soc_api": {"rate_limit": {"requests_per_second": 1_000_000,
                                                                  "burst": 1_000_000}}},
                             SOC__SYSLOG__ENABLED="false",
                             SOC__DETECTIONS__SIGMA_RULE_DIRS=f'["{ROOT / "detections" / "rules" / "linux"}"]')
    suite = Suite(settings)
    store = suite.store
    try:
        agencies = sorted(Inventory.load(settings.inventory.path).agencies)[:30]
        load_seconds = None
        if backend == "SQLite":
            load_seconds = sqlite_load(store, n, agencies)
            count = n
        else:
            count = store.client.count(index=store.alerts_index)["count"]
            if count < n:
                load_seconds = load_alerts(store, n - count, agencies)
                count = store.client.count(index=store.alerts_index)["count"]
        events_before = store.count_events()
        events_seconds = None
        if events_before < n_events:
            events_seconds = top_up_events(store, settings, n_events - events_before, seed=11 + events_before)
        events_count = store.count_events()
        store.refresh()
        sample = sampled_alerts(store, 600)
        store.write_events(evidence_events(sample))
        store.refresh()
        agency = max(agencies, key=lambda a: sum(1 for s in sample if s["organization"]["id"] == a))
        samples = {"analyst": sample, "agency": [s for s in sample if s["organization"]["id"] == agency]}
        cookies = {}
        for who, role, bound in (("analyst", "analyst", None), ("agency", "agency", agency)):
            account = create_user(store, f"bench-{who}-{uuid.uuid4().hex[:6]}", role=role, agency=bound)
            cookies[who], _ = sessions.create(store, account, settings.soc_api.console)
        store.refresh()
        timed = Timed(create_app(suite))
        times, errors, sizes = asyncio.run(run(timed, cookies, agencies, samples, args.requests, timed))
        screens = first_screens(timed, cookies["analyst"], args.loads) if args.loads else []
        # The baseline: the store's own query for the first page of the queue (what Data.list_alerts asks).
        data = Data(None, Principal(key_id="-", role="analyst", agency=None, name="bench", user="bench"), suite)
        base = []
        for _ in range(args.requests * 3):
            began = time.perf_counter()
            data.list_alerts(AlertFilter(), 50, None)
            base.append(time.perf_counter() - began)
    finally:
        suite.store.close()
        if prefix and not keep:
            try:
                cleanup = store_from_url(url, index_prefix=prefix)
                cleanup.client.indices.delete(index=f"{prefix}-*", params={"ignore_unavailable": "true"})
                cleanup.close()
            except Exception as exc:  # noqa: BLE001
                print(f"not removed: {exc}", file=sys.stderr)

    ms = lambda v: f"{v * 1000:.1f}"  # noqa: E731

    def row(name: str, values: list[float], size: int | None = None) -> str:
        kib = f"{size / 1024:.0f}" if size else "—"
        return (f"| {name} | {len(values):,} | {ms(percentile(values, 50))} | {ms(percentile(values, 95))} | "
                f"{ms(percentile(values, 99))} | {ms(max(values))} | {kib} |")

    queue = [v for kind, values in times.items() if kind in QUEUE_KINDS for v in values]
    pages = times.get("alert page", [])
    rows = "\n".join(row(f"queue: {kind}", times[kind], sizes.get(kind)) for kind in QUEUE_KINDS if kind in times)
    verdicts = []
    for name, values in (("queue", queue), ("alert page", pages)):
        p95 = percentile(values, 95)
        verdicts.append(f"{name} **{'met' if p95 < 0.300 else 'NOT met'}** (p95 {ms(p95)} ms)")
    loaded = f", loaded in {load_seconds:.0f} s" if load_seconds else " (loaded before this run)"
    events_loaded = (f", {n_events - events_before:,} of them loaded in {events_seconds:.0f} s" if events_seconds
                     else " (loaded before this run)")
    event_rows = "\n".join(row(kind, times[kind], sizes.get(kind)) for kind in EVENT_KINDS if kind in times)
    drawn = [m["drawn"] / 1000 for m in screens]
    screen_text = "(not measured: --loads 0)"
    if drawn:
        fcp = [m["fcp"] / 1000 for m in screens if m["fcp"] is not None]
        answered = [m["response"] / 1000 for m in screens]
        p95 = percentile(drawn, 95)
        screen_text = f"""The queue's first screen in headless Chromium ({len(drawn)} loads, each in a fresh browser context: no cache;
the application served by uvicorn on loopback; 1366×768; Vietnamese):

| from navigation start | loads | p50 ms | p95 ms | max ms |
|---|---:|---:|---:|---:|
| page answered (responseEnd) | {len(answered)} | {ms(percentile(answered, 50))} | {ms(percentile(answered, 95))} | {ms(max(answered))} |
| first contentful paint | {len(fcp)} | {ms(percentile(fcp, 50)) if fcp else "—"} | {ms(percentile(fcp, 95)) if fcp else "—"} | {ms(max(fcp)) if fcp else "—"} |
| **first frame with the queue's rows** | {len(drawn)} | {ms(percentile(drawn, 50))} | {ms(p95)} | {ms(max(drawn))} |

Target first screen < 1 s — **{'met' if p95 < 1.0 else 'NOT met'}** (p95 {ms(p95)} ms)."""
    load_text = " / ".join(f"{x:.1f}" for x in os.getloadavg()) + f" (1/5/15 min, {os.cpu_count()} cores)"
    entity = times.get(ENTITY_KIND, [])
    body = f"""
{count:,} alerts on {backend} (30 agencies, {len(RULES)} rules, every status and severity, a month of `last_seen`;
bench/bench_api.py's generator){loaded}; {events_count:,} events (a month of the inventory's log sources,
bench/synthetic_events.py){events_loaded}, among them {len(sample) * EVIDENCE_PER_ALERT:,} evidence events of the
{len(sample)} alerts opened. The suite's application in this process, one request at a time, as signed-in users (one request in
five an agency user's: its own agency only); pages in Vietnamese, 50 alerts a page. Server time: from the request
reaching the application to the last byte of its answer (session, store queries, template), no network.

| request | requests | p50 ms | p95 ms | p99 ms | max ms | page KiB |
|---|---:|---:|---:|---:|---:|---:|
{rows}
| **queue, all kinds above** | {len(queue):,} | {ms(percentile(queue, 50))} | {ms(percentile(queue, 95))} | {ms(percentile(queue, 99))} | {ms(max(queue))} | |
{row("alert page (evidence, entities, 1 + 3 related-alert queries, history)", pages, sizes.get("alert page"))}
{row("queue: " + ENTITY_KIND + " (store-side entity match)", entity, sizes.get(ENTITY_KIND)) if entity else ""}
{row("baseline: the store's query for the queue's first page (Data.list_alerts)", base)}

Pages over the events at this volume (no target; what they cost):

| request | requests | p50 ms | p95 ms | p99 ms | max ms | page KiB |
|---|---:|---:|---:|---:|---:|---:|
{event_rows}

Target p95 < 300 ms — {"; ".join(verdicts)}. Errors: {len(errors)}{' (first: ' + errors[0] + ')' if errors else ''}.
{screen_text}

Machine load average when it finished: {load_text}.
"""
    print(body)
    if not args.no_write:
        write_section("bench_console", "Console: alert queue and alert page server time",
                      with_other_backend(backend, f"### {count:,} alerts and {events_count:,} events on {backend}\n{body}"))
    return 0 if not errors else 1


def with_other_backend(backend: str, body: str) -> str:
    """This run's part of the section, and the other backend's part as the last run of it left it (the SQLite and
    OpenSearch runs are separate: each replaces only its own part)."""
    from bench.report import DOC

    parts = {backend: body.strip()}
    text = DOC.read_text(encoding="utf-8") if DOC.exists() else ""
    for other in ("SQLite", "OpenSearch"):
        if other == backend:
            continue
        found = re.search(rf"<!-- console:{other} -->\n(.*?)\n<!-- /console:{other} -->", text, re.S)
        if found:
            parts[other] = found.group(1).strip()
    return "\n\n".join(f"<!-- console:{name} -->\n{parts[name]}\n<!-- /console:{name} -->"
                         for name in ("OpenSearch", "SQLite") if name in parts)


if __name__ == "__main__":
    sys.exit(main())
