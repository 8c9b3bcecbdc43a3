"""`soc ingest` as a real subprocess over a real EVTX file, a loghub log, a JSON lines file and a corrupt file:
the summary, the exit code, the store's contents, and a second run that stores nothing twice."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import yaml

from soc.storage import open_store
from soc.storage.base import AlertQuery, EventQuery
from tests.conftest import CORPUS, PROJECT, make_settings
from tests.ingest_samples import OSQUERY_EVENT, line

EVTX = CORPUS / "evtx-attack-samples" / "Credential Access" / "CA_4624_4625_LogonType2_LogonProc_chrome.evtx"
SSH_LOG = CORPUS / "loghub" / "OpenSSH" / "OpenSSH_2k.log"
AGENCY = "so-tttt"


def _run(tmp_path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOC__") and k != "SOC_CONFIG"}
    env["PYTHONPATH"] = str(PROJECT)
    return subprocess.run([sys.executable, "-m", "suite.cli", "ingest", "--config", str(tmp_path / "soc.yaml"), *args],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def test_soc_ingest_files(tmp_path):
    rules = [str(PROJECT / "detections" / "rules" / d) for d in ("linux", "windows")]
    (tmp_path / "soc.yaml").write_text(yaml.safe_dump({
        "data_dir": str(tmp_path), "store": {"url": f"sqlite:///{tmp_path / 'soc.db'}"},
        "detections": {"sigma_rule_dirs": rules}, "log_level": "WARNING"}), encoding="utf-8")
    broken = tmp_path / "broken.evtx"
    broken.write_bytes(b"ElfFile\x00" + bytes(range(256)) * 8)  # an EVTX magic, then garbage
    jsonl = tmp_path / "agent.jsonl"
    jsonl.write_bytes(line(OSQUERY_EVENT) + b"\n{not json at all\n\n")
    files = [str(EVTX), str(SSH_LOG), str(broken), str(jsonl)]

    first = _run(tmp_path, "--agency", AGENCY, *files)
    assert first.returncode == 1, first.stderr  # a file failed; the others were ingested
    out, err = first.stdout, first.stderr
    assert "4 files (1 failed), 2005 events stored, 1 dead letters (bad_json 1)" in out, out
    assert "alert: SSH Brute Force" in out
    assert f"{broken}: evtx, 0 records: FAILED: cannot read EVTX" in err
    assert f"{EVTX}: evtx, 4 records: ok" in out and f"{SSH_LOG}: lines, 2000 records" in out

    settings = make_settings(tmp_path)
    store = open_store(settings)
    try:
        assert store.count_events() == store.count_events(AGENCY) == 2005
        windows = store.search_events(EventQuery(terms={"event.dataset": "system.security"}, limit=100))
        assert len(windows) == 4 and {e["winlog"]["channel"] for e in windows} == {"Security"}
        assert all(e["organization"]["id"] == AGENCY for e in windows)
        letters = store.list_dead_letters(10)
        assert len(letters) == 1 and letters[0].raw == b"{not json at all"
        assert letters[0].source == f"file://{jsonl}:2 (agency {AGENCY})"
        assert letters[0].reason.startswith("bad_json: ")
        alerts = store.list_alerts(AlertQuery(limit=100))
        assert alerts and all(a["organization"]["id"] == AGENCY for a in alerts)
        stored_ids = {e["event"]["id"] for e in store.search_events(EventQuery(limit=5000))}
    finally:
        store.close()

    # Again: the same ids, so nothing is stored twice.
    second = _run(tmp_path, "--agency", AGENCY, *files)
    assert second.returncode == 1 and "2005 events stored" in second.stdout
    store = open_store(settings)
    try:
        assert store.count_events() == 2005
        assert {e["event"]["id"] for e in store.search_events(EventQuery(limit=5000))} == stored_ids
    finally:
        store.close()


def test_soc_ingest_usage_errors(tmp_path):
    (tmp_path / "soc.yaml").write_text(yaml.safe_dump({
        "data_dir": str(tmp_path), "store": {"url": f"sqlite:///{tmp_path / 'soc.db'}"}, "log_level": "WARNING",
        "detections": {"sigma_rule_dirs": [str(PROJECT / "detections" / "rules" / "linux")]}}), encoding="utf-8")
    unknown_agency = _run(tmp_path, "--agency", "no-such-agency", str(SSH_LOG))
    assert unknown_agency.returncode == 2 and "no agency 'no-such-agency'" in unknown_agency.stderr
    unknown_format = _run(tmp_path, "--format", "no_such_format", str(SSH_LOG))
    assert unknown_format.returncode == 2 and "unknown format" in unknown_format.stderr
    missing = _run(tmp_path, str(tmp_path / "nothere.log"))
    assert missing.returncode == 1 and "no such file or folder" in missing.stderr
    # A forced format: the loghub sshd lines read by the Linux auth parser, no agency (inventory decides).
    forced = _run(tmp_path, "--format", "linux_auth", str(SSH_LOG))
    assert forced.returncode == 0, forced.stderr
    assert "2000 events stored, 0 dead letters" in forced.stdout
    store = open_store(make_settings(tmp_path))
    try:
        events = store.search_events(EventQuery(limit=5))
        assert {e["event"]["dataset"] for e in events} == {"system.auth"}
        assert json.dumps(events).count("unknown_sender") == 5  # LabSZ is in no inventory
    finally:
        store.close()
