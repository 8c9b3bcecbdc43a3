"""pfSense / OPNsense: the packet filter log (``filterlog``, CSV) plus the other daemons those firewalls run
(OpenVPN, the web GUI's php-fpm logins, HAProxy, Squid, Snort, Unbound), to ECS as the Elastic ``pfsense``
integration does.

Only ``filterlog`` is routed here by program name: the other programs also run on ordinary servers, so their
lines come here when the sender is known to be a pfSense/OPNsense box (``--format pfsense``).
"""

from __future__ import annotations

import json

from collectors.message import ParseError
from collectors.parsers import common as c
from collectors.parsers.registry import ParseContext, ParserSpec
from soc import ecs
from soc import linear_re as rx

ACTION_TYPES = {"pass": ("connection", "allowed"), "block": ("connection", "denied"),
                "reject": ("connection", "denied")}


def _filterlog(doc: dict, text: str) -> None:
    f = text.strip().split(",")
    if len(f) < 9:
        raise ParseError("bad_filterlog", f"filterlog line has {len(f)} fields, at least 9 expected")
    c.put(doc, "rule.id", f[3])
    c.put(doc, "pfsense.rule_number", f[0])
    action = f[6].lower()
    c.set(doc, "event.category", ["network"])
    c.put(doc, "event.action", action)
    c.put(doc, "event.reason", f[5])
    if action in ACTION_TYPES:
        c.set(doc, "event.type", list(ACTION_TYPES[action]))
    direction = f[7]
    c.put(doc, "observer.ingress.interface.name" if direction == "in" else "observer.egress.interface.name", f[4])
    c.set(doc, "network.direction", {"in": "ingress", "out": "egress"}.get(direction, direction))
    version = f[8]
    if version == "4" and len(f) >= 20:
        proto, src, dst, rest = f[16], f[18], f[19], f[20:]
        c.put(doc, "network.type", "ipv4")
    elif version == "6" and len(f) >= 17:
        proto, src, dst, rest = f[12], f[15], f[16], f[17:]
        c.put(doc, "network.type", "ipv6")
    else:
        return
    c.transport(doc, proto)
    c.endpoint(doc, "source", src)
    c.endpoint(doc, "destination", dst)
    if proto.lower() in ("tcp", "udp") and len(rest) >= 2:
        c.endpoint(doc, "source", None, rest[0])
        c.endpoint(doc, "destination", None, rest[1])


_PEER = rx.compile(r"^(?:(?P<user>[^/\s]+)/)?(?P<ip>[0-9a-fA-F.:]+?):(?P<port>\d+) (?:\[(?P<user2>[^\]]+)\] )?"
                   r"(?P<rest>.*)$")
_VPN_AUTH = rx.compile(r"user '(?P<user>[^']+)' (?P<verb>authenticated|could not authenticate)")
_TLS_ERR = rx.compile(r"TLS Error: .*?from \[AF_INET6?\](?P<ip>[0-9a-fA-F.:]+?):(?P<port>\d+)")


def _openvpn(doc: dict, text: str) -> None:
    auth = _VPN_AUTH.search(text)
    if auth:
        c.categorize(doc, ("authentication", "network"), ("info",))
        c.user(doc, auth.group("user"))
        if auth.group("verb") != "authenticated":
            c.set(doc, "event.outcome", "failure")
        return
    err = _TLS_ERR.search(text)
    if err:
        c.categorize(doc, ("network",), ("connection", "info"), "failure")
        c.endpoint(doc, "source", err.group("ip"), err.group("port"))
        return
    peer = _PEER.match(text)
    if peer and c.is_ip(peer.group("ip")):
        types = ["connection", "info"]
        if "Peer Connection Initiated" in peer.group("rest"):
            types.append("start")
        c.categorize(doc, ("network",), types)
        c.endpoint(doc, "source", peer.group("ip"), peer.group("port"))
        c.user(doc, peer.group("user") or peer.group("user2"))


_GUI_LOGIN = rx.compile(r"(?P<ok>Successful login|authentication error) for user '(?P<user>[^']*)' from:? "
                        r"(?P<ip>[0-9a-fA-F.:]+)")


def _php_fpm(doc: dict, text: str) -> None:
    login = _GUI_LOGIN.search(text)
    if login:
        c.categorize(doc, ("authentication",), None,
                     "success" if login.group("ok") == "Successful login" else "failure")
        c.user(doc, login.group("user"))
        c.endpoint(doc, "source", login.group("ip"))


_HAPROXY_HTTP = rx.compile(r"^(?P<ip>[0-9a-fA-F.:]+?):(?P<port>\d+) \[(?P<ts>[^\]]+)\] (?P<frontend>\S+) "
                           r"(?P<backend>[^/\s]+)/(?P<server>\S+) (?P<timers>[-\d/]+) (?P<status>-?\d+) "
                           r"(?P<bytes>\d+) .*?\"(?P<request>[^\"]*)\"")
_HAPROXY_TCP = rx.compile(r"^(?P<ip>[0-9a-fA-F.:]+?):(?P<port>\d+) \[(?P<ts>[^\]]+)\] (?P<rest>.*)$")
_HAPROXY_CONNECT = rx.compile(r"^Connect from (?P<sip>[0-9a-fA-F.:]+?):(?P<sp>\d+) to (?P<dip>[0-9a-fA-F.:]+?):"
                              r"(?P<dp>\d+)")
_BACKEND_ADDR = rx.compile(r"^\S+?/(?P<ip>[0-9a-fA-F.:]+?):(?P<port>\d+):")
_REQUEST = rx.compile(r"^(?P<method>[A-Z]+) (?P<url>\S+)(?: HTTP/(?P<version>[\d.]+))?$")


def _http_result(doc: dict, status: int | None) -> None:
    if status is not None and status >= 0:
        c.set(doc, "http.response.status_code", status)
        c.set(doc, "event.outcome", "failure" if status >= 400 else "success")


def _request(doc: dict, request: str) -> None:
    match = _REQUEST.match(request.strip())
    if match:
        c.set(doc, "http.request.method", match.group("method"))
        c.put(doc, "http.version", match.group("version"))
        c.url_parts(doc, match.group("url"))


def _haproxy(doc: dict, text: str, ctx: ParseContext) -> None:
    connect = _HAPROXY_CONNECT.match(text)
    if connect:
        c.categorize(doc, ("web", "network"), ("connection",))
        c.endpoint(doc, "source", connect.group("sip"), connect.group("sp"))
        c.endpoint(doc, "destination", connect.group("dip"), connect.group("dp"))
        return
    http = _HAPROXY_HTTP.match(text)
    tcp = http or _HAPROXY_TCP.match(text)
    if not tcp:
        return
    c.endpoint(doc, "source", tcp.group("ip"), tcp.group("port"))
    header_time = doc.get("@timestamp")
    zone = header_time.tzinfo if hasattr(header_time, "tzinfo") and header_time.tzinfo else ctx.zone
    try:
        doc["@timestamp"] = c.clf_time(tcp.group("ts"), zone)
    except ParseError:
        pass
    if http:
        c.set(doc, "event.category", ["web"])
        _http_result(doc, c.integer(http.group("status")))
        c.set(doc, "http.response.bytes", int(http.group("bytes")))
        _request(doc, http.group("request"))
        return
    backend = _BACKEND_ADDR.match(tcp.group("rest"))
    if backend:
        c.categorize(doc, ("network",), ("connection",))
        c.endpoint(doc, "destination", backend.group("ip"), backend.group("port"))


_SQUID = rx.compile(r"^\[?(?P<ts>\d+\.\d+)\s+(?P<elapsed>\d+)\]?(?:\([^)]*\))?\s+(?P<ip>\S+) (?P<result>[A-Z_]+)/"
                    r"(?P<status>\d+) (?P<bytes>\d+) (?P<method>\S+) (?P<url>\S+) (?P<user>\S+) (?P<hier>[A-Z_]+)/"
                    r"(?P<peer>\S+)")


def _squid(doc: dict, text: str) -> None:
    if text.startswith("{"):
        try:
            record = json.loads(text)
        except ValueError as exc:
            raise ParseError("bad_json", f"squid JSON record does not parse: {exc}") from exc
        if not isinstance(record, dict):
            return
        c.set(doc, "event.category", ["web"])
        flat = ecs.flatten(record)
        c.put(doc, "http.request.method", flat.get("http.request.method"))
        c.put(doc, "http.version", flat.get("http.version"))
        status = c.integer(flat.get("http.response.body.status_code") or flat.get("http.response.status_code"))
        _http_result(doc, status)
        if c.integer(flat.get("http.response.bytes")) is not None:
            c.set(doc, "http.response.bytes", c.integer(flat["http.response.bytes"]))
        c.endpoint(doc, "source", flat.get("source.ip") or flat.get("source.address"))
        url = flat.get("url.original")
        if url:
            _squid_url(doc, url, flat.get("http.request.method"))
        return
    match = _SQUID.match(text)
    if match:
        c.categorize(doc, ("web", "network"), None)
        c.endpoint(doc, "source", match.group("ip"))
        _http_result(doc, int(match.group("status")))
        c.set(doc, "http.response.bytes", int(match.group("bytes")))
        c.set(doc, "http.request.method", match.group("method"))
        _squid_url(doc, match.group("url"), match.group("method"))
        c.user(doc, match.group("user"))
        c.endpoint(doc, "destination", match.group("peer"))


def _squid_url(doc: dict, url: str, method: str | None) -> None:
    if method == "CONNECT" and "://" not in url:
        c.set(doc, "url.original", url)
        host, _, port = url.rpartition(":")
        c.put(doc, "url.domain", host or url)
        if port.isdigit():
            c.set(doc, "url.port", int(port))
        return
    c.url_parts(doc, url)


_SNORT = rx.compile(r"\[(?P<sig>\d+:\d+:\d+)\] (?P<desc>.*?) \[Classification: (?P<class>[^\]]*)\] "
                    r"\[Priority: (?P<prio>\d+)\] \{(?P<proto>[^}]+)\} (?P<src>\S+) -> (?P<dst>\S+)")
_UNBOUND = rx.compile(r"\[\d+:\d+\] info: (?P<ip>[0-9a-fA-F.:]+) (?P<name>\S+) (?P<qtype>\S+) (?P<qclass>\S+)")


def _split_host_port(value: str) -> tuple[str, str | None]:
    host, _, port = value.rpartition(":")
    return (host, port) if host and port.isdigit() else (value, None)


def _snort(doc: dict, text: str) -> None:
    match = _SNORT.search(text)
    if match:
        c.set(doc, "event.category", ["network"])
        c.put(doc, "rule.id", match.group("sig"))
        c.put(doc, "rule.description", match.group("desc"))
        c.transport(doc, match.group("proto"))
        c.endpoint(doc, "source", *_split_host_port(match.group("src")))
        c.endpoint(doc, "destination", *_split_host_port(match.group("dst")))


def _unbound(doc: dict, text: str) -> None:
    match = _UNBOUND.search(text)
    if match:
        c.categorize(doc, ("network",), ("connection",))
        c.endpoint(doc, "source", match.group("ip"))
        c.set(doc, "dns.question.name", match.group("name").rstrip("."))
        c.set(doc, "dns.question.type", match.group("qtype"))


def parse_pfsense(doc: dict, ctx: ParseContext) -> dict:
    text = c.message_text(doc)
    program = (ecs.get(doc, "process.name") or "").strip("()")
    c.set(doc, "observer.vendor", "netgate")
    c.set(doc, "observer.type", "firewall")
    c.put(doc, "observer.name", ecs.get(doc, "host.hostname"))
    if program == "filterlog" or (not program and text.count(",") >= 8 and _looks_like_filterlog(text)):
        c.set(doc, "event.dataset", "pfsense.log")
        _filterlog(doc, text)
    elif program == "openvpn":
        _openvpn(doc, text)
    elif program == "php-fpm":
        _php_fpm(doc, text)
    elif program == "haproxy":
        _haproxy(doc, text, ctx)
    elif program.startswith("squid"):
        _squid(doc, text)
    elif program.startswith("snort"):
        _snort(doc, text)
    elif program == "unbound":
        _unbound(doc, text)
    return doc


def _looks_like_filterlog(text: str) -> bool:
    f = text.split(",", 9)
    return len(f) >= 9 and f[0].isdigit() and f[6] in ("pass", "block", "reject") and f[7] in ("in", "out")


def detect(doc: dict) -> bool:
    return (ecs.get(doc, "process.name") or "") == "filterlog"


SPEC = ParserSpec(
    name="pfsense",
    dataset="pfsense.log",
    carrier="syslog",
    parse=parse_pfsense,
    detect=detect,
    programs=("filterlog",),
    description="pfSense/OPNsense filterlog (plus OpenVPN, GUI logins, HAProxy, Squid, Snort, Unbound)",
)
