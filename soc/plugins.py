"""The plug-in contract: what an extension receives (``Services``) and how it offers what it adds (``Registry``).

An extension is a module named in the configuration's ``extensions``, with a function
``register(services, registry)``. It reads what it needs from ``services`` — the settings, the store, the current
inventory, the alert sink, the job runner, the rule set — and adds what it brings through ``registry``: hooks on
stored events and raised alerts, detection matchers, background tasks, things to close, and named services other
parts read (the API reads the YARA engine, the indicator service, the playbook service). Nothing sets attributes
on, or replaces methods of, another object: the composition root (``suite/``) builds the services, calls every
extension's ``register``, and wires what was registered.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Iterator, Protocol

from soc.storage.base import Store

log = logging.getLogger(__name__)

Hook = Callable[[list[dict]], None]
BackgroundTask = Callable[[], Awaitable[None]]


class InventorySource(Protocol):
    """The one current inventory (inventory/holder.py): ask for ``current`` at the moment of use."""

    @property
    def current(self) -> Any: ...

    def subscribe(self, listener: Callable[[Any], None]) -> None: ...


class AlertSink(Protocol):
    """Where detections become alerts (detections/stage.py): deduplicated, stored, and handed to the alert hooks."""

    def raise_alerts(self, detections: list[Any]) -> list[dict]: ...

    def edit(self, alert_id: str, change: Callable[[dict], Any], *, notify: bool = True) -> Any: ...


class JobRefused(Exception):
    """The suite is closing: no new job may start."""


class JobRunner:
    """Work of an extension in a thread of its own that uses the store (a report build): the suite waits for it to
    finish before it closes the store (a store closed under a running statement can crash the process)."""

    def __init__(self) -> None:
        self._running = 0
        self._changed = threading.Condition()
        self._closing = False

    @contextlib.contextmanager
    def job(self) -> Iterator[None]:
        with self._changed:
            if self._closing:
                raise JobRefused("the suite is stopping")
            self._running += 1
        try:
            yield
        finally:
            with self._changed:
                self._running -= 1
                self._changed.notify_all()

    @property
    def closing(self) -> bool:
        return self._closing

    def close(self, timeout: float) -> bool:
        """No new job starts; wait for the running ones. False if some were still running after ``timeout``."""
        with self._changed:
            self._closing = True
            done = self._changed.wait_for(lambda: self._running == 0, timeout=timeout)
            if not done:
                log.warning("closing with %d extension jobs still running", self._running)
            return done


@dataclass(frozen=True)
class Services:
    """What every extension may use. Each reads its own section of ``settings``."""

    settings: Any
    store: Store
    inventory_holder: InventorySource
    alerts: AlertSink
    jobs: JobRunner
    ruleset: Any  # the loaded Sigma rule set (detections/sigma/loader.py RuleSet)
    provided: dict[str, Any] = field(default_factory=dict)  # the registry's named services, as they are provided

    def service(self, name: str) -> Any:
        """A service an extension provided (``playbooks``, ``yara``, ``indicators``, ...), or None."""
        return self.provided.get(name)

    @property
    def inventory(self) -> Any:
        """The inventory current now (read it at each use: it changes under an API edit or a file reload)."""
        return self.inventory_holder.current

    def job(self):
        return self.jobs.job()

    @property
    def closing(self) -> bool:
        return self.jobs.closing


@dataclass
class Registry:
    """What the extensions registered, read by the composition root that wires it."""

    event_hooks: list[Hook] = field(default_factory=list)
    alert_hooks: list[Hook] = field(default_factory=list)
    alert_edit_hooks: list[Hook] = field(default_factory=list)
    matchers: list[Any] = field(default_factory=list)
    background: list[BackgroundTask] = field(default_factory=list)
    closers: list[Callable[[], None]] = field(default_factory=list)
    provided: dict[str, Any] = field(default_factory=dict)

    def on_events(self, hook: Hook) -> None:
        """``hook(events)`` after each batch of events is stored (in the pipeline's writer: keep it short)."""
        self.event_hooks.append(hook)

    def on_alerts(self, hook: Hook) -> None:
        """``hook(alerts)`` after each batch of alerts is raised or updated."""
        self.alert_hooks.append(hook)

    def on_alert_edits(self, hook: Hook) -> None:
        """``hook([alert])`` after a person changed an alert (triage, notes, an incident): the alert as stored."""
        self.alert_edit_hooks.append(hook)

    def matcher(self, matcher: Any) -> None:
        """A detection matcher (``evaluate(events) -> detections``) run beside the Sigma rules."""
        self.matchers.append(matcher)

    def run_in_background(self, task: BackgroundTask) -> None:
        """A coroutine function started while the suite serves, cancelled when it stops."""
        self.background.append(task)

    def on_close(self, closer: Callable[[], None]) -> None:
        """Called when the suite closes, before the store (in the reverse order of registration)."""
        self.closers.append(closer)

    def provide(self, name: str, service: Any) -> None:
        """A named service other parts read (``Suite.service(name)``, the API)."""
        if name in self.provided:
            raise ValueError(f"a service named {name!r} is provided twice")
        self.provided[name] = service


def run_hooks(hooks: list[Hook], items: list[dict]) -> None:
    """Every hook, each in turn; one extension's bug is logged and never stops the caller."""
    for hook in hooks:
        try:
            hook(items)
        except Exception:  # an extension's bug must not stop the pipeline
            log.exception("hook %s failed", getattr(hook, "__qualname__", hook))


@dataclass(frozen=True)
class CommandContext:
    """What a package's command-line module needs from the composition root (suite/cli.py builds it): the
    validated settings for ``--config`` (or a clear error and exit 2), the store they name, and a composed suite."""

    settings: Callable[[str | None], Any]
    open_store: Callable[[Any], Store]
    build_suite: Callable[..., Any]  # build_suite(settings, store) -> the composed suite
    # verify_key(store, key) -> the principal (name, role, key_id) of a valid API key, or None: who runs a command
    verify_key: Callable[[Store, str], Any]


_COMMANDS: list[CommandContext] = []


def provide_commands(context: CommandContext) -> None:
    """Called once by the composition root before any command runs."""
    _COMMANDS[:] = [context]


def commands() -> CommandContext:
    if not _COMMANDS:
        raise RuntimeError("the soc command line is composed in suite/cli.py; run the `soc` command")
    return _COMMANDS[0]
