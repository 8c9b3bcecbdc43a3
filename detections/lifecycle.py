"""What analysts do to an alert: acknowledge, assign, change status (closing needs a reason), add notes, merge several
alerts into one incident. Every change appends to the alert's ``history`` (who, what, when, from where), so the
record of an alert is the alert itself.

These functions change the alert dict they are given and return it; storing it is the caller's job
(AlertManager.edit does it under the lock the pipeline uses, so a repeat of the alert arriving meanwhile is not
lost and does not undo the change).
"""

from __future__ import annotations

import uuid
from typing import Iterable

from soc import ecs
from soc.vocabulary import ALERT_STATUSES, ANALYST_STATUSES, CLOSE_REASONS, AlertStatus, worst_severity

# Where an alert may go from each status. Re-opening a closed alert is allowed (with a reason); "new" and
# "suppressed" are the pipeline's to set, not an analyst's.
TRANSITIONS = {
    AlertStatus.new: set(ANALYST_STATUSES),
    AlertStatus.suppressed: set(ANALYST_STATUSES),
    AlertStatus.acknowledged: {AlertStatus.in_progress, AlertStatus.closed},
    AlertStatus.in_progress: {AlertStatus.acknowledged, AlertStatus.closed},
    AlertStatus.closed: {AlertStatus.in_progress},
}
INCIDENTS = "incidents"
MAX_NOTE_LENGTH = 10_000
MAX_NOTES = 500


class LifecycleError(ValueError):
    """The change is not allowed (a 409 or 422 to the API); the message says why."""

    def __init__(self, message: str, conflict: bool = False):
        super().__init__(message)
        self.conflict = conflict


def _record(alert: dict, by: str, action: str, source: str | None = None, **details) -> None:
    entry = {"at": ecs.now_iso(), "by": by, "action": action}
    if source:
        entry["from_address"] = source
    entry.update({k: v for k, v in details.items() if v is not None})
    alert.setdefault("history", []).append(entry)
    alert["updated"] = entry["at"]


def set_status(alert: dict, status: str, *, by: str, reason: str | None = None, comment: str | None = None,
               source: str | None = None) -> dict:
    current = alert.get("status", AlertStatus.new)
    if status not in ALERT_STATUSES:
        raise LifecycleError(f"unknown status {status!r}; statuses are {', '.join(ALERT_STATUSES)}")
    # Stored as plain strings, whether they came as such or as vocabulary members (an API body's enums).
    status, reason = AlertStatus(status).value, None if reason is None else str(reason)
    if status == current:
        return alert
    if status not in TRANSITIONS.get(current, set()):
        raise LifecycleError(f"an alert cannot go from {current} to {status}", conflict=True)
    if status == AlertStatus.closed:
        if reason not in CLOSE_REASONS:
            raise LifecycleError(f"closing needs a reason, one of {', '.join(CLOSE_REASONS)}")
        alert["closed_at"] = ecs.now_iso()
        alert["closed_by"] = by
        alert["close_reason"] = reason
    elif current == AlertStatus.closed:
        if not (reason or comment):
            raise LifecycleError("re-opening a closed alert needs a reason or comment")
        alert["reopened_at"] = ecs.now_iso()
        for key in ("closed_at", "closed_by", "close_reason"):
            alert.pop(key, None)
    if status in ANALYST_STATUSES and not alert.get("acknowledged_at"):
        # Time to acknowledge counts from the first analyst action, whatever it is.
        alert["acknowledged_at"] = ecs.now_iso()
        alert["acknowledged_by"] = by
    alert["status"] = status
    alert.pop("suppressed_by", None)
    _record(alert, by, "status", source, **{"from": current, "to": status, "reason": reason, "comment": comment})
    return alert


def acknowledge(alert: dict, *, by: str, source: str | None = None) -> dict:
    if alert.get("status") in (AlertStatus.acknowledged, AlertStatus.in_progress):
        return alert
    return set_status(alert, AlertStatus.acknowledged, by=by, source=source)


def assign(alert: dict, assignee: str | None, *, by: str, source: str | None = None) -> dict:
    previous = alert.get("assignee")
    if previous == assignee:
        return alert
    alert["assignee"] = assignee
    _record(alert, by, "assign", source, **{"from": previous, "to": assignee})
    return alert


def add_note(alert: dict, text: str, *, by: str, source: str | None = None) -> dict:
    text = text.strip()
    if not text:
        raise LifecycleError("a note needs text")
    if len(text) > MAX_NOTE_LENGTH:
        raise LifecycleError(f"a note may be at most {MAX_NOTE_LENGTH} characters")
    notes = alert.setdefault("notes", [])
    if len(notes) >= MAX_NOTES:
        raise LifecycleError(f"an alert keeps at most {MAX_NOTES} notes; merge it into an incident instead",
                             conflict=True)
    note = {"id": uuid.uuid4().hex[:12], "at": ecs.now_iso(), "by": by, "text": text}
    notes.append(note)
    _record(alert, by, "note", source, note=note["id"])
    return alert


def new_incident(alerts: Iterable[dict], *, by: str, title: str | None = None, source: str | None = None) -> dict:
    """One incident for several alerts of one agency. The alerts point to it; the first alert is its primary."""
    alerts = list(alerts)
    if len(alerts) < 2:
        raise LifecycleError("merging needs at least two alerts")
    agencies = {ecs.get(a, "organization.id") for a in alerts}
    if len(agencies) != 1:
        # An incident belongs to one agency, like its alerts, so tenancy holds for incidents too.
        raise LifecycleError("alerts of different agencies cannot be merged into one incident", conflict=True)
    taken = [a["id"] for a in alerts if a.get("incident")]
    if taken:
        raise LifecycleError(f"alerts already in an incident: {', '.join(taken)}", conflict=True)
    ordered = sorted(alerts, key=lambda a: a.get("first_seen", ""))
    worst = worst_severity(a.get("severity") for a in alerts).value
    now = ecs.now_iso()
    incident = {
        "id": uuid.uuid4().hex,
        "title": title or f"Incident: {ordered[0].get('summary') or ordered[0]['rule']['title']}",
        "organization": {"id": agencies.pop()},
        "alerts": [a["id"] for a in ordered],
        "primary": ordered[0]["id"],
        "severity": worst,
        "first_seen": ordered[0].get("first_seen"),
        "last_seen": max(a.get("last_seen", "") for a in alerts),
        "created_at": now,
        "created_by": by,
        "history": [{"at": now, "by": by, "action": "merged", "alerts": [a["id"] for a in ordered],
                     **({"from_address": source} if source else {})}],
    }
    for alert in alerts:
        alert["incident"] = incident["id"]
        _record(alert, by, "merge", source, incident=incident["id"])
    return incident


def join_incident(incident: dict, alerts: Iterable[dict], *, by: str, source: str | None = None) -> dict:
    """More alerts of the incident's agency join an existing incident: its alert list, worst severity and time span
    grow, its history says who added which. Alerts already in an incident (this one or another) are refused."""
    alerts = list(alerts)
    if not alerts:
        raise LifecycleError("no alert to add")
    agency = ecs.get(incident, "organization.id")
    if any(ecs.get(a, "organization.id") != agency for a in alerts):
        raise LifecycleError("an incident holds the alerts of its own agency only", conflict=True)
    taken = [a["id"] for a in alerts if a.get("incident")]
    if taken:
        raise LifecycleError(f"alerts already in an incident: {', '.join(taken)}", conflict=True)
    added = [a["id"] for a in sorted(alerts, key=lambda a: a.get("first_seen", ""))]
    now = ecs.now_iso()
    incident["alerts"] = list(dict.fromkeys([*incident.get("alerts", []), *added]))
    incident["severity"] = worst_severity([incident.get("severity"), *(a.get("severity") for a in alerts)]).value
    firsts = [x for x in [incident.get("first_seen"), *(a.get("first_seen") for a in alerts)] if x]
    lasts = [x for x in [incident.get("last_seen"), *(a.get("last_seen") for a in alerts)] if x]
    if firsts:
        incident["first_seen"] = min(firsts)
    if lasts:
        incident["last_seen"] = max(lasts)
    incident.setdefault("history", []).append({"at": now, "by": by, "action": "joined", "alerts": added,
                                               **({"from_address": source} if source else {})})
    for alert in alerts:
        alert["incident"] = incident["id"]
        _record(alert, by, "merge", source, incident=incident["id"])
    return incident
