"""`soc hunt`: Sigma rules over EVTX files, folders and JSON lines, one JSON detection per line as it is found;
with a timeline in event time, a summary and an ATT&CK Navigator layer from the same run."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from detections.navigator import ATTACK_VERSION
from soc.vocabulary import SEVERITIES, Severity, severity_rank

DEFAULT_CACHE = Path.home() / ".cache" / "soc-suite" / "sigma"


def hunt_command(
    paths: Annotated[list[Path], typer.Argument(help="EVTX files, folders, JSON-lines files")],
    rules: Annotated[list[Path], typer.Option("--rules", "-r", help="a folder (or file) of Sigma rules; repeatable")],
    pipeline: Annotated[str, typer.Option(help="Sigma processing pipeline (soc or none)")] = "soc",
    cache_dir: Annotated[Optional[Path], typer.Option(help="compiled-rule cache folder")] = DEFAULT_CACHE,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="parse every rule again")] = False,
    with_event: Annotated[bool, typer.Option("--event/--no-event", help="include the matched event")] = True,
    min_level: Annotated[str, typer.Option(help=", ".join(SEVERITIES))] = Severity.informational.value,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="write detections here, not stdout")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
    inventory: Annotated[Optional[Path], typer.Option(help="inventory YAML whose domain controllers, DNS servers... "
                                                            "fill %placeholder% values (default: none; rules that "
                                                            "need them report it)")] = None,
    workers: Annotated[int, typer.Option(help="processes to hunt with, and to parse rules with on a cold start "
                                              "(default: one per core); with more than one, files are read at the "
                                              "same time and detections are written as they are found, in arrival "
                                              "order, not file order")] = 0,
    timeline: Annotated[Optional[Path], typer.Option(help="also write a timeline of the detections, sorted by event "
                                                          "time, with a one-line summary of each event: CSV, or "
                                                          "JSON lines when FILE ends with .jsonl/.json/.ndjson; in "
                                                          "CSV, a cell that a spreadsheet would take for a formula "
                                                          "(starting with = + - @, a tab or a carriage return) is "
                                                          "written with a leading ' so that it shows as "
                                                          "text")] = None,
    timeline_format: Annotated[str, typer.Option(help="timeline format: auto (from the file name), csv or "
                                                      "jsonl")] = "auto",
    summary: Annotated[Optional[Path], typer.Option(help="also write a JSON summary: detections by level, computer, "
                                                         "technique, first and last seen, top rules")] = None,
    navigator: Annotated[Optional[Path], typer.Option(help="also write an ATT&CK Navigator layer (format 4.5) of "
                                                           "the techniques detected, scored by detections")] = None,
    attack_version: Annotated[str, typer.Option(help="ATT&CK version the Navigator layer names")] = ATTACK_VERSION,
    exceptions: Annotated[Optional[Path], typer.Option(help="rule exceptions file (YAML, as the suite's "
                                                            "detections.rule_exceptions_file): matches it excepts "
                                                            "are not reported")] = None,
) -> None:
    """Hunt with Sigma rules over EVTX files and JSON lines, like Hayabusa or Zircolite.

    One JSON detection per line, written as it is found; with --timeline, --summary and --navigator the same run
    also writes a timeline in event time, a summary and an ATT&CK Navigator layer. A short summary goes to stderr.

    A record that cannot be read (not JSON, nested too deeply, a line over 8 MB, a damaged EVTX record, a shape
    no view expects) is skipped and reported on stderr, and counted in the summary: the hunt goes on and exits 0.
    A worker process that dies costs the file it was reading, reported the same way.
    """
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    from detections.engine import DetectionEngine
    from detections.hunt import HuntErrors, detection_record, event_time, hunt_files, hunt_parallel
    from detections.navigator import NavigatorLayer
    from detections.sigma.loader import load_rules
    from detections.timeline import HuntSummary, Timeline, details, printable, timeline_format as format_of

    if min_level not in SEVERITIES:
        raise typer.BadParameter(f"--min-level must be one of {', '.join(SEVERITIES)}")
    if timeline is not None:
        try:
            format_of(timeline, timeline_format)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from exc
    for target in (output, timeline, summary, navigator):  # fail before the work, not after it
        if target is not None and not target.absolute().parent.is_dir():
            raise typer.BadParameter(f"{target}: no such folder {target.absolute().parent}")
    console = Console(stderr=True)
    try:
        files = hunt_files(list(paths))
    except FileNotFoundError as exc:
        console.print(f"[red]soc hunt: {exc}")
        raise typer.Exit(2) from exc
    workers = workers or os.cpu_count() or 1
    started = time.perf_counter()
    progress = Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                        TextColumn("{task.fields[detail]}"), TimeElapsedColumn(),
                        console=console, disable=quiet)
    errors = HuntErrors()
    counts = {"events": 0, "detections": 0}
    found = HuntSummary()
    layer = NavigatorLayer() if navigator else None
    ordered = Timeline(timeline, timeline_format) if timeline else None
    try:
        with progress:
            task = progress.add_task("loading rules", total=None, detail="")
            # The hunt's --workers bounds the cold start too: --workers 1 parses the rules in this process.
            ruleset = load_rules(rules, pipeline=pipeline, cache_dir=None if no_cache else cache_dir, workers=workers,
                                 progress=lambda done, total: progress.update(
                                     task, completed=done, total=total, detail=f"{done}/{total} files"),
                                 placeholders=_placeholders(inventory))
            loaded_at = time.perf_counter()
            engine = DetectionEngine(ruleset, exceptions=_exceptions(exceptions))
            total_bytes = sum(f.stat().st_size for f in files) or 1
            task = progress.add_task("hunting", total=total_bytes, detail=f"{len(files)} files")
            sink = output.open("w", encoding="utf-8") if output else sys.stdout
            unflushed = [False]

            def on_progress(source: str, events: int, nbytes: int, finished: bool) -> None:
                counts["events"] += events
                # the bar is in bytes (estimated within an EVTX file); the counts are exact
                progress.update(task, advance=nbytes, detail=f"{counts['events']} events, "
                                                             f"{counts['detections']} detections")
                if unflushed[0]:  # a batch is written: it reaches a pipe now, while the hunt goes on
                    sink.flush()
                    unflushed[0] = False

            floor = severity_rank(min_level)
            last_event, last_details = None, ""
            try:
                for rule, event in hunt_parallel(engine, files, errors, workers, on_progress):
                    meta = rule.meta
                    if severity_rank(meta.level) < floor:
                        continue
                    counts["detections"] += 1
                    record = detection_record(rule, event, with_event)
                    try:
                        sink.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
                    except UnicodeEncodeError:  # a lone surrogate (JSON's \ud800): written as JSON's escape
                        sink.write(json.dumps(record, default=str) + "\n")
                    unflushed[0] = True
                    when = event_time(event.timestamp)
                    found.add(meta, event, when)
                    if layer is not None:
                        layer.add(meta)
                    if ordered is not None:
                        if event is not last_event:  # an event several rules matched is summed up once
                            last_event, last_details = event, details(event.view)
                        ordered.add(meta, event, when, last_details)
            finally:
                if output:
                    sink.close()
                else:
                    sink.flush()
            progress.update(task, completed=total_bytes)
            hunting = time.perf_counter() - loaded_at
            if ordered is not None:
                rows = ordered.rows
                task = progress.add_task("writing the timeline", total=rows or 1, detail=f"{rows} rows")
                ordered.close(lambda n: progress.update(task, advance=n))
                ordered = None
                progress.update(task, completed=rows or 1)
    finally:
        if ordered is not None:  # the hunt failed: no timeline, and no spill file left behind
            ordered.discard()
    elapsed = time.perf_counter() - started
    if summary:
        summary.write_text(json.dumps(found.as_dict(
            files=len(files), events=counts["events"], unreadable_records=len(errors), rules_loaded=ruleset.loaded,
            rules_failed=ruleset.failed, min_level=min_level, seconds=round(elapsed, 3)),
            ensure_ascii=False, indent=2) + "\n", encoding="utf-8", errors="backslashreplace")
    if layer is not None:
        navigator.write_text(json.dumps(layer.layer(attack_version=attack_version), ensure_ascii=False, indent=2)
                             + "\n", encoding="utf-8", errors="backslashreplace")
    for error in errors[:20]:  # file names and reasons can hold what a record says: no markup, no escape sequences
        console.print(f"[yellow]skipped[/] {escape(printable(f'{error.source}#{error.record}: {error.reason}'))}",
                      highlight=False)
    if len(errors) > 20:
        console.print(f"[yellow]... and {len(errors) - 20} more unreadable records")
    console.print(
        f"rules: {ruleset.loaded} loaded, {ruleset.failed} failed ({ruleset.from_cache} files from the cache, "
        f"{ruleset.parsed} parsed) in {loaded_at - started:.1f}s; {len(files)} files, {counts['events']} events, "
        f"{counts['detections']} detections in {hunting:.1f}s ({counts['events'] / max(hunting, 1e-9):.0f} events/s); "
        f"total {elapsed:.1f}s; {len(errors)} unreadable records", highlight=False)
    console.print(found.text(), highlight=False, markup=False)
    if ruleset.failed:
        console.print("see `soc rules check --rules DIR` for why rules failed")


def _exceptions(path: Path | None):
    """The same exceptions file the suite applies, or a clear error (the file, the entry at fault, why)."""
    if path is None:
        return None
    from detections.exceptions import ExceptionsError, load_exceptions

    try:
        return load_exceptions(path)
    except ExceptionsError as exc:
        raise typer.BadParameter(str(exc), param_hint="--exceptions") from exc


def _placeholders(inventory_path: Path | None) -> dict[str, list[str]]:
    """Offline hunting needs no suite: placeholder values come only from an inventory named on the command line."""
    if inventory_path is None:
        return {}
    from detections.sigma.placeholders import placeholder_values
    from inventory.lookup import Inventory, InventoryError

    try:
        return placeholder_values(Inventory.load(inventory_path), {})
    except InventoryError as exc:
        raise typer.BadParameter(str(exc)) from exc


def register(app: typer.Typer) -> None:
    app.command("hunt")(hunt_command)
