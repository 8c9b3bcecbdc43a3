"""Sigma conditions → a small intermediate form (plain tuples) → Python closures over a flattened event.

pySigma parses the rule, applies its modifiers (contains, base64offset, windash, cidr, re, ...) and, after the
processing pipeline mapped field names, yields a tree of AND / OR / NOT nodes whose leaves are "field equals typed
value" or "keyword". ``to_ir`` (detections/sigma/to_ir.py) turns that tree into tuples of strings and numbers: cheap to pickle (the compiled-rule
cache) and to send between processes (parallel cold start). ``compile_ir`` turns the tuples into closures, once per
rule, so evaluating an event is a walk of closures with no parsing. ``requirement`` derives, from the same tuples, the
literal strings an event must contain for the rule to have any chance — the prefilter that lets the engine skip most
rules for most events.

Anything that cannot be evaluated raises UnsupportedRule with the reason, so rule health can say exactly why a rule
does not run — it is never silently skipped.

Semantics kept: strings match case-insensitively (unless ``cased``), ``*`` and ``?`` are wildcards, a field holding a
list matches if any element matches, a missing field never equals anything but ``null``.

Every test runs in time linear in the value, whatever a sender put in it (event text is untrusted): plain strings
with ``str`` methods and Aho-Corasick, wildcards with a segment matcher (``_wildcard_test``: ``str.find`` per
literal, never a backtracking regex), ``|re`` values on RE2 (soc/linear_re.py, Python's ``re`` syntax and meaning). A
``|re`` that RE2 cannot run with ``re``'s meaning (``\b``, lookarounds, backreferences) makes the rule fail to load,
with the reason in rule health: it is never run on a backtracking engine.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Callable

from detections.sigma.errors import UnsupportedRule
from soc import linear_re
from soc.windows import TRIMMED_WHITESPACE, trimmed

# Bump when the tuples below change: it is part of the cache key (3: wildcards as segments; 4: Windows rules' string
# conditions also match trimmed values, and their keywords search every value).
IR_VERSION = 4
Event = dict[str, Any]  # flattened: {"source.ip": "...", "event.category": ["authentication"], ...}
Predicate = Callable[[Event], bool]
ValueTest = Callable[[Any], bool]

# Keyword (field-less) values are searched in these fields, in this order: an ECS event's fields are parsed from its
# text, which these hold.
KEYWORD_FIELDS = ("message", "event.original")
# A Windows event has no such text (an EVTX record is fields only): a Windows rule's keywords search every value of
# the event, as Hayabusa, Zircolite and Chainsaw do — except its time, which a keyword is never about.
ALL_FIELDS = "*"
KEYWORD_SKIPPED = frozenset({"TimeCreated"})
# The value tests that compare text: on Windows fields they also try the value trimmed (see _trimming). A regular
# expression sees the value as written: it can say what it wants of whitespace itself (``\s*$``).
TEXT_TESTS = frozenset({"eq", "contains", "startswith", "endswith", "wild", "any"})
# "contains" values longer than this are not put in an Aho-Corasick automaton (see _group_predicate).
AUTOMATON_MAX_VALUE = 64
# Literals shorter than this are not worth prefiltering on (they occur in nearly every event).
MIN_LITERAL = 3


# --- IR -> closures -----------------------------------------------------------------------------------------------
def _as_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return None


def _values(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, list):
        return [v for v in value if v is not None]
    return [value]


_COMPARE = {"lt": lambda a, b: a < b, "lte": lambda a, b: a <= b, "gt": lambda a, b: a > b,
            "gte": lambda a, b: a >= b, "neq": lambda a, b: a != b}


def _timestamp_part(value: Any, part: str) -> int | None:
    from datetime import datetime

    if isinstance(value, (int, float)) and not isinstance(value, bool):
        moment = datetime.utcfromtimestamp(value / 1000 if value > 1e11 else value)
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    if part == "week":
        return moment.isocalendar()[1]
    return getattr(moment, part, None)


# --- wildcards: linear, with re's IGNORECASE meaning ----------------------------------------------------------------
# Case-insensitive wildcards match as Python's re did with IGNORECASE (and DOTALL): a character matches another when
# their simple lowercase forms are the same or among re's few extra equivalents (re._casefix: i and dotless i, s and
# long s, the Greek letter variants...). Folding both sides to one representative of that class keeps every string's
# length, so "?" still stands for one character. Checked against re over every code point (tests/security/).
_FOLD: dict[int, int] | None = None
FOLD_RANGE = 0x20000  # no code point from here on has another simple lowercase (checked by the test)


def _fold_table() -> dict[int, int]:
    global _FOLD
    if _FOLD is None:
        import _sre

        try:
            from re._casefix import _EXTRA_CASES as extra  # Python 3.11+
        except ImportError:  # pragma: no cover - older Pythons keep them in sre_compile
            import sre_compile

            extra = getattr(sre_compile, "_ignorecase_fixes", {})
        table = {}
        for code in range(FOLD_RANGE):
            lower = _sre.unicode_tolower(code)
            folded = min((lower, *extra.get(lower, ())))
            if folded != code:
                table[code] = folded
        _FOLD = table
    return _FOLD


def fold_like_re(text: str) -> str:
    """``text`` with every character replaced by the representative of the characters re's IGNORECASE takes for it
    (the same length: one character for one)."""
    return text.lower() if text.isascii() else text.translate(_fold_table())


def _segment_finder(segment: tuple) -> tuple[int, Callable[[str, int, int], int], Callable[[str, int], bool]]:
    """For one run of a wildcard between two ``*`` (literals, and None for each ``?``): its length, ``find(text,
    start, end)`` (the leftmost place at or after start where it fits before end, or -1) and ``at(text, pos)``."""
    length = sum(1 if piece is None else len(piece) for piece in segment)
    literals: list[tuple[int, str]] = []
    offset = 0
    for piece in segment:
        if piece is None:
            offset += 1
        else:
            literals.append((offset, piece))
            offset += len(piece)

    def at(text: str, pos: int) -> bool:
        return all(text.startswith(piece, pos + off) for off, piece in literals)

    if not literals:
        def find(text: str, start: int, end: int) -> int:
            return start if start + length <= end else -1
        return length, find, at
    anchor_offset, anchor = max(literals, key=lambda item: len(item[1]))  # the longest: likely the rarest

    def find_anchored(text: str, start: int, end: int) -> int:
        # Candidates are the places of the longest literal (str.find, in C), each checked with one startswith per
        # literal of the run. Candidates only move forward: the scan reads the text once.
        last = end - length  # the last place the segment may start
        while start <= last:
            found = text.find(anchor, start + anchor_offset, last + anchor_offset + len(anchor))
            if found < 0:
                return -1
            pos = found - anchor_offset
            if at(text, pos):
                return pos
            start = pos + 1
        return -1

    return length, find_anchored, at


def _wildcard_test(segments: tuple, cased: bool) -> Callable[[str], bool]:
    """A whole-value match of a Sigma wildcard (what ``re.fullmatch`` of ``.*`` and ``.`` did) in linear time.

    ``segments`` are the runs of the value between its ``*``. The first must match at the start and the last at the
    end; each one between is placed at its leftmost fit after the one before. Leftmost is always right: every run
    has a fixed length, so an earlier place leaves at least as much room for the rest."""
    fold: Callable[[str], str] = (lambda s: s) if cased else fold_like_re
    runs = [_segment_finder(tuple(None if piece is None else fold(piece) for piece in segment))
            for segment in segments]
    if len(runs) == 1:
        only_length, _, only_at = runs[0]
        return lambda text: len(text) == only_length and only_at(fold(text), 0)
    (head_length, _, head_at), (tail_length, _, tail_at) = runs[0], runs[-1]
    middle = [(length, find) for length, find, _ in runs[1:-1]]

    def test(text: str) -> bool:
        end = len(text) - tail_length
        if end < head_length:
            return False
        text = fold(text)
        if not (head_at(text, 0) and tail_at(text, end)):
            return False
        start = head_length
        for length, find in middle:
            pos = find(text, start, end)
            if pos < 0:
                return False
            start = pos + length
        return True

    return test


def _regex_test(pattern: str, flags: int) -> Callable[[str], bool]:
    try:
        regex = linear_re.compile_runtime(pattern, flags)
    except linear_re.error as exc:
        raise UnsupportedRule(f"|re cannot run in linear time (the suite matches regular expressions with RE2, in "
                              f"Python's re syntax): {exc}") from exc
    return lambda text: regex.search(text) is not None


def _value_test(spec: tuple) -> ValueTest:
    kind = spec[0]
    if kind in ("eq", "contains", "startswith", "endswith"):
        text, cased = spec[1], spec[2]
        fold: Callable[[str], str] = (lambda s: s) if cased else str.casefold
        target = fold(text)
        if kind == "eq":
            def test(v: Any) -> bool:
                t = _as_text(v)
                return t is not None and fold(t) == target
        elif kind == "contains":
            def test(v: Any) -> bool:
                t = _as_text(v)
                return t is not None and target in fold(t)
        elif kind == "startswith":
            def test(v: Any) -> bool:
                t = _as_text(v)
                return t is not None and fold(t).startswith(target)
        else:
            def test(v: Any) -> bool:
                t = _as_text(v)
                return t is not None and fold(t).endswith(target)
        return test
    if kind == "wild":
        wildcard = _wildcard_test(spec[1], spec[2])
        return lambda v: (t := _as_text(v)) is not None and wildcard(t)
    if kind == "re":
        regex = _regex_test(spec[1], spec[2])
        return lambda v: (t := _as_text(v)) is not None and regex(t)
    if kind == "bool":
        target_bool = spec[1]
        return lambda v: v is target_bool or (isinstance(v, str) and v.lower() == str(target_bool).lower())
    if kind == "num":
        target_num = spec[1]

        def number(v: Any) -> bool:
            if isinstance(v, bool):
                return False
            if isinstance(v, (int, float)):
                return v == target_num
            if isinstance(v, str):
                try:
                    return float(v) == target_num
                except ValueError:
                    return False
            return False

        return number
    if kind == "cmp":
        op, bound = _COMPARE[spec[1]], spec[2]

        def compare(v: Any) -> bool:
            if isinstance(v, bool):
                return False
            if isinstance(v, str):
                try:
                    v = float(v)
                except ValueError:
                    return False
            return isinstance(v, (int, float)) and op(v, bound)

        return compare
    if kind == "tspart":
        part, wanted = spec[1], spec[2]
        return lambda v: _timestamp_part(v, part) == wanted
    if kind == "cidr":
        network = ipaddress.ip_network(spec[1], strict=False)

        def in_network(v: Any) -> bool:
            if not isinstance(v, str):
                return False
            try:
                return ipaddress.ip_address(v) in network
            except ValueError:
                return False

        return in_network
    if kind == "any":
        tests = [_value_test(s) for s in spec[1]]
        return lambda v: any(t(v) for t in tests)
    raise UnsupportedRule(f"unknown value test {kind!r}")


_EDGE_WHITESPACE = frozenset(TRIMMED_WHITESPACE)
_last_trimmed: tuple[str, str] = ("", "")


def _trimmed(text: str) -> str:
    """``text`` without the whitespace at its ends; the last answer is kept, since every leaf of every rule reading
    a field asks it of the same value (a value of 64 KB of spaces is scanned once per event, not once per leaf)."""
    global _last_trimmed
    if not text or (text[0] not in _EDGE_WHITESPACE and text[-1] not in _EDGE_WHITESPACE):
        return text
    last = _last_trimmed  # one tuple, read and replaced whole: threads share it safely
    if last[0] is text:
        return last[1]
    bare = trimmed(text)
    _last_trimmed = (text, bare)
    return bare


def _trimming(test: ValueTest) -> ValueTest:
    """``test`` of a value as written, or else of the value without the whitespace around it: Windows writes some
    values with a trailing space ("NtLmSsp "), and a rule written with or without it must match (soc/windows.py)."""
    def either(v: Any) -> bool:
        if test(v):
            return True
        if isinstance(v, str):
            bare = _trimmed(v)
            return bare is not v and test(bare)
        return False

    return either


def _field_predicate(field: str, spec: tuple, trim: bool = False) -> Predicate:
    kind = spec[0]
    if kind == "null":
        return lambda e: not _values(e.get(field))
    if kind == "exists":
        wanted = spec[1]
        return lambda e: bool(_values(e.get(field))) is wanted
    if kind == "fieldref":
        other, starts, ends = spec[1], spec[2], spec[3]

        def fieldref(e: Event) -> bool:
            for a in _values(e.get(field)):
                ta = _as_text(a)
                if ta is None:
                    continue
                ta = ta.casefold()
                for b in _values(e.get(other)):
                    tb = _as_text(b)
                    if tb is None:
                        continue
                    tb = tb.casefold()
                    if (starts and ta.startswith(tb)) or (ends and ta.endswith(tb)) or \
                            (not starts and not ends and ta == tb):
                        return True
            return False

        return fieldref
    test = _trimming(_value_test(spec)) if trim else _value_test(spec)

    def leaf(e: Event) -> bool:
        v = e.get(field)
        if v is None:
            return False
        if isinstance(v, list):
            return any(test(x) for x in v if x is not None)
        return test(v)

    return leaf


def compile_ir(node: tuple) -> Predicate:
    kind = node[0]
    if kind == "and":
        parts = [compile_ir(a) for a in node[1]]
        if len(parts) == 2:
            a, b = parts
            return lambda e: a(e) and b(e)
        return lambda e: all(p(e) for p in parts)
    if kind == "or":
        parts = _merged_or(node[1])
        if len(parts) == 1:
            return parts[0]
        if len(parts) == 2:
            a, b = parts
            return lambda e: a(e) or b(e)
        return lambda e: any(p(e) for p in parts)
    if kind == "not":
        inner = compile_ir(node[1])
        return lambda e: not inner(e)
    if kind == "field":
        return _field_predicate(node[1], node[2], trim=len(node) > 3)
    if kind == "keyword":
        test = _value_test(node[1])
        if len(node) > 2:  # a Windows rule's keyword: every value of the event
            def keyword_anywhere(e: Event) -> bool:
                for name, v in e.items():
                    if v is None or name in KEYWORD_SKIPPED:
                        continue
                    if isinstance(v, list):
                        if any(test(x) for x in v if x is not None):
                            return True
                    elif test(v):
                        return True
                return False

            return keyword_anywhere

        def keyword(e: Event) -> bool:
            for name in KEYWORD_FIELDS:
                v = e.get(name)
                if v is not None and test(v):
                    return True
            return False

        return keyword
    raise UnsupportedRule(f"unknown condition node {kind!r}")


_MERGEABLE = ("eq", "contains", "startswith", "endswith")


def _merged_or(children: tuple) -> list[Predicate]:
    """OR of many values on one field (``Image|endswith: [500 names]``) is one test, not 500 closures:
    a set for equality, a tuple for str.startswith/endswith, an Aho-Corasick automaton for many "contains"."""
    groups: dict[tuple[str, str, bool], list[str]] = {}
    rest: list[Predicate] = []
    for child in children:
        if child[0] == "field" and child[2][0] in _MERGEABLE and not child[2][2]:
            groups.setdefault((child[1], child[2][0], len(child) > 3), []).append(child[2][1].casefold())
        else:
            rest.append(compile_ir(child))
    merged = [_group_predicate(field, kind, values, trim) for (field, kind, trim), values in groups.items()]
    return merged + rest


def _group_predicate(field: str, kind: str, values: list[str], trim: bool = False) -> Predicate:
    if kind == "eq":
        wanted = frozenset(values)
        test: ValueTest = lambda t: t in wanted  # noqa: E731
    elif kind == "startswith":
        prefixes = tuple(values)
        test = lambda t: t.startswith(prefixes)  # noqa: E731
    elif kind == "endswith":
        suffixes = tuple(values)
        test = lambda t: t.endswith(suffixes)  # noqa: E731
    else:
        # pyahocorasick walks a node's whole failure chain at each character: its time grows with the text times the
        # longest value (64 KB against a value of 4,000 "a"s: half a second). Long values are searched one by one
        # with ``in`` (CPython's two-way search: linear), short ones together in one automaton.
        short = [v for v in values if len(v) <= AUTOMATON_MAX_VALUE]
        long = tuple(v for v in values if len(v) > AUTOMATON_MAX_VALUE)
        if len(short) < 6:
            needles = tuple(short) + long
            test = lambda t: any(n in t for n in needles)  # noqa: E731
        else:
            import ahocorasick

            automaton = ahocorasick.Automaton()
            for needle in short:
                automaton.add_word(needle, needle)
            automaton.make_automaton()
            test = lambda t: next(automaton.iter(t), None) is not None or any(n in t for n in long)  # noqa: E731
    if trim:
        untrimmed = test

        def test(t: str) -> bool:  # t is casefolded: trimming it gives the casefolded trimmed value
            if untrimmed(t):
                return True
            bare = _trimmed(t)
            return bare is not t and untrimmed(bare)

    def group(e: Event) -> bool:
        v = e.get(field)
        if v is None:
            return False
        for x in v if isinstance(v, list) else (v,):
            t = _as_text(x)
            if t is not None and test(t.casefold()):
                return True
        return False

    return group


# --- prefilter: literals an event must contain ----------------------------------------------------------------------
def _value_requirement(spec: tuple) -> frozenset[str] | None:
    kind = spec[0]
    if kind in ("eq", "contains", "startswith", "endswith"):
        return frozenset([spec[1].casefold()]) if len(spec[1]) >= MIN_LITERAL else None
    if kind == "wild":
        longest = max(spec[3], key=len, default="")
        return frozenset([longest.casefold()]) if len(longest) >= MIN_LITERAL else None
    if kind == "num" and not isinstance(spec[1], bool):
        text = str(spec[1])
        return frozenset([text]) if len(text) >= MIN_LITERAL else None
    if kind == "any":
        parts = [_value_requirement(s) for s in spec[1]]
        if any(p is None for p in parts):
            return None
        return frozenset().union(*parts)  # type: ignore[arg-type]
    return None  # regex, cidr, comparisons, booleans: no literal is guaranteed


def requirement(node: tuple) -> frozenset[str] | None:
    """Literals (casefolded) of which at least one occurs in any event the node matches; None if none is known.

    AND: any child's requirement is necessary, so take the most selective (longest shortest literal).
    OR: every branch could match, so all branches need one and their literals are pooled. NOT: nothing is known.
    """
    kind = node[0]
    if kind == "field":
        return _value_requirement(node[2])
    if kind == "keyword":
        return _value_requirement(node[1])
    if kind == "not":
        return None
    children = [requirement(c) for c in node[1]]
    if kind == "or":
        if any(c is None for c in children):
            return None
        return frozenset().union(*children)  # type: ignore[arg-type]
    known = [c for c in children if c]
    if not known:
        return None
    return max(known, key=lambda lits: (min(len(x) for x in lits), -len(lits)))


def ir_fields(node: tuple) -> set[str]:
    """The fields a condition reads (keywords read KEYWORD_FIELDS)."""
    kind = node[0]
    if kind == "field":
        return {node[1]} | ({node[2][1]} if node[2][0] == "fieldref" else set())
    if kind == "keyword":
        return {ALL_FIELDS} if len(node) > 2 else set(KEYWORD_FIELDS)
    if kind == "not":
        return ir_fields(node[1])
    return set().union(*(ir_fields(child) for child in node[1])) if node[1] else set()


def event_text(flat: Event, fields: tuple[str, ...] | None = None) -> str:
    """The text the prefilter searches: the values of the given fields (all when None or when they hold ALL_FIELDS),
    casefolded, NUL-separated. A literal required by a leaf on field F can only be in F's value, so only the fields
    the rules read matter. (A trimmed value is part of the value as written, so its literals are there too.)"""
    parts = []
    every = fields is None or ALL_FIELDS in fields
    values = flat.values() if every else (flat.get(f) for f in fields)
    for value in values:
        if value is None:
            continue
        if isinstance(value, list):
            parts.extend(t for v in value if (t := _as_text(v)) is not None)
        else:
            t = _as_text(value)
            if t is not None:
                parts.append(t)
    return "\x00".join(parts).casefold()


__all__ = ["compile_ir", "requirement", "event_text", "ir_fields", "UnsupportedRule", "IR_VERSION"]
