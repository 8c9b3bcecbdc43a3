"""TAXII 2.1 server at /taxii2/: discovery, API root, collections, objects (``added_after``, ``match[...]``,
``limit`` / ``next``), one object, manifest, and status — with the TAXII media type and per-collection read/write
rights per role. Any TAXII 2.1 client works: authenticate with HTTP Basic (password = API key), a Bearer token or
X-API-Key."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from soc_api.data import Data, data_for, valid_time
from soc_api.settings import TAXII_BODY_CAP, api_settings
from soc_api.taxii import server
from soc_api.taxii.server import TAXII_MEDIA

PREFIX = "/taxii2"


class TaxiiResponse(JSONResponse):
    media_type = TAXII_MEDIA


def _accepts(request: Request) -> None:
    accept = request.headers.get("accept", "*/*").replace(" ", "").lower()
    if not any(part.split(";")[0] in ("application/taxii+json", "application/*", "*/*") and
               ("version=" not in part or "version=2.1" in part) for part in accept.split(",")):
        raise HTTPException(406, "this server speaks TAXII 2.1: accept application/taxii+json;version=2.1")


router = APIRouter(tags=["taxii"], dependencies=[Depends(_accepts)], default_response_class=TaxiiResponse,
                   max_body_size=TAXII_BODY_CAP)
Reader = Annotated[Data, Depends(data_for("analyst", "network_admin", "agency", "national_centre"))]
ApiRoot = Annotated[str, PathParam(max_length=64)]
CollectionId = Annotated[str, PathParam(max_length=64)]


class Discovery(BaseModel):
    title: str
    description: str | None = None
    contact: str | None = None
    default: str
    api_roots: list[str]


class ApiRootInfo(BaseModel):
    title: str
    description: str | None = None
    versions: list[str]
    max_content_length: int


class CollectionInfo(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    title: str
    description: str | None = None
    can_read: bool
    can_write: bool
    media_types: list[str]


class Collections(BaseModel):
    collections: list[CollectionInfo] = []


class Envelope(BaseModel):
    more: bool = False
    next: str | None = None
    objects: list[dict[str, Any]] = []


class ManifestRecord(BaseModel):
    id: str
    date_added: str
    version: str
    media_type: str


class Manifest(BaseModel):
    more: bool = False
    next: str | None = None
    objects: list[ManifestRecord] = []


class Status(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    status: str
    total_count: int
    success_count: int
    failure_count: int
    pending_count: int


def _root(data: Data, api_root: str) -> None:
    if api_root != api_settings(data.suite).taxii.api_root:
        raise HTTPException(404, "no such API root")


def _page_headers(page: server.ObjectsPage) -> dict[str, str]:
    headers = {}
    if page.first_added:
        headers["X-TAXII-Date-Added-First"] = page.first_added
        headers["X-TAXII-Date-Added-Last"] = page.last_added or page.first_added
    return headers


@router.get("/", response_model=Discovery)
def discovery(data: Reader) -> TaxiiResponse:
    cfg = api_settings(data.suite).taxii
    root = f"{PREFIX}/{cfg.api_root}/"
    return TaxiiResponse(Discovery(title=cfg.title, description="Indicator sharing of the provincial SOC",
                                   contact=cfg.contact or None, default=root, api_roots=[root]).model_dump())


@router.get("/{api_root}/", response_model=ApiRootInfo)
def api_root_info(api_root: ApiRoot, data: Reader) -> TaxiiResponse:
    _root(data, api_root)
    settings = api_settings(data.suite)
    return TaxiiResponse(ApiRootInfo(title=settings.taxii.title, versions=[TAXII_MEDIA],
                                     max_content_length=settings.max_body_bytes).model_dump())


@router.get("/{api_root}/collections/", response_model=Collections)
def collections(api_root: ApiRoot, data: Reader) -> TaxiiResponse:
    _root(data, api_root)
    visible = [server.describe(data, c) for c in api_settings(data.suite).taxii.collections
               if server.can_read(data, c) or server.can_write(data, c)]
    return TaxiiResponse({"collections": visible} if visible else {})


@router.get("/{api_root}/collections/{collection_id}/", response_model=CollectionInfo)
def collection(api_root: ApiRoot, collection_id: CollectionId, data: Reader) -> TaxiiResponse:
    _root(data, api_root)
    c = server.find_collection(data, collection_id)
    if not (server.can_read(data, c) or server.can_write(data, c)):
        raise HTTPException(404, "no such collection")  # a collection the key may not use is not shown at all
    return TaxiiResponse(server.describe(data, c))


def _objects(data: Data, api_root: str, collection_id: str, added_after, limit, next_token, match_id, match_type,
             match_version) -> server.ObjectsPage:
    _root(data, api_root)
    c = server.find_collection(data, collection_id)
    cap = api_settings(data.suite).taxii.max_page
    return server.objects_page(data, c, added_after=valid_time(added_after, "added_after"),
                               limit=min(limit or cap, cap), next_token=next_token, match_id=match_id,
                               match_type=match_type, match_version=match_version)


AddedAfter = Annotated[str | None, Query(max_length=40)]
Limit = Annotated[int | None, Query(ge=1, le=10_000)]
Next = Annotated[str | None, Query(max_length=1024)]
MatchId = Annotated[list[str] | None, Query(alias="match[id]", max_length=100)]
MatchType = Annotated[list[str] | None, Query(alias="match[type]", max_length=20)]
MatchVersion = Annotated[str | None, Query(alias="match[version]", max_length=40)]
MatchSpec = Annotated[str | None, Query(alias="match[spec_version]", max_length=10)]


def _split(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


@router.get("/{api_root}/collections/{collection_id}/objects/", response_model=Envelope)
def get_objects(api_root: ApiRoot, collection_id: CollectionId, data: Reader, added_after: AddedAfter = None,
                limit: Limit = None, next: Next = None, match_id: MatchId = None, match_type: MatchType = None,
                match_version: MatchVersion = None, match_spec_version: MatchSpec = None) -> TaxiiResponse:
    if match_spec_version and "2.1" not in match_spec_version.split(","):
        return TaxiiResponse({"more": False, "objects": []})
    page = _objects(data, api_root, collection_id, added_after, limit, next, _split(match_id), _split(match_type),
                    match_version)
    body: dict[str, Any] = {"more": page.more, "objects": page.objects}
    if page.next:
        body["next"] = page.next
    return TaxiiResponse(body, headers=_page_headers(page))


@router.post("/{api_root}/collections/{collection_id}/objects/", response_model=Status, status_code=202)
async def add_objects(api_root: ApiRoot, collection_id: CollectionId, request: Request, data: Reader
                      ) -> TaxiiResponse:
    _root(data, api_root)
    content_type = request.headers.get("content-type", "").replace(" ", "").lower()
    if not content_type.startswith("application/taxii+json"):
        raise HTTPException(415, "send a TAXII envelope as application/taxii+json;version=2.1")
    c = server.find_collection(data, collection_id)
    raw = await request.body()
    if len(raw) > api_settings(data.suite).max_body_bytes:
        raise HTTPException(413, f"the envelope may be at most {api_settings(data.suite).max_body_bytes} bytes")
    try:
        envelope = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise HTTPException(400, f"the body is not JSON: {exc}") from exc
    if not isinstance(envelope, dict):
        raise HTTPException(400, "the body must be a TAXII envelope (a JSON object)")
    status = server.add_objects(data, c, envelope)
    return TaxiiResponse(server.public_status(status), status_code=202)


@router.get("/{api_root}/collections/{collection_id}/objects/{object_id}/", response_model=Envelope)
def get_object(api_root: ApiRoot, collection_id: CollectionId, object_id: Annotated[str, PathParam(max_length=128)],
               data: Reader, match_version: MatchVersion = None) -> TaxiiResponse:
    page = _objects(data, api_root, collection_id, None, None, None, [object_id], None, match_version)
    found = [o for o in page.objects if o["id"] == object_id]
    if not found:
        raise HTTPException(404, "no such object in this collection")
    return TaxiiResponse({"more": False, "objects": found}, headers=_page_headers(page))


@router.get("/{api_root}/collections/{collection_id}/manifest/", response_model=Manifest)
def manifest(api_root: ApiRoot, collection_id: CollectionId, data: Reader, added_after: AddedAfter = None,
             limit: Limit = None, next: Next = None, match_id: MatchId = None, match_type: MatchType = None,
             match_version: MatchVersion = None) -> TaxiiResponse:
    page = _objects(data, api_root, collection_id, added_after, limit, next, _split(match_id), _split(match_type),
                    match_version)
    body: dict[str, Any] = {"more": page.more, "objects": page.manifest}
    if page.next:
        body["next"] = page.next
    return TaxiiResponse(body, headers=_page_headers(page))


@router.get("/{api_root}/status/{status_id}/", response_model=Status)
def status(api_root: ApiRoot, status_id: Annotated[str, PathParam(max_length=64)], data: Reader) -> TaxiiResponse:
    _root(data, api_root)
    return TaxiiResponse(server.public_status(data.taxii_status(status_id)))
