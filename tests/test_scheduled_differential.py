"""Streaming and scheduled detection agree: on the same events, the sets of (rule, event) matches are equal.

Events are real: the OpenSSH brute-force sample from loghub and every vendor fixture line of ../shared/corpus
(firewalls, WAF, web servers, auth, auditd, CEF), parsed by the suite's parsers and enriched from the sample
inventory, plus the test event sets of the suite's own rules. Rules: the suite's own and SigmaHQ's non-Windows rules.
Scheduled mode runs pySigma's OpenSearch Lucene backend on the real node, and its SQLite backend for the embedded
store.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from collectors.message import ParseError
from collectors.parsers.registry import ParseContext, all_parsers, parse_record
from detections.engine import DetectionEngine
from detections.scheduled import convert_rules, run_on_search_store, run_on_store
from detections.sigma.loader import load_rules
from detections.sigma.logsource import view_of
from inventory.enrich import enrich
from inventory.lookup import Inventory
from soc import ecs
from detections.settings import DetectionsConfig
from inventory.settings import InventoryConfig
from soc.storage import open_store
from tests.conftest import CORPUS, PROJECT, make_settings
from tests.test_own_rules import _cases, _events

SIGMAHQ = CORPUS / "sigmahq" / "rules"
RULE_DIRS = [DetectionsConfig().sigma_rule_dirs[0], SIGMAHQ / "linux", SIGMAHQ / "web", SIGMAHQ / "network",
             SIGMAHQ / "windows" / "builtin", SIGMAHQ / "windows" / "registry", SIGMAHQ / "windows" / "image_load",
             SIGMAHQ / "windows" / "network_connection"]
# Of the 1,183 process_creation rules, those reading the fields Security 4688 carries under other names (all of
# them would take the cluster minutes: Lucene builds an automaton per leading wildcard).
RULE_DIRS += sorted(path for path in (SIGMAHQ / "windows" / "process_creation").glob("*.yml")
                    if re.search(r"^\s+(IntegrityLevel|User|LogonId)\b", path.read_text(), re.M))
# Windows events: every record of these evtx-attack-samples folders, stored as Winlogbeat documents (Command and
# Control holds Security 5156 connections; all hold 4688 process creations and values with trailing spaces).
EVTX_FOLDERS = ["Command and Control", "Credential Access", "Lateral Movement", "Persistence",
                "Privilege Escalation"]
WINDOW = ("2000-01-01T00:00:00.000Z", "2100-01-01T00:00:00.000Z")
RECEIVED = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)


def _real_events() -> list[dict]:
    inventory = Inventory.load(InventoryConfig().path)
    ctx = ParseContext(zone=ZoneInfo("UTC"), received=RECEIVED)
    formats = {spec.name: spec for spec in all_parsers().values()}
    records: list[tuple[str, str]] = []
    for line in (CORPUS / "loghub" / "OpenSSH" / "OpenSSH_2k.log").read_text().splitlines():
        records.append(("linux_auth", line))
    by_folder = {"cisco_asa": "cisco_asa", "fortinet_fortigate": "fortigate", "sophos": "sophos_xg",
                 "pfsense": "pfsense", "iptables": "iptables", "nginx": None, "apache": None, "auditd": "auditd",
                 "cef": "cef", "modsecurity": "modsecurity", "sonicwall_firewall": "sonicwall"}
    for folder, fmt in by_folder.items():
        for path in sorted((CORPUS / "vendor-logs" / folder).rglob("*.log")):
            for line in path.read_text(errors="replace").splitlines():
                if line.strip():
                    records.append((fmt or "auto", line))
    events = []
    from collectors.sources.evtx import iter_evtx_documents

    for folder in EVTX_FOLDERS:
        for path in sorted((CORPUS / "evtx-attack-samples" / folder).glob("*.evtx")):
            for n, doc in enumerate(iter_evtx_documents(path)):
                ecs.put(doc, "event.id", f"evtx-{path.stem[:40]}-{n}")
                events.append(doc)
    for i, (fmt, text) in enumerate(records):
        try:
            doc = parse_record(text, fmt if fmt in formats or fmt == "auto" else "auto", ctx)
        except ParseError:
            continue
        if isinstance(doc["@timestamp"], datetime):
            doc["@timestamp"] = ecs.utc_iso(doc["@timestamp"])
        enrich(doc, inventory)
        ecs.put(doc, "event.id", f"real-{i:05d}")
        events.append(json.loads(json.dumps(doc, default=str)))
    return events


@pytest.fixture(scope="module")
def events() -> list[dict]:
    docs = _real_events()
    for case in _cases():
        for doc in _events(case.values[0]):
            doc["event"]["id"] = "case-" + doc["event"]["id"]
            docs.append(doc)
    assert len(docs) > 2500
    return docs


@pytest.fixture(scope="module")
def streaming(events) -> set[tuple[str, str]]:
    ruleset = load_rules(RULE_DIRS, cache_dir=PROJECT / ".cache" / "test-sigma")
    engine = DetectionEngine(ruleset)
    found = set()
    for doc in events:
        view, key = view_of(doc)
        found.update((rule.meta.id, doc["event"]["id"]) for rule in engine.match(view, key))
    assert len(found) > 50, "too few matches for the comparison to mean anything"
    return found


def _check(streaming, scheduled, conversion, windows: bool):
    # A rule the backend cannot express (Lucene has no field references) is reported and compared no further;
    # on SQLite, Windows rules are reported as skipped, with the reason.
    assert conversion.rules and all("field reference" in reason for _, reason in conversion.failed), \
        conversion.failed[:5]
    assert all(reason for _, reason in conversion.skipped)
    streaming = {(rule, event) for rule, event in streaming if rule in conversion.rule_ids}
    assert len(streaming) > 50
    assert any(event.startswith("evtx-") for _, event in streaming) is windows
    assert scheduled == streaming, {
        "only streaming": sorted(streaming - scheduled)[:10], "only scheduled": sorted(scheduled - streaming)[:10]}


def test_opensearch_lucene_matches_equal_streaming(events, streaming, opensearch_prefix, tmp_path):
    url, prefix = opensearch_prefix
    store = open_store(make_settings(tmp_path, store_url=url, index_prefix=prefix))
    try:
        store.write_events(events)
        store.refresh()
        conversion = convert_rules(RULE_DIRS, "lucene")
        _check(streaming, run_on_search_store(store, conversion, *WINDOW), conversion, windows=True)
    finally:
        store.close()


def test_sqlite_backend_matches_equal_streaming(events, streaming, tmp_path):
    store = open_store(make_settings(tmp_path))
    try:
        store.write_events(events)
        conversion = convert_rules(RULE_DIRS, "sqlite")
        _check(streaming, run_on_store(store, conversion, *WINDOW), conversion, windows=False)
    finally:
        store.close()
