"""The network admin's part of the console, as data for the templates (soc_api/routers/console_approvals.py serves
it): the approvals queue (pending playbook runs), runs with their audit trail, and the blocks in force.

Nothing here reads the store or decides who may see what: the router reads through the playbook service's records
with the API's own filters (``tenant_scope``) and hands over each run *as the API shows it to the caller*
(``soc_api/routers/playbooks.py``: an agency user's runs come without the devices' answers). These functions only
shape those documents for the pages: the planned commands grouped by device, the impact and the reasons for approval,
when the blocks a run would put in force expire, the steps as they ran, the rollback and expiry results, the run's
audit events in order, and for each block what an unblock (the rollback of the run that made it) would also undo.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any, Iterable, Mapping

from playbooks.context import InputError, parse_duration
from playbooks.records import LIVE_BLOCK_STATES, BlockState, RunState
from soc import ecs
from soc_api.console.i18n import translate

PAGE_SIZE = 20  # pending runs per page of the queue (each shows every command it would send)
RUNS_PAGE_SIZE = 50
BLOCKS_SHOWN = 200  # as GET /api/v1/playbooks/blocks by default
AUDIT_SHOWN = 200  # audit events of one run
MAX_REASON = 500  # as the API's RejectRequest
RECORD_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")  # run and block ids (hex in practice)
# The actions whose changes are recorded as blocks with a time to live (playbooks/actions/block.py, null_route.py);
# every other device change (a quarantine) stays until it is rolled back.
EXPIRING_ACTIONS = ("block", "null_route")
ROLLBACK_STATES = (RunState.SUCCEEDED, RunState.REVERTED)  # as Runner.rollback accepts
RUN_STATES = tuple(s.value for s in RunState)
BLOCK_STATES = tuple(s.value for s in BlockState)
LIVE = tuple(s.value for s in LIVE_BLOCK_STATES)
AUDIT_DETAIL = ("state", "reason", "message", "device", "target", "by", "ok", "alert_id")
# A run's life in order: events recorded in the same millisecond are shown in this order.
LIFE = {"run_created": 0, "run_refused": 0, "run_approved": 1, "run_rejected": 1, "approval_comment": 2,
        "run_finished": 3, "run_interrupted": 3, "run_rolled_back": 4}


def valid_id(value: str | None) -> bool:
    return bool(value) and bool(RECORD_ID.match(value))


def agency_name(inventory: Any, agency_id: str | None, lang: str) -> str:
    agency = inventory.agencies.get(agency_id) if agency_id else None
    if agency is None:
        return agency_id or ""
    return agency.name_vi if lang == "vi" else agency.name_en


def format_duration(seconds: int | None, lang: str) -> str:
    """3600 → "1 h" / "1 giờ"; 5400 → "1 h 30 min"; whole units only, the two largest."""
    if seconds is None:
        return ""
    parts = []
    rest = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        count, rest = divmod(rest, size)
        if count:
            parts.append(translate(lang, f"approvals.unit.{unit}", n=count))
    return " ".join(parts[:2]) or translate(lang, "approvals.unit.s", n=0)


# --- the plan of a run --------------------------------------------------------------------------------------------
def plan_by_device(run: Mapping) -> list[dict]:
    """What a run would send, device by device (in the order the steps name them): for each device its driver and
    each planned change (step, operation, target, the exact commands and their undo)."""
    devices: dict[str, dict] = {}
    for step in run.get("steps") or []:
        if step.get("status") == "skipped":
            continue
        for change in step.get("plan") or []:
            device = devices.setdefault(change.get("device") or "", {"device": change.get("device"),
                                                                    "driver": change.get("driver"), "changes": []})
            device["changes"].append({"step": step.get("id"), "operation": change.get("operation"),
                                      "target": change.get("target"), "vlan": change.get("vlan"),
                                      "description": change.get("description"),
                                      "commands": list(change.get("commands") or []),
                                      "rollback": list(change.get("rollback") or [])})
    return list(devices.values())


def other_steps(run: Mapping) -> list[dict]:
    """The steps that change no device (share an indicator, write a case note, notify) and the skipped ones."""
    out = []
    for step in run.get("steps") or []:
        if step.get("plan") and step.get("status") != "skipped":
            continue
        out.append({"id": step.get("id"), "action": step.get("action"), "status": step.get("status"),
                    "description": step.get("description") or step.get("message")})
    return out


def expiry(run: Mapping, default_ttl: int, now: datetime) -> list[dict]:
    """When what each blocking step puts in force expires: its time to live (the step's ``ttl``, else the
    configured default, as the block action plans it) and the moment that would be if it were put in force now."""
    out = []
    for step in run.get("steps") or []:
        if step.get("action") not in EXPIRING_ACTIONS or step.get("status") == "skipped":
            continue
        raw = (step.get("params") or {}).get("ttl")
        try:
            seconds = parse_duration(raw) if raw not in (None, "") else default_ttl
        except InputError:
            seconds = None
        out.append({"step": step.get("id"), "action": step.get("action"), "seconds": seconds,
                    "if_now": ecs.utc_iso(now + timedelta(seconds=seconds)) if seconds else None})
    return out


def changes_devices(run: Mapping) -> bool:
    return any(step.get("plan") for step in run.get("steps") or [] if step.get("status") != "skipped")


def trigger(run: Mapping, alerts: Mapping[str, dict]) -> dict:
    """What started the run: its alert (when the caller may see it: title, severity, summary) or a person."""
    started = run.get("started_by") or {}
    alert_id = run.get("alert_id")
    if alert_id:
        alert = alerts.get(alert_id)
        rule = (alert or {}).get("rule") or {}
        return {"kind": "alert", "id": alert_id, "visible": alert is not None,
                "title": rule.get("title") or rule.get("name") or rule.get("id") or alert_id,
                "severity": (alert or {}).get("severity"), "summary": (alert or {}).get("summary"),
                "started_by": started}
    return {"kind": "person" if started.get("kind") not in ("system", "alert") else "system",
            "started_by": started}


def pending_view(run: Mapping, *, alerts: Mapping[str, dict], inventory: Any, lang: str, default_ttl: int,
                 now: datetime) -> dict:
    """One card of the approvals queue."""
    return {
        "run": run,
        "title": run.get("playbook_title") or run.get("playbook"),
        "trigger": trigger(run, alerts),
        "agency": agency_name(inventory, run.get("agency"), lang),
        "devices": plan_by_device(run),
        "others": other_steps(run),
        "impact": run.get("impact") or {},
        "reasons": (run.get("approval") or {}).get("reasons") or [],
        "expiry": expiry(run, default_ttl, now),
        "inputs": sorted((run.get("inputs") or {}).items()),
    }


# --- a run as it ran ----------------------------------------------------------------------------------------------
def executed_steps(run: Mapping) -> list[dict]:
    """Each step with what it did on each device (commands, undo, outcome, the transcript when the run as shown
    carries one) or, for a step not run yet, what it plans to send."""
    out = []
    for step in run.get("steps") or []:
        entries = []
        for entry in step.get("devices") or []:
            entries.append({**entry, "commands": list(entry.get("commands") or []),
                            "rollback": list(entry.get("rollback") or []),
                            "exchanges": entry.get("exchanges"), "has_transcript": "exchanges" in entry})
        out.append({"id": step.get("id"), "action": step.get("action"), "status": step.get("status"),
                    "description": step.get("description"), "message": step.get("message"),
                    "started": step.get("started"), "finished": step.get("finished"),
                    "impact": step.get("impact") or {}, "entries": entries,
                    "plan": [] if entries else list(step.get("plan") or [])})
    return out


def trail(events: Iterable[Mapping]) -> list[dict]:
    """The run's audit events (playbook_audit), oldest first, each with who and the details it carries."""
    rows = []
    for event in sorted(events, key=lambda e: (str(e.get("at") or ""), LIFE.get(str(e.get("event")), 5))):
        actor = event.get("actor") or {}
        details = [(name, event[name]) for name in AUDIT_DETAIL if event.get(name) not in (None, "")]
        rows.append({"at": event.get("at"), "event": event.get("event"), "actor": actor, "details": details})
    return rows


def run_view(run: Mapping, *, alerts: Mapping[str, dict], inventory: Any, lang: str, events: Iterable[Mapping],
             blocks: list[dict] | None, default_ttl: int, now: datetime) -> dict:
    state = run.get("state")
    return {
        "run": run,
        "title": run.get("playbook_title") or run.get("playbook"),
        "state": state,
        "trigger": trigger(run, alerts),
        "agency": agency_name(inventory, run.get("agency"), lang),
        "approval": run.get("approval") or {},
        "impact": run.get("impact") or {},
        "inputs": sorted((run.get("inputs") or {}).items()),
        "steps": executed_steps(run),
        "devices": plan_by_device(run),
        "expiry": expiry(run, default_ttl, now) if state == RunState.PENDING_APPROVAL else [],
        "result": run.get("result") or {},
        "reverts": list(run.get("reverts") or []),
        "rolled_back": run.get("rolled_back") or {},
        "trail": trail(events),
        "blocks": blocks,
        "pending": state == RunState.PENDING_APPROVAL,
        "may_roll_back": state in ROLLBACK_STATES and any(
            entry.get("changed") for step in run.get("steps") or [] for entry in step.get("devices") or []),
    }


# --- blocks -------------------------------------------------------------------------------------------------------
def run_changes(run: Mapping | None) -> list[dict]:
    """Every device change a run made (what its rollback undoes, as Run.changes())."""
    if not run:
        return []
    return [{"device": e.get("device"), "operation": e.get("operation"), "target": e.get("target")}
            for step in run.get("steps") or [] for e in step.get("devices") or [] if e.get("changed")]


def block_rows(blocks: list[dict], runs: Mapping[str, dict | None], *, inventory: Any, lang: str) -> list[dict]:
    """Each block with the run that made it and what its Unblock does: the rollback of that run, possible while the
    run is succeeded (or reverted) — which also undoes the run's other changes, listed here."""
    rows = []
    for block in blocks:
        run_id = block.get("run_id")
        run = runs.get(run_id) if run_id else None
        own = (block.get("device"), block.get("kind") or "block", block.get("target"))
        also = [c for c in run_changes(run) if (c["device"], c["operation"], c["target"]) != own]
        live = block.get("state") in LIVE
        rows.append({
            "block": block,
            "run": run,
            "agency": agency_name(inventory, block.get("agency"), lang),
            "live": live,
            "may_unblock": live and run is not None and run.get("state") in ROLLBACK_STATES,
            "run_state": (run or {}).get("state"),
            "also": also,
        })
    return rows
