"""What nginx and Apache access/error parsers share: the request line, status and outcome, URL fields."""

from __future__ import annotations

from urllib.parse import unquote

from collectors.parsers import common as c
from soc import ecs
from soc import linear_re as rx

_REQUEST = rx.compile(r"(?P<method>[A-Za-z]+) (?P<url>\S+)(?: HTTP/(?P<version>\d+(?:\.\d+)?))?$")


def request(doc: dict, line: str, decode_query: bool = False) -> None:
    """'GET /a.php?x=%7B HTTP/1.1' → http.request.method, http.version, url.*. Anything else stays unparsed."""
    match = _REQUEST.match(line.strip())
    if not match:
        return
    c.set(doc, "http.request.method", match.group("method"))
    c.put(doc, "http.version", match.group("version"))
    c.url_parts(doc, match.group("url"))
    if decode_query and ecs.get(doc, "url.query"):
        c.set(doc, "url.query", unquote(ecs.get(doc, "url.query")))


def status(doc: dict, code: str | None) -> None:
    number = c.integer(code)
    if number is None:
        return
    c.set(doc, "http.response.status_code", number)
    c.set(doc, "event.outcome", "failure" if number >= 400 else "success")


def body_bytes(doc: dict, value: str | None) -> None:
    number = c.integer(value)
    if number is not None:
        c.set(doc, "http.response.body.bytes", number)


def host_port(token: str) -> tuple[str, str | None]:
    """'67.43.156.15:80' → ('67.43.156.15', '80'); '2001:db8::1' stays whole; '[::1]:80' → ('::1', '80')."""
    if token.startswith("["):
        end = token.find("]")
        if end > 0:
            rest = token[end + 1:]
            return token[1:end], rest[1:] if rest.startswith(":") and rest[1:].isdigit() else None
    if c.is_ip(token):
        return token, None
    head, _, tail = token.rpartition(":")
    if head and tail.isdigit():
        return head, tail
    return token, None
