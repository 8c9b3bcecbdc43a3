"""Linux netfilter (iptables / nftables ``log`` rules) kernel messages: ``[prefix] IN=eth0 OUT= SRC=... DST=...``.

The log prefix is the rule's own label: Ubiquiti/EdgeOS write ``[RULESET-RULE-A|D|R]``, others a free text such as
``iptables DROP_INPUT:``. Field choices follow the Elastic ``iptables`` integration (addresses kept as written).
"""

from __future__ import annotations

from collectors.message import ParseError
from collectors.parsers import common as c
from collectors.parsers.registry import ParseContext, ParserSpec
from soc import ecs
from soc import linear_re as rx

_UBIQUITI = rx.compile(r"\[(?P<set>[^\]\s]+)-(?P<rule>[^\]\s-]+)-(?P<act>[ADR])\]$")
_UPTIME = rx.compile(r"^\[\s*\d+\.\d+\]\s*")
_FLAGS = frozenset({"CWR", "ECE", "URG", "ACK", "PSH", "RST", "SYN", "FIN", "DF", "MF", "CE"})
ACTIONS = {"A": "accept", "D": "drop", "R": "reject"}
DENY_WORDS = ("drop", "deny", "reject", "block")


def parse_iptables(doc: dict, ctx: ParseContext) -> dict:
    text = c.message_text(doc)
    c.set(doc, "event.category", ["network"])
    c.put(doc, "observer.name", ecs.get(doc, "host.hostname"))
    start = text.find("IN=")
    prefix = (text[:start] if start >= 0 else "").strip()
    if not prefix and start == 0 and (ecs.get(doc, "process.name") or "kernel") not in ("kernel",):
        prefix = ecs.get(doc, "process.name")  # "DENY: IN=..." read as a syslog tag
    body = text[start:] if start >= 0 else text
    embedded = body.find(" [SRC=")  # ICMP errors quote the offending packet's header: keep the outer one
    if embedded > 0:
        body = body[:embedded]
    fields = c.kv(body)
    if not fields.get("SRC") and not fields.get("PROTO") and not fields.get("DPT"):
        raise ParseError("not_netfilter", "no SRC=, PROTO= or DPT= in a netfilter log line")
    prefix = _UPTIME.sub("", prefix)
    action = None
    ubiquiti = _UBIQUITI.search(prefix) if start >= 0 and text[start - 1:start] == "]" else None
    if ubiquiti:
        action = ACTIONS[ubiquiti.group("act")]
        c.set(doc, "rule.id", ubiquiti.group("rule"))
        c.set(doc, "iptables.ubiquiti.rule_set", ubiquiti.group("set"))
        zones = ubiquiti.group("set").split("-")
        if len(zones) == 2:
            c.set(doc, "observer.ingress.zone", zones[0])
            c.set(doc, "observer.egress.zone", zones[1])
    elif prefix and not prefix.startswith("["):
        label = prefix.split()[-1].rstrip(":")
        if label and label.lower() not in ("kernel", "iptables", "nftables"):
            action = label.lower()
    if action:
        c.set(doc, "event.action", action)
        denied = any(word in action for word in DENY_WORDS)
        c.set(doc, "event.type", ["denied" if denied else "allowed", "connection"])
    elif start >= 0:
        c.set(doc, "event.type", ["connection"])
    c.put(doc, "observer.ingress.interface.name", fields.get("IN"))
    c.put(doc, "observer.egress.interface.name", fields.get("OUT"))
    c.endpoint(doc, "source", fields.get("SRC"), fields.get("SPT"), raw_ip=True)
    c.endpoint(doc, "destination", fields.get("DST"), fields.get("DPT"), raw_ip=True)
    c.put(doc, "source.mac", fields.get("MAC"))
    c.transport(doc, fields.get("PROTO"))
    flags = [word for word in body.split() if word in _FLAGS]
    if flags:
        c.set(doc, "iptables.tcp.flags" if fields.get("PROTO") == "TCP" else "iptables.flags", flags)
    return doc


def detect(doc: dict) -> bool:
    text = doc.get("message") or ""
    return "IN=" in text and " OUT=" in text and "SRC=" in text


SPEC = ParserSpec(
    name="iptables",
    dataset="iptables.log",
    carrier="syslog",
    parse=parse_iptables,
    detect=detect,
    description="Linux netfilter (iptables/nftables) kernel log lines, incl. Ubiquiti EdgeOS prefixes",
    max_message_chars=4096,
    max_message_why="the kernel writes a log record of at most 1 KiB (printk)",
)
