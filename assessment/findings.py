"""Findings: what an assessment saw wrong on an asset, kept as documents in the ``findings`` collection.

A finding's id is stable per asset, check and detail (``fnd-`` + a SHA-256 prefix), so each assessment updates the
findings it sees again instead of adding new ones. The asset's agency (``organization.id``) comes from the inventory,
never from the scanned host. Status:

- ``open``: seen, not yet dealt with; ``due`` is its first sighting plus the days its severity is given
  (``assessment.due_days``);
- ``accepted`` / ``false_positive``: set by an analyst with a reason (the API, audited);
- ``fixed``: an open or accepted finding that the next assessment of the same asset and check (for the same port)
  did not see. One that comes back after that is ``open`` again with ``regression: true`` (counted in
  ``regressions``) and a new due date. A false positive stays one whether it is seen again or not.

A check that could not run (a tool failed, the host did not answer) covers nothing: its findings are left as they
are, never marked fixed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from typing import Any, Iterable

from soc.storage.base import DocumentQuery, Store

FINDINGS = "findings"
RUNS = "assessment_runs"
STATUSES = ("open", "accepted", "fixed", "false_positive")
ANALYST_STATUSES = ("open", "accepted", "false_positive")
OPEN_STATUSES = ("open", "accepted")  # present on the asset as far as the suite knows
HISTORY_CAP = 50


@dataclass
class Observation:
    check: str  # ports | tls | headers | ssh | vulnerabilities
    detail: str  # what identifies it within the check, e.g. "443/protocol/TLS 1.0"
    title: str
    severity: str
    port: int | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # vulnerability: cve, cvss


def finding_id(asset: str, check: str, detail: str) -> str:
    return "fnd-" + hashlib.sha256(f"{asset}\x1f{check}\x1f{detail}".encode()).hexdigest()[:32]


def due_date(settings, severity: str, since: dt.datetime) -> str | None:
    days = getattr(settings.due_days, severity, None)
    return (since + dt.timedelta(days=days)).date().isoformat() if days else None


def _iso(now: dt.datetime) -> str:
    return now.astimezone(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _history(doc: dict, entry: dict) -> None:
    doc["history"] = (doc.get("history") or [])[-(HISTORY_CAP - 1):] + [entry]


def existing(store: Store, asset: str, check: str) -> list[dict]:
    out: list[dict] = []
    after = None
    while True:
        page = store.find_documents(FINDINGS, DocumentQuery(terms={"asset.id": asset, "check": check}, limit=500,
                                                            after=after))
        out.extend(page)
        if len(page) < 500:
            return out
        after = (page[-1]["id"], page[-1]["id"])


def record(store: Store, settings, target, check: str, observations: Iterable[Observation],
           covered_ports: set[int | None] | None, now: dt.datetime, run_id: str) -> dict[str, int]:
    """Apply one check's result on one target: new, seen again, reopened, fixed. ``covered_ports``: the ports the
    check looked at (None in it: findings without a port); findings of other ports of this check are left alone."""
    stamp = _iso(now)
    seen: dict[str, Observation] = {}
    for obs in observations:
        seen.setdefault(finding_id(target.asset, check, obs.detail), obs)
    current = {d["id"]: d for d in existing(store, target.asset, check)
               if (d.get("address") in (None, target.address))}
    counts = {"new": 0, "seen": 0, "reopened": 0, "fixed": 0}
    writes: list[dict] = []
    for fid, obs in seen.items():
        doc = current.get(fid)
        if doc is None:
            doc = {"id": fid, "check": check, "detail": obs.detail, "first_seen": stamp, "status": "open",
                   "regression": False, "regressions": 0, "due": due_date(settings, obs.severity, now),
                   "history": []}
            _history(doc, {"at": stamp, "by": "assessment", "action": "found", "run": run_id})
            counts["new"] += 1
        elif doc.get("status") == "fixed":
            doc.update(status="open", regression=True, regressions=int(doc.get("regressions") or 0) + 1,
                       reopened_at=stamp, due=due_date(settings, obs.severity, now), fixed_at=None)
            _history(doc, {"at": stamp, "by": "assessment", "action": "reopened (regression)", "run": run_id})
            counts["reopened"] += 1
        else:
            counts["seen"] += 1
        doc.update(title=obs.title, severity=obs.severity, port=obs.port, evidence=obs.evidence,
                   last_seen=stamp, last_run=run_id, address=target.address,
                   asset={"id": target.asset, "hostname": target.hostname},
                   organization={"id": target.agency}, **obs.extra)
        writes.append(doc)
    for fid, doc in current.items():
        if fid in seen or doc.get("status") not in OPEN_STATUSES:
            continue
        if covered_ports is not None and doc.get("port") not in covered_ports:
            continue
        doc.update(status="fixed", fixed_at=stamp, last_run=run_id)
        _history(doc, {"at": stamp, "by": "assessment", "action": "not seen again: fixed", "run": run_id})
        counts["fixed"] += 1
        writes.append(doc)
    if writes:
        store.put_documents(FINDINGS, writes)
    return counts


def set_status(doc: dict, status: str, reason: str, actor: str, now: dt.datetime, settings=None) -> dict:
    """An analyst's change: accepted or false_positive (with a reason), or back to open."""
    if status not in ANALYST_STATUSES:
        raise ValueError(f"status must be one of {', '.join(ANALYST_STATUSES)}")
    reason = (reason or "").strip()
    if status != "open" and not reason:
        raise ValueError("a reason is required to accept a finding or call it a false positive")
    if doc.get("status") == "fixed" and status != "open":
        raise ValueError("a fixed finding cannot be accepted or called a false positive; it reopens if seen again")
    stamp = _iso(now)
    previous = doc.get("status")
    doc.update(status=status, status_reason=reason, status_by=actor, status_at=stamp)
    _history(doc, {"at": stamp, "by": actor, "action": f"status {previous} -> {status}", "reason": reason})
    return doc


def counts_by(store: Store, agency: str | None = None, cap: int = 100_000) -> dict[str, Any]:
    """Open findings per severity and how many are past due (for posture and reports)."""
    today = dt.datetime.now(dt.timezone.utc).date().isoformat()
    terms: dict[str, Any] = {"status": list(OPEN_STATUSES)}
    if agency is not None:
        terms["organization.id"] = agency
    by_severity: dict[str, int] = {}
    overdue = total = 0
    after = None
    while total < cap:
        page = store.find_documents(FINDINGS, DocumentQuery(terms=terms, limit=1000, after=after))
        for doc in page:
            if doc.get("status") != "open":
                continue
            total += 1
            by_severity[doc.get("severity", "medium")] = by_severity.get(doc.get("severity", "medium"), 0) + 1
            if doc.get("due") and doc["due"] < today:
                overdue += 1
        if len(page) < 1000:
            break
        after = (page[-1]["id"], page[-1]["id"])
    return {"open": total, "by_severity": by_severity, "overdue": overdue}
