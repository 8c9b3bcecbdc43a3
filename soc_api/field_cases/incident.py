"""The incident a received case becomes: one per case (id ``field-<case id>``), of the case's agency, holding the
case's verification, its files, the detections of the responder's local scan (timeline.jsonl) and the responder's
notes. It has the fields every incident has (detections/lifecycle.py ``new_incident``: title, organization, alerts,
primary, severity, first and last seen, who made it, history), so the API's and the console's incident pages list
and show it like any other; ``source: "field-case"`` and ``field_case`` say where it came from.

Completing the same case again updates its incident (verification, timeline, notes, a history entry), never makes
a second one; what analysts added meanwhile (alerts joined, history) stays.

Everything read from the case is the sender's: each timeline entry and note keeps only known fields, as bounded
text; a line that is not a JSON object is counted, not kept."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from soc import ecs
from soc.vocabulary import SEVERITIES, worst_severity

TIMELINE = "timeline.jsonl"
NOTES = "notes.jsonl"
TEXT_FIELDS = ("source", "level", "rule", "rule_id", "evidence", "record", "sha256", "details")
MAX_TEXT = 1000  # characters of one timeline field
MAX_LINE = 256 * 1024  # bytes of one JSON line read from the case
MAX_NOTES = 1000
MAX_NOTE = 64 * 1024  # characters, as field/case.py allows


def incident_id(case_id: str) -> str:
    return f"field-{case_id}"


def _lines(path: Path | None) -> Iterator[dict | None]:
    """Each line of a JSON-lines file of the case as an object, or None when it is not one."""
    if path is None or not path.is_file():
        return
    with open(path, "rb") as fh:
        while line := fh.readline(MAX_LINE + 1):
            if len(line) > MAX_LINE:  # skip the rest of an over-long line
                while line and not line.endswith(b"\n"):
                    line = fh.readline(MAX_LINE + 1)
                yield None
                continue
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except (ValueError, RecursionError):  # RecursionError: nested deeper than any entry is
                value = None
            yield value if isinstance(value, dict) else None


def _text(value) -> str | None:
    if value is None:
        return None
    return str(value)[:MAX_TEXT]


def _time(value) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        return ecs.utc_iso(ecs.parse_time(value))
    except ValueError:
        return None


def timeline_entry(raw: dict) -> dict:
    entry = {"timestamp": _time(raw.get("timestamp"))}
    entry.update({name: _text(raw.get(name)) for name in TEXT_FIELDS})
    techniques = raw.get("techniques")
    entry["techniques"] = [str(t)[:40] for t in techniques[:20]] if isinstance(techniques, list) else []
    return entry


def read_timeline(path: Path | None, cap: int) -> tuple[list[dict], int, int]:
    """(entries kept, entries in the file, lines that were not entries)."""
    kept, total, unreadable = [], 0, 0
    for raw in _lines(path):
        if raw is None:
            unreadable += 1
            continue
        total += 1
        if len(kept) < cap:
            kept.append(timeline_entry(raw))
    return kept, total, unreadable


def read_notes(path: Path | None) -> list[dict]:
    notes = []
    for raw in _lines(path):
        if raw is None or len(notes) >= MAX_NOTES:
            continue
        notes.append({"time": _time(raw.get("time")), "responder": _text(raw.get("responder")),
                      "text": str(raw.get("text") or "")[:MAX_NOTE]})
    return notes


def _severity(timeline: list[dict]) -> str:
    levels = [e["level"] for e in timeline if e.get("level") in SEVERITIES]
    return worst_severity(levels).value if levels else "low"


def build(existing: dict | None, case: dict, verification: dict, files: list[dict], timeline: tuple[list, int, int],
          notes: list[dict], *, by: str, source: str | None) -> dict:
    """The case's incident: ``existing`` updated, or a new one."""
    now = ecs.now_iso()
    entries, total, unreadable = timeline
    times = sorted(e["timestamp"] for e in entries if e["timestamp"])
    incident = dict(existing) if existing else {
        "id": incident_id(case["id"]), "alerts": [], "primary": "", "created_at": now, "created_by": by,
        "history": []}
    first = times[0] if times else case.get("case_created") or now
    last = times[-1] if times else case.get("sealed_at") or now
    incident.update({
        "title": (f"Field case {case['agency']}: {total} detections, collected by {case.get('responder') or '?'}"
                  + ("" if verification["ok"] else " — VERIFICATION FAILED"))[:300],
        "organization": {"id": case["agency"]},
        "severity": _severity(entries),
        "first_seen": min(first, incident.get("first_seen") or first) if existing else first,
        "last_seen": max(last, incident.get("last_seen") or last) if existing else last,
        "source": "field-case",
        "field_case": {
            "id": case["id"], "responder": case.get("responder"), "kit_key_id": case.get("kit_key_id"),
            "key_trusted": verification["key_trusted"], "signature_valid": verification["signature_valid"],
            "verification": verification, "files": [{k: f[k] for k in ("name", "size", "sha256", "kind", "status")}
                                                    for f in files],
            "received_at": case.get("announced_at"), "sealed_at": case.get("sealed_at"),
        },
        "timeline": entries,
        "timeline_total": total,
        "timeline_omitted": total - len(entries),
        "timeline_unreadable": unreadable,
        "notes": notes,
    })
    action = "field_case_verified" if existing else "field_case_received"
    incident.setdefault("history", []).append({
        "at": now, "by": by, "action": action, "ok": verification["ok"],
        "changed": verification["counts"]["changed"], "missing": verification["counts"]["missing"],
        "unexpected": verification["counts"]["unexpected"], **({"from_address": source} if source else {})})
    return incident
