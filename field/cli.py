"""`soc field …`: the field kit's commands (new, collect, scan, note, seal, verify). No network in any of them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

KeyOption = Annotated[Optional[Path], typer.Option("--key", help="the kit's Ed25519 private key (PEM, 0600; "
                                                   "default: ~/.config/soc-suite/field/kit-ed25519.pem, made if "
                                                   "none); never inside the case folder")]


def _fail(exc: Exception, code: int = 2) -> typer.Exit:
    from field.case import printable

    typer.echo(f"soc field: {printable(str(exc))}", err=True)
    return typer.Exit(code)


def _progress():
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn(),
                    console=Console(stderr=True), transient=False)


def new(case_dir: Annotated[Path, typer.Argument(help="the case folder to make (new or empty)")],
        agency: Annotated[str, typer.Option("--agency", help="the agency's id (inventory id)")],
        responder: Annotated[str, typer.Option("--responder", help="who collects")],
        key: KeyOption = None) -> None:
    """Make a case folder, and the kit's signing key if there is none."""
    from field import keys
    from field.case import create_case
    from field.errors import FieldError

    try:
        private, made = keys.load_or_create(key, case_dir)
        public = keys.public_text(private.public_key())
        create_case(case_dir, agency, responder, public, keys.key_id(public))
    except (FieldError, OSError) as exc:
        raise _fail(exc) from exc
    if made:
        typer.echo(f"soc field: new kit key {key or keys.default_key_path()} (key id {keys.key_id(public)})", err=True)
    typer.echo(f"case {case_dir}: agency {agency}, responder {responder}, kit key {keys.key_id(public)}")


def collect(case_dir: Annotated[Path, typer.Argument(help="the case folder")],
            paths: Annotated[list[Path], typer.Argument(help="EVTX files or folders, log files, pcaps, files")],
            max_file_mb: Annotated[float, typer.Option(help="refuse a larger file")] = 2048.0,
            max_total_mb: Annotated[float, typer.Option(help="refuse a larger collection (nothing copied)")]
            = 20480.0,
            quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False) -> None:
    """Copy evidence into the case, hashing each file (SHA-256) as it is copied. Links are not followed; devices,
    FIFOs and sockets are refused. Exit 1 when something was skipped, 2 when an argument was refused."""
    from field.case import printable
    from field.collect import collect as run
    from field.errors import FieldError

    progress = _progress()
    progress.disable = quiet
    try:
        with progress:
            task = progress.add_task("collecting", total=None)
            result = run(case_dir, paths, max_file=int(max_file_mb * 1024 * 1024),
                         max_total=int(max_total_mb * 1024 * 1024),
                         progress=lambda src, done, total: progress.update(task, completed=done, total=total or 1))
    except (FieldError, OSError) as exc:
        raise _fail(exc) from exc
    for source, why in result.refused:
        typer.echo(f"soc field: skipped {printable(source)}: {printable(why)}", err=True)
    typer.echo(f"collected {len(result.files)} files ({result.bytes} bytes); {len(result.refused)} skipped")
    if result.refused:
        raise typer.Exit(1)


def scan(case_dir: Annotated[Path, typer.Argument(help="the case folder")],
         rules: Annotated[Optional[list[Path]], typer.Option("--rules", "-r", help="Sigma rule folder or file "
                                                             "(repeatable)")] = None,
         yara_rules: Annotated[Optional[list[Path]], typer.Option("--yara-rules", help="YARA rule folder or file "
                                                                  "(repeatable)")] = None,
         indicators: Annotated[Optional[Path], typer.Option("--indicators", help="an indicators export: STIX 2.1 "
                                                            "bundle (the suite's export), MISP export or a plain "
                                                            "list")] = None,
         workers: Annotated[int, typer.Option(help="hunting processes (0: one per core)")] = 1,
         cache_dir: Annotated[Optional[Path], typer.Option(help="compiled Sigma rule cache "
                                                           "(default: ~/.cache/soc-suite/sigma)")] = None,
         no_cache: Annotated[bool, typer.Option("--no-cache", help="parse every rule again")] = False,
         quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False) -> None:
    """Run the suite's Sigma, indicator and YARA detections over the case; write timeline.jsonl and timeline.csv."""
    import os

    from detections.cli import DEFAULT_CACHE
    from field.case import printable
    from field.errors import FieldError
    from field.scan import scan as run

    progress = _progress()
    progress.disable = quiet
    try:
        with progress:
            report = run(case_dir, rules=rules, yara_rules=yara_rules, indicators=indicators,
                         workers=workers or os.cpu_count() or 1,
                         cache_dir=None if no_cache else (cache_dir or DEFAULT_CACHE), progress=progress)
    except (FieldError, OSError) as exc:
        raise _fail(exc) from exc
    for note in report.notes:
        typer.echo(f"soc field: {printable(note)}", err=True)
    typer.echo(f"{len(report.detections)} detections over {report.events} events; timeline in "
               f"{case_dir / 'timeline.jsonl'} and timeline.csv")


def note(case_dir: Annotated[Path, typer.Argument(help="the case folder")],
         text: Annotated[str, typer.Argument(help="the note")]) -> None:
    """Append a timestamped note of the responder's to the case."""
    from field.case import add_note
    from field.errors import FieldError

    try:
        entry = add_note(case_dir, text)
    except (FieldError, OSError) as exc:
        raise _fail(exc) from exc
    typer.echo(f"note {entry['time']}")


def seal(case_dir: Annotated[Path, typer.Argument(help="the case folder")], key: KeyOption = None) -> None:
    """Write manifest.json (every file, its size and SHA-256) and manifest.sig (Ed25519 over the manifest)."""
    from field import keys
    from field.errors import FieldError
    from field.manifest import seal as run

    try:
        if not (key or keys.default_key_path()).exists():
            raise FieldError(f"no kit key at {key or keys.default_key_path()}: give the case's key with --key")
        private, _ = keys.load_or_create(key, case_dir)
        manifest = run(case_dir, private)
    except (FieldError, OSError) as exc:
        raise _fail(exc) from exc
    typer.echo(f"sealed {len(manifest['files'])} files; key id {manifest['key_id']}")


def verify(case_dir: Annotated[Path, typer.Argument(help="the case folder")],
           public_key: Annotated[Optional[str], typer.Option("--public-key", help="the kit's public key (base64, "
                                                             "as `soc field new` and the manifest show it) to "
                                                             "require; without it the manifest's own key is used "
                                                             "and its id printed")] = None) -> None:
    """Check the signature and re-hash every file: each changed, missing or added file is reported; exit 1 when
    anything differs or the signature is wrong, 2 when the manifest is refused."""
    from field.case import printable
    from field.errors import FieldError
    from field.manifest import verify as run

    try:
        result, manifest = run(case_dir, public_key)
    except (FieldError, OSError) as exc:
        raise _fail(exc) from exc
    typer.echo(f"signature: {'valid' if result.signature_ok else 'INVALID'} (key id {result.key_id}"
               + ("" if result.trusted is None else ", the key given" if result.trusted else ", NOT the key given")
               + ")")
    for label, names in (("changed", result.changed), ("missing", result.missing), ("added", result.added)):
        for name in names:
            typer.echo(f"{label}: {printable(name)}")
    typer.echo(f"{result.checked} files checked: " + ("OK" if result.ok else "NOT OK"))
    if not result.ok:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    field_app = typer.Typer(help="Field kit: collect, scan and seal a case on a responder's laptop, offline.",
                            no_args_is_help=True)
    app.add_typer(field_app, name="field")
    for name, command in (("new", new), ("collect", collect), ("scan", scan), ("note", note), ("seal", seal),
                          ("verify", verify)):
        field_app.command(name)(command)
