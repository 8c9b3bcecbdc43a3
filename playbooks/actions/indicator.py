"""indicator: add an indicator of compromise to the shared list (the ``indicators`` collection), which matching and
the sharing with the national centre (TAXII, STIX export) read. The indicator is built by the indicator model
(detections/indicators/model.py) and stored through the indicator service, so it has the one shape every reader
expects. One indicator per (type, value): adding it again updates it (a later expiry), never duplicates; one an
analyst revoked stays revoked."""

from __future__ import annotations

import ipaddress
from datetime import datetime, timedelta, timezone
from typing import Literal

from detections.indicators import model
from playbooks.actions.base import Action, Impact, Params, PerformContext, PlanContext
from playbooks.context import parse_duration
from soc import ecs

SOURCE = "playbook"
# The action's types (STIX cyber-observable names) as the model's; e-mail addresses are nothing the suite matches on.
MODEL_TYPES = {"ipv4-addr": "ipv4", "ipv6-addr": "ipv6", "domain-name": "domain", "url": "url",
               "file-sha256": "sha256", "file-md5": "md5"}


class IndicatorParams(Params):
    value: str
    type: Literal["ipv4-addr", "ipv6-addr", "domain-name", "url", "file-sha256", "file-md5", "email-addr"] = \
        "ipv4-addr"
    description: str = ""
    valid_for: int | str = "30d"
    tlp: Literal["clear", "green", "amber", "red"] = "amber"
    confidence: int = 70


def observable(kind: str, value: str) -> dict:
    """The model's observable for the action's (type, value); an address of the other IP version keeps its own.
    Raises IndicatorError (a ValueError: the step fails with the reason)."""
    model_kind = MODEL_TYPES.get(kind)
    if model_kind is None:
        raise model.IndicatorError(f"the shared indicator list holds no {kind} values (types: "
                                   f"{', '.join(MODEL_TYPES)})")
    if model_kind in ("ipv4", "ipv6"):
        try:
            model_kind = f"ipv{ipaddress.ip_network(str(value).strip(), strict=False).version}"
        except ValueError:
            pass  # normalise says why
    return {"type": model_kind, "value": model.normalise(model_kind, str(value))}


def indicator_id(kind: str, value: str) -> str:
    """The id of the one indicator the action keeps for (type, value)."""
    return model.indicator_id(SOURCE, [observable(kind, value)])


class IndicatorAction(Action):
    name = "indicator"
    params_model = IndicatorParams

    def plan(self, params: IndicatorParams, ctx: PlanContext):
        parse_duration(params.valid_for)
        return [], Impact(), f"add {params.type} {params.value} to the shared indicator list (TLP:{params.tlp})"

    def perform(self, params: IndicatorParams, ctx: PerformContext) -> dict:
        from detections.indicators.store import IndicatorService  # STIX and the index: only when a run shares

        now = datetime.now(timezone.utc)
        run = ctx.run
        service = IndicatorService(ctx.store)
        doc = model.build([observable(params.type, params.value)], source=SOURCE, tlp=params.tlp,
                          confidence=params.confidence, description=params.description,
                          valid_until=ecs.utc_iso(now + timedelta(seconds=parse_duration(params.valid_for))),
                          created_by=f"playbook {run['playbook']}", labels=["playbook"])
        existing = model.readable(service.get(doc["id"]))
        if existing is not None and existing.get("revoked"):
            return {"status": "skipped", "indicator": doc["id"],
                    "message": f"indicator {params.type} {params.value} was revoked by "
                               f"{existing.get('revoked_by') or 'an analyst'}; not shared again"}
        if existing is not None:
            doc.update(valid_from=existing["valid_from"],
                       description=params.description or existing.get("description", ""))
        # Provenance beside the model's fields: the run, and the agency it ran for (audit reports scope by it).
        doc.update(playbook=run["playbook"], run_id=run["id"], alert_id=run.get("alert_id"),
                   organization={"id": run.get("agency")}, runs=int((existing or {}).get("runs") or 0) + 1)
        service.upsert([doc])
        verb = "updated" if existing else "added"
        return {"status": "done", "message": f"{verb} indicator {params.type} {params.value}", "indicator": doc["id"]}
