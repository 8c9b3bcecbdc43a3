"""What the reports read from records other parts of the suite keep: playbook runs, incidents, indicators, sightings.

Those parts are written separately, so this is the one place that knows their collection names and field spellings:
each reader turns a stored document into a small normalised record and tolerates missing fields. A collection that
does not exist (yet) reads as empty, and the report says "no data" for its section.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any, Iterator

from soc import ecs
from soc.storage.base import DocumentQuery, Store, StoreError

log = logging.getLogger(__name__)

# Collection names (change here if the producing component names them differently).
PLAYBOOK_RUNS = "playbook_runs"
INCIDENTS = "incidents"
INDICATORS = "indicators"
SIGHTINGS = "sightings"

PAGE = 1000
MAX_DOCS = 200_000  # per collection and report: a bound on memory, far above a province's month


def _first(doc: dict, *names: str, default: Any = None) -> Any:
    for name in names:
        value = ecs.get(doc, name)
        if value not in (None, "", []):
            return value
    return default


def _agency(doc: dict) -> str | None:
    return _first(doc, "organization.id", "agency", "agency_id")


def iter_collection(store: Store, collection: str, agency: str | None) -> Iterator[dict]:
    """Every document of a collection (for one agency, or all), paged by id; empty when it does not exist."""
    after = None
    seen = 0
    while seen < MAX_DOCS:
        query = DocumentQuery(limit=PAGE, after=after, sort="id")
        try:
            page = store.find_documents(collection, query)
        except StoreError as exc:  # a collection nobody has written yet is "no data", not a failure
            log.info("collection %s could not be read (%s): treated as empty", collection, exc)
            return
        for doc in page:
            if agency is None or _agency(doc) == agency:
                yield doc
        seen += len(page)
        if len(page) < PAGE:
            return
        after = (page[-1]["id"], page[-1]["id"])


@dataclass
class Block:
    address: str
    device: str = ""
    expires: str | None = None


@dataclass
class PlaybookRun:
    id: str
    playbook: str
    status: str
    started: str
    agency: str | None
    alert_ids: list[str] = field(default_factory=list)
    blocks: list[Block] = field(default_factory=list)


_BLOCK_WORDS = re.compile(r"block|deny|quarantine|isolat|drop", re.IGNORECASE)
_FAILED = {"failed", "error", "rolled_back", "aborted"}


def _blocks(doc: dict) -> list[Block]:
    """Blocked addresses: from ``blocked``/``blocks`` lists or from actions whose type says block/deny."""
    out: list[Block] = []
    for item in doc.get("blocked") or doc.get("blocks") or []:
        if isinstance(item, str):
            out.append(Block(item, expires=doc.get("expires")))
        elif isinstance(item, dict):
            address = _first(item, "address", "ip", "target", "value")
            if address:
                out.append(Block(str(address), str(_first(item, "device", "device_id", default="")),
                                 _first(item, "expires", "expires_at")))
    for action in doc.get("actions") or doc.get("steps") or []:
        if not isinstance(action, dict):
            continue
        kind = str(_first(action, "type", "action", "name", default=""))
        status = str(action.get("status", "")).lower()
        if not _BLOCK_WORDS.search(kind) or status in _FAILED:
            continue
        address = _first(action, "address", "ip", "target", "value", "params.address", "params.ip")
        if address:
            out.append(Block(str(address), str(_first(action, "device", "device_id", default="")),
                             _first(action, "expires", "expires_at", default=doc.get("expires"))))
    return out


def playbook_runs(store: Store, agency: str | None, start: str, end: str) -> list[PlaybookRun]:
    runs = []
    for doc in iter_collection(store, PLAYBOOK_RUNS, agency):
        started = _first(doc, "started", "created", "@timestamp", "requested")
        if not started or not (start <= _iso(started) < end):
            continue
        alert_ids = _first(doc, "alert_ids", default=None) or [a for a in [_first(doc, "alert_id", "trigger.alert_id",
                                                                                  "alert.id")] if a]
        runs.append(PlaybookRun(id=str(doc["id"]), playbook=str(_first(doc, "playbook", "playbook_id", "name",
                                                                       default="?")),
                                status=str(_first(doc, "status", "state", default="unknown")).lower(),
                                started=_iso(started), agency=_agency(doc), alert_ids=list(alert_ids),
                                blocks=_blocks(doc)))
    return sorted(runs, key=lambda r: (r.started, r.id))


@dataclass
class Incident:
    id: str
    title: str
    severity: str
    status: str
    opened: str
    acknowledged: str | None
    resolved: str | None
    alert_ids: list[str] = field(default_factory=list)


_ACK = re.compile(r"acknowledg|in_progress|assigned|triage", re.IGNORECASE)
_RESOLVED = re.compile(r"closed|resolved|false_positive", re.IGNORECASE)


def status_times(history: list[dict]) -> tuple[str | None, str | None]:
    """(acknowledged at, resolved at) from a history of {at, action | status, ...} entries."""
    ack = resolved = None
    for entry in history or []:
        if not isinstance(entry, dict) or not entry.get("at"):
            continue
        said = " ".join(str(entry.get(k, "")) for k in ("action", "status", "to"))
        if ack is None and _ACK.search(said):
            ack = _iso(entry["at"])
        if resolved is None and _RESOLVED.search(said):
            resolved = _iso(entry["at"])
            ack = ack or resolved  # closing an alert acknowledges it too
    return ack, resolved


def incidents(store: Store, agency: str | None, start: str, end: str) -> list[Incident]:
    out = []
    for doc in iter_collection(store, INCIDENTS, agency):
        opened = _first(doc, "first_seen", "opened", "created_at", "created", "@timestamp")
        if not opened or not (start <= _iso(opened) < end):
            continue
        ack, resolved = status_times(doc.get("history") or [])
        ack = _first(doc, "acknowledged_at", "acknowledged", default=None) or ack
        resolved = _first(doc, "resolved_at", "closed_at", "resolved", "closed", default=None) or resolved
        out.append(Incident(id=str(doc["id"]), title=str(_first(doc, "title", "summary", "name", default=doc["id"])),
                            severity=str(_first(doc, "severity", default="medium")),
                            status=str(_first(doc, "status", default="open")), opened=_iso(opened),
                            acknowledged=_iso(ack) if isinstance(ack, str) else None,
                            resolved=_iso(resolved) if isinstance(resolved, str) else None,
                            alert_ids=list(_first(doc, "alert_ids", "alerts", default=[]) or [])))
    return sorted(out, key=lambda i: (i.opened, i.id))


@dataclass
class Indicator:
    id: str
    type: str
    value: str
    direction: str  # received (from the national centre) | shared (to it)
    at: str
    source: str = ""


_NATIONAL = re.compile(r"national|ncsc|trung.?t[aâ]m|quoc.?gia|quốc gia|nc3", re.IGNORECASE)


def indicators(store: Store, agency: str | None, start: str, end: str,
               readable_tlp: tuple[str, ...] | None = None) -> list[Indicator]:
    """Indicators received from or shared with the national centre in the period (agency-tagged ones filtered).
    ``readable_tlp``: the TLP levels the report's reader may see (an agency's report); an indicator above them is
    listed by type and direction only, its value withheld, as the API's digest does."""
    out = []
    for doc in iter_collection(store, INDICATORS, None):
        owner = _agency(doc)
        if agency is not None and owner not in (None, agency):
            continue
        at = _first(doc, "shared_at", "received_at", "created", "first_seen", "@timestamp", "modified")
        if not at or not (start <= _iso(at) < end):
            continue
        direction = str(_first(doc, "direction", default="")).lower()
        source = str(_first(doc, "source", "source.name", "created_by", "provider", default=""))
        if direction not in ("received", "shared"):
            direction = "received" if _NATIONAL.search(source) else "shared"
        value = _first(doc, "value", "pattern", "indicator", "name", default="")
        tlp = str(_first(doc, "tlp", default="amber") or "amber").lower()
        if readable_tlp is not None and tlp not in readable_tlp:
            value = f"TLP:{tlp.upper()}"  # withheld: the agency may not read it
        out.append(Indicator(id=str(doc["id"]), type=str(_first(doc, "type", "indicator_type", default="?")),
                             value=str(value), direction=direction, at=_iso(at), source=source))
    return sorted(out, key=lambda i: (i.at, i.id))


@dataclass
class Sighting:
    id: str
    indicator: str
    value: str
    at: str
    event_ids: list[str] = field(default_factory=list)


def sightings(store: Store, agency: str | None, start: str, end: str) -> list[Sighting]:
    out = []
    for doc in iter_collection(store, SIGHTINGS, agency):
        at = _first(doc, "@timestamp", "seen", "last_seen", "first_seen", "created")
        if not at or not (start <= _iso(at) < end):
            continue
        events = _first(doc, "event_ids", "evidence", "events", default=[]) or []
        out.append(Sighting(id=str(doc["id"]), indicator=str(_first(doc, "indicator_id", "indicator.id",
                                                                    default="")),
                            value=str(_first(doc, "value", "indicator.value", default="")), at=_iso(at),
                            event_ids=[str(e) for e in events][:50]))
    return sorted(out, key=lambda s: (s.at, s.id))


def _iso(value: Any) -> str:
    try:
        return ecs.utc_iso(ecs.parse_time(str(value)))
    except ValueError:
        return str(value)
