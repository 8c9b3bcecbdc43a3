"""Incidents, and the responses an analyst starts from an alert page — merge it into an incident, silence alerts like
it, start a playbook — as data for the console's templates (soc_api/routers/console_incidents.py serves them).

Nothing here decides who may see or do what: the router reads and writes through the caller's Data and the playbook
service with the API's own calls (``Data.incidents``, ``Data.incident``, ``Data.merge_alerts``,
``detections.silences.new_silence`` then ``Data.create_silence``, ``Runner.plan`` then ``Runner.create``). These
functions shape what the pages show and what the forms offer:

- merging: the alert's related alerts (already on the alert page, read through the caller's scope) that could join
  it in a new incident — of the same agency and in no incident yet, as ``detections.lifecycle.new_incident``
  requires;
- silencing: matchers on the alert's labels (what the alert manager's silences match, ``match_labels``), proposed
  from the alert itself — its rule and its main entity checked, its other labels offered — and how long;
- playbooks: the enabled playbooks of the library (those whose triggers match the alert first), each input with what
  the alert gives it, and a digest of a plan, so that the run a person confirms is the one that was shown.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import timedelta
from typing import Any, Iterable, Mapping

from detections import silences
from soc import ecs
from soc_api.console.alerts import primary_entity
from soc_api.playbook_views import playbook_service

PAGE_SIZE = 50
INCIDENT_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
ALERT_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
MAX_MERGE = 200  # as the API's MergeRequest
JOIN_CHOICES = 20  # incidents offered on an alert page to join (the agency's newest)
MAX_TITLE = 300
MAX_COMMENT = 2000  # as the API's SilenceIn
MERGE_CANDIDATES = 10
SILENCE_DURATIONS = {"1h": timedelta(hours=1), "4h": timedelta(hours=4), "24h": timedelta(hours=24),
                     "7d": timedelta(days=7), "30d": timedelta(days=30)}
DEFAULT_DURATION = "24h"
ENTITY_LABELS = ("source.ip", "host.name", "user.name", "destination.ip")  # a single-event alert's labels, in order
MAX_INPUT = 500
RESERVED_LABELS = ("rule.id",)


def valid_id(value: str | None, pattern: re.Pattern = INCIDENT_ID) -> bool:
    return bool(value) and bool(pattern.match(value))


# --- incidents -----------------------------------------------------------------------------------------------------
def incident_row(incident: Mapping) -> dict:
    return {"id": incident.get("id"), "title": incident.get("title"), "severity": incident.get("severity"),
            "agency": ecs.get(incident, "organization.id"), "alerts": len(incident.get("alerts") or []),
            "first_seen": incident.get("first_seen"), "last_seen": incident.get("last_seen"),
            "created_at": incident.get("created_at"), "created_by": incident.get("created_by")}


# --- merging -------------------------------------------------------------------------------------------------------
def joinable_incidents(data, alert: Mapping) -> list[dict]:
    """The newest incidents of the alert's agency (at most JOIN_CHOICES), which the alert may join."""
    agency = ecs.get(alert, "organization.id")
    if not agency:
        return []
    page = data.incidents(agency=agency, limit=JOIN_CHOICES, cursor=None)
    return [incident_row(i) for i in page.items if ecs.get(i, "organization.id") == agency]


def merge_candidates(alert: Mapping, related: Iterable[Mapping]) -> list[dict]:
    """Related alerts that may be merged with this one: the same agency, in no incident (at most MERGE_CANDIDATES)."""
    agency = ecs.get(alert, "organization.id")
    out = []
    for item in related:
        other = item["alert"]
        if other.get("incident") or ecs.get(other, "organization.id") != agency or other["id"] == alert["id"]:
            continue
        out.append({"alert": other, "why": item.get("why") or []})
    return out[:MERGE_CANDIDATES]


def merge_ids(alert_id: str, chosen: Iterable[str], typed: str) -> tuple[list[str], list[str]]:
    """The alerts to merge: this one first, then those ticked, then those typed (separated by spaces or commas);
    each once. Also the typed values that cannot be alert ids."""
    ids = [alert_id]
    bad = []
    for value in list(chosen) + re.split(r"[\s,;]+", typed or ""):
        value = value.strip()
        if not value:
            continue
        if not ALERT_ID.match(value):
            bad.append(value[:80])
            continue
        if value not in ids:
            ids.append(value)
    return ids, bad


# --- silencing -----------------------------------------------------------------------------------------------------
def silence_proposals(alert: Mapping) -> list[dict]:
    """Matchers a silence of alerts like this one may have, all ``=`` on the alert's own label values: its rule and
    its main entity (checked), then its other labels (the agency among them), unchecked. Only labels: they are what
    a silence is matched against (a value that is not a label would never match)."""
    labels = silences.match_labels(dict(alert))
    own = {str(k): str(v) for k, v in (alert.get("labels") or {}).items()}
    rule_id = labels.get("rule.id", "")
    out = [{"name": "rule.id", "value": rule_id, "checked": bool(rule_id), "main": False}] if rule_id else []
    entity = primary_entity(alert)
    main = None
    if entity is not None:
        main = next((name for name, value in own.items() if value == entity[1] and name not in RESERVED_LABELS), None)
    if main is None:
        main = next((name for name in ENTITY_LABELS if own.get(name)), None)
    names = [name for name in own if name not in RESERVED_LABELS]
    if "organization.id" not in own and labels.get("organization.id"):
        names.append("organization.id")  # every alert has it (match_labels), even one stored without labels
    names.sort(key=lambda name: (name != main, name == "organization.id", name))
    for name in names:
        value = labels.get(name, "")
        if value == "":
            continue
        out.append({"name": name, "value": value, "checked": name == main, "main": name == main})
    return out


def silence_matchers(alert: Mapping, chosen: Iterable[str]) -> list[dict]:
    """The matchers of the proposals whose names were chosen (the values are the alert's, not the form's)."""
    wanted = set(chosen)
    return [{"name": p["name"], "op": "=", "value": p["value"]} for p in silence_proposals(alert)
            if p["name"] in wanted]


# --- playbooks -----------------------------------------------------------------------------------------------------
def playbook_choices(library, alert: Mapping) -> dict[str, list[dict]]:
    """The enabled playbooks: those whose triggers match the alert ("suggested"), then the others, each by title."""
    suggested, others = [], []
    for playbook in sorted(library.playbooks.values(), key=lambda p: (p.title.lower(), p.name)):
        if not playbook.enabled:
            continue
        entry = {"name": playbook.name, "title": playbook.title}
        (suggested if playbook.matches(dict(alert)) else others).append(entry)
    return {"suggested": suggested, "others": others}


def playbook_inputs(playbook, given: Mapping[str, str], planned: Mapping[str, Any] | None) -> list[dict]:
    """Each input of the playbook for the form: the value a person gave (only those are sent again: the others are
    resolved by the runner, from the alert or the default), and the value the plan used."""
    out = []
    for name, spec in playbook.inputs.items():
        used = (planned or {}).get(name)
        out.append({"name": name, "type": spec.type, "required": spec.required, "description": spec.description,
                    "from_alert": list(spec.from_alert), "default": spec.default, "value": given.get(name) or "",
                    "planned": "" if used in (None, "") else str(used)})
    return out


def read_inputs(playbook, form: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """The inputs a person filled in (``in.<name>``), as the API's ``inputs``; names of values too long."""
    values, too_long = {}, []
    for name in playbook.inputs:
        value = (form.get(f"in.{name}") or "").strip()
        if len(value) > MAX_INPUT:
            too_long.append(name)
            continue
        if value:
            values[name] = value
    return values, too_long


def plan_digest(plan: Mapping) -> str:
    """What a plan would do — its inputs, agency, approval, impact, and each step's changes per device with the exact
    commands — without the run id it was planned under (a confirmed run gets a new one)."""
    kept = {k: plan.get(k) for k in ("playbook", "agency", "inputs", "approval", "impact", "devices")}
    kept["steps"] = [{k: s.get(k) for k in ("id", "action", "status", "params", "plan", "description")}
                     for s in plan.get("steps") or []]
    text = json.dumps(kept, sort_keys=True, default=str)
    if plan.get("id"):
        text = text.replace(str(plan["id"]), "<run>")
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def approval_needed(plan: Mapping) -> bool:
    return bool((plan.get("approval") or {}).get("required"))


# --- the alert page's response forms ---------------------------------------------------------------------------------
def alert_page_context(request, data, view: Mapping) -> dict:
    """What the alert page's forms to merge, silence and start a playbook offer (for those who triage): no store
    query (the related alerts are the page's own), the playbook library from the playbook service the API uses."""
    alert = view["alert"]
    library = playbook_service(request).library
    return {"response": {
        "candidates": merge_candidates(alert, view.get("related") or []),
        "joinable": [] if alert.get("incident") else joinable_incidents(data, alert),
        "proposals": silence_proposals(alert),
        "durations": list(SILENCE_DURATIONS),
        "default_duration": DEFAULT_DURATION,
        "max_comment": MAX_COMMENT,
        "max_title": MAX_TITLE,
        "playbooks": playbook_choices(library, alert),
    }}
