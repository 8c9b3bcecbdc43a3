"""null_route: send traffic to a destination nowhere (a blackhole / Null0 / discard route), with a time to live."""

from __future__ import annotations

from typing import Any

from playbooks.actions.base import Action, Impact, Params, PlanContext, PlanError, device_tasks, select_devices
from playbooks.context import InputError, parse_duration
from playbooks.drivers import Operation


class NullRouteParams(Params):
    destination: str
    ttl: int | str | None = None
    devices: Any = None


class NullRouteAction(Action):
    name = "null_route"
    params_model = NullRouteParams
    device_action = True

    def plan(self, params: NullRouteParams, ctx: PlanContext):
        network = ctx.safety.check_block(params.destination)
        try:
            ttl = parse_duration(params.ttl) if params.ttl is not None else ctx.settings.default_ttl_seconds
        except InputError as exc:
            raise PlanError(f"null_route: ttl: {exc}") from exc
        devices = select_devices(params.devices, ctx.inventory)
        tasks = device_tasks(devices, Operation("null_route", str(network), comment=f"soc-{ctx.run_id[:16]}"),
                             ttl=ttl, record_kind="null_route")
        impact = Impact()
        impact.high(f"null-routes {network}: every path through {', '.join(d.id for d in devices)} to it is cut")
        return tasks, impact, f"null-route {network} for {ttl}s on {', '.join(d.id for d in devices)}"
