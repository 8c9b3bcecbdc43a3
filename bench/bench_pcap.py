"""Packets per second of the pcap extractor against the naive scapy loop, over the whole pcap corpus.

Baseline (measured in the same run): ``for pkt in PcapReader(path)`` with full scapy dissection of every packet
and scapy's DNS/HTTP/TLS layers for the fields (collectors/packets/naive.py). Fast path: scapy's raw reader,
struct-decoded headers, scapy DNS for DNS payloads only, own TLS/HTTP head parsers (iter_pcap_records).

Both must yield exactly the same records, file by file (compared as multisets of canonical JSON); the target is
at least 10x the baseline's packets per second. Run: ``.venv/bin/python bench/bench_pcap.py [--rounds N]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.report import write_section  # noqa: E402
from collectors.packets.naive import naive_records  # noqa: E402
from collectors.packets.pcap import PcapExtraction  # noqa: E402

CORPUS = ROOT.parent / "shared" / "corpus" / "pcap"
TARGET = 10.0


def captures() -> list[Path]:
    return sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.suffix in (".pcap", ".pcapng", ".cap"))


def run_fast(files, payload_dir) -> tuple[tuple[float, float], dict, int]:
    records, frames = {}, 0
    wall, cpu = time.perf_counter(), time.process_time()
    for path in files:
        extraction = PcapExtraction(path, payload_dir)
        records[path] = list(extraction.records())
        frames += extraction.stats["frames"]
    return (time.process_time() - cpu, time.perf_counter() - wall), records, frames


def run_naive(files, payload_dir) -> tuple[tuple[float, float], dict]:
    records = {}
    wall, cpu = time.perf_counter(), time.process_time()
    for path in files:
        records[path] = list(naive_records(path, payload_dir))
    return (time.process_time() - cpu, time.perf_counter() - wall), records


def canonical(records: list[dict], payload_dir: Path) -> Counter:
    """Records as comparable strings; payload paths are made relative to their (per-run) payload directory."""
    prefix = json.dumps(str(payload_dir))[1:-1]
    return Counter(json.dumps(r, sort_keys=True).replace(prefix, "<payloads>") for r in records)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds of each (the best is kept)")
    args = parser.parse_args()
    logging.getLogger("scapy").setLevel(logging.ERROR)
    files = captures()
    if not files:
        print(f"no captures under {CORPUS}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        fast_dir, naive_dir = Path(tmp, "fast"), Path(tmp, "naive")
        run_fast(files[:3], fast_dir)  # warm imports and caches for both before timing
        run_naive(files[:3], naive_dir)
        fast_times, naive_times = [], []
        for _ in range(args.rounds):
            seconds, fast_records, frames = run_fast(files, fast_dir)
            fast_times.append(seconds)
            seconds, naive_records_ = run_naive(files, naive_dir)
            naive_times.append(seconds)
        stored = sum(1 for p in fast_dir.rglob("*") if p.is_file())
        same_payload_files = sorted(p.name for p in fast_dir.rglob("*") if p.is_file()) == \
            sorted(p.name for p in naive_dir.rglob("*") if p.is_file())
    # CPU seconds of this process decide: on a shared 2-core machine other work inflates wall time at random.
    (fast_s, fast_wall), (naive_s, naive_wall) = min(fast_times), min(naive_times)
    fast_rate, naive_rate = frames / fast_s, frames / naive_s
    speedup = fast_rate / naive_rate

    differing = [p for p in files
                 if canonical(fast_records[p], fast_dir) != canonical(naive_records_[p], naive_dir)]
    by_type = Counter(r["event"]["dataset"] for rs in fast_records.values() for r in rs)
    total = sum(by_type.values())
    ok = speedup >= TARGET and not differing and same_payload_files

    lines = [
        f"Corpus: `shared/corpus/pcap`, {len(files)} capture files, {frames} packets "
        f"({sum(p.stat().st_size for p in files) / 1e6:.1f} MB). Best of {args.rounds} rounds each, "
        "timed in CPU seconds of the benchmark process (payloads written to a temporary folder by both).",
        "",
        "| extractor | CPU seconds | wall seconds | packets/s (CPU) |",
        "|---|---:|---:|---:|",
        f"| naive scapy loop (`PcapReader`, full dissection, scapy DNS/HTTP/TLS layers) | {naive_s:.3f} | "
        f"{naive_wall:.3f} | {naive_rate:,.0f} |",
        f"| fast path (`iter_pcap_records`) | {fast_s:.3f} | {fast_wall:.3f} | {fast_rate:,.0f} |",
        "",
        f"**Speed-up: {speedup:.1f}x** (target ≥ {TARGET:.0f}x) — {'met' if speedup >= TARGET else 'NOT MET'}.",
        "",
        f"Same records: {len(files) - len(differing)} of {len(files)} files give identical record sets "
        f"({total} records: " + ", ".join(f"{n} {k}" for k, n in sorted(by_type.items())) + "); "
        f"extracted payload files identical: {'yes' if same_payload_files else 'NO'} ({stored} stored).",
    ]
    if differing:
        lines += ["", "Files whose records differ: " + ", ".join(f"`{p.relative_to(CORPUS)}`" for p in differing)]
    body = "\n".join(lines)
    write_section("bench_pcap", "Pcap extraction: fast path vs naive scapy loop", body)
    print(body)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
