"""Rule health: every Sigma and YARA rule — loaded, failed or not selected, and why — and when it last fired; the
rule pack versions, and a rollback to the previous one (admin)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel

from detections.packs import PackError
from soc_api.data import Data, data_for
from soc_api.models import RuleHealthOut, RulesHealth

router = APIRouter(prefix="/rules", tags=["rules"])
Reader = Annotated[Data, Depends(data_for("analyst", "network_admin", "national_centre"))]
Admin = Annotated[Data, Depends(data_for("admin"))]


class RulesAnswer(RulesHealth):
    disabled: int  # Sigma rules the rule selection leaves out (neither run nor counted as loaded)
    pack: str | None  # the rule pack version the suite runs (None: its own rules only)


class PacksAnswer(BaseModel):
    active: str | None  # the version the running suite uses now
    current: str | None  # the version the pointer names (the suite follows it within its reload interval)
    previous: list[str | None]  # what a rollback goes back to, most recent last (null: no pack)
    versions: list[dict[str, Any]]
    last_error: str | None = None  # the last pack or exceptions reload the suite did not take, and why


class RollbackAnswer(BaseModel):
    previous: str | None
    current: str | None


def rule_health(suite) -> list[RuleHealthOut]:
    fired = suite.alerts.last_fired() if hasattr(suite.alerts, "last_fired") else {}
    out = [RuleHealthOut(id=h.id, title=h.title, engine="sigma", kind=h.kind, status=h.status, reason=h.reason,
                         path=h.path, level=h.level, warnings=list(h.warnings), last_fired=fired.get(h.id),
                         rule_status=h.rule_status, selection=h.selection)
           for h in suite.ruleset.health]
    yara = suite.service("yara")  # the YARA extension, when it is on; its engine once it has built the rule pack
    engine = yara.engine if yara is not None else None
    if engine is not None:
        for h in engine.pack.health:
            out.append(RuleHealthOut(id=f"yara:{h.namespace}", title=h.path, engine="yara", kind="file",
                                     status=h.status, reason=h.reason, path=h.path, rules=h.rules,
                                     warnings=list(h.warnings), last_fired=fired.get(f"yara:{h.namespace}")))
    for rule_id in ("soc-indicator-match",):
        indicators = suite.service("indicators")
        if rule_id in fired or indicators is not None:
            out.append(RuleHealthOut(id=rule_id, title="Indicator match", engine="indicators", kind="matcher",
                                     status="loaded", last_fired=fired.get(rule_id),
                                     indicators=len(indicators.index) if indicators is not None else 0))
    return out


@router.get("", response_model=RulesAnswer)
def rules(data: Reader) -> RulesAnswer:
    health = rule_health(data.suite)
    return RulesAnswer(loaded=sum(h.status == "loaded" for h in health),
                       failed=sum(h.status == "failed" for h in health),
                       disabled=sum(h.status == "disabled" for h in health),
                       pack=data.suite.ruleset.version, rules=health)


@router.get("/packs", response_model=PacksAnswer, responses={503: {"description": "the pack pointer cannot be read"}})
def packs(data: Reader) -> PacksAnswer:
    active = data.suite.ruleset
    try:
        pointer = active.packs.pointer()
    except PackError as exc:
        raise HTTPException(503, str(exc)) from exc
    return PacksAnswer(active=active.version, current=pointer.current, previous=pointer.previous,
                       versions=[v.describe() for v in active.packs.versions()], last_error=active.last_error)


@router.post("/packs/rollback", response_model=RollbackAnswer,
             responses={409: {"description": "no earlier pack, or an install or rollback under way"}})
def rollback(data: Admin) -> RollbackAnswer:
    """Back to the rule pack current before this one; the suite switches within its reload interval."""
    store = data.suite.ruleset.packs
    try:
        with store.locked(wait=False):
            was, now = store.rollback()
    except PackError as exc:
        raise HTTPException(409, str(exc)) from exc
    return RollbackAnswer(previous=was, current=now)
