"""SonicWall (SonicOS) key=value syslog (``id=firewall sn=... time="..." m=... src=ip:port:iface``) to ECS."""

from __future__ import annotations

from collectors.message import ParseError
from collectors.parsers import common as c
from collectors.parsers.registry import ParseContext, ParserSpec
from soc import ecs

# m= message ids (SonicOS log event reference) → event.action
ACTIONS = {"36": "tcp-packet-dropped", "37": "udp-packet-dropped", "38": "icmp-packet-dropped",
           "97": "web-site-hit", "98": "connection-opened", "537": "connection-closed", "1235": "packet-forwarded",
           "24": "user-login", "29": "admin-login", "30": "admin-login-failed", "31": "admin-logout",
           "199": "user-login-failed", "236": "admin-login-ssh", "1079": "user-login", "1080": "user-login-failed"}
DENY_ACTIONS = frozenset({"drop", "deny", "reject", "blocked"})


def _address(doc: dict, side: str, value: str | None) -> str | None:
    """'10.0.0.96:54606:X1' → ip, port and the interface name (returned)."""
    if not value:
        return None
    parts = value.split(":")
    if len(parts) >= 3 and not c.is_ip(value):
        c.endpoint(doc, side, parts[0], parts[1])
        return parts[2] or None
    if len(parts) == 2 and not c.is_ip(value):
        c.endpoint(doc, side, parts[0], parts[1])
        return None
    c.endpoint(doc, side, value)
    return None


def parse_sonicwall(doc: dict, ctx: ParseContext) -> dict:
    fields = c.kv(c.message_text(doc))
    if "sn" not in fields and fields.get("id") is None:
        raise ParseError("not_sonicwall", "no id= or sn= in a SonicWall message")
    c.observer(doc, "SonicWall", "SonicOS")
    c.put(doc, "observer.name", fields.get("id"))
    c.put(doc, "observer.serial_number", fields.get("sn"))
    if c.is_ip(fields.get("fw")):
        c.set(doc, "observer.ip", [fields["fw"]])
    if fields.get("time"):
        doc["@timestamp"] = c.date_time(fields["time"].strip('"'), ctx.zone)
    c.set(doc, "event.category", ["network"])
    c.put(doc, "event.code", fields.get("m"))
    c.put(doc, "observer.ingress.interface.name", _address(doc, "source", fields.get("src")))
    c.put(doc, "observer.egress.interface.name", _address(doc, "destination", fields.get("dst")))
    c.put(doc, "observer.ingress.zone", fields.get("srcZone"))
    c.put(doc, "observer.egress.zone", fields.get("dstZone"))
    if fields.get("proto"):
        c.transport(doc, fields["proto"].split("/")[0])
    c.user(doc, fields.get("usr") or fields.get("user"))
    c.put(doc, "message", fields.get("msg") or fields.get("note"))
    action = ACTIONS.get(fields.get("m", "")) or fields.get("fw_action")
    c.put(doc, "event.action", action)
    fw_action = (fields.get("fw_action") or "").lower()
    if fw_action in DENY_ACTIONS:
        c.categorize(doc, types=("connection", "denied"), outcome="success")
    elif fw_action:
        c.categorize(doc, types=("connection", "allowed"), outcome="success")
    return doc


def detect(doc: dict) -> bool:
    text = doc.get("message") or ""
    return text.startswith("id=") and " sn=" in text or "id=firewall sn=" in text


SPEC = ParserSpec(
    name="sonicwall",
    dataset="sonicwall_firewall.log",
    carrier="syslog",
    parse=parse_sonicwall,
    detect=detect,
    description="SonicWall SonicOS key=value syslog",
)
