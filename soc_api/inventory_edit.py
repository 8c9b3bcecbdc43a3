"""Edits of the inventory through the API: the whole document is validated again (references must still resolve),
written back to the inventory file atomically (the previous version kept as ``.bak``), and swapped into the running
suite, so enrichment uses it from the next batch on.

The file is rewritten from the model, so comments in a hand-written inventory file are not kept; the ``.bak`` is.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import Callable

import yaml
from pydantic import ValidationError

from inventory.lookup import Inventory
from inventory.model import InventoryDocument
from soc.files import atomic_write

_LOCK = threading.Lock()


class InventoryEditError(ValueError):
    pass


def edit_inventory(suite, change: Callable[[dict], None]) -> Inventory:
    """``change`` edits the inventory as plain data; the result must validate, or nothing is written."""
    with _LOCK:
        data = suite.inventory.document.model_dump(mode="json")
        change(data)
        try:
            document = InventoryDocument.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise InventoryEditError(f"the inventory would be invalid: {where + ': ' if where else ''}"
                                     f"{first['msg']}") from exc
        path = Path(suite.settings.inventory.path)
        text = yaml.safe_dump(document.model_dump(mode="json", exclude_defaults=True), sort_keys=False,
                              allow_unicode=True)
        if path.exists():
            shutil.copy2(path, path.with_suffix(path.suffix + ".bak"))
        atomic_write(path, "# Written by the SOC API (inventory edits); the previous version is kept beside it as "
                           ".bak\n" + text)
        inventory = Inventory(document, str(path))
        suite.inventory_holder.replace(inventory)  # every reader (pipeline, playbooks, probes) takes it from here
        return inventory
