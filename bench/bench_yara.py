"""YARA throughput: the suite's scanner against the `yara` command-line tool, same files, same rules, same hits.

Corpus: generated mixed files (logs, JSON, HTML, UTF-16 text, random binary; some carry webshell/tool markers)
plus the harmless marker samples, plus the real EVTX and pcap files of ../shared/corpus, scanned where they lie.
Rules: every signature-base file both engines accept (yara-python 4.5 and the Debian yara 4.2.3 CLI), compiled
once by each (yarac for the CLI, the suite's cache for the suite), so neither run pays for compiling.

Fairness: the CLI scans folders with several threads (`-p`); both sides get the same count (default: the number of
cores, 2 here). The CLI sets the externals once for the run (`-d name=`), so for the comparison the scanner does the
same (``per_file_externals=False``) and the (namespace, rule, file) hits must be identical. The suite's normal mode,
with filename/filepath/extension/filetype/owner per file, is measured too; its hits differ by design.
After a warm-up read of every file (page cache), each round cuts the file list into chunks of about 40 MB and scans
every chunk with both, back to back, alternating who goes first, so that load from other work on a shared machine
falls on both sides alike; the figure is the median over rounds of the suite's MB/s over the CLI's.

    .venv/bin/python bench/bench_yara.py [--mb 300] [--rounds 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import yara  # noqa: E402

from bench.report import write_section  # noqa: E402
from detections.yara import reference  # noqa: E402
from detections.yara.cache import load_pack  # noqa: E402
from detections.yara.samples import write_bulk, write_samples  # noqa: E402
from detections.yara.scanner import ScanOptions, Scanner  # noqa: E402

PROJECT = Path(__file__).resolve().parent.parent
CORPUS = PROJECT.parent / "shared" / "corpus"
RULES = CORPUS / "yara-signature-base" / "yara"
TARGET = 0.95


def yara_python_build() -> str:
    try:
        wheel = metadata.distribution("yara-python").read_text("WHEEL") or ""
    except metadata.PackageNotFoundError:
        return "unknown"
    tags = [line.split(":", 1)[1].strip() for line in wheel.splitlines() if line.startswith("Tag:")]
    tag = tags[0] if tags else "?"
    return f"PyPI binary wheel ({tag})" if "manylinux" in tag else f"built from source on this machine ({tag})"


def warm(paths: list[Path]) -> int:
    total = 0
    for path in paths:
        with open(path, "rb") as handle:
            while block := handle.read(1 << 20):
                total += len(block)
    return total


def run_cli(compiled: Path, listing: Path, externals: dict[str, str], threads: int | None):
    cmd = reference.scan_command(compiled, listing, externals, threads=threads or 1, scan_list=True)
    if threads is None:  # the tool's own default thread count
        i = cmd.index("-p")
        del cmd[i:i + 2]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"yara failed: {proc.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return seconds, cpu, reference.parse_hits(proc.stdout)


def run_suite(cache: Path, targets: list[str], threads: int, per_file: bool):
    """``targets``: the same file list the CLI reads with --scan-list."""
    started, cpu_started = time.perf_counter(), time.process_time()
    pack = load_pack([RULES], cache_dir=cache)  # from the cache, as the CLI loads its compiled file
    scanner = Scanner(pack, ScanOptions(threads=threads, per_file_externals=per_file, max_file_bytes=1 << 40))
    hits, problems = set(), 0
    for result in scanner.scan_items(targets):
        problems += result.problem is not None
        for m in result.matches:
            hits.add((m.namespace, m.rule, m.target.path))
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    if problems:
        raise SystemExit(f"{problems} files could not be scanned")
    return seconds, cpu, hits


def split(files: list[Path], parts: int) -> list[list[Path]]:
    """Consecutive chunks of about equal bytes."""
    sizes = [p.stat().st_size for p in files]
    per_part, chunks, current, filled = sum(sizes) / parts, [], [], 0
    for path, size in zip(files, sizes):
        current.append(path)
        filled += size
        if filled >= per_part * (len(chunks) + 1) and len(chunks) < parts - 1:
            chunks.append(current)
            current = []
    if current:
        chunks.append(current)
    return chunks


def compile_times(cache: Path, rounds: int) -> dict[str, float]:
    cold = []
    for _ in range(rounds):
        shutil.rmtree(cache, ignore_errors=True)
        started = time.perf_counter()
        load_pack([RULES], cache_dir=cache)
        cold.append(time.perf_counter() - started)
    cached = []
    for _ in range(rounds * 3):
        started = time.perf_counter()
        pack = load_pack([RULES], cache_dir=cache)
        cached.append(time.perf_counter() - started)
        assert pack.origin == "cache"
    raw_load = []
    for _ in range(rounds * 3):
        started = time.perf_counter()
        yara.load(filepath=pack.compiled_path)
        raw_load.append(time.perf_counter() - started)
    return {"cold": statistics.median(cold), "cached": statistics.median(cached),
            "yara_load": statistics.median(raw_load)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=200, help="generated data, MB (plus the corpus files)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--no-write", action="store_true", help="print only, do not update docs/benchmarks.md")
    args = parser.parse_args()
    reference.tools()

    with tempfile.TemporaryDirectory(prefix="soc-bench-yara-") as tmp:
        tmp = Path(tmp)
        cache = tmp / "cache"
        print("compile: cold vs cached …", flush=True)
        times = compile_times(cache, args.rounds)
        pack = load_pack([RULES], cache_dir=cache)
        disagree = reference.annotate(pack, threads=args.threads)
        files = reference.comparable(pack)
        excluded = [h.namespace for h in pack.health if h not in files]
        started = time.perf_counter()
        compiled = reference.compile_with_cli(files, pack.externals, tmp / "cli.yarc")
        yarac_seconds = time.perf_counter() - started

        print(f"generating {args.mb} MB …", flush=True)
        data = tmp / "data"
        write_bulk(data / "bulk", args.mb * 1_000_000)
        write_samples(data / "samples")
        targets = [str(data), str(CORPUS / "evtx-attack-samples"), str(CORPUS / "pcap")]
        all_files = [Path(p) for p in Scanner(pack).iter_files(targets)]
        listing = tmp / "files.txt"  # the CLI takes one target: both sides scan this list of files
        listing.write_text("".join(f"{p}\n" for p in all_files))
        names = [str(p) for p in all_files]
        total = warm(all_files)
        by_kind = {"generated": sum(p.stat().st_size for p in all_files if str(p).startswith(str(data))),
                   "evtx": sum(p.stat().st_size for p in all_files if p.suffix == ".evtx"),
                   "pcap and other corpus files": 0}
        by_kind["pcap and other corpus files"] = total - by_kind["generated"] - by_kind["evtx"]
        externals = dict(pack.externals)

        chunks = split(all_files, max(4, round(total / 40e6)))
        listings = []
        for i, chunk in enumerate(chunks):
            listings.append(tmp / f"files-{i}.txt")
            listings[-1].write_text("".join(f"{p}\n" for p in chunk))

        rounds, load = [], [os.getloadavg()[0]]
        cli_hits = suite_hits = None
        for r in range(args.rounds):
            print(f"round {r + 1}/{args.rounds} ({len(chunks)} chunks, each scanned by both) …", flush=True)
            sums = {"cli": [0.0, 0.0], "suite": [0.0, 0.0]}
            cli_hits, suite_hits = set(), set()
            for i, chunk in enumerate(chunks):
                # Alternate who goes first, so a burst of load from elsewhere does not always hit the same side.
                for side in (("cli", "suite") if (r + i) % 2 == 0 else ("suite", "cli")):
                    if side == "cli":
                        seconds, cpu, hits = run_cli(compiled, listings[i], externals, args.threads)
                        cli_hits |= hits
                    else:
                        seconds, cpu, hits = run_suite(cache, [str(p) for p in chunk], args.threads, per_file=False)
                        suite_hits |= hits
                    sums[side][0] += seconds
                    sums[side][1] += cpu
            if cli_hits != suite_hits:
                raise SystemExit(f"hits differ: only CLI {sorted(cli_hits - suite_hits)[:10]}, "
                                 f"only suite {sorted(suite_hits - cli_hits)[:10]}")
            rounds.append(sums)
            load.append(os.getloadavg()[0])
        print("once more, whole list: the CLI's default thread count, the suite with per-file externals …", flush=True)
        cli_default_seconds, cli_default_cpu, _ = run_cli(compiled, listing, externals, None)
        per_file_seconds, per_file_cpu, per_file_hits = run_suite(cache, names, args.threads, per_file=True)

    mb = total / 1e6
    ratios = [rd["cli"][0] / rd["suite"][0] for rd in rounds]  # suite MB/s over CLI MB/s, per round
    cpu_ratios = [rd["cli"][1] / rd["suite"][1] for rd in rounds]
    ratio = statistics.median(ratios)
    cli_s = statistics.median(rd["cli"][0] for rd in rounds)
    suite_s = statistics.median(rd["suite"][0] for rd in rounds)
    cli_cpu = statistics.median(rd["cli"][1] for rd in rounds)
    suite_cpu = statistics.median(rd["suite"][1] for rd in rounds)
    only_per_file = sorted({r for _, r, _ in per_file_hits - suite_hits})
    only_fixed = sorted({r for _, r, _ in suite_hits - per_file_hits})
    verdict = "met" if ratio >= TARGET else "NOT met"
    body = f"""
Target: the suite's scanner at least {TARGET:.0%} of the `yara` command-line tool's MB/s on the same corpus and
rules, with the same hits. **{verdict}: {ratio:.1%}** (median over {args.rounds} rounds of the suite's MB/s over the
CLI's; per round {', '.join(f'{x:.1%}' for x in ratios)}). By CPU time (MB per CPU-second): {statistics.median(cpu_ratios):.1%}.
The machine is shared with other work (1-minute load average {min(load):.1f}–{max(load):.1f} on {os.cpu_count()} cores
during the rounds), so each round cuts the corpus into {len(chunks)} chunks and scans every chunk with both, back to
back, alternating who goes first: load from elsewhere falls on both sides alike.

Corpus: {len(all_files)} files, {mb:.0f} MB: {by_kind['generated'] / 1e6:.0f} MB generated (mixed text, JSON, HTML,
UTF-16, random binary, marker samples), {by_kind['evtx'] / 1e6:.0f} MB real EVTX,
{by_kind['pcap and other corpus files'] / 1e6:.1f} MB real pcap. Rules: {len(files)} signature-base files,
{pack.rule_count} rules; left out because only one engine accepts them: {', '.join(excluded) or 'none'}.
yara CLI {reference.version()} (`yara -C -p {args.threads} --scan-list`, rules precompiled by yarac); yara-python
{yara.__version__}, {yara_python_build()}. Threads: {args.threads} on both sides.

| run | threads | seconds (median round) | MB/s | CPU s | hits |
|---|---:|---:|---:|---:|---:|
| `yara` CLI, externals `-d name=` (empty) | {args.threads} | {cli_s:.2f} | {mb / cli_s:.1f} | {cli_cpu:.2f} | {len(cli_hits)} |
| suite scanner, same fixed externals | {args.threads} | {suite_s:.2f} | {mb / suite_s:.1f} | {suite_cpu:.2f} | {len(suite_hits)} (identical) |
| `yara` CLI, its default thread count (no `-p`), one run | default | {cli_default_seconds:.2f} | {mb / cli_default_seconds:.1f} | {cli_default_cpu:.2f} | |
| suite scanner, externals per file (its normal mode), one run | {args.threads} | {per_file_seconds:.2f} | {mb / per_file_seconds:.1f} | {per_file_cpu:.2f} | {len(per_file_hits)} |

Both sides scan the same lists of files (the CLI through `--scan-list`, since it takes a single target). The
suite's timings include loading the rule pack from its cache for every chunk; the CLI's include starting it and
loading its compiled file for every chunk. Per-file externals add rules that need a file name or type
({', '.join(only_per_file) or 'none'}) and drop ones that need them empty ({', '.join(only_fixed) or 'none'}).

Rule pack, {len(pack.health)} files: cold compile (each file alone, then all together, then saved)
{times['cold']:.2f} s; from the cache (hash the rule files, load) {times['cached']:.3f} s, of which `yara.load`
{times['yara_load']:.3f} s: {times['cold'] / times['cached']:.0f}× faster. (`yarac` on the same files:
{yarac_seconds:.2f} s.) Rule files on which the two engines disagree: {len(disagree)}.
"""
    print(body)
    if not args.no_write:
        write_section("bench_yara", "YARA scanning: suite vs yara CLI", body)


if __name__ == "__main__":
    main()
