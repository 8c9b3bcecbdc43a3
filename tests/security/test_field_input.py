"""Hostile input to the field kit (docs/security.md, "Field kit"): what a responder may be handed at an agency, or
what someone may do to a case afterwards. Each is refused with a clear error, and nothing is written outside the
case folder: a link pointing outside, a path with '..', a device file and a FIFO, an oversize file, a case folder
that is a file, a manifest with a valid-looking but wrong signature, and a manifest naming ../../etc/passwd."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from field import keys
from field.case import create_case
from field.collect import collect
from field.errors import FieldError
from field.manifest import seal, verify
from tests.conftest import PROJECT


def _tree(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.lstat().st_size for p in root.rglob("*")}


@pytest.fixture()
def case(tmp_path):
    """A case with one collected file, its kit key outside it; the tree outside the case is checked unchanged."""
    key, _ = keys.load_or_create(tmp_path / "kit" / "kit.pem")
    public = keys.public_text(key.public_key())
    folder = tmp_path / "case"
    create_case(folder, "so-x", "responder", public, keys.key_id(public))
    source = tmp_path / "src"
    source.mkdir()
    (source / "app.log").write_text("one line\n")
    collect(folder, [source / "app.log"])
    (tmp_path / "in").mkdir()  # what a test hands the kit lives here or in src/
    mine = ("case", "src", "in")
    outside = {k: v for k, v in _tree(tmp_path).items() if not k.startswith(mine)}
    yield folder, key, source
    after = {k: v for k, v in _tree(tmp_path).items() if not k.startswith(mine)}
    assert after == outside, "written outside the case"


def test_a_link_pointing_outside_is_not_followed(case, tmp_path):
    folder, _, source = case
    secret = tmp_path / "in" / "secret.txt"
    secret.write_text("outside the evidence\n")
    (source / "link.txt").symlink_to(secret)
    (source / "linkdir").symlink_to(tmp_path / "kit", target_is_directory=True)
    result = collect(folder, [source])
    assert sorted(p for p, _ in result.refused) == [str(source / "link.txt"), str(source / "linkdir")]
    assert all("symbolic link" in why for _, why in result.refused)
    assert not any("secret" in p.read_text(errors="replace") for p in (folder / "evidence").rglob("*")
                   if p.is_file())
    assert not list((folder / "evidence").rglob("*.pem"))
    with pytest.raises(FieldError, match="symbolic link is refused"):
        collect(folder, [source / "link.txt"])


def test_a_path_with_dot_dot_is_refused(case, tmp_path):
    folder, _, source = case
    before = _tree(folder)
    with pytest.raises(FieldError, match=r"'\.\.' is refused"):
        collect(folder, [source / ".." / "src" / "app.log"])
    assert _tree(folder) == before


def test_device_files_and_fifos_are_refused_without_blocking(case, tmp_path):
    folder, _, source = case
    before = _tree(folder)
    with pytest.raises(FieldError, match="not a regular file or folder"):
        collect(folder, [Path("/dev/zero")])
    fifo = tmp_path / "in" / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(FieldError, match="not a regular file or folder"):
        collect(folder, [fifo])  # opening a FIFO would block: it is never opened
    assert _tree(folder) == before
    os.mkfifo(source / "pipe-in-folder")
    result = collect(folder, [source])
    assert [(p, w) for p, w in result.refused] == [(str(source / "pipe-in-folder"),
                                                    "not a regular file (device, FIFO or socket)")]
    assert [e["source"] for e in result.files] == [str(source / "app.log")]


def test_an_oversize_file_is_refused(case, tmp_path):
    folder, _, _ = case
    big = tmp_path / "in" / "big.bin"
    big.write_bytes(b"\0" * (2 * 1024 * 1024))
    before = _tree(folder)
    with pytest.raises(FieldError, match="over the limit"):
        collect(folder, [big], max_file=1024 * 1024)
    with pytest.raises(FieldError, match="over the limit of 1048576 .*nothing copied"):
        collect(folder, [big], max_total=1024 * 1024)
    assert _tree(folder) == before


def test_a_case_folder_given_as_a_file_is_refused(tmp_path):
    not_a_folder = tmp_path / "case"
    not_a_folder.write_text("a file\n")
    for args in (["collect", not_a_folder, tmp_path], ["scan", not_a_folder], ["note", not_a_folder, "x"],
                 ["seal", not_a_folder, "--key", tmp_path / "k.pem"], ["verify", not_a_folder],
                 ["new", not_a_folder, "--agency", "a", "--responder", "r", "--key", tmp_path / "k2.pem"]):
        run = subprocess.run([sys.executable, "-m", "suite.cli", "field", *map(str, args)], capture_output=True,
                             text=True, cwd=PROJECT, timeout=120, env={**os.environ, "XDG_CONFIG_HOME": str(tmp_path)})
        assert run.returncode == 2, (args, run.stdout, run.stderr)
        assert "not a folder" in run.stderr or "is not a folder" in run.stderr or "no kit key" in run.stderr, \
            (args, run.stderr)
        assert "Traceback" not in run.stderr
    assert not_a_folder.read_text() == "a file\n"


def test_the_key_is_never_kept_in_the_case(tmp_path):
    with pytest.raises(FieldError, match="must not be kept inside the case"):
        keys.load_or_create(tmp_path / "case" / "kit.pem", tmp_path / "case")
    assert not (tmp_path / "case").exists()
    key = tmp_path / "open.pem"
    keys.load_or_create(key)
    os.chmod(key, 0o644)
    with pytest.raises(FieldError, match="readable by others"):
        keys.load_or_create(key)


def test_a_tampered_manifest_with_a_wrong_signature_is_reported(case):
    folder, key, _ = case
    seal(folder, key)
    public = keys.public_text(key.public_key())
    data = (folder / "manifest.json").read_bytes()
    os.chmod(folder / "manifest.json", 0o600)
    os.chmod(folder / "manifest.sig", 0o600)
    # 1. An edited manifest (another responder) under the original, well-formed signature.
    (folder / "manifest.json").write_bytes(data.replace(b'"responder": "responder"', b'"responder": "someone"'))
    result, _ = verify(folder, public)
    assert not result.signature_ok and not result.ok
    # 2. The original manifest with a valid-looking signature: 64 bytes by another key.
    (folder / "manifest.json").write_bytes(data)
    (folder / "manifest.sig").write_bytes(base64.b64encode(Ed25519PrivateKey.generate().sign(data)) + b"\n")
    result, _ = verify(folder, public)
    assert not result.signature_ok and not result.ok
    # 3. Re-signed by someone else's key, naming that key: the signature holds, but it is not the kit's key.
    other = Ed25519PrivateKey.generate()
    forged = json.loads(data)
    forged["public_key"] = keys.public_text(other.public_key())
    forged_bytes = json.dumps(forged).encode()
    (folder / "manifest.json").write_bytes(forged_bytes)
    (folder / "manifest.sig").write_bytes(base64.b64encode(other.sign(forged_bytes)))
    result, _ = verify(folder, public)
    assert result.signature_ok and result.trusted is False and not result.ok
    run = subprocess.run([sys.executable, "-m", "suite.cli", "field", "verify", str(folder), "--public-key", public],
                         capture_output=True, text=True, cwd=PROJECT, timeout=120)
    assert run.returncode == 1 and "NOT the key given" in run.stdout, run.stdout + run.stderr


@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/passwd", "evidence/../../../etc/passwd", "./case.json",
                                  "evidence\\..\\..\\etc\\passwd"])
def test_a_manifest_naming_a_path_outside_the_case_is_refused(case, name):
    folder, key, _ = case
    seal(folder, key)
    manifest = json.loads((folder / "manifest.json").read_bytes())
    manifest["files"].append({"path": name, "size": 1, "sha256": "0" * 64})
    data = json.dumps(manifest).encode()
    for f in ("manifest.json", "manifest.sig"):
        os.chmod(folder / f, 0o600)
    (folder / "manifest.json").write_bytes(data)
    (folder / "manifest.sig").write_bytes(base64.b64encode(key.sign(data)))  # even validly signed
    with pytest.raises(FieldError, match="refused"):
        verify(folder)
    run = subprocess.run([sys.executable, "-m", "suite.cli", "field", "verify", str(folder)], capture_output=True,
                         text=True, cwd=PROJECT, timeout=120)
    assert run.returncode == 2 and "refused" in run.stderr and "Traceback" not in run.stderr, run.stderr


def test_a_sealed_case_takes_no_more_evidence_or_notes(case, tmp_path):
    folder, key, source = case
    seal(folder, key)
    with pytest.raises(FieldError, match="sealed"):
        collect(folder, [source / "app.log"])
    from field.case import add_note

    with pytest.raises(FieldError, match="sealed"):
        add_note(folder, "late")
    with pytest.raises(FieldError, match="already sealed"):
        seal(folder, key)


def test_a_collection_log_naming_a_file_outside_the_case_is_refused_by_the_scan(case):
    folder, _, _ = case
    from field.case import append_line
    from field.scan import scan

    append_line(folder / "collection.jsonl", {"source": "/etc/passwd", "path": "../../etc/passwd", "size": 1,
                                              "sha256": "0" * 64, "kind": "log", "collected_at": "x"})
    before = _tree(folder)
    with pytest.raises(FieldError, match="not a file under evidence/: refused"):
        scan(folder)
    assert _tree(folder) == before
