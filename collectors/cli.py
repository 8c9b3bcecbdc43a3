"""`soc parse`: run a format parser over a log file and print one ECS document per line (JSON Lines).

Bad records go to stderr with their line number and reason; the run never stops on them, and the exit code says
whether any record failed (0 all parsed, 1 some failed, 2 usage or file errors).
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Iterable, Optional

import typer

from collectors.message import ParseError


def _lines(handle) -> Iterable[str]:
    for raw in handle:
        yield raw.rstrip("\r\n")


def _records(fmt: str, lines: Iterable[str]) -> Iterable[str]:
    from collectors.parsers.registry import all_parsers

    spec = all_parsers().get(fmt)
    if spec is not None and spec.records is not None:
        return spec.records(lines)
    return (line for line in lines if line.strip())


def _default(value):
    if isinstance(value, datetime):
        from soc import ecs

        return ecs.utc_iso(value)
    return str(value)


def list_formats() -> str:
    from collectors.parsers.registry import all_parsers

    rows = [f"{'format':<18} {'carrier':<7} {'dataset':<28} description"]
    for spec in sorted(all_parsers().values(), key=lambda s: s.name):
        programs = f" (programs: {', '.join(spec.programs)})" if spec.programs else ""
        rows.append(f"{spec.name:<18} {spec.carrier:<7} {spec.dataset:<28} {spec.description}{programs}")
    rows.append(f"{'auto':<18} {'-':<7} {'-':<28} detect the format of each line")
    return "\n".join(rows)


def parse_file(fmt: str, source, out, err, zone, progress: bool = False) -> tuple[int, int]:
    """Parse every record of ``source``; returns (parsed, failed)."""
    from collectors.parsers.registry import ParseContext, parse_record

    parsed = failed = 0
    received = datetime.now(timezone.utc)
    ctx = ParseContext(zone=zone, received=received)
    for number, record in enumerate(_records(fmt, _lines(source)), start=1):
        try:
            try:
                record.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise ParseError("invalid_utf8", f"not valid UTF-8 at character {exc.start}") from exc
            doc = parse_record(record, fmt, ctx)
        except ParseError as exc:
            failed += 1
            err.write(f"record {number}: {exc.kind}: {exc}\n")
            continue
        except Exception as exc:  # a parser bug: report the record and go on with the next one
            failed += 1
            err.write(f"record {number}: internal_error: {type(exc).__name__}: {exc}\n")
            continue
        parsed += 1
        out.write(json.dumps(doc, default=_default, ensure_ascii=False) + "\n")
    return parsed, failed


def register(app: typer.Typer) -> None:
    register_ingest(app)

    @app.command("parse")
    def parse(
        file: Annotated[Optional[Path], typer.Argument(help="log file to parse ('-' for standard input)")] = None,
        fmt: Annotated[str, typer.Option("--format", "-f", help="format name, 'auto', or 'list'")] = "auto",
        list_: Annotated[bool, typer.Option("--list", help="list the formats and exit")] = False,
        timezone_name: Annotated[Optional[str], typer.Option(
            "--timezone", help="zone for timestamps without one (default: the configured zone, else UTC)")] = None,
    ) -> None:
        """Parse a log file with one of the format parsers and print one ECS document per line as JSON."""
        from collectors.parsers.registry import all_parsers

        if list_ or fmt == "list":
            typer.echo(list_formats())
            raise typer.Exit(0)
        if fmt != "auto" and fmt not in all_parsers():
            typer.echo(f"soc parse: unknown format {fmt!r}; `soc parse --list` shows the formats", err=True)
            raise typer.Exit(2)
        if file is None:
            typer.echo("soc parse: give a FILE (or '-' for standard input)", err=True)
            raise typer.Exit(2)
        zone = _zone(timezone_name)
        try:
            handle = sys.stdin if str(file) == "-" else open(file, encoding="utf-8", errors="surrogateescape")
        except OSError as exc:
            typer.echo(f"soc parse: cannot read {file}: {exc.strerror}", err=True)
            raise typer.Exit(2) from exc
        try:
            if handle is not sys.stdin and sys.stderr.isatty():
                parsed, failed = _with_progress(fmt, handle, zone, Path(file).stat().st_size)
            else:
                parsed, failed = parse_file(fmt, handle, sys.stdout, sys.stderr, zone)
        finally:
            if handle is not sys.stdin:
                handle.close()
        typer.echo(f"soc parse: {parsed} parsed, {failed} failed", err=True)
        raise typer.Exit(1 if failed else 0)


def _with_progress(fmt: str, handle, zone, size: int) -> tuple[int, int]:
    """A progress bar on the terminal (stderr) while the documents go to stdout."""
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

    console = Console(stderr=True)
    with Progress(TextColumn("parsing"), BarColumn(), DownloadColumn(), console=console, transient=True) as progress:
        task = progress.add_task("parse", total=size)

        def lines():
            for line in handle:
                progress.advance(task, len(line.encode("utf-8", "surrogateescape")))
                yield line

        class _Err:
            def write(self, text: str) -> None:
                console.print(text.rstrip("\n"), markup=False, highlight=False)

        return parse_file(fmt, lines(), sys.stdout, _Err(), zone)


def _zone(name: str | None):
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            typer.echo(f"soc parse: unknown time zone {name!r}", err=True)
            raise typer.Exit(2) from exc
    try:
        from soc.plugins import commands

        return commands().settings(None).tz
    except Exception:  # no configuration here: timestamps without a zone are read as UTC
        return timezone.utc


def register_ingest(app: typer.Typer) -> None:
    @app.command("ingest")
    def ingest_command(
        paths: Annotated[list[str], typer.Argument(help="files or folders: .evtx, JSON lines (.json, .jsonl, "
                                                        ".ndjson), any other file one log line at a time")],
        fmt: Annotated[Optional[str], typer.Option(
            "--format", "-f", help="read every line with this parser (`soc parse --list`), or 'json' / 'syslog'; "
                                   "default: by the file's extension")] = None,
        agency: Annotated[Optional[str], typer.Option(
            help="the agency these events belong to (an inventory agency id); authoritative, like an API key's")] = None,
        config: Annotated[Optional[str], typer.Option("--config", "-c", help="YAML configuration file")] = None,
    ) -> None:
        """Ingest files through the pipeline into the configured store, running the detections: EVTX, JSON lines
        and plain log files. Prints a summary; exits 1 if a file could not be read (the others are ingested)."""
        from collectors.parsers.registry import all_parsers
        from soc.plugins import commands

        if fmt is not None and fmt not in ("json", "syslog") and fmt not in all_parsers():
            typer.echo(f"soc ingest: unknown format {fmt!r}; `soc parse --list` shows the formats", err=True)
            raise typer.Exit(2)
        settings = commands().settings(config)
        from collectors.ingest import OFFLINE_SKIPPED_EXTENSIONS, expand, ingest

        settings = settings.model_copy(update={
            "extensions": [e for e in settings.extensions if e not in OFFLINE_SKIPPED_EXTENSIONS]})
        files, missing = expand(paths)
        suite = commands().build_suite(settings, commands().open_store(settings))
        try:
            if agency is not None and agency not in suite.inventory.agencies:
                typer.echo(f"soc ingest: no agency {agency!r} in the inventory {settings.inventory.path} (known: "
                           f"{', '.join(sorted(suite.inventory.agencies))})", err=True)
                raise typer.Exit(2)
            summary = _ingest_with_progress(suite, files, fmt, agency or "", settings.pipeline.batch_size)
        finally:
            suite.close()
        summary.files[:0] = missing
        for report in summary.files:
            what = f"{report.records} records" + (f", {report.bytes} bytes" if report.kind != "evtx" else "")
            state = f"FAILED: {report.error}" if report.error else "ok"
            typer.echo(f"{report.path}: {report.kind}, {what}: {state}", err=bool(report.error))
        letters = sum(summary.dead_letters.values())
        reasons = ", ".join(f"{reason} {count}" for reason, count in summary.dead_letters.most_common())
        typer.echo(f"soc ingest: {len(summary.files)} files ({len(summary.failed)} failed), {summary.events} events "
                   f"stored, {letters} dead letters{' (' + reasons + ')' if reasons else ''}, "
                   f"{len(summary.alerts)} alerts raised or updated")
        for title, count in sorted(Counter(summary.alerts.values()).items()):
            typer.echo(f"  alert: {title} ({count})")
        raise typer.Exit(1 if summary.failed else 0)


def _ingest_with_progress(suite, files, fmt, agency, batch_size):
    """A progress bar per file on stderr: bytes read for text files, records for EVTX."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from collectors.ingest import ingest

    console = Console(stderr=True)
    tasks: dict[str, int] = {}
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[status]}"),
                  TimeElapsedColumn(), console=console) as progress:
        def on_file(report, size):
            name = Path(report.path).name
            tasks[report.path] = progress.add_task(name[:40], total=size, status="")

        def on_progress(report, n):
            task = tasks[report.path]
            if n:
                progress.advance(task, n)
            status = f"{report.records} records" + (f", {report.bytes / 1e6:.1f} MB" if report.bytes else "")
            progress.update(task, status=status)

        summary = ingest(suite, files, fmt=fmt, agency=agency, batch_size=batch_size, on_file=on_file,
                         on_progress=on_progress)
        for report in summary.files:
            if report.path in tasks:
                task = tasks[report.path]
                done = f"{report.records} records" + (f", {report.bytes / 1e6:.1f} MB" if report.bytes else "")
                progress.update(task, total=progress.tasks[task].completed or 1, completed=progress.tasks[
                    task].completed or 1, status=done + (" FAILED" if report.error else ""))
    return summary
