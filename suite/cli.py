"""The `soc` command line: the suite's own commands (serve, demo, keys, config, dead letters), and every
package's commands, which it registers (a package's ``cli`` module has ``register(app)``) after providing them what
they need from the composition root (soc/plugins.py ``CommandContext``: settings, the store, a composed suite)."""

from __future__ import annotations

import logging
import signal
import sys
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from soc.plugins import CommandContext, provide_commands

if TYPE_CHECKING:
    from suite.settings import Settings

app = typer.Typer(help="SOC suite: collectors, detections, playbooks, API and reports.", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_enable=False)
keys_app = typer.Typer(help="API keys (shown once, stored hashed).", no_args_is_help=True)
config_app = typer.Typer(help="Configuration.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(config_app, name="config")

ConfigOption = Annotated[Optional[str], typer.Option("--config", "-c", help="YAML configuration file "
                                                     "(default: $SOC_CONFIG, ./soc.yaml, ./config/soc.yaml)")]


def _settings(config: str | None) -> "Settings":
    # Imported here: the configuration pulls in every package's settings, which `soc hunt` does not need.
    from suite.settings import load_settings
    from soc.errors import ConfigError

    try:
        settings = load_settings(config)
    except ConfigError as exc:
        typer.echo(f"soc: {exc}", err=True)
        raise typer.Exit(2) from exc
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request would drown the suite's own log
    logging.getLogger("opensearch").setLevel(logging.WARNING)
    logging.getLogger("elastic_transport").setLevel(logging.WARNING)
    return settings


def _open_store(settings: "Settings"):
    from soc.storage import StoreError, open_store

    try:
        return open_store(settings)
    except (StoreError, Exception) as exc:  # a store that cannot be reached is a clear error, not a traceback
        typer.echo(f"soc: cannot open the store {settings.store.url}: {exc}", err=True)
        raise typer.Exit(2) from exc


@app.command()
def serve(config: ConfigOption = None) -> None:
    """Run the suite: syslog listeners (UDP and TCP), the pipeline, detections and the API with /metrics."""
    import asyncio

    from suite.runtime import Suite

    settings = _settings(config)
    suite = Suite(settings, _open_store(settings))
    try:  # libuv's loop: less CPU per request and per syslog chunk than the pure-Python one
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, suite.request_stop)
    typer.echo(f"soc: configuration {settings.source}; store {settings.store.url}")
    rules = suite.ruleset
    typer.echo(f"soc: {rules.loaded} Sigma rules loaded, {rules.disabled} not selected, {rules.failed} failed; "
               f"rule pack {rules.version or 'none'}; {len(rules.exceptions)} rule exceptions; inventory "
               f"{len(suite.inventory.agencies)} agencies, {len(suite.inventory.assets)} assets")
    try:
        loop.run_until_complete(_serve_and_announce(suite, settings))
    finally:
        suite.close()
        loop.close()
    typer.echo("soc: stopped")


async def _serve_and_announce(suite, settings: "Settings") -> None:
    import asyncio

    task = asyncio.create_task(suite.serve())
    while not suite.ready.is_set():
        if task.done():
            task.result()
        await asyncio.sleep(0.05)
    b = suite.bound
    tls = f" tls://{settings.syslog.host}:{b['syslog_tls']}" if "syslog_tls" in b else ""
    typer.echo(f"soc: syslog udp://{settings.syslog.host}:{b.get('syslog_udp')} tcp://{settings.syslog.host}:"
               f"{b.get('syslog_tcp')}{tls}; API http://{settings.api.host}:{b.get('api')}/docs ; metrics /metrics")
    await task


@app.command()
def demo(
    config: ConfigOption = None,
    store: Annotated[Optional[str], typer.Option(help="run the demo on its own suite with this store, "
                                                      "e.g. opensearch://127.0.0.1:9250")] = None,
    timeout: Annotated[float, typer.Option(help="seconds to wait for the alerts")] = 60.0,
) -> None:
    """Play an SSH brute force then a successful login through the real path, and show the alerts raised."""
    from suite import demo as scenario
    from suite.runtime import Suite, SuiteThread

    settings = _settings(config)
    api_url = f"http://{scenario._client_host(settings.api.host)}:{settings.api.port}"
    runner = None
    if store is None and scenario.suite_answers(api_url):
        typer.echo(f"soc demo: using the running suite at {api_url}")
        syslog_host, syslog_port = scenario._client_host(settings.syslog.host), settings.syslog.tcp_port
    else:
        if store is not None:
            settings = settings.model_copy(update={"store": settings.store.model_copy(update={"url": store})})
        settings = settings.model_copy(update={
            "syslog": settings.syslog.model_copy(update={"host": "127.0.0.1", "udp_port": 0, "tcp_port": 0}),
            "api": settings.api.model_copy(update={"host": "127.0.0.1", "port": 0}),
        })
        typer.echo(f"soc demo: starting a suite of its own on {settings.store.url}")
        runner = SuiteThread(Suite(settings, _open_store(settings))).start()
        api_url = f"http://127.0.0.1:{runner.suite.bound['api']}"
        syslog_host, syslog_port = "127.0.0.1", runner.suite.bound["syslog_tcp"]
    try:
        result = scenario.play(settings, syslog_host=syslog_host, syslog_port=syslog_port, api_url=api_url,
                               timeout=timeout, progress=typer.echo)
    finally:
        if runner is not None:
            runner.stop()
    typer.echo(scenario.describe(result))
    raise typer.Exit(0 if result.ok else 1)


@keys_app.command("create")
def keys_create(
    role: Annotated[str, typer.Option(help="admin, analyst, network_admin, agency, national_centre or downstream "
                                           "(a lower tier's suite forwarding here: docs/tiers.md)")],
    agency: Annotated[Optional[str], typer.Option(help="the agency an agency or downstream key is bound to")] = None,
    name: Annotated[str, typer.Option(help="what the key is for")] = "",
    expires_days: Annotated[Optional[float], typer.Option(help="days until the key expires")] = None,
    config: ConfigOption = None,
) -> None:
    """Create an API key and print it once."""
    from inventory.lookup import Inventory
    from soc_api.keys import KeyCreationError, create_key
    from tiers.agencies import stored_agencies

    settings = _settings(config)
    store = _open_store(settings)
    try:
        # The inventory's agencies and those downstream suites forwarded (a city's communes: tiers/agencies.py).
        agencies = set(Inventory.load(settings.inventory.path).agencies) | {a.id for a in stored_agencies(store)}
        key, record = create_key(store, role, agency=agency, name=name, expires_in_days=expires_days,
                                 known_agencies=agencies)
    except KeyCreationError as exc:
        typer.echo(f"soc: {exc}", err=True)
        raise typer.Exit(2) from exc
    finally:
        store.close()
    typer.echo(key)
    typer.echo(f"(key id {record['id']}, role {role}{', agency ' + agency if agency else ''}; it is not shown again)",
               err=True)


@keys_app.command("list")
def keys_list(config: ConfigOption = None) -> None:
    """List API keys (never their secrets)."""
    settings = _settings(config)
    store = _open_store(settings)
    try:
        for record in store.list_api_keys():
            state = "revoked" if record.get("revoked") else "active"
            typer.echo(f"{record['id']}  {record['role']:<15} {record.get('agency') or '-':<12} {state:<8} "
                       f"expires={record.get('expires') or 'never'}  {record.get('name', '')}")
    finally:
        store.close()


@keys_app.command("revoke")
def keys_revoke(key_id: str, config: ConfigOption = None) -> None:
    """Revoke an API key by its id."""
    from soc_api.keys import revoke_key

    settings = _settings(config)
    store = _open_store(settings)
    try:
        if not revoke_key(store, key_id):
            typer.echo(f"soc: no key {key_id}", err=True)
            raise typer.Exit(1)
    finally:
        store.close()
    typer.echo(f"revoked {key_id}")


@config_app.command("check")
def config_check(config: ConfigOption = None) -> None:
    """Validate the configuration, the inventory and the rule exceptions file it names, and the rule pack pointer."""
    import time

    from detections.active_rules import exceptions_path
    from detections.exceptions import ExceptionsError, load_exceptions
    from detections.packs import PackError, PackStore
    from inventory.lookup import Inventory, InventoryError

    settings = _settings(config)
    try:
        inventory = Inventory.load(settings.inventory.path)
    except InventoryError as exc:
        typer.echo(f"soc: {exc}", err=True)
        raise typer.Exit(2) from exc
    exceptions_file = exceptions_path(settings.detections, settings.data_dir)
    try:
        exceptions = load_exceptions(exceptions_file) if exceptions_file else None
    except ExceptionsError as exc:
        typer.echo(f"soc: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"configuration {settings.source}: ok")
    typer.echo(f"inventory {inventory.source}: {len(inventory.agencies)} agencies, {len(inventory.assets)} assets, "
               f"{len(inventory.devices)} managed devices")
    if exceptions is not None:
        now = time.time()
        expired = [e for e in exceptions.entries if e.expired(now)]
        numbers = ", ".join(str(e.number) for e in expired)
        typer.echo(f"rule exceptions {exceptions_file}: {len(exceptions)} entries"
                   + (f", {len(expired)} expired (no longer applied: entries {numbers})" if expired else ""))
    try:
        pack = PackStore.of(settings.detections, settings.data_dir).current()
    except PackError as exc:  # the suite would run its own rules only: say so, but the configuration is valid
        typer.echo(f"soc: warning: {exc}", err=True)
    else:
        typer.echo("rule pack: " + (pack.id if pack else "none (the suite's own rules only)"))


@app.command("deadletters")
def dead_letters(config: ConfigOption = None, limit: int = 20) -> None:
    """Show the newest dead letters: what could not be parsed or stored, from whom, and why."""
    settings = _settings(config)
    store = _open_store(settings)
    try:
        typer.echo(f"{store.count_dead_letters()} dead letters")
        for letter in store.list_dead_letters(limit):
            preview = letter.raw[:80].decode("utf-8", "backslashreplace")
            typer.echo(f"{letter.received} {letter.source} {letter.reason} ({len(letter.raw)} bytes"
                       f"{', truncated' if letter.truncated else ''}) {preview!r}")
    finally:
        store.close()


def _build_suite(settings: "Settings", store=None):
    from suite.runtime import Suite

    return Suite(settings, store)


# What a package's commands need from the composition root, provided before any of them runs.
def _verify_key(store, key: str):
    from soc_api.keys import verify_key

    return verify_key(store, key)


provide_commands(CommandContext(settings=_settings, open_store=_open_store, build_suite=_build_suite,
                                verify_key=_verify_key))

# Packages add their own commands: a module here with `register(app)` is asked to add them. A newcomer finds a
# package's commands in that package's cli.py.
CLI_PLUGINS = ("collectors.cli", "collectors.packets.cli", "detections.cli", "detections.rules_cli",
               "detections.yara.cli", "playbooks.cli", "playbooks.devices_cli", "reports.cli", "soc_api.cli",
               "soc.storage.cli", "assessment.cli", "field.cli")


# Which plugin owns which command: running one command imports only its package (start-up time counts for
# `soc hunt`); help, or a command not listed here, registers them all.
COMMAND_PLUGINS = {"hunt": "detections.cli", "parse": "collectors.cli", "ingest": "collectors.cli", "pcap": "collectors.packets.cli",
                   "yara": "detections.yara.cli", "playbook": "playbooks.cli", "report": "reports.cli",
                   "rules": "detections.rules_cli", "store": "soc.storage.cli",
                   "assess": "assessment.cli", "field": "field.cli"}
BUILT_IN = {"serve", "demo", "deadletters", "keys", "config"}


def _register_plugins(argv: list[str] | None = None) -> None:
    import importlib

    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)
    if command in COMMAND_PLUGINS:
        names: tuple[str, ...] = (COMMAND_PLUGINS[command],)
    elif command in BUILT_IN:
        names = ()
    else:
        names = CLI_PLUGINS
    for name in names:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
                continue  # that package (or its cli module) does not exist (yet)
            raise
        module.register(app)


_register_plugins()


def main() -> None:
    from soc.errors import ConfigError

    try:
        app()
    except ConfigError as exc:
        print(f"soc: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
