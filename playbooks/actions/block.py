"""block / unblock an address or a range on firewalls, with a time to live."""

from __future__ import annotations

from typing import Any

from playbooks.actions.base import (Action, Impact, Params, PlanContext, PlanError, assets_in, device_tasks,
                                    select_devices)
from playbooks.context import InputError, parse_duration
from playbooks.drivers import Operation
from playbooks.safety import SafetyRefusal
from playbooks.values import ValueRefused, normalise_network


class BlockParams(Params):
    address: str
    ttl: int | str | None = None  # seconds or 30m / 1h / 7d; default from the settings
    devices: Any = None


class UnblockParams(Params):
    address: str
    devices: Any = None


def _tag(run_id: str) -> str:
    return f"soc-{run_id[:16]}"


class BlockAction(Action):
    name = "block"
    params_model = BlockParams
    device_action = True

    def plan(self, params: BlockParams, ctx: PlanContext):
        network = ctx.safety.check_block(params.address)  # raises SafetyRefusal
        try:
            ttl = parse_duration(params.ttl) if params.ttl is not None else ctx.settings.default_ttl_seconds
        except InputError as exc:
            raise PlanError(f"block: ttl: {exc}") from exc
        if ttl > ctx.settings.max_ttl_seconds:
            raise PlanError(f"block: ttl {ttl}s is longer than the maximum {ctx.settings.max_ttl_seconds}s")
        devices = select_devices(params.devices, ctx.inventory)
        op = Operation("block", str(network), comment=_tag(ctx.run_id))
        tasks = device_tasks(devices, op, ttl=ttl, record_kind="block")
        impact = Impact()
        if network.prefixlen != network.max_prefixlen:
            impact.high(f"blocks a whole range ({network}, {network.num_addresses} addresses)")
        if ctx.inventory.is_government(str(network.network_address)) or \
                ctx.inventory.agency_of(str(network.network_address)) is not None:
            impact.high(f"{network} is inside the province's own networks: this isolates a server or a user")
        known = assets_in(ctx.inventory, network)
        if known:
            impact.high(f"{network} holds inventory asset(s) {', '.join(known[:5])}: this cuts off a known host")
        for device in devices:
            if device.core:
                impact.high(f"changes core device {device.id}")
        return tasks, impact, f"block {network} for {ttl}s on {', '.join(d.id for d in devices)}"


class UnblockAction(Action):
    name = "unblock"
    params_model = UnblockParams
    device_action = True

    def plan(self, params: UnblockParams, ctx: PlanContext):
        try:
            network = normalise_network(params.address, "unblock: address")
        except ValueRefused as exc:
            raise SafetyRefusal(str(exc)) from exc
        devices = select_devices(params.devices, ctx.inventory)
        tasks = device_tasks(devices, Operation("unblock", str(network), comment=_tag(ctx.run_id)))
        impact = Impact()
        for device in devices:
            if device.core:
                impact.high(f"changes core device {device.id}")
        return tasks, impact, f"unblock {network} on {', '.join(d.id for d in devices)}"
