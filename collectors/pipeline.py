"""The parsing and enrichment pipeline: a list of small steps, each one function, wired by name.

raw bytes ─ decode ─ syslog header ─ program parser ─ inventory enrichment ─ finalize ─▶ ECS event

A step raises ParseError to reject a message; the pipeline turns that into a dead letter carrying the raw bytes,
the source and the reason, so nothing received is ever silently dropped. Any other exception in a step is a bug,
but it too ends as a dead letter (reason ``internal_error``) rather than stopping the collector.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Iterable

from collectors.message import ParseError, RawMessage
from collectors.parsers.registry import ParseContext, parser_for_syslog
from collectors.parsers.syslog import parse_syslog
from collectors.sources.unknown_senders import UnknownSenders
from inventory.enrich import enrich
from inventory.lookup import Inventory
from soc import ecs, metrics
from soc.storage.base import DeadLetter

log = logging.getLogger(__name__)


@dataclass
class Context:
    inventory: Inventory
    zone: object  # tzinfo for year-less timestamps
    max_line_bytes: int = 64 * 1024
    dead_letter_max_bytes: int = 2 * 1024 * 1024
    unknown_senders: UnknownSenders = field(default_factory=UnknownSenders)


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
    parsed = parse_syslog(doc.pop("_text"), ctx.zone, msg.received)
    parsed["event"] = {"original": msg.data.rstrip(b"\r\n").decode("utf-8")}
    return parsed


def step_program(doc: dict, msg: RawMessage, ctx: Context) -> dict:
    """Hand the message to its format's parser (collectors/parsers/registry.py); plain syslog otherwise."""
    spec = parser_for_syslog(doc)
    if spec is None:
        ecs.put(doc, "event.module", "syslog")
        ecs.put(doc, "event.dataset", "syslog.generic")
        metrics.EVENTS_PARSED.labels(parser="syslog").inc()
        return doc
    doc = spec.parse(doc, ParseContext(zone=ctx.zone, received=msg.received))  # type: ignore[arg-type]
    ecs.put(doc, "event.dataset", ecs.get(doc, "event.dataset") or spec.dataset)
    metrics.EVENTS_PARSED.labels(parser=spec.name).inc()
    return doc


def step_enrich(doc: dict, msg: RawMessage, ctx: Context) -> dict:
    doc = enrich(doc, ctx.inventory, sender=msg.peer or None, certificate=msg.sender_name or None)
    if (msg.peer or msg.sender_name) and "unknown_sender" in doc.get("tags", ()):
        ctx.unknown_senders.record(msg.peer, msg.sender_name, msg.transport, msg.received)
    return doc


def step_finalize(doc: dict, msg: RawMessage, ctx: Context) -> dict:
    moment = doc["@timestamp"]
    if isinstance(moment, datetime):
        doc["@timestamp"] = ecs.utc_iso(moment)
    ecs.put(doc, "event.kind", ecs.get(doc, "event.kind") or "event")
    ecs.put(doc, "event.created", ecs.utc_iso(msg.received))
    ecs.put(doc, "event.ingested", ecs.now_iso())
    if msg.peer:
        ecs.put(doc, "observer.ip", msg.peer)
    ecs.put(doc, "log.source.address", msg.source)
    ecs.put(doc, "ecs.version", ecs.ECS_VERSION)
    # Identity = who sent it, when it says it happened, and what it says: a replay rewrites the same document.
    ecs.put(doc, "event.id", ecs.event_id(msg.peer, doc["@timestamp"], ecs.get(doc, "event.original")))
    return doc


STEPS: dict[str, Step] = {
    "decode": step_decode,
    "syslog": step_syslog,
    "program": step_program,
    "enrich": step_enrich,
    "finalize": step_finalize,
}
SYSLOG_STEPS = ("decode", "syslog", "program", "enrich", "finalize")


@dataclass
class BatchResult:
    events: list[dict] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)


class Pipeline:
    def __init__(self, context: Context, steps: Iterable[str] = SYSLOG_STEPS):
        unknown = [s for s in steps if s not in STEPS]
        if unknown:
            raise ValueError(f"unknown pipeline steps: {', '.join(unknown)}")
        self.context = context
        self.steps = [STEPS[s] for s in steps]

    def process(self, msg: RawMessage) -> dict:
        doc: dict = {}
        for step in self.steps:
            doc = step(doc, msg, self.context)
        return doc

    def dead_letter(self, msg: RawMessage, reason_kind: str, detail: str) -> DeadLetter:
        raw = msg.data
        truncated = msg.truncated
        if len(raw) > self.context.dead_letter_max_bytes:
            raw, truncated = raw[: self.context.dead_letter_max_bytes], True
        metrics.EVENTS_FAILED.labels(reason=reason_kind).inc()
        metrics.DEAD_LETTERS.labels(reason=reason_kind).inc()
        return DeadLetter(received=ecs.utc_iso(msg.received), source=msg.source, reason=f"{reason_kind}: {detail}",
                          raw=raw, truncated=truncated)

    def process_batch(self, messages: Iterable[RawMessage]) -> BatchResult:
        result = BatchResult()
        for msg in messages:
            try:
                result.events.append(self.process(msg))
            except ParseError as exc:
                result.dead_letters.append(self.dead_letter(msg, exc.kind, str(exc)))
            except Exception as exc:  # a parser bug must not stop the collector or lose the line
                log.exception("pipeline step failed on a message from %s", msg.source)
                result.dead_letters.append(self.dead_letter(msg, "internal_error", f"{type(exc).__name__}: {exc}"))
        return result


def build_context(settings, inventory: Inventory) -> Context:
    return Context(inventory=inventory, zone=settings.tz, max_line_bytes=settings.syslog.max_line_bytes,
                   dead_letter_max_bytes=settings.syslog.dead_letter_max_bytes)


def received_now() -> datetime:
    return datetime.now(timezone.utc)
