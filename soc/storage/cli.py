"""`soc store`: what the store keeps and for how long, retention, snapshots and restores, on either backend.

Long jobs (deleting expired data, a snapshot, a restore) show a progress bar on the terminal (stderr); results go to
stdout. A bad name, location or period is a clear error and exit code 2; a store that fails is exit code 1.
"""

from __future__ import annotations

import contextlib
import json
from typing import Annotated, Iterator, Optional

import typer

from soc.plugins import commands
from soc.storage import retention, snapshots
from soc.storage.base import StoreError

store_app = typer.Typer(help="The store: status, retention, snapshots and restore.", no_args_is_help=True)

ConfigOption = Annotated[Optional[str], typer.Option("--config", "-c", help="YAML configuration file")]
LocationOption = Annotated[Optional[str], typer.Option(
    help="snapshot folder instead of store.snapshots.location (engines: under the nodes' path.repo; SQLite: under "
         "data_dir, or absolute)")]
RepositoryOption = Annotated[Optional[str], typer.Option(
    help="the engine's snapshot repository name instead of store.snapshots.repository")]


def register(app: typer.Typer) -> None:
    app.add_typer(store_app, name="store")


def _fail(message: str, code: int = 1) -> None:
    typer.echo(f"soc: {message}", err=True)
    raise typer.Exit(code)


@contextlib.contextmanager
def _opened(config: str | None) -> Iterator[tuple]:
    context = commands()
    settings = context.settings(config)
    store = context.open_store(settings)
    try:
        yield settings, store
    except StoreError as exc:
        _fail(str(exc))
    finally:
        store.close()


@contextlib.contextmanager
def _progress() -> Iterator:
    """A progress callback (what, done, total) drawing one bar per stage on stderr."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    bars = Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                    TextColumn("{task.completed:,.0f}/{task.fields[shown_total]}"), TimeElapsedColumn(),
                    console=console)
    tasks: dict[str, int] = {}

    def update(what: str, done: float, total: float | None) -> None:
        if what not in tasks:
            tasks[what] = bars.add_task(what[:60], total=total, shown_total="?")
        bars.update(tasks[what], completed=done, total=total,
                    shown_total=f"{total:,.0f}" if total is not None else "?")

    with bars:
        yield update


def _target(settings, store, location: str | None, repository: str | None):
    try:
        return snapshots.target(settings.store.snapshots, settings.data_dir, sqlite=store.name == "sqlite",
                                location=location, repository=repository)
    except StoreError as exc:
        _fail(str(exc), 2)


@store_app.command("status")
def status(config: ConfigOption = None,
           as_json: Annotated[bool, typer.Option("--json", help="machine-readable")] = False) -> None:
    """What the store holds per data class, how long each is kept, the engine's lifecycle policy, the snapshots."""
    with _opened(config) as (settings, store):
        keep = settings.store.retention
        where = _target(settings, store, None, None)
        report = {
            "store": store.health(),
            "data": store.data_status(),
            "retention": {name: getattr(keep, name) for name in retention.DATA_CLASSES},
            "retention_schedule": {
                "every_minutes": keep.every_minutes,
                "scheduled": "soc.storage.schedule" in settings.extensions,
            },
            "lifecycle": store.lifecycle(retention.periods(keep)["events"], install=False),
            "snapshots": {"repository": where.repository if store.name != "sqlite" else None,
                          "location": where.location, "every_hours": settings.store.snapshots.every_hours,
                          "keep": settings.store.snapshots.keep, "taken": store.list_snapshots(where)},
        }
    if as_json:
        typer.echo(json.dumps(report, indent=2, default=str))
        return
    health = report["store"]
    typer.echo(f"store: {health.get('backend')} {health.get('status')}"
               + (f", cluster {health['cluster']}, {health.get('nodes')} node(s)" if health.get("cluster") else "")
               + (f", {health['path']}" if health.get("path") else ""))
    schedule = report["retention_schedule"]
    if not schedule["scheduled"]:
        typer.echo("retention: NOT scheduled (soc.storage.schedule is not among the configured extensions): only "
                   "`soc store retention --apply` deletes")
    elif schedule["every_minutes"]:
        typer.echo(f"retention: applied by the suite every {schedule['every_minutes']:g} minutes")
    else:
        typer.echo("retention: store.retention.every_minutes is null: only `soc store retention --apply` deletes")
    typer.echo(f"  {'data class':<13} {'kept':<8} {'count':>12}  {'oldest':<26} where")
    for name in retention.DATA_CLASSES:
        data = report["data"].get(name, {})
        typer.echo(f"  {name:<13} {report['retention'][name] or 'forever':<8} {data.get('count', 0):>12,}  "
                   f"{str(data.get('oldest') or '-'):<26} {data.get('where', '')}")
    life = report["lifecycle"]
    if life.get("available"):
        typer.echo(f"lifecycle policy ({life['engine']}): {life['policy']} "
                   + (f"installed, deletes an event index at age {life.get('delete_index_after')}"
                      + (f", {life['managed_indices']} indices managed" if "managed_indices" in life else "")
                      if life.get("installed") else "not installed (the suite installs it when it starts)"))
    else:
        typer.echo(f"lifecycle policy: none ({life.get('note', life.get('engine'))})")
    snaps = report["snapshots"]
    every = snaps["every_hours"]
    typer.echo(f"snapshots: {len(snaps['taken'])} at "
               + (f"repository {snaps['repository']} ({snaps['location']})" if snaps["repository"]
                  else snaps["location"])
               + (f"; scheduled every {every:g} h, the newest {snaps['keep']} kept" if every
                  else "; not scheduled (store.snapshots.every_hours)"))
    for snap in snaps["taken"][-10:]:
        typer.echo(f"  {snap['name']:<32} {snap.get('state')}  {snap.get('started')}  {snap.get('kind')}")


@store_app.command("retention")
def retention_command(
    apply: Annotated[bool, typer.Option("--apply", help="delete; without it, only count what would go")] = False,
    only: Annotated[Optional[list[str]], typer.Option("--only", help="this data class only (repeatable)")] = None,
    config: ConfigOption = None,
) -> None:
    """Delete (with --apply) what each data class holds beyond its period; without --apply, say what would go.
    With --apply the engine's lifecycle policy is installed or updated too."""
    unknown = [name for name in only or () if name not in retention.DATA_CLASSES]
    if unknown:
        _fail(f"unknown data class {', '.join(unknown)}: choose from {', '.join(retention.DATA_CLASSES)}", 2)
    with _opened(config) as (settings, store):
        keep = settings.store.retention
        with _progress() as progress:
            report = retention.apply(store, keep, dry_run=not apply, only=tuple(only) if only else None,
                                     progress=progress)
        life = (store.lifecycle(retention.periods(keep)["events"], install=True)
                if apply and keep.lifecycle_policies and not only else None)
    failed = False
    for name, entry in report.items():
        if entry.get("period") is None:
            typer.echo(f"{name}: kept forever")
        elif "error" in entry:
            failed = True
            typer.echo(f"{name}: FAILED: {entry['error']}")
        elif apply:
            typer.echo(f"{name}: {entry['deleted']:,} deleted (older than {entry['cutoff']}, period {entry['period']})")
        else:
            typer.echo(f"{name}: {entry['would_delete']:,} would be deleted (older than {entry['cutoff']}, "
                       f"period {entry['period']}); --apply deletes")
    if life is not None and life.get("available"):
        typer.echo(f"lifecycle policy {life['policy']} ({life['engine']}): deletes an event index at age "
                   f"{life.get('delete_index_after')}")
    if failed:
        raise typer.Exit(1)


@store_app.command("snapshot")
def snapshot_command(
    name: Annotated[Optional[str], typer.Option(help="the snapshot's name (default manual-<UTC time>)")] = None,
    location: LocationOption = None,
    repository: RepositoryOption = None,
    config: ConfigOption = None,
) -> None:
    """Back up the whole store: an engine snapshot of the suite's indices, or a copy of the SQLite database."""
    try:
        name = snapshots.check_name(name) if name is not None else snapshots.new_name("manual")
    except StoreError as exc:
        _fail(str(exc), 2)
    with _opened(config) as (settings, store):
        where = _target(settings, store, location, repository)
        with _progress() as progress:
            record = store.snapshot(where, name, progress=progress)
    typer.echo(f"snapshot {record['name']}: {record['state']}"
               + (f", {len(record['indices'])} indices" if "indices" in record else "")
               + (f", {record['bytes']:,} bytes at {record['file']}" if "file" in record else ""))


@store_app.command("snapshots")
def snapshots_command(location: LocationOption = None, repository: RepositoryOption = None,
                      config: ConfigOption = None) -> None:
    """List this store's snapshots."""
    with _opened(config) as (settings, store):
        where = _target(settings, store, location, repository)
        found = store.list_snapshots(where)
    if not found:
        typer.echo(f"no snapshots at {where.location}")
    for snap in found:
        typer.echo(f"{snap['name']:<32} {snap.get('state')}  {snap.get('started')}  {snap.get('kind')}"
                   + (f"  {len(snap['indices'])} indices" if "indices" in snap else "")
                   + (f"  {snap['bytes']:,} bytes" if "bytes" in snap else ""))


@store_app.command("restore")
def restore_command(
    name: Annotated[str, typer.Argument(help="the snapshot to restore (soc store snapshots lists them)")],
    replace: Annotated[bool, typer.Option(
        "--replace", help="make the store exactly the snapshot: what was written or changed since is LOST")] = False,
    location: LocationOption = None,
    repository: RepositoryOption = None,
    config: ConfigOption = None,
) -> None:
    """Bring back what the snapshot holds and the store lacks (deleted indices, rows, documents); what is there
    now stays. With --replace the store becomes the snapshot (stop the suite first)."""
    try:
        snapshots.check_name(name, scheduled=True)
    except StoreError as exc:
        _fail(str(exc), 2)
    with _opened(config) as (settings, store):
        where = _target(settings, store, location, repository)
        with _progress() as progress:
            result = store.restore(where, name, replace=replace, progress=progress)
    if result.get("replaced"):
        typer.echo(f"restored {name}: the store is now the snapshot")
        return
    for index in result.get("deleted_indices", []):
        typer.echo(f"deleted {index} (not in the snapshot)")
    for index in result.get("restored_indices", []):
        typer.echo(f"restored index {index}")
    for where_to, count in {**result.get("merged", {}), **result.get("restored_rows", {})}.items():
        typer.echo(f"{where_to}: {count:,} missing documents brought back")
