"""Any ECS document (Filebeat, Elastic Agent, Logstash output, another SOC): an object with ``@timestamp``.

Kept as it is, with ``@timestamp`` normalised to UTC. The pipeline then takes over what only the suite may say
(``organization.*`` and ``soc.*`` from the inventory, ``event.id``, ``event.created``, ``event.ingested``); a
claim the document made about its agency is kept under ``soc.claimed_agency``. Top-level names starting with ``_``
(``_id``, ``_index`` of an exported hit) are metadata of another store, not fields: they are dropped (the raw line
stays in ``event.original``). Dotted names (``"organization.id"``, ``{"soc.asset": {...}}``) are made nested at every
depth, as Elasticsearch reads them (soc.ecs.nest); a dotted name that contradicts a nested one is refused
(``dotted_conflict``).
"""

from __future__ import annotations

from collectors.message import ParseError
from collectors.parsers.registry import ParseContext, ParserSpec
from soc import ecs

# ECS objects the suite reads or writes: a document where one of them is not an object cannot be enriched.
OBJECTS = ("event", "host", "source", "destination", "user", "process", "file", "observer", "log", "agent", "ecs",
           "organization", "soc", "network", "url", "related", "rule", "threat")


def parse_ecs(doc: dict, ctx: ParseContext | None = None) -> dict:
    record = doc.get("_json")
    if not detect(doc):
        raise ParseError("not_ecs", "not an ECS document (no @timestamp string)")
    try:
        moment = ecs.parse_time(record["@timestamp"].strip())  # type: ignore[index]
    except ValueError as exc:
        raise ParseError("bad_timestamp", f"@timestamp {record['@timestamp'][:60]!r} is not ISO 8601") from exc  # type: ignore[index]
    try:  # dotted names made nested, at every depth, before anything reads them (the pipeline's claims step)
        record = ecs.nest({k: v for k, v in record.items() if not k.startswith("_")})  # type: ignore[union-attr]
    except ecs.FieldNameError as exc:
        raise ParseError(exc.kind, str(exc)) from exc
    for name in OBJECTS:
        if name in record and name != "related" and not isinstance(record[name], dict):  # type: ignore[operator]
            raise ParseError("bad_shape", f"ECS field {name!r} must be an object, not {type(record[name]).__name__}")  # type: ignore[index]
    if "tags" in record and not isinstance(record["tags"], list):  # type: ignore[operator]
        raise ParseError("bad_shape", "ECS field 'tags' must be a list")
    out = record
    out["@timestamp"] = moment
    doc.clear()
    doc.update(out)
    return doc


def detect(doc: dict) -> bool:
    record = doc.get("_json")
    return isinstance(record, dict) and isinstance(record.get("@timestamp"), str)


SPEC = ParserSpec(name="ecs", dataset="ecs.generic", carrier="json", parse=parse_ecs, detect=detect,
                  description="any ECS document with @timestamp, kept as it is (last JSON choice)")
