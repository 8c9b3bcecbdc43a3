"""`soc yara …`: check rule packs and scan files and folders.

`soc yara scan --rules DIR PATH…` prints one JSON object per match on stdout (for jq, for a SIEM), and shows the
progress and a summary on stderr. `soc yara check --rules DIR` lists every rule file, loaded or failed and why.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Annotated, Optional

import typer

RulesOption = Annotated[Optional[list[str]], typer.Option("--rules", "-r", help="rule folder or file (repeatable; "
                                                          "default: the configured yara.rule_dirs)")]
ConfigOption = Annotated[Optional[str], typer.Option("--config", "-c", help="YAML configuration file")]
CacheOption = Annotated[Optional[str], typer.Option("--cache-dir", help="compiled-rules cache "
                                                    "(default: <data_dir>/cache/yara)")]
NoCacheOption = Annotated[bool, typer.Option("--no-cache", help="compile the rules, neither read nor write the cache")]


def _config(config: str | None, rules: list[str] | None, cache_dir: str | None, no_cache: bool):
    from detections.yara.service import yara_settings
    from soc.plugins import commands

    found = yara_settings(commands().settings(config))
    update: dict = {}
    if rules:
        update["rule_dirs"] = list(rules)
    if cache_dir:
        update["cache_dir"] = cache_dir
    found = found.model_copy(update=update)
    return found, (None if no_cache else found.cache_dir)


def _stderr_progress():
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    # JSON goes to stdout untouched: the bar must not capture it.
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True),
                    redirect_stdout=False, redirect_stderr=False, transient=False)


def _load(rule_dirs, cache_dir, progress):
    from detections.yara.cache import load_pack
    from detections.yara.compiler import RulePackError

    task = progress.add_task("loading rules", total=None)

    def step(done: int, total: int) -> None:
        progress.update(task, description="compiling rule files", completed=done, total=total)

    try:
        pack = load_pack(rule_dirs, cache_dir=cache_dir, progress=step)
    except RulePackError as exc:
        progress.stop()
        typer.echo(f"soc yara: {exc}", err=True)
        raise typer.Exit(2) from exc
    progress.update(task, description=f"rules {'from the cache' if pack.origin == 'cache' else 'compiled'}",
                    completed=1, total=1)
    return pack


def _json_line(record: dict) -> str:
    line = json.dumps(record, ensure_ascii=False)
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:  # a file name with undecodable bytes: escape it rather than fail the line
        line = json.dumps(record, ensure_ascii=True)
    return line + "\n"


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def register(app: typer.Typer) -> None:
    yara_app = typer.Typer(help="YARA: check rule packs, scan files and folders.", no_args_is_help=True)
    app.add_typer(yara_app, name="yara")

    @yara_app.command("scan")
    def scan(
        paths: Annotated[list[str], typer.Argument(help="files and folders (folders are walked recursively)")],
        rules: RulesOption = None,
        timeout: Annotated[Optional[int], typer.Option(help="seconds per file (default: yara.timeout_seconds)")] = None,
        max_file_mb: Annotated[Optional[float], typer.Option(help="skip larger files, with the reason "
                                                             "(default: yara.max_file_bytes)")] = None,
        threads: Annotated[Optional[int], typer.Option(help="scanning threads (default: yara.threads)")] = None,
        file_externals: Annotated[bool, typer.Option(
            "--file-externals/--no-file-externals",
            help="set filename, filepath, extension, filetype, owner per file (off: empty, as `yara` without -d)")
        ] = True,
        cache_dir: CacheOption = None,
        no_cache: NoCacheOption = False,
        config: ConfigOption = None,
    ) -> None:
        """Scan files and folders; one JSON object per match on stdout, progress and summary on stderr."""
        from rich.markup import escape

        from detections.yara.model import ScanSummary
        from detections.yara.scanner import ScanOptions, Scanner

        settings, cache = _config(config, rules, cache_dir, no_cache)
        options = ScanOptions(
            timeout_seconds=timeout or settings.timeout_seconds,
            max_file_bytes=int(max_file_mb * 1024 * 1024) if max_file_mb else settings.max_file_bytes,
            threads=threads or settings.threads, per_file_externals=file_externals)
        summary = ScanSummary()
        out = sys.stdout
        with _stderr_progress() as progress:
            pack = _load(settings.rule_dirs, cache, progress)
            scanner = Scanner(pack, options)
            listing = progress.add_task("listing files", total=None)
            items = list(scanner.iter_files(paths))
            progress.update(listing, description=f"{len(items)} files", completed=1, total=1)
            task = progress.add_task("scanning", total=len(items))
            started = time.perf_counter()
            for result in scanner.scan_items(items):
                summary.add(result)
                for match in result.matches:
                    out.write(_json_line(match.to_dict()))
                if result.matches:
                    out.flush()
                if result.problem:
                    progress.console.print(f"[yellow]not scanned[/] {escape(result.problem.path)}: "
                                           f"{result.problem.kind}: {escape(result.problem.reason)}",
                                           highlight=False, soft_wrap=True)
                progress.advance(task)
            summary.seconds = time.perf_counter() - started
        failed = f", {pack.failed} failed (see `soc yara check`)" if pack.failed else ", 0 failed"
        rate = summary.bytes_scanned / 1e6 / summary.seconds if summary.seconds else 0.0
        skipped = ", ".join(f"{k} {v}" for k, v in sorted(summary.problems.items())) or "none"
        typer.echo(f"rule files: {pack.loaded} loaded{failed}; {pack.rule_count} rules "
                   f"({'from the cache' if pack.origin == 'cache' else 'compiled'} in {pack.seconds:.2f} s)", err=True)
        typer.echo(f"files scanned: {summary.files_scanned} ({_mb(summary.bytes_scanned)} in {summary.seconds:.1f} s, "
                   f"{rate:.1f} MB/s); not scanned: {skipped}", err=True)
        typer.echo(f"matches: {summary.matches} in {summary.files_matched} files", err=True)

    @yara_app.command("check")
    def check(
        rules: RulesOption = None,
        as_json: Annotated[bool, typer.Option("--json", help="one JSON object per rule file")] = False,
        cli: Annotated[bool, typer.Option("--cli", help="also ask the yara command-line tool (yarac) about "
                                          "every file and show where the two disagree")] = False,
        cache_dir: CacheOption = None,
        no_cache: NoCacheOption = False,
        config: ConfigOption = None,
    ) -> None:
        """Every rule file: loaded (how many rules, warnings) or failed and why."""
        settings, cache = _config(config, rules, cache_dir, no_cache)
        with _stderr_progress() as progress:
            pack = _load(settings.rule_dirs, cache, progress)
            disagree = []
            if cli:
                from detections.yara import reference

                try:
                    progress.add_task("asking yarac about every file", total=None)
                    disagree = reference.annotate(pack, threads=settings.threads)
                except reference.ReferenceUnavailable as exc:
                    typer.echo(f"soc yara: {exc}", err=True)
                    raise typer.Exit(2) from exc
        for h in pack.health:
            if as_json:
                typer.echo(json.dumps(h.to_dict(), ensure_ascii=False))
                continue
            detail = f"{h.rules:>4} rules" if h.status == "loaded" else "        "
            line = f"{h.status:<7} {detail}  {h.namespace} [{h.path}]"
            if h.reason:
                line += f": {h.reason}"
            if h.warnings:
                line += f" ({len(h.warnings)} warning{'s' if len(h.warnings) != 1 else ''}: {h.warnings[0]})"
            if cli and h.cli:
                line += f"  [yara CLI: {h.cli}]"
            typer.echo(line)
        typer.echo(f"{len(pack.health)} rule files: {pack.loaded} loaded ({pack.rule_count} rules), {pack.failed} failed",
                   err=True)
        if cli:
            typer.echo(f"yara CLI disagrees on {len(disagree)} file(s)"
                       + (": " + ", ".join(h.namespace for h in disagree) if disagree else ""), err=True)
        raise typer.Exit(1 if pack.failed or disagree else 0)
