"""The suite's fields are the suite's: what a sender writes cannot make its events another agency's.

Through the real paths — a running suite's HTTP ingest with a real agency API key, ``soc ingest --agency`` as a
subprocess on files (JSON lines; CEF lines with ``--format cef``), and syslog over TCP (CEF, LEEF and FortiGate
key=value extensions) — the
attacker (agency A's key) sends documents forging every field only the suite may set: ``organization.*``, ``soc.*``
(asset, sender certificate, claimed agency), ``event.id`` equal to the victim's stored event, ``event.ingested`` /
``created`` / ``original``, the suite's own tags, as top-level dotted keys, nested-dotted mixes and dotted keys
beside nested ones. The events stay the sender's, the victim (agency B) sees none of them through the events,
alerts and posture APIs, its stored event is not overwritten, its silent asset stays silent, the claim is kept in
``soc.claimed_agency``, and a dotted key that contradicts a nested one is a dead letter with its reason."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import uuid
from datetime import datetime, timezone

import pytest
import yaml

from soc import ecs
from soc.storage.base import AlertQuery, EventQuery
from tests.api_fixtures import AGENCY_A, AGENCY_B, call, client_for, event_doc, keys_for, running_suite
from tests.conftest import PROJECT, wait_until
from tests.ingest_samples import NXLOG_4688, WINLOGBEAT_4688, line

ATTACKER, VICTIM = AGENCY_A, AGENCY_B
VICTIM_ASSET = "so-yt-app-01"  # a server of the victim that sends nothing: it must stay silent in posture
VICTIM_CERT = "so-yt-app-01.syslog.tinh.example"
LINUX_RULES = PROJECT / "detections" / "rules" / "linux"
NDJSON = {"Content-Type": "application/x-ndjson"}


def _now() -> str:
    return ecs.utc_iso(datetime.now(timezone.utc))


def _base(marker: str, **fields) -> dict:
    return {"@timestamp": _now(), "message": f"forged {marker}", "event": {"dataset": "custom.app", "kind": "event"},
            **fields}


def forgeries(tag: str, victim_event_id: str, brute_ip: str) -> tuple[dict[str, dict], dict[str, dict]]:
    """(name → document that must be stored as the sender's, name → document that must be a dead letter)."""
    m = lambda name: f"{tag}-{name}"  # noqa: E731
    stored = {
        "org_dotted": _base(m("org_dotted"), **{"organization.id": VICTIM,
                                                "organization.name": "Department of Health"}),
        "soc_dotted": _base(m("soc_dotted"), **{
            "soc.asset.id": VICTIM_ASSET, "soc.asset.criticality": "critical", "soc.asset.kind": "server",
            "soc.sender.certificate": VICTIM_CERT, "soc.agency.name_vi": "Sở Y tế", "soc.claimed_agency": "nobody",
            "soc.payloads": [{"path": "/etc/passwd"}]}),
        "event_dotted": _base(m("event_dotted"), **{
            "event.id": victim_event_id, "event.ingested": "2000-01-01T00:00:00.000Z",
            "event.created": "2000-01-01T00:00:00.000Z", "event.original": "not what was sent",
            "log.source.address": "tcp://10.20.17.10:514", "observer.ip": ["10.20.17.10"]}),
        "event_nested_id": _base(m("event_nested_id"), event={"dataset": "custom.app", "id": victim_event_id,
                                                             "ingested": "2000-01-01T00:00:00.000Z"}),
        "tags": _base(m("tags"), tags=["unknown_sender", "unknown_agency", "own-tag"]),
        "nested_dotted": _base(m("nested_dotted"), **{
            "soc.asset": {"id": VICTIM_ASSET}, "soc": {"agency.kind": "department"},
            "organization": {"name.en": "Department of Health"}, "observer": {"ip.v4": "10.20.17.10"}},
            event={"dataset": "custom.app", "id.x": victim_event_id}),
        "deep_dotted": _base(m("deep_dotted"), **{"organization": {"id": VICTIM}, "host.name": "so-yt-app-01",
                                                  "host": {"os.name": "Ubuntu"}}),
        "winlogbeat": {**WINLOGBEAT_4688, "@timestamp": _now(), "message": f"forged {m('winlogbeat')}",
                       "organization.id": VICTIM, "soc.asset.id": VICTIM_ASSET, "event.id": victim_event_id},
        "nxlog": {**NXLOG_4688, "Message": f"forged {m('nxlog')}", "organization.id": VICTIM,
                  "soc.asset.id": VICTIM_ASSET, "event.id": victim_event_id},
    }
    # Failed SSH logins claiming the victim: the brute-force alert (and the playbooks it starts) must be the sender's.
    for i in range(6):
        stored[f"sshd_{i}"] = {"@timestamp": _now(), "message": f"Failed password for root {m(f'sshd_{i}')}",
                               "organization.id": VICTIM, "organization.name": "Department of Health",
                               "soc.asset.id": VICTIM_ASSET, "process": {"name": "sshd"},
                               "event": {"dataset": "system.auth", "action": "ssh_login", "outcome": "failure",
                                         "category": ["authentication"], "kind": "event"},
                               "source": {"ip": brute_ip}, "user": {"name": "root"}}
    refused = {
        "conflict_org": _base(m("conflict_org"), organization={"id": ATTACKER}, **{"organization.id": VICTIM}),
        "conflict_event_id": _base(m("conflict_event_id"), **{"event.id": victim_event_id}),  # event below
        "conflict_shape": _base(m("conflict_shape"), soc="text", **{"soc.asset.id": VICTIM_ASSET}),
        "conflict_deep": _base(m("conflict_deep"), **{"soc.asset": {"id": VICTIM_ASSET},
                                                      "soc": {"asset": {"id": "other"}}}),
    }
    refused["conflict_event_id"]["event"]["id"] = "mine"
    return stored, refused


# Maps whose keys are data names, not ECS paths (Windows data names, osquery columns, syslog structured data).
DATA_MAPS = {"winlog/event_data/", "winlog/user_data/", "osquery/result/columns/", "osquery/result/decorations/",
             "osquery/result/snapshot/", "osquery/result/diff_results/", "log/syslog/structured_data/"}


def _dotted_keys(value, path="") -> list[str]:
    """Dotted keys left in a stored document, outside the maps whose keys are data names."""
    found = []
    if isinstance(value, dict) and path not in DATA_MAPS:
        for key, child in value.items():
            if "." in key:
                found.append(f"{path}{key}")
            found += _dotted_keys(child, f"{path}{key}/")
    elif isinstance(value, list):
        for child in value:
            found += _dotted_keys(child, path)
    return found


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    folder = tmp_path_factory.mktemp("forged")
    with running_suite(folder, rule_dirs=[LINUX_RULES]) as running:
        running.test_keys = keys_for(running.store)
        running.test_folder = folder
        victim = event_doc(7, VICTIM, marker="VICTIM-ORIGINAL")
        victim["@timestamp"] = _now()
        running.store.write_events([victim])
        running.store.refresh()
        running.victim_event = victim
        yield running


def _sender_events(suite, tag: str) -> dict[str, dict]:
    """Every stored event carrying the tag, by the variant name in its original text, whoever's it is."""
    suite.store.refresh()
    found = {}
    for event in suite.store.search_events(EventQuery(text=tag, limit=1000)):
        names = re.findall(rf"{tag}-(\w+)", ecs.get(event, "event.original") or "")
        if names:
            found[names[0]] = event
    return found


def _check_stored(suite, tag: str, stored: dict[str, dict], raw: dict[str, bytes]) -> None:
    events = _sender_events(suite, tag)
    assert set(events) == set(stored), sorted(set(stored) - set(events))
    attacker = suite.inventory.agencies[ATTACKER]
    victim_id = suite.victim_event["event"]["id"]
    for name, event in events.items():
        assert event["organization"] == {"id": ATTACKER, "name": attacker.name_en}, (name, event["organization"])
        assert _dotted_keys(event) == [], (name, _dotted_keys(event))
        soc = event.get("soc") or {}
        assert (soc.get("asset") or {}).get("id") != VICTIM_ASSET, (name, soc)
        assert "certificate" not in (soc.get("sender") or {}) and "payloads" not in soc, (name, soc)
        assert soc.get("agency", {}).get("name_vi") == attacker.name_vi, (name, soc)
        claimed_victim = name.startswith(("org_dotted", "sshd_", "deep_dotted", "winlogbeat"))
        assert soc.get("claimed_agency") == (VICTIM if claimed_victim else None), (name, soc)
        assert event["event"]["id"] != victim_id and isinstance(event["event"]["id"], str), name
        assert event["event"]["ingested"] > "2020" and event["event"]["created"] > "2020", name
        assert event["event"]["original"] == raw[name].decode(), name
        assert event["log"]["source"]["address"] != "tcp://10.20.17.10:514", name
        assert not set(event.get("tags") or ()) & {"unknown_sender", "unknown_agency"}, (name, event.get("tags"))
    assert events["tags"]["tags"] == ["own-tag"]
    assert events["deep_dotted"]["host"]["name"] == "so-yt-app-01"  # the body's host, not the victim's asset
    # The victim's stored event is as it was.
    [kept] = suite.store.get_events([victim_id])
    assert kept["organization"]["id"] == VICTIM and "VICTIM-ORIGINAL" in kept["event"]["original"]


def _check_victim_sees_nothing(suite, tag: str, brute_ip: str) -> None:
    keys = suite.test_keys
    with client_for(suite) as client:
        listing = call(client, "GET", "/api/v1/events", keys[VICTIM], params={"limit": 500})
        assert listing.status_code == 200 and tag not in listing.text
        found = call(client, "GET", "/api/v1/events", keys[VICTIM], params={"q": f'"{tag}"', "limit": 100})
        assert found.status_code == 200 and found.json()["events"] == []
        for event in _sender_events(suite, tag).values():
            assert call(client, "GET", f"/api/v1/events/{event['event']['id']}", keys[VICTIM]).status_code == 404
        alerts = call(client, "GET", "/api/v1/alerts", keys[VICTIM], params={"limit": 500})
        assert alerts.status_code == 200 and brute_ip not in alerts.text and tag not in alerts.text
        posture = call(client, "GET", "/api/v1/posture", keys[VICTIM])
        assert posture.status_code == 200, posture.text
        silent = [s["asset"] for a in posture.json()["agencies"] for s in a["log_sources"]["silent"]]
        assert VICTIM_ASSET in silent, posture.json()
    assert all(a["organization"]["id"] == ATTACKER for a in suite.store.list_alerts(AlertQuery(limit=1000))
               if brute_ip in json.dumps(a))


def _check_dead_letters(suite, tag: str, refused: dict[str, dict]) -> None:
    letters = {d.raw: d for d in suite.store.list_dead_letters(1000) if tag.encode() in d.raw}
    for name, doc in refused.items():
        [letter] = [d for raw, d in letters.items() if f"{tag}-{name}".encode() in raw]
        assert letter.reason.startswith("dotted_conflict: "), (name, letter.reason)


def test_http_ingest_cannot_forge_suite_fields(suite):
    tag = f"http{uuid.uuid4().hex[:8]}"
    brute_ip = "203.0.113.201"
    stored, refused = forgeries(tag, suite.victim_event["event"]["id"], brute_ip)
    raw = {name: line(doc) for name, doc in {**stored, **refused}.items()}
    with client_for(suite) as client:
        answer = call(client, "POST", "/api/v1/ingest", suite.test_keys[ATTACKER],
                      content=b"\n".join(raw.values()) + b"\n", headers=NDJSON)
        assert answer.status_code == 202 and answer.json()["agency"] == ATTACKER
    assert suite.drain(30)
    _check_stored(suite, tag, stored, raw)
    _check_dead_letters(suite, tag, refused)
    forged = _sender_events(suite, tag)["event_dotted"]
    assert forged["observer"]["ip"] == "127.0.0.1" and forged["log"]["source"]["address"].startswith("http://")
    # The brute force is the sender's own alert.
    alerts = wait_until(lambda: [a for a in suite.store.list_alerts(AlertQuery(agency=ATTACKER, limit=500))
                                 if a["rule"]["name"] == "soc_ssh_brute_force" and brute_ip in json.dumps(a)], 30)
    assert alerts and alerts[0]["organization"]["id"] == ATTACKER
    _check_victim_sees_nothing(suite, tag, brute_ip)
    # A forged unknown_sender tag does not put the sender on the unknown-senders list.
    with client_for(suite) as client:
        unknown = call(client, "GET", "/api/v1/inventory/unknown-senders", suite.test_keys["analyst"]).json()
    assert not [u for u in unknown if u["transport"] == "http"], unknown


def _soc_ingest(suite, *args: str) -> subprocess.CompletedProcess:
    folder = suite.test_folder
    config = folder / "cli-soc.yaml"
    config.write_text(yaml.safe_dump({
        "data_dir": str(folder / "cli-data"), "store": {"url": f"sqlite:///{folder / 'soc.db'}"},
        "inventory": {"path": str(folder / "province.yaml")}, "extensions": [],
        "detections": {"sigma_rule_dirs": [str(LINUX_RULES)]}, "log_level": "WARNING"}), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOC__") and k != "SOC_CONFIG"}
    env["PYTHONPATH"] = str(PROJECT)
    return subprocess.run([sys.executable, "-m", "suite.cli", "ingest", "--config", str(config), *args],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=300)


def test_soc_ingest_files_cannot_forge_suite_fields(suite):
    tag = f"file{uuid.uuid4().hex[:8]}"
    brute_ip = "203.0.113.202"
    stored, refused = forgeries(tag, suite.victim_event["event"]["id"], brute_ip)
    raw = {name: line(doc) for name, doc in {**stored, **refused}.items()}
    jsonl = suite.test_folder / f"{tag}.jsonl"
    jsonl.write_bytes(b"\n".join(raw.values()) + b"\n")
    done = _soc_ingest(suite, "--agency", ATTACKER, str(jsonl))
    assert done.returncode == 0, done.stdout + done.stderr
    summary = f"{len(stored)} events stored, {len(refused)} dead letters (dotted_conflict {len(refused)})"
    assert summary in done.stdout, done.stdout
    _check_stored(suite, tag, stored, raw)
    _check_dead_letters(suite, tag, refused)
    _check_victim_sees_nothing(suite, tag, brute_ip)


def test_syslog_extension_keys_cannot_forge_suite_fields(suite):
    """CEF, LEEF and key=value senders choose their extension keys: through ``soc ingest --format cef`` (the record
    path, with the agency) and over syslog TCP (no agency at all), none of them reaches a suite field. (The parsers
    map known keys only; this holds the claims step to it on the syslog and record paths.)"""
    tag = f"rec{uuid.uuid4().hex[:8]}"
    victim_id = suite.victim_event["event"]["id"]

    def cef(name):
        return (f"CEF:0|Vendor|Product|1.0|100|forged {tag}-{name}|5|externalId={victim_id} "
                f"organization.id={VICTIM} soc.asset.id={VICTIM_ASSET} event.id={victim_id} tags=unknown_sender "
                f"dvc=10.20.17.10 src=203.0.113.9 msg={tag}-{name}")

    lines = suite.test_folder / f"{tag}.log"
    lines.write_text(cef("cef") + "\n" + cef("cef2") + "\n", encoding="utf-8")
    done = _soc_ingest(suite, "--agency", ATTACKER, "--format", "cef", str(lines))
    assert done.returncode == 0 and "2 events stored" in done.stdout, done.stdout + done.stderr
    leef = (f"LEEF:2.0|Vendor|WAF|1.0|4001|^|src=203.0.113.9^organization.id={VICTIM}^soc.asset.id={VICTIM_ASSET}"
            f"^event.id={victim_id}^tags=unknown_agency^msg={tag}-tcpleef")
    sent = [f"<134>Nov 22 16:10:01 cef-box {cef('tcpcef')}", f"<134>Nov 22 16:10:01 leef-box {leef}",
            f"<134>Nov 22 16:10:01 fgt date=2026-11-22 time=16:10:01 devname=\"FGT\" logid=\"0000000013\" "
            f"type=traffic organization.id={VICTIM} soc.asset.id={VICTIM_ASSET} event.id={victim_id} "
            f"srcip=203.0.113.9 dstip=198.51.100.9 action=deny msg=\"{tag}-tcpkv\""]
    with socket.create_connection(("127.0.0.1", suite.bound["syslog_tcp"]), timeout=10) as conn:
        conn.sendall("".join(s + "\n" for s in sent).encode())
    expected = {"cef", "cef2", "tcpcef", "tcpleef", "tcpkv"}
    events = wait_until(lambda: (lambda found: found if set(found) == expected else None)(_sender_events(suite, tag)),
                        30)
    assert events, _sender_events(suite, tag)
    for name, event in events.items():
        org = (event.get("organization") or {}).get("id")
        assert org == (ATTACKER if name.startswith("cef") else None), (name, event.get("organization"))
        assert _dotted_keys(event) == [], (name, _dotted_keys(event))
        soc = event.get("soc") or {}
        assert soc.get("asset") is None and soc.get("claimed_agency") is None, (name, soc)
        assert event["event"]["id"] != victim_id and f"{tag}-{name}" in event["event"]["original"], name
        tags = set(event.get("tags") or ())
        assert tags == ({"unknown_sender"} if name.startswith("tcp") else set()), (name, tags)
        if name.startswith("tcp"):
            assert event["observer"]["ip"] == "127.0.0.1", (name, event["observer"])  # the socket's, not dvc=
    [kept] = suite.store.get_events([victim_id])
    assert kept["organization"]["id"] == VICTIM and "VICTIM-ORIGINAL" in kept["event"]["original"]
    _check_victim_sees_nothing(suite, tag, "203.0.113.203")


def test_a_dotted_name_a_thousand_parts_long_is_one_dead_letter_not_a_lost_batch(tmp_path):
    """``"a.a.a…"`` with a thousand parts becomes a thousand levels once dotted names are read as fields: past the
    depth limit, that one document is a dead letter (too_deep); the others of the same batch, and another agency's
    batch after it, are stored."""
    from soc.storage.base import EventQuery

    with running_suite(tmp_path / "deep") as suite, client_for(suite) as client:
        keys = keys_for(suite.store)
        deep = _base("deep", **{".".join(["a"] * 1000): "x"})
        body = "\n".join(json.dumps(d) for d in (_base("before"), deep, _base("after"))) + "\n"
        answer = call(client, "POST", "/api/v1/ingest", keys[ATTACKER], content=body, headers=NDJSON)
        assert answer.status_code == 202, answer.text
        other = call(client, "POST", "/api/v1/ingest", keys[VICTIM],
                     content=json.dumps(_base("victim-after")) + "\n", headers=NDJSON)
        assert other.status_code == 202
        assert wait_until(lambda: suite.drain(1) and suite.store.count_events() >= 3, timeout=30)
        stored = {e["message"] for e in suite.store.search_events(EventQuery(limit=20))}
        assert {"forged before", "forged after", "forged victim-after"} <= stored and "forged deep" not in stored
        reasons = [d.reason for d in suite.store.list_dead_letters(10)]
        assert any(r.startswith("too_deep") for r in reasons), reasons
