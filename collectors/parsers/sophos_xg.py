"""Sophos XG / SFOS key=value syslog (``device="SFW" ... log_id=... log_type=...``) to ECS.

Categorisation per log type follows the Elastic ``sophos.xg`` integration for the types a SOC reads most
(firewall, anti-virus, ATP, IPS, web filter, authentication).
"""

from __future__ import annotations

from collectors.message import ParseError
from collectors.parsers import common as c
from collectors.parsers.registry import ParseContext, ParserSpec
from soc import ecs


def _timestamp(doc: dict, fields: dict, ctx: ParseContext) -> None:
    if fields.get("timestamp"):
        doc["@timestamp"] = c.date_time(fields["timestamp"], ctx.zone)
    elif fields.get("date") and fields.get("time"):
        # Elastic reads date/time in the configured zone, not the "timezone" abbreviation (CEST, IST, BST are
        # ambiguous or unknown to parsers): so do we.
        doc["@timestamp"] = c.date_time(f"{fields['date']} {fields['time']}", ctx.zone)


def _firewall(doc: dict, fields: dict, subtype: str) -> None:
    c.set(doc, "event.category", ["network"])
    action = subtype.lower()
    if action in ("denied", "drop", "deny", "blocked"):
        c.categorize(doc, types=("denied", "connection"), outcome="success", action=action)
    elif action:
        c.categorize(doc, types=("allowed", "connection"), outcome="success", action=action)


def parse_sophos_xg(doc: dict, ctx: ParseContext) -> dict:
    text = c.message_text(doc)
    fields = c.kv(text)
    if "log_id" not in fields and fields.get("device") != "SFW":
        raise ParseError("not_sophos", "no log_id= or device=\"SFW\" in a Sophos XG message")
    c.observer(doc, "Sophos", "XG")
    c.put(doc, "observer.serial_number", fields.get("device_id") or fields.get("device_serial_id"))
    c.put(doc, "observer.hostname", ecs.get(doc, "host.hostname"))
    _timestamp(doc, fields, ctx)
    log_type, subtype = fields.get("log_type", ""), fields.get("log_subtype", "")
    c.put(doc, "event.code", fields.get("log_id"))
    c.put(doc, "sophos.xg.log_type", log_type)
    c.put(doc, "sophos.xg.log_component", fields.get("log_component"))
    c.put(doc, "sophos.xg.log_subtype", subtype)
    c.endpoint(doc, "source", fields.get("src_ip") or fields.get("sourceip"), fields.get("src_port"))
    c.endpoint(doc, "destination", fields.get("dst_ip") or fields.get("destinationip"), fields.get("dst_port"))
    proto = fields.get("protocol") or fields.get("proto")
    if proto:
        c.transport(doc, proto.split("/")[0])
    c.put(doc, "rule.id", fields.get("fw_rule_id"))
    c.put(doc, "observer.ingress.interface.name", fields.get("in_interface"))
    c.put(doc, "observer.egress.interface.name", fields.get("out_interface"))
    c.user(doc, fields.get("user_name") or fields.get("user"))
    c.put(doc, "message", fields.get("message"))
    if fields.get("url"):
        c.set(doc, "url.original", fields["url"])
    if log_type == "Firewall":
        _firewall(doc, fields, subtype)
    elif log_type == "Anti-Virus":
        if subtype == "Virus":
            c.categorize(doc, ("malware", "network"), ("info", "denied", "connection"), "success", subtype)
        else:
            c.categorize(doc, ("network",), ("allowed", "connection"), "success", subtype)
    elif log_type == "ATP":
        c.categorize(doc, ("intrusion_detection", "network"), ("denied", "connection"), "success", subtype.lower())
    elif log_type == "IDP":
        c.categorize(doc, ("intrusion_detection", "network"),
                     ("denied", "connection") if subtype.lower() == "drop" else ("allowed", "connection"),
                     "success", subtype.lower())
    elif log_type in ("Content Filtering", "Web Filter"):
        c.categorize(doc, ("network", "web"),
                     ("denied",) if subtype.lower() in ("denied", "blocked") else ("allowed",), "success",
                     subtype.lower())
    elif log_type == "Event" and fields.get("log_component") in ("Firewall Authentication", "VPN Authentication",
                                                                   "GUI", "SSL VPN Authentication", "My Account"):
        ok = (fields.get("status") or subtype).lower() in ("successful", "success", "authentication")
        c.categorize(doc, ("authentication",), ("start",) if ok else ("info",), "success" if ok else "failure")
    elif log_type == "Wireless Protection":
        c.set(doc, "event.outcome", "success")
    return doc


def detect(doc: dict) -> bool:
    text = doc.get("message") or ""
    return ('device="SFW"' in text or 'device_name="SFW"' in text or text.startswith("device=")) and "log_id=" in text


SPEC = ParserSpec(
    name="sophos_xg",
    dataset="sophos.xg",
    carrier="syslog",
    parse=parse_sophos_xg,
    detect=detect,
    description="Sophos XG / SFOS firewall key=value syslog",
)
