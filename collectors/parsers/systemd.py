"""systemd's own messages (``Started X.`` / ``Stopped X.``) as service start/stop events, like Elastic's
``system.syslog`` pipeline. Targets (``Stopped target Basic System.``) are milestones, not services: plain events."""

from __future__ import annotations

import re

from collectors.parsers import common as c
from collectors.parsers.registry import ParseContext, ParserSpec
from soc import ecs

_SERVICE = re.compile(r"^(?P<verb>Started|Stopped) (?!target )(?P<name>.+?)\.?$")


def parse_systemd(doc: dict, ctx: ParseContext | None = None) -> dict:
    match = _SERVICE.match(c.message_text(doc).strip())
    c.set(doc, "event.module", "system")
    if match:
        start = match.group("verb") == "Started"
        c.categorize(doc, ("process",), ("start" if start else "end",), None,
                     "service-start" if start else "service-stop")
        c.set(doc, "service.name", match.group("name"))
    return doc


SPEC = ParserSpec(
    name="systemd",
    dataset="system.syslog",
    carrier="syslog",
    parse=parse_systemd,
    programs=("systemd",),
    description="systemd service start/stop messages",
)
