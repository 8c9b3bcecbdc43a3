"""The on-ingest indicator matcher (a detections.engine Matcher): every stored event's address, domain, URL and hash
fields are probed in the index; a live indicator that matches raises an alert (through the AlertManager, deduplicated
per indicator and agency) and records a sighting.
"""

from __future__ import annotations

import logging
from typing import Any, Iterable

from detections.engine import Detection
from detections.indicators.decay import matching
from detections.indicators.model import severity, url_or_none
from detections.indicators.store import IndicatorService
from detections.sigma.loader import RuleMeta
from soc import ecs
from soc.storage.base import StoreError

log = logging.getLogger(__name__)
RULE_ID = "soc-indicator-match"

IP_FIELDS = ("source.ip", "destination.ip", "client.ip", "server.ip", "source.nat.ip", "destination.nat.ip",
             "related.ip")
DOMAIN_FIELDS = ("dns.question.name", "url.domain", "destination.domain", "source.domain", "server.domain",
                 "client.domain", "tls.client.server_name", "related.hosts")
URL_FIELDS = ("url.original", "url.full")
HASH_FIELDS = {
    "md5": ("file.hash.md5", "process.hash.md5", "related.hash"),
    "sha1": ("file.hash.sha1", "process.hash.sha1", "related.hash"),
    "sha256": ("file.hash.sha256", "process.hash.sha256", "related.hash"),
    "sha512": ("file.hash.sha512", "process.hash.sha512"),
}
_HASH_BY_LENGTH = {32: "md5", 40: "sha1", 64: "sha256", 128: "sha512"}


def _values(flat: dict[str, Any], name: str) -> Iterable[str]:
    value = flat.get(name)
    if value is None or value == "":
        return ()
    if isinstance(value, list):
        return [str(v) for v in value if v not in (None, "")]
    return (str(value),)


class IndicatorMatcher:
    def __init__(self, service: IndicatorService):
        self.service = service
        self.matched = 0

    def hits(self, doc: dict) -> list[tuple[str, str, str]]:
        """(indicator id, field, value) for every live indicator this event matches."""
        index = self.service.index
        if not len(index):
            return []
        flat = ecs.flatten(doc)
        found: list[tuple[str, str, str]] = []
        seen: set[str] = set()

        def add(ids: set[str], field: str, value: str) -> None:
            for i in ids - seen:
                seen.add(i)
                found.append((i, field, value))

        for name in IP_FIELDS:
            for value in _values(flat, name):
                add(index.ip(value), name, value)
        if index.has_domains:
            for name in DOMAIN_FIELDS:
                for value in _values(flat, name):
                    add(index.domain(value), name, value)
        for name in URL_FIELDS:
            for value in _values(flat, name):
                normalised = url_or_none(value)
                if normalised is None:
                    continue
                if index.has_urls:
                    add(index.url(normalised), name, value)
                if index.has_domains and not flat.get("url.domain"):
                    host = normalised.split("://", 1)[1].split("/", 1)[0].split("?", 1)[0]
                    add(index.domain(host.rsplit(":", 1)[0].strip("[]")), name, value)
        for algorithm, names in HASH_FIELDS.items():
            for name in names:
                for value in _values(flat, name):
                    if name == "related.hash" and _HASH_BY_LENGTH.get(len(value)) != algorithm:
                        continue
                    add(index.hash(algorithm, value), name, value)
        return found

    def evaluate(self, events: list[dict]) -> list[Detection]:
        now = ecs.now_iso()
        detections: list[Detection] = []
        sightings = []
        for doc in events:
            for indicator_id, field, value in self.hits(doc):
                indicator = self.service.index.docs.get(indicator_id)
                if indicator is None or not matching(indicator, now):
                    continue  # expired, decayed below its floor (or not yet valid) indicators stop matching
                agency = ecs.get(doc, "organization.id")
                sightings.append((indicator_id, agency, doc, field, value))
                detections.append(self._detection(indicator, doc, field, value))
        if sightings:
            self.matched += len(sightings)
            try:
                self.service.record_sightings(sightings)
            except StoreError as exc:  # the alert still goes out; the sighting count is what is lost
                log.error("indicator sightings could not be stored: %s", exc)
        return detections

    @staticmethod
    def _detection(indicator: dict, doc: dict, field: str, value: str) -> Detection:
        meta = RuleMeta(
            id=RULE_ID, name="indicator_match", title=f"Indicator match: {indicator['name']}",
            level=severity(int(indicator.get("confidence", 50))),
            tags=[f"tlp.{indicator.get('tlp', 'amber')}", f"soc.indicator.source.{indicator.get('source', '')}"],
            description=indicator.get("description") or f"{field} {value} matches an indicator from "
                                                         f"{indicator.get('source')}",
            path="",
        )
        return Detection(meta=meta, kind="indicator", agency=ecs.get(doc, "organization.id"),
                         labels={"indicator.id": indicator["id"]}, events=[doc], count=1,
                         first_seen=doc["@timestamp"], last_seen=doc["@timestamp"])
