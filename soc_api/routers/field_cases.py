"""Field cases: a responder's sealed case forwarded from the field kit (`soc field forward`, field/forward.py) and
received here as an incident of its agency, with its evidence and the detections of the local scan.

The protocol (docs/field-kit.md, "Forwarding a case to the province"):

1. ``POST /field-cases``: the case's manifest.json, its exact bytes as the body, and manifest.sig in the header
   ``X-Field-Signature``. The province checks the manifest (every name, size and the caps; the agency must be one of
   its inventory) and answers with the case's id — the first 32 hex digits of the SHA-256 of the manifest's bytes,
   never a name the sender chose — and what it already holds of each file (201 new, 200 known: announcing again is
   how a sender resumes).
2. ``PUT /field-cases/{id}/files/{name}``: each file of the manifest, the raw body, with ``X-Content-SHA256``: the
   SHA-256 of what is sent. A body that does not hash to it was damaged on the way and is not kept (400: send again);
   a body already held answers 200 without being stored again; a body longer than the manifest's size is refused
   (413) and recorded. A body that differs from the manifest is kept only while no sealed copy has arrived, never
   replaces one, and makes the file read as changed.
3. ``POST /field-cases/{id}/complete``: verify (signature, kit key trusted or not, each file ok / changed / missing /
   unexpected) and make — or, completed again, update — the case's incident ``field-{id}``.

``POST /field-cases/{id}/verify`` hashes every held copy again from the province's disk and verifies again. Reads:
``GET /field-cases/{id}`` (the case, each file's state, the verification) and ``GET /field-cases/{id}/files/{name}``
(a held copy, as an attachment). Forwarding needs an analyst key (responders are SOC staff; admin always may);
reading follows the tenancy of incidents, and an agency key sees its own agency's cases only.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from pydantic import BaseModel

from soc_api.field_cases.data import FieldCaseData, field_data
from soc_api.field_cases.names import shown
from soc_api.field_cases.service import MAX_SIGNATURE

router = APIRouter(prefix="/field-cases", tags=["field cases"])
Forwarder = Annotated[FieldCaseData, Depends(field_data("analyst"))]
Reader = Annotated[FieldCaseData, Depends(field_data("analyst", "network_admin", "agency", "national_centre"))]
Downloader = Annotated[FieldCaseData, Depends(field_data("analyst", "agency"))]


class FieldFile(BaseModel):
    name: str
    size: int
    sha256: str
    kind: str
    status: str  # ok, changed, missing
    received_sha256: str | None = None
    offered_sha256: list[str] = []
    bodies: int = 0  # uploads of this file received whole
    bytes: int = 0


class Verification(BaseModel):
    ok: bool
    signature_valid: bool
    key_trusted: bool
    changed: list[str]
    missing: list[str]
    unexpected: list[str]
    counts: dict[str, int]
    checked_at: str
    rehashed: bool = False


class FieldCase(BaseModel):
    id: str
    agency: str
    responder: str
    kit_key_id: str
    signature_valid: bool
    key_trusted: bool
    state: str  # receiving, complete
    sealed_at: str | None = None
    announced_at: str
    completed_at: str | None = None
    incident_id: str | None = None
    files_expected: int
    bytes_expected: int
    received: dict[str, int]  # bodies received whole, their bytes
    verification: Verification | None = None
    files: list[FieldFile] = []


class Upload(BaseModel):
    name: str
    status: str
    stored: bool
    size: int
    sha256: str


_RAW = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
_MANIFEST_BODY = {"x-own-body-limit": "field_cases.max_manifest_bytes",
                  "requestBody": {"required": True, "content": _RAW,
                                  "description": "manifest.json of a sealed case, its exact bytes"}}
_FILE_BODY = {"x-own-body-limit": "field_cases.max_file_bytes",
              "requestBody": {"required": True, "content": _RAW, "description": "the file, as the raw body"}}


def _answer(data: FieldCaseData, doc: dict) -> FieldCase:
    files = data.service.files(doc["id"])
    received = {"bodies": sum(f["bodies"] for f in files), "bytes": sum(f["bytes"] for f in files)}
    return FieldCase.model_validate({**doc, "files": files, "received": received})


def _octet_stream(request: Request) -> None:
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/octet-stream":
        raise HTTPException(415, "send the raw bytes with Content-Type: application/octet-stream")


@router.post("", response_model=FieldCase, status_code=201, openapi_extra=_MANIFEST_BODY, responses={
    200: {"description": "the case was announced before: what the province holds of it", "model": FieldCase},
    413: {"description": "the manifest, a file or the case is over a cap (field_cases.*)"},
    415: {"description": "not application/octet-stream"},
    422: {"description": "not a manifest, a refused file name, or an agency the inventory does not have"}})
async def announce(request: Request, response: Response, data: Forwarder,
                   signature: Annotated[str, Header(alias="X-Field-Signature", max_length=MAX_SIGNATURE,
                                                    description="manifest.sig: the Ed25519 signature of the "
                                                                "manifest's bytes, base64")]) -> FieldCase:
    """Announce a sealed case (its manifest); the answer gives the case's id and what is already here."""
    _octet_stream(request)
    service = data.service
    cap = service.settings.max_manifest_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > cap:
        raise HTTPException(413, f"the manifest is {declared} bytes; at most {cap} (field_cases.max_manifest_bytes)")
    body, size = bytearray(), 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            raise HTTPException(413, f"the manifest is more than {cap} bytes (field_cases.max_manifest_bytes)")
        body += chunk
    doc, created = await run_in_threadpool(service.announce, bytes(body), signature.encode("ascii", "replace"),
                                           data.actor)
    response.status_code = 201 if created else 200
    request.state.audit_agency = doc["agency"]  # the agency's own audit log shows its case arriving
    request.state.audit_detail = (f"field case {doc['id']} {'announced' if created else 'announced again'}: agency "
                                  f"{doc['agency']}, {doc['files_expected']} files, {doc['bytes_expected']} bytes, "
                                  f"kit key {doc['kit_key_id']}"
                                  + ("" if doc["signature_valid"] else ", SIGNATURE INVALID")
                                  + ("" if doc["key_trusted"] else ", kit key not trusted"))
    return await run_in_threadpool(_answer, data, doc)


@router.put("/{case_id}/files/{name:path}", response_model=Upload, status_code=201, openapi_extra=_FILE_BODY,
            responses={200: {"description": "this copy was here already: not stored again", "model": Upload},
                       400: {"description": "the body does not hash to X-Content-SHA256, or was cut off"},
                       404: {"description": "no such case, or a name its manifest does not list"},
                       413: {"description": "longer than the manifest's size for the file, or over the cap"},
                       415: {"description": "not application/octet-stream"},
                       422: {"description": "a refused file name, or no X-Content-SHA256"}})
async def upload(case_id: str, name: str, request: Request, response: Response, data: Forwarder,
                 content_sha256: Annotated[str, Header(alias="X-Content-SHA256", max_length=64,
                                                       description="SHA-256 of the body, hex")]) -> Upload:
    """Upload one file of the case's manifest (idempotent)."""
    doc = await run_in_threadpool(data.case, case_id)
    request.state.audit_agency = doc["agency"]
    _octet_stream(request)
    try:
        received = await data.service.upload(case_id, name, content_sha256.strip().lower(), request.stream(),
                                             request.headers.get("content-length"), data.actor)
    except HTTPException as exc:
        request.state.audit_detail = f"field case {case_id}: {shown(name)} refused {exc.status_code}"
        raise
    response.status_code = 201 if received.stored else 200
    request.state.audit_detail = (f"field case {case_id}: {shown(name)} {received.size} bytes sha256 "
                                  f"{received.sha256} {'stored' if received.stored else 'not stored'}; "
                                  + ("CHANGED: differs from the manifest" if received.status == "changed"
                                     else received.status))
    return Upload(name=received.name, status=received.status, stored=received.stored, size=received.size,
                  sha256=received.sha256)


def _verified(request: Request, data: FieldCaseData, case_id: str, rehash: bool) -> FieldCase:
    doc = data.case(case_id)
    request.state.audit_agency = doc["agency"]
    doc = data.service.complete(doc, data.actor, data.source, rehash=rehash)
    result = doc["verification"]
    request.state.audit_detail = (
        f"field case {case_id} verified{' again from disk' if rehash else ''}: incident {doc['incident_id']}; "
        + ("OK" if result["ok"] else "NOT OK") + f"; signature {'valid' if result['signature_valid'] else 'INVALID'}"
        + f"; kit key {'trusted' if result['key_trusted'] else 'not trusted'}"
        + "".join(f"; {what}: {', '.join(shown(n, 120) for n in result[what][:5])}"
                  + (f" (+{result['counts'][what] - 5})" if result["counts"][what] > 5 else "")
                  for what in ("changed", "missing", "unexpected") if result[what]))
    return _answer(data, doc)


@router.post("/{case_id}/complete", response_model=FieldCase)
def complete(case_id: str, request: Request, data: Forwarder) -> FieldCase:
    """Every file sent: verify the case and make (or update) its incident ``field-{id}``."""
    return _verified(request, data, case_id, rehash=False)


@router.post("/{case_id}/verify", response_model=FieldCase)
def verify(case_id: str, request: Request, data: Forwarder) -> FieldCase:
    """Hash every held copy again from the province's disk, verify the case again and update its incident."""
    return _verified(request, data, case_id, rehash=True)


@router.get("/{case_id}", response_model=FieldCase)
def get_case(case_id: str, data: Reader) -> FieldCase:
    """A case: what was announced, what arrived of each file, its last verification and its incident."""
    return _answer(data, data.case(case_id))


@router.get("/{case_id}/files/{name:path}", response_class=FileResponse, responses={
    200: {"description": "the copy the province holds (X-Field-File-Status: ok or changed)",
          "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
    404: {"description": "no such case or file, or nothing received for it"}})
def download(case_id: str, name: str, data: Downloader) -> Any:
    """A file of the case as the province holds it, as an attachment."""
    data.case(case_id)
    service = data.service
    state = service.file_state(case_id, name)
    path = service.folder(case_id).blob(name)
    if state["received_sha256"] is None or not path.is_file():
        raise HTTPException(404, "nothing received for this file")
    return FileResponse(path, media_type="application/octet-stream", filename=name.rsplit("/", 1)[-1],
                        content_disposition_type="attachment",
                        headers={"X-Field-File-Status": state["status"], "X-Content-SHA256": state["received_sha256"],
                                 "X-Manifest-SHA256": state["sha256"]})
