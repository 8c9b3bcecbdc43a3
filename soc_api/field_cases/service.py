"""Receiving a forwarded case: announce (the manifest and its signature), upload (each file of the manifest, by
name, checked against the SHA-256 the sender says it sends and compared with the manifest), complete (verify, then
the case's incident). One service per suite (soc_api/state.py ``service``), one lock per case: the case's receipts
and its incident are read, changed and written back under it.

Refusals are HTTPExceptions with the reason, as the data layer's are: the routes only shape answers.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from fastapi import HTTPException
from fastapi.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from detections.lifecycle import INCIDENTS
from field.errors import FieldError
from field.manifest import parse_manifest, public_key_id, signature_valid
from soc import ecs
from soc_api.field_cases import incident as incidents
from soc_api.field_cases import verification as checks
from soc_api.field_cases.folder import MAX_OFFERED, SIGNATURE, CaseFolder
from soc_api.field_cases.names import SHA256, NameRefused, case_id, check_name, shown
from soc_api.field_cases.settings import field_case_settings

log = logging.getLogger(__name__)
FIELD_CASES = "field_cases"
MAX_SIGNATURE = 4096
WRITE_CHUNK = 1024 * 1024  # bytes gathered before each write to disk (off the event loop)


@dataclass
class Received:
    name: str
    status: str  # the file's status after this upload (ok, changed)
    stored: bool  # whether this body became the copy held
    size: int
    sha256: str


class FieldCaseService:
    def __init__(self, suite):
        self.suite = suite
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._manifests: OrderedDict[str, tuple[dict, dict[str, dict]]] = OrderedDict()

    @property
    def settings(self):
        return field_case_settings(self.suite.settings)

    @property
    def root(self) -> Path:
        return Path(self.suite.settings.data_dir) / "field-cases"

    def lock(self, case: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(case, threading.Lock())

    def folder(self, case: str) -> CaseFolder:
        return CaseFolder(self.root, case)

    def manifest(self, case: str) -> tuple[dict, dict[str, dict]]:
        """The case's manifest and its entries by name, parsed once (a few cases kept)."""
        with self._guard:
            if case in self._manifests:
                self._manifests.move_to_end(case)
                return self._manifests[case]
        parsed = parse_manifest(self.folder(case).read("manifest.json"))
        with self._guard:
            self._manifests[case] = parsed
            while len(self._manifests) > 16:
                self._manifests.popitem(last=False)
        return parsed

    def trusted(self, public: str) -> bool:
        return public in self.settings.trusted_kit_keys

    # --- announce -------------------------------------------------------------------------------------------------
    def check_manifest(self, data: bytes) -> tuple[dict, dict[str, dict]]:
        """The manifest parsed, every name and size checked against the caps, its agency one the inventory knows."""
        limits = self.settings
        try:
            manifest, expected = parse_manifest(data)
        except FieldError as exc:
            raise HTTPException(422, f"not a field-kit manifest the province accepts: {shown(str(exc), 400)}") from exc
        if len(expected) > limits.max_files:
            raise HTTPException(413, f"the case has {len(expected)} files; at most {limits.max_files} "
                                     f"(field_cases.max_files)")
        total = 0
        for name, entry in expected.items():
            try:
                check_name(name)
            except NameRefused as exc:
                raise HTTPException(422, f"the manifest names a file the province refuses ({shown(name)}): "
                                         f"{shown(str(exc), 300)}") from exc
            if not SHA256.match(entry["sha256"]) or entry["size"] < 0 or isinstance(entry["size"], bool):
                raise HTTPException(422, f"the manifest's entry {shown(name)} has no valid size and SHA-256")
            if entry["size"] > limits.max_file_bytes:
                raise HTTPException(413, f"{shown(name)} is {entry['size']} bytes; at most {limits.max_file_bytes} "
                                         f"(field_cases.max_file_bytes)")
            total += entry["size"]
        if total > limits.max_case_bytes:
            raise HTTPException(413, f"the case is {total} bytes; at most {limits.max_case_bytes} "
                                     f"(field_cases.max_case_bytes)")
        agency = manifest.get("agency")
        if not isinstance(agency, str) or agency not in self.suite.inventory.agencies:
            raise HTTPException(422, f"the case's agency {shown(agency)} is not an agency of the province's inventory")
        return manifest, expected

    def announce(self, data: bytes, signature: bytes, by: str) -> tuple[dict, bool]:
        """The case of this manifest: (its document, made now). Announcing the same manifest again is harmless."""
        manifest, expected = self.check_manifest(data)
        case = case_id(data)
        public = manifest["public_key"]
        with self.lock(case):
            doc = self.suite.store.get_document(FIELD_CASES, case)
            if doc is not None and self.folder(case).exists():
                return self._announced_again(doc, data, signature, public), False
            self.folder(case).create(data, signature)
            now = ecs.now_iso()
            doc = {
                "id": case, "organization": {"id": manifest["agency"]}, "agency": manifest["agency"],
                "manifest_sha256": hashlib.sha256(data).hexdigest(),
                "responder": str(manifest.get("responder") or "")[:200],
                "sealed_at": _text(manifest.get("sealed_at")), "case_created": _text(manifest.get("case_created")),
                "kit_key_id": public_key_id(public), "public_key": public[:100],
                "signature_valid": signature_valid(data, signature, public), "key_trusted": self.trusted(public),
                "state": "receiving", "announced_at": now, "announced_by": by,
                "files_expected": len(expected), "bytes_expected": sum(e["size"] for e in expected.values()),
                "completed_at": None, "incident_id": None, "verification": None,
            }
            self.suite.store.put_documents(FIELD_CASES, [doc])
        log.info("field case %s announced by %s: agency %s, %d files", case, by, doc["agency"], len(expected))
        return doc, True

    def _announced_again(self, doc: dict, data: bytes, signature: bytes, public: str) -> dict:
        """A known case announced again. A signature that did not hold is replaced by one that does (only the kit's
        key can make one over these exact bytes); a valid one is never replaced. Trust is as the settings say now."""
        self.folder(doc["id"]).sweep_parts()  # a sender resuming: what an earlier, cut-off attempt left is gone
        changes = {}
        if not doc.get("signature_valid") and signature_valid(data, signature, public):
            self.folder(doc["id"]).replace(self.folder(doc["id"]).path / SIGNATURE, signature)
            changes["signature_valid"] = True
        if doc.get("key_trusted") != self.trusted(public):
            changes["key_trusted"] = self.trusted(public)
        if changes:
            doc = {**doc, **changes}
            self.suite.store.put_documents(FIELD_CASES, [doc])
        return doc

    def files(self, case: str) -> list[dict]:
        manifest, expected = self.manifest(case)
        return checks.file_states(self.folder(case), manifest, expected)

    def file_state(self, case: str, name: str) -> dict:
        """One file of the manifest with what the province holds of it; 404 for a name the manifest does not list."""
        manifest, _ = self.manifest(case)
        entry = self.entry(case, name, record=False)
        return checks.file_states(self.folder(case), manifest, {name: entry})[0]

    # --- upload ---------------------------------------------------------------------------------------------------
    def entry(self, case: str, name: str, record: bool = True) -> dict:
        """The manifest's entry for ``name``; 422 for a name no case may hold, 404 for one not listed (recorded as
        unexpected when a sender tried to upload it: ``record``)."""
        try:
            check_name(name)
        except NameRefused as exc:
            raise HTTPException(422, f"refused file name {shown(name)}: {shown(str(exc), 300)}") from exc
        _, expected = self.manifest(case)
        found = expected.get(name)
        if found is None:
            if not record:
                raise HTTPException(404, f"{shown(name)} is not a file of this case's manifest")
            with self.lock(case):
                self.folder(case).add_unexpected(name)
            raise HTTPException(404, f"{shown(name)} is not a file of this case's manifest")
        return found

    async def upload(self, case: str, name: str, declared_sha: str, stream, content_length: str | None,
                     by: str) -> Received:
        """One file's body: hashed while written to a temporary file, checked against what the sender declared
        (else: damaged on the way, not kept), then kept or recorded as a changed copy (``record``)."""
        entry = await run_in_threadpool(self.entry, case, name)
        if not SHA256.match(declared_sha or ""):
            raise HTTPException(422, "X-Content-SHA256 must give the body's SHA-256 (64 lower-case hex digits)")
        # Never more than the manifest says this file is: anything longer is not the sealed file, whatever length
        # the request declares. Up to max_file_bytes of it is read and dropped, so the sender gets the answer.
        cap = self.settings.max_file_bytes
        limit = min(entry["size"], cap)
        if content_length is not None and content_length.isdigit() and int(content_length) > cap:
            await run_in_threadpool(self.record_oversize, case, name, by)
            raise HTTPException(413, f"the body is {content_length} bytes; at most {cap} "
                                     f"(field_cases.max_file_bytes)")
        receipt = await run_in_threadpool(self.folder(case).receipt, name)
        known = {(receipt.get("held") or {}).get("sha256")} | {o.get("sha256") for o in receipt.get("offered") or []}
        try:
            if declared_sha in known:
                # Already here: read and dropped, not stored again (a client asks first and does not send it).
                async for _ in _bounded(stream, limit):
                    pass
                await run_in_threadpool(self.count_repeat, case, name)
                return Received(name, checks.file_status(entry, receipt), False, 0, declared_sha)
            part, size, sha = await self._receive(case, stream, limit)
        except _OverLimit:
            await run_in_threadpool(self.record_oversize, case, name, by)
            try:
                async for _ in _bounded(stream, cap - limit):
                    pass
            except _OverLimit:
                pass  # past the cap: the connection is dropped with the answer
            raise HTTPException(413, f"the body of {shown(name)} is longer than the manifest's {entry['size']} "
                                     f"bytes: not the sealed file; not kept, recorded as changed") from None
        except ClientDisconnect:
            raise HTTPException(400, "the upload was cut off: nothing kept") from None
        try:
            if sha != declared_sha:
                raise HTTPException(400, f"the body of {shown(name)} does not have the SHA-256 X-Content-SHA256 "
                                         f"gives (damaged on the way?): not kept; send it again")
            return await run_in_threadpool(self.record, case, name, entry, part, size, sha, by)
        finally:
            _unlink(part)

    async def _receive(self, case: str, stream, limit: int) -> tuple[Path, int, str]:
        """The body in a new temporary file of the case: (its path, size, SHA-256). _OverLimit past ``limit``."""
        part, fd = await run_in_threadpool(self.folder(case).new_part)
        digest, size, pending = hashlib.sha256(), 0, bytearray()
        try:
            with os.fdopen(fd, "wb") as fh:
                async for chunk in _bounded(stream, limit):
                    digest.update(chunk)
                    size += len(chunk)
                    pending += chunk
                    if len(pending) >= WRITE_CHUNK:
                        await run_in_threadpool(fh.write, bytes(pending))
                        pending.clear()
                await run_in_threadpool(_finish, fh, bytes(pending))
        except BaseException:
            _unlink(part)
            raise
        return part, size, digest.hexdigest()

    def record(self, case: str, name: str, entry: dict, part: Path, size: int, sha: str, by: str) -> Received:
        """A whole body for ``name``. The sealed copy is kept and never replaced; a copy that differs from the
        manifest is kept only while no sealed copy has arrived, and is always recorded (the file reads changed)."""
        folder = self.folder(case)
        sealed = (sha, size) == (entry["sha256"], entry["size"])
        with self.lock(case):
            receipt = folder.receipt(name)
            held = receipt.get("held")
            held_sealed = held is not None and (held["sha256"], held["size"]) == (entry["sha256"], entry["size"])
            stored = held is None or (sealed and not held_sealed)
            if stored:
                folder.keep(part, name)
                receipt["held"] = {"sha256": sha, "size": size, "at": ecs.now_iso(), "by": by}
            if not sealed and sha not in {o.get("sha256") for o in receipt.get("offered") or []}:
                receipt["offered"] = [*(receipt.get("offered") or []),
                                      {"sha256": sha, "size": size, "at": ecs.now_iso(), "by": by}][-MAX_OFFERED:]
            receipt["bodies"] = receipt.get("bodies", 0) + 1
            receipt["bytes"] = receipt.get("bytes", 0) + size
            folder.write_receipt(receipt)
        status = checks.file_status(entry, receipt)
        if not sealed:
            log.warning("field case %s: %s arrived CHANGED (sha256 %s, the manifest says %s)", case, shown(name),
                        sha, entry["sha256"])
        return Received(name, status, stored, size, sha)

    def record_oversize(self, case: str, name: str, by: str) -> None:
        """A body longer than the manifest's size for ``name``: not the sealed file; recorded, not kept."""
        with self.lock(case):
            folder = self.folder(case)
            receipt = folder.receipt(name)
            if not any(o.get("over_size") for o in receipt.get("offered") or []):
                receipt["offered"] = [*(receipt.get("offered") or []),
                                      {"sha256": None, "size": None, "at": ecs.now_iso(), "by": by,
                                       "over_size": True}][-MAX_OFFERED:]
                folder.write_receipt(receipt)

    def count_repeat(self, case: str, name: str) -> None:
        with self.lock(case):
            folder = self.folder(case)
            receipt = folder.receipt(name)
            receipt["repeats"] = receipt.get("repeats", 0) + 1
            folder.write_receipt(receipt)

    # --- complete and verify --------------------------------------------------------------------------------------
    def complete(self, doc: dict, by: str, source: str | None, rehash: bool = False) -> dict:
        """Verify the case (``rehash``: hash every held copy again from disk) and make or update its incident."""
        case = doc["id"]
        manifest, expected = self.manifest(case)
        folder = self.folder(case)
        with self.lock(case):
            if rehash:
                checks.rehash(folder, expected)
            states = checks.file_states(folder, manifest, expected)
            data = folder.read("manifest.json")
            valid = signature_valid(data, folder.read(SIGNATURE), manifest["public_key"])
            result = checks.verification(states, folder.unexpected(), valid, self.trusted(manifest["public_key"]),
                                         rehash)
            timeline = incidents.read_timeline(self._held(folder, states, incidents.TIMELINE),
                                               self.settings.max_timeline_entries)
            notes = incidents.read_notes(self._held(folder, states, incidents.NOTES))
            existing = self.suite.store.get_document(INCIDENTS, incidents.incident_id(case))
            incident = incidents.build(existing, doc, result, states, timeline, notes, by=by, source=source)
            self.suite.store.put_documents(INCIDENTS, [incident])
            doc = {**doc, "state": "complete", "completed_at": ecs.now_iso(), "verification": result,
                   "signature_valid": valid, "key_trusted": result["key_trusted"], "incident_id": incident["id"]}
            self.suite.store.put_documents(FIELD_CASES, [doc])
        if not result["ok"]:
            log.warning("field case %s (agency %s) verification NOT OK: changed %s missing %s unexpected %s "
                        "signature %s", case, doc["agency"], result["counts"]["changed"], result["counts"]["missing"],
                        result["counts"]["unexpected"], "valid" if valid else "INVALID")
        return doc

    @staticmethod
    def _held(folder: CaseFolder, states: list[dict], name: str) -> Path | None:
        """The held copy of one of the case's own files (the timeline, the notes), if one arrived."""
        if any(s["name"] == name and s["received_sha256"] for s in states):
            return folder.blob(name)
        return None


class _OverLimit(Exception):
    pass


async def _bounded(stream, limit: int):
    """The body's chunks, stopping with _OverLimit as soon as more than ``limit`` bytes came (whatever the request
    declared)."""
    seen = 0
    async for chunk in stream:
        seen += len(chunk)
        if seen > limit:
            raise _OverLimit()
        if chunk:
            yield chunk


def _finish(fh, tail: bytes) -> None:
    fh.write(tail)
    fh.flush()
    os.fsync(fh.fileno())


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _text(value) -> str | None:
    return value[:64] if isinstance(value, str) else None


def field_case_service(suite) -> FieldCaseService:
    from soc_api.state import service

    return service(suite, "field_cases", lambda: FieldCaseService(suite))
