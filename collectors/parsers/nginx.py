"""nginx access (combined, optionally with a leading ``$host``) and error logs to ECS, as Elastic's ``nginx``
integration does. Both come from the program ``nginx`` over syslog; detect() tells them apart."""

from __future__ import annotations

from collectors.message import ParseError
from collectors.parsers import common as c
from collectors.parsers import web_access as web
from collectors.parsers.registry import ParseContext, ParserSpec
from soc import ecs
from soc import linear_re as rx

# [host[:port] ] remote_addr_list - user [time] "request" status bytes "referer" "agent"
_ACCESS = rx.compile(r'^"?(?P<remote>[^\[\]"]*?) - (?P<user>\S+) \[(?P<time>[^\]]+)\] '
                     r'"(?P<request>[^"]*)" (?P<status>\d{3}) (?P<bytes>\d+|-)'
                     r'(?: "(?P<referrer>[^"]*)")?(?: "(?P<agent>[^"]*)")?')
# The error line's head; the message is the rest (sliced off: a trailing "(?P<message>.*)" capture would make RE2
# track it over the whole line).
_ERROR = rx.compile(r"^(?P<time>\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2}) \[(?P<level>\w+)\] (?P<pid>\d+)#(?P<tid>\d+): "
                    r"(?:\*(?P<conn>\d+) )?")
_CLIENT = rx.compile(r", client: (?P<ip>[^,\s]+)")


def parse_nginx_access(doc: dict, ctx: ParseContext) -> dict:
    text = c.message_text(doc)
    match = _ACCESS.match(text)
    if not match:
        raise ParseError("not_nginx_access", "line does not match the nginx combined access format")
    c.categorize(doc, ("web",), ("access",))
    doc["@timestamp"] = c.clf_time(match.group("time"), ctx.zone)
    tokens = match.group("remote").split()
    # "$host $remote_addr" logs put the virtual host first; a list of forwarded-for addresses follows with commas.
    host = tokens[0] if len(tokens) >= 2 and not tokens[0].endswith(",") else None
    remote_text = match.group("remote").strip()[len(host):] if host else match.group("remote")
    if host:
        address, port = web.host_port(host)
        if c.is_ip(address):
            c.endpoint(doc, "destination", address, port)
        else:
            c.put(doc, "url.domain", address)
            c.endpoint(doc, "destination", None, port)
    remotes = remote_text.replace(",", " ").split()  # the non-empty parts between runs of commas and spaces
    if remotes:
        c.set(doc, "nginx.access.remote_ip_list", remotes)
        c.endpoint(doc, "source", remotes[0])
    c.user(doc, None if match.group("user") == "-" else match.group("user"))
    web.request(doc, match.group("request"))
    web.status(doc, match.group("status"))
    web.body_bytes(doc, match.group("bytes"))
    referrer, agent = match.group("referrer"), match.group("agent")
    c.put(doc, "http.request.referrer", None if referrer == "-" else referrer)
    c.put(doc, "user_agent.original", None if agent == "-" else agent)
    return doc


def parse_nginx_error(doc: dict, ctx: ParseContext) -> dict:
    text = c.message_text(doc)
    match = _ERROR.match(text)
    if not match:
        raise ParseError("not_nginx_error", "line does not start with 'YYYY/MM/DD hh:mm:ss [level] pid#tid:'")
    c.categorize(doc, ("web",), ("error",))
    doc["@timestamp"] = c.date_time(match.group("time"), ctx.zone)
    c.set(doc, "log.level", match.group("level"))
    c.set(doc, "process.pid", int(match.group("pid")))
    c.set(doc, "process.thread.id", int(match.group("tid")))
    doc["message"] = message = text[match.end():]
    client = _CLIENT.search(message)
    if client:
        c.endpoint(doc, "source", client.group("ip"))
    return doc


def detect_access(doc: dict) -> bool:
    return _ACCESS.match(doc.get("message") or "") is not None


def detect_error(doc: dict) -> bool:
    return _ERROR.match(doc.get("message") or "") is not None


SPECS = [
    ParserSpec(name="nginx_access", detect_by_content=False, dataset="nginx.access", carrier="syslog", parse=parse_nginx_access,
               detect=detect_access, programs=("nginx",), description="nginx access log (combined format)"),
    ParserSpec(name="nginx_error", dataset="nginx.error", carrier="syslog", parse=parse_nginx_error,
               detect=detect_error, programs=("nginx",), description="nginx error log",
               max_message_chars=4096,
               max_message_why="nginx writes an error line of at most 2 KiB (NGX_MAX_ERROR_STR)"),
]
