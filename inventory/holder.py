"""The one current inventory of a running suite.

Every component that reads the inventory (enrichment, playbook plans and their never-block list, probes, source
health, the API) asks the holder for ``current`` at the moment of use instead of keeping the inventory it started
with, so an edit through the API or a change of the file is used by the very next plan, probe and enrichment. A
new inventory replaces the old one whole (an Inventory is never changed in place), and listeners hear of it (the
parse workers receive it before their next batch).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Callable

from inventory.lookup import Inventory, InventoryError
from soc.files import file_stamp

log = logging.getLogger(__name__)


class InventoryHolder:
    def __init__(self, inventory: Inventory, path: str | Path | None = None):
        self._current = inventory
        self._path = Path(path) if path else None
        self._stamp = file_stamp(self._path)
        self._lock = threading.Lock()
        self._listeners: list[Callable[[Inventory], None]] = []

    @classmethod
    def load(cls, path: str | Path) -> "InventoryHolder":
        return cls(Inventory.load(path), path)

    @property
    def current(self) -> Inventory:
        return self._current

    @property
    def path(self) -> Path | None:
        return self._path

    def subscribe(self, listener: Callable[[Inventory], None]) -> None:
        with self._lock:
            self._listeners.append(listener)

    def replace(self, inventory: Inventory) -> None:
        """Make ``inventory`` the current one (an edit through the API, a reload of the file)."""
        with self._lock:
            self._current = inventory
            self._stamp = file_stamp(self._path)
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(inventory)
            except Exception:  # one listener's bug must not keep the others on the old inventory
                log.exception("inventory listener %r failed", listener)

    def reload_if_changed(self) -> bool:
        """Read the file again if it changed since it was last read; an invalid file is reported and the current
        inventory kept (a half-written or mistyped file must not leave the suite without one)."""
        if self._path is None:
            return False
        stamp = file_stamp(self._path)
        if stamp is None or stamp == self._stamp:
            return False
        try:
            inventory = Inventory.load(self._path)
        except InventoryError as exc:
            log.error("inventory file changed but was not taken (the previous inventory stays in use): %s", exc)
            with self._lock:
                self._stamp = stamp  # report it once, not on every check
            return False
        self.replace(inventory)
        log.info("inventory reloaded from %s", self._path)
        return True
