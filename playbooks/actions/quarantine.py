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
        asset = inventory.assets.get(params.host) or inventory.asset_by_name(params.host) or \
            inventory.asset_by_ip(params.host)
        addresses = list(asset.addresses) if asset else []
        if asset is None:
            try:
                import ipaddress

                addresses = [str(ipaddress.ip_address(params.host))]
            except ValueError:
                pass
        for address in addresses:
            import ipaddress

            hit = ctx.safety.protected(ipaddress.ip_network(address))
            if hit is not None:
                raise SafetyRefusal(f"{params.host} ({address}) is on the never-block list ({hit.network}: "
                                    f"{hit.why})")
        if params.mode == "vlan" and params.vlan is None:
            raise PlanError("quarantine: mode vlan needs a vlan")
        if not params.interface or any(c in params.interface for c in "\n;|&"):
            raise PlanError(f"quarantine: {params.interface!r} is not an interface name")
        devices = select_devices(params.device, inventory)
        op = Operation("shutdown_port", params.interface) if params.mode == "shutdown" else \
            Operation("set_vlan", params.interface, vlan=params.vlan)
        tasks = device_tasks(devices, op)
        impact = Impact()
        impact.high(f"isolates {params.host} ({params.mode} on {params.device} {params.interface})")
        return tasks, impact, f"quarantine {params.host}: {params.mode} {params.device} {params.interface}"
