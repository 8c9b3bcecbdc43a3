"""Apache httpd access (common/combined, vhost, SSL request) and error logs to ECS, following the Elastic
``apache`` integration's patterns."""

from __future__ import annotations

from datetime import datetime

from collectors.message import ParseError
from collectors.parsers import common as c
from collectors.parsers import web_access as web
from collectors.parsers.registry import ParseContext, ParserSpec
from soc import ecs
from soc import linear_re as rx

# [vhost[:port] ]client[:port] ident user [time] "request" status bytes ["referer" "agent"]
_ACCESS = rx.compile(r'^(?:(?P<first>\S+) )?(?P<client>\S+) (?P<ident>\S+) (?P<user>\S+) \[(?P<time>[^\]]+)\] '
                     r'"(?P<request>[^"]*)" (?P<status>\d{3}|-) (?P<bytes>\d+|-)'
                     r'(?: "(?P<referrer>[^"]*)")?(?: "(?P<agent>[^"]*)")?')
# mod_ssl request log: [time] client protocol cipher "request" bytes
_SSL = rx.compile(r'^\[(?P<time>[^\]]+)\] (?P<client>\S+) (?P<proto>\S+) (?P<cipher>\S+) "(?P<request>[^"]*)" '
                  r'(?P<bytes>\d+|-)')
_ERROR = rx.compile(r"^\[(?P<time>[A-Z][a-z]{2} [A-Z][a-z]{2} +\d{1,2} \d{2}:\d{2}:\d{2}(?:\.\d+)? \d{4})\] "
                    r"\[(?:(?P<module>[^:\]]+):)?(?P<level>[^\]]+)\](?: \[pid (?P<pid>\d+)(?::tid (?P<tid>\d+))?\])?"
                    r"(?: (?:[^\[\]]*?: )?\[client (?P<client>[^\]]+)\])?(?: (?P<message>.*))?$", rx.DOTALL)
ERROR_LEVELS = frozenset({"emerg", "alert", "crit", "error", "warn"})


def parse_apache_access(doc: dict, ctx: ParseContext) -> dict:
    text = c.message_text(doc)
    c.set(doc, "event.category", ["web"])
    ssl = _SSL.match(text)
    if ssl:
        doc["@timestamp"] = c.clf_time(ssl.group("time"), ctx.zone)
        c.endpoint(doc, "source", ssl.group("client"))
        c.set(doc, "tls.cipher", ssl.group("cipher"))
        web.request(doc, ssl.group("request"), decode_query=True)
        web.body_bytes(doc, ssl.group("bytes"))
        return doc
    match = _ACCESS.match(text)
    if not match:
        raise ParseError("not_apache_access", "line does not match the Apache common/combined access format")
    doc["@timestamp"] = c.clf_time(match.group("time"), ctx.zone)
    client, port = web.host_port(match.group("client"))
    if match.group("first"):
        vhost, vport = web.host_port(match.group("first"))
        if c.is_ip(vhost):
            c.endpoint(doc, "destination", vhost, vport)
        else:
            c.put(doc, "url.domain", vhost)
            c.endpoint(doc, "destination", None, vport)
    c.endpoint(doc, "source", client, port)
    # Elastic keeps the user column as written, "-" included.
    c.put(doc, "user.name", match.group("user"))
    web.request(doc, match.group("request"), decode_query=True)
    web.status(doc, match.group("status"))
    web.body_bytes(doc, match.group("bytes"))
    c.put(doc, "http.request.referrer", match.group("referrer"))
    agent = match.group("agent")
    c.put(doc, "user_agent.original", None if agent == "-" else agent)
    return doc


def parse_apache_error(doc: dict, ctx: ParseContext) -> dict:
    text = c.message_text(doc)
    c.set(doc, "event.category", ["web"])
    match = _ERROR.match(text)
    if not match:
        return doc  # httpd writes some lines without the bracketed header (start-up warnings): kept as they are
    parts = match.group("time").split()
    clock = parts[3].split(".")
    micro = int((clock[1] if len(clock) > 1 else "0")[:6].ljust(6, "0"))
    h, m, s = (int(x) for x in clock[0].split(":"))
    month = c.MONTHS.get(parts[1].lower())
    if month is None:
        raise ParseError("bad_timestamp", f"unknown month in {match.group('time')!r}")
    doc["@timestamp"] = c.local_time(int(parts[4]), month, int(parts[2]), h, m, s, micro, ctx.zone)
    level = match.group("level")
    c.set(doc, "log.level", level)
    c.set(doc, "event.type", ["error" if level in ERROR_LEVELS else "info"])
    c.put(doc, "apache.error.module", match.group("module"))
    if match.group("pid"):
        c.set(doc, "process.pid", int(match.group("pid")))
    if match.group("client"):
        address, port = web.host_port(match.group("client"))
        c.endpoint(doc, "source", address, port)
    c.put(doc, "message", match.group("message"))
    return doc


def detect_access(doc: dict) -> bool:
    text = doc.get("message") or ""
    return _ACCESS.match(text) is not None or _SSL.match(text) is not None


def detect_error(doc: dict) -> bool:
    return _ERROR.match(doc.get("message") or "") is not None


SPECS = [
    ParserSpec(name="apache_access", detect_by_content=False, dataset="apache.access", carrier="syslog", parse=parse_apache_access,
               detect=detect_access, programs=("httpd", "apache2", "apache"),
               description="Apache httpd access log (common, combined, vhost, SSL request log)"),
    ParserSpec(name="apache_error", dataset="apache.error", carrier="syslog", parse=parse_apache_error,
               detect=detect_error, programs=("httpd", "apache2", "apache"), description="Apache httpd error log",
               max_message_chars=16384,
               max_message_why="httpd formats an error line in a buffer of 8 KiB (MAX_STRING_LEN)"),
]
