"""An ATT&CK Navigator layer of the techniques a hunt detected (`soc hunt --navigator FILE`).

The layer follows the Navigator's layer format 4.5 (https://github.com/mitre-attack/attack-navigator, file
layers/LAYERFORMATv4_5.md): ``versions`` {layer "4.5", navigator 5.x, attack}, ``domain`` "enterprise-attack", and
one technique object per technique id found in the rules' tags (``attack.tNNNN`` / ``attack.tNNNN.NNN``), scored by
the number of detections, with the rules that found it as its comment. A sub-technique's parent is listed too, with
``showSubtechniques``, so that the Navigator opens it. Techniques are not pinned to a tactic: a rule's tactic tags do
not say which of a technique's tactics they mean, and a technique object without ``tactic`` applies to all of them.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

LAYER_VERSION = "4.5"
NAVIGATOR_VERSION = "5.1.0"
ATTACK_VERSION = "20"  # the ATT&CK release the layer is drawn on (the Navigator offers to upgrade an older one)
DOMAIN = "enterprise-attack"
TECHNIQUE_ID = re.compile(r"^T\d{4}(\.\d{3})?$")
TOP_RULES = 5  # rules named in a technique's comment
COLORS = ["#fff3b2", "#fd8d3c", "#bd0026"]  # few detections -> many


class NavigatorLayer:
    """Counts detections per technique (and per rule within it) as a hunt streams them."""

    def __init__(self) -> None:
        self.techniques: dict[str, Counter[str]] = {}  # technique id -> rule title -> detections

    def add(self, meta) -> None:
        for technique in meta.techniques:
            technique = technique.upper()
            if TECHNIQUE_ID.match(technique):
                self.techniques.setdefault(technique, Counter())[meta.title] += 1

    def scores(self) -> dict[str, int]:
        return {technique: sum(rules.values()) for technique, rules in self.techniques.items()}

    def layer(self, name: str = "soc hunt", description: str = "",
              attack_version: str = ATTACK_VERSION) -> dict[str, Any]:
        scores = self.scores()
        entries: list[dict[str, Any]] = []
        for technique in sorted(scores, key=lambda t: (-scores[t], t)):
            rules = self.techniques[technique]
            top = rules.most_common(TOP_RULES)
            comment = f"{scores[technique]} detections: " + "; ".join(f"{title} ({n})" for title, n in top)
            if len(rules) > TOP_RULES:
                comment += f"; and {len(rules) - TOP_RULES} more rules"
            entries.append({
                "techniqueID": technique,
                "score": scores[technique],
                "comment": comment,
                "enabled": True,
                "metadata": [{"name": "rule", "value": f"{title} ({n})"} for title, n in top],
            })
        parents = {t.split(".")[0] for t in scores if "." in t}
        for parent in sorted(parents):
            entry = next((e for e in entries if e["techniqueID"] == parent), None)
            if entry is None:  # not detected itself: listed only to show its detected sub-techniques
                entries.append({"techniqueID": parent, "enabled": True, "showSubtechniques": True})
            else:
                entry["showSubtechniques"] = True
        top_score = max(scores.values(), default=0)
        return {
            "name": name,
            "versions": {"layer": LAYER_VERSION, "navigator": NAVIGATOR_VERSION, "attack": attack_version},
            "domain": DOMAIN,
            "description": description or f"Techniques detected by soc hunt: {len(scores)} techniques, "
                                          f"{sum(scores.values())} technique detections; score = detections",
            "sorting": 3,  # by score, highest first
            "layout": {"layout": "side", "aggregateFunction": "sum", "showID": True, "showName": True,
                       "showAggregateScores": False, "countUnscored": False, "expandedSubtechniques": "annotated"},
            "hideDisabled": False,
            "techniques": entries,
            "gradient": {"colors": COLORS, "minValue": 0, "maxValue": max(top_score, 1)},
            "legendItems": [],
            "metadata": [{"name": "generator", "value": "soc hunt"}],
            "links": [],
            "showTacticRowBackground": False,
            "tacticRowBackground": "#dddddd",
            "selectTechniquesAcrossTactics": True,
            "selectSubtechniquesWithParent": False,
            "selectVisibleTechniques": False,
        }
