"""ModSecurity audit log records to ECS: the JSON format (v3 ``SecAuditLogFormat JSON``, one object per line)
and the native multi-part format (``--id-A--`` ... ``--id-Z--`` sections, one record spanning many lines).

Fields follow the Elastic ``modsecurity.auditlog`` integration; rule matches (``messages``) become ``rule.id`` /
``rule.name`` lists so a WAF hit can be searched like any other detection.
"""

from __future__ import annotations

import json
from datetime import datetime

from collectors.message import ParseError
from collectors.parsers import common as c
from collectors.parsers import web_access as web
from collectors.parsers.registry import ParseContext, ParserSpec
from soc import ecs
from soc import linear_re as rx

_NATIVE_SECTION = rx.compile(r"^--([0-9A-Za-z]+)-([A-Z])--$", rx.MULTILINE)
# v2 native A section: [10/May/2022:04:52:04 +0000] unique-id client-ip client-port server-ip server-port
_NATIVE_A = rx.compile(r"^\[(?P<time>[^\]]+)\] (?P<id>\S+) (?P<cip>\S+) (?P<cport>\d+) (?P<sip>\S+) (?P<sport>\d+)")
_RULE_ID = rx.compile(r'\[id "(?P<id>\d+)"\]')
_RULE_MSG = rx.compile(r'\[msg "(?P<msg>[^"]*)"\]')
_RECORD_START = rx.compile(r"^--[0-9A-Za-z]+-A--$")
_RECORD_END = rx.compile(r"^--[0-9A-Za-z]+-Z--$")


def _asctime(text: str, zone) -> datetime:
    """'Tue May 10 04:52:04 2022' / 'Mon May  9 09:41:59 2022'."""
    parts = text.split()
    if len(parts) != 5 or parts[1].lower() not in c.MONTHS:
        raise ParseError("bad_timestamp", f"timestamp {text[:40]!r} is not 'Day Mon dd hh:mm:ss yyyy'")
    try:
        h, m, s = (int(x) for x in parts[3].split(":"))
        return c.local_time(int(parts[4]), c.MONTHS[parts[1].lower()], int(parts[2]), h, m, s, 0, zone)
    except ValueError as exc:
        raise ParseError("bad_timestamp", f"timestamp {text[:40]!r}: {exc}") from exc


def _headers(value) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def _url(doc: dict, host: str | None, port: int | None, uri: str | None) -> None:
    if not uri:
        return
    if host:
        scheme = "https" if port == 443 else "http"
        c.url_parts(doc, f"{scheme}://{host}{f':{port}' if port else ''}{uri}")
    else:
        c.url_parts(doc, uri)


def _rules(doc: dict, messages) -> None:
    ids, names = [], []
    for entry in messages if isinstance(messages, list) else []:
        if isinstance(entry, dict):
            details = entry.get("details") or {}
            if details.get("ruleId"):
                ids.append(str(details["ruleId"]))
            if entry.get("message"):
                names.append(str(entry["message"]))
        elif isinstance(entry, str):
            ids += _RULE_ID.findall(entry)
            names += _RULE_MSG.findall(entry)
    if ids:
        c.set(doc, "rule.id", ids)
    if names:
        c.set(doc, "rule.name", names)


def _parse_json(doc: dict, text: str, ctx: ParseContext) -> dict:
    try:
        record = json.loads(text)
    except ValueError as exc:
        raise ParseError("bad_json", f"ModSecurity JSON record does not parse: {exc}") from exc
    tx = record.get("transaction") if isinstance(record, dict) else None
    if not isinstance(tx, dict):
        raise ParseError("not_modsecurity", "JSON record has no 'transaction' object")
    c.categorize(doc, ("web",), ("access",))
    if tx.get("time_stamp"):
        doc["@timestamp"] = _asctime(str(tx["time_stamp"]), ctx.zone)
    c.endpoint(doc, "source", tx.get("client_ip"), tx.get("client_port"))
    c.endpoint(doc, "destination", tx.get("host_ip"), tx.get("host_port"))
    c.put(doc, "event.id", tx.get("unique_id"))
    request = tx.get("request") if isinstance(tx.get("request"), dict) else {}
    response = tx.get("response") if isinstance(tx.get("response"), dict) else {}
    c.put(doc, "http.request.method", request.get("method"))
    if request.get("http_version") is not None:
        c.set(doc, "http.version", str(request["http_version"]))
    req_headers, resp_headers = _headers(request.get("headers")), _headers(response.get("headers"))
    _url(doc, req_headers.get("host"), c.integer(tx.get("host_port")), request.get("uri"))
    c.put(doc, "user_agent.original", req_headers.get("user-agent"))
    c.put(doc, "http.request.referrer", req_headers.get("referer"))
    if response.get("http_code") is not None:
        c.set(doc, "http.response.status_code", c.integer(response["http_code"]))
    c.put(doc, "http.response.mime_type", resp_headers.get("content-type"))
    _rules(doc, tx.get("messages"))
    return doc


def _parse_native(doc: dict, text: str, ctx: ParseContext) -> dict:
    sections: dict[str, str] = {}
    marks = list(_NATIVE_SECTION.finditer(text))
    for i, mark in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        sections[mark.group(2)] = text[mark.end():end].strip("\n")
    a = _NATIVE_A.match(sections.get("A", ""))
    if not a:
        raise ParseError("not_modsecurity", "native audit record without a valid A section")
    c.categorize(doc, ("web",), ("access",))
    doc["@timestamp"] = c.clf_time(a.group("time"), ctx.zone)
    c.put(doc, "event.id", a.group("id"))
    c.endpoint(doc, "source", a.group("cip"), a.group("cport"))
    c.endpoint(doc, "destination", a.group("sip"), a.group("sport"))
    request_lines = sections.get("B", "").splitlines()
    headers = {}
    for line in request_lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    if request_lines:
        first = request_lines[0].split()
        if len(first) >= 2:
            c.set(doc, "http.request.method", first[0])
            if len(first) >= 3 and first[2].startswith("HTTP/"):
                c.set(doc, "http.version", first[2][5:])
            _url(doc, headers.get("host"), c.integer(a.group("sport")), first[1])
    c.put(doc, "user_agent.original", headers.get("user-agent"))
    status_line = sections.get("F", "").splitlines()
    if status_line:
        parts = status_line[0].split()
        if len(parts) >= 2 and parts[1].isdigit():
            c.set(doc, "http.response.status_code", int(parts[1]))
    _rules(doc, [line for line in sections.get("H", "").splitlines() if line.startswith("Message:")])
    return doc


def parse_modsecurity(doc: dict, ctx: ParseContext) -> dict:
    text = c.message_text(doc).strip()
    if text.startswith("{"):
        return _parse_json(doc, text, ctx)
    if text.startswith("--"):
        return _parse_native(doc, text, ctx)
    raise ParseError("not_modsecurity", "neither a JSON audit record nor a native --id-A-- record")


def records(lines):
    """Native audit records span many lines (A to Z sections); JSON records are one line each."""
    record: list[str] = []
    for line in lines:
        if record:
            record.append(line)
            if _RECORD_END.match(line.strip()):
                yield "\n".join(record)
                record = []
        elif _RECORD_START.match(line.strip()):
            record = [line]
        elif line.strip():
            yield line
    if record:
        yield "\n".join(record)


def detect(doc: dict) -> bool:
    text = doc.get("message") or ""
    return text.startswith('{"transaction":') or bool(_NATIVE_SECTION.match(text))


SPEC = ParserSpec(
    name="modsecurity",
    dataset="modsecurity.auditlog",
    carrier="syslog",
    parse=parse_modsecurity,
    detect=detect,
    programs=("modsecurity", "modsec"),
    records=records,
    description="ModSecurity WAF audit log (JSON and native A-Z format)",
)
