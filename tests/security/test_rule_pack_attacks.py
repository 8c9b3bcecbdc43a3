"""A rule pack is input from outside (attacker: crafted file). Each hostile archive goes through the real
`soc rules install` (a subprocess, as an operator runs it): it is refused whole, nothing is written outside the pack
folder, no version is installed and the current pack stays current. The limits of ``detections.rule_packs`` are set
small here so that bombs stay small; the defaults are in docs/security.md. Then what a pack's rules may not do once
installed: take the ids or names of the suite's own rules, silence them through a correlation, or hide an alias bomb
behind a construct one YAML parser accepts and another refuses; and the archive installed is the one whose hash was
checked."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

from tests.conftest import CORPUS, PROJECT

RULE = (CORPUS / "sigmahq" / "rules" / "windows" / "process_creation" /
        "proc_creation_win_certutil_download.yml").read_bytes()
LIMITS = {"max_archive_bytes": 4 * 1024 * 1024, "max_members": 200, "max_total_bytes": 2 * 1024 * 1024,
          "max_file_bytes": 256 * 1024}
QUICK = 20.0  # seconds for a refusal, the interpreter's start included


@pytest.fixture
def site(tmp_path):
    """A data folder with a good pack installed, and the path an escape would write to."""
    config = tmp_path / "soc.yaml"
    config.write_text(json.dumps({"data_dir": str(tmp_path / "data"),
                                  "detections": {"sigma_rule_dirs": [], "rule_packs": LIMITS}}))
    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w") as out:
        out.writestr("rules/windows/certutil.yml", RULE)
    first = install(config, good)
    assert first.returncode == 0, first.stderr
    return {"config": config, "tmp": tmp_path, "current": pointer(tmp_path)["current"],
            "escape": tmp_path / "data" / "rules" / "evil.yml"}


def install(config: Path, archive: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "suite.cli", "rules", "install", str(archive), "--config",
                           str(config), *args], capture_output=True, text=True, cwd=PROJECT, timeout=120)


def pointer(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "data" / "rules" / "packs" / "current.json").read_text())


def refused(site, archive: Path, reason: str) -> None:
    started = time.monotonic()
    run = install(site["config"], archive)
    assert run.returncode == 2, (run.stdout, run.stderr)
    assert "not installed" in run.stderr and reason in run.stderr, run.stderr
    assert time.monotonic() - started < QUICK
    packs = site["tmp"] / "data" / "rules" / "packs"
    assert pointer(site["tmp"])["current"] == site["current"]
    assert [p.name for p in packs.iterdir() if p.is_dir()] == [site["current"]]  # no version, no staging left
    assert not list(packs.glob(".staging-*"))  # neither the staging folder nor the private copy of the archive
    for path in (site["escape"], site["tmp"] / "evil.yml", Path("/tmp/soc-rule-pack-evil.yml")):
        assert not path.exists(), path


def a_zip(path: Path, entries: list[tuple[zipfile.ZipInfo | str, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:
        for info, data in entries:
            out.writestr(info, data)
    return path


def a_tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as out:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            out.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def member(name: str, kind: bytes = tarfile.REGTYPE, **attrs) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    for key, value in attrs.items():
        setattr(info, key, value)
    return info


# --- names that lead out of the pack ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["../evil.yml", "rules/../../evil.yml", "/tmp/soc-rule-pack-evil.yml",
                                  "..\\..\\evil.yml", "C:/evil.yml", "rules/\x1b[2Jevil.yml"])
def test_a_zip_entry_named_out_of_the_pack_is_refused(site, name):
    archive = a_zip(site["tmp"] / "evil.zip", [("rules/ok.yml", RULE), (name, RULE)])
    refused(site, archive, "entry")


@pytest.mark.parametrize("name", ["../evil.yml", "./rules/../../../evil.yml", "/tmp/soc-rule-pack-evil.yml"])
def test_a_tar_member_named_out_of_the_pack_is_refused(site, name):
    archive = a_tar(site["tmp"] / "evil.tar.gz", [(member("rules/ok.yml"), RULE), (member(name), RULE)])
    refused(site, archive, "entry")


# --- links, devices, anything but files and folders ------------------------------------------------------------------
@pytest.mark.parametrize("kind,attrs,reason", [
    (tarfile.SYMTYPE, {"linkname": "/etc/passwd"}, "symbolic link"),
    (tarfile.SYMTYPE, {"linkname": "ok.yml"}, "symbolic link"),  # even one that stays inside
    (tarfile.LNKTYPE, {"linkname": "rules/ok.yml"}, "hard link"),
    (tarfile.CHRTYPE, {"devmajor": 1, "devminor": 3}, "not a regular file"),
    (tarfile.BLKTYPE, {"devmajor": 8, "devminor": 0}, "not a regular file"),
    (tarfile.FIFOTYPE, {}, "not a regular file"),
])
def test_links_and_devices_in_a_tar_are_refused(site, kind, attrs, reason):
    archive = a_tar(site["tmp"] / "links.tar", [(member("rules/ok.yml"), RULE),
                                                  (member("rules/evil.yml", kind, **attrs), None)], mode="w")
    refused(site, archive, reason)


def test_a_symlink_in_a_zip_is_refused(site):
    link = zipfile.ZipInfo("rules/evil.yml")
    link.create_system = 3  # unix
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    archive = a_zip(site["tmp"] / "link.zip", [("rules/ok.yml", RULE), (link, b"/etc/passwd")])
    refused(site, archive, "symbolic link")


def test_a_symlink_in_a_folder_is_refused(site):
    folder = site["tmp"] / "folder"
    (folder / "rules").mkdir(parents=True)
    (folder / "rules" / "ok.yml").write_bytes(RULE)
    os.symlink("/etc/passwd", folder / "rules" / "passwd.yml")
    refused(site, folder, "symbolic link")


def test_a_duplicate_entry_is_refused(site):
    archive = site["tmp"] / "twice.zip"
    with zipfile.ZipFile(archive, "w") as out:
        out.writestr("rules/ok.yml", RULE)
        with pytest.warns(UserWarning):
            out.writestr("rules/ok.yml", b"title: the second one\n")
    refused(site, archive, "appears twice")


# --- bombs -----------------------------------------------------------------------------------------------------------
def test_a_zip_bomb_rule_file_is_refused(site):
    archive = a_zip(site["tmp"] / "bomb.zip", [("rules/ok.yml", RULE),
                                               ("rules/bomb.yml", b"title: x\n#" + b"0" * (1024 * 1024))])
    assert archive.stat().st_size < 64 * 1024
    refused(site, archive, "max_file_bytes")


def test_a_zip_over_the_total_is_refused_before_anything_is_written(site):
    entries = [(f"docs/filler{n}.txt", b"0" * 200 * 1024) for n in range(12)]  # ignored, but counted
    refused(site, a_zip(site["tmp"] / "big.zip", [("rules/ok.yml", RULE), *entries]), "max_total_bytes")


def test_a_tar_gz_bomb_stops_at_the_limit(site):
    """A gzip stream that expands to 64 MiB of one non-rule member: refused from its header, unread."""
    path = site["tmp"] / "bomb.tar.gz"
    with tarfile.open(path, "w:gz") as out:
        info = member("docs/zeros.bin")
        info.size = 64 * 1024 * 1024
        out.addfile(info, io.BufferedReader(io.BytesIO(bytes(info.size))))
    assert path.stat().st_size < 256 * 1024
    refused(site, path, "max_total_bytes")


def test_too_many_entries_are_refused(site):
    entries = [(f"rules/r{n}.txt", b"") for n in range(LIMITS["max_members"] + 1)]
    refused(site, a_zip(site["tmp"] / "many.zip", entries), "max_members")
    refused(site, a_tar(site["tmp"] / "many.tar.gz", [(member(f"r{n}.txt"), b"")
                                                        for n in range(LIMITS["max_members"] + 1)]), "max_members")


def test_an_archive_over_its_size_limit_is_refused_unopened(site):
    path = site["tmp"] / "huge.zip"
    path.write_bytes(os.urandom(LIMITS["max_archive_bytes"] + 1))
    refused(site, path, "max_archive_bytes")


def test_garbage_is_refused(site):
    path = site["tmp"] / "garbage.tar.gz"
    path.write_bytes(b"\x1f\x8b" + os.urandom(4096))
    refused(site, path, "not a readable")


def test_an_encrypted_zip_entry_is_refused(site):
    archive = a_zip(site["tmp"] / "locked.zip", [("rules/ok.yml", RULE)])
    data = bytearray(archive.read_bytes())
    # Set the "encrypted" flag bit in the local and central headers.
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = data.find(signature)
        data[at + offset] |= 0x1
    archive.write_bytes(bytes(data))
    refused(site, archive, "encrypted")


# --- what is not a rule is not written; a rule file that is an alias bomb does not load ------------------------------
def test_only_rule_files_are_written_and_an_alias_bomb_rule_fails_to_load(site):
    laughs = ["title: laughs", "id: 1a000000-0000-4000-8000-00000000001a", "status: test", "level: high",
              "logsource: {product: windows, category: process_creation}", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    laughs += [f"a{n}: &a{n} [" + ", ".join([f"*a{n - 1}"] * 10) + "]" for n in range(1, 9)]
    laughs += ["detection: {sel: {Image: *a8}, condition: sel}"]
    archive = a_zip(site["tmp"] / "mixed.zip", [("rules/ok.yml", RULE), ("rules/run.sh", b"#!/bin/sh\nid\n"),
                                                ("tools/x.py", b"import os\n"), ("__MACOSX/rules/._ok.yml", b"\0"),
                                                ("rules/laughs.yml", "\n".join(laughs).encode())])
    started = time.monotonic()
    run = install(site["config"], archive, "--json")
    assert run.returncode == 0, run.stderr
    assert time.monotonic() - started < QUICK
    report = json.loads(run.stdout)
    assert report["rule_files"] == 2 and report["ignored"] == 3
    rules = site["tmp"] / "data" / "rules" / "packs" / report["installed"] / "rules"
    assert sorted(p.relative_to(rules).as_posix() for p in rules.rglob("*") if p.is_file()) == \
        ["rules/laughs.yml", "rules/ok.yml"]
    [failing] = report["changes"]["failing"]
    assert "aliases are not accepted" in failing["reason"]
    # Written files are plain data: no executable bit, nobody else may write them.
    for path in rules.rglob("*.yml"):
        assert path.stat().st_mode & 0o133 == 0, oct(path.stat().st_mode)


# --- what a pack may not do to the suite's own rules (red team, HIGH 1) --------------------------------------------
OWN_LINUX = PROJECT / "detections" / "rules" / "linux"


def test_a_pack_rule_taking_an_own_rules_id_or_name_is_refused_and_reported(tmp_path):
    """A pack with a deprecated rule holding the own SSH brute force's id, one named like the rule it counts, and a
    correlation counting an own rule: installed, the first two do not load (the change report says why) and the
    suite's own rules run as before."""
    config = tmp_path / "soc.yaml"
    config.write_text(json.dumps({"data_dir": str(tmp_path / "data"),
                                  "detections": {"sigma_rule_dirs": [str(OWN_LINUX)], "rule_packs": LIMITS}}))
    logsource = "logsource: {product: linux, service: sshd}\ndetection: {sel: {event.action: never}, condition: sel}\n"
    archive = a_zip(tmp_path / "takeover.zip", [
        ("rules/ok.yml", RULE),
        ("rules/shadow.yml", ("title: Shadow\nid: 3c1a9f0e-8e2d-4b6a-a7c5-9d0e1f2a3b03\nstatus: deprecated\n"
                              "level: high\n" + logsource).encode()),
        ("rules/hijack.yml", ("title: Hijack\nid: 99999999-9999-4999-8999-999999999999\nname: soc_ssh_failed_login\n"
                              "status: stable\nlevel: high\n" + logsource).encode()),
        ("rules/silencer.yml", b"title: Silencer\nid: 77777777-7777-4777-8777-777777777777\nstatus: deprecated\n"
                               b"level: low\ncorrelation: {type: event_count, rules: [soc_admin_login_from_outside],"
                               b" group-by: [source.ip], timespan: 1m, condition: {gte: 1000000}}\n")])
    run = install(config, archive, "--json")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    failing = {c["title"]: c["reason"] for c in report["changes"]["failing"]}
    assert "collides with the suite's own rule 'SSH Brute Force'" in failing["Shadow"]
    assert "collides with the suite's own rule 'SSH Failed Login'" in failing["Hijack"]
    assert "Silencer" not in failing
    check = subprocess.run([sys.executable, "-m", "suite.cli", "rules", "check", "--json", "--config", str(config)],
                           capture_output=True, text=True, cwd=PROJECT, timeout=120)
    rules = [json.loads(line) for line in check.stdout.splitlines()]
    own = {r["title"]: r for r in rules if r["path"].startswith(str(OWN_LINUX))}
    assert all(r["enabled"] and r["loaded"] and r["why"] == "own rule" for r in own.values()), own

    from detections.active_rules import ActiveRules
    from detections.settings import DetectionsConfig

    active = ActiveRules(DetectionsConfig(sigma_rule_dirs=[str(OWN_LINUX)], rule_packs=LIMITS),
                         tmp_path / "data", dict).start()
    assert active.version == report["installed"]
    [brute_force] = [c for c in active.correlations if c.meta.name == "soc_ssh_brute_force"]
    assert brute_force.rules == ["6f4c3d8e-2b7a-4c1e-9f3a-1d2e5b7c9a01"]  # the own SSH Failed Login
    assert {r.meta.name: r.generate for r in active.rules}["soc_admin_login_from_outside"] is True


# --- YAML aliases: one parser decides (red team, HIGH 2) ---------------------------------------------------------
def _doubling_bomb(depth: int, trick: str) -> str:
    """Aliases doubling at each level (2**depth nodes to walk), behind a construct libyaml refuses and PyYAML's
    pure-Python parser accepts: a scan with one and a parse with the other let it through."""
    lines = ["title: doubling", "id: 11111111-1111-4111-8111-111111111111", "status: stable", "level: high",
             "logsource: {product: windows, category: process_creation}", trick, "x0: &a0 {CommandLine: x}"]
    lines += [f"x{i}: &a{i} [*a{i - 1}, *a{i - 1}]" for i in range(1, depth + 1)]
    return "\n".join(lines + ["detection:", f"  selection: *a{depth}", "  condition: selection"]) + "\n"


BOMB_TRICKS = {"a tab in a block scalar": "description: |\n  \tx", "a lone surrogate": 'description: "\\ud800"',
               "nothing": "description: plain"}


@pytest.mark.parametrize("trick", BOMB_TRICKS.values(), ids=BOMB_TRICKS.keys())
def test_an_alias_bomb_behind_a_parser_difference_is_refused_quickly(tmp_path, trick):
    from detections.scheduled import convert_rules
    from detections.sigma.loader import parse_file

    text = _doubling_bomb(17, trick)  # 2**17 nodes: 15 s to walk, were it walked (2**20: minutes)
    started = time.monotonic()
    [(kind, health)] = parse_file(str(tmp_path / "bomb.yml"), text, "soc")
    assert kind == "failed" and health.reason.startswith("cannot parse:"), health
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "bomb.yml").write_text(text, encoding="utf-8")
    conversion = convert_rules([tmp_path / "rules"], "sqlite")
    assert [path for path, _ in conversion.failed] == [str(tmp_path / "rules" / "bomb.yml")]
    assert conversion.rules == []
    assert time.monotonic() - started < 2.0


def test_an_alias_bomb_behind_a_parser_difference_fails_to_load_from_an_installed_pack(site):
    archive = a_zip(site["tmp"] / "bomb.zip", [("rules/ok.yml", RULE),
                                               ("rules/bomb.yml", _doubling_bomb(20, BOMB_TRICKS["a lone surrogate"])
                                                .encode())])
    started = time.monotonic()
    run = install(site["config"], archive, "--json")
    assert run.returncode == 0, run.stderr
    assert time.monotonic() - started < QUICK
    [failing] = json.loads(run.stdout)["changes"]["failing"]
    assert failing["path"] == "rules/bomb.yml" and "not valid YAML" in failing["reason"]


# --- the archive checked is the archive installed (red team, MEDIUM 7) -------------------------------------------
def test_the_archive_is_extracted_from_the_copy_that_was_hashed(tmp_path, monkeypatch):
    """Whoever can write where the archive lies swaps it between the hash and the extraction: the swap is not what
    gets installed, because the install reads the path once, into a private copy."""
    from detections import packs as packs_module
    from detections.packs import PackStore
    from detections.settings import RulePacksConfig

    good = a_zip(tmp_path / "sigma.zip", [("rules/ok.yml", RULE)])
    digest = packs_module.sha256_of(good)
    evil = a_zip(tmp_path / "evil.zip", [("rules/evil.yml", RULE.replace(b"title:", b"title: EVIL", 1))])
    real_extract = packs_module.extract_rules
    seen = {}

    def swapped_then_extracted(source, dest, limits):
        os.replace(evil, good)  # the swap, after the hash
        seen["source"], seen["mode"] = source, stat.S_IMODE(source.stat().st_mode)
        return real_extract(source, dest, limits)

    monkeypatch.setattr(packs_module, "extract_rules", swapped_then_extracted)
    store = PackStore(tmp_path / "packs", RulePacksConfig(**LIMITS))
    with store.locked():
        version, _ = store.install(good, digest)
    assert [p.name for p in version.rules_dir.rglob("*.yml")] == ["ok.yml"]
    assert version.verification.checked_by == "--sha256" and version.verification.sha256 == digest
    assert seen["source"] != good and seen["source"].parent == store.root and seen["mode"] == 0o600
    assert not seen["source"].exists()  # the private copy is gone
    assert sorted(p.name for p in store.root.iterdir()) == [".lock", version.id]


# --- damaged and unusual archives are refused cleanly (red team, LOW) --------------------------------------------
def _patched(archive: Path, *edits: tuple[bytes, int, bytes]) -> Path:
    """``archive`` with bytes replaced at an offset from each signature's first occurrence."""
    data = bytearray(archive.read_bytes())
    for signature, offset, new in edits:
        at = data.find(signature) + offset
        data[at:at + len(new)] = new
    archive.write_bytes(bytes(data))
    return archive


def test_a_damaged_deflate_stream_is_refused(site):
    archive = a_zip(site["tmp"] / "crc.zip", [("rules/ok.yml", RULE)])
    with zipfile.ZipFile(archive) as z:
        start = z.infolist()[0].header_offset + 30 + len("rules/ok.yml")
    data = bytearray(archive.read_bytes())
    data[start + 5] ^= 0xFF  # a broken deflate stream, or one that decodes to other bytes: a zlib error or a bad CRC
    archive.write_bytes(bytes(data))
    refused(site, archive, "cannot be read")


def test_a_stored_zip_entry_with_a_bad_crc_is_refused(site):
    archive = site["tmp"] / "crc-stored.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as out:
        out.writestr("rules/ok.yml", RULE)
    data = archive.read_bytes()
    at = data.find(b"title:")
    archive.write_bytes(data[:at] + b"TITLE:" + data[at + 6:])
    refused(site, archive, "Bad CRC-32")


def test_a_zip_entry_of_an_unknown_compression_is_refused(site):
    archive = site["tmp"] / "method.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as out:
        out.writestr("rules/ok.yml", RULE)
    _patched(archive, (b"PK\x03\x04", 8, b"\x63\x00"), (b"PK\x01\x02", 10, b"\x63\x00"))  # method 99
    refused(site, archive, "cannot be read")


def test_a_sparse_tar_member_is_refused(site):
    """A pax sparse file (GNU tar --sparse --format=pax) is a regular file by its type: its headers say sparse."""
    sparse_map = (b"1\n0\n%d\n" % len(RULE)).ljust(512, b"\0")
    info = member("rules/sparse.yml")
    info.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": "rules/sparse.yml",
                        "GNU.sparse.realsize": str(len(RULE))}
    path = site["tmp"] / "sparse.tar"
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as out:
        out.addfile(member("rules/ok.yml", size=len(RULE)), io.BytesIO(RULE))
        info.size = len(sparse_map) + len(RULE)
        out.addfile(info, io.BytesIO(sparse_map + RULE))
    refused(site, path, "sparse")


def test_installed_rule_files_are_plain_data_whatever_the_archive_says(site):
    odd = member("rules/setuid.yml", mode=0o4777)
    folder = member("rules/odd", tarfile.DIRTYPE, mode=0o7777)
    archive = a_tar(site["tmp"] / "modes.tar.gz", [(folder, None), (odd, RULE), (member("rules/odd/x.yml",
                                                                                         mode=0o666), RULE)])
    run = install(site["config"], archive, "--json")
    assert run.returncode == 0, run.stderr
    rules = site["tmp"] / "data" / "rules" / "packs" / json.loads(run.stdout)["installed"] / "rules"
    modes = {p.relative_to(rules).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in rules.rglob("*")}
    assert modes == {"rules": 0o755, "rules/odd": 0o755, "rules/setuid.yml": 0o644, "rules/odd/x.yml": 0o644}, modes
    assert stat.S_IMODE(rules.stat().st_mode) == 0o755


def test_a_zip_directory_of_too_many_entries_is_refused_before_it_is_read(tmp_path, monkeypatch):
    """The standard library holds every entry of a zip's central directory in memory the moment it opens one (300k
    empty entries: 170 MB); the entries are counted from the raw directory first, whatever the end record says."""
    from detections import pack_archive
    from detections.pack_archive import ArchiveRefused, Limits, extract_rules

    archive = a_zip(tmp_path / "many.zip", [(f"r{n}.txt", b"") for n in range(LIMITS["max_members"] + 5)])
    data = bytearray(archive.read_bytes())
    end = data.rfind(b"PK\x05\x06")
    data[end + 8:end + 12] = b"\x01\x00\x01\x00"  # the end record says: 1 entry
    archive.write_bytes(bytes(data))

    def not_opened(*args, **kwargs):
        raise AssertionError("zipfile.ZipFile read the directory")

    monkeypatch.setattr(pack_archive.zipfile, "ZipFile", not_opened)
    with pytest.raises(ArchiveRefused, match="max_members"):
        extract_rules(archive, tmp_path / "out", Limits(**LIMITS))


def test_a_checksum_file_that_is_not_a_checksum_is_refused_cleanly(site):
    archive = a_zip(site["tmp"] / "sigma.zip", [("rules/ok.yml", RULE)])
    for text in ("é" * 64 + "  sigma.zip\n", "0" * 63 + "  sigma.zip\n"):
        (site["tmp"] / "sigma.zip.sha256").write_text(text, encoding="utf-8")
        refused(site, archive, "is not a SHA-256")
    (site["tmp"] / "sigma.zip.sha256").unlink()
    run = install(site["config"], archive, "--sha256", "ü" * 64)
    assert run.returncode == 2 and "is not a SHA-256" in run.stderr and "Traceback" not in run.stderr, run.stderr
