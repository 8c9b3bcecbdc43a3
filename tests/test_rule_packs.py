"""Rule packs (detections/packs.py, pack_archive.py, pack_changes.py) and the hot switch of the engine: installing a
folder, a zip or a tar.gz of rules built from the corpus's SigmaHQ folders, checksums, the change report, rollback,
bounded versions, and the engine swapping rules between batches with the windows of unchanged correlations kept.
(`tests/test_rule_packs_e2e.py` does install, switch and rollback against a real `soc serve`.)"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from detections.engine import DetectionEngine
from detections.pack_changes import compare
from detections.packs import ChecksumMismatch, PackError, PackStore, verify
from detections.settings import RulePacksConfig
from detections.sigma.loader import load_rules
from tests.conftest import CORPUS, PROJECT

SIGMAHQ = CORPUS / "sigmahq" / "rules"
PROCESS_CREATION = SIGMAHQ / "windows" / "process_creation"
OWN_LINUX = PROJECT / "detections" / "rules" / "linux"


def corpus_rules(count: int, start: int = 0) -> list[Path]:
    return sorted(PROCESS_CREATION.glob("proc_creation_win_certutil_*.yml"))[start:start + count] + \
        sorted(PROCESS_CREATION.glob("proc_creation_win_bitsadmin_*.yml"))[:3]


def pack_folder(folder: Path, files: list[Path], extra: dict[str, str] | None = None) -> Path:
    """A folder laid out like a SigmaHQ release (rules/windows/process_creation/...), with a README beside."""
    target = folder / "rules" / "windows" / "process_creation"
    target.mkdir(parents=True)
    for path in files:
        shutil.copy(path, target / path.name)
    (folder / "README.md").write_text("SigmaHQ rules\n")
    for name, text in (extra or {}).items():
        (target / name).write_text(text, encoding="utf-8")
    return folder


def zipped(folder: Path, archive: Path) -> Path:
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as out:
        for path in sorted(folder.rglob("*")):
            out.write(path, path.relative_to(folder).as_posix())
    return archive


def tarred(folder: Path, archive: Path) -> Path:
    with tarfile.open(archive, "w:gz") as out:
        out.add(folder, arcname=".")
    return archive


def _store(tmp_path, **config) -> PackStore:
    return PackStore(tmp_path / "packs", RulePacksConfig(**config))


def _install(store: PackStore, source: Path, sha256: str | None = None):
    with store.locked():
        version, extracted = store.install(source, sha256)
        store.switch_to(version.id)
        store.prune()
    return version, extracted


def test_a_folder_a_zip_and_a_tar_gz_install_the_same_rules(tmp_path):
    source = pack_folder(tmp_path / "src", corpus_rules(5))
    store = _store(tmp_path)
    versions = [_install(store, s)[0] for s in (source, zipped(source, tmp_path / "p.zip"),
                                                tarred(source, tmp_path / "p.tar.gz"))]
    digests = {v.meta["content_digest"] for v in versions}
    assert len(digests) == 1 and all(v.meta["rule_files"] == 8 and v.meta["ignored"] == 1 for v in versions)
    files = sorted(p.relative_to(versions[2].rules_dir).as_posix() for p in versions[2].rules_dir.rglob("*.yml"))
    assert files[0].startswith("rules/windows/process_creation/proc_creation_win_")
    assert store.current() == versions[2]
    assert load_rules([versions[2].rules_dir]).loaded == 8


def test_the_checksum_beside_the_archive_or_given_is_checked(tmp_path):
    archive = zipped(pack_folder(tmp_path / "src", corpus_rules(2)), tmp_path / "sigma_core.zip")
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    store = _store(tmp_path)
    assert verify(archive, None, False).checked_by == ""
    (tmp_path / "sigma_core.zip.sha256").write_text(f"{digest}  sigma_core.zip\n")
    assert verify(archive, None, False).checked_by == "sigma_core.zip.sha256"
    assert verify(archive, digest.upper(), False).checked_by == "--sha256"
    (tmp_path / "sigma_core.zip.sha256").write_text(f"{'0' * 64}  sigma_core.zip\n")
    with pytest.raises(ChecksumMismatch):
        verify(archive, None, False)
    with pytest.raises(ChecksumMismatch):
        verify(archive, "ab" * 32, False)
    (tmp_path / "sigma_core.zip.sha256").unlink()
    with pytest.raises(PackError, match="require_checksum"):
        verify(archive, None, True)
    with pytest.raises(PackError, match="not a folder"):
        verify(tmp_path / "src", digest, False)
    assert store.versions() == []


def test_require_checksum_argument_wants_the_checksum_on_the_command_line(tmp_path):
    """A checksum file beside the archive travels with it: whoever swaps one swaps both. ``require_checksum:
    argument`` takes only --sha256 (the publisher's, read elsewhere)."""
    archive = zipped(pack_folder(tmp_path / "src", corpus_rules(2)), tmp_path / "sigma_core.zip")
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    (tmp_path / "sigma_core.zip.sha256").write_text(f"{digest}  sigma_core.zip\n")
    assert verify(archive, None, True).checked_by == "sigma_core.zip.sha256"
    with pytest.raises(PackError, match="--sha256"):
        verify(archive, None, "argument")
    assert verify(archive, digest, "argument").checked_by == "--sha256"
    store = _store(tmp_path, require_checksum="argument")
    with pytest.raises(PackError, match="argument"):
        _install(store, archive)
    version, _ = _install(store, archive, digest)
    assert version.verification.checked_by == "--sha256" and version.meta["sha256"] == digest
    with pytest.raises(PackError, match="require_checksum"):
        _install(store, tmp_path / "src")
    with pytest.raises(PackError, match="not a SHA-256"):
        verify(archive, "sha256:" + digest, False)


def test_a_rule_known_by_its_file_moves_with_it_when_served_from_the_cache(tmp_path):
    """A rule with neither id nor name is known by its path: the next pack version (another folder, the same text)
    comes from the cache, and its id is that of its new path."""
    text = ("title: no id\nstatus: test\nlevel: high\nlogsource: {product: linux, service: sshd}\n"
            "detection: {sel: {event.action: x}, condition: sel}\n")
    for version in ("v1", "v2"):
        (tmp_path / version).mkdir()
        (tmp_path / version / "anonymous.yml").write_text(text)
    first = load_rules([tmp_path / "v1"], cache_dir=tmp_path / "cache")
    second = load_rules([tmp_path / "v2"], cache_dir=tmp_path / "cache")
    assert second.from_cache == 1
    assert first.rules[0].meta.id == f"{tmp_path / 'v1' / 'anonymous.yml'}:no id"
    assert second.rules[0].meta.id == f"{tmp_path / 'v2' / 'anonymous.yml'}:no id"
    assert second.health[0].id == second.rules[0].meta.id
    report = compare(first, tmp_path / "v1", second, tmp_path / "v2")
    assert (report.added, report.removed, report.changed) == ([], [], [])  # the same rule, in both versions


def test_the_change_report_rollback_and_bounded_versions(tmp_path):
    files = corpus_rules(6)
    v1 = pack_folder(tmp_path / "v1", files)
    changed = files[2].read_text().replace("level: ", "level: critical\n#", 1)
    v2 = pack_folder(tmp_path / "v2", [f for f in files if f != files[0] and f != files[2]] + corpus_rules(1, 6),
                     {files[2].name: changed, "broken.yml": "title: broken\nid: 0bad0000-0000-4000-8000-00000000000b\n"
                      "status: test\nlevel: high\nlogsource: {product: windows, category: process_creation}\n"
                      "detection: {sel: {Image|nosuch: x}, condition: sel}\n"})
    store = _store(tmp_path)
    first, _ = _install(store, v1)
    second, _ = _install(store, v2)
    before, after = load_rules([first.rules_dir]), load_rules([second.rules_dir])
    report = compare(before, first.rules_dir, after, second.rules_dir, first.id, second.id)
    assert {c.path.rsplit("/", 1)[1] for c in report.removed} == {files[0].name}
    assert {c.path.rsplit("/", 1)[1] for c in report.added} == {corpus_rules(1, 6)[0].name, "broken.yml"}
    assert {c.path.rsplit("/", 1)[1] for c in report.changed} == {files[2].name}
    [failing] = report.failing
    assert failing.id == "0bad0000-0000-4000-8000-00000000000b" and failing.new and "nosuch" in failing.reason
    assert report.rules_before == 9 and report.rules_after == 10
    # Rollback: back to v1, then to no pack, then nothing.
    with store.locked():
        assert store.rollback() == (second.id, first.id)
    assert store.current() == first
    with store.locked():
        assert store.rollback() == (first.id, None)
        with pytest.raises(PackError, match="no earlier"):
            store.rollback()
    assert store.current() is None
    # At most keep_versions stay on disk; the current one is always among them.
    for n in range(4):
        _install(store, v1 if n % 2 else v2)
    assert len(store.versions()) == 3 and store.current() in store.versions()
    assert all(p is None or store.version(p) is not None for p in store.pointer().previous)


def test_a_broken_pointer_is_an_error_the_suite_can_report(tmp_path):
    store = _store(tmp_path)
    store.root.mkdir(parents=True)
    store.pointer_file.write_text("{not json")
    with pytest.raises(PackError, match="cannot be read"):
        store.current()
    store.pointer_file.write_text(json.dumps({"current": "20260101T000000Z-gone", "previous": []}))
    with pytest.raises(PackError, match="missing"):
        store.current()


def test_the_cli_installs_reports_and_rolls_back(tmp_path):
    config = tmp_path / "soc.yaml"
    config.write_text(json.dumps({"data_dir": str(tmp_path / "data"),
                                  "detections": {"sigma_rule_dirs": [str(OWN_LINUX)]}}))
    files = corpus_rules(4)
    v1 = zipped(pack_folder(tmp_path / "v1", files), tmp_path / "v1.zip")
    v2 = tarred(pack_folder(tmp_path / "v2", files[1:]), tmp_path / "v2.tar.gz")
    (tmp_path / "v2.tar.gz.sha256").write_text(f"{hashlib.sha256(v2.read_bytes()).hexdigest()}  v2.tar.gz\n")

    def soc(*args):
        return subprocess.run([sys.executable, "-m", "suite.cli", "rules", *args, "--config", str(config)],
                              capture_output=True, text=True, cwd=PROJECT, timeout=300)

    first = soc("install", str(v1), "--json")
    assert first.returncode == 0, first.stderr
    one = json.loads(first.stdout)
    assert one["previous"] is None and one["checked_by"] is None and len(one["changes"]["added"]) == 7
    assert one["changes"]["selected_after"] == 7  # test/stable rules of level medium or worse
    text = soc("install", str(v2))
    assert text.returncode == 0, text.stderr
    assert "matches v2.tar.gz.sha256" in text.stdout and "1 removed" in text.stdout, text.stdout
    assert "  removed  " in text.stdout and files[0].name in text.stdout
    packs = json.loads(soc("packs", "--json").stdout)
    assert packs["previous"] == [None, one["installed"]] and len(packs["versions"]) == 2
    back = soc("rollback", "--json")
    assert back.returncode == 0, back.stderr
    answer = json.loads(back.stdout)
    assert answer["current"] == one["installed"] and [c["path"].rsplit("/", 1)[1]
                                                      for c in answer["changes"]["added"]] == [files[0].name]
    check = soc("check")
    assert f"rule pack {one['installed']}" in check.stderr
    assert soc("rollback").returncode == 0  # to no pack
    nothing = soc("rollback")
    assert nothing.returncode == 2 and "no earlier rule pack" in nothing.stderr  # as install: 2, nothing done
    again = json.loads(soc("install", str(v1), "--json").stdout)["installed"]
    (tmp_path / "v2.tar.gz.sha256").write_text(f"{'1' * 64}  v2.tar.gz\n")
    refused = soc("install", str(v2))
    assert refused.returncode == 2 and "not installed" in refused.stderr and "SHA-256" in refused.stderr
    assert json.loads(soc("packs", "--json").stdout)["current"] == again


def test_the_engine_swaps_rules_keeping_unchanged_correlation_windows(tmp_path):
    own = load_rules([OWN_LINUX])
    engine = DetectionEngine(own)

    def failures(first: int, count: int, address: str = "198.51.100.9"):
        return [{"@timestamp": f"2026-11-22T10:00:{n:02d}Z", "event": {"dataset": "system.auth",
                 "action": "ssh_login", "outcome": "failure", "id": f"e{n}"}, "process": {"name": "sshd"},
                 "source": {"ip": address}, "user": {"name": "root"}, "organization": {"id": "so-a"}}
                for n in range(first, first + count)]

    assert "soc_ssh_brute_force" not in {d.meta.name for d in engine.evaluate(failures(0, 3))}
    # A pack arrives: the same own rules plus others. The brute force's window (3 of 5) goes on.
    pack = pack_folder(tmp_path / "pack", corpus_rules(2))
    assert engine.use_rules(load_rules([OWN_LINUX, pack])) > 0
    assert len(engine.ruleset.rules) > len(own.rules)
    assert "soc_ssh_brute_force" in {d.meta.name for d in engine.evaluate(failures(3, 2))}
    # A correlation whose definition changed starts afresh.
    changed = tmp_path / "changed"
    shutil.copytree(OWN_LINUX, changed)
    rule = changed / "ssh_brute_force.yml"
    rule.write_text(rule.read_text().replace("gte: 5", "gte: 4"))
    engine.evaluate(failures(10, 3, "198.51.100.10"))
    engine.use_rules(load_rules([changed]))
    assert "soc_ssh_brute_force" not in {d.meta.name for d in engine.evaluate(failures(13, 2, "198.51.100.10"))}
    assert "soc_ssh_brute_force" in {d.meta.name for d in engine.evaluate(failures(15, 2, "198.51.100.10"))}


def test_the_suite_follows_the_pointer_and_keeps_its_rules_when_a_pack_cannot_be_used(tmp_path):
    from detections.active_rules import RULE_RELOADS, ActiveRules
    from detections.settings import DetectionsConfig

    config = DetectionsConfig(sigma_rule_dirs=[str(OWN_LINUX)])
    active = ActiveRules(config, tmp_path, dict).start()
    seen = []
    active.subscribe(seen.append, lambda exceptions: None)
    assert active.version is None and active.loaded == len(load_rules([OWN_LINUX]).health)
    store = PackStore.of(config, tmp_path)
    version, _ = _install(store, pack_folder(tmp_path / "v1", corpus_rules(2)))
    assert active.reload_if_changed() and active.version == version.id and seen[-1] is active.current
    assert active.loaded > len(load_rules([OWN_LINUX]).health)
    assert active.reload_if_changed() is False  # nothing changed since
    failed = RULE_RELOADS.labels(what="pack", result="failed")._value.get()
    store.pointer_file.write_text(json.dumps({"current": "20200101T000000Z-gone", "previous": []}))
    assert active.reload_if_changed() is False
    assert active.version == version.id and "missing" in active.last_error
    assert RULE_RELOADS.labels(what="pack", result="failed")._value.get() == failed + 1
