"""A YARA match as an ECS document: an alert-kind malware event about a file, ready for the store and alerting.

The id is stable for (rule, namespace, file hash, path), so scanning the same file again overwrites the event
instead of adding a duplicate.
"""

from __future__ import annotations

from typing import Any

from soc import ecs
from detections.yara.model import YaraMatch

# signature-base scores run 0..100 (40 "noteworthy", 60+ "suspicious", 75+ "alert"); ECS severity follows them.
_SEVERITY = ((75, "high"), (60, "medium"), (40, "low"))


def severity(score: Any) -> str:
    try:
        value = int(score)
    except (TypeError, ValueError):
        return "medium"  # a rule without a score: the pack's authors did not say, so the middle
    return next((name for floor, name in _SEVERITY if value >= floor), "informational")


def match_to_ecs(match: YaraMatch, *, timestamp: str | None = None, extra: dict[str, Any] | None = None) -> dict:
    """``extra`` is merged on top (e.g. ``{"source": {"ip": ...}, "url": {...}}`` for an HTTP body)."""
    target = match.target
    name = target.name or target.path.replace("\\", "/").rsplit("/", 1)[-1]
    doc: dict[str, Any] = {
        "@timestamp": timestamp or ecs.now_iso(),
        "ecs": {"version": ecs.ECS_VERSION},
        "event": {
            "id": ecs.event_id("yara", match.namespace, match.rule, target.sha256, target.path),
            "kind": "alert",
            "category": ["malware"],
            "type": ["info"],
            "module": "yara",
            "dataset": "yara.match",
        },
        "file": {"path": target.path, "name": name, "size": target.size},
        "rule": {"name": match.rule, "ruleset": match.namespace},
        "tags": list(match.tags),
        "yara": {"severity": severity(match.meta.get("score")), "strings": [s.to_dict() for s in match.strings[:20]]},
    }
    ecs.put_if(doc, "file.hash.sha256", target.sha256 or None)
    ecs.put_if(doc, "file.extension", name.rsplit(".", 1)[-1].lower() if "." in name else None)
    ecs.put_if(doc, "rule.id", match.meta.get("id"))
    ecs.put_if(doc, "rule.uuid", match.meta.get("id"))
    ecs.put_if(doc, "rule.description", match.meta.get("description"))
    ecs.put_if(doc, "rule.author", [match.meta["author"]] if match.meta.get("author") else None)
    ecs.put_if(doc, "rule.reference", match.meta.get("reference"))
    if isinstance(match.meta.get("score"), int):
        ecs.put(doc, "event.risk_score", float(match.meta["score"]))
        ecs.put(doc, "event.severity", match.meta["score"])
    if target.kind == "payload":
        ecs.put(doc, "file.type", "payload")  # extracted from traffic, never on a disk we can see
    for key, value in (extra or {}).items():
        if isinstance(value, dict) and isinstance(doc.get(key), dict):
            doc[key].update(value)
        else:
            doc[key] = value
    return doc
