"""Small helpers every vendor parser shares: key=value splitting, addresses, ports, timestamps, ECS setters.

Values are normalised the way the Elastic integrations do (lowercase transport names, integer ports, ``related.*``
lists), so documents from different devices can be queried with the same fields and scored against the fixtures.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from datetime import datetime, timedelta, timezone, tzinfo

from collectors.message import ParseError
from soc import ecs
from soc import linear_re as rx

# key=value or key="quoted value" (backslash escapes inside quotes). The leftmost key: a run of name characters
# [\w.-] from its first [A-Za-z_], then "=". Kept on CPython's re (dozens of matches per line; see
# linear_re.backtracking_free): each match takes a key's whole run, possessively, and the "=value" only if an "="
# follows (the second group tells a pair from a word), so no position inside a run is tried again (the pattern
# "([A-Za-z_][\w.\-]*+)=..." alone restarted at every character of a run without "=": 64 KiB of "a" took seconds).
# A quoted value's scan stops at the next unescaped quote, which every later `key="` has; an unterminated one falls
# back to the bare value.
_KV = rx.backtracking_free(
    r'([A-Za-z_][\w.\-]*+)(?:(=)(?:"((?:[^"\\]++|\\.)*+)"|(\S*+)))?+',
    why="possessive runs over disjoint classes; a key's run is consumed whole, with or without '='")
_UNESCAPE = rx.compile(r"\\(.)")

IANA_BY_NAME = {"icmp": "1", "igmp": "2", "ipv4": "4", "tcp": "6", "egp": "8", "igp": "9", "pup": "12", "udp": "17",
                "rdp": "27", "irtp": "28", "dccp": "33", "idpr": "35", "ipv6": "41", "ipv6-route": "43",
                "ipv6-frag": "44", "rsvp": "46", "gre": "47", "esp": "50", "ah": "51", "ipv6-icmp": "58",
                "ipv6-nonxt": "59", "ipv6-opts": "60", "sctp": "132"}
NAME_BY_IANA = {v: k for k, v in IANA_BY_NAME.items()}


def kv(text: str) -> dict[str, str]:
    """``a=1 b="two words" c=`` → {"a": "1", "b": "two words", "c": ""}. Later duplicates win."""
    out: dict[str, str] = {}
    # findall builds the tuples in C; a group that did not take part is "", and an empty quoted value and an empty
    # bare one mean the same "".
    for name, equals, quoted, bare in _KV.findall(text):
        if not equals:
            continue  # a word without "=" after it
        if quoted:
            out[name] = _UNESCAPE.sub(r"\1", quoted) if "\\" in quoted else quoted
        else:
            out[name] = bare
    return out


@lru_cache(maxsize=65536)
def _canonical_ip(value: str) -> str | None:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def ip(value: str | None) -> str | None:
    """A valid IPv4/IPv6 address in canonical text, else None. Cached: the same addresses recur all day."""
    if not value or len(value) > 64:
        return None
    return _canonical_ip(value)


# The ECS setter every parser calls many times (the dotted path is split once per field name).
set = ecs.put  # noqa: A001


def is_ip(value: str | None) -> bool:
    return ip(value) is not None


def port(value) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if 0 <= number <= 0x7FFFFFFF else None


def integer(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def put(doc: dict, dotted: str, value) -> None:
    """Set a field when it has a value (None and "" are skipped)."""
    if value is not None and value != "":
        set(doc, dotted, value)


def append_unique(doc: dict, dotted: str, value) -> None:
    if value is None or value == "":
        return
    current = ecs.get(doc, dotted)
    if current is None:
        set(doc, dotted, [value])
    elif isinstance(current, list):
        if value not in current:
            current.append(value)
    elif current != value:
        set(doc, dotted, [current, value])


def endpoint(doc: dict, side: str, address: str | None, port_value=None, raw_ip: bool = False) -> None:
    """``source``/``destination``: ``.ip`` when the address is an IP (``.domain`` otherwise), ``.port`` as int.

    ``raw_ip`` keeps the address text as the device wrote it (Elastic keeps ``fe80:0000:...`` from iptables)."""
    if address:
        address = address.strip()
        canonical = ip(address)
        if canonical:
            set(doc, f"{side}.ip", address if raw_ip else canonical)
            append_unique(doc, "related.ip", address if raw_ip else canonical)
        elif address != "-":
            set(doc, f"{side}.domain", address)
    number = port(port_value)
    if number is not None:
        set(doc, f"{side}.port", number)


def transport(doc: dict, value: str | None) -> None:
    """network.transport in lowercase names, network.iana_number as a string (a number may come either way)."""
    if not value:
        return
    value = value.strip().lower()
    if value in ("icmpv6", "icmp6", "ipv6icmp"):
        value = "ipv6-icmp"
    if value in NAME_BY_IANA:
        set(doc, "network.iana_number", value)
        set(doc, "network.transport", NAME_BY_IANA[value])
        return
    set(doc, "network.transport", value)
    if value in IANA_BY_NAME:
        set(doc, "network.iana_number", IANA_BY_NAME[value])


def user(doc: dict, name: str | None, field: str = "user.name") -> None:
    if name and name not in ("-", "N/A"):
        set(doc, field, name)
        append_unique(doc, "related.user", name)


def fixed_zone(text: str | None) -> tzinfo | None:
    """'+0200', '+02:00', '-05', 'Z', 'UTC', 'GMT+2', 'GMT-0200' → a fixed-offset zone; None if not an offset."""
    if not text:
        return None
    value = text.strip()
    upper = value.upper()
    if upper in ("Z", "UTC", "GMT", "UT"):
        return timezone.utc
    if upper.startswith(("GMT", "UTC")):
        value = value[3:]
    match = _OFFSET.fullmatch(value)
    if not match:
        return None
    sign = -1 if match.group(1) == "-" else 1
    hours, minutes = int(match.group(2)), int(match.group(3) or 0)
    if hours > 14 or minutes > 59:
        return None
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


_OFFSET = rx.bounded(r"([+-])(\d{1,2}):?(\d{2})?")

# US/European abbreviations some devices put after the time (Cisco: "Sep 25 15:47:07 EDT"). Ambiguous ones
# (IST, BST) are left out on purpose: the configured zone is used instead.
ABBREVIATIONS = {"UTC": 0, "GMT": 0, "Z": 0, "EST": -5, "EDT": -4, "CST": -6, "CDT": -5, "MST": -7, "MDT": -6,
                 "PST": -8, "PDT": -7, "AST": -4, "ADT": -3, "CET": 1, "CEST": 2, "ICT": 7}


def abbreviation_zone(name: str | None) -> tzinfo | None:
    if not name:
        return None
    hours = ABBREVIATIONS.get(name.upper())
    return None if hours is None else timezone(timedelta(hours=hours))


def local_time(year: int, month: int, day: int, hour: int, minute: int, second: int, micro: int,
               zone: tzinfo) -> datetime:
    try:
        return datetime(year, month, day, hour, minute, second, micro, tzinfo=zone)
    except ValueError as exc:
        raise ParseError("bad_timestamp", f"no such date or time: {exc}") from exc


_DATE_TIME = rx.bounded(r"(\d{4})[-/](\d{1,2})[-/](\d{1,2})[ T](\d{1,2}):(\d{2}):(\d{2})(?:[.,](\d{1,9}))?")


def date_time(text: str, zone: tzinfo) -> datetime:
    """'2024-08-28 10:33:52', '2022/10/24 20:40:32', '2021-11-15T20:52:23-0600' (an offset in the text wins)."""
    match = _DATE_TIME.match(text.strip())
    if not match:
        raise ParseError("bad_timestamp", f"timestamp {text[:40]!r} is not 'YYYY-MM-DD hh:mm:ss'")
    rest = text.strip()[match.end():]
    own = fixed_zone(rest) if rest else None
    micro = int((match.group(7) or "0")[:6].ljust(6, "0"))
    y, mo, d, h, mi, s = (int(g) for g in match.groups()[:6])
    return local_time(y, mo, d, h, mi, s, micro, own or zone)


MONTHS = {m: i for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov",
                                      "dec"), start=1)}

# Common Log Format: 10/Oct/2000:13:55:36 -0700
_CLF = rx.bounded(r"(\d{1,2})/([A-Za-z]{3})/(\d{4}):(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?(?: ([+-]\d{4}))?")


def clf_time(text: str, zone: tzinfo) -> datetime:
    match = _CLF.fullmatch(text.strip())
    if not match or match.group(2).lower() not in MONTHS:
        raise ParseError("bad_timestamp", f"timestamp {text[:40]!r} is not dd/Mon/yyyy:hh:mm:ss zone")
    own = fixed_zone(match.group(8)) if match.group(8) else None
    micro = int((match.group(7) or "0").ljust(6, "0"))
    return local_time(int(match.group(3)), MONTHS[match.group(2).lower()], int(match.group(1)), int(match.group(4)),
                      int(match.group(5)), int(match.group(6)), micro, own or zone)


def epoch(value: str) -> datetime | None:
    """Seconds, milliseconds, microseconds or nanoseconds since 1970 (decided by the number of digits)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    digits = len(str(value).split(".")[0].lstrip("-"))
    scale = 1 if digits <= 11 else 1e3 if digits <= 14 else 1e6 if digits <= 17 else 1e9
    try:
        return datetime.fromtimestamp(number / scale, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None


def observer(doc: dict, vendor: str, product: str, kind: str = "firewall") -> None:
    set(doc, "observer.vendor", vendor)
    set(doc, "observer.product", product)
    set(doc, "observer.type", kind)


def categorize(doc: dict, category=None, types=None, outcome: str | None = None, action: str | None = None) -> None:
    if category is not None:
        set(doc, "event.category", list(category))
    if types is not None:
        set(doc, "event.type", list(types))
    if outcome:
        set(doc, "event.outcome", outcome)
    if action:
        set(doc, "event.action", action)


_SCHEME = rx.compile(r"[A-Za-z][A-Za-z0-9+.-]*")


def url_parts(doc: dict, original: str, prefix: str = "url") -> None:
    """url.original plus scheme/domain/port/path/query/extension (what Elastic's uri_parts processor sets)."""
    if not original:
        return
    set(doc, f"{prefix}.original", original)
    rest = original
    scheme_end = rest.find("://")
    if scheme_end > 0 and not _SCHEME.fullmatch(rest[:scheme_end]):
        scheme_end = -1
    if scheme_end > 0:
        set(doc, f"{prefix}.scheme", rest[:scheme_end].lower())
        rest = rest[scheme_end + 3:]
        slash = min([i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0] or [len(rest)])
        authority, rest = rest[:slash], rest[slash:]
        if "@" in authority:
            userinfo, authority = authority.rsplit("@", 1)
            put(doc, f"{prefix}.username", userinfo.split(":", 1)[0])
        host, port_text = authority, None
        if authority.startswith("["):
            end = authority.find("]")
            host, after = authority[1:end], authority[end + 1:]
            port_text = after[1:] if after.startswith(":") else None
        elif authority.count(":") == 1:
            host, port_text = authority.split(":", 1)
        put(doc, f"{prefix}.domain", host)
        if port_text is not None and port(port_text) is not None:
            set(doc, f"{prefix}.port", port(port_text))
    fragment = rest.find("#")
    if fragment >= 0:
        put(doc, f"{prefix}.fragment", rest[fragment + 1:])
        rest = rest[:fragment]
    query = rest.find("?")
    if query >= 0:
        set(doc, f"{prefix}.query", rest[query + 1:])
        rest = rest[:query]
    if rest:
        set(doc, f"{prefix}.path", rest)
        last = rest.rsplit("/", 1)[-1]
        if "." in last and not last.endswith("."):
            set(doc, f"{prefix}.extension", last.rsplit(".", 1)[1].lower())


def message_text(doc: dict) -> str:
    text = doc.get("message")
    if text is None:
        text = ecs.get(doc, "event.original") or ""
    return text


def require(condition: bool, kind: str, detail: str) -> None:
    if not condition:
        raise ParseError(kind, detail)
