"""`soc playbook ...`: list and check the library, run (or dry-run) a playbook, approve, reject, roll back, search
runs, show blocks, remove expired blocks while the suite is down."""

from __future__ import annotations

import getpass
import json
import os
import threading
from typing import Annotated, Optional

import typer

from playbooks.records import LIVE_BLOCK_STATES, RunState, StepStatus

playbook_app = typer.Typer(help="Playbooks: containment through network devices.", no_args_is_help=True)

ConfigOption = Annotated[Optional[str], typer.Option("--config", "-c", help="YAML configuration file")]
KeyOption = Annotated[Optional[str], typer.Option("--key", help="an API key saying who you are (default "
                                                  "$SOC_API_KEY); approving needs the network_admin role")]


def register(app: typer.Typer) -> None:
    app.add_typer(playbook_app, name="playbook")


class _Context:
    def __init__(self, config: str | None, *, need_store: bool = True):
        from soc.plugins import commands

        self.settings = commands().settings(config)
        self.store = commands().open_store(self.settings) if need_store else None
        self._runner = None

    @property
    def runner(self):
        if self._runner is None:
            from inventory.lookup import Inventory, InventoryError
            from playbooks.loader import load_library
            from playbooks.service import PlaybookService
            from playbooks.settings import load_playbook_settings

            try:
                pb_settings = load_playbook_settings(self.settings)
                inventory = Inventory.load(self.settings.inventory.path)
            except InventoryError as exc:
                _fail(str(exc), 2)
            library = load_library(pb_settings.library_dirs)
            for error in library.errors:
                typer.echo(f"soc: playbook not loaded: {error}", err=True)
            # Through the service, so a device presenting another host key raises the same alert as in the suite.
            self._service = PlaybookService(self.store, inventory, pb_settings, data_dir=self.settings.data_dir,
                                            library=library)
            self._runner = self._service.runner
        return self._runner

    def close(self) -> None:
        if self._runner is not None:
            self._service.close()
        if self.store is not None:
            self.store.close()


def _fail(message: str, code: int = 1):
    typer.echo(f"soc: {message}", err=True)
    raise typer.Exit(code)


def _actor(ctx: _Context, key: str | None):
    from playbooks.runner import Actor
    from soc.plugins import commands

    key = key or os.environ.get("SOC_API_KEY")
    if not key:
        return Actor("cli", getpass.getuser())
    principal = commands().verify_key(ctx.store, key)
    if principal is None:
        _fail("the API key is unknown, expired or revoked", 2)
    return Actor("cli", principal.name, principal.role, principal.key_id)


def _parse_sets(pairs: list[str] | None) -> dict[str, str]:
    values = {}
    for pair in pairs or []:
        if "=" not in pair:
            _fail(f"--set takes key=value, not {pair!r}", 2)
        key, value = pair.split("=", 1)
        values[key.strip()] = value.strip()
    return values


def print_plan(plan: dict) -> None:
    typer.echo(f"playbook {plan['playbook']} ({plan['playbook_title']}) - DRY RUN, nothing is sent")
    typer.echo(f"inputs: {json.dumps(plan['inputs'], ensure_ascii=False)}")
    impact = plan["impact"]
    typer.echo(f"impact: {impact['level']}" + (f" ({'; '.join(impact['reasons'])})" if impact["reasons"] else ""))
    reasons = plan["approval"].get("reasons") or []
    typer.echo("approval: " + ("a network admin must approve" if plan["approval"]["required"] else
                               "runs without approval") + (f" ({'; '.join(reasons)})" if reasons else ""))
    for step in plan["steps"]:
        typer.echo(f"\nstep {step['id']} [{step['action']}]: {step.get('description', '')}")
        if step["status"] == StepStatus.SKIPPED:
            typer.echo(f"  skipped: {step['message']}")
        for change in step.get("plan", []):
            typer.echo(f"  device {change['device']} ({change['driver']}): {change['description']}")
            for command in change["commands"]:
                typer.echo(f"    > {command}")
            if change["rollback"]:
                typer.echo("    rollback:")
                for command in change["rollback"]:
                    typer.echo(f"    < {command}")


def print_run(run: dict, *, transcript: bool = False) -> None:
    who = run.get("started_by", {})
    typer.echo(f"run {run['id']}  {run['state']}  playbook {run['playbook']}  agency {run.get('agency') or '-'}  "
               f"alert {run.get('alert_id') or '-'}")
    typer.echo(f"  started by {who.get('kind')} {who.get('name')}" +
               (f" ({who['role']})" if who.get("role") else "") + f" at {run.get('created')}")
    approval = run.get("approval", {})
    if approval.get("approved_by"):
        typer.echo(f"  approved by {approval['approved_by'].get('name')} at {approval.get('approved_at')}")
    if approval.get("rejected_by"):
        typer.echo(f"  rejected by {approval['rejected_by'].get('name')}: {approval.get('reason', '')}")
    for step in run.get("steps", []):
        typer.echo(f"  step {step['id']} [{step['action']}] {step['status']}: {step.get('message', '')}")
        for entry in step.get("devices", []):
            typer.echo(f"    {entry['device']}: {entry['status']} ({entry.get('duration_ms', '?')} ms)")
            if transcript:
                for x in entry.get("exchanges", []):
                    typer.echo(f"      [{x['phase']}] {x['command']}  ({x['duration_ms']} ms)")
                    for line in (x["answer"] or "").strip().splitlines()[:20]:
                        typer.echo(f"          {line}")
    if run.get("result"):
        typer.echo(f"  result: {run['result'].get('message')}")


def _execute_with_progress(ctx: _Context, run: dict) -> dict:
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn

    result: dict = {}

    def work() -> None:
        try:
            result["run"] = ctx.runner.execute(run["id"])
        except Exception as exc:  # shown below, after the progress bar closes
            result["error"] = exc

    worker = threading.Thread(target=work, daemon=True)
    steps = [s for s in run["steps"] if s["status"] != StepStatus.SKIPPED]
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/"
                                                                                            "{task.total} steps"),
                  transient=False) as progress:
        task = progress.add_task(f"run {run['id'][:12]} ({run['playbook']})", total=len(steps))
        worker.start()
        while worker.is_alive():
            worker.join(0.2)
            current = ctx.runner.records.get_run(run["id"]) or run
            done = [s for s in current["steps"] if s["status"] in (StepStatus.DONE, StepStatus.FAILED)]
            running = next((s["id"] for s in current["steps"] if s["status"] == StepStatus.RUNNING), None)
            progress.update(task, completed=min(len(done), len(steps)),
                            description=f"run {run['id'][:12]}" + (f": {running}" if running else ""))
        progress.update(task, completed=len(steps))
    if "error" in result:
        _fail(str(result["error"]))
    return result["run"]


@playbook_app.command("list")
def list_playbooks(config: ConfigOption = None) -> None:
    """The library: each playbook, its triggers and steps; files that failed to load, with line and reason."""
    ctx = _Context(config, need_store=False)
    from playbooks.loader import load_library
    from playbooks.settings import load_playbook_settings

    library = load_library(load_playbook_settings(ctx.settings).library_dirs)
    for playbook in library.playbooks.values():
        rules = sorted({r for t in playbook.triggers for r in t.rules})
        typer.echo(f"{playbook.name:<28} {playbook.title}  steps: {', '.join(s.action for s in playbook.steps)}"
                   f"{'  triggers: ' + ', '.join(rules) if rules else ''}")
    for error in library.errors:
        typer.echo(f"FAILED {error}")
    raise typer.Exit(1 if library.errors else 0)


@playbook_app.command("check")
def check(paths: Annotated[Optional[list[str]], typer.Argument(help="files or folders (default: the library)")]
          = None, config: ConfigOption = None) -> None:
    """Validate playbooks: file, line and reason for each error."""
    from pathlib import Path

    from playbooks.loader import load_library, parse_playbook
    from playbooks.settings import load_playbook_settings

    errors = ok = 0
    if not paths:
        ctx = _Context(config, need_store=False)
        library = load_library(load_playbook_settings(ctx.settings).library_dirs)
        ok, problems = len(library.playbooks), library.errors
    else:
        problems = []
        for raw in paths:
            path = Path(raw)
            if path.is_dir():
                library = load_library([str(path)])
                ok += len(library.playbooks)
                problems.extend(library.errors)
                continue
            _, error = parse_playbook(path.read_text(encoding="utf-8"), str(path))
            if error:
                problems.append(error)
            else:
                ok += 1
    for error in problems:
        typer.echo(str(error))
        errors += 1
    typer.echo(f"{ok} valid, {errors} invalid", err=True)
    raise typer.Exit(1 if errors else 0)


@playbook_app.command("run")
def run_playbook(
    name: str,
    alert: Annotated[Optional[str], typer.Option("--alert", help="take the inputs from this alert")] = None,
    sets: Annotated[Optional[list[str]], typer.Option("--set", help="key=value, an input (repeatable)")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print, per device, the exact commands and what "
                                                            "they would change; send nothing")] = False,
    key: KeyOption = None,
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Run a playbook now (or plan it with --dry-run). High-impact runs wait for a network admin's approval."""
    from playbooks.actions import PlanError
    from playbooks.context import InputError
    from playbooks.runner import RunError
    from playbooks.safety import SafetyRefusal

    ctx = _Context(config)
    try:
        overrides = _parse_sets(sets)
        if dry_run:
            plan = ctx.runner.plan(name, alert_id=alert, overrides=overrides)
            if as_json:
                typer.echo(json.dumps(plan, indent=2, ensure_ascii=False))
            else:
                print_plan(plan)
            return
        run = ctx.runner.create(name, actor=_actor(ctx, key), alert_id=alert, overrides=overrides)
        if run["state"] == RunState.PENDING_APPROVAL:
            typer.echo(f"run {run['id']} waits for a network admin's approval: "
                       f"{'; '.join(run['impact']['reasons']) or 'the playbook always asks'}")
            typer.echo(f"  soc playbook approve {run['id']} --key <network_admin key>")
            return
        run = _execute_with_progress(ctx, run)
        typer.echo(json.dumps(run, indent=2, ensure_ascii=False)) if as_json else print_run(run)
        raise typer.Exit(0 if run["state"] == RunState.SUCCEEDED else 1)
    except SafetyRefusal as exc:
        _fail(f"refused: {exc}" + (f" (run {exc.run_id} recorded)" if getattr(exc, "run_id", None) else ""))
    except (RunError, InputError, PlanError) as exc:
        _fail(str(exc), 2)
    finally:
        ctx.close()


@playbook_app.command("approve")
def approve(run_id: str, key: KeyOption = None, config: ConfigOption = None) -> None:
    """Approve a run that waits (network_admin role), then run it."""
    from playbooks.runner import RunError

    ctx = _Context(config)
    try:
        run = ctx.runner.approve(run_id, _actor(ctx, key))
        run = _execute_with_progress(ctx, run)
        print_run(run)
        raise typer.Exit(0 if run["state"] == RunState.SUCCEEDED else 1)
    except PermissionError as exc:
        _fail(str(exc), 3)
    except RunError as exc:
        _fail(str(exc), 2)
    finally:
        ctx.close()


@playbook_app.command("reject")
def reject(run_id: str, reason: Annotated[str, typer.Option(help="why")] = "", key: KeyOption = None,
           config: ConfigOption = None) -> None:
    """Reject a run that waits for approval (network_admin role)."""
    from playbooks.runner import RunError

    ctx = _Context(config)
    try:
        print_run(ctx.runner.reject(run_id, _actor(ctx, key), reason))
    except PermissionError as exc:
        _fail(str(exc), 3)
    except RunError as exc:
        _fail(str(exc), 2)
    finally:
        ctx.close()


@playbook_app.command("rollback")
def rollback(run_id: str, key: KeyOption = None, config: ConfigOption = None) -> None:
    """Undo what a succeeded run changed on its devices (network_admin role)."""
    from playbooks.runner import RunError

    ctx = _Context(config)
    try:
        actor = _actor(ctx, key)
        if actor.role not in ("network_admin", "admin"):
            _fail("rolling back needs the network_admin role (--key)", 3)
        print_run(ctx.runner.rollback(run_id, actor))
    except RunError as exc:
        _fail(str(exc), 1)
    finally:
        ctx.close()


@playbook_app.command("runs")
def runs(
    state: Annotated[Optional[str], typer.Option(help=", ".join(RunState))] = None,
    playbook: Annotated[Optional[str], typer.Option()] = None,
    device: Annotated[Optional[str], typer.Option()] = None,
    agency: Annotated[Optional[str], typer.Option()] = None,
    since: Annotated[Optional[str], typer.Option(help="created at or after (ISO 8601)")] = None,
    until: Annotated[Optional[str], typer.Option(help="created before (ISO 8601)")] = None,
    limit: int = 50,
    config: ConfigOption = None,
) -> None:
    """Search runs, newest first."""
    from playbooks.records import Records, RunFilter

    ctx = _Context(config)
    try:
        found = Records(ctx.store).find_runs(RunFilter(state=state, playbook=playbook, device=device, agency=agency,
                                                       since=since, until=until, limit=limit))
        for run in found:
            typer.echo(f"{run['created']}  {run['id']}  {run['state']:<16} {run['playbook']:<24} "
                       f"{run.get('agency') or '-':<10} {','.join(run.get('devices', [])) or '-'}  "
                       f"{(run.get('result') or {}).get('message', '')[:80]}")
        typer.echo(f"{len(found)} run(s)", err=True)
    finally:
        ctx.close()


@playbook_app.command("show")
def show(run_id: str, config: ConfigOption = None, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """One run with its audit record: who started and approved it, every command and answer, timings."""
    from playbooks.records import Records

    ctx = _Context(config)
    try:
        run = Records(ctx.store).get_run(run_id)
        if run is None:
            _fail(f"no run {run_id}")
        typer.echo(json.dumps(run, indent=2, ensure_ascii=False)) if as_json else print_run(run, transcript=True)
    finally:
        ctx.close()


@playbook_app.command("blocks")
def blocks(all_states: Annotated[bool, typer.Option("--all", help="also removed ones")] = False,
           device: Annotated[Optional[str], typer.Option()] = None, config: ConfigOption = None) -> None:
    """Blocks and null routes the suite put in force, with their expiry."""
    from playbooks.records import Records

    ctx = _Context(config)
    try:
        states = None if all_states else LIVE_BLOCK_STATES
        for block in Records(ctx.store).find_blocks(state=states, device=device, limit=1000):
            typer.echo(f"{block['device']:<20} {block['kind']:<10} {block['target']:<20} {block['state']:<9} "
                       f"expires {block['expires_at']}  run {block['run_id']}"
                       f"{'  error: ' + block['last_error'] if block.get('last_error') else ''}")
    finally:
        ctx.close()


@playbook_app.command("expire")
def expire(config: ConfigOption = None) -> None:
    """Remove every block whose time is up now (the suite does this by itself while it runs)."""
    ctx = _Context(config)
    try:
        recovered = ctx.runner.recover()
        results = ctx.runner.expire_due()
        for result in results:
            typer.echo(("ok   " if result["ok"] else "FAIL ") + result["message"])
        typer.echo(f"{len(results)} expired block(s) handled; {len(recovered['interrupted'])} interrupted run(s) "
                   f"marked", err=True)
        raise typer.Exit(0 if all(r["ok"] for r in results) else 1)
    finally:
        ctx.close()

