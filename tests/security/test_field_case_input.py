"""Hostile input to the province's receiving end of field cases (soc_api/routers/field_cases.py, docs/security.md),
through the real HTTP path of a running suite on loopback: every name a sender gives is refused when it could leave
the case's folder (``../x``, ``/etc/passwd``, ``evidence/../../x``, NUL, backslash, a very long name), in an
upload's URL or in a (validly signed) manifest; a name the manifest does not list is refused and reported as
unexpected; a body longer than the manifest says — sent without a length, or under a Content-Length that lies — is
never kept; a forged signature is reported, and a key the province does not trust is marked so; an agency the
inventory does not have is refused; an agency key may not forward; a case id the province did not derive reads as
no case at all; manifests over the caps, or nested past the recursion limit, are refused; and a hostile timeline or
notes file ends in the incident only as bounded text. Nothing is ever written outside
``<data_dir>/field-cases/<case id>/``, and no sender's name is a path there."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import socket
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from field import keys
from field.case import create_case
from field.collect import collect
from field.manifest import seal
from soc.storage.base import DocumentQuery
from soc_api.field_cases.settings import FieldCaseSettings
from soc_api.keys import create_key
from suite.runtime import Suite, SuiteThread
from suite.settings import Settings
from tests.conftest import PROJECT, make_settings, wait_for

AGENCY, OTHER = "so-tttt", "so-yt"
MAX_FILE = 64 * 1024
API = "/api/v1/field-cases"


class ProvinceSettings(Settings):
    """The suite's settings with the field_cases section (until suite/settings.py has it: the same section)."""

    field_cases: FieldCaseSettings = FieldCaseSettings()


@contextmanager
def province(tmp_path: Path, trusted: list[str], max_file: int = MAX_FILE):
    tmp_path.mkdir(parents=True, exist_ok=True)
    inventory = tmp_path / "province.yaml"
    shutil.copy(PROJECT / "inventory" / "sample" / "province.yaml", inventory)
    base = make_settings(tmp_path, SOC__INVENTORY__PATH=str(inventory), SOC__EXTENSIONS="[]")
    settings = ProvinceSettings.model_validate({
        **base.model_dump(), "field_cases": {"trusted_kit_keys": trusted, "max_file_bytes": max_file,
                                             "max_case_bytes": 4 * max_file, "max_manifest_bytes": 64 * 1024}})
    runner = SuiteThread(Suite(settings)).start()
    try:
        yield runner.suite
    finally:
        runner.stop()


@pytest.fixture
def world(tmp_path):
    """A sealed case (one small log file) signed by a kit the province trusts, and a province with keys."""
    kit, _ = keys.load_or_create(tmp_path / "kit" / "kit.pem")
    public = keys.public_text(kit.public_key())
    case = tmp_path / "case"
    create_case(case, AGENCY, "responder", public, keys.key_id(public))
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "app.log").write_bytes(b"one line\n" * 100)
    collect(case, [tmp_path / "src" / "app.log"])
    seal(case, kit)
    with province(tmp_path / "province", [public]) as suite:
        made = {name: create_key(suite.store, role, agency=agency)[0]
                for name, role, agency in (("analyst", "analyst", None), (AGENCY, "agency", AGENCY))}
        with httpx.Client(base_url=f"http://127.0.0.1:{suite.bound['api']}", timeout=30) as client:
            yield World(suite, client, made, case, kit)


class World:
    def __init__(self, suite, client: httpx.Client, api_keys: dict, case: Path, kit: Ed25519PrivateKey):
        self.suite, self.client, self.keys, self.case, self.kit = suite, client, api_keys, case, kit
        self.root = Path(suite.settings.data_dir) / "field-cases"

    def call(self, method: str, path: str, who: str = "analyst", **kwargs) -> httpx.Response:
        headers = {"X-API-Key": self.keys[who], **kwargs.pop("headers", {})}
        return self.client.request(method, path, headers=headers, **kwargs)

    def announce(self, data: bytes | None = None, signature: bytes | None = None, who: str = "analyst"):
        data = (self.case / "manifest.json").read_bytes() if data is None else data
        signature = (self.case / "manifest.sig").read_bytes().strip() if signature is None else signature
        return self.call("POST", API, who, content=data, headers={
            "Content-Type": "application/octet-stream", "X-Field-Signature": signature.decode()})

    def put(self, case_id: str, name: str, body: bytes, who: str = "analyst", sha: str | None = None):
        return self.call("PUT", f"{API}/{case_id}/files/{quote(name, safe='')}", who, content=body, headers={
            "Content-Type": "application/octet-stream", "X-Content-SHA256": sha or hashlib.sha256(body).hexdigest()})

    def signed(self, change) -> tuple[bytes, bytes]:
        """The case's manifest changed by ``change(manifest)`` and signed again by the kit (validly signed)."""
        manifest = json.loads((self.case / "manifest.json").read_bytes())
        change(manifest)
        data = json.dumps(manifest, ensure_ascii=False).encode()
        return data, base64.b64encode(self.kit.sign(data))

    def tree(self) -> set[str]:
        """Every path written under the suite's data folder (outside field-cases, the suite's own)."""
        return {str(p.relative_to(self.root)) for p in self.root.rglob("*")} if self.root.exists() else set()


def _sent(world: World, name: str) -> bytes:
    return (world.case / name).read_bytes()


def _raw_put(world: World, case_id: str, name: str, sha: str, declared: int, body: bytes) -> bytes:
    """A PUT written by hand on a socket (an HTTP client would not send a length that lies): the province's reply."""
    with socket.create_connection(("127.0.0.1", world.suite.bound["api"]), timeout=10) as sock:
        head = (f"PUT {API}/{case_id}/files/{quote(name, safe='')} HTTP/1.1\r\nHost: x\r\n"
                f"X-API-Key: {world.keys['analyst']}\r\nContent-Type: application/octet-stream\r\n"
                f"X-Content-SHA256: {sha}\r\nContent-Length: {declared}\r\nConnection: close\r\n\r\n")
        try:
            sock.sendall(head.encode() + body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the province answered and closed before reading it all
        reply = b""
        try:
            while chunk := sock.recv(65536):
                reply += chunk
        except (ConnectionResetError, socket.timeout):
            pass
    return reply


def _only_digests_as_paths(world: World) -> None:
    """Under field-cases/: case ids (hex), fixed folder names, and digests; never a sender's name."""
    # A request the province answered early (a socket that sent garbage after its body) may still be finishing.
    wait_for(lambda: not any("/parts/" in p for p in world.tree()), 10, "no partial upload left")
    allowed = re.compile(r"^[0-9a-f]{32}(/(manifest\.json|manifest\.sig|unexpected\.json|files|receipts|parts)"
                         r"|/files/[0-9a-f]{40}|/receipts/[0-9a-f]{40}\.json)?$")
    odd = sorted(p for p in world.tree() if not allowed.match(p))
    assert odd == [], odd


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "evidence/../../x", "evidence/001/app.log\x00.txt",
                                  "evidence\\..\\..\\x", "./case.json", "evidence//x", "a/" * 600 + "x",
                                  "evidence/\x1b[31mred"])
def test_a_hostile_name_in_an_upload_is_refused_and_nothing_is_written(world, name):
    case_id = world.announce().json()["id"]
    before = world.tree()
    answer = world.put(case_id, name, b"planted\n")
    assert answer.status_code == 422, (name, answer.status_code, answer.text)
    assert world.tree() == before
    assert not list(Path(world.suite.settings.data_dir).rglob("x")) and not list(world.root.rglob("passwd"))
    completed = world.call("POST", f"{API}/{case_id}/complete").json()
    assert completed["verification"]["unexpected"] == []  # refused names are not even kept as names
    _only_digests_as_paths(world)


@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/passwd", "evidence/../../x", "a\x00b", "evidence\\x",
                                  "x" * 2000])
def test_a_validly_signed_manifest_naming_a_hostile_path_is_refused_whole(world, name):
    data, signature = world.signed(lambda m: m["files"].append({"path": name, "size": 1, "sha256": "0" * 64}))
    answer = world.announce(data, signature)
    assert answer.status_code == 422, answer.text
    assert not world.tree()


def test_a_file_not_in_the_manifest_is_refused_and_reported_unexpected(world):
    case_id = world.announce().json()["id"]
    answer = world.put(case_id, "evidence/001/planted.exe", b"MZ planted")
    assert answer.status_code == 404 and "not a file of this case" in answer.json()["detail"]
    result = world.call("POST", f"{API}/{case_id}/complete").json()["verification"]
    assert result["unexpected"] == ["evidence/001/planted.exe"] and not result["ok"]
    assert not any("planted" in p for p in world.tree())
    _only_digests_as_paths(world)


def test_a_body_longer_than_the_manifest_says_is_never_kept(world):
    case_id = world.announce().json()["id"]
    name = "evidence/001/app.log"
    size = len(_sent(world, name))
    # Sent without a length (chunked): refused once it passes the manifest's size, not stored.
    def chunks():
        for _ in range(20):
            yield b"A" * 1000
    answer = world.call("PUT", f"{API}/{case_id}/files/{quote(name, safe='')}", content=chunks(), headers={
        "Content-Type": "application/octet-stream", "X-Content-SHA256": "0" * 64})
    assert answer.status_code == 413 and str(size) in answer.json()["detail"], answer.text
    real = _sent(world, name)
    # A Content-Length over the province's cap, with a few bytes behind it: refused before the body is read.
    reply = _raw_put(world, case_id, name, hashlib.sha256(real).hexdigest(), MAX_FILE * 1000, b"C" * 1000)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    # A Content-Length that lies low, with far more bytes behind it: the province reads what was declared; the rest
    # is not a request (the connection is dropped, and the upload with it). Nothing is kept.
    reply = _raw_put(world, case_id, name, hashlib.sha256(real).hexdigest(), 10, real + b"B" * 100_000)
    assert reply.startswith(b"HTTP/1.1 400"), reply[:200]
    # The same lie alone: the ten bytes read do not hash to what the sender claims for the file. Not kept.
    reply = _raw_put(world, case_id, name, hashlib.sha256(real).hexdigest(), 10, real[:10])
    assert reply.startswith(b"HTTP/1.1 400") and b"does not have the SHA-256" in reply, reply[:300]
    wait_for(lambda: any("does not have the SHA-256" in (r.get("detail") or "") and r["outcome"] == "refused 400"
                         for r in world.suite.store.find_documents("audit", DocumentQuery(limit=1000))),
             10, "the refusal in the audit log")
    got = world.call("GET", f"{API}/{case_id}").json()
    state = next(f for f in got["files"] if f["name"] == name)
    assert state["received_sha256"] is None and state["bodies"] == 0  # nothing of any of them was kept
    assert state["status"] == "changed"  # something longer than the sealed file was offered: reported
    _only_digests_as_paths(world)
    # The sealed copy still goes through, and is held.
    assert world.put(case_id, name, real).status_code == 201


def test_a_manifest_or_case_over_the_caps_is_refused(world):
    big = world.signed(lambda m: m["files"].__setitem__(0, {**m["files"][0], "size": MAX_FILE + 1}))
    assert world.announce(*big).status_code == 413
    many = world.signed(lambda m: m["files"].extend({"path": f"evidence/{i}", "size": MAX_FILE, "sha256": "0" * 64}
                                                    for i in range(5)))
    assert world.announce(*many).status_code == 413  # 5 x MAX_FILE > max_case_bytes
    huge = b"{" + b" " * (64 * 1024) + b"}"
    assert world.announce(huge, b"x").status_code == 413
    assert world.announce(b"not json", b"x").status_code == 422
    assert world.announce(b"[" * 60_000, b"x").status_code == 422  # nested past Python's recursion limit
    assert not world.tree()


def test_a_forged_signature_is_reported_and_an_unknown_kit_key_is_not_trusted(world):
    data = (world.case / "manifest.json").read_bytes()
    # A valid-looking signature by another key, over the real manifest.
    forged = base64.b64encode(Ed25519PrivateKey.generate().sign(data))
    answer = world.announce(data, forged)
    assert answer.status_code == 201
    assert answer.json()["signature_valid"] is False and answer.json()["key_trusted"] is True  # the kit's key, named
    case_id = answer.json()["id"]
    for name in json.loads(data)["files"]:
        assert world.put(case_id, name["path"], _sent(world, name["path"])).status_code == 201
    result = world.call("POST", f"{API}/{case_id}/complete").json()["verification"]
    assert result["signature_valid"] is False and result["ok"] is False and result["counts"]["changed"] == 0
    # Re-signed by someone else's key, naming that key: the signature holds, the key is not one the province trusts.
    other = Ed25519PrivateKey.generate()
    manifest = json.loads(data)
    manifest["public_key"] = keys.public_text(other.public_key())
    resigned = json.dumps(manifest).encode()
    answer = world.announce(resigned, base64.b64encode(other.sign(resigned)))
    assert answer.status_code == 201 and answer.json()["id"] != case_id
    assert answer.json()["signature_valid"] is True and answer.json()["key_trusted"] is False
    incident = world.call("POST", f"{API}/{answer.json()['id']}/complete").json()
    assert incident["verification"]["key_trusted"] is False
    stored = world.suite.store.get_document("incidents", incident["incident_id"])
    assert stored["field_case"]["key_trusted"] is False and stored["field_case"]["signature_valid"] is True
    # The kit's own signature over the same manifest, announced again: it replaces the forged one (a valid signature
    # is never replaced), and the case is whole.
    real = world.announce()
    assert real.json()["id"] == case_id
    assert real.json()["signature_valid"] is True and real.json()["key_trusted"] is True
    result = world.call("POST", f"{API}/{case_id}/complete").json()["verification"]
    assert result["signature_valid"] is True and result["ok"] is True
    assert world.announce(data, forged).json()["signature_valid"] is True


def test_an_agency_the_inventory_does_not_have_is_refused(world):
    data, signature = world.signed(lambda m: m.__setitem__("agency", "so-nowhere"))
    answer = world.announce(data, signature)
    assert answer.status_code == 422 and "inventory" in answer.json()["detail"]
    data, signature = world.signed(lambda m: m.__setitem__("agency", {"id": AGENCY}))
    assert world.announce(data, signature).status_code == 422
    assert not world.tree()


def test_an_agency_key_may_not_forward(world):
    answer = world.announce(who=AGENCY)
    assert answer.status_code == 403
    assert not world.tree()
    case_id = world.announce().json()["id"]
    name = "evidence/001/app.log"
    assert world.put(case_id, name, _sent(world, name), who=AGENCY).status_code == 403
    assert world.call("POST", f"{API}/{case_id}/complete", AGENCY).status_code == 403
    assert world.call("POST", f"{API}/{case_id}/verify", AGENCY).status_code == 403
    got = world.call("GET", f"{API}/{case_id}", AGENCY).json()
    assert all(f["bodies"] == 0 for f in got["files"])  # it may read its own agency's case, not write it


def test_a_case_id_the_province_did_not_derive_is_no_case(world):
    case_id = world.announce().json()["id"]
    name = "evidence/001/app.log"
    for other in ("0" * 32, case_id.upper(), case_id[:-1], "../../etc", "..", case_id + "0"):
        path = f"{API}/{quote(other, safe='')}"
        assert world.put(other, name, _sent(world, name)).status_code == 404, other
        assert world.call("GET", path).status_code == 404, other
        assert world.call("POST", f"{path}/complete").status_code == 404, other
        assert world.call("GET", f"{path}/files/{quote(name, safe='')}").status_code == 404, other
    assert set(p.split("/")[0] for p in world.tree()) == {case_id}


def test_a_hostile_timeline_and_notes_are_bounded_in_the_incident(tmp_path):
    """A case signed by a kit the province trusts can still carry anything in its timeline and notes (the kit signs
    what it was given): lines nested past the recursion limit, over-long lines, lines that are not objects, huge
    fields, markup. The incident keeps known fields as bounded text and counts what it could not read."""
    kit, _ = keys.load_or_create(tmp_path / "kit" / "kit.pem")
    public = keys.public_text(kit.public_key())
    case = tmp_path / "case"
    create_case(case, AGENCY, "<b>responder</b>", public, keys.key_id(public))
    entry = {"timestamp": "not a time", "source": "sigma", "level": "critical", "rule": "<script>x</script>",
             "rule_id": "r", "evidence": "evidence/001/x", "record": 7, "details": "D" * 50_000,
             "techniques": ["T1"] * 500, "unexpected_field": {"deep": [1, 2, 3]}}
    lines = [json.dumps(entry), "[" * 60_000, "x" * 300_000, "[1, 2]", "not json",
             json.dumps({**entry, "timestamp": "2026-12-07T09:00:00Z", "level": "low"})]
    (case / "timeline.jsonl").write_text("\n".join(lines) + "\n")
    (case / "notes.jsonl").write_text(json.dumps({"time": 5, "responder": ["x"], "text": "N" * 100_000}) + "\n")
    seal(case, kit)
    with province(tmp_path / "province", [public], max_file=4 * 1024 * 1024) as suite:
        key = create_key(suite.store, "analyst")[0]
        with httpx.Client(base_url=f"http://127.0.0.1:{suite.bound['api']}", timeout=30) as client:
            world = World(suite, client, {"analyst": key}, case, kit)
            case_id = world.announce().json()["id"]
            for item in json.loads((case / "manifest.json").read_bytes())["files"]:
                assert world.put(case_id, item["path"], _sent(world, item["path"])).status_code == 201
            done = world.call("POST", f"{API}/{case_id}/complete")
            assert done.status_code == 200, done.text
            incident = world.call("GET", f"/api/v1/incidents/{done.json()['incident_id']}").json()["incident"]
    assert incident["timeline_total"] == 2 and incident["timeline_unreadable"] == 4
    first, second = incident["timeline"]
    assert first["timestamp"] is None and second["timestamp"] == "2026-12-07T09:00:00.000Z"
    assert len(first["details"]) == 1000 and first["rule"] == "<script>x</script>" and first["record"] == "7"
    assert len(first["techniques"]) == 20 and "unexpected_field" not in first
    assert incident["severity"] == "critical" and incident["field_case"]["responder"] == "<b>responder</b>"
    assert incident["notes"] == [{"time": None, "responder": "['x']", "text": "N" * 65_536}]
