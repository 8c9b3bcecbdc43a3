"""The action contract: check parameters, plan (which devices, which exact changes, how much impact), perform.

Device actions (block, unblock, null route, quarantine) only plan; the runner applies their changes under the
device lock with verify and roll back. Other actions (indicator, notify, case note) perform their effect
themselves. Every action says its impact: low-impact steps may run without approval when the playbook allows it,
high-impact ones always wait for a network admin.
"""

from __future__ import annotations

from abc import ABC
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from inventory.lookup import Inventory
from inventory.model import ManagedDevice
from playbooks.drivers import Change, Driver, Operation, get_driver
from playbooks.safety import Safety
from playbooks.settings import PlaybookSettings
from playbooks.values import ValueRefused, normalise_network
from soc.storage.base import Store


class PlanError(ValueError):
    """The step cannot be planned: bad parameters, no device, an operation the device cannot do."""


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DeviceSelector(BaseModel):
    """Which managed devices: by id, or by what their asset is (kind, role, agency) and by driver."""

    model_config = ConfigDict(extra="forbid")
    ids: list[str] = []
    kinds: list[str] = []
    roles: list[str] = []
    agencies: list[str] = []
    drivers: list[str] = []


@dataclass
class Impact:
    level: Literal["low", "high"] = "low"
    reasons: list[str] = field(default_factory=list)

    def high(self, reason: str) -> None:
        self.level = "high"
        self.reasons.append(reason)

    def as_dict(self) -> dict[str, Any]:
        return {"level": self.level, "reasons": self.reasons}


@dataclass
class DeviceTask:
    device: ManagedDevice
    driver: Driver
    operation: Operation
    change: Change  # as rendered before reading the device (what a dry run shows)
    ttl_seconds: int | None = None  # blocks and null routes are recorded with their expiry
    record_kind: str | None = None  # "block" | "null_route": kept in the blocks collection


@dataclass
class PlanContext:
    inventory: Inventory
    safety: Safety
    settings: PlaybookSettings
    run_id: str
    agency: str | None = None
    alert: dict | None = None


@dataclass
class PerformContext:
    store: Store
    settings: PlaybookSettings
    run: dict
    alert: dict | None = None


class Action(ABC):
    name: ClassVar[str]
    params_model: ClassVar[type[Params]]
    device_action: ClassVar[bool] = False
    summary: ClassVar[str] = ""

    def parse_params(self, raw: dict[str, Any]) -> Params:
        from pydantic import ValidationError

        try:
            return self.params_model.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            reason = "unknown parameter" if first["type"] == "extra_forbidden" else first["msg"]
            raise PlanError(f"{self.name}: {where}: {reason}") from exc

    def plan(self, params: Params, ctx: PlanContext) -> tuple[list[DeviceTask], Impact, str]:
        """(device tasks, impact, what it will do in words)."""
        return [], Impact(), self.summary

    def perform(self, params: Params, ctx: PerformContext) -> dict[str, Any]:
        """Do a non-device action; returns what happened (status: done | skipped, message)."""
        raise NotImplementedError


def assets_in(inventory: Inventory, network) -> list[str]:
    """The inventory assets with an address inside ``network`` (an ipaddress network): blocking one cuts off a
    host the province knows, whatever network it sits in."""
    found = []
    for asset in inventory.assets.values():
        for address in asset.addresses:
            try:
                if normalise_network(address).subnet_of(network):
                    found.append(asset.id)
                    break
            except (ValueRefused, TypeError):
                continue
    return found


def select_devices(spec: Any, inventory: Inventory) -> list[ManagedDevice]:
    if spec is None:
        raise PlanError("no devices given")
    if isinstance(spec, str):
        spec = {"ids": [spec]}
    elif isinstance(spec, list):
        spec = {"ids": spec}
    selector = DeviceSelector.model_validate(spec)
    chosen = []
    for device in inventory.devices.values():
        asset = inventory.assets.get(device.asset)
        if selector.ids and device.id not in selector.ids:
            continue
        if selector.kinds and (asset is None or asset.kind.value not in selector.kinds):
            continue
        if selector.roles and (asset is None or asset.role not in selector.roles):
            continue
        if selector.agencies and (asset is None or asset.agency not in selector.agencies):
            continue
        if selector.drivers and device.driver not in selector.drivers:
            continue
        chosen.append(device)
    missing = [i for i in selector.ids if i not in inventory.devices]
    if missing:
        raise PlanError(f"no managed device {', '.join(missing)} in the inventory")
    if not chosen:
        raise PlanError(f"no managed device matches {selector.model_dump(exclude_defaults=True)}")
    return chosen


def device_tasks(devices: list[ManagedDevice], op: Operation, *, ttl: int | None = None,
                 record_kind: str | None = None) -> list[DeviceTask]:
    tasks = []
    for device in devices:
        driver = get_driver(device.driver)
        if not driver.supports(op.kind):
            raise PlanError(f"device {device.id} ({device.driver}) cannot {op.kind.replace('_', ' ')}")
        try:
            change = driver.render(device.id, op)
        except ValueRefused as exc:
            raise PlanError(f"device {device.id}: {exc}") from exc
        tasks.append(DeviceTask(device, driver, op, change, ttl, record_kind))
    return tasks
