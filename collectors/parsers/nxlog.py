"""Windows events as NXLog's im_msvistalog sends them with ``to_json()``: one flat object, NXLog's own fields
(``EventID``, ``Channel``, ``Hostname``, ``EventTime``, ``SourceName``, ``RecordNumber``, ``Keywords``...) beside the
event's data fields (``TargetUserName``, ``LogonType``, ``NewProcessName``...) at the top level.

The document is rewritten into the Winlogbeat shape the EVTX path produces (``winlog.channel``, ``winlog.event_id``,
``winlog.event_data`` with string values) and handed to the Windows parser of its channel, so the Windows rules see
the same fields whichever agent sent the event.
"""

from __future__ import annotations

from datetime import datetime

from collectors.message import ParseError
from collectors.parsers.registry import ParseContext, ParserSpec
from soc import ecs
from soc.windows import record_value

# NXLog's own fields (im_msvistalog and the core): everything else at the top level is the event's data.
NXLOG_FIELDS = frozenset({
    "EventTime", "EventReceivedTime", "Hostname", "Keywords", "EventType", "SeverityValue", "Severity", "EventID",
    "SourceName", "ProviderGuid", "Version", "Task", "OpcodeValue", "RecordNumber", "ActivityID",
    "RelatedActivityID", "ProcessID", "ThreadID", "Channel", "Domain", "AccountName", "UserID", "AccountType",
    "Message", "Category", "Opcode", "SourceModuleName", "SourceModuleType", "EventXML", "Qualifiers", "Level",
    "MessageSourceAddress", "ERROR_MESSAGE",
})
# Keywords as NXLog renders them (a number) -> the words Winlogbeat uses.
AUDIT_KEYWORDS = {"-9214364837600034816": "Audit Success", "-9218868437227405312": "Audit Failure",
                  "9232379236109516800": "Audit Success", "4503599627370496": "Audit Failure",
                  "9007199254740992": "Audit Success"}


def _record(doc: dict) -> dict:
    record = doc.get("_json")
    if not isinstance(record, dict) or "EventID" not in record or not isinstance(record.get("Channel"), str):
        raise ParseError("not_nxlog", "not an NXLog Windows event (needs EventID and Channel)")
    event_id = record["EventID"]
    if isinstance(event_id, bool) or not isinstance(event_id, (int, str)) or not str(event_id).strip().isdigit():
        raise ParseError("bad_event_id", f"NXLog EventID {event_id!r} is not a number")
    return record


def _time(value, ctx: ParseContext | None) -> str | None:
    """NXLog writes EventTime as local time without a zone ("2024-03-05 14:22:31") unless configured for ISO 8601."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace(" ", "T", 1).replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None and ctx is not None:
        moment = moment.replace(tzinfo=ctx.zone)
    return ecs.utc_iso(moment)


def winlogbeat_from_nxlog(record: dict, ctx: ParseContext | None = None) -> dict:
    """The Winlogbeat-shaped document (as soc/windows.py builds from EVTX) for an NXLog event.

    Built anew: of the NXLog object only its named fields are read, and every other top-level name goes to
    ``winlog.event_data`` as one data name, dots and all (xm_xml's ``Event.EventData.x``). So a top-level
    ``"organization.id"`` or ``"soc.asset.id"`` is event data, never the event's agency or asset."""
    event_id = str(record["EventID"]).strip()
    data = {key: record_value(value) for key, value in record.items() if key not in NXLOG_FIELDS and value is not None
            and not isinstance(value, dict)}
    keywords = record.get("Keywords")
    words = []
    if keywords is not None:
        word = AUDIT_KEYWORDS.get(str(keywords))
        if word is None and record.get("EventType") in ("AUDIT_SUCCESS", "AUDIT_FAILURE"):
            word = "Audit Success" if record["EventType"] == "AUDIT_SUCCESS" else "Audit Failure"
        if word:
            words.append(word)
    winlog = {
        "channel": record["Channel"],
        "event_id": event_id,
        "provider_name": record.get("SourceName") if isinstance(record.get("SourceName"), str) else None,
        "computer_name": record.get("Hostname") if isinstance(record.get("Hostname"), str) else None,
        "record_id": record_value(record.get("RecordNumber")) if record.get("RecordNumber") is not None else None,
        "event_data": data,
    }
    if words:
        winlog["keywords"] = words
    out = {"@timestamp": _time(record.get("EventTime"), ctx), "event": {"code": event_id, "kind": "event"},
           "winlog": {k: v for k, v in winlog.items() if v is not None}}
    if isinstance(record.get("Message"), str):
        out["message"] = record["Message"]
    if out["@timestamp"] is None:
        out.pop("@timestamp")
    return out


def parse_nxlog(doc: dict, ctx: ParseContext | None = None) -> dict:
    from collectors.parsers.windows import SPECS

    shaped = winlogbeat_from_nxlog(_record(doc), ctx)
    inner = {"_json": shaped}
    spec = next(s for s in SPECS if s.detect(inner))  # windows_eventlog accepts every channel
    parsed = spec.parse(inner, ctx)  # type: ignore[arg-type]
    ecs.put(parsed, "event.dataset", spec.dataset)
    ecs.put(parsed, "agent.type", "nxlog")
    return parsed


def detect(doc: dict) -> bool:
    record = doc.get("_json")
    return (isinstance(record, dict) and "EventID" in record and isinstance(record.get("Channel"), str)
            and "winlog" not in record)


SPEC = ParserSpec(name="nxlog_windows", dataset="windows.eventlog", carrier="json", parse=parse_nxlog, detect=detect,
                  description="Windows events from NXLog im_msvistalog (to_json), any channel")
