"""`soc hunt`: Sigma rules over EVTX files, folders and JSON lines, one JSON detection per line."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

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
    workers: Annotated[int, typer.Option(help="processes to hunt with (default: one per core)")] = 0,
) -> None:
    """Hunt with Sigma rules over EVTX files and JSON lines, like Hayabusa or Zircolite."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from detections.engine import DetectionEngine
    import os

    from detections.hunt import HuntError, detection_record, hunt_files, hunt_parallel
    from detections.sigma.loader import load_rules

    if min_level not in SEVERITIES:
        raise typer.BadParameter(f"--min-level must be one of {', '.join(SEVERITIES)}")
    console = Console(stderr=True)
    try:
        files = hunt_files(list(paths))
    except FileNotFoundError as exc:
        console.print(f"[red]soc hunt: {exc}")
        raise typer.Exit(2) from exc
    started = time.perf_counter()
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=console, disable=quiet)
    with progress:
        task = progress.add_task("loading rules", total=None)
        ruleset = load_rules(rules, pipeline=pipeline, cache_dir=None if no_cache else cache_dir,
                             progress=lambda done, total: progress.update(task, completed=done, total=total),
                             placeholders=_placeholders(inventory))
        loaded_at = time.perf_counter()
        engine = DetectionEngine(ruleset)
        sizes = {f: f.stat().st_size for f in files}
        task = progress.add_task("hunting", total=sum(sizes.values()) or 1)
        errors: list[HuntError] = []
        counts = {"events": 0, "detections": 0}

        def on_file(source: str, events: int) -> None:
            counts["events"] += events
            progress.update(task, advance=sizes.get(Path(source), 0))

        floor = severity_rank(min_level)
        sink = output.open("w", encoding="utf-8") if output else sys.stdout
        try:
            for rule, event in hunt_parallel(engine, files, errors, workers or os.cpu_count() or 1, on_file):
                if severity_rank(rule.meta.level) < floor:
                    continue
                counts["detections"] += 1
                sink.write(json.dumps(detection_record(rule, event, with_event), ensure_ascii=False, default=str)
                           + "\n")
        finally:
            if output:
                sink.close()
        progress.update(task, completed=sum(sizes.values()) or 1)
    elapsed = time.perf_counter() - started
    hunting = time.perf_counter() - loaded_at
    for error in errors[:20]:
        console.print(f"[yellow]skipped[/] {error.source}#{error.record}: {error.reason}")
    if len(errors) > 20:
        console.print(f"[yellow]... and {len(errors) - 20} more unreadable records")
    console.print(
        f"rules: {ruleset.loaded} loaded, {ruleset.failed} failed ({ruleset.from_cache} files from the cache, "
        f"{ruleset.parsed} parsed) in {loaded_at - started:.1f}s; {len(files)} files, {counts['events']} events, "
        f"{counts['detections']} detections in {hunting:.1f}s ({counts['events'] / max(hunting, 1e-9):.0f} events/s); "
        f"total {elapsed:.1f}s; {len(errors)} unreadable records")
    if ruleset.failed:
        console.print("see `soc rules check --rules DIR` for why rules failed")


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
