"""Rule health: every Sigma and YARA rule — loaded, or failed and why — and when it last fired."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from soc_api.data import Data, data_for
from soc_api.models import RuleHealthOut, RulesHealth

router = APIRouter(prefix="/rules", tags=["rules"])
Reader = Annotated[Data, Depends(data_for("analyst", "network_admin", "national_centre"))]


def rule_health(suite) -> list[RuleHealthOut]:
    fired = suite.alerts.last_fired() if hasattr(suite.alerts, "last_fired") else {}
    out = [RuleHealthOut(id=h.id, title=h.title, engine="sigma", kind=h.kind, status=h.status, reason=h.reason,
                         path=h.path, level=h.level, warnings=list(h.warnings), last_fired=fired.get(h.id))
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


@router.get("", response_model=RulesHealth)
def rules(data: Reader) -> RulesHealth:
    health = rule_health(data.suite)
    return RulesHealth(loaded=sum(h.status == "loaded" for h in health),
                       failed=sum(h.status == "failed" for h in health), rules=health)
