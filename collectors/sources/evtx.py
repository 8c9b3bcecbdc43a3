"""EVTX files as Winlogbeat-style documents, the form the Windows parsers take and the store keeps.

The ``evtx`` package (a Rust EVTX parser) gives each record as JSON; this turns it into what Winlogbeat would have
sent: ``winlog.channel``, ``winlog.event_id``, ``winlog.provider_name``, ``winlog.computer_name``,
``winlog.record_id`` and ``winlog.event_data`` with string values (as Winlogbeat sends them, so a field keeps one
type in the store whatever the event).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

from collectors.parsers.windows import normalize_event_data


def _text(value: Any) -> Any:
    if isinstance(value, dict):
        return _text(value.get("#text")) if "#text" in value else None
    return value


def _event_data(node: Any, out: dict[str, Any]) -> None:
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        if key == "#attributes":
            continue
        if key == "Data" and isinstance(value, list):
            texts = [str(_text(v)) for v in value if _text(v) is not None]
            if texts:
                out["Data"] = texts
        elif isinstance(value, dict) and "#text" not in value:
            _event_data(value, out)
        else:
            text = _text(value)
            if text is not None:
                out[key] = [str(v) for v in text] if isinstance(text, list) else str(text)


def winlogbeat_document(record: dict) -> dict:
    event = record.get("Event", record)
    system = event.get("System") or {}
    data: dict[str, Any] = {}
    _event_data(event.get("EventData"), data)
    _event_data(event.get("UserData"), data)
    channel = _text(system.get("Channel"))
    event_id = str(_text(system.get("EventID")))
    normalize_event_data(channel, event_id, data)
    created = (system.get("TimeCreated") or {}).get("#attributes", {}).get("SystemTime")
    return {
        "@timestamp": created,
        "event": {"code": event_id, "kind": "event"},
        "winlog": {
            "channel": channel,
            "event_id": event_id,
            "provider_name": (system.get("Provider") or {}).get("#attributes", {}).get("Name"),
            "computer_name": _text(system.get("Computer")),
            "record_id": str(_text(system.get("EventRecordID"))),
            "event_data": data,
        },
    }


def iter_evtx_documents(path: str | Path) -> Iterator[dict]:
    import evtx

    for record in evtx.PyEvtxParser(str(path), number_of_threads=1).records_json():
        yield winlogbeat_document(json.loads(record["data"]))
