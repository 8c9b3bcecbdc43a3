"""The rules a suite runs: its own rule folders (``detections.sigma_rule_dirs``) and the current rule pack
(detections/packs.py), with the rule selection applied (detections/selection.py), and the rule exceptions
(detections/exceptions.py) — and, in a running suite, the one place that changes them without a restart.

``load_rules_for(...)`` is how the suite, `soc rules check` and `soc rules install` load the same rules the same way.
``ActiveRules`` holds the running suite's current rule set and exceptions: everyone who reads rules (the API's rule
health, health, posture, reports) reads them through it at the moment of use, as they read the inventory through its
holder. It reads like a RuleSet (``rules``, ``correlations``, ``health``, ``loaded``, ``failed``, ``disabled``) of
whatever is current. ``reload_if_changed`` (called by the suite's watcher, in a worker thread) loads a new current
pack when the pointer changed and the exceptions when their file changed, and tells the listeners (the detection
engine), which swap them in between two batches: ingest never stops for it. A pack that cannot be loaded, or an
exceptions file that is broken, is logged and counted, and what was in use stays in use.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any, Callable

from prometheus_client import Counter, Gauge

from detections.exceptions import NO_EXCEPTIONS, ExceptionsError, RuleExceptions, load_exceptions
from detections.packs import PackError, PackStore, PackVersion
from detections.selection import RuleSelection, select
from detections.sigma.loader import RuleSet, load_rules
from soc import metrics
from soc.files import file_stamp

log = logging.getLogger(__name__)

RULES_NOT_SELECTED = Gauge("soc_rules_not_selected", "Detection rules loaded or not that the rule selection leaves "
                           "out (neither run nor counted as loaded)", ["kind"])
RULE_RELOADS = Counter("soc_rule_reloads", "Reloads of the rule pack or the rule exceptions in a running suite",
                       ["what", "result"])
RULE_EXCEPTIONS = Gauge("soc_rule_exceptions", "Rule exception entries in use (expired ones included)")


def exceptions_path(detections: Any, data_dir: str | Path) -> Path | None:
    """The configured exceptions file (relative to the data folder unless absolute), or None."""
    name = detections.rule_exceptions_file
    return (Path(data_dir) / name) if name else None


def load_rules_for(detections: Any, data_dir: str | Path, placeholders: dict[str, list[str]],
                   pack: PackVersion | None, pack_dirs: list[str | Path] | None = None,
                   progress: Callable[[int, int], None] | None = None) -> RuleSet:
    """The suite's own rules (``detections.sigma_rule_dirs``) and ``pack``'s (or the folders ``pack_dirs``, checked
    as a pack would be), loaded as the suite loads them; no selection yet. A pack's rule that would collide with an
    own rule does not load (detections/sigma/loader.py)."""
    dirs = [str(d) for d in detections.sigma_rule_dirs]
    packs = [str(d) for d in pack_dirs or []] + ([str(pack.rules_dir)] if pack is not None else [])
    cache_dir = Path(data_dir) / detections.rule_cache_dir if detections.rule_cache_dir else None
    return load_rules(dirs, pipeline=detections.sigma_pipeline, cache_dir=cache_dir, placeholders=placeholders,
                      progress=progress, pack_dirs=packs)


def selected(ruleset: RuleSet, detections: Any, pack: PackVersion | None,
             pack_roots: list[Path] | None = None) -> RuleSet:
    """``ruleset`` with the configured rule selection applied to the pack's rules (``pack_roots``: other folders
    to treat as a pack's)."""
    roots = list(pack_roots or []) + ([pack.rules_dir] if pack is not None else [])
    return select(ruleset, RuleSelection(detections.rule_selection, roots))


class ActiveRules:
    """The running suite's rules and exceptions now."""

    def __init__(self, detections: Any, data_dir: str | Path, placeholders: Callable[[], dict[str, list[str]]]):
        """``placeholders()``: the %placeholder% values now (from the current inventory)."""
        self._config = detections
        self._data_dir = data_dir
        self._placeholders = placeholders
        self.packs = PackStore.of(detections, data_dir)
        self._exceptions_path = exceptions_path(detections, data_dir)
        self._current = RuleSet()
        self._version: str | None = None
        self._exceptions: RuleExceptions = NO_EXCEPTIONS
        self._pointer_stamp: tuple | None = None
        self._exceptions_stamp: tuple | None = None
        self._rule_listeners: list[Callable[[RuleSet], Any]] = []
        self._exception_listeners: list[Callable[[RuleExceptions], Any]] = []
        self._reloading = threading.Lock()
        self.last_error: str | None = None  # the last reload that was not taken, and why

    def start(self) -> "ActiveRules":
        """Load at start: the current pack (one that cannot be used is logged, and the suite runs its own rules),
        and the exceptions (a broken file is an ExceptionsError: the suite does not start on it)."""
        self._exceptions_stamp = file_stamp(self._exceptions_path)
        if self._exceptions_path is not None:
            self._exceptions = load_exceptions(self._exceptions_path)
        RULE_EXCEPTIONS.set(len(self._exceptions))
        self._pointer_stamp = file_stamp(self.packs.pointer_file)
        try:
            pack = self.packs.current()
        except PackError as exc:
            log.error("the rule pack cannot be used, running the suite's own rules only: %s", exc)
            self.last_error = str(exc)
            pack = None
        self._take(self._load(pack), pack)
        return self

    # --- what everyone reads -------------------------------------------------------------------------------------
    @property
    def current(self) -> RuleSet:
        return self._current

    @property
    def version(self) -> str | None:
        """The rule pack version in use (None: none, the suite's own rules only)."""
        return self._version

    @property
    def exceptions(self) -> RuleExceptions:
        return self._exceptions

    # RuleSet-shaped, always of the current rule set.
    @property
    def rules(self) -> list:
        return self._current.rules

    @property
    def correlations(self) -> list:
        return self._current.correlations

    @property
    def health(self) -> list:
        return self._current.health

    @property
    def loaded(self) -> int:
        return self._current.loaded

    @property
    def failed(self) -> int:
        return self._current.failed

    @property
    def disabled(self) -> int:
        return self._current.disabled

    def subscribe(self, on_rules: Callable[[RuleSet], Any], on_exceptions: Callable[[RuleExceptions], Any]) -> None:
        self._rule_listeners.append(on_rules)
        self._exception_listeners.append(on_exceptions)

    # --- changing ----------------------------------------------------------------------------------------------
    def reload_if_changed(self) -> bool:
        """Take a new current pack and changed exceptions, if any (slow when a pack changed: call it from a worker
        thread). Whether anything was taken."""
        with self._reloading:
            took = self._reload_exceptions_if_changed()
            return self._reload_pack_if_changed() or took

    def _reload_pack_if_changed(self) -> bool:
        stamp = file_stamp(self.packs.pointer_file)
        if stamp == self._pointer_stamp:
            return False
        self._pointer_stamp = stamp
        try:
            pack = self.packs.current()
        except PackError as exc:
            self._refused("pack", f"the rule pack did not change (the previous one stays in use): {exc}")
            return False
        if (pack.id if pack else None) == self._version:
            return False
        started = time.monotonic()
        try:
            ruleset = self._load(pack)
        except Exception as exc:  # the suite keeps running the rules it has rather than stop detecting
            log.exception("rule pack %s could not be loaded", pack.id if pack else "(none)")
            self._refused("pack", f"rule pack {pack.id if pack else '(none)'} could not be loaded: {exc}")
            return False
        self._take(ruleset, pack)
        RULE_RELOADS.labels(what="pack", result="ok").inc()
        log.info("rule pack %s in use: %d rules loaded, %d not selected, %d failed (loaded in %.1fs)",
                 pack.id if pack else "(none: own rules only)", ruleset.loaded, ruleset.disabled, ruleset.failed,
                 time.monotonic() - started)
        return True

    def _reload_exceptions_if_changed(self) -> bool:
        stamp = file_stamp(self._exceptions_path)
        if self._exceptions_path is None or stamp == self._exceptions_stamp:
            return False
        self._exceptions_stamp = stamp  # a broken file is reported once, not at every check
        if stamp is None:
            self._refused("exceptions", f"the exceptions file {self._exceptions_path} is gone; the previous "
                                        "exceptions stay in use")
            return False
        try:
            exceptions = load_exceptions(self._exceptions_path)
        except ExceptionsError as exc:
            self._refused("exceptions", f"the exceptions file changed but was not taken (the previous exceptions "
                                        f"stay in use): {exc}")
            return False
        self._exceptions = exceptions
        for listener in self._exception_listeners:
            listener(exceptions)
        RULE_EXCEPTIONS.set(len(exceptions))
        RULE_RELOADS.labels(what="exceptions", result="ok").inc()
        log.info("rule exceptions reloaded from %s: %d entries", self._exceptions_path, len(exceptions))
        return True

    def _refused(self, what: str, message: str) -> None:
        log.error(message)
        self.last_error = message
        RULE_RELOADS.labels(what=what, result="failed").inc()

    def _load(self, pack: PackVersion | None) -> RuleSet:
        ruleset = load_rules_for(self._config, self._data_dir, self._placeholders(), pack)
        return selected(ruleset, self._config, pack)

    def _take(self, ruleset: RuleSet, pack: PackVersion | None) -> None:
        for listener in self._rule_listeners:  # the engine first: what is reported as current is what runs
            listener(ruleset)
        self._current = ruleset
        self._version = pack.id if pack else None
        metrics.RULES_LOADED.labels(kind="sigma").set(ruleset.loaded)
        metrics.RULES_FAILED.labels(kind="sigma").set(ruleset.failed)
        RULES_NOT_SELECTED.labels(kind="sigma").set(ruleset.disabled)
        for health in ruleset.health:
            if health.status == "failed":
                log.warning("Sigma rule %s (%s) failed to load: %s", health.title, health.path, health.reason)
