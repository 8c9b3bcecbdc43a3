"""`soc hunt`'s memory and time at about 17k and 134k records: streaming (now) against holding every detection until
the end (the code before, run from git as the baseline in the same run).

The record sets are copies of evtx-attack-samples (277 files, 8,255 records): two copies (16,510 records) and
sixteen (132,080, eight times the first set), made as symbolic links to the corpus folder in a temporary folder; and,
to tell records from files, the same records as EVTX JSON in two JSON-lines files (8x the records, same files). The
rules are SigmaHQ's Windows rules, parsed once into a cache before the measured runs, so that the runs measure the
hunt. Each run is the whole `soc hunt` process with its workers (one per core), detections with their events written
to a file, as a responder runs it.

Each variant runs ROUNDS times, interleaved with the others; its time is the best and its memory the highest.
Memory is sampled every 50 ms over the process and its children from /proc: the sum of their RSS (what `top` shows;
pages a forked worker shares with its parent count twice) and the sum of their PSS (shared pages divided among the
processes that share them: the memory the hunt really takes). The peak of each sum is reported.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.report import write_section  # noqa: E402

CORPUS = ROOT.parent / "shared" / "corpus"
RULES = CORPUS / "sigmahq" / "rules" / "windows"
EVTX = CORPUS / "evtx-attack-samples"
RECORDS_PER_COPY = 8255
ISSUE_BASELINE_MIB = 200  # issue 19: "200 MB for 134k records, no output until the end"
# The baseline: `soc hunt` at the last commit before the streaming hunt (its workers return a file's detections all at
# once, and the parent yields them only when every file is read). Another commit can be named in the environment.
BASELINE_COMMIT = os.environ.get("SOC_BENCH_HUNT_BASELINE", "bf71841")
ROUNDS = 3  # each run's time is its best, its memory its highest


# --- measuring a process tree -----------------------------------------------------------------------------------------
def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        parent = int(stat[stat.rindex(b")") + 2:].split()[1])
        tree.setdefault(parent, []).append(int(entry))
    return tree


def _tree(pid: int) -> list[int]:
    tree, found, todo = _children(), [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(tree.get(p, []))
    return found


def _kib(path: str, field: str) -> int:
    try:
        with open(path, encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class Sampler(threading.Thread):
    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.stop = pid, threading.Event()
        self.rss = self.pss = self.processes = 0

    def run(self) -> None:
        while not self.stop.is_set():
            pids = _tree(self.pid)
            self.rss = max(self.rss, sum(_kib(f"/proc/{p}/status", "VmRSS:") for p in pids))
            self.pss = max(self.pss, sum(_kib(f"/proc/{p}/smaps_rollup", "Pss:") for p in pids))
            self.processes = max(self.processes, len(pids))
            self.stop.wait(0.05)


def measure(command: list[str], out: Path) -> dict:
    started = time.perf_counter()
    with out.open("wb") as sink:
        proc = subprocess.Popen(command, stdout=sink, stderr=subprocess.PIPE, cwd=ROOT)
        sampler = Sampler(proc.pid)
        sampler.start()
        _, stderr = proc.communicate()
        sampler.stop.set()
        sampler.join()
    elapsed = time.perf_counter() - started
    if proc.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{stderr.decode()}")
    with out.open("rb") as fh:
        detections = sum(1 for _ in fh)
    return {"seconds": elapsed, "rss": sampler.rss / 1024, "pss": sampler.pss / 1024, "detections": detections,
            "processes": sampler.processes, "stderr": " ".join(stderr.decode().split())}


# --- the code before, from git ---------------------------------------------------------------------------------------
def baseline_runner(folder: Path) -> list[str] | None:
    """The command line of `soc hunt` as it was at BASELINE_COMMIT: its hunt.py and cli.py as modules of their own,
    beside the current code (None when that commit is not in this clone)."""
    def show(path: str) -> str | None:
        result = subprocess.run(["git", "show", f"{BASELINE_COMMIT}:{path}"], capture_output=True, text=True,
                                cwd=ROOT)
        return result.stdout if result.returncode == 0 else None

    hunt, cli = show("detections/hunt.py"), show("detections/cli.py")
    if hunt is None or cli is None or "_hunt_one" not in hunt:
        return None
    (folder / "old_hunt.py").write_text(hunt)
    (folder / "old_cli.py").write_text(cli.replace("from detections.hunt import", "from old_hunt import"))
    (folder / "run_old.py").write_text(
        "import sys\n"
        f"sys.path[:0] = [{str(folder)!r}, {str(ROOT)!r}]\n"
        "import typer, old_cli\n"
        "app = typer.Typer()\n"
        "old_cli.register(app)\n"
        "app.command('other')(lambda: None)\n"
        "app()\n")
    return [sys.executable, str(folder / "run_old.py")]


def copies(folder: Path, n: int) -> list[str]:
    paths = []
    for i in range(n):
        link = folder / f"copy-{i:02d}"
        if not link.exists():
            link.symlink_to(EVTX, target_is_directory=True)
        paths.append(str(link))
    return paths


def json_lines(folder: Path, copies_n: int) -> list[str]:
    """Two JSON-lines files holding ``copies_n`` copies of evtx-attack-samples' records (EVTX JSON) between them:
    more records in the same number of files."""
    import json

    import evtx

    lines = []
    for path in sorted(EVTX.rglob("*.evtx")):
        for record in evtx.PyEvtxParser(str(path)).records_json():
            lines.append(json.dumps(json.loads(record["data"]), separators=(",", ":")))
    text = "\n".join(lines) + "\n"
    paths = []
    for part in range(2):
        path = folder / f"records-{copies_n}-{part}.jsonl"
        with path.open("w", encoding="utf-8") as fh:
            for _ in range(copies_n // 2):
                fh.write(text)
        paths.append(str(path))
    return paths


def run_set(runs: list[tuple[str, list[str]]], out: Path) -> dict[str, dict]:
    """Each run ROUNDS times, interleaved so that load from elsewhere falls on every variant alike: the best time,
    the highest memory."""
    results: dict[str, list[dict]] = {label: [] for label, _ in runs}
    for _ in range(ROUNDS):
        for label, command in runs:
            results[label].append(measure(command, out))
    best = {}
    for label, done in results.items():
        assert len({r["detections"] for r in done}) == 1, f"{label}: runs disagree"
        best[label] = {**min(done, key=lambda r: r["seconds"]), "rss": max(r["rss"] for r in done),
                       "pss": max(r["pss"] for r in done)}
    assert len({r["detections"] for r in best.values()}) == 1, "variants disagree"
    return best


BEFORE = "before: detections held until the end"
STREAMING = "streaming"


def table(rows: list[tuple[str, int, dict]]) -> str:
    lines = ["| run | records | wall s | records/s | peak RSS, sum (MiB) | peak PSS, sum (MiB) | detections |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for label, records, r in rows:
        lines.append(f"| {label} | {records:,} | {r['seconds']:.1f} | {records / r['seconds']:,.0f} | "
                     f"{r['rss']:.0f} | {r['pss']:.0f} | {r['detections']:,} |")
        print(f"{label:50} {records:>7} records: {r['seconds']:6.1f} s, RSS {r['rss']:6.0f} MiB, PSS "
              f"{r['pss']:6.0f} MiB, {r['detections']} detections, {r['processes']} processes", flush=True)
    return "\n".join(lines) + "\n"


def growth(rows: list[tuple[str, int, dict]], label: str) -> str:
    (small, a), (large, b) = [(records, r) for name, records, r in rows if name == label]
    return (f"{a['pss']:.0f} MiB PSS at {small:,} records and {b['pss']:.0f} MiB at {large:,} "
            f"({b['pss'] - a['pss']:+.0f} MiB)")


def main() -> None:
    new = [sys.executable, "-m", "suite.cli"]
    small, large = 2, 16  # copies of the corpus: about 17k and 134k records
    evtx_rows: list[tuple[str, int, dict]] = []
    jsonl_rows: list[tuple[str, int, dict]] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        old = baseline_runner(folder)
        cache = folder / "cache"
        common = ["hunt", "-q", "--rules", str(RULES), "--cache-dir", str(cache)]
        measure(new + common + copies(folder, 1), folder / "warm.jsonl")  # parse the rules once, into the cache
        for copies_n in (small, large):
            paths = copies(folder, copies_n)
            runs = [(BEFORE, old + common + paths)] if old is not None else []
            runs += [(STREAMING, new + common + paths),
                     ("streaming + timeline, summary, Navigator layer",
                      new + common + ["--timeline", str(folder / "timeline.csv"), "--summary",
                                      str(folder / "s.json"), "--navigator", str(folder / "layer.json")] + paths),
                     ("streaming, `--workers 1`", new + common + ["--workers", "1"] + paths)]
            evtx_rows += [(label, copies_n * RECORDS_PER_COPY, r)
                          for label, r in run_set(runs, folder / "out.jsonl").items()]
        for copies_n in (small, large):
            paths = json_lines(folder, copies_n)
            runs = [(BEFORE, old + common + paths)] if old is not None else []
            runs += [(STREAMING, new + common + paths)]
            jsonl_rows += [(label, copies_n * RECORDS_PER_COPY, r)
                           for label, r in run_set(runs, folder / "out.jsonl").items()]
            for path in paths:
                Path(path).unlink()
        # The cold start with --workers 1: how many processes parse the rules.
        cold = {label: measure(runner + ["hunt", "-q", "--no-event", "--workers", "1", "--rules", str(RULES),
                                         "--cache-dir", str(folder / f"cold-{label}"), str(EVTX / "Execution")],
                               folder / "cold.jsonl")
                for label, runner in (("before", old), ("now", new)) if runner is not None}
    text = ("SigmaHQ `rules/windows` (from the cache), one worker per core (2) unless said, detections with their "
            f"events written to a file; best time and highest memory of {ROUNDS} interleaved rounds; load average "
            f"at the end {os.getloadavg()[0]:.1f} (other work on this shared machine makes the times noisy, not the "
            "memory).\n\n**EVTX**: copies of evtx-attack-samples (277 files each) as symbolic links.\n\n")
    text += table(evtx_rows)
    text += f"\nStreaming: {growth(evtx_rows, STREAMING)} for 8× the records, detections and files."
    if old is not None:
        text += (f" Before (commit {BASELINE_COMMIT}, in the same run): {growth(evtx_rows, BEFORE)}, and no "
                 f"detection written until every file was read (the issue measured about {ISSUE_BASELINE_MIB} MB "
                 "at 134k records).")
    text += ("\n\n**JSON lines**: the same records as EVTX JSON in two files, 8× the records in the same number of "
             "files (what grows in the EVTX runs above beside the records is the list of files, a few hundred bytes "
             "each).\n\n")
    text += table(jsonl_rows)
    text += f"\nStreaming: {growth(jsonl_rows, STREAMING)}."
    if old is not None:
        text += f" Before: {growth(jsonl_rows, BEFORE)}."
    text += "\n"
    if cold:
        text += ("\nCold start (no cache) with `--workers 1`, rules/windows, hunting one folder: " + "; ".join(
            f"{label}: {r['seconds']:.1f} s, {r['processes']} processes at most" for label, r in cold.items())
            + ".\n")
    write_section("bench_hunt_memory", "`soc hunt`: memory and time at 17k and 134k records", text)
    print(text)


if __name__ == "__main__":
    main()
