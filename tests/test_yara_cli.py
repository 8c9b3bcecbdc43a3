"""`soc yara scan` and `soc yara check`, run as real processes: JSON lines on stdout, summary on stderr."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from detections.yara.samples import write_samples
from tests.conftest import CORPUS, PROJECT

SIGNATURE_BASE = CORPUS / "yara-signature-base" / "yara"


def _soc(*args: str, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(PROJECT), "SOC__DATA_DIR": str(cwd)}
    env.pop("SOC_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "suite.cli", *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=300)


def _rules(folder):
    folder.mkdir()
    (folder / "good.yar").write_text('rule Marker { meta: score = 80 strings: $a = "SOC-TEST-MARKER" condition: $a }\n'
                                     'rule Php_Upload { condition: extension == ".php" and filesize > 0 }')
    (folder / "broken.yar").write_text("rule Broken {\n condition: $nothing\n}")
    return folder


def test_scan_prints_one_json_match_per_line_and_a_summary(tmp_path):
    rules = _rules(tmp_path / "rules")
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "a.txt").write_bytes(b"xx SOC-TEST-MARKER xx")
    (data / "sub" / "b.php").write_bytes(b"<?php echo 1; SOC-TEST-MARKER ?>")
    (data / "sub" / "clean.txt").write_bytes(b"nothing here")
    (data / "big.bin").write_bytes(b"SOC-TEST-MARKER" * 100_000)
    proc = _soc("yara", "scan", "--rules", str(rules), "--max-file-mb", "1", str(data), str(tmp_path / "missing"),
                cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    found = sorted((os.path.relpath(m["file"]["path"], data), m["rule"]) for m in lines)
    assert found == [("a.txt", "Marker"), ("sub/b.php", "Marker"), ("sub/b.php", "Php_Upload")]
    marker = next(m for m in lines if m["rule"] == "Marker" and m["file"]["path"].endswith("a.txt"))
    assert marker["namespace"] == "good.yar" and marker["meta"] == {"score": 80}
    assert marker["strings"] == [{"identifier": "$a", "offset": 3, "length": 15, "preview": "SOC-TEST-MARKER"}]
    assert len(marker["file"]["sha256"]) == 64 and marker["file"]["size"] == 21
    err = proc.stderr
    assert "rule files: 1 loaded, 1 failed" in err
    assert "files scanned: 3 " in err and "not scanned: too_large 1, unreadable 1" in err
    assert "matches: 3 in 2 files" in err
    assert "big.bin: too_large" in err and "missing: unreadable" in err
    assert "scanning" in err  # the progress bar went to stderr


def test_scan_signature_base_from_the_cache(tmp_path, tmp_path_factory):
    samples = tmp_path / "samples"
    write_samples(samples)
    cache = tmp_path_factory.getbasetemp() / "yara-cache"
    proc = _soc("yara", "scan", "--rules", str(SIGNATURE_BASE), "--cache-dir", str(cache), str(samples), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rules = {json.loads(line)["rule"] for line in proc.stdout.splitlines()}
    assert {"SUSP_Just_EICAR", "ChinaChopper_Generic", "explorer_ANOMALY", "SUSP_Known_Type_Cloaked_as_JPG"} <= rules
    assert "rule files: 741 loaded, 0 failed" in proc.stderr


def test_check_lists_every_rule_file_with_the_reason(tmp_path):
    rules = _rules(tmp_path / "rules")
    proc = _soc("yara", "check", "--rules", str(rules), cwd=tmp_path)
    assert proc.returncode == 1  # a file failed
    lines = proc.stdout.splitlines()
    assert any(line.startswith("loaded") and "2 rules" in line and "good.yar" in line for line in lines)
    broken = next(line for line in lines if "broken.yar" in line)
    assert broken.startswith("failed") and 'undefined string "$nothing"' in broken
    assert "2 rule files: 1 loaded (2 rules), 1 failed" in proc.stderr

    as_json = _soc("yara", "check", "--rules", str(rules), "--json", cwd=tmp_path)
    records = {r["namespace"]: r for r in map(json.loads, as_json.stdout.splitlines())}
    assert records["broken.yar"]["status"] == "failed" and records["good.yar"]["rules"] == 2

    (rules / "broken.yar").unlink()
    assert _soc("yara", "check", "--rules", str(rules), cwd=tmp_path).returncode == 0


def test_check_with_the_cli_shows_where_the_engines_disagree(tmp_path):
    rules = _rules(tmp_path / "rules")
    (rules / "broken.yar").unlink()
    (rules / "new.yar").write_text('rule New { strings: $a = "MZ" condition: any of ($a) at 0 }')
    proc = _soc("yara", "check", "--rules", str(rules), "--cli", cwd=tmp_path)
    assert proc.returncode == 1
    new = next(line for line in proc.stdout.splitlines() if "new.yar" in line)
    assert new.startswith("loaded") and "[yara CLI: rejected:" in new
    assert "yara CLI disagrees on 1 file(s): new.yar" in proc.stderr


def test_scan_output_stays_valid_json_for_a_name_that_is_not_utf8(tmp_path):
    rules = _rules(tmp_path / "rules")
    data = tmp_path / "data"
    data.mkdir()
    with open(os.path.join(os.fsencode(data), b"b\xe1o-c\xe1o.txt"), "wb") as handle:
        handle.write(b"SOC-TEST-MARKER")
    proc = _soc("yara", "scan", "--rules", str(rules), str(data), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    [match] = [json.loads(line) for line in proc.stdout.splitlines()]
    assert match["rule"] == "Marker" and os.fsencode(match["file"]["path"]).endswith(b"b\xe1o-c\xe1o.txt")
