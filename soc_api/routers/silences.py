"""Silences (create, list, expire) and inhibition rules (create, list, delete): data the alert manager reads."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query

from detections import inhibition, silences
from detections.silences import MatcherError, silence_state
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
    return _out(data.create_silence(doc))


@router.get("/silences", response_model=list[Silence])
def list_silences(
    data: Reader,
    state: Literal["active", "pending", "expired", "all"] = "active",
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[Silence]:
    return [_out(d) for d in data.silences(state, limit)]


@router.get("/silences/{silence_id}", response_model=Silence)
def get_silence(silence_id: str, data: Reader) -> Silence:
    return _out(data.silence(silence_id))


@router.delete("/silences/{silence_id}", response_model=Silence)
def expire_silence(silence_id: str, data: Writer) -> Silence:
    """Expire a silence now (it is kept, with who expired it, for the record)."""
    return _out(data.expire_silence(silence_id))


@router.get("/inhibit-rules", response_model=list[InhibitRule])
def list_inhibit_rules(data: Reader) -> list[InhibitRule]:
    return [InhibitRule.model_validate(doc) for doc in data.inhibit_rules()]


@router.post("/inhibit-rules", response_model=InhibitRule, status_code=201)
def create_inhibit_rule(body: InhibitRuleIn, data: Writer) -> InhibitRule:
    try:
        doc = inhibition.new_rule([m.model_dump() for m in body.source_matchers],
                                  [m.model_dump() for m in body.target_matchers], body.equal,
                                  created_by=data.actor, comment=body.comment)
    except MatcherError as exc:
        raise invalid("body", str(exc)) from exc
    return InhibitRule.model_validate(data.add_inhibit_rule(doc))


@router.delete("/inhibit-rules/{rule_id}", status_code=204)
def delete_inhibit_rule(rule_id: str, data: Writer) -> None:
    data.delete_inhibit_rule(rule_id)
