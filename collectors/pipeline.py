"""The parsing and enrichment pipeline: a list of small steps, each one function, wired by name.

raw bytes ─ decode ─ syslog header ─ program parser ─ claims ─ inventory enrichment ─ finalize ─▶ ECS event (syslog)
raw bytes ─ JSON decode ─ shape parser ─ claims ─ inventory enrichment ─ finalize ─▶ ECS event   (format json)
raw bytes ─ decode ─ the named format's parser ─ claims ─ inventory enrichment ─ finalize ─▶ ECS event (a format)

``RawMessage.format`` picks the list. A JSON document's shape (Winlogbeat, NXLog, osquery, any ECS document) is
recognised by the json-carried parsers of collectors/parsers/registry.py. When the message carries an ``agency``
(an authenticating source vouched for it: the API key's agency), that agency is authoritative: ``organization.*``
come from the inventory agency of that id whatever the body says. Whatever the path, the claims step removes every
field only the suite may set (SUITE_FIELDS below) before enrichment sets them.

A step raises ParseError to reject a message; the pipeline turns that into a dead letter carrying the raw bytes,
the source and the reason, so nothing received is ever silently dropped. Any other exception in a step is a bug,
but it too ends as a dead letter (reason ``internal_error``) rather than stopping the collector.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterable

import json

from collectors.message import ParseError, RawMessage
from collectors.parsers.registry import ParseContext, all_parsers, parse_record, parser_for_json, parser_for_syslog
from collectors.parsers.syslog import parse_syslog
from collectors.sources.unknown_senders import UnknownSenders
from inventory.enrich import enrich
from inventory.lookup import Inventory
from soc import codec, ecs, metrics
from soc.storage.base import DeadLetter, EncodedEvent, encode_event

log = logging.getLogger(__name__)


@dataclass
class Context:
    inventory: Inventory
    zone: object  # tzinfo for year-less timestamps
    max_line_bytes: int = 64 * 1024
    dead_letter_max_bytes: int = 2 * 1024 * 1024
    unknown_senders: UnknownSenders = field(default_factory=UnknownSenders)
    max_json_bytes: int = 1024 * 1024  # one JSON document (a Windows event with a long script block is large)
    max_json_depth: int = 32  # nesting of objects and arrays
    # What steps count while a batch is processed; the batch's result carries it out, so a parse worker in another
    # process reports it to the suite's metrics and unknown-sender table instead of to its own copies.
    tally: "Tally" = field(default_factory=lambda: Tally())


@dataclass
class Tally:
    parsed: Counter = field(default_factory=Counter)  # parser name → messages parsed
    failed: Counter = field(default_factory=Counter)  # reason → messages turned into dead letters
    # (peer, certificate name, transport) → [messages, first received, last received]
    unknown_senders: dict = field(default_factory=dict)


Step = Callable[[dict, RawMessage, Context], dict]

_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f]")


def _printable(text: str) -> bool:
    # Tabs are common in real logs; other C0 controls (and NUL) mean binary data, not a log line.
    return _CONTROL.search(text) is None


def step_decode(doc: dict, msg: RawMessage, ctx: Context) -> dict:
    if msg.truncated or len(msg.data) > ctx.max_line_bytes:
        raise ParseError("line_too_long",
                         f"message of {len(msg.data)}{'+' if msg.truncated else ''} bytes exceeds the "
                         f"{ctx.max_line_bytes}-byte limit")
    data = msg.data.rstrip(b"\r\n")
    if not data.strip():
        raise ParseError("empty", "empty message")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParseError("invalid_utf8", f"not valid UTF-8 at byte {exc.start}: {exc.reason}") from exc
    if not _printable(text):
        raise ParseError("binary", "binary content (control or NUL bytes) in a text log line")
    doc["_text"] = text
    return doc


def step_syslog(doc: dict, msg: RawMessage, ctx: Context) -> dict:
    text = doc.pop("_text")  # the line as decoded, without its line end: also the event's original
    parsed = parse_syslog(text, ctx.zone, msg.received)
    parsed["event"] = {"original": text}
    return parsed


def step_syslog_file(doc: dict, msg: RawMessage, ctx: Context) -> dict:
    """A line read from a log file: a syslog line without <PRI> (/var/log/auth.log), or with one."""
    text = doc.pop("_text")
    parsed = parse_syslog(text, ctx.zone, msg.received, require_pri=False)
    parsed["event"] = {"original": text}
    return parsed


def step_program(doc: dict, msg: RawMessage, ctx: Context) -> dict:
    """Hand the message to its format's parser (collectors/parsers/registry.py); plain syslog otherwise."""
    spec = parser_for_syslog(doc)
    if spec is None:
        ecs.put(doc, "event.module", "syslog")
        ecs.put(doc, "event.dataset", "syslog.generic")
        ctx.tally.parsed["syslog"] += 1
        return doc
    doc = spec.parse(doc, ParseContext(zone=ctx.zone, received=msg.received))  # type: ignore[arg-type]
    ecs.put(doc, "event.dataset", ecs.get(doc, "event.dataset") or spec.dataset)
    ctx.tally.parsed[spec.name] += 1
    return doc


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _depth(value, limit: int) -> int:
    """The nesting depth of a decoded document, stopping as soon as it passes ``limit``."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, (dict, list)):
            deepest = max(deepest, level)
            if deepest > limit:
                return deepest
            stack.extend((child, level + 1) for child in (node.values() if isinstance(node, dict) else node))
    return deepest


def step_json_decode(doc: dict, msg: RawMessage, ctx: Context) -> dict:
    if msg.truncated or len(msg.data) > ctx.max_json_bytes:
        raise ParseError("too_large", f"JSON document of {len(msg.data)}{'+' if msg.truncated else ''} bytes "
                                      f"exceeds the {ctx.max_json_bytes}-byte limit")
    data = msg.data.strip()
    if not data:
        raise ParseError("empty", "empty message")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParseError("invalid_utf8", f"not valid UTF-8 at byte {exc.start}: {exc.reason}") from exc
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except RecursionError as exc:
        raise ParseError("too_deep", f"JSON nested deeper than {ctx.max_json_depth} levels") from exc
    except ValueError as exc:
        raise ParseError("bad_json", f"not a JSON document: {exc}") from exc
    if not isinstance(value, dict):
        raise ParseError("not_an_object", f"a JSON object was expected, not {type(value).__name__}")
    if _depth(value, ctx.max_json_depth) > ctx.max_json_depth:
        raise ParseError("too_deep", f"JSON nested deeper than {ctx.max_json_depth} levels")
    return {"_json": value, "_text": text}


def step_json_shape(doc: dict, msg: RawMessage, ctx: Context) -> dict:
    """Recognise the document's shape (or take the one the source named) and normalise it to ECS."""
    text = doc.pop("_text")
    spec = all_parsers().get(msg.format) if msg.format != "json" else parser_for_json(doc)
    if spec is None:
        raise ParseError("unknown_shape", "a JSON object of no known shape (Winlogbeat, NXLog, osquery, or an ECS "
                                          "document with @timestamp)")
    doc = spec.parse(doc, ParseContext(zone=ctx.zone, received=msg.received))  # type: ignore[arg-type]
    doc.pop("_json", None)
    # Dotted names are nested by the shape parsers: "a.b.c…" with a thousand parts is a thousand levels deep. The
    # limit holds for the document as stored, or one line could make its whole batch unstorable.
    if _depth(doc, ctx.max_json_depth) > ctx.max_json_depth:
        raise ParseError("too_deep", f"JSON nested deeper than {ctx.max_json_depth} levels once its dotted names "
                                     f"are read as fields")
    if not isinstance(doc.get("event"), dict):
        doc["event"] = {}
    doc["event"]["original"] = text
    ecs.put(doc, "event.dataset", ecs.get(doc, "event.dataset") or spec.dataset)
    doc["@timestamp"] = _json_time(doc.get("@timestamp"), msg)
    ctx.tally.parsed[spec.name] += 1
    return doc


def _json_time(value, msg: RawMessage) -> datetime:
    if value is None:
        return msg.received
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        head, dot, rest = value.strip().partition(".")
        if dot:  # nanoseconds (Winlogbeat, EVTX) to the microseconds Python reads
            digits = "".join(ch for ch in rest if ch.isdigit())
            value = f"{head}.{digits[:6]}{rest[len(digits):]}"
        try:
            return ecs.parse_time(value)
        except ValueError:
            pass
    raise ParseError("bad_timestamp", f"@timestamp {str(value)[:60]!r} is not an ISO 8601 time")


# The suite's own fields: what only the suite may say about an event. A sender's document may carry any of these
# names (another agency's id, an export replayed, an attack: a forged agency or asset moves the event, its alerts
# and the playbook runs they start to another agency; a forged event.id overwrites a stored event). None is taken
# from the body: step_claims removes them on EVERY path (syslog, JSON, record formats, files), after the parser and
# before enrichment, in whatever form the sender wrote them (dotted names are made nested first, ecs.nest). Then the
# suite sets them: enrichment (inventory/enrich.py) organization.*, soc.*, the host.* of a known asset and the tags
# below; finalize event.id, event.created, event.ingested, log.source.address and observer.ip (the socket address,
# when the message came from one); the decode steps event.original (the raw text, never the body's).
SUITE_OBJECTS = ("organization", "soc")  # whole objects; the body's claimed agency is kept in soc.claimed_agency
SUITE_FIELDS = ("event.id", "event.created", "event.ingested", "log.source.address")
SUITE_PEER_FIELDS = ("observer.ip",)  # the suite's only when it has the sender's address (not a file's records)
SUITE_TAGS = frozenset({"unknown_sender", "unknown_agency", "host_claim_refused", "future_timestamp"})  # neither added nor removed by a sender


def _by_parent(names: tuple[str, ...]) -> tuple[tuple[tuple[str, ...], tuple[str, ...]], ...]:
    """("event.id", "event.created") → ((("event",), ("id", "created")),): each parent object walked once."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for name in names:
        *parents, leaf = name.split(".")
        groups.setdefault(tuple(parents), []).append(leaf)
    return tuple((parents, tuple(leaves)) for parents, leaves in groups.items())


_SUITE_GROUPS = _by_parent(SUITE_FIELDS)
_SUITE_PEER_GROUPS = _by_parent(SUITE_PEER_FIELDS)


def _drop(doc: dict, groups: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...]) -> None:
    for parents, leaves in groups:
        node = doc
        for part in parents:
            node = node.get(part)
            if type(node) is not dict:
                break
        else:
            for leaf in leaves:
                node.pop(leaf, None)


def _has_dotted_key(doc: dict) -> bool:
    for key in doc:
        if "." in key:
            return True
    return False


def step_claims(doc: dict, msg: RawMessage, ctx: Context) -> dict:
    """What only the suite may say is not taken from the body (SUITE_OBJECTS, SUITE_FIELDS, SUITE_TAGS above). The
    body's claimed agency is kept apart for forensics (``soc.claimed_agency``). The JSON parsers nest dotted names
    themselves (ecs.nest); a dotted name any parser still left at the top is nested here, a conflict refused."""
    if _has_dotted_key(doc):
        try:
            doc = ecs.nest(doc, keep=ecs.DATA_MAPS)
        except ecs.FieldNameError as exc:
            raise ParseError(exc.kind, str(exc)) from exc
    organization = doc.get("organization")
    for name in SUITE_OBJECTS:
        doc.pop(name, None)
    _drop(doc, _SUITE_GROUPS)
    if msg.peer:
        _drop(doc, _SUITE_PEER_GROUPS)
    if "tags" in doc:
        tags = doc["tags"]
        tags = [tags] if isinstance(tags, str) else tags
        kept = [t for t in tags if not (isinstance(t, str) and t in SUITE_TAGS)] if isinstance(tags, list) else []
        if kept:
            doc["tags"] = kept
        else:  # not a list of tags, or only the suite's: the suite's tags must be its own to add
            del doc["tags"]
    claimed = organization.get("id") if isinstance(organization, dict) else organization
    if claimed is not None and claimed != "":
        ecs.put(doc, "soc.claimed_agency", str(claimed)[:256])
    return doc


def step_record(doc: dict, msg: RawMessage, ctx: Context) -> dict:
    """A line in a format the source named (``soc ingest --format cisco_asa``), with or without a syslog header."""
    text = doc.pop("_text")
    parsed = parse_record(text, msg.format, ParseContext(zone=ctx.zone, received=msg.received))
    if not isinstance(parsed.get("event"), dict):
        parsed["event"] = {}
    parsed["event"]["original"] = text  # the line as read: a JSON record's own "event" object must not replace it
    ctx.tally.parsed[msg.format] += 1
    return parsed


def step_enrich(doc: dict, msg: RawMessage, ctx: Context) -> dict:
    doc = enrich(doc, ctx.inventory, sender=msg.peer or None, certificate=msg.sender_name or None,
                 agency=msg.agency or None, transport=msg.transport)
    if (msg.peer or msg.sender_name) and "unknown_sender" in doc.get("tags", ()):
        heard = ctx.tally.unknown_senders.setdefault((msg.peer, msg.sender_name, msg.transport),
                                                     [0, msg.received, msg.received])
        heard[0] += 1
        heard[2] = msg.received
    return doc


# An event may not say it happened later than this after it arrived. A sender's clock may be off by minutes; a time
# further ahead would hold correlation windows, alert deduplication and posture hostage to a date of its choosing.
FUTURE_TOLERANCE = timedelta(seconds=ecs.FUTURE_TOLERANCE_SECONDS)


def step_finalize(doc: dict, msg: RawMessage, ctx: Context) -> dict:
    moment = claimed = doc["@timestamp"]
    if isinstance(moment, datetime):
        moment = doc["@timestamp"] = ecs.utc_iso(moment)
        if claimed.tzinfo is None:
            claimed = claimed.replace(tzinfo=timezone.utc)  # as utc_iso reads it
        if claimed - msg.received > FUTURE_TOLERANCE:
            # The arrival time stands in for it; the claim is kept, and the event id still comes from it (a replay
            # of the same line must rewrite the same document).
            doc["@timestamp"] = ecs.utc_iso(msg.received)
            ecs.put(doc, "soc.claimed_timestamp", moment)
            tags = doc.setdefault("tags", [])
            if isinstance(tags, list) and "future_timestamp" not in tags:
                tags.append("future_timestamp")
    event = doc.get("event")
    if not isinstance(event, dict):
        event = doc["event"] = {}
    if not event.get("kind"):
        event["kind"] = "event"
    event["created"] = ecs.utc_iso(msg.received)
    event["ingested"] = ecs.now_iso()
    if msg.peer:
        ecs.put(doc, "observer.ip", msg.peer)
    ecs.put(doc, "log.source.address", msg.source)
    ecs.put(doc, "ecs.version", ecs.ECS_VERSION)
    # Identity = who sent it (the vouched-for agency, else the sender's address), when it says it happened, and what
    # it says: a replay rewrites the same document.
    who = f"agency:{msg.agency}" if msg.agency else msg.peer
    event["id"] = ecs.event_id(who, moment, event.get("original"))
    return doc


STEPS: dict[str, Step] = {
    "decode": step_decode,
    "syslog": step_syslog,
    "program": step_program,
    "enrich": step_enrich,
    "finalize": step_finalize,
    "json_decode": step_json_decode,
    "json_shape": step_json_shape,
    "claims": step_claims,
    "record": step_record,
    "syslog_file": step_syslog_file,
}
SYSLOG_STEPS = ("decode", "syslog", "program", "claims", "enrich", "finalize")
JSON_STEPS = ("json_decode", "json_shape", "claims", "enrich", "finalize")
RECORD_STEPS = ("decode", "record", "claims", "enrich", "finalize")
# transport "file", format "syslog":
FILE_SYSLOG_STEPS = ("decode", "syslog_file", "program", "claims", "enrich", "finalize")


@dataclass
class BatchResult:
    events: list[dict] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    tally: Tally = field(default_factory=Tally)
    # The events serialised for the store (a parse worker sends these instead of the dicts: no pickling of nested
    # documents between processes). Either list is made from the other when first asked for.
    encoded: list[EncodedEvent] | None = None

    def encoded_events(self) -> list[EncodedEvent]:
        if self.encoded is None:
            self.encoded = [encode_event(doc) for doc in self.events]
        return self.encoded

    def decoded_events(self) -> list[dict]:
        if not self.events and self.encoded:
            self.events = [codec.loads(e.source) for e in self.encoded]
        return self.events

    def publish(self, unknown_senders: UnknownSenders) -> None:
        """Count the batch in the suite's metrics and note its unknown senders (in the process that serves them)."""
        for parser, count in self.tally.parsed.items():
            metrics.EVENTS_PARSED.labels(parser=parser).inc(count)
        for reason, count in self.tally.failed.items():
            metrics.EVENTS_FAILED.labels(reason=reason).inc(count)
            metrics.DEAD_LETTERS.labels(reason=reason).inc(count)
        for (peer, name, transport), (count, first, last) in self.tally.unknown_senders.items():
            unknown_senders.record(peer, name, transport, last, count=count, first=first)
        self.tally = Tally()  # published once


class Pipeline:
    def use_inventory(self, inventory: Inventory) -> None:
        """From the next batch on, enrich with this inventory (parse workers receive it before their next batch)."""
        self.context.inventory = inventory

    def __init__(self, context: Context, steps: Iterable[str] = SYSLOG_STEPS, json_steps: Iterable[str] = JSON_STEPS,
                 record_steps: Iterable[str] = RECORD_STEPS, file_steps: Iterable[str] = FILE_SYSLOG_STEPS):
        lists = {"syslog": tuple(steps), "json": tuple(json_steps), "record": tuple(record_steps),
                 "file": tuple(file_steps)}
        unknown = sorted({s for names in lists.values() for s in names if s not in STEPS})
        if unknown:
            raise ValueError(f"unknown pipeline steps: {', '.join(unknown)}")
        self.context = context
        self.steps = [STEPS[s] for s in lists["syslog"]]
        self.json_steps = [STEPS[s] for s in lists["json"]]
        self.record_steps = [STEPS[s] for s in lists["record"]]
        self.file_steps = [STEPS[s] for s in lists["file"]]

    def steps_for(self, msg: RawMessage) -> list[Step]:
        if msg.format == "syslog":
            return self.file_steps if msg.transport == "file" else self.steps
        if msg.format == "json":
            return self.json_steps
        spec = all_parsers().get(msg.format)
        if spec is None:
            raise ParseError("unknown_format", f"no parser named {msg.format[:64]!r}")
        return self.json_steps if spec.carrier == "json" else self.record_steps

    def process(self, msg: RawMessage) -> dict:
        doc: dict = {}
        for step in self.steps_for(msg):
            doc = step(doc, msg, self.context)
        return doc

    def dead_letter(self, msg: RawMessage, reason_kind: str, detail: str, count: bool = True) -> DeadLetter:
        raw = msg.data
        truncated = msg.truncated
        if len(raw) > self.context.dead_letter_max_bytes:
            raw, truncated = raw[: self.context.dead_letter_max_bytes], True
        if count:
            metrics.EVENTS_FAILED.labels(reason=reason_kind).inc()
            metrics.DEAD_LETTERS.labels(reason=reason_kind).inc()
        return DeadLetter(received=ecs.utc_iso(msg.received), source=dead_letter_source(msg),
                          reason=f"{reason_kind}: {detail}", raw=raw, truncated=truncated)

    def process_batch(self, messages: Iterable[RawMessage], encode: bool = False) -> BatchResult:
        """Parse a batch. Its counts travel in the result: call ``result.publish`` where the metrics are served.
        ``encode``: hand back the events serialised (``result.encoded``) rather than as dicts."""
        result = BatchResult()
        tally = self.context.tally = result.tally
        for msg in messages:
            try:
                result.events.append(self.process(msg))
            except ParseError as exc:
                result.dead_letters.append(self.dead_letter(msg, exc.kind, str(exc), count=False))
                tally.failed[exc.kind] += 1
            except Exception as exc:  # a parser bug must not stop the collector or lose the line
                log.exception("pipeline step failed on a message from %s", msg.source)
                result.dead_letters.append(self.dead_letter(msg, "internal_error", f"{type(exc).__name__}: {exc}",
                                                            count=False))
                tally.failed["internal_error"] += 1
        self.context.tally = Tally()
        if encode:
            result.encoded_events()
            result.events = []
        return result


def dead_letter_source(msg: RawMessage) -> str:
    """Who sent it, with the agency an authenticating source vouched for: ``http://so-tttt@10.0.0.5:0``; for a file,
    where in it: ``file:///logs/a.jsonl:12 (agency so-tttt)``."""
    if msg.origin:
        return f"file://{msg.origin}" + (f" (agency {msg.agency})" if msg.agency else "")
    source = msg.source
    if msg.agency:
        scheme, sep, rest = source.partition("://")
        return f"{scheme}://{msg.agency}@{rest}" if sep else f"{source} (agency {msg.agency})"
    return source


def build_context(settings, inventory: Inventory) -> Context:
    pipeline = settings.pipeline
    return Context(inventory=inventory, zone=settings.tz, max_line_bytes=settings.syslog.max_line_bytes,
                   dead_letter_max_bytes=settings.syslog.dead_letter_max_bytes,
                   max_json_bytes=pipeline.json_max_bytes, max_json_depth=pipeline.json_max_depth)


def received_now() -> datetime:
    return datetime.now(timezone.utc)
