"""YARA scanning: the same (rule, file) hits as the yara command-line tool on the signature-base rules, per-file
externals, size limit, timeout, unreadable and special files, threads, payloads and the ECS form of a match."""

from __future__ import annotations

import os
import shutil

import pytest

from detections.yara import externals, reference
from detections.yara.cache import load_pack
from detections.yara.ecs import match_to_ecs
from detections.yara.samples import SAMPLES, pe_stub, write_samples
from detections.yara.scanner import ScanOptions, Scanner
from tests.conftest import CORPUS

SIGNATURE_BASE = CORPUS / "yara-signature-base" / "yara"
needs_cli = pytest.mark.skipif(shutil.which("yara") is None or shutil.which("yarac") is None,
                               reason="needs the yara command-line tools (Debian package yara)")


@pytest.fixture(scope="module")
def pack(tmp_path_factory):
    return load_pack([SIGNATURE_BASE], cache_dir=tmp_path_factory.getbasetemp() / "yara-cache")


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    folder = tmp_path_factory.mktemp("yara-samples")
    write_samples(folder)
    # Real binaries from the corpus, scanned where they are (read-only): benign captures and event logs.
    corpus_files = sorted((CORPUS / "evtx-attack-samples").rglob("*.evtx"))[:6] + \
        sorted((CORPUS / "pcap").rglob("*.pcap"))[:6]
    return folder, corpus_files


@pytest.fixture(scope="module")
def cli_compiled(pack, tmp_path_factory):
    if shutil.which("yarac") is None:
        pytest.skip("needs the yara command-line tools")
    reference.annotate(pack)
    files = reference.comparable(pack)
    excluded = [h.namespace for h in pack.health if h not in files]
    out = tmp_path_factory.mktemp("yara-cli") / "rules.yarc"
    return reference.compile_with_cli(files, pack.externals, out), {h.namespace for h in files}, excluded


def _ours(results, namespaces):
    return {(m.namespace, m.rule, r.target.path) for r in results for m in r.matches if m.namespace in namespaces}


@needs_cli
def test_same_hits_as_the_yara_cli_with_per_file_externals(pack, samples, cli_compiled):
    folder, corpus_files = samples
    compiled, namespaces, excluded = cli_compiled
    assert excluded == []  # both engines accept every signature-base file (see test_yara_rules)
    files = sorted(str(p) for p in folder.rglob("*") if p.is_file()) + [str(p) for p in corpus_files]
    scanner = Scanner(pack, ScanOptions(threads=2))
    ours = _ours(scanner.scan_paths(files), namespaces)
    theirs = set()
    for path in files:
        st = os.stat(path)
        with open(path, "rb") as handle:
            values = externals.for_file(path, handle.read(externals.HEAD_BYTES), st.st_uid)
        theirs |= reference.scan(compiled, path, values, recursive=False)
    assert ours == theirs
    # Not vacuous: every sample's intended rule fired, including the ones that need filename/extension/filetype.
    fired = {(rule, os.path.relpath(path, folder)) for _, rule, path in ours}
    for sample in SAMPLES:
        for rule in sample.written_for:
            assert (rule, sample.name) in fired, f"{rule} did not fire on {sample.name}"
    assert len(ours) >= 15
    assert not any(os.path.relpath(p, folder) in {s.name for s in SAMPLES if not s.written_for}
                   for _, _, p in ours), "a benign sample matched"


@needs_cli
def test_same_hits_as_yara_r_on_a_folder_with_fixed_externals(pack, samples, cli_compiled):
    """`yara -r` sets externals once for the whole run (-d); the scanner does the same when asked to."""
    folder, _ = samples
    compiled, namespaces, _ = cli_compiled
    empty = dict(pack.externals)
    theirs = reference.scan(compiled, folder, empty, threads=2)
    scanner = Scanner(pack, ScanOptions(threads=2, per_file_externals=False))
    ours = _ours(scanner.scan_paths([folder]), namespaces)
    assert ours == theirs
    rules = {rule for _, rule, _ in ours}
    # Rules that need a file name do not fire without one, in either tool.
    assert "SUSP_Just_EICAR" in rules and "explorer_ANOMALY" not in rules and "SUSP_Known_Type_Cloaked_as_JPG" not in rules


def test_externals_per_file(tmp_path):
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "ext.yar").write_text("""
rule Ext_Exe { condition: filename == "Tool.EXE" and extension == ".exe" and filetype == "EXE" }
rule Ext_Dll { condition: filetype == "DLL" }
rule Ext_Owner { condition: owner == "%s" and filepath contains "/deep/" }
""" % externals.owner_name(os.getuid()))
    pack = load_pack([tmp_path / "rules"])
    deep = tmp_path / "deep"
    deep.mkdir()
    (deep / "Tool.EXE").write_bytes(pe_stub())
    (deep / "lib.dll").write_bytes(pe_stub(dll=True))
    (tmp_path / "Tool.EXE").write_bytes(b"plain text")
    hits = {(os.path.relpath(r.target.path, tmp_path), m.rule) for r in Scanner(pack).scan_paths([tmp_path])
            for m in r.matches}
    assert hits == {("deep/Tool.EXE", "Ext_Exe"), ("deep/Tool.EXE", "Ext_Owner"), ("deep/lib.dll", "Ext_Dll"),
                    ("deep/lib.dll", "Ext_Owner")}


def test_filetype_from_magic():
    assert externals.filetype(pe_stub()) == "EXE"
    assert externals.filetype(pe_stub(dll=True)) == "DLL"
    assert externals.filetype(b"MZ") == "EXE"  # too short for a PE header: still an MZ executable
    assert externals.filetype(b"\x7fELF\x02\x01") == "ELF"
    assert externals.filetype(b"%PDF-1.7") == "PDF"
    assert externals.filetype(b"{\\rtf1\\ansi") == "RTF"
    assert externals.filetype(b"hello") == ""


def test_threads_do_not_mix_up_externals(tmp_path):
    """yara-python sets externals on the Rules object during a match: concurrent scans must not share one."""
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "r.yar").write_text('rule Named { strings: $a = "same content" '
                                              'condition: $a and filename matches /^hit_/ }')
    pack = load_pack([tmp_path / "rules"])
    data = tmp_path / "data"
    data.mkdir()
    for i in range(300):
        (data / (f"hit_{i}.txt" if i % 3 == 0 else f"miss_{i}.txt")).write_bytes(b"same content " * 20_000)
    scanner = Scanner(pack, ScanOptions(threads=4))
    results = list(scanner.scan_paths([data]))
    assert len(results) == 300 and all(r.scanned for r in results)
    matched = sorted(os.path.basename(r.target.path) for r in results if r.matches)
    assert matched == sorted(f"hit_{i}.txt" for i in range(0, 300, 3))
    assert scanner._created <= 4


def test_size_limit_unreadable_and_special_files_are_reported_not_raised(tmp_path):
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "r.yar").write_text('rule Any_A { strings: $a = "A" condition: $a }')
    pack = load_pack([tmp_path / "rules"])
    data = tmp_path / "data"
    data.mkdir()
    (data / "small.txt").write_bytes(b"A" * 100)
    (data / "big.bin").write_bytes(b"A" * 5000)
    (data / "dangling").symlink_to(tmp_path / "gone")
    os.mkfifo(data / "fifo")
    scanner = Scanner(pack, ScanOptions(max_file_bytes=1000, threads=2))
    results = {os.path.basename(r.target.path): r for r in scanner.scan_paths([data, tmp_path / "nope.txt"])}
    assert [m.rule for m in results["small.txt"].matches] == ["Any_A"]
    assert results["big.bin"].problem.kind == "too_large" and "5000 bytes" in results["big.bin"].problem.reason
    assert results["dangling"].problem.kind == "unreadable"
    assert results["fifo"].problem.kind == "not_regular"
    assert results["nope.txt"].problem.kind == "unreadable"
    assert scanner.scan_bytes(b"A" * 2000, "upload.bin").problem.kind == "too_large"


def test_timeout_per_file(tmp_path):
    (tmp_path / "rules").mkdir()
    # A condition that walks every byte many times: seconds on a few hundred kB.
    (tmp_path / "rules" / "slow.yar").write_text(
        "rule Slow { condition: for all i in (0..filesize) : ( for all j in (0..200) : ( uint8(i) != 0xff ) ) }\n"
        'rule Quick { strings: $a = "quick" condition: $a }')
    pack = load_pack([tmp_path / "rules"])
    slow = tmp_path / "slow.bin"
    slow.write_bytes(b"\x00" * 2_000_000)
    quick = tmp_path / "quick.txt"
    quick.write_bytes(b"quick")
    scanner = Scanner(pack, ScanOptions(timeout_seconds=1))
    result = scanner.scan_file(slow)
    assert result.problem is not None and result.problem.kind == "timeout"
    assert result.seconds < 10
    assert [m.rule for m in scanner.scan_file(quick).matches] == ["Quick"]  # the next file is fine


def test_payload_scan_and_ecs_form(pack):
    body = next(s for s in SAMPLES if s.name.endswith("shell.php")).data
    scanner = Scanner(pack)
    result = scanner.scan_bytes(body, "upload.php", path="http://so-tttt.example/upload.php")
    rules = {m.rule for m in result.matches}
    assert {"ChinaChopper_Generic", "WEBSHELL_PHP_Generic_Eval"} <= rules
    assert result.target.kind == "payload" and len(result.target.sha256) == 64
    # A payload name sets the externals: the same bytes as a .jpg with an MZ header is a cloaked executable.
    cloaked = scanner.scan_bytes(pe_stub(), "avatar.jpg")
    assert "SUSP_Known_Type_Cloaked_as_JPG" in {m.rule for m in cloaked.matches}
    assert "SUSP_Known_Type_Cloaked_as_JPG" not in {m.rule for m in scanner.scan_bytes(pe_stub(), "a.bin").matches}

    match = next(m for m in result.matches if m.rule == "ChinaChopper_Generic")
    doc = match_to_ecs(match, timestamp="2026-11-22T10:00:00.000Z", extra={"source": {"ip": "203.0.113.9"}})
    assert doc["event"]["kind"] == "alert" and doc["event"]["category"] == ["malware"]
    assert doc["file"]["hash"]["sha256"] == result.target.sha256
    assert doc["file"]["path"] == "http://so-tttt.example/upload.php" and doc["file"]["name"] == "upload.php"
    assert doc["rule"]["name"] == "ChinaChopper_Generic" and doc["rule"]["ruleset"] == "apt_webshell_chinachopper.yar"
    assert doc["rule"]["id"] == match.meta["id"] and doc["source"]["ip"] == "203.0.113.9"
    assert doc["yara"]["strings"] and doc["yara"]["strings"][0]["identifier"] == "$x_php"
    again = match_to_ecs(match, timestamp="2026-11-22T11:00:00.000Z")
    assert again["event"]["id"] == doc["event"]["id"]  # same match, same id: a rescan does not duplicate


def test_string_previews_are_limited(tmp_path):
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "r.yar").write_text("rule Long { strings: $a = /B{100,}/ condition: $a }")
    pack = load_pack([tmp_path / "rules"])
    hits = Scanner(pack).scan_bytes(b"\x00\x01" + b"B" * 300, "x").matches[0].strings
    assert hits[0].offset == 2 and hits[0].length == 300
    assert hits[0].preview == "B" * 48 + "…"
    assert len(hits) <= 5  # a string matching at many offsets is cut to its first few


def test_a_file_name_that_is_not_utf8_is_scanned(tmp_path):
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "r.yar").write_text('rule Marker { strings: $a = "MARK" condition: $a and '
                                              'extension == ".php" and filename startswith "caf" }')
    pack = load_pack([tmp_path / "rules"])
    data = tmp_path / "data"
    data.mkdir()
    name = os.path.join(os.fsencode(data), b"caf\xe9.php")  # Latin-1 bytes, as an old Windows share leaves them
    with open(name, "wb") as handle:
        handle.write(b"<?php MARK ?>")
    results = list(Scanner(pack, ScanOptions(threads=2)).scan_paths([data]))
    assert len(results) == 1 and results[0].problem is None
    assert [m.rule for m in results[0].matches] == ["Marker"]
    assert os.fsencode(results[0].target.path) == name


def test_engine_turns_a_collected_http_body_into_ecs_alerts(pack):
    from detections.yara.service import YaraEngine
    from detections.yara.settings import YaraSettings

    engine = YaraEngine(YaraSettings(rule_dirs=[str(SIGNATURE_BASE)]), pack)
    body = next(s for s in SAMPLES if s.name.endswith("chopper.aspx")).data
    context = {"source": {"ip": "198.51.100.23"}, "destination": {"ip": "10.20.1.15", "port": 80},
               "url": {"path": "/upload/x.aspx"}}
    result, docs = engine.scan_payload(body, "x.aspx", path="http://10.20.1.15/upload/x.aspx", extra=context)
    assert len(docs) == len(result.matches) >= 3
    assert all(d["event"]["kind"] == "alert" and d["url"]["path"] == "/upload/x.aspx" for d in docs)
    assert {d["rule"]["name"] for d in docs} >= {"ChinaChopper_Generic", "WEBSHELL_ASP_Nano"}
    assert len({d["event"]["id"] for d in docs}) == len(docs)
    clean, none = engine.scan_payload(b"<html>Cong thong tin dien tu</html>", "index.html")
    assert clean.matches == [] and none == []
