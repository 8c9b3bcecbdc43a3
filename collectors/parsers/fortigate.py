"""Fortinet FortiGate key=value syslog (``date=... time=... devname=... logid=...``) to ECS.

Field choices follow the Elastic ``fortinet_fortigate`` integration: observer from devname/devid, addresses from
srcip/dstip (remip/locip for VPN events), policyid as rule.id, the log's own ``tz`` for its local date and time.
"""

from __future__ import annotations

from collectors.message import ParseError
from collectors.parsers import common as c
from collectors.parsers.registry import ParseContext, ParserSpec
from soc import ecs

# logid → action name for event logs (names from Fortinet's log reference, prefixed as Elastic does).
EVENT_ACTIONS = {
    "0100032001": "login", "0100032002": "login", "0100032003": "logout",
    "0100044546": "FortiGate-event-config-attr", "0100044547": "FortiGate-event-config-objattr",
    "0100044545": "FortiGate-event-config-path", "0100032102": "FortiGate-event-admin-password-expired",
    "0101037120": "FortiGate-event-neg-generic-p1-notif", "0101037121": "FortiGate-event-neg-generic-p1-error",
    "0101037122": "FortiGate-event-neg-generic-p2-notif", "0101037123": "FortiGate-event-neg-generic-p2-error",
    "0101037138": "FortiGate-event-conn-up", "0101037139": "FortiGate-event-conn-down",
    "0101037141": "FortiGate-event-conn-stats", "0101039424": "FortiGate-event-ssl-vpn-tunnel-up",
    "0101039425": "FortiGate-event-ssl-vpn-tunnel-down", "0102043008": "FortiGate-event-auth-logon",
    "0102043009": "FortiGate-event-auth-logout", "0100020099": "FortiGate-event-intf-sta-chg",
}
TRAFFIC_ACTIONS = {"0000000013": "FortiGate-traffic-end-forward", "0000000015": "FortiGate-traffic-start-forward",
                   "0001000014": "FortiGate-traffic-end-local", "0001000016": "FortiGate-traffic-start-local",
                   "0000000020": "FortiGate-traffic-stat"}
ALLOWED = frozenset({"accept", "allow", "allowed", "pass", "passthrough", "close", "client-rst", "server-rst",
                     "timeout", "start"})
DENIED = frozenset({"deny", "denied", "block", "blocked", "dropped", "drop", "reset"})


def _timestamp(doc: dict, fields: dict, ctx: ParseContext) -> None:
    date, time = fields.get("date"), fields.get("time")
    if date and time:
        zone = c.fixed_zone(fields.get("tz")) or ctx.zone
        doc["@timestamp"] = c.date_time(f"{date} {time}", zone)
    elif fields.get("eventtime"):
        moment = c.epoch(fields["eventtime"])
        if moment is not None:
            doc["@timestamp"] = moment


def parse_fortigate(doc: dict, ctx: ParseContext) -> dict:
    text = c.message_text(doc)
    start = text.find("date=")
    fields = c.kv(text[start:] if start > 0 else text)
    if not fields.get("devname") and not fields.get("logid") and not fields.get("devid"):
        raise ParseError("not_fortigate", "no devname=, devid= or logid= in a FortiGate message")
    c.observer(doc, "Fortinet", "Fortigate")
    c.put(doc, "observer.name", fields.get("devname"))
    c.put(doc, "observer.serial_number", fields.get("devid"))
    _timestamp(doc, fields, ctx)
    kind, subtype, logid = fields.get("type", ""), fields.get("subtype", ""), fields.get("logid", "")
    c.put(doc, "event.code", logid)
    c.put(doc, "fortinet.firewall.type", kind)
    c.put(doc, "fortinet.firewall.subtype", subtype)
    if fields.get("remip") or fields.get("locip"):
        c.endpoint(doc, "source", fields.get("remip"), fields.get("remport"))
        c.endpoint(doc, "destination", fields.get("locip"), fields.get("locport"))
    else:
        c.endpoint(doc, "source", fields.get("srcip"), fields.get("srcport"))
        c.endpoint(doc, "destination", fields.get("dstip"), fields.get("dstport"))
    c.transport(doc, fields.get("proto"))
    c.put(doc, "observer.ingress.interface.name", fields.get("srcintf"))
    c.put(doc, "observer.egress.interface.name", fields.get("dstintf"))
    c.put(doc, "rule.id", fields.get("policyid"))
    c.put(doc, "rule.name", fields.get("policyname"))
    c.put(doc, "log.level", fields.get("level"))
    c.put(doc, "message", fields.get("msg"))
    user = fields.get("user") or fields.get("srcuser")
    if user and not c.is_ip(user):
        c.user(doc, user)
    action = (fields.get("action") or "").lower()
    status = (fields.get("status") or "").lower()
    if kind == "traffic":
        c.set(doc, "event.category", ["network"])
        c.put(doc, "event.action", TRAFFIC_ACTIONS.get(logid) or action)
        if action in DENIED:
            c.categorize(doc, types=("connection", "denied"), outcome="success")
        elif action:
            ended = action in ("close", "timeout", "client-rst", "server-rst") or "-end-" in (ecs.get(doc, "event.action") or "")
            c.categorize(doc, types=("connection", "end" if ended else "start"), outcome="success")
    elif kind == "utm":
        c.set(doc, "event.category", ["network"])
        c.put(doc, "event.action", fields.get("eventtype") or action)
        c.set(doc, "event.outcome", "success")
        if action in DENIED:
            c.set(doc, "event.type", ["denied"])
        elif action in ALLOWED:
            c.set(doc, "event.type", ["allowed"])
        host, url = fields.get("hostname"), fields.get("url")
        c.put(doc, "url.domain", host)
        if url:
            c.url_parts(doc, url)
            if host:
                c.set(doc, "url.domain", host)
        c.put(doc, "http.request.method", fields.get("httpmethod"))
        c.put(doc, "http.request.referrer", fields.get("referralurl"))
        c.put(doc, "user_agent.original", fields.get("agent"))
    elif kind == "event":
        if action in ("login", "logout"):
            c.set(doc, "event.action", action)
            c.set(doc, "event.category", ["authentication"])
            c.set(doc, "event.outcome", "success" if status == "success" else "failure")
        else:
            c.put(doc, "event.action", EVENT_ACTIONS.get(logid) or (f"FortiGate-event-{action}" if action else None))
            if subtype == "vpn":
                c.categorize(doc, category=("network",), types=("connection",))
            if status in ("failure", "failed", "error"):
                c.set(doc, "event.outcome", "failure")
    return doc


def detect(doc: dict) -> bool:
    text = doc.get("message") or ""
    return "devname=" in text and "logid=" in text


SPEC = ParserSpec(
    name="fortigate",
    dataset="fortinet_fortigate.log",
    carrier="syslog",
    parse=parse_fortigate,
    detect=detect,
    description="Fortinet FortiGate key=value syslog",
)
