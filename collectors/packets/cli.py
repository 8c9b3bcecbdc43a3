"""``soc pcap``: capture files (or a live interface) to ECS JSON lines, with extracted HTTP bodies and FTP files
on disk."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Annotated, Optional, TextIO

import typer

DATASETS = ("network.flow", "network.dns", "network.http", "network.tls", "network.ftp")


def register(app: typer.Typer) -> None:
    app.command("pcap")(pcap)


def pcap(paths: Annotated[Optional[list[Path]], typer.Argument(help="pcap or pcapng files, or folders of them",
                                                              show_default=False)] = None,
         out: Annotated[Optional[Path], typer.Option("--out", "-o", help="write the JSON lines here "
                                                     "instead of standard output")] = None,
         payload_dir: Annotated[Optional[Path], typer.Option("--payload-dir", help="keep HTTP bodies here, "
                                                             "named by sha256 (for YARA)")] = None,
         live: Annotated[Optional[str], typer.Option("--live", help="capture on this interface instead "
                                                     "(needs capture rights)")] = None,
         count: Annotated[int, typer.Option("--count", help="live: stop after this many packets (0: no "
                                            "limit)")] = 0,
         timeout: Annotated[Optional[float], typer.Option("--timeout", help="live: stop after this many "
                                                          "seconds")] = None,
         bpf: Annotated[Optional[str], typer.Option("--filter", help="live: BPF capture filter")] = None) -> None:
    """Decode packets to ECS records (flows, DNS, HTTP, TLS), one JSON document per line."""
    logging.getLogger("scapy").setLevel(logging.ERROR)  # damage is reported below, with the file and offset
    if bool(paths) == bool(live):
        typer.echo("soc pcap: give capture files, or --live IFACE", err=True)
        raise typer.Exit(2)
    if live and not count and timeout is None:
        typer.echo("soc pcap: --live needs --count or --timeout", err=True)
        raise typer.Exit(2)
    try:
        if payload_dir is not None:
            payload_dir.mkdir(parents=True, exist_ok=True)
        sink = open(out, "w", encoding="utf-8") if out else sys.stdout
    except OSError as exc:
        typer.echo(f"soc pcap: {exc.filename}: {exc.strerror}", err=True)
        raise typer.Exit(2) from exc
    try:
        code = _live(live, count, timeout, bpf, payload_dir, sink) if live else _files(paths, payload_dir, sink)
    except BrokenPipeError:  # the reader of standard output went away (| head): stop quietly, but not as success
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 1
    finally:
        if out:
            sink.close()
    raise typer.Exit(code)


def _write(sink: TextIO, counts: Counter):
    def write(doc: dict) -> None:
        counts[doc["event"]["dataset"]] += 1
        sink.write(json.dumps(doc, ensure_ascii=False, separators=(",", ":")))
        sink.write("\n")
    return write


def _summary(label: str, counts: Counter, stats: Counter, payloads: int) -> str:
    records = ", ".join(f"{counts[d]} {d.split('.')[1]}" for d in DATASETS)
    return (f"{label}: {stats.get('frames', stats.get('packets', 0))} packets, {sum(counts.values())} records "
            f"({records}), {payloads} payloads")


def _files(paths: list[Path], payload_dir: Path | None, sink: TextIO) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    from collectors.packets.pcap import PcapExtraction, capture_files
    from collectors.packets.reader import PcapReadError

    console = Console(stderr=True, soft_wrap=True)
    paths = capture_files(paths)
    missing = [p for p in paths if not p.is_file()]
    for path in missing:
        console.print(f"soc pcap: {path}: no such file")
    paths = [p for p in paths if p.is_file()]
    total = sum(p.stat().st_size for p in paths)
    failures = len(missing)
    totals, lines = Counter(), []
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                  console=console, transient=True) as progress:
        task = progress.add_task("reading", total=total or 1)
        done = 0
        for path in paths:
            progress.update(task, description=f"reading {path.name}")
            counts = Counter()
            extraction = PcapExtraction(path, payload_dir)
            write = _write(sink, counts)
            try:
                for doc in extraction.records(lambda pos, base=done: progress.update(task, completed=base + pos)):
                    write(doc)
            except PcapReadError as exc:
                failures += 1
                lines.append(f"soc pcap: error: {exc}")
            done += path.stat().st_size
            progress.update(task, completed=done)
            totals.update(counts)
            totals["frames"] += extraction.stats.get("frames", 0)
            lines.append(_summary(str(path), counts, extraction.stats, len(extraction.extracted_payloads)))
    sink.flush()
    for line in lines:
        console.print(line, highlight=False, markup=False)
    if len(paths) > 1:
        console.print(f"total: {len(paths)} files, {totals['frames']} packets, "
                      f"{sum(totals[d] for d in DATASETS)} records", highlight=False)
    if failures:
        console.print(f"soc pcap: {failures} file(s) could not be read to the end (records before the damage "
                      f"were written)", highlight=False)
    return 1 if failures else 0


def _live(iface: str, count: int, timeout: float | None, bpf: str | None, payload_dir: Path | None,
          sink: TextIO) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from collectors.packets.live import capture

    console = Console(stderr=True, soft_wrap=True)
    counts = Counter()
    write = _write(sink, counts)

    def started() -> None:
        console.print(f"soc pcap: capturing on {iface}", highlight=False)

    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, transient=True) as progress:
            task = progress.add_task(f"capturing on {iface}", total=count or None)

            def record(doc: dict) -> None:
                write(doc)
                sink.flush()

            extractor = capture(iface, record, count=count, timeout=timeout, bpf=bpf, payload_dir=payload_dir,
                                on_start=started, on_packet=lambda: progress.advance(task))
    except Exception as exc:  # no such interface, no capture rights, a filter scapy cannot compile (no tcpdump)...
        console.print(f"soc pcap: cannot capture on {iface}: {type(exc).__name__}: {exc}", highlight=False)
        return 1
    summary = _summary(f"live {iface}", counts, extractor.stats, len(extractor.extracted_payloads))
    console.print(summary, highlight=False)
    return 0
