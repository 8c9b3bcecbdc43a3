"""indicator: add an indicator of compromise to the shared list (the ``indicators`` collection), which the sharing
with the national centre reads. One document per (type, value): adding it again updates it, never duplicates."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone
from typing import Literal

from playbooks.actions.base import Action, Impact, Params, PerformContext, PlanContext
from playbooks.context import parse_duration
from soc import ecs

COLLECTION = "indicators"


class IndicatorParams(Params):
    value: str
    type: Literal["ipv4-addr", "ipv6-addr", "domain-name", "url", "file-sha256", "file-md5", "email-addr"] = \
        "ipv4-addr"
    description: str = ""
    valid_for: int | str = "30d"
    tlp: Literal["clear", "green", "amber", "red"] = "amber"
    confidence: int = 70


def indicator_id(kind: str, value: str) -> str:
    return hashlib.blake2b(f"{kind}:{value.lower()}".encode(), digest_size=16).hexdigest()


class IndicatorAction(Action):
    name = "indicator"
    params_model = IndicatorParams

    def plan(self, params: IndicatorParams, ctx: PlanContext):
        parse_duration(params.valid_for)
        return [], Impact(), f"add {params.type} {params.value} to the shared indicator list (TLP:{params.tlp})"

    def perform(self, params: IndicatorParams, ctx: PerformContext) -> dict:
        now = datetime.now(timezone.utc)
        doc_id = indicator_id(params.type, params.value)
        existing = ctx.store.get_document(COLLECTION, doc_id)
        run = ctx.run
        doc = existing or {"id": doc_id, "type": params.type, "value": params.value, "created": ecs.utc_iso(now),
                           "sightings": 0, "shared": False}
        doc.update({
            "description": params.description or doc.get("description", ""),
            "valid_from": doc.get("valid_from") or ecs.utc_iso(now),
            "valid_until": ecs.utc_iso(now + timedelta(seconds=parse_duration(params.valid_for))),
            "tlp": params.tlp, "confidence": params.confidence, "source": "playbook",
            "playbook": run["playbook"], "run_id": run["id"], "alert_id": run.get("alert_id"),
            "organization": {"id": run.get("agency")}, "updated": ecs.utc_iso(now),
            "sightings": int(doc.get("sightings", 0)) + 1,
        })
        ctx.store.put_documents(COLLECTION, [doc])
        verb = "updated" if existing else "added"
        return {"status": "done", "message": f"{verb} indicator {params.type} {params.value}", "indicator": doc_id}
