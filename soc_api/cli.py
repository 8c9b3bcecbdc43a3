"""`soc users …` (users, their console passwords and their API keys), `soc taxii pull` (the national centre's collections into the indicator
store), `soc indicators import` (a STIX 2.1 bundle file) and `soc posture push` (one signed push now)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Annotated, Optional

import typer

ConfigOption = Annotated[Optional[str], typer.Option("--config", "-c", help="YAML configuration file")]


def register(app: typer.Typer) -> None:
    users = typer.Typer(help="Users of the console and the API: passwords, keys (a key is shown once).",
                        no_args_is_help=True)
    users.command("create")(create_user)
    users.command("password")(set_password)
    users.command("unlock")(unlock_user)
    users.command("list")(list_users)
    users.command("disable")(disable_user)
    users.command("enable")(enable_user)
    users.command("key")(new_key)
    app.add_typer(users, name="users")
    taxii = typer.Typer(help="TAXII 2.1 indicator sharing.", no_args_is_help=True)
    taxii.command("pull")(taxii_pull)
    app.add_typer(taxii, name="taxii")
    indicators = typer.Typer(help="Indicators of compromise.", no_args_is_help=True)
    indicators.command("import")(import_indicators)
    app.add_typer(indicators, name="indicators")
    posture = typer.Typer(help="Posture for the national centre.", no_args_is_help=True)
    posture.command("push")(posture_push)
    app.add_typer(posture, name="posture")


def _open(config: str | None):
    from soc.plugins import commands

    settings = commands().settings(config)
    return settings, commands().open_store(settings)


def _api_settings(settings):
    return settings.soc_api


PasswordPrompt = Annotated[bool, typer.Option("--password-prompt", help="ask for a console password (twice, hidden)")]
PasswordStdin = Annotated[bool, typer.Option("--password-stdin", help="read the console password from the first line "
                                                                      "of standard input (for scripts)")]


def _read_password(user_id: str, from_stdin: bool, settings) -> str:
    """A new password, from standard input or asked twice without echo; checked against the rules before use."""
    import sys

    from soc_api.console.auth import PasswordError, check_password_rules

    rules = settings.soc_api.console.passwords
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        typer.echo(f"A console password for {user_id}: at least {rules.min_length} characters "
                   "(a few words are easiest to remember).", err=True)
        password = typer.prompt("Password", hide_input=True, confirmation_prompt="Again", err=True)
    try:
        check_password_rules(user_id, password, rules)
    except PasswordError as exc:
        typer.echo(f"soc: {exc}", err=True)
        raise typer.Exit(2) from exc
    return password


def create_user(
    user_id: Annotated[str, typer.Argument(help="e.g. lan.nguyen")],
    role: Annotated[str, typer.Option(help="admin, analyst, network_admin, agency or national_centre")],
    agency: Annotated[Optional[str], typer.Option(help="the agency of an agency user")] = None,
    name: Annotated[str, typer.Option(help="the person's name")] = "",
    password_prompt: PasswordPrompt = False,
    password_stdin: PasswordStdin = False,
    config: ConfigOption = None,
) -> None:
    """Create a user; with --password-prompt (or --password-stdin) the user can sign in to the console at once
    (else later: `soc users password ID`; `soc users key ID` makes an API key)."""
    from inventory.lookup import Inventory
    from soc_api.console.auth import PasswordError, set_password as store_password
    from soc_api.keys import KeyCreationError, create_user as make
    from tiers.agencies import stored_agencies

    from soc_api.keys import USERS

    settings, store = _open(config)
    try:
        if store.get_document(USERS, user_id) is not None:  # before asking for a password
            raise KeyCreationError(f"user {user_id!r} exists already")
        password = _read_password(user_id, password_stdin, settings) if password_prompt or password_stdin else None
        record = make(store, user_id, role=role, agency=agency, name=name,
                      known_agencies=set(Inventory.load(settings.inventory.path).agencies)
                      | {a.id for a in stored_agencies(store)}, created_by="cli")
        if password is not None:
            store_password(store, user_id, password, settings.soc_api.console.passwords, by="cli")
    except (KeyCreationError, PasswordError) as exc:
        typer.echo(f"soc: {exc}", err=True)
        raise typer.Exit(2) from exc
    finally:
        store.close()
    typer.echo(f"created user {record['id']} ({record['role']}{', agency ' + agency if agency else ''})"
               f"{'; console password set' if password is not None else ''}")


def set_password(
    user_id: Annotated[str, typer.Argument(help="the user")],
    password_stdin: PasswordStdin = False,
    config: ConfigOption = None,
) -> None:
    """Set a user's console password (asked twice, hidden); every console session of the user ends."""
    from soc_api.console.auth import PasswordError, set_password as store_password

    settings, store = _open(config)
    try:
        password = _read_password(user_id, password_stdin, settings)
        store_password(store, user_id, password, settings.soc_api.console.passwords, by="cli")
    except PasswordError as exc:
        typer.echo(f"soc: {exc}", err=True)
        raise typer.Exit(2 if "no user" not in str(exc) else 1) from exc
    finally:
        store.close()
    typer.echo(f"console password set for {user_id}")


def unlock_user(user_id: str, config: ConfigOption = None) -> None:
    """Clear a user name's failed console sign-ins (after repeated failures it is locked for a while)."""
    from soc_api.console.auth import unlock

    _, store = _open(config)
    try:
        cleared = unlock(store, user_id)
    finally:
        store.close()
    typer.echo(f"{'unlocked' if cleared else 'no failed sign-ins recorded for'} {user_id}")


def list_users(config: ConfigOption = None) -> None:
    """List users."""
    from soc_api.keys import list_users as every

    _, store = _open(config)
    try:
        for u in every(store):
            state = "disabled" if u.get("disabled") else "active"
            typer.echo(f"{u['id']:<24} {u['role']:<15} {u.get('agency') or '-':<12} {state:<8} {u.get('name', '')}")
    finally:
        store.close()


def _set_disabled(user_id: str, disabled: bool, config: str | None) -> None:
    from soc_api.keys import set_user_disabled

    _, store = _open(config)
    try:
        if set_user_disabled(store, user_id, disabled) is None:
            typer.echo(f"soc: no user {user_id}", err=True)
            raise typer.Exit(1)
    finally:
        store.close()
    typer.echo(f"{'disabled' if disabled else 'enabled'} {user_id}")


def disable_user(user_id: str, config: ConfigOption = None) -> None:
    """Disable a user: every key of the user stops working, and the console signs the user out."""
    _set_disabled(user_id, True, config)


def enable_user(user_id: str, config: ConfigOption = None) -> None:
    """Enable a disabled user again."""
    _set_disabled(user_id, False, config)


def new_key(
    user_id: str,
    expires_in_days: Annotated[float, typer.Option(help="days until the key expires")] = 90,
    name: Annotated[str, typer.Option(help="what the key is for")] = "",
    config: ConfigOption = None,
) -> None:
    """Make an API key for a user; it is printed once and never shown again."""
    from soc_api.keys import KeyCreationError, create_user_key

    _, store = _open(config)
    try:
        key, record = create_user_key(store, user_id, name=name, expires_in_days=expires_in_days)
    except KeyCreationError as exc:
        typer.echo(f"soc: {exc}", err=True)
        raise typer.Exit(2) from exc
    finally:
        store.close()
    typer.echo(key)
    typer.echo(f"(key id {record['id']} for {user_id}, expires {record['expires']}; it is not shown again)", err=True)


def taxii_pull(
    source: Annotated[Optional[str], typer.Option(help="one configured source by name (default: all)")] = None,
    config: ConfigOption = None,
) -> None:
    """Pull the configured TAXII collections (soc_api.taxii.pull) into the indicator store, from where each stopped."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from detections.indicators.store import IndicatorService
    from soc_api.taxii.client import pull

    settings, store = _open(config)
    api = _api_settings(settings)
    sources = [s for s in api.taxii.pull if source is None or s.name == source]
    if not sources:
        store.close()
        typer.echo(f"soc: no TAXII pull source {'named ' + source if source else 'configured'} "
                   f"(soc_api.taxii.pull)", err=True)
        raise typer.Exit(2)
    failed = False
    try:
        service = IndicatorService(store)
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn()) as bar:
            for s in sources:
                task = bar.add_task(f"{s.name}: connecting", total=None)

                def show(result, task=task, name=s.name):
                    bar.update(task, description=f"{name}: page {result.pages}, {result.objects} objects, "
                                                 f"{result.indicators} indicators, {result.skipped} skipped")

                try:
                    result = pull(store, service, s, state_collection=api.taxii.state_collection, progress=show)
                    show(result)
                except Exception as exc:  # one source down must not stop the others
                    failed = True
                    bar.update(task, description=f"{s.name}: FAILED: {exc}")
                    continue
                for reason in result.reasons[:5]:
                    typer.echo(f"  skipped {reason}", err=True)
    finally:
        store.close()
    raise typer.Exit(1 if failed else 0)


def import_indicators(
    path: Annotated[Path, typer.Argument(help="a STIX 2.1 bundle (JSON)")],
    source: Annotated[str, typer.Option(help="where the indicators come from")] = "import",
    tlp: Annotated[str, typer.Option(help="TLP for indicators without a marking")] = "amber",
    config: ConfigOption = None,
) -> None:
    """Import the indicators of a STIX 2.1 bundle; the others are reported with the reason."""
    from rich.progress import track

    from detections.indicators.model import IndicatorError
    from detections.indicators.stix import indicators_from_stix
    from detections.indicators.store import IndicatorService

    try:
        bundle = json.loads(path.read_text(encoding="utf-8"))
        objects = bundle["objects"] if isinstance(bundle, dict) else None
        if not isinstance(objects, list):
            raise ValueError("not a STIX bundle (no objects list)")
    except (OSError, ValueError, KeyError) as exc:
        typer.echo(f"soc: {path}: {exc}", err=True)
        raise typer.Exit(2) from exc
    _, store = _open(config)
    docs, skipped = [], 0
    try:
        for obj in track(objects, description=f"reading {path.name}"):
            if obj.get("type") != "indicator":
                continue
            try:
                docs.append(indicators_from_stix(obj, source=source, default_tlp=tlp, created_by="cli"))
            except IndicatorError as exc:
                skipped += 1
                typer.echo(f"  skipped {obj.get('id')}: {exc}", err=True)
        kept = IndicatorService(store).upsert(docs)
    finally:
        store.close()
    typer.echo(f"{len(kept)} indicators imported, {skipped} skipped")


def posture_push(config: ConfigOption = None) -> None:
    """Build the posture document and push it once to soc_api.posture.push_url (signed; a few attempts)."""
    import asyncio

    import httpx

    from detections.sigma.loader import load_rules
    from detections.alerts import AlertManager
    from inventory.lookup import Inventory
    from soc_api.posture_push import push_once

    settings, store = _open(config)
    api = _api_settings(settings)
    if not api.posture.push_url:
        store.close()
        typer.echo("soc: soc_api.posture.push_url is not configured", err=True)
        raise typer.Exit(2)
    suite = SimpleNamespace(settings=settings, store=store, inventory=Inventory.load(settings.inventory.path),
                            ruleset=load_rules(settings.detections.sigma_rule_dirs), alerts=AlertManager(store),
                            service=lambda name: None)

    async def go():
        async with httpx.AsyncClient() as client:
            return await push_once(suite, client, max_attempts=5)

    try:
        record = asyncio.run(go())
    except RuntimeError as exc:
        typer.echo(f"soc: {exc}", err=True)
        raise typer.Exit(2) from exc
    finally:
        store.close()
    typer.echo(f"posture push {record['id']}: {record['status']} after {record['attempts']} attempt(s)"
               f"{'; ' + record['last_error'] if record['status'] != 'accepted' else ''}")
    raise typer.Exit(0 if record["status"] == "accepted" else 1)
