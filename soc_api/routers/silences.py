"""Silences (create, list, expire) and inhibition rules (create, list, delete): data the alert manager reads."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query

from detections import inhibition, silences
from detections.silences import MatcherError, silence_state
from soc import ecs
from soc.storage.base import DocumentQuery
from soc_api.data import Data, data_for, invalid
from soc_api.models import InhibitRule, InhibitRuleIn, Silence, SilenceIn
from soc_api.settings import JSON_BODY_CAP

router = APIRouter(tags=["silences"], max_body_size=JSON_BODY_CAP)
Reader = Annotated[Data, Depends(data_for("analyst", "network_admin", "national_centre"))]
Writer = Annotated[Data, Depends(data_for("analyst", "network_admin"))]


def _out(doc: dict) -> Silence:
    return Silence.model_validate(dict(doc, state=silence_state(doc)))


@router.post("/silences", response_model=Silence, status_code=201)
def create_silence(body: SilenceIn, data: Writer) -> Silence:
    try:
        doc = silences.new_silence([m.model_dump() for m in body.matchers], starts_at=body.starts_at,
                                   ends_at=body.ends_at, created_by=data.actor, comment=body.comment)
    except MatcherError as exc:
        raise invalid("body", str(exc)) from exc
    return _out(data.suite.alerts.silences.create(doc))


@router.get("/silences", response_model=list[Silence])
def list_silences(
    data: Reader,
    state: Literal["active", "pending", "expired", "all"] = "active",
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[Silence]:
    now = ecs.now_iso()
    ranges = {} if state in ("expired", "all") else {"ends_at": (now, None)}
    if state == "expired":
        ranges = {"ends_at": (None, now)}
    docs = data.store.find_documents(silences.COLLECTION, DocumentQuery(ranges=ranges, sort="ends_at",
                                                                        descending=state == "expired", limit=limit))
    return [_out(d) for d in docs if state == "all" or silence_state(d, now) == state]


@router.get("/silences/{silence_id}", response_model=Silence)
def get_silence(silence_id: str, data: Reader) -> Silence:
    doc = data.store.get_document(silences.COLLECTION, silence_id)
    if doc is None:
        raise HTTPException(404, "no such silence")
    return _out(doc)


@router.delete("/silences/{silence_id}", response_model=Silence)
def expire_silence(silence_id: str, data: Writer) -> Silence:
    """Expire a silence now (it is kept, with who expired it, for the record)."""
    doc = data.store.get_document(silences.COLLECTION, silence_id)
    if doc is None:
        raise HTTPException(404, "no such silence")
    return _out(data.suite.alerts.silences.expire(doc, by=data.actor))


@router.get("/inhibit-rules", response_model=list[InhibitRule])
def list_inhibit_rules(data: Reader) -> list[InhibitRule]:
    return [InhibitRule.model_validate(r.doc) for r in data.suite.alerts.inhibitor.rules()]


@router.post("/inhibit-rules", response_model=InhibitRule, status_code=201)
def create_inhibit_rule(body: InhibitRuleIn, data: Writer) -> InhibitRule:
    try:
        doc = inhibition.new_rule([m.model_dump() for m in body.source_matchers],
                                  [m.model_dump() for m in body.target_matchers], body.equal,
                                  created_by=data.actor, comment=body.comment)
    except MatcherError as exc:
        raise invalid("body", str(exc)) from exc
    data.suite.alerts.inhibitor.rules()  # seeds the defaults first, so adding a rule does not suppress them
    data.store.put_documents(inhibition.COLLECTION, [doc])
    data.suite.alerts.inhibitor.invalidate()
    return InhibitRule.model_validate(doc)


@router.delete("/inhibit-rules/{rule_id}", status_code=204)
def delete_inhibit_rule(rule_id: str, data: Writer) -> None:
    if not data.store.delete_document(inhibition.COLLECTION, rule_id):
        raise HTTPException(404, "no such inhibition rule")
    data.suite.alerts.inhibitor.invalidate()
