"""YARA rule packs: broken files reported while the rest load and match, namespaces per file, the compiled-set
cache (reused, invalidated, survives corruption), and the signature-base corpus checked with yara-python and the
yara command-line tool."""

from __future__ import annotations

import os
import shutil
import time

import pytest

from detections.yara import reference
from detections.yara.cache import load_pack
from detections.yara.compiler import RulePackError, discover
from detections.yara.scanner import ScanOptions, Scanner
from tests.conftest import CORPUS

SIGNATURE_BASE = CORPUS / "yara-signature-base" / "yara"

GOOD = """
rule Marker_Alpha : webshell { meta: author = "soc" description = "alpha marker" score = 70
  strings: $a = "ALPHA-MARKER-1" condition: $a }
"""
ALSO_GOOD = """
rule Marker_Alpha { strings: $a = "ALPHA-MARKER-1" condition: $a }   // same name, other file: other namespace
rule Named_File { condition: filename == "invoice.pdf.exe" and extension == ".exe" }
"""
BROKEN = """
rule Fine_But_In_A_Broken_File { condition: true }
rule Broken { strings: $a = "x" condition: $b }
"""


def _write(folder, files: dict[str, str]):
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return folder


def test_broken_rule_file_is_reported_and_the_rest_load_and_match(tmp_path):
    rules = _write(tmp_path / "rules", {"good.yar": GOOD, "sub/also_good.yara": ALSO_GOOD, "broken.yar": BROKEN,
                                        "not_a_rule.txt": "ignored"})
    (rules / "binary.yar").write_bytes(b"\xff\xfe\x00rule \x00\x01")
    pack = load_pack([rules])
    by_ns = {h.namespace: h for h in pack.health}
    assert set(by_ns) == {"good.yar", "sub/also_good.yara", "broken.yar", "binary.yar"}
    assert by_ns["broken.yar"].status == "failed"
    assert 'undefined string "$b"' in by_ns["broken.yar"].reason and "(3)" in by_ns["broken.yar"].reason
    assert by_ns["binary.yar"].status == "failed" and by_ns["binary.yar"].reason
    assert (by_ns["good.yar"].status, by_ns["good.yar"].rules) == ("loaded", 1)
    assert (by_ns["sub/also_good.yara"].status, by_ns["sub/also_good.yara"].rules) == ("loaded", 2)
    assert (pack.loaded, pack.failed, pack.rule_count) == (2, 2, 3)

    sample = tmp_path / "invoice.pdf.exe"
    sample.write_bytes(b"hello ALPHA-MARKER-1 world")
    result = Scanner(pack).scan_file(sample)
    found = {(m.namespace, m.rule) for m in result.matches}
    # The rule of the broken file is not there even though it would match everything.
    assert found == {("good.yar", "Marker_Alpha"), ("sub/also_good.yara", "Marker_Alpha"),
                     ("sub/also_good.yara", "Named_File")}
    alpha = next(m for m in result.matches if m.namespace == "good.yar")
    assert alpha.tags == ["webshell"] and alpha.meta == {"author": "soc", "description": "alpha marker", "score": 70}
    assert [(s.identifier, s.offset, s.length, s.preview) for s in alpha.strings] == [("$a", 6, 14, "ALPHA-MARKER-1")]


def test_no_rule_files_or_only_broken_ones_is_a_clear_error(tmp_path):
    with pytest.raises(RulePackError, match="no YARA rule files"):
        load_pack([_write(tmp_path / "empty", {"readme.txt": "x"})])
    with pytest.raises(RulePackError, match="none of the 1 rule files compiles.*broken.yar"):
        load_pack([_write(tmp_path / "bad", {"broken.yar": BROKEN})])
    with pytest.raises(RulePackError, match="does not exist"):
        load_pack([tmp_path / "missing"])


def test_several_folders_get_distinct_namespaces(tmp_path):
    a = _write(tmp_path / "a", {"x.yar": GOOD})
    b = _write(tmp_path / "b", {"x.yar": GOOD})
    assert [s.namespace for s in discover([a, b])] == ["a/x.yar", "b/x.yar"]
    pack = load_pack([a, b])
    sample = tmp_path / "s.txt"
    sample.write_bytes(b"ALPHA-MARKER-1")
    assert {m.namespace for m in Scanner(pack).scan_file(sample).matches} == {"a/x.yar", "b/x.yar"}


def test_cache_is_reused_until_a_rule_file_changes(tmp_path):
    rules = _write(tmp_path / "rules", {"good.yar": GOOD, "broken.yar": BROKEN})
    cache = tmp_path / "cache"
    first = load_pack([rules], cache_dir=cache)
    assert first.origin == "compiled" and (cache / f"{first.key}.yarc").is_file()

    again = load_pack([rules], cache_dir=cache)
    assert (again.origin, again.key) == ("cache", first.key)
    # The health (including the broken file and its reason) comes back from the cache too.
    assert [h.to_dict() for h in again.health] == [h.to_dict() for h in first.health]
    sample = tmp_path / "s.txt"
    sample.write_bytes(b"ALPHA-MARKER-1")
    assert [m.rule for m in Scanner(again).scan_file(sample).matches] == ["Marker_Alpha"]

    # Fixing the broken file changes the key: compiled again, and the new rule is there.
    (rules / "broken.yar").write_text('rule Fixed { strings: $a = "ALPHA" condition: $a }')
    fixed = load_pack([rules], cache_dir=cache)
    assert fixed.origin == "compiled" and fixed.key != first.key and fixed.failed == 0
    assert sorted(m.rule for m in Scanner(fixed).scan_file(sample).matches) == ["Fixed", "Marker_Alpha"]
    # Adding a file changes it as well.
    _write(rules, {"more.yar": 'rule More { condition: false }'})
    assert load_pack([rules], cache_dir=cache).origin == "compiled"


def test_a_corrupt_cache_entry_is_compiled_again_not_fatal(tmp_path):
    rules = _write(tmp_path / "rules", {"good.yar": GOOD})
    cache = tmp_path / "cache"
    first = load_pack([rules], cache_dir=cache)
    (cache / f"{first.key}.yarc").write_bytes(b"not a compiled rule file")
    again = load_pack([rules], cache_dir=cache)
    assert again.origin == "compiled" and again.loaded == 1
    assert load_pack([rules], cache_dir=cache).origin == "cache"  # and the rewritten entry is good


def test_old_cache_entries_are_pruned(tmp_path):
    rules = _write(tmp_path / "rules", {"good.yar": GOOD})
    cache = tmp_path / "cache"
    keys = []
    for i in range(5):
        (rules / "good.yar").write_text(GOOD + f"\nrule Version_{i} {{ condition: false }}\n")
        keys.append(load_pack([rules], cache_dir=cache).key)
        time.sleep(0.01)  # distinct modification times
    left = sorted(p.stem for p in cache.glob("*.yarc"))
    assert len(left) == 3 and keys[-1] in left and keys[0] not in left


@pytest.mark.skipif(shutil.which("yarac") is None, reason="needs the yara command-line tools (Debian package yara)")
def test_a_file_only_one_engine_accepts_is_reported_and_left_out_of_comparisons(tmp_path):
    """yara-python is libyara 4.5, the Debian CLI 4.2.3: `any of ($a) at 0` is new syntax the CLI rejects."""
    rules = _write(tmp_path / "rules", {"good.yar": GOOD,
                                        "new_syntax.yar": 'rule New { strings: $a = "MZ" condition: any of ($a) at 0 }'})
    pack = load_pack([rules])
    assert pack.failed == 0  # yara-python takes both
    disagree = reference.annotate(pack)
    assert [h.namespace for h in disagree] == ["new_syntax.yar"]
    assert disagree[0].cli.startswith("rejected:") and "syntax error" in disagree[0].cli
    assert [h.namespace for h in reference.comparable(pack)] == ["good.yar"]


@pytest.mark.skipif(shutil.which("yarac") is None, reason="needs the yara command-line tools (Debian package yara)")
def test_signature_base_loads_completely_and_the_cli_agrees_on_every_file(tmp_path_factory):
    cache = tmp_path_factory.getbasetemp() / "yara-cache"  # shared with the other YARA test modules
    pack = load_pack([SIGNATURE_BASE], cache_dir=cache)
    assert len(pack.health) == len([p for p in SIGNATURE_BASE.rglob("*") if p.suffix in (".yar", ".yara")]) == 741
    failed = [(h.namespace, h.reason) for h in pack.health if h.status == "failed"]
    assert failed == []
    assert pack.rule_count > 5800
    # Files using the externals compile because they are declared.
    uses_externals = [h for h in pack.health if "ext_vars" in h.namespace]
    assert uses_externals and all(h.status == "loaded" for h in uses_externals)
    disagree = reference.annotate(pack, threads=os.cpu_count() or 2)
    assert [(h.namespace, h.cli) for h in disagree] == []


def test_scanning_goes_on_when_the_cache_entry_is_removed_underneath(tmp_path):
    """Another suite pruning the cache folder must not stop this one from adding scanning instances."""
    rules = _write(tmp_path / "rules", {"good.yar": GOOD})
    cache = tmp_path / "cache"
    pack = load_pack([rules], cache_dir=cache)
    shutil.rmtree(cache)
    sample = tmp_path / "s.txt"
    sample.write_bytes(b"ALPHA-MARKER-1")
    copy = pack.new_rules()  # what the scanner's pool does for each extra concurrent scan
    assert [m.rule for m in copy.match(str(sample), externals=pack.externals)] == ["Marker_Alpha"]
    scanner = Scanner(pack, ScanOptions(threads=3))
    results = list(scanner.scan_paths([sample] * 12))
    assert all([m.rule for m in r.matches] == ["Marker_Alpha"] for r in results)


def test_settings_section_and_the_cache_default(tmp_path):
    from types import SimpleNamespace

    from detections.yara.service import yara_settings
    from detections.yara.settings import YaraSettings

    # No yara section: defaults, cache under the data dir.
    found = yara_settings(SimpleNamespace(data_dir=str(tmp_path)))
    assert found.cache_dir == str(tmp_path / "cache" / "yara") and found.rule_dirs[0].endswith("yara-signature-base/yara")
    # A section (as soc/config.py would hold it) wins; an explicit cache_dir is kept.
    section = YaraSettings(rule_dirs=["/srv/rules"], cache_dir="/var/cache/soc-yara", threads=4)
    found = yara_settings(SimpleNamespace(data_dir=str(tmp_path), yara=section))
    assert (found.rule_dirs, found.cache_dir, found.threads) == (["/srv/rules"], "/var/cache/soc-yara", 4)
    with pytest.raises(ValueError):
        YaraSettings.model_validate({"rule_dir": ["typo"]})  # unknown keys are refused, like the rest of the config
