"""IBM QRadar Log Event Extended Format: ``LEEF:1.0|Vendor|Product|Version|EventID|k=v<TAB>k=v...`` and LEEF 2.0
(``LEEF:2.0|Vendor|Product|Version|EventID|<delimiter>|...``; the delimiter may be written as ``^``, ``x09``,
``0x09`` or ``\\t``). Predefined LEEF keys map to ECS."""

from __future__ import annotations

from collectors.message import ParseError
from collectors.parsers import common as c
from collectors.parsers.cef import split_header
from collectors.parsers.registry import ParseContext, ParserSpec
from soc import ecs

FIELDS = {"src": "source.ip", "dst": "destination.ip", "srcPort": "source.port", "dstPort": "destination.port",
          "srcPreNAT": "source.ip", "dstPreNAT": "destination.ip", "srcPostNAT": "source.nat.ip",
          "dstPostNAT": "destination.nat.ip", "srcPostNATPort": "source.nat.port", "dstPostNATPort":
          "destination.nat.port", "proto": "network.transport", "usrName": "user.name", "identSrc": "source.ip",
          "srcMAC": "source.mac", "dstMAC": "destination.mac", "srcBytes": "source.bytes", "dstBytes":
          "destination.bytes", "url": "url.original", "action": "event.action", "cat": "event.category_raw",
          "sev": "event.severity", "policy": "rule.name", "ruleId": "rule.id", "domain": "user.domain",
          "resource": "destination.domain", "msg": "message"}
INTEGERS = frozenset({"source.port", "destination.port", "source.nat.port", "destination.nat.port",
                      "source.bytes", "destination.bytes", "event.severity"})
DENY = ("deny", "denied", "drop", "dropped", "block", "blocked", "reject")


def _delimiter(text: str) -> str:
    if text in ("\\t", "x09", "0x09", "tab"):
        return "\t"
    if text.lower().startswith(("0x", "x")):
        try:
            return chr(int(text.lower().lstrip("0").lstrip("x"), 16))
        except ValueError:
            return "\t"
    return text[:1] or "\t"


def _pairs(body: str, delimiter: str) -> dict[str, str]:
    out = {}
    for item in body.split(delimiter):
        key, sep, value = item.partition("=")
        if sep and key.strip():
            out[key.strip()] = value.strip()
    return out


def parse_leef(doc: dict, ctx: ParseContext) -> dict:
    text = c.message_text(doc)
    start = text.find("LEEF:")
    if start < 0:
        raise ParseError("not_leef", "no 'LEEF:' header")
    parts = split_header(text[start + 5:], 5)
    if len(parts) < 6:
        raise ParseError("bad_leef", f"LEEF header has {len(parts) - 1} of its 5 '|' separated fields")
    version, vendor, product, dev_version, event_id, rest = parts
    delimiter = "\t"
    if version.startswith("2"):
        head, sep, tail = rest.partition("|")
        if sep and len(head) <= 6:
            delimiter, rest = _delimiter(head), tail
    c.put(doc, "observer.vendor", vendor)
    c.put(doc, "observer.product", product)
    c.put(doc, "observer.version", dev_version)
    c.put(doc, "event.code", event_id)
    fields = _pairs(rest, delimiter)
    if len(fields) <= 1 and delimiter == "\t" and " " in rest:
        fields = c.kv(rest)  # some senders use spaces instead of tabs
    for key, value in fields.items():
        target = FIELDS.get(key)
        if not target or value == "":
            continue
        if target in INTEGERS:
            number = c.integer(value)
            if number is not None:
                c.set(doc, target, number)
        elif target.endswith(".ip"):
            if c.is_ip(value):
                c.set(doc, target, value)
                c.append_unique(doc, "related.ip", value)
        elif target == "network.transport":
            c.transport(doc, value)
        elif target == "user.name":
            c.user(doc, value)
        else:
            c.set(doc, target, value)
    if fields.get("devTime"):
        try:
            doc["@timestamp"] = c.date_time(fields["devTime"], ctx.zone)
        except ParseError:
            moment = c.epoch(fields["devTime"])
            if moment is not None:
                doc["@timestamp"] = moment
    action = (fields.get("action") or "").lower()
    if ecs.get(doc, "source.ip") or ecs.get(doc, "destination.ip"):
        c.set(doc, "event.category", ["network"])
    if action:
        denied = any(word in action for word in DENY)
        c.categorize(doc, types=("connection", "denied" if denied else "allowed"), outcome="success")
    return doc


def detect(doc: dict) -> bool:
    text = doc.get("message") or ""
    return text.startswith("LEEF:") or " LEEF:1.0|" in text or " LEEF:2.0|" in text


SPEC = ParserSpec(
    name="leef",
    dataset="leef.log",
    carrier="syslog",
    parse=parse_leef,
    detect=detect,
    description="IBM QRadar LEEF 1.0 / 2.0 over syslog",
)
