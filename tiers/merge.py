"""One alert at two tiers: how two versions of it become one.

The tier that raised an alert owns what detection says of it (count, evidence, entities, times, severity). Analysts
may triage it at either tier; their changes are the ``history`` entries not written by detections, and the version
whose latest such entry is newer decides the triage fields. Histories are merged (each entry once, in time order),
so both tiers end with the same record of who did what, wherever they did it. Incidents stay each tier's own.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

from soc import ecs

TRIAGE_FIELDS = ("status", "assignee", "acknowledged_at", "acknowledged_by", "close_reason", "closed_at", "closed_by",
                 "reopened_at")
LOCAL_FIELDS = ("incident", "tier")  # never taken from the other tier
_PIPELINE_ACTIONS = {"raised", "suppressed", "unsuppressed", "merge"}


def valid_entry(entry: Any) -> bool:
    """A history entry another tier may add: an object with a time that parses and is not ahead of now (a forged
    entry dated in 9999 would otherwise win every later merge), and text for who and what."""
    if not isinstance(entry, dict) or not all(isinstance(entry.get(k), str) for k in ("at", "by", "action")):
        return False
    try:
        moment = ecs.parse_time(entry["at"])
    except (ValueError, TypeError, OverflowError):
        return False
    return moment <= datetime.now(timezone.utc) + timedelta(seconds=ecs.FUTURE_TOLERANCE_SECONDS)


def triage_at(alert: dict) -> str:
    """When a person last changed the alert's triage (ISO 8601 UTC), or "" if nobody did."""
    times = [ecs.utc_iso(ecs.parse_time(h["at"])) for h in alert.get("history") or []
             if valid_entry(h) and h.get("by") != "detections" and h.get("action") not in _PIPELINE_ACTIONS]
    return max(times, default="")


def _union(mine: list, theirs: list, *, sort_key: str = "at") -> list:
    seen: set[str] = set()
    out = []
    for item in [*(mine or []), *(theirs or [])]:
        key = json.dumps(item, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            out.append(item)
    return sorted(out, key=lambda i: str(i.get(sort_key) or "") if isinstance(i, dict) else "")


def merged(local: dict | None, remote: dict, *, remote_owns_detection: bool) -> dict:
    """The alert as this tier keeps it after ``remote`` (the other tier's version) arrived."""
    history, notes = remote.get("history"), remote.get("notes")
    remote = dict(remote, history=[h for h in history if valid_entry(h)] if isinstance(history, list) else [],
                  notes=notes if isinstance(notes, list) else [])
    if local is None:
        out = {k: v for k, v in remote.items() if k not in LOCAL_FIELDS}
        return out
    base = dict(remote if remote_owns_detection else local)
    for name in LOCAL_FIELDS:
        base.pop(name, None)
        if name in local:
            base[name] = local[name]
    triage_from = remote if triage_at(remote) > triage_at(local) else local
    if not triage_at(remote) and not triage_at(local):
        triage_from = remote if remote_owns_detection else local  # nobody triaged: the pipeline's status stands
    for name in TRIAGE_FIELDS:
        if name in triage_from:
            base[name] = triage_from[name]
        else:
            base.pop(name, None)
    base["history"] = _union(local.get("history"), remote.get("history"))
    base["notes"] = _union(local.get("notes"), remote.get("notes"))
    if not base["notes"]:
        base.pop("notes")
    base["updated"] = max(str(local.get("updated") or ""), str(remote.get("updated") or ""))
    return base


def triage_of(alert: dict) -> dict[str, Any]:
    """What the upstream sends down of an alert it changed: the triage fields, the history and notes."""
    out = {k: alert[k] for k in TRIAGE_FIELDS if k in alert}
    out.update(id=alert["id"], history=alert.get("history") or [], notes=alert.get("notes") or [],
               updated=alert.get("updated"))
    return out
