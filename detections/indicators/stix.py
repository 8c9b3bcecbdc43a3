"""STIX 2.1 in and out (the ``stix2`` package), with TLP 2.0 markings.

Out: indicators become STIX Indicators (a STIX pattern OR-ing their observables), sightings become Sightings of
them, malware findings become Malware objects with their File samples; every object carries its TLP 2.0 marking
definition (the OASIS ones, by their fixed ids).
In: STIX Indicators whose pattern is one comparison, or comparisons joined by OR, of a value the suite matches on
(addresses and ranges, domain names, URLs, file hashes). Anything else is refused with the reason.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import stix2
from stix2patterns.pattern import Pattern
from stix2patterns.validator import run_validator

from detections.indicators.model import TLP_LEVELS, IndicatorError, build
from soc import linear_re

TLP2_EXTENSION = "extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d"
_OASIS_IDENTITY = "identity--b3bca3c2-1f3d-4b54-b44f-dac42c3a8f01"
TLP2_IDS = {
    "clear": "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487",
    "green": "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb",
    "amber": "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421",
    "amber+strict": "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003",
    "red": "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1",
}
TLP_BY_ID = {v: k for k, v in TLP2_IDS.items()}
# TLP 1.0 markings (stix2's TLP_WHITE...) read as their TLP 2.0 counterparts.
TLP_BY_ID.update({stix2.TLP_WHITE.id: "clear", stix2.TLP_GREEN.id: "green", stix2.TLP_AMBER.id: "amber",
                  stix2.TLP_RED.id: "red"})
TLP2_MARKINGS = {
    level: stix2.v21.MarkingDefinition(
        id=marking_id, created="2022-10-01T00:00:00.000Z", name=f"TLP:{level.upper()}", created_by_ref=_OASIS_IDENTITY,
        extensions={TLP2_EXTENSION: {"extension_type": "property-extension", "tlp_2_0": level}})
    for level, marking_id in TLP2_IDS.items()
}
SUITE_IDENTITY = stix2.v21.Identity(id="identity--2b0e6e55-5f1a-4d3c-9a4e-5c7a3f0b9d21", name="Provincial SOC",
                                    identity_class="organization", created="2026-01-01T00:00:00.000Z",
                                    modified="2026-01-01T00:00:00.000Z")
_AGENCY_NS = uuid.UUID("0c3e8a5f-7b2d-4e61-8f9a-2d4b6c8e0a13")

_PATTERN_TYPES = {
    "ipv4": "ipv4-addr:value", "ipv6": "ipv6-addr:value", "domain": "domain-name:value", "url": "url:value",
    "md5": "file:hashes.MD5", "sha1": "file:hashes.'SHA-1'", "sha256": "file:hashes.'SHA-256'",
    "sha512": "file:hashes.'SHA-512'",
}
_STIX_HASH = {"md5": "MD5", "sha1": "SHA-1", "sha256": "SHA-256", "sha512": "SHA-512"}
_HASH_NAMES = {"md5": "md5", "sha-1": "sha1", "sha1": "sha1", "sha-256": "sha256", "sha256": "sha256",
               "sha-512": "sha512", "sha512": "sha512"}
_QUOTED = linear_re.compile(r"'(?:[^'\\]|\\.)*'")  # on a feed's text: linear time (soc/linear_re.py)


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def pattern_of(observables: list[dict]) -> str:
    parts = []
    for o in observables:
        op = "ISSUBSET" if o["type"] in ("ipv4", "ipv6") and "/" in o["value"] else "="
        parts.append(f"[{_PATTERN_TYPES[o['type']]} {op} {_quote(o['value'])}]")
    return " OR ".join(parts)


def stix_id_for(kind: str, doc_id: str) -> str:
    """The STIX id of a sighting or malware finding kept under ``doc_id`` (stable, RFC 4122 as STIX requires)."""
    return f"{kind}--{uuid.uuid5(_AGENCY_NS, f'{kind}|{doc_id}')}"


def agency_identity_id(agency: str | None) -> str:
    return f"identity--{uuid.uuid5(_AGENCY_NS, agency or '-')}"


def _stix_time(value: str | None) -> str | None:
    return value


def indicator_to_stix(doc: dict) -> stix2.v21.Indicator:
    kwargs: dict[str, Any] = dict(
        id=doc.get("stix_id") or doc["id"], created=doc["created"], modified=doc["modified"], name=doc["name"],
        pattern=pattern_of(doc["observables"]), pattern_type="stix", valid_from=doc["valid_from"],
        confidence=doc.get("confidence", 50), object_marking_refs=[TLP2_IDS[doc.get("tlp", "amber")]],
        created_by_ref=SUITE_IDENTITY.id, revoked=bool(doc.get("revoked")),
        external_references=[{"source_name": doc.get("source", "soc"), "description": "indicator source"}],
    )
    if doc.get("modified", "") < doc.get("created", ""):
        kwargs["modified"] = doc["created"]
    if doc.get("valid_until"):
        kwargs["valid_until"] = doc["valid_until"]
    if doc.get("description"):
        kwargs["description"] = doc["description"]
    if doc.get("labels"):
        kwargs["labels"] = doc["labels"]
    return stix2.v21.Indicator(**kwargs)


def sighting_to_stix(sighting: dict, tlp: str = "amber") -> stix2.v21.Sighting:
    agency = (sighting.get("organization") or {}).get("id")
    return stix2.v21.Sighting(
        id=sighting.get("stix_id") or stix_id_for("sighting", sighting["id"]), sighting_of_ref=sighting["indicator_id"],
        count=min(int(sighting["count"]), 999_999_999), first_seen=sighting["first_seen"],
        last_seen=sighting["last_seen"], where_sighted_refs=[agency_identity_id(agency)],
        created_by_ref=SUITE_IDENTITY.id, object_marking_refs=[TLP2_IDS[tlp]],
        created=sighting.get("created") or sighting["first_seen"],
        modified=max(sighting.get("modified") or sighting["last_seen"], sighting.get("created") or ""),
    )


def malware_to_stix(finding: dict, tlp: str = "amber") -> list:
    """A malware finding: a Malware (not a family) and the File samples it was found as."""
    files = []
    for algorithm, value in (finding.get("hashes") or {}).items():
        name = _STIX_HASH.get(algorithm)
        if name:
            files.append(stix2.v21.File(hashes={name: value}, object_marking_refs=[TLP2_IDS[tlp]]))
    malware = stix2.v21.Malware(
        id=finding.get("stix_id") or stix_id_for("malware", finding["id"]), name=finding.get("name") or "malware finding",
        is_family=False, sample_refs=[f.id for f in files] or None, created_by_ref=SUITE_IDENTITY.id,
        object_marking_refs=[TLP2_IDS[tlp]], created=finding["first_seen"],
        modified=max(finding.get("modified") or finding["first_seen"], finding["first_seen"]),
        first_seen=finding["first_seen"], last_seen=finding["last_seen"],
    )
    return [malware, *files]


def bundle(objects: list) -> dict:
    """A STIX 2.1 bundle of the objects plus the marking definitions and identities they refer to."""
    used = {ref for o in objects for ref in (o.get("object_marking_refs") or [])}
    extra = [m for m in TLP2_MARKINGS.values() if m.id in used] + [SUITE_IDENTITY]
    return json.loads(stix2.v21.Bundle(objects=extra + list(objects), allow_custom=True).serialize())


def tlp_of(obj: dict) -> str | None:
    for ref in obj.get("object_marking_refs") or []:
        if ref in TLP_BY_ID:
            return TLP_BY_ID[ref]
    return None


def indicators_from_stix(obj: dict, *, source: str, default_tlp: str = "amber",
                         created_by: str | None = None) -> dict:
    """One STIX Indicator (a dict) to one indicator document; IndicatorError says why it cannot be taken."""
    if obj.get("type") != "indicator":
        raise IndicatorError(f"only indicator objects are taken here, not {obj.get('type')!r}")
    try:
        parsed = stix2.parse(obj, allow_custom=True, version="2.1")
    except (stix2.exceptions.STIXError, ValueError, TypeError) as exc:
        raise IndicatorError(f"not a valid STIX 2.1 indicator: {exc}") from exc
    if parsed.get("pattern_type") != "stix":
        raise IndicatorError(f"pattern type {parsed.get('pattern_type')!r} is not supported (only stix)")
    observables = observables_of(parsed["pattern"])
    tlp = tlp_of(obj) or default_tlp
    if tlp not in TLP_LEVELS:
        tlp = default_tlp
    confidence = obj.get("confidence")
    return build(
        observables, source=source, tlp=tlp, confidence=int(confidence) if confidence is not None else 50,
        valid_from=str(parsed["valid_from"]), valid_until=str(parsed["valid_until"]) if parsed.get(
            "valid_until") else None,
        name=obj.get("name"), description=obj.get("description") or "", labels=list(obj.get("labels") or []),
        stix_id=obj["id"], created_by=created_by, modified=_iso(parsed["modified"]),
    ) | ({"revoked": True} if obj.get("revoked") else {})


def _iso(value: Any) -> str:
    from soc import ecs

    return ecs.utc_iso(value) if hasattr(value, "astimezone") else str(value)


def observables_of(pattern: str) -> list[dict]:
    errors = run_validator(pattern)
    if errors:
        raise IndicatorError(f"invalid STIX pattern: {'; '.join(errors)}")
    bare = _QUOTED.sub("''", pattern)
    if re.search(r"\b(AND|FOLLOWEDBY|WITHIN|REPEATS|START|STOP|NOT|LIKE|MATCHES)\b", bare):
        raise IndicatorError("only patterns of comparisons joined by OR can be matched on ingest")
    data = Pattern(pattern).inspect()
    if data.qualifiers:
        raise IndicatorError("pattern qualifiers are not supported")
    observables = []
    for object_type, comparisons in data.comparisons.items():
        for path, op, literal in comparisons:
            if op not in ("=", "ISSUBSET", "IN"):
                raise IndicatorError(f"comparison {op} is not supported")
            values = [_unquote(v) for v in _QUOTED.findall(literal)] if op == "IN" else [_unquote(literal)]
            kind = _kind(object_type, path)
            observables.extend({"type": kind, "value": v} for v in values)
    if not observables:
        raise IndicatorError("the pattern names nothing the suite can match")
    return observables


def _unquote(literal: str) -> str:
    literal = literal.strip()
    if literal.startswith("'") and literal.endswith("'"):
        literal = literal[1:-1]
    return literal.replace("\\'", "'").replace("\\\\", "\\")


def _kind(object_type: str, path: list) -> str:
    if object_type in ("ipv4-addr", "ipv6-addr") and path == ["value"]:
        return "ipv4" if object_type == "ipv4-addr" else "ipv6"
    if object_type == "domain-name" and path == ["value"]:
        return "domain"
    if object_type == "url" and path == ["value"]:
        return "url"
    if object_type in ("file", "artifact") and len(path) == 2 and path[0] == "hashes":
        name = _HASH_NAMES.get(str(path[1]).strip("'").lower())
        if name:
            return name
    raise IndicatorError(f"{object_type}:{'.'.join(str(p) for p in path)} is not a field the suite matches on")
