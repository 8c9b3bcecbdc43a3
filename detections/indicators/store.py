"""The indicator store: indicator documents and their sightings in the Store's document collections, and the
in-memory index kept in step with them.

Indicators are never deleted, only revoked, so a process that syncs incrementally (by ``added``) sees removals too.
Several processes may write (the API, ``soc taxii pull``): each keeps its index current by reading what was added
since its last sync.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from datetime import timedelta
from typing import Iterable, Iterator

from detections.indicators.index import IndicatorIndex
from detections.indicators.model import COLLECTION, SIGHTINGS, readable
from detections.indicators.stix import stix_id_for
from soc import ecs
from soc.storage.base import DocumentQuery, Store

log = logging.getLogger(__name__)
PAGE = 1000
MAX_SIGHTING_EVENTS = 20
SYNC_OVERLAP_SECONDS = 5


def iterate(store: Store, collection: str, query: DocumentQuery) -> Iterator[dict]:
    """Every document a query finds, page by page (the store's cursor)."""
    query = DocumentQuery(terms=query.terms, ranges=query.ranges, sort=query.sort, descending=query.descending,
                          limit=query.limit or PAGE, after=query.after)
    while True:
        page = store.find_documents(collection, query)
        yield from page
        if len(page) < query.limit:
            return
        last = page[-1]
        query.after = (ecs.get(last, query.sort) if query.sort != "id" else last["id"], last["id"])


def owner(doc: dict) -> tuple[str | None, str | None]:
    """Who may replace an indicator document: its source, and the feed it came from (None: not a feed's)."""
    feed = doc.get("feed")
    return doc.get("source"), feed.get("name") if isinstance(feed, dict) else None


class IndicatorService:
    def __init__(self, store: Store):
        self.store = store
        self.index = IndicatorIndex()
        self._synced_to: str | None = None  # the newest ``added`` read so far
        self._lock = threading.Lock()

    # --- writing -------------------------------------------------------------------------------------------------
    def upsert(self, docs: Iterable[dict], *, keep_revoked: bool = False,
               conflicts: list[dict] | None = None) -> list[dict]:
        """Store indicators; a document older (by ``modified``) than the stored version of the same id is skipped,
        and so, with ``keep_revoked`` (a feed's pull), is one a person revoked here.

        A document never replaces one of another owner (``id_conflict``): another ``source``, or, between a feed's
        indicator and any other, another feed. Ids come from outside (a STIX id, a MISP uuid) or are uuid5 of public
        inputs, so without this a feed naming another source's id would overwrite that indicator (its values, TLP,
        confidence) or take it out of matching. Each refused document is appended to ``conflicts`` (when given) and
        logged."""
        kept = []
        for doc in docs:
            current = self.store.get_document(COLLECTION, doc["id"])
            if current is not None and owner(current) != owner(doc):
                log.warning("indicator %.80s of %s not stored: the id is %s's (id_conflict)", doc["id"],
                            owner(doc), owner(current))
                if conflicts is not None:
                    conflicts.append({"id": doc["id"], "owner": owner(current)})
                continue
            if current is not None and current.get("modified", "") > doc.get("modified", ""):
                continue
            if keep_revoked and current is not None and current.get("revoked") and current.get("revoked_by"):
                continue
            if current is not None:
                doc["created"] = current.get("created", doc["created"])
            doc["added"] = ecs.now_iso()
            kept.append(doc)
        if kept:
            self.store.put_documents(COLLECTION, kept)
            for doc in kept:
                self.index.put(doc)
        return kept

    def revoke(self, indicator_id: str, by: str) -> dict | None:
        doc = self.store.get_document(COLLECTION, indicator_id)
        if doc is None:
            return None
        doc.update(revoked=True, revoked_by=by, modified=ecs.now_iso(), added=ecs.now_iso())
        self.store.put_documents(COLLECTION, [doc])
        self.index.put(doc)
        return doc

    # --- reading -------------------------------------------------------------------------------------------------
    def get(self, indicator_id: str) -> dict | None:
        return self.store.get_document(COLLECTION, indicator_id)

    def sync(self) -> int:
        """Bring the index up to date with the store (everything at first, then only what was added since)."""
        with self._lock:
            if not self._synced_to:
                queries = [DocumentQuery(sort="id", limit=PAGE)]  # everything, by id (every document has one)
                self._synced_to = ecs.now_iso()
            else:
                # Re-read a few seconds back: another process's write may carry a time a little older than the
                # newest one seen here (clocks, commit order). Putting a document twice is harmless. "updated" is
                # the time field of the playbook action's indicator documents.
                since = ecs.utc_iso(ecs.parse_time(self._synced_to) - timedelta(seconds=SYNC_OVERLAP_SECONDS))
                self._synced_to = ecs.now_iso()
                queries = [DocumentQuery(ranges={name: (since, None)}, sort=name, limit=PAGE)
                           for name in ("added", "updated")]
            count = 0
            for query in queries:
                for raw in iterate(self.store, COLLECTION, query):
                    doc = readable(raw)
                    if doc is None:
                        log.warning("indicator %.80r: a stored document of no known shape; not matched on",
                                    raw.get("id"))
                        continue
                    self.index.put(doc)
                    count += 1
            return count

    # --- sightings -----------------------------------------------------------------------------------------------
    def record_sightings(self, hits: list[tuple[str, str | None, dict, str, str]]) -> None:
        """hits: (indicator id, agency, event, field, value). One sighting per indicator and agency, counted."""
        by_key: dict[str, dict] = {}
        for indicator_id, agency, event, field, value in hits:
            key = hashlib.sha256(f"{indicator_id}|{agency}".encode()).hexdigest()[:32]
            sighting = by_key.get(key)
            if sighting is None:
                sighting = self.store.get_document(SIGHTINGS, key) or {
                    "id": key, "stix_id": stix_id_for("sighting", key), "indicator_id": indicator_id, "organization": {"id": agency}, "count": 0,
                    "first_seen": event["@timestamp"], "last_seen": event["@timestamp"], "events": [],
                    "observed": [],
                }
                # The source that shared the indicator: sightings are listed, and fed back, per source.
                sighting.setdefault("source", (self.index.docs.get(indicator_id) or {}).get("source"))
                by_key[key] = sighting
            sighting["count"] += 1
            sighting["first_seen"] = min(sighting["first_seen"], event["@timestamp"])
            sighting["last_seen"] = max(sighting["last_seen"], event["@timestamp"])
            event_id = ecs.get(event, "event.id")
            if event_id not in sighting["events"]:
                sighting["events"] = (sighting["events"] + [event_id])[-MAX_SIGHTING_EVENTS:]
            observed = {"field": field, "value": value}
            if observed not in sighting["observed"] and len(sighting["observed"]) < MAX_SIGHTING_EVENTS:
                sighting["observed"].append(observed)
            sighting["modified"] = ecs.now_iso()
        if by_key:
            self.store.put_documents(SIGHTINGS, list(by_key.values()))

    # --- expiry and decay ----------------------------------------------------------------------------------------
    def expire(self, *, retention_seconds: float | None = None, now: str | None = None) -> dict[str, int]:
        """Take out of matching every indicator past its ``valid_until`` or decayed below its floor
        (detections/indicators/decay.py): the stored document is kept, marked ``expired`` with the time and the
        reason, for history; expired documents older than ``retention_seconds`` are deleted (None: kept)."""
        from detections.indicators.decay import why_not_matching

        now = now or ecs.now_iso()
        counts = {"expired": 0, "decayed": 0, "deleted": 0}
        for doc in list(self.index.docs.values()):
            reason = why_not_matching(doc, now)
            if reason not in ("expired", "decayed"):
                continue
            stored = self.store.get_document(COLLECTION, doc["id"]) or dict(doc)
            stored.update(expired=True, expired_at=now, expired_reason=reason, added=ecs.now_iso())
            self.store.put_documents(COLLECTION, [stored])
            self.index.remove(doc["id"])
            counts[reason] += 1
        if retention_seconds is not None:
            cutoff = ecs.utc_iso(ecs.parse_time(now) - timedelta(seconds=retention_seconds))
            query = DocumentQuery(terms={"expired": True}, ranges={"expired_at": (None, cutoff)}, sort="id",
                                  limit=PAGE)
            for old in list(iterate(self.store, COLLECTION, query)):
                if self.store.delete_document(COLLECTION, old["id"]):
                    counts["deleted"] += 1
        return counts
