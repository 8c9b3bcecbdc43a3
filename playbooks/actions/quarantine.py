"""quarantine: cut a host off at its switch port, by shutting the port or moving it to a quarantine VLAN.

The inventory does not know which port a host is on, so the step names the switch and the interface (an analyst
reads them from the switch's MAC table); the host is named too, so the never-block list can refuse a DNS server
or a domain controller. Always high-impact: a network admin approves it. It stays until rolled back.
"""

from __future__ import annotations

from typing import Literal

from playbooks.actions.base import Action, Impact, Params, PlanContext, PlanError, device_tasks, select_devices
from playbooks.drivers import Operation
from playbooks.safety import SafetyRefusal
from playbooks.values import InterfaceName, ValueRefused, VlanId, normalise_address


class QuarantineParams(Params):
    host: str  # asset id, host name or address
    device: str  # the switch
    interface: str
    mode: Literal["shutdown", "vlan"] = "shutdown"
    vlan: int | None = None


class QuarantineAction(Action):
    name = "quarantine"
    params_model = QuarantineParams
    device_action = True

    def plan(self, params: QuarantineParams, ctx: PlanContext):
        inventory = ctx.inventory
        try:
            host_address = str(normalise_address(params.host, "quarantine: host"))
        except ValueRefused:
            host_address = None
        asset = inventory.assets.get(params.host) or inventory.asset_by_name(params.host) or \
            inventory.asset_by_ip(host_address or params.host)
        addresses = list(asset.addresses) if asset else ([host_address] if host_address else [])
        for address in addresses:
            hit = ctx.safety.protected(address)
            if hit is not None:
                raise SafetyRefusal(f"{params.host} ({address}) is on the never-block list ({hit.network}: "
                                    f"{hit.why})")
        if params.mode == "vlan" and params.vlan is None:
            raise PlanError("quarantine: mode vlan needs a vlan")
        try:  # typed here so a bad name is a plan error that says why, not a device's confusion
            interface = InterfaceName.parse(params.interface, "quarantine: interface")
            vlan = VlanId.parse(params.vlan, "quarantine: vlan") if params.mode == "vlan" else None
        except ValueRefused as exc:
            raise PlanError(str(exc)) from exc
        devices = select_devices(params.device, inventory)
        op = Operation("shutdown_port", interface) if params.mode == "shutdown" else \
            Operation("set_vlan", interface, vlan=vlan)
        tasks = device_tasks(devices, op)
        impact = Impact()
        impact.high(f"isolates {params.host} ({params.mode} on {params.device} {params.interface})")
        return tasks, impact, f"quarantine {params.host}: {params.mode} {params.device} {params.interface}"
