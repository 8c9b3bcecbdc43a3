"""Syslog headers, RFC 5424 and RFC 3164 (BSD), to ECS ``log.syslog.*``, ``host.hostname``, ``process.*``.

What follows the header (the program's own message) is left in ``message`` for the program parsers. Year-less
RFC 3164 timestamps are read in the configured zone and given the latest year that does not put them in the future
(a December line received on 1 January belongs to last year).
"""

from __future__ import annotations

from functools import lru_cache
from datetime import datetime, timedelta, timezone, tzinfo
from typing import TYPE_CHECKING

from collectors.message import ParseError
from soc import linear_re as rx

if TYPE_CHECKING:
    import re  # the matches of bounded patterns are re's

# Every pattern here runs on text a sender controls (soc/linear_re.py): bounded() ones are anchored
# and can read at most a few hundred characters (cost independent of the line's length; CPython's re, cheap per
# call, as they run on every message), compile() ones run on RE2 (linear time).
_PRI = rx.bounded(r"<(\d{1,3})>")
# RFC 5424 header: VERSION TIMESTAMP HOSTNAME APP-NAME PROCID MSGID, then " " and the rest (structured data and
# message), or the end. Only the header is matched (the rest is sliced off): RE2 would otherwise track a capture
# over the whole message. Same results as the one pattern "...(?P<msgid>\S+)(?: (?P<rest>.*))?$" (DOTALL): the
# fields are single-space separated runs of non-space, so the header matches one way or not at all.
_RFC5424 = rx.compile(r"(?P<version>[1-9]\d{0,2}) (?P<ts>\S+) (?P<host>\S+) (?P<app>\S+) (?P<procid>\S+) "
                      r"(?P<msgid>\S+)")
_RFC5424_FIRST = frozenset("123456789")  # what _RFC5424 can start with: no match is tried otherwise
_MONTHS = {m: i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), start=1)}
# "Nov 22 16:10:01", "Nov  2 16:10:01", optionally with a year after the day or fractions of a second.
_BSD_TS = rx.bounded(
    r"(?P<mon>Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) {1,2}(?P<day>\d{1,2})"
    r"(?: (?P<year>\d{4}))? (?P<h>\d{2}):(?P<m>\d{2}):(?P<s>\d{2})(?:\.(?P<frac>\d{1,6}))?:? "
)
_ISO_TS = rx.bounded(r"(?P<ts>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:?\d{2})?) ")
_TAG = rx.bounded(r"(?P<tag>[^\s\[\]:]{1,64})(?:\[(?P<pid>[^\]\s]{1,20})\])?: ?")
_HOST = rx.bounded(r"(?P<host>[A-Za-z0-9][A-Za-z0-9_.:-]{0,254}) ")
# Devices that send no timestamp or hostname after <PRI> (FortiGate "date=... time=...", SonicWall "id=firewall",
# Sophos 'device="SFW"', CEF/LEEF, Cisco "%ASA-6-302013:"): the message starts right away with its own payload.
_HEADERLESS_PAYLOAD = rx.compile(r"(?:CEF:\d|LEEF:\d|%[A-Z][A-Z0-9_]*-|[A-Za-z_][\w.-]{0,40}=)")
# A cut-short timestamp: a month name (a whole word: no word character after it) or a year and a dash.
_CUT_TIMESTAMP = rx.bounded(r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)(?P<more>\w?)|\d{4}-")
_LONG_FRACTION = rx.compile(r"\.(\d{6})\d+")
# Tags that are really the start of the payload: CEF:0|..., LEEF:1.0|..., %ASA-4-106023: ...
_NOT_A_TAG = frozenset({"CEF", "LEEF"})

FACILITIES = ("kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv", "ftp",
              "ntp", "security", "console", "solaris-cron", "local0", "local1", "local2", "local3", "local4",
              "local5", "local6", "local7")
SEVERITIES = ("emergency", "alert", "critical", "error", "warning", "notice", "informational", "debug")


def _priority(line: str) -> tuple[int, int]:
    match = _PRI.match(line) if line.startswith("<") else None
    if not match:
        if line.startswith("<"):
            raise ParseError("truncated_header", "syslog header is cut short inside <PRI>")
        raise ParseError("bad_header", "missing syslog <PRI> at the start of the line")
    pri = int(match.group(1))
    if pri > 191:
        raise ParseError("bad_header", f"syslog PRI {pri} is out of range (0-191)")
    return pri, match.end()


def _fraction_micro(frac: str | None) -> int:
    return int((frac or "0")[:6].ljust(6, "0"))


def parse_iso(text: str, zone: tzinfo) -> datetime:
    value = text.replace("Z", "+00:00")
    # Python 3.11 reads at most 6 fraction digits; RFC 5424 allows up to 6 too, some senders send 9.
    if "." in value:
        value = _LONG_FRACTION.sub(r".\1", value)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ParseError("bad_timestamp", f"timestamp {text!r} is not ISO 8601") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment


def _bsd_time(match: re.Match, zone: tzinfo, received: datetime) -> datetime:
    return _bsd_time_of(match.group(0), zone, received)


@lru_cache(maxsize=4096)  # the messages of one read share their reception time, and a busy sender its timestamps
def _bsd_time_of(text: str, zone: tzinfo, received: datetime) -> datetime:
    return _bsd_time_uncached(_BSD_TS.match(text), zone, received)


def _bsd_time_uncached(match: re.Match, zone: tzinfo, received: datetime) -> datetime:
    month, day = _MONTHS[match.group("mon")], int(match.group("day"))
    hour, minute, second = int(match.group("h")), int(match.group("m")), int(match.group("s"))
    micro = _fraction_micro(match.group("frac"))
    if match.group("year"):
        years = [int(match.group("year"))]
    else:
        local_now = received.astimezone(zone)
        if month == 1 and local_now.month == 12:  # only then can next year's date be "not in the future"
            years = [local_now.year + 1, local_now.year, local_now.year - 1]
        else:
            years = [local_now.year, local_now.year - 1, local_now.year + 1]
        limit = received + timedelta(days=1)
        for year in years:  # the first candidate that is not in the future is the latest such one
            try:
                moment = datetime(year, month, day, hour, minute, second, micro, tzinfo=zone)
            except ValueError:
                continue
            if moment <= limit:
                return moment
    candidates = []
    for year in years:
        try:
            candidates.append(datetime(year, month, day, hour, minute, second, micro, tzinfo=zone))
        except ValueError:
            continue  # 29 Feb in a year that has none
    if not candidates:
        raise ParseError("bad_timestamp", f"no such date: {match.group(0).strip()}")
    # The latest date that is not in the future (a day of clock skew allowed): a "Dec 31" line received on
    # 1 January is last year's, a "Feb 21" line received in November is this year's.
    not_future = [c for c in candidates if c <= received + timedelta(days=1)]
    return max(not_future) if not_future else min(candidates)


def _structured_data(rest: str) -> tuple[dict[str, dict[str, str]], str]:
    """RFC 5424 STRUCTURED-DATA: '-' or one or more [id k="v" ...] elements, then the message."""
    if rest.startswith("-"):
        return {}, rest[2:] if rest.startswith("- ") else rest[1:]
    elements: dict[str, dict[str, str]] = {}
    i, n = 0, len(rest)
    while i < n and rest[i] == "[":
        j = i + 1
        while j < n and rest[j] not in " ]":
            j += 1
        sd_id = rest[i + 1:j]
        params: dict[str, str] = {}
        while j < n and rest[j] == " ":
            j += 1
            eq = rest.find("=", j)
            if eq < 0 or eq + 1 >= n or rest[eq + 1] != '"':
                raise ParseError("bad_structured_data", "structured data parameter without a quoted value")
            name = rest[j:eq]
            k, value = eq + 2, []
            while k < n and rest[k] != '"':
                if rest[k] == "\\" and k + 1 < n and rest[k + 1] in '"\\]':
                    k += 1
                value.append(rest[k])
                k += 1
            if k >= n:
                raise ParseError("bad_structured_data", "structured data value is not closed")
            params[name] = "".join(value)
            j = k + 1
        if j >= n or rest[j] != "]":
            raise ParseError("bad_structured_data", "structured data element is not closed")
        elements[sd_id] = params
        i = j + 1
    if not elements:
        raise ParseError("bad_structured_data", "structured data must be '-' or start with '['")
    message = rest[i + 1:] if rest[i:i + 1] == " " else rest[i:]
    return elements, message


def _base(pri: int) -> dict:
    facility, severity = divmod(pri, 8)
    return {
        "log": {"syslog": {
            "priority": pri,
            "facility": {"code": facility, "name": FACILITIES[facility] if facility < len(FACILITIES) else ""},
            "severity": {"code": severity, "name": SEVERITIES[severity]},
        }},
    }


def parse_syslog(line: str, zone: tzinfo, received: datetime, require_pri: bool = True) -> dict:
    """One syslog line (without its trailing newline) to a partial ECS document.

    Network syslog always starts with <PRI>; lines read from files (/var/log/auth.log) do not, so file input passes
    ``require_pri=False``.
    """
    if not require_pri and not line.startswith("<"):
        doc: dict = {"log": {"syslog": {}}}
        pos = 0
    else:
        pri, pos = _priority(line)
        doc = _base(pri)
    body = line[pos:]
    if not body.strip():
        raise ParseError("truncated_header", "syslog line ends after <PRI>")
    match = _RFC5424.match(body) if body[:1] in _RFC5424_FIRST else None
    rest = ""
    if match:
        after = body[match.end():]
        if after.startswith(" "):
            rest = after[1:]
        elif after not in ("", "\n"):  # ("$" of the whole pattern: the end, or before a final newline)
            match = None
    if match and (match.group("ts") == "-" or match.group("ts")[:4].isdigit()):
        ts = match.group("ts")
        moment = received if ts == "-" else parse_iso(ts, timezone.utc)
        syslog = doc["log"]["syslog"]
        syslog["version"] = match.group("version")
        host, app, procid, msgid = (None if v == "-" else v for v in match.group("host", "app", "procid", "msgid"))
        if host:
            doc["host"] = {"hostname": host, "name": host}
        if app:
            syslog["appname"] = app
            doc["process"] = {"name": app}
        if procid:
            syslog["procid"] = procid
            if procid.isdecimal() and len(procid) <= 10:  # a process id (32 bits); int() of 64 KiB of digits raises
                doc.setdefault("process", {})["pid"] = int(procid)
        if msgid:
            syslog["msgid"] = msgid
        if rest:
            sd, message = _structured_data(rest)
            if sd:
                syslog["structured_data"] = sd
        else:
            message = ""
        if message.startswith("\ufeff"):  # RFC 5424 allows a BOM before a UTF-8 MSG
            message = message[1:]
        doc["@timestamp"] = moment
        doc["message"] = message
        return doc
    if body[:1].isdigit() and " " in body[:4] and not _ISO_TS.match(body):
        raise ParseError("truncated_header", "RFC 5424 header is incomplete (needs 6 fields after <PRI>)")
    # RFC 3164: TIMESTAMP HOSTNAME TAG[PID]: MSG
    ts_match = _BSD_TS.match(body)
    if ts_match:
        moment = _bsd_time(ts_match, zone, received)
    else:
        ts_match = _ISO_TS.match(body)
        if not ts_match:
            payload = body.lstrip(" ")
            if _HEADERLESS_PAYLOAD.match(payload):
                doc["@timestamp"] = received
                doc["message"] = payload
                return doc
            cut = _CUT_TIMESTAMP.match(body)
            if cut and not cut.group("more"):  # (the month must end at a word boundary)
                raise ParseError("truncated_header", "syslog timestamp is cut short")
            raise ParseError("bad_header", "no RFC 3164 or RFC 5424 timestamp after <PRI>")
        moment = parse_iso(ts_match.group("ts"), zone)
    rest = body[ts_match.end():]
    host_match = _HOST.match(rest)
    # Some devices (Cisco ASA) send no hostname: the next token is then the tag ("%ASA-4-106023:").
    if host_match and not rest[:host_match.end()].rstrip().endswith(":"):
        doc["host"] = {"hostname": host_match.group("host"), "name": host_match.group("host")}
        rest = rest[host_match.end():]
    elif not rest:
        raise ParseError("truncated_header", "syslog line ends after the timestamp")
    tag_match = _TAG.match(rest)
    if tag_match and (tag_match.group("tag") in _NOT_A_TAG or tag_match.group("tag").startswith("%")):
        tag_match = None
    if tag_match is None and rest.startswith(": "):
        rest = rest[2:]  # "host : %ASA-..." (Cisco puts a lone colon where the tag would be)
    if tag_match:
        doc["process"] = {"name": tag_match.group("tag")}
        doc["log"]["syslog"]["appname"] = tag_match.group("tag")
        pid = tag_match.group("pid")
        if pid:
            doc["log"]["syslog"]["procid"] = pid
            if pid.isdigit():
                doc["process"]["pid"] = int(pid)
        rest = rest[tag_match.end():]
    doc["@timestamp"] = moment
    doc["message"] = rest
    return doc


__all__ = ["parse_syslog", "parse_iso", "FACILITIES", "SEVERITIES"]
