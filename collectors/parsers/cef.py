"""ArcSight Common Event Format: ``CEF:0|Vendor|Product|Version|SignatureID|Name|Severity|k=v k=v ...``.

Header fields go to observer/event; extension keys to ECS as Elastic's ``decode_cef`` processor maps them.
Extension values may contain spaces: a value runs until the next `` key=``; ``\\=``, ``\\\\`` and ``\\n`` are
unescaped.
"""

from __future__ import annotations

from collectors.message import ParseError
from collectors.parsers import common as c
from collectors.parsers.registry import ParseContext, ParserSpec
from soc import ecs
from soc import linear_re as rx

# A key starts the extension or follows whitespace. Kept on CPython's re (one match per key, dozens per line):
# backtracking-free because only a position after whitespace can start a key, each key run is scanned from its start
# once, and giving characters back cannot find an "=" inside a run of key characters.
_KEY = rx.backtracking_free(r"(?:^|(?<=\s))([A-Za-z0-9_.\[\]-]+)=",
                            why="starts only after whitespace; a key run cannot contain '='")
_ESCAPE = rx.compile(r"\\(.)")
# extension key → ECS field
FIELDS = {
    "act": "event.action", "app": "network.protocol", "cat": "event.category_raw", "cs1": None,
    "dhost": "destination.domain", "dmac": "destination.mac", "dntdom": "destination.user.domain",
    "dpid": "process.pid", "dproc": "process.name", "dpt": "destination.port", "dst": "destination.ip",
    "duid": "destination.user.id", "duser": "destination.user.name", "dvc": "observer.ip",
    "dvchost": "observer.hostname", "dvcmac": "observer.mac", "externalId": "event.id", "fname": "file.name",
    "filePath": "file.path", "fsize": "file.size", "in": "source.bytes", "msg": "message", "out": "destination.bytes",
    "outcome": "event.outcome", "proto": "network.transport", "request": "url.original",
    "requestClientApplication": "user_agent.original", "requestMethod": "http.request.method",
    "shost": "source.domain", "smac": "source.mac", "sntdom": "source.user.domain", "spid": "process.parent.pid",
    "spt": "source.port", "src": "source.ip", "suid": "source.user.id", "suser": "source.user.name",
    "deviceInboundInterface": "observer.ingress.interface.name",
    "deviceOutboundInterface": "observer.egress.interface.name",
    "sourceTranslatedAddress": "source.nat.ip", "sourceTranslatedPort": "source.nat.port",
    "destinationTranslatedAddress": "destination.nat.ip", "destinationTranslatedPort": "destination.nat.port",
}
INTEGER_FIELDS = frozenset({"source.port", "destination.port", "source.nat.port", "destination.nat.port",
                            "process.pid", "process.parent.pid", "source.bytes", "destination.bytes", "file.size"})


def split_header(text: str, count: int) -> list[str]:
    """Split on unescaped '|' into at most count+1 parts (the last one is the extension)."""
    parts, current, i, n = [], [], 0, len(text)
    while i < n and len(parts) < count:
        ch = text[i]
        if ch == "\\" and i + 1 < n:
            current.append(text[i + 1])
            i += 2
            continue
        if ch == "|":
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    parts.append(text[i:] if len(parts) == count else "".join(current))
    return parts


def extension(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    keys = list(_KEY.finditer(text))
    for i, key in enumerate(keys):
        end = keys[i + 1].start() if i + 1 < len(keys) else len(text)
        value = text[key.end():end].strip()
        if "\\" in value:
            value = _ESCAPE.sub(lambda m: "\n" if m.group(1) == "n" else m.group(1), value)
        out[key.group(1)] = value
    return out


def parse_cef(doc: dict, ctx: ParseContext | None = None) -> dict:
    text = c.message_text(doc)
    start = text.find("CEF:")
    if start < 0:
        raise ParseError("not_cef", "no 'CEF:' header")
    parts = split_header(text[start + 4:], 7)
    if len(parts) < 8:
        raise ParseError("bad_cef", f"CEF header has {len(parts) - 1} of its 7 '|' separated fields")
    version, vendor, product, dev_version, signature, name, severity, ext = parts
    c.put(doc, "cef.version", version)
    c.put(doc, "observer.vendor", vendor)
    c.put(doc, "observer.product", product)
    c.put(doc, "observer.version", dev_version)
    c.put(doc, "event.code", signature)
    c.put(doc, "message", name)
    c.put(doc, "cef.severity", severity)
    fields = extension(ext)
    for key, value in fields.items():
        target = FIELDS.get(key)
        if not target or value == "":
            continue
        if target in INTEGER_FIELDS:
            number = c.integer(value)
            if number is not None:
                c.set(doc, target, number)
        elif target in ("source.ip", "destination.ip", "source.nat.ip", "destination.nat.ip"):
            if c.is_ip(value):
                c.set(doc, target, value)
                c.append_unique(doc, "related.ip", value)
        elif target == "observer.ip":
            if c.is_ip(value):
                c.set(doc, target, [value])
        elif target == "network.transport":
            c.transport(doc, value)
        elif target == "event.outcome":
            c.set(doc, target, value.lower().lstrip("/"))
        else:
            c.set(doc, target, value)
    category_outcome = fields.get("categoryOutcome", "").lstrip("/").lower()
    if category_outcome in ("success", "failure") and not ecs.get(doc, "event.outcome"):
        c.set(doc, "event.outcome", category_outcome)
    for user_field in ("source.user.name", "destination.user.name"):
        c.append_unique(doc, "related.user", ecs.get(doc, user_field))
    moment = c.epoch(fields["rt"]) if fields.get("rt", "").isdigit() else None
    if moment is not None:
        doc["@timestamp"] = moment
    if c.is_ip(fields.get("src")) and c.is_ip(fields.get("dst")) or fields.get("proto"):
        c.set(doc, "event.category", ["network"])
    return doc


def detect(doc: dict) -> bool:
    text = doc.get("message") or ""
    return text.startswith("CEF:") or " CEF:0|" in text or " CEF:1|" in text


SPEC = ParserSpec(
    name="cef",
    dataset="cef.log",
    carrier="syslog",
    parse=parse_cef,
    detect=detect,
    description="ArcSight Common Event Format (CEF) over syslog",
)
