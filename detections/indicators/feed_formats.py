"""Indicator feeds' formats to indicator documents: STIX 2.1 bundles, MISP JSON events, plain lists (one value a line).

Feed content is input from outside: each parser takes bytes already capped in size by the fetcher and gives the
indicators it could take plus, for everything else, a reason from a closed set (``REASONS``, the metric's label):
nothing a feed sends is loaded without passing the model's checks (detections/indicators/model.py ``build``: valid
values, no range wider than a /16 or /32, no top-level domain or other public suffix, and from a feed no range in
private, loopback, link-local or reserved space) and the STIX pattern checks (stix.py: comparisons joined by OR only;
``MATCHES``/``LIKE``, which would need a regular expression on every event, are refused).

An item's own id (a STIX id, a MISP uuid) is never the stored id: the indicator is stored under uuid5 of the feed's
name and that id (``feed_indicator_id``), the item's id kept as ``stix_id``, so a feed cannot replace another
source's indicator by naming its id (the store refuses that too: ``id_conflict``).

Each indicator taken gets the feed's name as its source, the feed's TLP and confidence unless the item carries its
own, an expiry (the item's ``valid_until``, else ``last_seen`` + the feed's lifetime) and the feed's decay settings
with ``last_seen`` = now (detections/indicators/decay.py). An item whose own ``valid_until`` has passed is refused
(``expired``), not loaded.
"""

from __future__ import annotations

import ipaddress
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable

import orjson

from detections.indicators.model import HASH_LENGTHS, TLP_LEVELS, IndicatorError, build, too_broad
from detections.indicators.stix import indicators_from_stix
from soc import ecs

REASONS = ("malformed", "too_large", "too_many", "too_broad", "invalid_value", "unsupported", "expired",
           "not_for_detection", "revoked_here", "id_conflict", "never_block")
# Feed indicators' ids: uuid5 of the feed's name and the id the item carried, in this namespace (never the item's id
# itself: another source's indicator would be replaced by any feed naming its id).
_FEED_NAMESPACE = uuid.UUID("2c8f4e1a-6b3d-4f7e-9a05-3d1e7b6c9f42")
MAX_PATTERN_CHARS = 65_536  # one STIX pattern; the pattern parser's work grows with it
MAX_REASONS_KEPT = 20


class FeedRefused(Exception):
    """The whole feed content is refused (malformed, too large): nothing of it is loaded."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass
class FeedDefaults:
    name: str  # the indicators' source
    kind: str
    tlp: str = "amber"
    confidence: int = 50
    lifetime_seconds: float = 30 * 86400.0
    decay: dict = field(default_factory=lambda: {"model": "none"})
    max_indicators: int = 100_000
    value_type: str | None = None  # plain lists: every line is of this type (None: guessed per line)


@dataclass
class Parsed:
    docs: list[dict] = field(default_factory=list)
    items: int = 0  # what the content held (objects, attributes, lines)
    refused: dict[str, int] = field(default_factory=dict)  # reason -> count
    reasons: list[str] = field(default_factory=list)  # the first few, with the value or id

    def refuse(self, reason: str, detail: str) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + 1
        if len(self.reasons) < MAX_REASONS_KEPT:
            self.reasons.append(f"{reason}: {detail[:300]}")

    def take(self, doc: dict, defaults: FeedDefaults, label: str) -> None:
        if len(self.docs) >= defaults.max_indicators:
            self.refuse("too_many", f"{label}: over the feed's limit of {defaults.max_indicators} indicators")
            return
        self.docs.append(doc)


def _kind_of_error(exc: IndicatorError) -> str:
    text = str(exc)
    if text.startswith("refused:"):
        return "too_broad"
    if text.startswith("not a valid STIX"):
        return "malformed"
    if any(w in text for w in ("pattern", "not supported", "not a field", "only indicator", "can be matched")):
        return "unsupported"
    return "invalid_value"


def _json(data: bytes) -> Any:
    try:
        return orjson.loads(data)  # orjson: C speed, and a nesting limit (1024) instead of Python's recursion
    except orjson.JSONDecodeError as exc:
        raise FeedRefused("malformed", f"not JSON: {str(exc)[:200]}") from exc


def feed_indicator_id(feed: str, original_id: str) -> str:
    """The id a feed's indicator is stored under: its own to this feed (the item's id is kept as ``stix_id``)."""
    return f"indicator--{uuid.uuid5(_FEED_NAMESPACE, f'{feed}|{original_id}')}"


def _scoped(doc: dict, defaults: FeedDefaults, original_id: str | None) -> dict:
    """The item's own id (a STIX id, a MISP uuid) kept as ``stix_id`` — what sightings back to that source and the
    suite's TAXII collections name — and the document stored under the feed's id for it."""
    if original_id:
        doc["stix_id"] = original_id
        doc["id"] = feed_indicator_id(defaults.name, original_id)
    return doc


def _finish(doc: dict, defaults: FeedDefaults, now: str) -> dict:
    """The feed's checks, expiry and decay on one indicator; IndicatorError ``expired`` when its own validity has
    passed, ``refused: ...`` (too_broad) for a range in private or reserved space (model.py ``too_broad``)."""
    for o in doc["observables"]:
        broad = too_broad(o["type"], o["value"], outside=True)
        if broad:
            raise IndicatorError(f"refused: {broad}")
    if doc.get("valid_until") and doc["valid_until"] <= now:
        raise IndicatorError(f"expired: valid until {doc['valid_until']}")
    if not doc.get("valid_until"):
        doc["valid_until"] = ecs.utc_iso(ecs.parse_time(now) + timedelta(seconds=defaults.lifetime_seconds))
        if doc["valid_until"] <= doc["valid_from"]:
            raise IndicatorError(f"expired: valid from {doc['valid_from']} is after the feed's lifetime")
    doc["feed"] = {"name": defaults.name, "kind": defaults.kind, "last_seen": now, "decay": dict(defaults.decay)}
    doc["created_by"] = doc.get("created_by") or f"feed:{defaults.name}"
    return doc


def _add(parsed: Parsed, defaults: FeedDefaults, now: str, label: str, make) -> None:
    try:
        doc = _finish(make(), defaults, now)
    except IndicatorError as exc:
        parsed.refuse(reason_of(exc), f"{label}: {exc}")
        return
    parsed.take(doc, defaults, label)


# --- STIX 2.1 bundles (and TAXII objects) --------------------------------------------------------------------------
_KNOWN_BY_ID = ("marking-definition", "identity", "extension-definition")


def stix_indicator(obj: Any, defaults: FeedDefaults, now: str) -> dict:
    """One STIX object of a feed to an indicator document with the feed's defaults, expiry and decay;
    IndicatorError (its kind: ``reason_of``) when it cannot be taken."""
    if not isinstance(obj, dict):
        raise IndicatorError("malformed: an object that is not a JSON object")
    if obj.get("type") != "indicator":
        raise IndicatorError(f"unsupported: a {str(obj.get('type'))[:40]} object is not an indicator")
    if len(str(obj.get("pattern", ""))) > MAX_PATTERN_CHARS:
        raise IndicatorError(f"too_large: pattern over {MAX_PATTERN_CHARS} characters")
    if obj.get("revoked"):
        raise IndicatorError("expired: revoked by its source")
    doc = indicators_from_stix(obj, source=defaults.name, default_tlp=defaults.tlp, created_by=f"feed:{defaults.name}")
    _scoped(doc, defaults, str(obj["id"]))
    if obj.get("confidence") is None:
        doc["confidence"] = defaults.confidence
    return _finish(doc, defaults, now)


def reason_of(exc: IndicatorError) -> str:
    """The closed-set reason of a refusal (the metric's label)."""
    head = str(exc).split(":", 1)[0]
    return head if head in REASONS else _kind_of_error(exc)


def parse_stix_bundle(data: bytes, defaults: FeedDefaults, now: str | None = None) -> Parsed:
    now = now or ecs.now_iso()
    bundle = _json(data)
    if not isinstance(bundle, dict) or bundle.get("type") != "bundle" or not isinstance(bundle.get("objects", []),
                                                                                          list):
        raise FeedRefused("malformed", "not a STIX 2.1 bundle (an object of type bundle with an objects list)")
    parsed = Parsed()
    for obj in bundle.get("objects", []):
        if isinstance(obj, dict) and obj.get("type") in _KNOWN_BY_ID:
            continue  # what indicators refer to; known by id
        parsed.items += 1
        label = str(obj.get("id", "?"))[:100] if isinstance(obj, dict) else "?"
        try:
            doc = stix_indicator(obj, defaults, now)
        except IndicatorError as exc:
            parsed.refuse(reason_of(exc), f"{label}: {exc}")
            continue
        parsed.take(doc, defaults, label)
    return parsed


# --- MISP JSON events --------------------------------------------------------------------------------------------
MISP_TYPES = {"ip-src": "ip", "ip-dst": "ip", "domain": "domain", "hostname": "domain", "url": "url", "md5": "md5",
              "sha1": "sha1", "sha256": "sha256",
              # composites: the part the suite matches on
              "ip-src|port": "ip", "ip-dst|port": "ip", "filename|md5": "md5", "filename|sha1": "sha1",
              "filename|sha256": "sha256"}
_TLP_TAGS = {f"tlp:{level}": level for level in TLP_LEVELS} | {"tlp:white": "clear"}


def _tlp_from_tags(tags: Any) -> str | None:
    found = None
    for tag in tags if isinstance(tags, list) else []:
        name = (tag.get("name") if isinstance(tag, dict) else tag) or ""
        level = _TLP_TAGS.get(str(name).strip().lower())
        if level and (found is None or TLP_LEVELS.index(level) > TLP_LEVELS.index(found)):
            found = level  # several TLP tags: the strictest holds
    return found


def _misp_events(doc: Any) -> list[dict]:
    if isinstance(doc, dict) and isinstance(doc.get("Event"), dict):
        return [doc["Event"]]
    if isinstance(doc, dict) and isinstance(doc.get("response"), list):
        doc = doc["response"]
    if isinstance(doc, list):
        events = [e.get("Event", e) if isinstance(e, dict) else None for e in doc]
        if all(isinstance(e, dict) for e in events):
            return events
    raise FeedRefused("malformed", "not a MISP event export ({\"Event\": ...}, a list of them, or {\"response\": [...]})")


def _misp_time(value: Any) -> str | None:
    """A MISP timestamp (seconds since the epoch, as text) or ISO time, as the suite's ISO time."""
    try:
        if str(value).isdigit():
            return ecs.utc_iso(datetime.fromtimestamp(int(value), timezone.utc))
        return ecs.utc_iso(ecs.parse_time(str(value))) if value else None
    except (ValueError, OverflowError, OSError):
        return None


def _misp_observable(kind: str, value: str) -> dict:
    if "|" in value:
        left, _, right = value.partition("|")
        value = left if kind == "ip" else right
    value = value.strip()
    if kind == "ip":
        try:
            kind = "ipv4" if ipaddress.ip_network(value, strict=False).version == 4 else "ipv6"
        except ValueError as exc:
            raise IndicatorError(f"{value[:100]!r} is not an IP address") from exc
    return {"type": kind, "value": value}


def parse_misp(data: bytes, defaults: FeedDefaults, now: str | None = None) -> Parsed:
    now = now or ecs.now_iso()
    parsed = Parsed()
    for event in _misp_events(_json(data)):
        event_tlp = _tlp_from_tags(event.get("Tag"))
        attributes = list(event.get("Attribute") or []) if isinstance(event.get("Attribute"), list) else []
        for obj in event.get("Object") or [] if isinstance(event.get("Object"), list) else []:
            if isinstance(obj, dict) and isinstance(obj.get("Attribute"), list):
                attributes.extend(obj["Attribute"])
        info = str(event.get("info") or "MISP event")[:150]
        for attr in attributes:
            parsed.items += 1
            if not isinstance(attr, dict) or not isinstance(attr.get("value"), str):
                parsed.refuse("malformed", "an attribute without a text value")
                continue
            label = f"{str(attr.get('type'))[:30]} {attr['value'][:100]}"
            kind = MISP_TYPES.get(str(attr.get("type")))
            if kind is None:
                parsed.refuse("unsupported", f"{label}: MISP type not matched on")
                continue
            if attr.get("to_ids") not in (True, 1, "1", "true", "True"):
                parsed.refuse("not_for_detection", f"{label}: to_ids is not set")
                continue
            if attr.get("deleted") in (True, 1, "1"):
                parsed.refuse("expired", f"{label}: deleted in MISP")
                continue
            tlp = _tlp_from_tags(attr.get("Tag")) or event_tlp or defaults.tlp
            stix_id = None
            try:
                stix_id = f"indicator--{uuid.UUID(str(attr.get('uuid')))}" if attr.get("uuid") else None
            except ValueError:
                stix_id = None

            def make(attr=attr, kind=kind, tlp=tlp, stix_id=stix_id):
                doc = build([_misp_observable(kind, attr["value"])], source=defaults.name, tlp=tlp,
                            confidence=defaults.confidence, name=f"{info}: {attr['type']} {attr['value'][:100]}",
                            description=str(attr.get("comment") or "")[:1000],
                            labels=[str(attr.get("category"))[:60]] if attr.get("category") else [],
                            created_by=f"feed:{defaults.name}", modified=_misp_time(attr.get("timestamp")) or now)
                return _scoped(doc, defaults, stix_id)

            _add(parsed, defaults, now, label, make)
    return parsed


# --- plain lists -------------------------------------------------------------------------------------------------
def guess_type(value: str) -> str:
    if "://" in value:
        return "url"
    try:
        return "ipv4" if ipaddress.ip_network(value, strict=False).version == 4 else "ipv6"
    except ValueError:
        pass
    lowered = value.lower()
    for kind, length in HASH_LENGTHS.items():
        if len(lowered) == length and all(c in "0123456789abcdef" for c in lowered):
            return kind
    return "domain"


def _lines(data: bytes) -> Iterable[str]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FeedRefused("malformed", f"not UTF-8 text: {exc}") from exc
    for line in text.splitlines():
        line = line.split(" #", 1)[0].split("\t#", 1)[0].strip()
        if line and not line.startswith("#"):
            yield line


def parse_plain(data: bytes, defaults: FeedDefaults, now: str | None = None) -> Parsed:
    now = now or ecs.now_iso()
    parsed = Parsed()
    for value in _lines(data):
        parsed.items += 1
        label = value[:100]
        if len(value) > 4096:
            parsed.refuse("too_large", f"{label}...: a value over 4096 characters")
            continue
        kind = defaults.value_type or guess_type(value)

        def make(kind=kind, value=value):
            return build([{"type": kind, "value": value}], source=defaults.name, tlp=defaults.tlp,
                         confidence=defaults.confidence, created_by=f"feed:{defaults.name}", modified=now,
                         valid_from=now)

        _add(parsed, defaults, now, label, make)
    return parsed


PARSERS = {"stix": parse_stix_bundle, "misp": parse_misp, "plain": parse_plain}
