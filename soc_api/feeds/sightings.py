"""Sightings fed back to the source that shared an indicator: for a TAXII feed configured with ``sightings``, the
province's sightings of that feed's indicators are posted to the source's collection as STIX 2.1 Sightings.

What one Sighting says, and nothing more: which of the source's indicators (``sighting_of_ref``, the source's own
id: the ``stix_id`` the feed's item carried, never the id the suite stores it under, feed_formats.py
``feed_indicator_id``), how many times (``count``, summed over the agencies), ``first_seen`` and ``last_seen``, that
the province's SOC saw it (``where_sighted_refs`` = the SOC's identity; one identity per agency only with ``share_agencies``), and a
TLP 2.0 marking: the stricter of the configured ``tlp`` and the indicator's own. A sighting whose marking would be
stricter than ``max_tlp`` (what that source may receive) is withheld and counted. No event, address, host or user of
an agency is ever in it.

Bounded and batched: at most ``max_per_run`` indicators a run, ``batch_size`` Sightings an envelope; a run resumes
where the last one stopped (the newest sighting ``modified`` sent, kept in the feed's state).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field

import stix2
from taxii2client.v21 import Collection

from detections.indicators.model import SIGHTINGS, TLP_LEVELS
from detections.indicators.stix import SUITE_IDENTITY, TLP2_IDS, TLP2_MARKINGS, agency_identity_id, stix_id_for
from detections.indicators.store import IndicatorService, iterate
from soc import ecs
from soc.storage.base import DocumentQuery, Store
from soc_api.feeds.fetch import deadline_of
from soc_api.feeds.settings import FeedConfig
from soc_api.taxii.client import bounded

log = logging.getLogger(__name__)
PAGE = 500


@dataclass
class ShareResult:
    sent: int = 0
    withheld_tlp: int = 0
    envelopes: int = 0
    pending: bool = False
    errors: list[str] = field(default_factory=list)


def stricter(a: str, b: str) -> str:
    return a if TLP_LEVELS.index(a) >= TLP_LEVELS.index(b) else b


def source_id(indicator: dict) -> str:
    """The id the source knows the indicator by: the item's own (``stix_id``), else the stored id."""
    return indicator.get("stix_id") or indicator["id"]


def sighting_for(feed: FeedConfig, indicator: dict, sightings: list[dict], now: str) -> dict:
    """One STIX Sighting (a dict) of a feed's indicator: the province's sightings of it, summed."""
    cfg = feed.sightings
    marking = stricter(indicator.get("tlp", "amber"), cfg.tlp)
    first = min(s["first_seen"] for s in sightings)
    last = max(s["last_seen"] for s in sightings)
    where = sorted({agency_identity_id((s.get("organization") or {}).get("id")) for s in sightings}) \
        if cfg.share_agencies else [SUITE_IDENTITY.id]
    sighting = stix2.v21.Sighting(
        id=stix_id_for("sighting", f"{feed.name}|{indicator['id']}"),
        sighting_of_ref=source_id(indicator),
        count=min(sum(int(s.get("count", 0)) for s in sightings), 999_999_999), first_seen=first, last_seen=last,
        where_sighted_refs=where, created_by_ref=SUITE_IDENTITY.id, object_marking_refs=[TLP2_IDS[marking]],
        created=min(first, now), modified=now)
    return json.loads(sighting.serialize())


def _collection(feed: FeedConfig) -> Collection:
    cfg = feed.sightings
    env = cfg.password_env or feed.password_env
    password = os.environ.get(env) if env else None
    if env and not password:
        raise RuntimeError(f"sightings to {feed.name}: the variable {env} is not set")
    user = cfg.username or feed.username or ("soc" if password else None)
    return bounded(Collection(cfg.collection_url, user=user, password=password, verify=feed.verify_tls),
                   timeout=feed.timeout_seconds, max_bytes=1_048_576, retries=feed.retries,
                   deadline=deadline_of(feed))


def share(store: Store, service: IndicatorService, feed: FeedConfig, state: dict) -> ShareResult:
    """Post the sightings of ``feed``'s indicators that changed since the last run; ``state`` (the feed's state
    document) carries ``sightings_sent_to`` and is updated in place (the caller stores it)."""
    cfg = feed.sightings
    result = ShareResult()
    since = state.get("sightings_sent_to")
    ranges = {"modified": (since, None)} if since else {}
    changed: dict[str, str] = {}  # indicator id -> newest modified of its sightings
    for doc in iterate(store, SIGHTINGS, DocumentQuery(terms={"source": feed.name}, ranges=ranges, sort="modified",
                                                      limit=PAGE)):
        if since and doc.get("modified", "") <= since:
            continue  # already sent (the range is inclusive)
        if doc["indicator_id"] not in changed and len(changed) >= cfg.max_per_run:
            result.pending = True
            break
        changed[doc["indicator_id"]] = max(changed.get(doc["indicator_id"], ""), doc.get("modified", ""))
    if not changed:
        return result
    now = ecs.now_iso()
    objects, sent_to = [], since or ""
    for indicator_id, modified in changed.items():
        indicator = service.get(indicator_id)
        if indicator is None:
            continue
        marking = stricter(indicator.get("tlp", "amber"), cfg.tlp)
        if TLP_LEVELS.index(marking) > TLP_LEVELS.index(cfg.max_tlp):
            result.withheld_tlp += 1
            sent_to = max(sent_to, modified)
            continue
        every = list(iterate(store, SIGHTINGS, DocumentQuery(terms={"indicator_id": indicator_id,
                                                                   "source": feed.name}, limit=PAGE)))
        if every:
            objects.append((modified, sighting_for(feed, indicator, every, now)))
    collection = _collection(feed)
    try:
        for i in range(0, len(objects), cfg.batch_size):
            batch = objects[i:i + cfg.batch_size]
            markings = {ref for _, o in batch for ref in o["object_marking_refs"]}
            envelope = {"objects": [json.loads(m.serialize()) for m in TLP2_MARKINGS.values() if m.id in markings]
                        + [o for _, o in batch]}
            status = collection.add_objects(json.dumps(envelope), wait_for_completion=False)
            result.envelopes += 1
            failed = {f.get("id") for f in (status.failures or []) if isinstance(f, dict)}
            for _, o in batch:
                if o["id"] in failed:
                    result.errors.append(f"{o['sighting_of_ref']}: refused by the server")
                else:
                    result.sent += 1
            sent_to = max([sent_to] + [m for m, _ in batch])
            state["sightings_sent_to"] = sent_to  # this batch is delivered: the next run starts after it
    finally:
        collection.close()
    if sent_to:
        state["sightings_sent_to"] = sent_to
    return result
