"""Indicators as the suite keeps them: one or more observables (an address or range, a domain, a URL, a file hash)
with a source, a TLP 2.0 marking, a confidence and a validity window. Values are normalised here, once, so matching
is a plain dictionary probe.
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from soc import ecs

TYPES = ("ipv4", "ipv6", "domain", "url", "md5", "sha1", "sha256", "sha512")
HASH_LENGTHS = {"md5": 32, "sha1": 40, "sha256": 64, "sha512": 128}
TLP_LEVELS = ("clear", "green", "amber", "amber+strict", "red")
COLLECTION = "indicators"
SIGHTINGS = "sightings"
_DOMAIN = re.compile(r"^(?=.{1,253}$)(?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_HEX = re.compile(r"^[0-9a-f]+$")
_NAMESPACE = uuid.UUID("6f1c3b9e-2d41-4c55-9a1e-0b7d5e3c2a10")  # indicator ids made here: uuid5 in this namespace


class IndicatorError(ValueError):
    pass


# The widest indicators taken in: a feed (poisoned or careless) naming 0.0.0.0/0, ::/0, a /8 or a top-level domain
# would make every event an alert and a sighting shared back to the national centre. A /16 (65 536 addresses) is
# already a whole provider's block; a /32 IPv6 is a regional registry's allocation to one provider.
WIDEST_PREFIX = {4: 16, 6: 32}


# Address space no outside feed may name as a range (a single address is taken: a feed may know one internal host
# of an adversary's, and the never-block check of soc_api/feeds/runner.py still applies to it): a range there would
# make the province's own traffic (its LANs, loopback, link-local, carrier NAT) alerts. Documentation ranges
# (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32) are not on it: no traffic uses them.
LOCAL_SPACE = tuple(ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12", "192.0.0.0/24",
    "192.168.0.0/16", "198.18.0.0/15", "224.0.0.0/4", "240.0.0.0/4", "::/128", "::1/128", "::ffff:0:0/96",
    "64:ff9b::/96", "fc00::/7", "fe80::/10", "ff00::/8"))


@lru_cache(maxsize=1)
def _public_suffixes():
    from publicsuffixlist import PublicSuffixList

    # The list the package ships (pinned in pyproject.toml): nothing is fetched at run time. Both sections: an
    # ICANN suffix (gov.vn, com.vn, in-addr.arpa) and a private one (github.io, blogspot.com) each name every site
    # of a registry or a hosting service.
    return PublicSuffixList()


def too_broad(kind: str, value: str, *, outside: bool = False) -> str | None:
    """Why a normalised observable would match far more than one adversary (None when it would not). ``outside``:
    the observable comes from a feed, where a range in private, loopback, link-local or reserved space
    (``LOCAL_SPACE``) is refused too."""
    if kind in ("ipv4", "ipv6") and "/" in value:
        net = ipaddress.ip_network(value, strict=False)
        widest = WIDEST_PREFIX[net.version]
        if net.prefixlen < widest:
            return (f"{value} is wider than the widest range an indicator may name (/{widest}): it would match "
                    f"{2 ** (net.max_prefixlen - net.prefixlen):,} addresses")
        if outside and net.prefixlen < net.max_prefixlen:
            local = next((space for space in LOCAL_SPACE if space.version == net.version and space.overlaps(net)),
                         None)
            if local is not None:
                return (f"{value} is a range in private, loopback, link-local or reserved space ({local}): a feed "
                        f"may name a single address there, not a range")
    if kind == "domain" and "." not in value:
        return f"{value!r} is a single-label domain (a top-level domain): it would match every name under it"
    if kind == "domain" and _public_suffixes().is_public(value):
        return f"{value!r} is a public suffix (the Public Suffix List): it would match every site registered under it"
    return None


def normalise(kind: str, value: str) -> str:
    """The one spelling of a value that matching uses; raises IndicatorError with the reason when it is not valid."""
    if kind not in TYPES:
        raise IndicatorError(f"unknown indicator type {kind!r}; types are {', '.join(TYPES)}")
    if not isinstance(value, str) or not value.strip():
        raise IndicatorError("an indicator needs a value")
    value = value.strip()
    if len(value) > 4096:
        raise IndicatorError("an indicator value may be at most 4096 characters")
    if kind in ("ipv4", "ipv6"):
        try:
            net = ipaddress.ip_network(value, strict=False)
        except ValueError as exc:
            raise IndicatorError(f"{value!r} is not an IP address or CIDR range") from exc
        if (net.version == 4) != (kind == "ipv4"):
            raise IndicatorError(f"{value!r} is not an {kind} address")
        full = 32 if net.version == 4 else 128
        return str(net.network_address) if net.prefixlen == full else str(net)
    if kind == "domain":
        domain = value.lower().rstrip(".")
        try:
            domain = domain.encode("idna").decode("ascii") if not domain.isascii() else domain
        except UnicodeError as exc:
            raise IndicatorError(f"{value!r} is not a domain name") from exc
        if not _DOMAIN.match(domain):
            raise IndicatorError(f"{value!r} is not a domain name")
        return domain
    if kind == "url":
        return normalise_url(value)
    digest = value.lower()
    if len(digest) != HASH_LENGTHS[kind] or not _HEX.match(digest):
        raise IndicatorError(f"{value!r} is not a {kind.upper()} hash ({HASH_LENGTHS[kind]} hex digits)")
    return digest


def normalise_url(value: str) -> str:
    """Scheme and host lower-case, default port and a bare trailing slash dropped; path and query kept as sent."""
    try:
        parts = urlsplit(value.strip())
    except ValueError as exc:
        raise IndicatorError(f"{value!r} is not a URL") from exc
    if not parts.scheme or not parts.netloc:
        raise IndicatorError(f"{value!r} is not an absolute URL (scheme://host/...)")
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    port = parts.port if parts.port and (scheme, parts.port) not in (("http", 80), ("https", 443)) else None
    netloc = f"[{host}]" if ":" in host else host
    if port:
        netloc += f":{port}"
    path = parts.path if parts.path not in ("", "/") else ""
    return urlunsplit((scheme, netloc, path, parts.query, ""))


def url_or_none(value: Any) -> str | None:
    try:
        return normalise_url(value) if isinstance(value, str) else None
    except (IndicatorError, ValueError):
        return None


def indicator_id(source: str, observables: list[dict]) -> str:
    key = source + "|" + "|".join(sorted(f"{o['type']}={o['value']}" for o in observables))
    return f"indicator--{uuid.uuid5(_NAMESPACE, key)}"


def build(observables: list[dict], *, source: str, tlp: str = "amber", confidence: int = 50,
          valid_from: str | None = None, valid_until: str | None = None, name: str | None = None,
          description: str = "", labels: list[str] | None = None, stix_id: str | None = None,
          created_by: str | None = None, modified: str | None = None) -> dict:
    """A validated indicator document, ready for the store."""
    if not observables:
        raise IndicatorError("an indicator needs at least one observable")
    clean = []
    for o in observables:
        try:
            kind, value = o["type"], o["value"]
        except (KeyError, TypeError) as exc:
            raise IndicatorError("each observable needs type and value") from exc
        entry = {"type": kind, "value": normalise(kind, value)}
        broad = too_broad(kind, entry["value"])
        if broad:
            raise IndicatorError(f"refused: {broad}")
        if entry not in clean:
            clean.append(entry)
    tlp = (tlp or "amber").lower()
    if tlp == "white":
        tlp = "clear"  # TLP 1.0 spelling
    if tlp not in TLP_LEVELS:
        raise IndicatorError(f"unknown TLP level {tlp!r}; levels are {', '.join(TLP_LEVELS)}")
    if not isinstance(confidence, int) or isinstance(confidence, bool) or not 0 <= confidence <= 100:
        raise IndicatorError("confidence must be an integer from 0 to 100")
    if not source or len(source) > 200:
        raise IndicatorError("an indicator needs a source (at most 200 characters)")
    now = ecs.now_iso()
    start = _time(valid_from, "valid_from") or now
    end = _time(valid_until, "valid_until")
    if end is not None and end <= start:
        raise IndicatorError("valid_until must be after valid_from")
    return {
        "id": stix_id or indicator_id(source, clean),
        "name": name or ", ".join(f"{o['type']} {o['value']}" for o in clean[:3]),
        "observables": clean,
        "values": [o["value"] for o in clean],  # for exact lookups in the store
        "types": sorted({o["type"] for o in clean}),
        "source": source,
        "tlp": tlp,
        "confidence": confidence,
        "valid_from": start,
        "valid_until": end,
        "description": description,
        "labels": list(labels or []),
        "created_by": created_by,
        "revoked": False,
        "created": now,
        "modified": modified or now,  # the indicator's own version (STIX modified)
        "added": now,  # when this version reached this suite (TAXII date_added, incremental reloads)
    }


def _time(value: str | None, what: str) -> str | None:
    if value in (None, ""):
        return None
    try:
        return ecs.utc_iso(ecs.parse_time(str(value)))
    except ValueError as exc:
        raise IndicatorError(f"{what} must be an ISO 8601 time: {exc}") from exc


def is_live(doc: dict, now: str) -> bool:
    """Matching only while valid: not revoked, started, not expired."""
    if doc.get("revoked"):
        return False
    if doc.get("valid_from") and doc["valid_from"] > now:
        return False
    return not (doc.get("valid_until") and doc["valid_until"] <= now)


def severity(confidence: int) -> str:
    return "high" if confidence >= 80 else "medium" if confidence >= 50 else "low"


# Documents the playbook action ``indicator`` writes to the same collection (one type and value each).
_FOREIGN_TYPES = {"ipv4-addr": "ipv4", "ipv6-addr": "ipv6", "domain-name": "domain", "url": "url",
                  "file-sha256": "sha256", "file-md5": "md5", "file-sha1": "sha1"}


def from_foreign(doc: dict) -> dict | None:
    """An indicator document of another writer (the playbook ``indicator`` action: type, value, tlp, confidence,
    valid_until) in this model's shape, so it matches on ingest; None when it names nothing the suite matches on."""
    if "observables" in doc:
        return doc
    kind = _FOREIGN_TYPES.get(str(doc.get("type")))
    if kind is None or not doc.get("value"):
        return None
    try:
        value = normalise(kind, str(doc["value"]))
    except IndicatorError:
        return None
    tlp = doc.get("tlp") if doc.get("tlp") in TLP_LEVELS else "amber"
    confidence = doc.get("confidence")
    return dict(doc, observables=[{"type": kind, "value": value}], values=[value], types=[kind], tlp=tlp,
                confidence=confidence if isinstance(confidence, int) else 50,
                name=doc.get("name") or f"{kind} {value}", revoked=bool(doc.get("revoked", False)),
                valid_from=doc.get("valid_from") or doc.get("created") or ecs.now_iso(),
                source=doc.get("source") or "playbook", created=doc.get("created") or ecs.now_iso(),
                modified=doc.get("modified") or doc.get("updated") or doc.get("created") or ecs.now_iso(),
                added=doc.get("added") or doc.get("updated") or doc.get("created") or ecs.now_iso(),
                stix_id=doc["id"] if str(doc["id"]).startswith("indicator--")
                else f"indicator--{uuid.uuid5(_NAMESPACE, str(doc['id']))}")


def readable(doc: Any) -> dict | None:
    """A stored indicator document in this model's shape (another writer's brought to it by ``from_foreign``), or
    None when it has no shape the suite can read. Every reader (matching, the API, TAXII) goes through this, so one
    odd document is skipped, never an error for every caller."""
    if not isinstance(doc, dict) or not isinstance(doc.get("id"), str):
        return None
    doc = from_foreign(doc)
    if doc is None:
        return None
    observables = doc.get("observables")
    if not isinstance(observables, list) or not observables or not all(
            isinstance(o, dict) and o.get("type") in TYPES and isinstance(o.get("value"), str) for o in observables):
        return None
    if doc.get("tlp") not in TLP_LEVELS or not all(isinstance(doc.get(name), str) for name in _REQUIRED_TEXT):
        return None
    confidence = doc.get("confidence")
    if not isinstance(confidence, int) or isinstance(confidence, bool):
        return None
    if not isinstance(doc.get("valid_until"), (str, type(None))) or not isinstance(doc.get("revoked", False), bool):
        return None
    try:  # what STIX will ask of it: an RFC 4122 id, times, a validity window that ends after it starts
        if uuid.UUID(str(doc.get("stix_id") or doc["id"]).removeprefix("indicator--")).variant != uuid.RFC_4122 \
                or not str(doc.get("stix_id") or doc["id"]).startswith("indicator--"):
            return None
        start = ecs.parse_time(doc["valid_from"])
        for name in ("created", "modified", "added"):
            ecs.parse_time(doc[name])
        if doc.get("valid_until") and ecs.parse_time(doc["valid_until"]) <= start:
            return None
    except ValueError:
        return None
    return doc


_REQUIRED_TEXT = ("name", "source", "valid_from", "created", "modified", "added")
