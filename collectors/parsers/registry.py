"""The parser contract: one small module per format, each exposing ``SPEC`` (a ParserSpec), wired by name.

How a format arrives decides what its parser is given:

* ``syslog``: the line came over syslog (or from a syslog file); the header is already parsed into the document
  (``@timestamp``, ``host.*``, ``process.*``, ``log.syslog.*``) and the program's text is in ``message``.
* ``line``: a line from a file or an HTTP body that is not syslog (an nginx access log line): ``message`` holds it.
* ``json``: a JSON document (Winlogbeat, ModSecurity audit JSON): the decoded object is in ``doc["_json"]``.

``parse(doc, ctx)`` returns the ECS document (it may fill in the one given) or raises ParseError. It never sets
``event.id``, ``event.created`` or ``event.ingested``: the pipeline's finalize step does that for every format.
``detect(doc)`` says whether a syslog message or line looks like this format (for ``--format auto`` and for syslog
senders the inventory does not pin to a format).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from functools import lru_cache
from typing import Callable

from soc import ecs

# Modules that define a SPEC. Adding a format = adding a module here.
PARSER_MODULES: tuple[str, ...] = (
    "collectors.parsers.linux_auth",
)


@dataclass(frozen=True)
class ParseContext:
    zone: tzinfo  # year-less or zone-less timestamps are read in this zone
    received: datetime  # when the suite received the message (year inference)


@dataclass(frozen=True)
class ParserSpec:
    name: str  # the --format name: cisco_asa, sophos_xg, modsecurity, ...
    dataset: str  # the event.dataset it produces
    carrier: str  # syslog | line | json
    parse: Callable[[dict, ParseContext], dict]
    detect: Callable[[dict], bool] = field(default=lambda doc: False)
    programs: tuple[str, ...] = ()  # syslog program names (APP-NAME / TAG) that are always this format
    description: str = ""


@lru_cache(maxsize=1)
def all_parsers() -> dict[str, ParserSpec]:
    specs: dict[str, ParserSpec] = {}
    for module_name in PARSER_MODULES:
        module = importlib.import_module(module_name)
        for spec in getattr(module, "SPECS", None) or [module.SPEC]:
            if spec.name in specs:
                raise ValueError(f"parser {spec.name!r} is defined twice ({module_name})")
            specs[spec.name] = spec
    return specs


@lru_cache(maxsize=1)
def _by_program() -> dict[str, ParserSpec]:
    return {program: spec for spec in all_parsers().values() if spec.carrier == "syslog" for program in spec.programs}


def parser_for_syslog(doc: dict) -> ParserSpec | None:
    """The format of a syslog message: by its program name first, then by what its text looks like."""
    program = (ecs.get(doc, "process.name") or "").lower()
    spec = _by_program().get(program)
    if spec is not None:
        return spec
    for spec in all_parsers().values():
        if spec.carrier == "syslog" and spec.detect(doc):
            return spec
    return None
