"""The field kit (`soc field`, issue 16) end to end through the command line, offline: a case from the corpus (three
EVTX files whose records SigmaHQ rules detect, and a pcap), collected, scanned, noted, sealed and verified; then one
collected byte changed, a file added and a file deleted, which the verification reports exactly.

The scan must find every detection the plain `soc hunt` finds on the same files with the same rules."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import cannot_run, CORPUS, PROJECT

EVTX = CORPUS / "evtx-attack-samples"
SIGMA = CORPUS / "sigmahq" / "rules" / "windows"
FILES = [EVTX / "Privilege Escalation" / "NTLM2SelfRelay-med0x2e-security_4624_4688.evtx",  # WmiPrvSE Spawned
         EVTX / "Command and Control" / "DE_RDP_Tunnel_5156.evtx",  # Outbound RDP Connections Over Non-Standard...
         EVTX / "Lateral Movement" / "ImpersonateUser-via local Pass The Hash Sysmon and Security.evtx"]  # PtH 2
PCAP = CORPUS / "pcap" / "datasets-04-http-dns" / "input.pcap"  # DNS and HTTP for example.com
RULES = [SIGMA / "process_creation" / "proc_creation_win_wmiprvse_spawning_process.yml", SIGMA / "network_connection",
         SIGMA / "builtin" / "security" / "account_management" / "win_security_pass_the_hash_2.yml"]
EXPECTED_TITLES = {"WmiPrvSE Spawned A Process", "Outbound RDP Connections Over Non-Standard Tools",
                   "Pass the Hash Activity 2"}


def soc(*args, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "suite.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=PROJECT, timeout=timeout, env={**os.environ, **(env or {})})


def _rule_args() -> list[str]:
    return [a for r in RULES for a in ("--rules", str(r))]


@pytest.fixture(scope="module")
def corpus_ready():
    missing = [p for p in [*FILES, PCAP, *RULES] if not p.exists()]
    if missing:
        cannot_run(f"corpus files missing: {missing}",
                   f"the corpus (../shared/corpus) must be there in CI: {missing}")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _hunt_detections(tmp_path: Path) -> set[tuple[str, str, str]]:
    """(rule id, file name, EventRecordID) of every detection the plain `soc hunt` finds on the same files."""
    out = tmp_path / "hunt.jsonl"
    run = soc("hunt", *FILES, *_rule_args(), "--no-cache", "--quiet", "--workers", "1", "--output", out)
    assert run.returncode == 0, run.stderr
    found = set()
    for line in out.read_text().splitlines():
        d = json.loads(line)
        found.add((d["rule"]["id"], Path(d["file"]).name, f"EventRecordID {d['record_id']}"))
    return found


def test_a_corpus_case_collected_scanned_sealed_and_verified(tmp_path, corpus_ready):
    case = tmp_path / "case"
    key = tmp_path / "kit" / "kit.pem"
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config")}

    made = soc("field", "new", case, "--agency", "so-tttt", "--responder", "Nguyễn Văn A", "--key", key, env=env)
    assert made.returncode == 0, made.stderr
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert not any(p.suffix == ".pem" for p in case.rglob("*"))
    info = json.loads((case / "case.json").read_text())
    assert info["agency"] == "so-tttt" and info["responder"] == "Nguyễn Văn A"

    collected = soc("field", "collect", case, *FILES, PCAP, "--quiet", env=env)
    assert collected.returncode == 0, collected.stderr
    log = [json.loads(line) for line in (case / "collection.jsonl").read_text().splitlines()]
    assert {e["source"]: e["sha256"] for e in log} == {str(p): _sha(p) for p in [*FILES, PCAP]}
    assert {e["kind"] for e in log} == {"evtx", "pcap"}
    for entry in log:  # the copy is the original, byte for byte, and read-only
        copy = case / entry["path"]
        assert _sha(copy) == entry["sha256"] and entry["collected_at"].endswith("Z")
        assert not copy.stat().st_mode & 0o222

    # Indicators: an export holding a domain the pcap asks for and an address an EVTX event connects to.
    indicators = tmp_path / "indicators.txt"
    indicators.write_text("example.com\n")
    scanned = soc("field", "scan", case, *_rule_args(), "--no-cache", "--quiet", "--indicators", indicators, env=env)
    assert scanned.returncode == 0, scanned.stderr
    assert "YARA: no rules configured" in scanned.stderr
    timeline = [json.loads(line) for line in (case / "timeline.jsonl").read_text().splitlines()]
    sigma = {(d["rule_id"], Path(d["evidence"]).name, d["record"]) for d in timeline if d["source"] == "sigma"}
    hunted = _hunt_detections(tmp_path)
    assert hunted and hunted <= sigma, hunted - sigma
    assert {d["rule"] for d in timeline if d["source"] == "sigma"} == EXPECTED_TITLES
    for d in timeline:  # each names its evidence file (in the case, with the hash taken at collection) and record
        assert (case / d["evidence"]).is_file() and d["sha256"] == _sha(case / d["evidence"]) and d["record"]
    pcap_hits = [d for d in timeline if d["source"] == "indicator"]
    assert pcap_hits and all(d["evidence"].endswith("input.pcap") for d in pcap_hits)
    assert any(d["details"] == "dns.question.name=example.com" for d in pcap_hits)
    csv_rows = (case / "timeline.csv").read_text().splitlines()
    assert csv_rows[0].startswith("timestamp,source,level,rule") and len(csv_rows) == len(timeline) + 1
    assert [d["timestamp"] for d in timeline] == sorted(d["timestamp"] for d in timeline)

    noted = soc("field", "note", case, "Arrived 09:00; the file server was already off the network", env=env)
    assert noted.returncode == 0, noted.stderr
    sealed = soc("field", "seal", case, "--key", key, env=env)
    assert sealed.returncode == 0, sealed.stderr
    manifest = json.loads((case / "manifest.json").read_bytes())
    assert manifest["agency"] == "so-tttt" and manifest["responder"] == "Nguyễn Văn A"
    assert manifest["public_key"] == info["kit_public_key"]
    assert {e["sha256"] for e in manifest["collections"]} == {_sha(p) for p in [*FILES, PCAP]}
    listed = {f["path"]: f for f in manifest["files"]}
    on_disk = {p.relative_to(case).as_posix() for p in case.rglob("*") if p.is_file()} - {"manifest.json",
                                                                                          "manifest.sig"}
    assert set(listed) == on_disk
    assert all(listed[p]["sha256"] == _sha(case / p) for p in listed)
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    Ed25519PublicKey.from_public_bytes(base64.b64decode(manifest["public_key"])).verify(
        base64.b64decode((case / "manifest.sig").read_bytes()), (case / "manifest.json").read_bytes())

    ok = soc("field", "verify", case, "--public-key", info["kit_public_key"], env=env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "signature: valid" in ok.stdout and f"{len(listed)} files checked: OK" in ok.stdout

    # One collected byte changed, a file added, a file deleted: exactly those are reported, exit 1.
    changed = case / log[0]["path"]
    os.chmod(changed, 0o600)
    with open(changed, "r+b") as fh:
        fh.seek(4096)
        byte = fh.read(1)
        fh.seek(4096)
        fh.write(bytes([byte[0] ^ 0x01]))
    (case / "evidence" / "planted.txt").write_text("not collected\n")
    deleted = next(p for p in listed if p.startswith("derived/"))
    (case / deleted).unlink()
    bad = soc("field", "verify", case, env=env)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    reported = [line for line in bad.stdout.splitlines() if line.split(":")[0] in ("changed", "missing", "added")]
    assert reported == [f"changed: {log[0]['path']}", f"missing: {deleted}", "added: evidence/planted.txt"]
    assert "signature: valid" in bad.stdout and "NOT OK" in bad.stdout


def test_the_default_key_is_made_once_under_the_config_folder(tmp_path):
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config")}
    key = tmp_path / "config" / "soc-suite" / "field" / "kit-ed25519.pem"
    first = soc("field", "new", tmp_path / "a", "--agency", "x", "--responder", "r", env=env)
    assert first.returncode == 0 and "new kit key" in first.stderr, first.stderr
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    pem = key.read_bytes()
    second = soc("field", "new", tmp_path / "b", "--agency", "x", "--responder", "r", env=env)
    assert second.returncode == 0 and "new kit key" not in second.stderr
    assert key.read_bytes() == pem
    a, b = (json.loads((tmp_path / n / "case.json").read_text())["kit_public_key"] for n in "ab")
    assert a == b


def test_log_files_and_other_files_are_scanned_with_the_suites_parsers_yara_and_indicators(tmp_path):
    """A log file becomes ECS documents through the suite's parsers (Sigma and indicators name its line numbers);
    any other file is scanned with the given YARA rules."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "auth.log").write_text(
        "Dec  7 08:00:00 web01 sshd[123]: Failed password for root from 203.0.113.5 port 4242 ssh2\n"
        "not a log line any parser knows\n"
        "Dec  7 08:00:05 web01 sshd[123]: Accepted password for root from 203.0.113.5 port 4243 ssh2\n")
    (src / "dropper.bin").write_bytes(b"MZ\x90\x00....EVIL_MARKER_FIELD_KIT....")
    yara_dir = tmp_path / "yara"
    yara_dir.mkdir()
    (yara_dir / "marker.yar").write_text('rule FieldKitMarker { strings: $a = "EVIL_MARKER_FIELD_KIT" '
                                         'condition: $a }\n')
    sigma_dir = tmp_path / "sigma"
    sigma_dir.mkdir()
    (sigma_dir / "ssh.yml").write_text(
        "title: Test SSH Failed Password\nid: 00000000-0000-4000-8000-00000000f1e1\nstatus: test\n"
        "logsource:\n    product: linux\n    service: sshd\ndetection:\n    selection:\n"
        "        message|contains: 'Failed password'\n    condition: selection\nlevel: medium\n")
    (tmp_path / "indicators.txt").write_text("203.0.113.5\n")
    case, env = tmp_path / "case", {"XDG_CONFIG_HOME": str(tmp_path / "config")}
    assert soc("field", "new", case, "--agency", "a", "--responder", "r", env=env).returncode == 0
    assert soc("field", "collect", case, src, "-q", env=env).returncode == 0
    run = soc("field", "scan", case, "--rules", sigma_dir, "--yara-rules", yara_dir, "--indicators",
              tmp_path / "indicators.txt", "--no-cache", "-q", env=env)
    assert run.returncode == 0, run.stderr
    assert "1 lines no parser recognised" in run.stderr
    found = sorted((d["source"], d["rule"], d["evidence"], d["record"]) for d in
                   map(json.loads, (case / "timeline.jsonl").read_text().splitlines()))
    log, binary = "evidence/001/src/auth.log", "evidence/001/src/dropper.bin"
    assert found == [("indicator", "Indicator match: ipv4 203.0.113.5", log, "line 1"),
                     ("indicator", "Indicator match: ipv4 203.0.113.5", log, "line 3"),
                     ("sigma", "Test SSH Failed Password", log, "line 1"),
                     ("yara", "FieldKitMarker", binary, None)]


def test_collect_scan_seal_and_verify_open_no_network_connection(tmp_path, monkeypatch, corpus_ready):
    """In this process, with every way out to the network made to fail (IP sockets, name resolution): the whole case
    still goes through. (scapy, which decodes the pcap, lists the local interfaces over a netlink socket when it is
    imported: a question to the kernel, not the network, and allowed here.)"""
    import socket

    from field import keys
    from field.case import create_case
    from field.collect import collect
    from field.manifest import seal, verify
    from field.scan import scan

    tried = []
    originals = {name: getattr(socket.socket, name) for name in ("connect", "connect_ex", "sendto", "bind")}

    def refuse(*args, **kwargs):
        tried.append(args)
        raise OSError("network access in the field kit")

    def guarded(name):
        def call(self, *args, **kwargs):
            if self.family in (socket.AF_INET, socket.AF_INET6):
                return refuse(self, *args)
            return originals[name](self, *args, **kwargs)
        return call

    for name in originals:
        monkeypatch.setattr(socket.socket, name, guarded(name))
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    key, _ = keys.load_or_create(tmp_path / "kit.pem")
    public = keys.public_text(key.public_key())
    case = tmp_path / "case"
    create_case(case, "a", "r", public, keys.key_id(public))
    collect(case, [*FILES, PCAP])
    indicators = tmp_path / "indicators.txt"
    indicators.write_text("example.com\n")
    report = scan(case, rules=RULES, indicators=indicators, workers=1)
    assert {d["source"] for d in report.detections} == {"sigma", "indicator"}
    seal(case, key)
    result, _ = verify(case, public)
    assert result.ok and not tried
