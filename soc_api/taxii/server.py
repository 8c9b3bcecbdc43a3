"""TAXII 2.1 collections over the suite's own records: what each collection holds, who may read and write it, and
paging by ``added_after`` / ``next`` / ``limit`` with the ``match[...]`` filters.

Every collection is a view of one document collection, read through the tenancy-enforcing data layer:
``indicators`` (the indicator store, STIX Indicators; agency keys see only the TLP levels configured for them),
``sightings`` (STIX Sightings, per agency) and ``malware`` (malware findings as STIX Malware with File samples, per
agency). A collection keeps the latest version of each object; its ``date_added`` is when that version reached the
suite.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

import stix2
from fastapi import HTTPException
from stix2.exceptions import STIXError

from detections.indicators.extension import MALWARE_FINDINGS
from detections.indicators.model import COLLECTION as INDICATORS, SIGHTINGS, IndicatorError, readable
from detections.indicators.stix import indicator_to_stix, indicators_from_stix, malware_to_stix, sighting_to_stix
from soc import ecs
from soc.storage.base import DocumentQuery
from soc_api.data import Data
from soc_api.settings import TaxiiCollectionConfig, api_settings

log = logging.getLogger(__name__)
TAXII_MEDIA = "application/taxii+json;version=2.1"
STIX_MEDIA = "application/stix+json;version=2.1"
_UUID_NS = uuid.UUID("9a7f1d2e-3b4c-4d5e-8f60-718293a4b5c6")
RECEIVED_SIGHTINGS = "received_sightings"

# source -> (document collection, sort field = date_added, object type, agency field or None for shared)
SOURCES = {
    "indicators": (INDICATORS, "added", "indicator", None),
    "sightings": (SIGHTINGS, "modified", "sighting", "organization.id"),
    "malware": (MALWARE_FINDINGS, "modified", "malware", "organization.id"),
    # Sightings of the suite's indicators that others (the national centre, a peer SOC) sent back.
    "received_sightings": (RECEIVED_SIGHTINGS, "added", "sighting", None),
}


def collection_uuid(collection_id: str) -> str:
    """TAXII collection ids are UUIDs; the configured short name maps to a stable one (both are accepted)."""
    return str(uuid.uuid5(_UUID_NS, collection_id))


@dataclass
class ObjectsPage:
    objects: list[dict]
    manifest: list[dict]
    more: bool
    next: str | None
    first_added: str | None = None
    last_added: str | None = None
    extra: dict = field(default_factory=dict)


class TaxiiError(HTTPException):
    pass


def find_collection(data: Data, collection_id: str) -> TaxiiCollectionConfig:
    for c in api_settings(data.suite).taxii.collections:
        if collection_id in (c.id, collection_uuid(c.id)):
            return c
    raise HTTPException(404, "no such collection")


def can_read(data: Data, c: TaxiiCollectionConfig) -> bool:
    return data.principal.role == "admin" or data.principal.role in c.read_roles


def can_write(data: Data, c: TaxiiCollectionConfig) -> bool:
    return data.principal.role == "admin" or data.principal.role in c.write_roles


def describe(data: Data, c: TaxiiCollectionConfig) -> dict:
    return {"id": collection_uuid(c.id), "title": c.title, "description": c.description or c.title,
            "alias": c.id, "can_read": can_read(data, c), "can_write": can_write(data, c),
            "media_types": [STIX_MEDIA]}


def _to_stix(source: str, doc: dict) -> list[dict]:
    import json

    if source == "indicators":
        objs = [indicator_to_stix(doc)]
    elif source == "sightings":
        objs = [sighting_to_stix(doc)]
    elif source == "received_sightings":
        return [doc["object"]]
    else:
        objs = malware_to_stix(doc)
    return [json.loads(o.serialize()) for o in objs]


def _shared(source: str, sort: str, raw: dict) -> tuple[str, list[dict]] | None:
    """(date added, STIX objects) of one stored document; None, logged, for a document of no shape the collection
    can share (an indicator is first brought to the model's shape): one odd document never fails a page."""
    doc = readable(raw) if source == "indicators" else raw
    try:
        if doc is None or not isinstance(doc.get(sort), str):
            raise ValueError(f"no {sort} time" if doc is not None else "not an indicator of the suite's model")
        return doc[sort], _to_stix(source, doc)
    except (STIXError, ValueError, TypeError, KeyError, AttributeError) as exc:
        log.warning("TAXII %s: stored document %.80r skipped: %s: %s", source, raw.get("id"), type(exc).__name__,
                    str(exc)[:200])
        return None


def objects_page(data: Data, c: TaxiiCollectionConfig, *, added_after: str | None, limit: int, next_token: str | None,
                 match_id: list[str] | None, match_type: list[str] | None, match_version: str | None) -> ObjectsPage:
    if not can_read(data, c):
        raise HTTPException(403, "this key may not read this collection")
    collection, sort, stix_type, agency_field = SOURCES[c.source]
    if match_type and stix_type not in match_type:
        return ObjectsPage([], [], False, None)
    allowed = data.readable_tlp() if c.source == "indicators" else None
    terms: dict[str, Any] = {"tlp": allowed} if allowed is not None else {}
    if match_id:
        # Indicators keep their STIX id as the document id; sightings and findings keep it in stix_id.
        terms["id" if c.source == "indicators" else "stix_id"] = list(match_id)
    ranges = {sort: (added_after, None)} if added_after else {}
    page = data.find(collection, DocumentQuery(terms=terms, ranges=ranges, sort=sort, limit=limit),
                     agency_field=agency_field, cursor=next_token)
    objects, manifest = [], []
    for doc in page.items:
        shared = _shared(c.source, sort, doc)
        if shared is None:
            continue
        added, stix = shared
        if added_after and added <= added_after:
            continue  # added_after is strict
        if match_type:
            stix = [o for o in stix if o["type"] in match_type]
        if match_version and match_version not in ("last", "first", "all"):
            stix = [o for o in stix if o.get("modified") == match_version]
        for o in stix:
            objects.append(o)
            manifest.append({"id": o["id"], "date_added": added, "version": o.get("modified", o.get("created", added)),
                             "media_type": STIX_MEDIA})
    added_values = [m["date_added"] for m in manifest]
    return ObjectsPage(objects, manifest, more=page.next_cursor is not None, next=page.next_cursor,
                       first_added=min(added_values) if added_values else None,
                       last_added=max(added_values) if added_values else None)


def add_objects(data: Data, c: TaxiiCollectionConfig, envelope: dict) -> dict:
    """Take the objects of an envelope into the collection; a status resource says what succeeded and what not."""
    if not can_write(data, c):
        raise HTTPException(403, "this key may not write to this collection")
    if c.source == "received_sightings":
        return _add_sightings(data, envelope)
    if c.source != "indicators":
        raise HTTPException(403, "this collection is read-only")
    objects = envelope.get("objects")
    if not isinstance(objects, list):
        raise HTTPException(400, "the body must be a TAXII envelope with an \"objects\" list")
    successes, failures, docs = [], [], []
    source = f"taxii:{data.principal.user or data.principal.name}"
    for obj in objects:
        if not isinstance(obj, dict) or not isinstance(obj.get("id"), str):
            failures.append({"id": str(obj.get("id") if isinstance(obj, dict) else "?")[:200],
                             "message": "not a STIX object (no id)"})
            continue
        if obj.get("type") == "marking-definition":
            successes.append({"id": obj["id"], "version": obj.get("created", ""),
                              "message": "marking definitions are known by id; not stored"})
            continue
        try:
            doc = indicators_from_stix(obj, source=source, created_by=data.actor)
        except IndicatorError as exc:
            failures.append({"id": obj["id"][:200], "message": str(exc)})
            continue
        docs.append(doc)
    if docs:
        # An id already another source's is not replaced (the store's id_conflict): a failure of that object.
        conflicts: list[dict] = []
        data.indicator_service.upsert(docs, conflicts=conflicts)
        refused = {c["id"] for c in conflicts}
        for doc in docs:
            if doc["id"] in refused:
                failures.append({"id": doc["id"][:200], "message": "id_conflict: this id is another source's "
                                                                    "indicator; not replaced"})
            else:
                successes.append({"id": doc["id"], "version": doc["modified"]})
    now = ecs.now_iso()
    status = {
        "id": str(uuid.uuid4()), "status": "complete", "request_timestamp": now, "total_count": len(objects),
        "success_count": len(successes), "successes": successes, "failure_count": len(failures),
        "failures": failures, "pending_count": 0, "pendings": [],
        "owner": data.principal.key_id,
    }
    data.save_taxii_status(status)
    return status


NOT_SHARED = "sighting_of_ref names no indicator this server shared with you"


def _shared_indicator(data: Data, ref: str) -> dict | None:
    """The indicator ``ref`` names, when the caller could read it here: stored (under that id, or a feed's indicator
    whose source's id it is), not revoked, at a TLP level the caller may read (what the indicators collection would
    serve it). None otherwise, whatever the reason: the answer must not tell an indicator the caller may not see
    from one that does not exist."""
    service = data.indicator_service
    found = service.get(ref)
    candidates = [found] if found is not None else list(service.store.find_documents(
        INDICATORS, DocumentQuery(terms={"stix_id": ref}, limit=10)))
    for raw in candidates:
        doc = readable(raw)
        if doc is None or doc.get("revoked"):
            continue
        allowed = data.readable_tlp()
        if allowed is not None and doc.get("tlp") not in allowed:
            continue
        return doc
    return None


def received_id(poster: str, stix_id: str) -> str:
    """A received sighting's document id: one per poster and STIX id, so one peer cannot replace another's."""
    return f"received--{uuid.uuid5(_UUID_NS, f'{poster}|{stix_id}')}"


def _received_sighting(data: Data, obj: dict) -> dict:
    """A STIX Sighting another party sent of one of the suite's indicators, as stored; ValueError says why not."""
    if obj.get("type") != "sighting":
        raise ValueError(f"only sightings are taken here, not {str(obj.get('type'))[:40]!r}")
    try:
        parsed = stix2.parse(obj, allow_custom=False, version="2.1")
    except (STIXError, ValueError, TypeError) as exc:
        raise ValueError(f"not a valid STIX 2.1 sighting: {str(exc)[:300]}") from exc
    ref = str(parsed["sighting_of_ref"])
    if not ref.startswith("indicator--") or _shared_indicator(data, ref) is None:
        raise ValueError(NOT_SHARED)  # the same words whether absent, revoked or above the caller's TLP
    clean = json.loads(parsed.serialize())
    return {"id": received_id(data.actor, clean["id"]), "stix_id": clean["id"], "object": clean,
            "sighting_of_ref": ref, "count": clean.get("count"), "first_seen": clean.get("first_seen"),
            "last_seen": clean.get("last_seen"), "modified": clean["modified"], "added": ecs.now_iso(),
            "received_from": data.actor}


def _add_sightings(data: Data, envelope: dict) -> dict:
    objects = envelope.get("objects")
    if not isinstance(objects, list):
        raise HTTPException(400, "the body must be a TAXII envelope with an \"objects\" list")
    successes, failures, docs = [], [], []
    for obj in objects:
        if not isinstance(obj, dict) or not isinstance(obj.get("id"), str):
            failures.append({"id": "?", "message": "not a STIX object (no id)"})
            continue
        if obj.get("type") == "marking-definition":
            successes.append({"id": obj["id"], "version": obj.get("created", ""),
                              "message": "marking definitions are known by id; not stored"})
            continue
        try:
            doc = _received_sighting(data, obj)
        except ValueError as exc:
            failures.append({"id": obj["id"][:200], "message": str(exc)})
            continue
        current = data.store.get_document(RECEIVED_SIGHTINGS, doc["id"])
        if current is None or current.get("modified", "") <= doc["modified"]:
            docs.append(doc)
        successes.append({"id": doc["stix_id"], "version": doc["modified"]})
    if docs:
        data.store.put_documents(RECEIVED_SIGHTINGS, docs)
    status = {
        "id": str(uuid.uuid4()), "status": "complete", "request_timestamp": ecs.now_iso(),
        "total_count": len(objects), "success_count": len(successes), "successes": successes,
        "failure_count": len(failures), "failures": failures, "pending_count": 0, "pendings": [],
        "owner": data.principal.key_id,
    }
    data.save_taxii_status(status)
    return status


def public_status(status: dict) -> dict:
    return {k: v for k, v in status.items() if k != "owner"}
