"""The parser contract: one small module per format, each exposing ``SPEC`` (a ParserSpec), wired by name.

How a format arrives decides what its parser is given:

* ``syslog``: the line came over syslog (or from a syslog file); the header is already parsed into the document
  (``@timestamp``, ``host.*``, ``process.*``, ``log.syslog.*``) and the program's text is in ``message``.
* ``line``: a line from a file or an HTTP body that is not syslog (an nginx access log line): ``message`` holds it.
* ``json``: a JSON document (Winlogbeat, ModSecurity audit JSON): the decoded object is in ``doc["_json"]``.

``parse(doc, ctx)`` returns the ECS document (it may fill in the one given) or raises ParseError. It never sets
``event.id``, ``event.created`` or ``event.ingested``: the pipeline's finalize step does that for every format.
``detect(doc)`` says whether a syslog message or line looks like this format (for ``--format auto`` and for syslog
senders the inventory does not pin to a format).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field, replace
from datetime import datetime, tzinfo
from functools import lru_cache
from typing import Callable, Iterable

from soc import ecs
from soc import linear_re as rx

# C0 controls but tab, newline and carriage return: binary content, not a text log record (one C-speed scan).
_BINARY = rx.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")

# Modules that define a SPEC. Adding a format = adding a module here.
# Order matters for detection: a message goes to the first format whose detect() accepts it, so formats with
# unmistakable markers (CEF:, LEEF:, %ASA-) come before looser ones (kernel IN=/OUT=, web access lines).
PARSER_MODULES: tuple[str, ...] = (
    "collectors.parsers.cef",
    "collectors.parsers.leef",
    "collectors.parsers.cisco_asa",
    "collectors.parsers.fortigate",
    "collectors.parsers.sophos_xg",
    "collectors.parsers.sonicwall",
    "collectors.parsers.pfsense",
    "collectors.parsers.iptables",
    "collectors.parsers.modsecurity",
    "collectors.parsers.auditd",
    "collectors.parsers.linux_auth",
    "collectors.parsers.systemd",
    "collectors.parsers.nginx",
    "collectors.parsers.apache",
    "collectors.parsers.windows",
    # JSON documents by shape: NXLog's flat Windows events, osquery results, then any ECS document (the catch-all).
    "collectors.parsers.nxlog",
    "collectors.parsers.osquery",
    "collectors.parsers.ecs_json",
)


@dataclass(frozen=True)
class ParseContext:
    zone: tzinfo  # year-less or zone-less timestamps are read in this zone
    received: datetime  # when the suite received the message (year inference)


@dataclass(frozen=True)
class ParserSpec:
    name: str  # the --format name: cisco_asa, sophos_xg, modsecurity, ...
    dataset: str  # the event.dataset it produces
    carrier: str  # syslog | line | json
    parse: Callable[[dict, ParseContext], dict]
    detect: Callable[[dict], bool] = field(default=lambda doc: False)
    programs: tuple[str, ...] = ()  # syslog program names (APP-NAME / TAG) that are always this format
    description: str = ""
    # How a file of this format splits into records (default: one per line); native ModSecurity spans lines.
    records: Callable[[Iterable[str]], Iterable[str]] | None = None
    # False when the text alone cannot tell this format from another (nginx and Apache write the same combined
    # access line): such a format is chosen by its program name, and by `--format auto` only as a last resort.
    detect_by_content: bool = True
    # The longest message (the text after the syslog header) the format's producer can write, where it has such a
    # bound, with generous room: a longer one was not written by it, and becomes a dead letter (reason too_long)
    # before the parser runs. ``max_message_why`` names the producer's limit. None: the pipeline's own limit only
    # (syslog.max_line_bytes, 64 KiB; pipeline.json_max_bytes).
    max_message_chars: int | None = None
    max_message_why: str = ""


def _bounded(spec: ParserSpec) -> ParserSpec:
    """The spec with its parse refusing a message over ``max_message_chars`` first."""
    limit, parse = spec.max_message_chars, spec.parse

    def parse_within_bound(doc: dict, ctx: ParseContext) -> dict:
        text = doc.get("message")
        if text is None:
            text = ecs.get(doc, "event.original") or ""
        if isinstance(text, str) and len(text) > limit:  # type: ignore[operator]
            from collectors.message import ParseError

            raise ParseError("too_long", f"a {spec.name} message has at most {limit} characters "
                                         f"({spec.max_message_why}); this one has {len(text)}")
        return parse(doc, ctx)

    return replace(spec, parse=parse_within_bound)


@lru_cache(maxsize=1)
def all_parsers() -> dict[str, ParserSpec]:
    specs: dict[str, ParserSpec] = {}
    for module_name in PARSER_MODULES:
        module = importlib.import_module(module_name)
        for spec in getattr(module, "SPECS", None) or [module.SPEC]:
            if spec.name in specs:
                raise ValueError(f"parser {spec.name!r} is defined twice ({module_name})")
            specs[spec.name] = _bounded(spec) if spec.max_message_chars else spec
    return specs


@lru_cache(maxsize=1)
def _by_program() -> dict[str, tuple[ParserSpec, ...]]:
    found: dict[str, list[ParserSpec]] = {}
    for spec in all_parsers().values():
        if spec.carrier == "syslog":
            for program in spec.programs:
                found.setdefault(program.lower(), []).append(spec)
    return {program: tuple(specs) for program, specs in found.items()}


@lru_cache(maxsize=1)
def _syslog_specs() -> tuple[ParserSpec, ...]:
    return tuple(spec for spec in all_parsers().values() if spec.carrier == "syslog" and spec.detect_by_content)


def parser_for_syslog(doc: dict) -> ParserSpec | None:
    """The format of a syslog message: by its program name first, then by what its text looks like.

    A program shared by several formats (nginx writes access and error logs) is settled by their detect()."""
    program = (ecs.get(doc, "process.name") or "").lower()
    candidates = _by_program().get(program)
    if candidates:
        if len(candidates) == 1:
            return candidates[0]
        for spec in candidates:
            if spec.detect(doc):
                return spec
        return candidates[0]
    for spec in _syslog_specs():
        if spec.detect(doc):
            return spec
    return None


def parser_for_json(doc: dict) -> ParserSpec | None:
    for spec in all_parsers().values():
        if spec.carrier == "json" and spec.detect(doc):
            return spec
    return None


def parse_record(text: str, fmt: str, ctx: ParseContext) -> dict:
    """One record as read from a file (``soc parse``, tests, benchmarks) to an ECS document.

    ``fmt`` is a format name or ``auto``. Syslog-carried formats accept the line with or without a syslog header
    (devices that log to a file write none); JSON formats take one JSON object. Raises ParseError with the reason.
    """
    from collectors.message import ParseError
    from collectors.parsers.syslog import parse_syslog

    if _BINARY.search(text):
        raise ParseError("binary", "binary content (control or NUL bytes) in a text log record")
    if fmt == "auto":
        spec, doc = _detect_record(text, ctx)
    else:
        spec = all_parsers().get(fmt)
        if spec is None:
            raise ParseError("unknown_format", f"no parser named {fmt!r}")
        doc = _carrier_doc(spec.carrier, text, ctx)
    doc.setdefault("event", {})["original"] = text
    doc = spec.parse(doc, ctx)
    ecs.put(doc, "event.dataset", ecs.get(doc, "event.dataset") or spec.dataset)
    ecs.put(doc, "event.kind", ecs.get(doc, "event.kind") or "event")
    if doc.get("@timestamp") is None:
        doc["@timestamp"] = ctx.received
    doc.pop("_json", None)
    return doc


def _carrier_doc(carrier: str, text: str, ctx: ParseContext) -> dict:
    import json

    from collectors.message import ParseError
    from collectors.parsers.syslog import parse_syslog

    if carrier == "json":
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise ParseError("bad_json", f"not a JSON document: {exc}") from exc
        if not isinstance(value, dict):
            raise ParseError("bad_json", "a JSON object was expected")
        return {"_json": value}
    if carrier == "syslog":
        try:
            return parse_syslog(text, ctx.zone, ctx.received, require_pri=False)
        except ParseError:
            return {"message": text}  # no syslog header: the device wrote the line to a file itself
    return {"message": text}


def _detect_record(text: str, ctx: ParseContext) -> tuple[ParserSpec, dict]:
    from collectors.message import ParseError

    if text.lstrip().startswith("{"):
        doc = _carrier_doc("json", text, ctx)
        spec = parser_for_json(doc)
        if spec is not None:
            return spec, doc
    doc = _carrier_doc("syslog", text, ctx)
    spec = parser_for_syslog(doc)
    if spec is None:
        # A line with an unrecognised syslog header may still be a known format without one.
        bare = {"message": text}
        spec = parser_for_syslog(bare)
        doc = bare if spec is not None else doc
    if spec is None:
        for candidate in all_parsers().values():
            if candidate.carrier == "syslog" and not candidate.detect_by_content:
                for attempt in (doc, {"message": text}):
                    if candidate.detect(attempt):
                        return candidate, attempt
        raise ParseError("unknown_format", "no parser recognises this line")
    return spec, doc
