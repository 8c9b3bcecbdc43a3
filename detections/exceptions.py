"""Rule exceptions as data: per-rule exclusions of known-benign events, kept in one YAML file
(``detections.rule_exceptions_file``), so a benign pattern is tuned once instead of silenced alert by alert.

```yaml
exceptions:
  - rule: 19b08b1c-861d-4e75-a1ef-ea0c1baf202b     # a rule id or name
    reason: the patch server downloads its updates with certutil
    author: nguyen.van.a
    expires: 2027-06-30                            # optional: not applied after this day (UTC)
    agencies: [so-tttt]                            # optional: only events of these agencies
    computers: [PATCH-01.sokhdt.local]             # optional: only events of these computers (whole names)
    match:                                         # every condition holds (AND); a list is any of its values
      CommandLine|contains: windowsupdate.com
      Image|endswith: '\\certutil.exe'
```

Several entries for one rule are alternatives (OR). A condition names a field as the rule sees the event (the Sigma
view: ``CommandLine``, ``Image`` for Windows, ``user.name``, ``source.ip`` for ECS events) with ``|contains``,
``|startswith``, ``|endswith`` or nothing (equals); values compare as text, case-insensitively; ``null`` means the
field is absent. An entry needs a condition, an agency or a computer: silencing a rule everywhere is the rule
selection's job (``detections.rule_selection.ids_exclude``). Agencies are the event's ``organization.id`` (the
agency the suite assigned it, from the sender's address or key: the sender cannot choose it); computers are Windows'
``Computer`` or ``host.name``, case-insensitive and whole: ``PATCH-01`` matches an event of ``PATCH-01`` only, not
``PATCH-01.corp.example`` (nor ``PATCH-01.evil.lan``); list the full name the events carry.

The fields an exception compares, the computer's name included, are what the event's sender wrote: an exception
turns away whatever event a sender shapes to fit it (docs/security.md, known limits). Prefer equality or
``startswith`` on whole values (an image path, a parent process) to ``contains`` on a command line, which anyone can
satisfy by adding the text.

A match is checked against all of a rule's entries at once (``_Plan``): for each field and modifier the entries
name, the values of every entry are looked up together — a set (equals), one slice of the text per distinct value
length (``startswith``/``endswith``), one Aho-Corasick automaton (``contains``; values longer than ``AUTOMATON_MAX``
are one string search each) — the first time an entry needs them. A match costs a read of each field concerned, not
a search per value or per entry; the worst a 1 MiB file built for it can do (values that overlap themselves) is
bounded in ``AUTOMATON_MAX`` (tests/test_rule_exceptions_hostile.py). The file is input the suite reads at start and
again whenever it changes: it is size-limited, refused with YAML aliases, validated whole, and a broken file is a
ConfigError saying the file, the entry and the reason.
"""

from __future__ import annotations

import functools
import operator
import time
from dataclasses import dataclass
from datetime import date, datetime, time as clock, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Union

from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from detections.untrusted_yaml import UntrustedYamlError, load as load_yaml, read_text
from soc.errors import ConfigError

MAX_FILE_BYTES = 1024 * 1024
MAX_ENTRIES = 10_000
MAX_CONDITIONS = 32  # per entry
MAX_VALUES = 1000  # per condition
MAX_TEXT = 4096  # characters of a value, a reason, a name
MODIFIERS = ("equals", "contains", "startswith", "endswith")

SUPPRESSED = Counter("soc_rule_exceptions_suppressed", "Rule matches an exception turned away (no alert)")

Scalar = Union[str, int, float, bool, None]


class ExceptionsError(ConfigError):
    """The exceptions file cannot be used: the file, the entry at fault, the reason."""


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rule: str = Field(min_length=1, max_length=MAX_TEXT)
    reason: str = Field(min_length=1, max_length=MAX_TEXT)
    author: str = Field(min_length=1, max_length=MAX_TEXT)
    expires: datetime | date | None = None
    agencies: list[str] = Field(default=[], max_length=MAX_VALUES)
    computers: list[str] = Field(default=[], max_length=MAX_VALUES)
    match: dict[str, Union[Scalar, list[Scalar]]] = Field(default={}, max_length=MAX_CONDITIONS)

    @field_validator("match")
    @classmethod
    def _known_modifiers(cls, match: dict) -> dict:
        for key, value in match.items():
            name, _, modifier = key.partition("|")
            if not name or (modifier and modifier not in MODIFIERS):
                raise ValueError(f"{key!r}: a field name, then nothing or one of |contains |startswith |endswith")
            values = value if isinstance(value, list) else [value]
            if not values or len(values) > MAX_VALUES:
                raise ValueError(f"{key!r}: between 1 and {MAX_VALUES} values")
            if any(isinstance(v, str) and len(v) > MAX_TEXT for v in values):
                raise ValueError(f"{key!r}: a value longer than {MAX_TEXT} characters")
            if modifier and modifier != "equals" and any(v is None or v == "" for v in values):
                raise ValueError(f"{key!r}: |{modifier} needs a non-empty value")
        return match


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")

    exceptions: list[_Entry] = Field(default=[], max_length=MAX_ENTRIES)


def _text(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value).lower()


# |contains values up to this long share one Aho-Corasick automaton; longer ones are searched one by one. Why a
# bound: pyahocorasick walks a state's failure links at each character, and reports at each character every value
# ending there, so for values that overlap themselves ("aaaa…b", or "a", "aa", "aaa"…) its work is the text's length
# times the longest value. Kept at 64, that worst case stays a fraction of a second on 64 KB; a longer value costs
# one linear string search of its own (and a 1 MiB file has room for fewer than 16,000 of them).
AUTOMATON_MAX = 64
FEW_NEEDLES = 4  # up to this many |contains values are searched one by one; more go into one automaton
_second = operator.itemgetter(1)

Matcher = Callable[[Any], set[int]]


def _items(value: Any) -> tuple:
    return tuple(value) if isinstance(value, list) else (value,)


def _matcher(modifier: str, values: dict[str, int]) -> Matcher:
    """For one field and one modifier, every value of every entry (value -> its number): a function from the
    event's value (a scalar or a list) to the numbers of the values it matches. Each item of the event's value is
    read once for all of them: a lookup (equals), one slice per distinct value length (startswith, endswith: fewer
    lengths than characters in the file), one automaton scan (contains)."""
    if modifier == "equals":
        return lambda value: {values[t] for t in map(_text, _items(value)) if t in values}
    if modifier in ("startswith", "endswith"):
        by_length: dict[int, dict[str, int]] = {}
        for text, number in values.items():
            by_length.setdefault(len(text), {})[text] = number
        lengths = sorted(by_length)
        starts = modifier == "startswith"

        def affixes(value: Any) -> set[int]:
            found = set()
            for text in map(_text, _items(value)):
                for length in lengths:
                    if length > len(text):
                        break
                    number = by_length[length].get(text[:length] if starts else text[len(text) - length:])
                    if number is not None:
                        found.add(number)
            return found

        return affixes
    short = {text: number for text, number in values.items() if len(text) <= AUTOMATON_MAX}
    long = [(text, number) for text, number in values.items() if len(text) > AUTOMATON_MAX]
    automaton = None
    if len(short) > FEW_NEEDLES:
        import ahocorasick

        automaton = ahocorasick.Automaton()
        for text, number in short.items():
            automaton.add_word(text, number)
        automaton.make_automaton()
    else:
        long += list(short.items())

    def contained(value: Any) -> set[int]:
        found: set[int] = set()
        for text in map(_text, _items(value)):
            if automaton is not None:  # every occurrence, gathered in C (no Python step per occurrence)
                found.update(map(_second, automaton.iter(text)))
            found.update(number for needle, number in long if number not in found and needle in text)
        return found

    return contained


@dataclass(frozen=True)
class FieldCondition:
    field: str
    modifier: str  # equals | contains | startswith | endswith
    values: tuple[str, ...]  # lower-cased
    absent: bool = False  # null among the values: the field missing (or null) also holds

    def holds(self, view: dict[str, Any]) -> bool:
        value = view.get(self.field)
        if value is None or value == []:
            return self.absent
        return bool(self._match(value))

    @functools.cached_property
    def _match(self) -> Matcher:
        return _matcher(self.modifier, {text: n for n, text in enumerate(self.values)})

    def describe(self) -> str:
        shown = [repr(v) for v in self.values] + (["null"] if self.absent else [])
        name = self.field if self.modifier == "equals" else f"{self.field}|{self.modifier}"
        return f"{name} {' or '.join(shown)}"


@dataclass(frozen=True)
class RuleException:
    """One entry of the file."""

    number: int  # its position in the file, from 1
    rule: str
    reason: str
    author: str
    conditions: tuple[FieldCondition, ...]
    agencies: frozenset[str]
    computers: frozenset[str]  # lower-cased
    expires: float | None  # epoch seconds; the entry no longer applies from then
    expires_text: str = ""

    def expired(self, now: float | None = None) -> bool:
        return self.expires is not None and (time.time() if now is None else now) >= self.expires

    def covers(self, view: dict[str, Any], agency: str | None) -> bool:
        if self.agencies and agency not in self.agencies:
            return False
        if self.computers and not self._computer_in(view):
            return False
        return all(condition.holds(view) for condition in self.conditions)

    def _computer_in(self, view: dict[str, Any]) -> bool:
        """The event's computer is one of the entry's, by its whole name: a short name never matches a longer one
        (``PATCH-01`` is not ``PATCH-01.evil.lan``, which any sender may write)."""
        name = view.get("Computer") or view.get("host.name")
        return isinstance(name, str) and bool(name) and name.lower() in self.computers

    def describe(self, now: float | None = None) -> str:
        parts = [" AND ".join(c.describe() for c in self.conditions)] if self.conditions else []
        if self.agencies:
            parts.append("agencies " + ", ".join(sorted(self.agencies)))
        if self.computers:
            parts.append("computers " + ", ".join(sorted(self.computers)))
        if self.expires_text:
            parts.append(f"{'expired' if self.expired(now) else 'until'} {self.expires_text}")
        return "; ".join(parts)

    def as_dict(self, now: float | None = None) -> dict[str, Any]:
        return {"entry": self.number, "rule": self.rule, "reason": self.reason, "author": self.author,
                "match": [c.describe() for c in self.conditions], "agencies": sorted(self.agencies),
                "computers": sorted(self.computers), "expires": self.expires_text or None,
                "expired": self.expired(now)}


class _Plan:
    """The entries for one rule, matched together: their conditions are grouped by field and modifier, and a
    group's values are searched once per event, for every entry at once (``_matcher``), the first time an entry
    needs one of them. A match costs a read of each field concerned, not of each entry's values."""

    def __init__(self, entries: list[RuleException]):
        self.entries = entries
        groups: dict[tuple[str, str], dict[str, int]] = {}
        self.conditions: list[list[tuple[tuple[str, str], frozenset[int], bool]]] = []
        for entry in entries:
            own = []
            for condition in entry.conditions:
                key = (condition.field, condition.modifier)
                values = groups.setdefault(key, {})
                numbers = frozenset(values.setdefault(text, len(values)) for text in condition.values)
                own.append((key, numbers, condition.absent))
            self.conditions.append(own)
        self.matchers = {key: _matcher(key[1], values) for key, values in groups.items()}

    def covering(self, view: dict[str, Any], agency: str | None, now: float) -> RuleException | None:
        found: dict[tuple[str, str], set[int]] = {}
        for entry, conditions in zip(self.entries, self.conditions):
            if entry.expired(now) or (entry.agencies and agency not in entry.agencies) \
                    or (entry.computers and not entry._computer_in(view)):
                continue
            for key, numbers, absent in conditions:
                value = view.get(key[0])
                if value is None or value == []:
                    if absent:
                        continue
                    break
                hits = found.get(key)
                if hits is None:
                    hits = found[key] = self.matchers[key](value)
                if hits.isdisjoint(numbers):
                    break
            else:
                return entry
        return None


class RuleExceptions:
    """Every entry of one file, found by the rule they are for (its id or its name)."""

    def __init__(self, entries: Iterable[RuleException] = (), source: str = ""):
        self.entries = tuple(entries)
        self.source = source
        self._by_rule: dict[str, list[RuleException]] = {}
        for entry in self.entries:
            self._by_rule.setdefault(entry.rule.lower(), []).append(entry)
        self._plans: dict[tuple[str, str | None], _Plan] = {}  # per rule (id, name), built on its first match

    def __len__(self) -> int:
        return len(self.entries)

    def __bool__(self) -> bool:
        return bool(self.entries)

    def for_rule(self, rule_id: str, name: str | None = None) -> list[RuleException]:
        found = list(self._by_rule.get(rule_id.lower(), ()))
        if name and name.lower() != rule_id.lower():
            found += self._by_rule.get(name.lower(), ())
        return found

    def covering(self, rule_id: str, name: str | None, view: dict[str, Any], agency: str | None,
                 now: float | None = None) -> RuleException | None:
        """The first entry still in force that turns this match away, or None."""
        if not self._by_rule:
            return None
        key = (rule_id, name)
        plan = self._plans.get(key)
        if plan is None:
            entries = self.for_rule(rule_id, name)
            if not entries:
                return None
            plan = self._plans[key] = _Plan(entries)  # a race builds it twice, to the same effect
        entry = plan.covering(view, agency, time.time() if now is None else now)
        if entry is not None:
            SUPPRESSED.inc()
        return entry

    def unknown_rules(self, known: Iterable[str]) -> list[RuleException]:
        """Entries naming a rule none of ``known`` (ids and names) is: a typo, or a rule that is gone."""
        known_lower = {k.lower() for k in known if k}
        return [e for e in self.entries if e.rule.lower() not in known_lower]


NO_EXCEPTIONS = RuleExceptions()


def _expiry(value: datetime | date | None) -> tuple[float | None, str]:
    if value is None:
        return None, ""
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return moment.timestamp(), moment.isoformat()
    # A day: the entry applies through that whole day (UTC).
    end = datetime.combine(value + timedelta(days=1), clock(0), tzinfo=timezone.utc)
    return end.timestamp(), value.isoformat()


def _compiled(number: int, entry: _Entry) -> RuleException:
    conditions = []
    for key, value in entry.match.items():
        name, _, modifier = key.partition("|")
        values = value if isinstance(value, list) else [value]
        texts = tuple(dict.fromkeys(_text(v) for v in values if v is not None))
        conditions.append(FieldCondition(name, modifier or "equals", texts, absent=any(v is None for v in values)))
    expires, expires_text = _expiry(entry.expires)
    return RuleException(number=number, rule=entry.rule, reason=entry.reason, author=entry.author,
                         conditions=tuple(conditions), agencies=frozenset(entry.agencies),
                         computers=frozenset(c.lower() for c in entry.computers), expires=expires,
                         expires_text=expires_text)


def parse_exceptions(text: str, source: str) -> RuleExceptions:
    """The exceptions in ``text`` (the file's content), or ExceptionsError."""
    try:
        data = load_yaml(text)
    except UntrustedYamlError as exc:
        raise ExceptionsError(source, "", str(exc)) from exc
    if data is None:
        return RuleExceptions(source=source)
    if not isinstance(data, dict):
        raise ExceptionsError(source, "", "the file must hold a mapping with the key 'exceptions'")
    try:
        document = _File.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise ExceptionsError(source, key, "unknown key" if first["type"] == "extra_forbidden" else first["msg"]) \
            from exc
    except RecursionError as exc:
        raise ExceptionsError(source, "", "the file is nested too deeply") from exc
    entries = []
    for number, entry in enumerate(document.exceptions, start=1):
        if not entry.match and not entry.agencies and not entry.computers:
            raise ExceptionsError(source, f"exceptions.{number - 1}",
                                  "an exception needs a match, agencies or computers: to turn a rule off everywhere "
                                  "use detections.rule_selection.ids_exclude")
        entries.append(_compiled(number, entry))
    return RuleExceptions(entries, source)


def load_exceptions(path: str | Path) -> RuleExceptions:
    """The exceptions file at ``path``, or ExceptionsError (the file, the entry at fault, the reason)."""
    source = str(path)
    try:
        text = read_text(path, MAX_FILE_BYTES)
    except OSError as exc:
        raise ExceptionsError(source, "", f"cannot read the file: {exc.strerror or exc}") from exc
    except UntrustedYamlError as exc:
        raise ExceptionsError(source, "", str(exc)) from exc
    return parse_exceptions(text, source)
