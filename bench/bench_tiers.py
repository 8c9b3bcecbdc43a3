"""Tiers: the throughput of forwarding, city → province, with two real `soc serve` processes on loopback.

A city suite (tests/tier_suites.py's CITY_INVENTORY: An Binh City and two communes) takes mixed firewall/WAF/auth
syslog lines (the Elastic fixtures of bench_parsers.py, each made unique) over TCP from 127.0.0.2, the address its
inventory gives the commune p-tan-an, as a commune's devices send them on the WAN. Everything runs on loopback, under
a temporary folder, on the embedded store (SQLite) at both tiers. Counts are read from each suite's SQLite files,
read-only (``SELECT count(*) FROM events``; the outbox's ``SELECT count(*) FROM outbox WHERE kind = 'event'``).

1. Baseline: the city alone (no upstream), N lines: time from the first byte sent until every line is stored at the
   city (or kept as a dead letter: the fixtures include invalid records, which never go up).
2. Forwarding: a fresh city with ``tiers.upstream.events: all`` to a fresh province, the same N lines: time until
   the city has stored them and until the province has stored every one of them; the rate end to end, the city's
   rate with forwarding on, how long the province trails the city, the overhead against the baseline (in time and
   in CPU seconds per event) and the outbox's peak backlog. Baseline and forwarding runs alternate (``--rounds``, default 2): the
   machine is shared, and other work during one run would otherwise decide the comparison.
3. Drain: a fresh pair; the province stopped (SIGTERM), N/2 lines fed to the city (they wait in its outbox), the
   province started again: time from it answering until the backlog is at the province: forwarding alone, from a
   full outbox. Repeated for each ``tiers.upstream.batch_max_events`` of ``--batch-sizes``; a line through the
   drains' times against their number of batches separates the fixed cost of a batch from the cost of its events.
   The outbox's own ``backlog()`` is timed on the full outbox (the forwarder reads it after every batch).

Each stage ends with a check: the same event ids (and alert ids) at both tiers, each stored once, nothing left in the
outbox, nothing dropped or refused; and the number of events the province was sent (its
``soc_tier_received_total``) against the number the city confirmed, which tells whether batches went twice.

    .venv/bin/python bench/bench_tiers.py [--events N] [--rounds 2] [--batch-sizes 500,2000,5000] [--no-write]

The default (200,000 lines, 2 rounds, 3 drains) takes 4 to 7 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_parsers import MIX, syslog_lines  # noqa: E402
from bench.report import write_section  # noqa: E402
from collectors.settings import PipelineConfig  # noqa: E402
from suite.settings import load_settings  # noqa: E402
from tests.tier_suites import CITY_INVENTORY, TierSuite  # noqa: E402

CITY = CITY_INVENTORY["province"]["id"]  # h-an-binh: the city's own agency, the link at the province
COMMUNE_ADDRESS = "127.0.0.2"  # p-tan-an's network in CITY_INVENTORY
POLL = 0.25  # seconds between two readings of the counts
PRINT_EVERY = 5.0  # seconds between two progress lines
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

SENDER = """
import socket, sys
data = open(sys.argv[1], 'rb').read()
with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as conn:
    conn.bind((sys.argv[3], 0))
    conn.connect(('127.0.0.1', int(sys.argv[2])))
    view = memoryview(data)
    for at in range(0, len(data), 1 << 18):
        conn.sendall(view[at:at + (1 << 18)])
    conn.shutdown(socket.SHUT_WR)
    conn.settimeout(900)
    try:
        conn.recv(1)
    except OSError:
        pass
"""


# --- the suites ------------------------------------------------------------------------------------------------------
class BenchSuite(TierSuite):
    """tests/tier_suites.py's suite, with the bench's own pipeline: the suite's defaults (parse workers, one per core;
    batches of 500; the suite's Sigma rules streaming) unless ``pipeline`` says otherwise, and every listener on
    127.0.0.1 (the test binds syslog to every address; the sender's 127.0.0.2 reaches 127.0.0.1 on loopback)."""

    def __init__(self, directory: Path, name: str, *, inventory, tiers: dict | None = None,
                 pipeline: dict | None = None):
        super().__init__(directory, name, store_url=None, index_prefix=name, inventory=inventory, tiers=tiers)
        config = yaml.safe_load(self.config.read_text(encoding="utf-8"))
        config["syslog"]["host"] = "127.0.0.1"
        config["pipeline"] = pipeline or {}
        self.config.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
        self.settings = load_settings(self.config, environ={})
        self.db = directory / "soc.db"
        self.outbox = directory / "upstream" / "outbox.db"

    def metrics(self) -> str:
        import httpx

        return httpx.get(f"{self.api}/metrics", timeout=30).text

    def cpu_seconds(self) -> float:
        """CPU time (user + system) of the suite's process and its children (parse workers) so far."""
        assert self.proc is not None
        return sum(_cpu(pid) for pid in _tree(self.proc.pid))


def _tree(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        each = todo.pop()
        found.append(each)
        try:
            for task in Path(f"/proc/{each}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


def _cpu(pid: int) -> float:
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(b")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        head, value = line.rsplit(" ", 1)
        if head.split("{", 1)[0] != name or not all(f'{k}="{v}"' in head for k, v in labels.items()):
            continue
        total += float(value)
    return total


class Reader:
    """Read-only SQLite: a suite's counts as it writes them (WAL: a reader never blocks the writer)."""

    def __init__(self, path: Path):
        self.path = path
        self._db: sqlite3.Connection | None = None

    def one(self, sql: str) -> int:
        if self._db is None:
            if not self.path.exists():
                return 0
            self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=10, check_same_thread=False)
        try:
            return int(self._db.execute(sql).fetchone()[0] or 0)
        except sqlite3.OperationalError:  # a table not made yet
            return 0

    def rows(self, sql: str) -> list[tuple]:
        self.one("SELECT 1")  # connects, if the file is there
        if self._db is None:
            return []
        try:
            return self._db.execute(sql).fetchall()
        except sqlite3.OperationalError:  # a table not made yet
            return []

    def ids(self, table: str) -> list[str]:
        return [row[0] for row in self.rows(f"SELECT id FROM {table}")]  # nosec B608 - fixed names

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def events(reader: Reader) -> int:
    return reader.one("SELECT count(*) FROM events")


def dead_letters(reader: Reader) -> int:
    return reader.one("SELECT count(*) FROM dead_letters")


def outbox_events(reader: Reader) -> int:
    return reader.one("SELECT count(*) FROM outbox WHERE kind = 'event'")


# --- the lines -------------------------------------------------------------------------------------------------------
def payload(path: Path, count: int, start: int) -> Path:
    lines = [line for fmt in MIX for line in syslog_lines(fmt)]
    # " n<i>" makes every line its own event (identical lines from one sender are one event by design).
    with path.open("wb") as out:
        for i in range(start, start + count):
            out.write(f"{lines[i % len(lines)]} n{i}\n".encode())
    return path


def send(city: BenchSuite, data: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", SENDER, str(data), str(city.settings.syslog.tcp_port),
                             COMMUNE_ADDRESS])


def say(stage: str, started: float, text: str) -> None:
    print(f"[{stage} {time.perf_counter() - started:6.1f} s] {text}", flush=True)


# --- one pair --------------------------------------------------------------------------------------------------------
def pair(work: Path, name: str, batch: int, **link) -> tuple[BenchSuite, BenchSuite]:
    name = name.replace(" ", "-")
    province = BenchSuite(work / f"{name}-province", "province", inventory="inventory/sample/province.yaml",
                          pipeline={"parse_workers": 0})  # it takes no syslog here: nothing to parse
    downstream_key = province.key("downstream", CITY)
    city = BenchSuite(work / f"{name}-city", "city", inventory=CITY_INVENTORY,
                      tiers={"upstream": {"url": province.api, "key_env": "SOC_UPSTREAM_KEY", "events": "all",
                                          "batch_max_events": batch, **link}})
    city.env = {"SOC_UPSTREAM_KEY": downstream_key}
    return province, city


def stop(*suites: BenchSuite) -> None:
    for suite in suites:
        if suite.proc is not None and suite.proc.poll() is None:
            try:
                suite.stop()
            except subprocess.TimeoutExpired:
                suite.proc.kill()
                suite.proc.wait()


def check(city: BenchSuite, province: BenchSuite, city_db: Reader, province_db: Reader) -> dict:
    """Nothing lost, nothing duplicated: the same ids at both tiers; the outbox empty; what was sent and confirmed."""
    city_ids, province_ids = city_db.ids("events"), province_db.ids("events")
    city_alerts, province_alerts = set(city_db.ids("alerts")), set(province_db.ids("alerts"))
    sent = province.metrics()
    forwarded = city.metrics()
    outbox = Reader(city.outbox)
    try:
        counters = dict(outbox.rows("SELECT name, n FROM counters"))
        waiting = outbox.one("SELECT count(*) FROM outbox")
    finally:
        outbox.close()
    return {
        "city_events": len(city_ids), "province_events": len(province_ids),
        "same_events": set(city_ids) == set(province_ids) and len(set(province_ids)) == len(province_ids),
        "city_alerts": len(city_alerts), "same_alerts": city_alerts <= province_alerts,
        "province_alerts": len(province_alerts),
        "received": int(metric(sent, "soc_tier_received_total", link=CITY, kind="event")),
        "refused": int(metric(sent, "soc_tier_refused_total")),
        "refusals": dict(province_db.rows("SELECT reason, count(*) FROM dead_letters GROUP BY reason")),
        "confirmed": int(counters.get("sent_event", 0)),
        "dropped": int(sum(v for k, v in counters.items() if k.startswith("dropped_"))),
        "failures": int(metric(forwarded, "soc_tier_send_failures_total")),
        "waiting": waiting,
    }


def events_ok(c: dict) -> bool:
    """Every event of the city at the province, each once, none dropped, refused or left waiting."""
    return (c["same_events"] and c["city_events"] == c["province_events"] and c["waiting"] == 0
            and c["dropped"] == 0 and c["confirmed"] == c["city_events"]
            and not any(r.startswith("tier_event") for r in c["refusals"]))


def verdict(c: dict) -> bool:
    return events_ok(c) and c["same_alerts"] and c["refused"] == 0


# --- the machine -----------------------------------------------------------------------------------------------------
def machine_busy() -> float:
    """CPU seconds the whole machine has spent busy (every process), from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


class Meter:
    """CPU seconds of the suites, and of the whole machine, over a stretch of a run."""

    def __init__(self, *suites: BenchSuite):
        self.suites = suites
        self.start = [s.cpu_seconds() for s in suites]
        self.machine = machine_busy()

    def read(self) -> dict:
        suites = [s.cpu_seconds() - c for s, c in zip(self.suites, self.start)]
        return {"suites": suites, "machine": machine_busy() - self.machine}


def sources_digest() -> dict[str, str]:
    """A digest of each file of the code measured here (tiers/, the tier routes, the pipeline, the suite, the tier
    test helpers): a change while the bench runs is reported (the suites started after it run the new code)."""
    import hashlib

    paths = [*ROOT.glob("tiers/*.py"), ROOT / "soc_api/routers/tiers.py", *ROOT.glob("collectors/*.py"),
             *ROOT.glob("suite/*.py"), ROOT / "tests/tier_suites.py"]
    return {str(p.relative_to(ROOT)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(paths)}


def tree_state() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.rstrip()

    changed = [line[3:] for line in git("status", "--porcelain", "--", "tiers", "soc_api/routers/tiers.py")
               .splitlines()]
    head = git("rev-parse", "--short", "HEAD") or "?"
    return f"commit {head}" + (f", with uncommitted changes to {', '.join(f'`{c}`' for c in changed)}"
                               if changed else "")


def backlog_query_seconds(directory: Path) -> float:
    """How long the outbox's own ``backlog()`` (what the forwarder's gauges and the API's state read) takes on the
    city's outbox as it is: best of three, through a second connection (the city's forwarder is only retrying)."""
    from tiers.outbox import Outbox

    outbox = Outbox(directory, max_bytes=1 << 40)
    try:
        best = float("inf")
        for _ in range(3):
            began = time.perf_counter()
            outbox.backlog()
            best = min(best, time.perf_counter() - began)
        return best
    finally:
        outbox.close()


def fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least squares y = slope * x + intercept."""
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return slope, my - slope * mx


# --- the stages ------------------------------------------------------------------------------------------------------
def wait_for_agencies(outbox: Reader) -> None:
    """The city's agency list goes up first, at start: wait for it, so the timing is the events'."""
    deadline = time.monotonic() + 60
    while outbox.one("SELECT count(*) FROM outbox") and time.monotonic() < deadline:
        time.sleep(POLL)


def baseline(work: Path, data: Path, n: int, name: str) -> dict:
    stage = name
    city = BenchSuite(work / f"{name.replace(' ', '-')}-city", "city", inventory=CITY_INVENTORY)
    city.start()
    db = Reader(city.db)
    try:
        meter = Meter(city)
        started = time.perf_counter()
        say(stage, started, f"the city alone (no upstream): sending {n:,} lines")
        sender = send(city, data)
        shown = started
        while True:
            stored, dead = events(db), dead_letters(db)
            now = time.perf_counter()
            if stored + dead >= n:
                break
            if now - shown >= PRINT_EVERY:
                say(stage, started, f"city {stored:,} stored + {dead:,} dead letters of {n:,}")
                shown = now
            assert city.proc.poll() is None, city.log_text()
            time.sleep(POLL)
        elapsed = now - started
        cpu = meter.read()
        say(stage, started, f"done: {stored:,} stored + {dead:,} dead letters in {elapsed:.1f} s "
                            f"({n / elapsed:,.0f} lines/s)")
        sender.wait(timeout=60)
    finally:
        db.close()
        stop(city)
    return {"seconds": elapsed, "stored": stored, "dead": dead, "rate": n / elapsed, "cpu_city": cpu["suites"][0],
            "cpu_machine": cpu["machine"]}


def forward(work: Path, data: Path, n: int, batch: int, name: str) -> dict:
    stage = name
    province, city = pair(work, name, batch)
    province.start()
    city.start()
    city_db, province_db, outbox = Reader(city.db), Reader(province.db), Reader(city.outbox)
    try:
        wait_for_agencies(outbox)
        meter = Meter(city, province)
        started = time.perf_counter()
        say(stage, started, f"city → province (batch_max_events {batch}): sending {n:,} lines")
        sender = send(city, data)
        shown, city_done, first_up, peak, peak_at = started, None, None, 0, 0.0
        while True:
            now = time.perf_counter()
            stored, dead, up, waiting = (events(city_db), dead_letters(city_db), events(province_db),
                                         outbox_events(outbox))
            if waiting > peak:
                peak, peak_at = waiting, now - started
            if up and first_up is None:
                first_up = (now, up)
            if city_done is None and stored + dead >= n:
                city_done, city_cpu = now, meter.read()
                say(stage, started, f"city done: {stored:,} stored + {dead:,} dead letters in {now - started:.1f} s"
                                    f" ({n / (now - started):,.0f} lines/s); province {up:,}, outbox {waiting:,}")
            if city_done is not None and up >= stored:
                break
            if now - shown >= PRINT_EVERY:
                say(stage, started, f"city {stored:,} stored + {dead:,} dead of {n:,}; province {up:,}; "
                                    f"outbox {waiting:,} waiting")
                shown = now
            for suite in (city, province):
                assert suite.proc.poll() is None, suite.log_text()
            time.sleep(POLL)
        elapsed = now - started
        cpu = meter.read()
        say(stage, started, f"province done: {up:,} events in {elapsed:.1f} s ({up / elapsed:,.0f} events/s end "
                            f"to end); outbox peak {peak:,} events")
        sender.wait(timeout=60)
        time.sleep(2 * POLL)
        result = check(city, province, city_db, province_db)
        say(stage, started, f"check: {'passed' if verdict(result) else 'FAILED'} {result}")
    finally:
        for reader in (city_db, province_db, outbox):
            reader.close()
        stop(city, province)
    first_at, first_count = first_up
    return {"seconds": elapsed, "city_seconds": city_done - started, "stored": stored, "dead": dead,
            "rate": stored / elapsed, "city_rate": n / (city_done - started),
            "forward_rate": (stored - first_count) / max(now - first_at, POLL), "first_up": first_at - started,
            "tail": now - city_done, "peak": peak, "peak_at": peak_at, "cpu_city": cpu["suites"][0],
            "cpu_province": cpu["suites"][1], "cpu_machine": cpu["machine"], "cpu_city_ingest": city_cpu["suites"][0],
            "check": result, "batch": batch}


def drain(work: Path, data: Path, n: int, batch: int) -> dict:
    stage = f"drain {batch}"
    # retry_max_seconds 1: the city tries again within a second of the province answering (the default waits up
    # to 30 s between two tries, which would be timed here as idle). batch_max_bytes 16 MiB (default 4 MiB, the
    # province takes up to 32 MiB): so that batch_max_events decides the batch (5,000 of these events are ~8 MB).
    province, city = pair(work, f"drain{batch}", batch, retry_max_seconds=1.0, batch_max_bytes=16 << 20)
    province.start()
    city.start()
    city_db, province_db, outbox = Reader(city.db), Reader(province.db), Reader(city.outbox)
    try:
        wait_for_agencies(outbox)
        province.stop()
        started = time.perf_counter()
        say(stage, started, f"province stopped; sending {n:,} lines to the city")
        sender = send(city, data)
        shown = started
        while True:
            stored, dead, waiting = events(city_db), dead_letters(city_db), outbox_events(outbox)
            if stored + dead >= n and waiting >= stored:
                break
            if time.perf_counter() - shown >= PRINT_EVERY:
                say(stage, started, f"city {stored:,} stored + {dead:,} dead of {n:,}; outbox {waiting:,} waiting")
                shown = time.perf_counter()
            assert city.proc.poll() is None, city.log_text()
            time.sleep(POLL)
        fill_rate = n / (time.perf_counter() - started)
        sender.wait(timeout=60)
        size = outbox.one("SELECT sum(size) FROM outbox WHERE kind = 'event'")
        scan = backlog_query_seconds(city.outbox.parent)
        say(stage, started, f"outbox full: {waiting:,} events ({size / 1e6:.0f} MB) waiting (Outbox.backlog() on it: "
                            f"{scan * 1000:.0f} ms); starting the province")
        launched = time.perf_counter()
        province.start()
        up_at = time.perf_counter()
        meter = Meter(city, province)
        shown, first_up = up_at, None
        while True:
            now = time.perf_counter()
            up, left = events(province_db), outbox_events(outbox)
            if up and first_up is None:
                first_up = (now, up)
            if up >= stored:
                break
            if now - shown >= PRINT_EVERY:
                say(stage, started, f"province {up:,} of {stored:,}; outbox {left:,} waiting")
                shown = now
            for suite in (city, province):
                assert suite.proc.poll() is None, suite.log_text()
            time.sleep(POLL)
        elapsed = now - up_at
        cpu = meter.read()
        say(stage, started, f"drained: {up:,} events in {elapsed:.1f} s from the province answering "
                            f"({up / elapsed:,.0f} events/s)")
        time.sleep(2 * POLL)
        result = check(city, province, city_db, province_db)
        say(stage, started, f"check: {'passed' if verdict(result) else 'FAILED'} {result}")
    finally:
        for reader in (city_db, province_db, outbox):
            reader.close()
        stop(city, province)
    first_at, first_count = first_up
    return {"seconds": elapsed, "start_seconds": up_at - launched, "backlog": waiting, "bytes": size,
            "rate": stored / elapsed, "forward_rate": (stored - first_count) / max(now - first_at, POLL),
            "first_up": first_at - up_at, "fill_rate": fill_rate, "cpu_city": cpu["suites"][0],
            "cpu_province": cpu["suites"][1], "cpu_machine": cpu["machine"], "check": result, "batch": batch,
            "scan": scan, "batches": -(-stored // batch)}


# --- the report ------------------------------------------------------------------------------------------------------
def report(n: int, bases: list[dict], fwds: list[dict], drains: list[dict], load: tuple[float, float],
           command: str, tree: str) -> str:
    ok = all(verdict(f["check"]) for f in fwds) and all(verdict(d["check"]) for d in drains)
    base, fwd = max(bases, key=lambda r: r["rate"]), max(fwds, key=lambda r: r["rate"])
    cores = os.cpu_count()

    def others(row: dict, *suites: float) -> str:
        return f"{max(0.0, row['cpu_machine'] - sum(suites)):.0f}"

    body = [
        f"{n:,} mixed firewall/WAF/auth syslog lines ({', '.join(MIX)}; the fixtures of `bench_parsers.py`, each made "
        f"unique) over one TCP connection from {COMMUNE_ADDRESS} (the commune p-tan-an's network in the city's "
        f"inventory, `tests/tier_suites.py` CITY_INVENTORY) to a city suite: `soc serve` on SQLite with the default "
        f"pipeline ({PipelineConfig().parse_worker_count()} parse workers, batches of 500, the suite's Sigma rules "
        f"streaming). With "
        f"`tiers.upstream.events: all` it forwards to a province suite (`soc serve`, SQLite, the sample province "
        f"inventory) over HTTP on loopback, `batch_max_events: 2000` (the default). Both suites, the sender and the "
        f"counting share the machine's {cores} cores; in service each tier has its own machine. Counts are read "
        f"from each suite's SQLite files (read-only) every {POLL} s. {base['dead']:,} lines of each {n:,} end as "
        f"dead letters at the city (the fixtures include invalid records): processed, never forwarded. Baseline "
        f"and forwarding runs alternate, {len(bases)} of each; each run has fresh suites and stores. Tree: {tree}.",
        "",
        f"Command: `{command}`",
        "",
        "| run | events | seconds | events/s | CPU s city | CPU s province | CPU s, other processes |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for i, (b, f) in enumerate(zip(bases, fwds), 1):
        body += [
            f"| round {i}, baseline: the city alone, no upstream (stored or dead-lettered at the city) | {n:,} | "
            f"{b['seconds']:.1f} | {b['rate']:,.0f} | {b['cpu_city']:.1f} | — | {others(b, b['cpu_city'])} |",
            f"| round {i}, forwarding on: the same lines taken at the city | {n:,} | {f['city_seconds']:.1f} | "
            f"{f['city_rate']:,.0f} | {f['cpu_city_ingest']:.1f} | | |",
            f"| round {i}, **forwarding on: every event stored at the province** (end to end) | {f['stored']:,} | "
            f"{f['seconds']:.1f} | **{f['rate']:,.0f}** | {f['cpu_city']:.1f} | {f['cpu_province']:.1f} | "
            f"{others(f, f['cpu_city'], f['cpu_province'])} |",
        ]
    for d in drains:
        body.append(f"| drain from a full outbox, `batch_max_events: {d['batch']}` (from the province answering "
                    f"to the last event stored there) | {d['backlog']:,} | {d['seconds']:.1f} | **{d['rate']:,.0f}** "
                    f"| {d['cpu_city']:.1f} | {d['cpu_province']:.1f} | "
                    f"{others(d, d['cpu_city'], d['cpu_province'])} |")
    per_k = lambda cpu, events_: 1000 * cpu / events_  # noqa: E731
    cpu_base = min(r["cpu_city"] for r in bases)
    cpu_fwd_city = min(r["cpu_city_ingest"] for r in fwds)
    cpu_both = min(r["cpu_city"] + r["cpu_province"] for r in fwds)
    body += [
        "",
        f"- **End to end, city → province: {fwd['rate']:,.0f} events/s** (the better round) against "
        f"{base['rate']:,.0f} lines/s for the city alone (the better baseline): "
        f"{fwd['rate'] / base['rate']:.0%} of it; round by round "
        + ", ".join(f"{f['rate'] / b['rate']:.0%}" for b, f in zip(bases, fwds))
        + " (a round whose runs met different amounts of other work — the last column — compares badly). "
          + ("The forwarder keeps up with the city as it takes lines" if max(f["tail"] / f["seconds"] for f in fwds)
             < 0.1 else "The forwarder falls behind the city")
        + ": the province stored the last event "
        + ", ".join(f"{f['tail']:.1f} s" for f in fwds)
        + " after the city stored its last line, the outbox peaked at "
        + ", ".join(f"{f['peak']:,} events" for f in fwds)
        + f" ({max(f['peak'] for f in fwds) / n:.0%} of the lines at most), and the first forwarded event was at "
          f"the province {fwd['first_up']:.1f} s after the first line was sent. With forwarding on, the city "
          f"takes the lines at {fwd['city_rate'] / base['rate']:.0%} of its rate alone (better rounds).",
        f"- **What limits it, live: CPU, shared.** The city alone spent {per_k(cpu_base, n):.2f} CPU s per 1,000 "
        f"lines (the lower of its runs); with forwarding on, {per_k(cpu_fwd_city, n):.2f} "
        f"(+{cpu_fwd_city / cpu_base - 1:.0%}: every stored event is encoded again and written to the outbox's "
        f"SQLite file in the store's writer thread, then read, sent and deleted), and the province "
        f"{per_k(min(r['cpu_province'] for r in fwds), n):.2f} more to check and store what it is sent. Both suites "
        f"together: {per_k(cpu_both, n):.2f} CPU s per 1,000 events, {cpu_both / cpu_base:.1f}× the city alone, on "
        f"the same {cores} cores — with nothing else running, at least {cpu_both / cores:.0f} s for these "
        f"{n:,} lines ({n / (cpu_both / cores):,.0f}/s) if both cores were kept busy, which the city's pipeline "
        f"(one writer thread storing, forwarding to the outbox and detecting in turn) does not do. On two machines "
        f"the province's share would not slow the city.",
    ]
    body.append(
        f"- Drain: the province stopped, {drains[0]['backlog']:,} events ({drains[0]['bytes'] / 1e6:.0f} MB) queued "
        f"in the city's outbox (taken at {drains[0]['fill_rate']:,.0f} lines/s while the province was down), the "
        f"province started again (`retry_max_seconds: 1`, so the city tries again within a second; "
        f"`batch_max_bytes: 16 MiB`, so that `batch_max_events` decides the batch), timed from the province "
        f"answering its health check to the last event stored there: "
        + "; ".join(f"batches of {d['batch']:,}: {d['seconds']:.1f} s, **{d['rate']:,.0f} events/s** "
                    f"({d['forward_rate']:,.0f}/s from the first event stored there)" if d["forward_rate"] else
                    f"batches of {d['batch']:,}: {d['seconds']:.1f} s, **{d['rate']:,.0f} events/s**"
                    for d in drains) + ".")
    if len(drains) >= 2:
        per_batch, _ = fit([d["batches"] for d in drains], [d["seconds"] for d in drains])
        city_per_batch, city_rest = fit([d["batches"] for d in drains], [d["cpu_city"] for d in drains])
        province_per_event = min(d["cpu_province"] for d in drains) / drains[0]["backlog"]
        body.append(
            (f"- **What limits the drain: a fixed cost per batch, one batch at a time.** " if per_batch > 0 else
             "- The drains show no fixed cost per batch at this size. ")
            + f"A line through the "
            f"{len(drains)} drains (seconds against the number of batches, "
            + ", ".join(f"{d['batches']:,}" for d in drains)
            + f"): each batch costs about **{per_batch * 1000:.0f} ms** whatever its size, on top of what its events "
              f"cost; the city's CPU time goes the same way ({city_per_batch * 1000:.0f} ms per batch, "
              f"{city_rest:.1f} s for all the events), while the province spends "
              f"{province_per_event * 1000:.3f} CPU ms per event. The forwarder sends a batch, waits for the answer, "
              f"deletes it from the outbox, asks the province for changes and reads the outbox's figures "
              f"(`Outbox.backlog()`, a scan of every waiting row under the outbox's lock: "
            + ", ".join(f"{d['scan'] * 1000:.0f} ms" for d in drains[:1])
            + f" on the full outbox of {drains[0]['backlog']:,} events in this run) before it reads the next "
              f"batch: the city and the province take turns, and neither keeps a core busy (CPU seconds over the "
              f"drain's wall time, city / province: "
            + ", ".join(f"{d['batch']:,}: {d['cpu_city'] / d['seconds']:.0%} / {d['cpu_province'] / d['seconds']:.0%}"
                        for d in drains)
            + (("). Larger batches pay the fixed cost less often: " if per_batch > 0 else "). By batch size: "))
            + ", ".join(f"{d['batch']:,}: {d['rate']:,.0f}/s" for d in drains) + ".")
    body += [
        f"- Check: events {'**passed**' if all(events_ok(r['check']) for r in fwds + drains) else '**FAILED**'}, "
        f"alerts {'**passed**' if ok else '**FAILED**'}"
        + (" (refused at the province: " + "; ".join(sorted({f"`{k}`" for r in fwds + drains
                                                             for k in r["check"]["refusals"]})) + ")"
           if any(r["check"]["refusals"] for r in fwds + drains) else "") + ". "
        + " ".join(f"Forwarding round {i}: {f['check']['city_events']:,} events at the city, "
                   f"{f['check']['province_events']:,} at the province, same ids "
                   f"{'yes' if f['check']['same_events'] else 'NO'}; {f['check']['city_alerts']} alert(s) at the "
                   f"city, the same at the province: {'yes' if f['check']['same_alerts'] else 'NO'}; the province "
                   f"received {f['check']['received']:,} events (the city's confirmed count: "
                   f"{f['check']['confirmed']:,}; more received than confirmed would be batches sent twice), "
                   f"dropped {f['check']['dropped']}, refused {f['check']['refused']}, left in the outbox "
                   f"{f['check']['waiting']}." for i, f in enumerate(fwds, 1))
        + " Drains: " + "; ".join(
            f"{d['batch']:,}: {d['check']['province_events']:,} of {d['check']['city_events']:,} at the province, "
            f"same ids {'yes' if d['check']['same_events'] else 'NO'}, received {d['check']['received']:,}, "
            f"confirmed {d['check']['confirmed']:,}, dropped {d['check']['dropped']}, refused "
            f"{d['check']['refused']}" for d in drains) + ".",
        "",
        f"Load average: {load[0]:.1f} at the start, {load[1]:.1f} at the end ({cores} cores). \"Other processes\" "
        f"is the machine's busy CPU time during the run less the two suites': the sender, the counting, and any "
        f"other work on this shared machine.",
    ]
    return "\n".join(body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000,
                        help="lines in each baseline and forwarding run (each drain takes half)")
    parser.add_argument("--rounds", type=int, default=2, help="baseline and forwarding runs, alternating")
    parser.add_argument("--batch-sizes", default="500,2000,5000",
                        help="tiers.upstream.batch_max_events of the drains, comma-separated (the forwarding runs "
                             "use the default, 2000)")
    parser.add_argument("--no-write", action="store_true", help="print the results, do not touch docs/benchmarks.md")
    args = parser.parse_args()
    n = args.events
    sizes = [int(s) for s in args.batch_sizes.split(",") if s.strip()]
    command = " ".join([".venv/bin/python bench/bench_tiers.py", *sys.argv[1:]])
    tree, digest = tree_state(), sources_digest()
    load_start = os.getloadavg()[0]
    began = time.perf_counter()
    bases, fwds = [], []
    with tempfile.TemporaryDirectory(prefix="bench-tiers-") as tmp:
        work = Path(tmp)
        data = payload(work / "lines.log", n, 0)
        half = payload(work / "half.log", n // 2, n)
        print(f"{n:,} lines ({data.stat().st_size / 1e6:.0f} MB) under {work}; {tree}", flush=True)
        for i in range(1, args.rounds + 1):
            bases.append(baseline(work, data, n, f"baseline {i}"))
            fwds.append(forward(work, data, n, 2000, f"forward {i}"))
        drains = [drain(work, half, n // 2, size) for size in sizes]
    after = sources_digest()
    changed = sorted(p for p in set(digest) | set(after) if digest.get(p) != after.get(p))
    if changed:
        tree += (" (**changed during the run**: " + ", ".join(f"`{p}`" for p in changed)
                 + "; the suites started after the change ran the new code)")
    body = report(n, bases, fwds, drains, (load_start, os.getloadavg()[0]), command, tree)
    print(body)
    print(f"total {time.perf_counter() - began:.0f} s")
    if not args.no_write:
        write_section("bench_tiers", "Tiers: forwarding throughput", body)
    if not (all(verdict(f["check"]) for f in fwds) and all(verdict(d["check"]) for d in drains)):
        sys.exit(1)


if __name__ == "__main__":
    main()
