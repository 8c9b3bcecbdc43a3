"""`soc field …`: the field kit's commands (new, collect, scan, note, seal, verify: no network in any of them; and
forward, which sends a sealed case to the provincial SOC)."""

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


def _progress(in_bytes: bool = False):
    from rich.console import Console
    from rich.progress import (BarColumn, DownloadColumn, Progress, TaskProgressColumn, TextColumn,
                               TimeElapsedColumn, TransferSpeedColumn)

    extra = (DownloadColumn(binary_units=True), TransferSpeedColumn()) if in_bytes else ()
    return Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), *extra, TimeElapsedColumn(),
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


def forward(case_dir: Annotated[Path, typer.Argument(help="the sealed case folder")],
            to: Annotated[str, typer.Option("--to", help="the provincial SOC's API, e.g. https://province:8000")],
            key_env: Annotated[str, typer.Option("--key-env", help="environment variable holding an analyst API "
                                                 "key")] = "SOC_API_KEY",
            key_file: Annotated[Optional[Path], typer.Option("--key-file", help="a file (0600, outside the case) "
                                                             "holding the API key, instead of --key-env")] = None,
            ca_file: Annotated[Optional[Path], typer.Option("--ca-file", help="the CA certificate(s) the province's "
                                                            "TLS certificate is checked against (PEM)")] = None,
            client_cert: Annotated[Optional[Path], typer.Option("--client-cert", help="this laptop's TLS client "
                                                                "certificate (PEM), when the province asks for "
                                                                "one")] = None,
            client_key: Annotated[Optional[Path], typer.Option("--client-key", help="its private key (PEM)")] = None,
            retry_seconds: Annotated[float, typer.Option("--retry-seconds", min=0, help="keep trying this long "
                                                         "without progress while the province cannot be reached or "
                                                         "answers 5xx / 429")] = 3600.0,
            limit_rate: Annotated[Optional[float], typer.Option("--limit-rate", min=1, help="send at most this "
                                                                "many KiB a second (a thin link the agency "
                                                                "shares)")] = None,
            state_file: Annotated[Optional[Path], typer.Option("--state-file", help="where to keep what the "
                                                               "province acknowledged (default: "
                                                               "$XDG_STATE_HOME/soc-suite/field/forward/<case "
                                                               "id>.json); never inside the case")] = None,
            quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False) -> None:
    """Send a sealed case to the provincial SOC, where it becomes an incident of its agency; resumable, and kept
    trying while the province cannot be reached. Exit 0 when the province verified the case (every file as sealed,
    signature valid, kit key trusted), 1 when it reported anything, 2 when refused, 3 when it gave up."""
    import httpx

    from field import forward as sending
    from field.case import printable
    from field.errors import FieldError

    progress = _progress(in_bytes=True)
    progress.disable = quiet

    def say(message: str) -> None:
        progress.console.print(f"soc field: {printable(message)}", markup=False, highlight=False, soft_wrap=True)

    try:
        link = sending.Link(url=to, api_key=sending.api_key(key_env, key_file, case_dir),
                            verify=sending.tls(ca_file, client_cert, client_key), retry_seconds=retry_seconds,
                            limit_rate=limit_rate * 1024 if limit_rate else None, client_cert=client_cert is not None)
        if to.startswith("http://") and not _loopback(to):
            say(f"{to} is plain HTTP: the API key and the evidence cross the network unencrypted")
        with progress:
            outcome = sending.forward(case_dir, link, state_file=state_file, progress=progress, say=say)
    except sending.GaveUp as exc:
        raise _fail(exc, 3) from exc
    except (FieldError, OSError, httpx.HTTPError) as exc:  # httpx: what is not a link problem (a bad URL...)
        raise _fail(exc) from exc
    for name, why in outcome.refused:
        typer.echo(f"soc field: the province refused {printable(name)}: {printable(why)}", err=True)
    result, answer = outcome.verification, outcome.answer
    typer.echo(f"case {outcome.case_id} at {to}: {len(outcome.sent)} files sent ({outcome.sent_bytes} bytes), "
               f"{outcome.already} already there")
    typer.echo(f"signature: {'valid' if result.get('signature_valid') else 'INVALID'} (kit key "
               f"{printable(answer.get('kit_key_id'))}, {'trusted' if result.get('key_trusted') else 'NOT trusted'} "
               f"by the province)")
    for label in ("changed", "missing", "unexpected"):
        for name in result.get(label) or []:
            typer.echo(f"{label}: {printable(name)}")
    counts = result.get("counts") or {}
    typer.echo(f"province verification: {'OK' if result.get('ok') else 'NOT OK'} ({counts.get('ok', 0)} files ok); "
               f"incident {answer.get('incident_id')} of agency {printable(answer.get('agency'))}")
    if not outcome.ok:
        raise typer.Exit(1)


def _loopback(url: str) -> bool:
    import ipaddress
    from urllib.parse import urlsplit

    host = urlsplit(url).hostname or ""
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def register(app: typer.Typer) -> None:
    field_app = typer.Typer(help="Field kit: collect, scan and seal a case on a responder's laptop, offline; "
                                 "forward it to the provincial SOC once there is a link.",
                            no_args_is_help=True)
    app.add_typer(field_app, name="field")
    for name, command in (("new", new), ("collect", collect), ("scan", scan), ("note", note), ("seal", seal),
                          ("verify", verify), ("forward", forward)):
        field_app.command(name)(command)
