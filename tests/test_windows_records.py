"""Windows event records (soc/windows.py): one rule set, whichever way a record arrives and whoever reads it."""

from __future__ import annotations

import json

from soc import windows
from tests.conftest import CORPUS


def _as_text(view: dict) -> dict:
    """A view as the Sigma engine compares it: values as text, case folded (bools are "true" to it)."""
    def text(value):
        if isinstance(value, list):
            return [text(v) for v in value]
        if isinstance(value, bool):
            return "true" if value else "false"
        return None if value is None else str(value).casefold()
    return {name: text(value) for name, value in view.items()}


def test_every_corpus_record_looks_the_same_to_the_rules_from_a_file_and_from_the_store():
    import evtx

    records = 0
    for path in sorted((CORPUS / "evtx-attack-samples").rglob("*.evtx")):
        for raw in evtx.PyEvtxParser(str(path), number_of_threads=1).records_json():
            record = json.loads(raw["data"])
            hunted = windows.view_from_evtx(record)
            hunted.pop("TimeCreated", None)  # the stored document has it as @timestamp
            stored = json.loads(json.dumps(windows.winlogbeat_from_evtx(record)))
            from_store = windows.view_from_winlogbeat(stored)
            assert _as_text(from_store) == _as_text(hunted), (path.name, raw["event_record_id"])
            records += 1
    assert records > 8000


def test_a_winlogbeat_document_from_any_agent_takes_the_evtx_shape():
    document = {"event": {"code": 4688},
                "winlog": {"channel": "Security", "event_id": 4688, "record_id": 7,
                           "event_data": {"NewProcessName": "C:\\w\\x.exe", "Count": 3, "Flag": True, "Gone": None,
                                          "Threat Name": "T", "Data": [{"#text": "a"}, 2]},
                           "user_data": {"xml_name": "LogFileCleared", "SubjectUserName": "bob"}}}
    windows.normalize_winlogbeat(document)
    winlog = document["winlog"]
    assert (winlog["event_id"], winlog["record_id"], document["event"]["code"]) == ("4688", "7", "4688")
    assert "user_data" not in winlog
    assert winlog["event_data"] == {"NewProcessName": "C:\\w\\x.exe", "Image": "C:\\w\\x.exe", "Count": "3",
                                    "Flag": "True", "Threat Name": "T", "ThreatName": "T", "Data": ["a", "2"],
                                    "SubjectUserName": "bob", "User": "bob"}


def test_an_events_own_field_wins_over_an_alias():
    data = {"NewProcessName": "C:\\new.exe", "Image": "C:\\own.exe", "ThreatName": "own", "Threat Name": "spaced"}
    view = windows.view_from_winlogbeat({"event": {"code": "4688"}, "winlog": {"channel": "Security",
                                                                              "event_data": data}})
    assert (view["Image"], view["ThreatName"]) == ("C:\\own.exe", "own")
