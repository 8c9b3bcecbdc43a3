"""systemd's own messages (``Started X.`` / ``Stopped X.``) as service start/stop events, like Elastic's
``system.syslog`` pipeline. Targets (``Stopped target Basic System.``) are milestones, not services: plain events."""

from __future__ import annotations

from collectors.parsers import common as c
from collectors.parsers.registry import ParseContext, ParserSpec
from soc import ecs


def _service(text: str) -> tuple[bool, str] | None:
    r"""(started, name) for "Started X." / "Stopped X.", None for anything else and for "Stopped target X." (targets
    are milestones). What the pattern ``^(Started|Stopped) (?!target )(.+?)\.?$`` found in the stripped text, with
    str methods: one line, a name of at least one character, one final dot dropped."""
    verb = text[:8]
    if verb not in ("Started ", "Stopped ") or "\n" in text:
        return None
    name = text[8:]
    if name.endswith(".") and len(name) > 1:
        name = name[:-1]
    if not name or name.startswith("target "):
        return None
    return verb == "Started ", name


def parse_systemd(doc: dict, ctx: ParseContext | None = None) -> dict:
    service = _service(c.message_text(doc).strip())
    c.set(doc, "event.module", "system")
    if service:
        start, name = service
        c.categorize(doc, ("process",), ("start" if start else "end",), None,
                     "service-start" if start else "service-stop")
        c.set(doc, "service.name", name)
    return doc


SPEC = ParserSpec(
    name="systemd",
    dataset="system.syslog",
    carrier="syslog",
    parse=parse_systemd,
    programs=("systemd",),
    description="systemd service start/stop messages",
)
