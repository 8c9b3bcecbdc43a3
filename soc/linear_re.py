r"""Linear-time regular expressions for text a sender controls: Google RE2 (PyPI ``google-re2``) behind the part of
the ``re`` API the suite uses, with Python's own meaning of ``\d``, ``\w``, ``\s`` and ``$`` kept.

Who uses it: the parsers (collectors/parsers/, their own patterns, ``compile``), and every pattern someone writes
that runs on event text: Sigma ``|re`` values (detections/sigma/compiler.py, and the scheduled SQLite REGEXP),
analysts' silence and inhibition matchers (detections/silences.py), the masking of device answers
(playbooks/connections.py). Patterns made at run time from such input go through ``compile_runtime``, which is
``compile`` without the record the tests compare with ``re`` (that record is for the suite's own patterns, and
would otherwise grow with every rule reload).

Why: CPython's ``re`` backtracks, so a pattern such as ``\[\s*(.*?)\s*\]$`` takes time polynomial (here cubic) in
the length of a line built against it: one 64 KB syslog line kept a parser busy for hours. RE2 runs every match in
time linear in the text, whatever the pattern and the text. It has no backreferences, lookarounds or possessive
quantifiers: ``compile`` refuses them, and the few patterns that had them were rewritten (or the text is split
with ``str`` methods instead).

``compile`` (RE2) is the rule. Two exceptions stay on CPython's engine, for speed, each checked or argued here:

* ``bounded``: anchored patterns (``match``/``fullmatch`` only) without unbounded or nested repetition, so they can
  read at most ``max_width`` characters (checked when compiled): their cost does not depend on the text's length.
  The syslog header's patterns, which run on every message, are such;
* ``backtracking_free``: the two key scanners that run dozens of matches per line (key=value pairs, CEF extension
  keys), written so that no character is looked at more than a bounded number of times (the reason is kept with
  the pattern). RE2 through Python costs about 1 µs a call against 0.2 µs.

``tests/security/test_parser_redos.py`` feeds every parser its worst cases up to 64 KB; every call stays far under a
second.

The results are those ``re`` gives for the same pattern (``tests/security/test_parser_linear_re.py`` compares the
two on every pattern compiled here):

* leftmost-first matching, greedy and lazy quantifiers, and submatches as a backtracking engine reports them (RE2's
  default semantics);
* ``\d``, ``\w``, ``\s`` and their negations have their ``re`` (Unicode, ``str``) meaning: ``\d`` any decimal digit
  (``\p{Nd}``), ``\w`` letters, numbers and ``_``, ``\s`` the 29 characters ``str.isspace`` knows (RE2's own classes
  are ASCII and its ``\s`` lacks ``\v`` and ``\x1c``-``\x1f``). Pure-ASCII text (nearly every log line; ``isascii``
  costs nothing) is matched by a second program compiled with the ASCII classes, which is equivalent there and
  faster. (RE2's Unicode tables are newer than Python 3.11's: a character assigned since Unicode 14 can be a letter
  or digit to RE2 and not yet to ``re``.);
* global inline flags at the start of a pattern (``(?i)``, ``(?s)``, ``(?m)``, ``(?is)``...; Python allows them
  only there) are the flags they name, as in ``re``; ``a``, ``L`` and ``x`` and scoped flags (``(?i:...)``) are
  refused;
* ``$`` (without MULTILINE) matches at the end or before a final newline, as in ``re``: RE2's ``$`` is the end only,
  so the newline is matched in a group of its own and taken off the spans; in ``fullmatch``, ``$`` is the end;
  ``\Z`` is the end;
* offsets and groups are in characters of the ``str`` given. A lone surrogate (JSON allows ``"\ud800"``) is
  matched as U+FFFD, which none of the parsers' classes tells apart from it.

Case: with IGNORECASE, RE2 folds case by Unicode's simple case folding, as ``re`` does, except that ``re`` also
takes the Turkish dotted and dotless i (U+0130, U+0131) for an ``i``; RE2 does not.

Empty matches: ``finditer``/``findall``/``sub``/``split`` step one character past an empty match (``re`` would try
a non-empty match at the same place first); no pattern of the parsers that is iterated can match empty.

Matching calls the binding's ``re2._re2`` module directly (the ``re2`` module's Python layer builds a generator and
re-encodes the text for every call); the dependency's upper bound in pyproject.toml guards that interface.
"""

from __future__ import annotations

import codecs
import functools
import re as _re
from typing import Callable, Iterator

from re2 import Options as _Options
from re2 import _re2

try:  # CPython's own pattern parser (3.11+), used to read a pattern's literal prefix and its width
    from re import _constants as _sre
    from re import _parser as _sre_parse
except ImportError:  # pragma: no cover
    import sre_constants as _sre  # type: ignore[no-redef]
    import sre_parse as _sre_parse  # type: ignore[no-redef]

__all__ = ["compile", "compile_runtime", "bounded", "backtracking_free", "Pattern", "Match", "error", "DOTALL",
           "MULTILINE", "IGNORECASE", "compiled"]

DOTALL, MULTILINE, IGNORECASE = _re.DOTALL, _re.MULTILINE, _re.IGNORECASE
_FLAGS = {DOTALL: "s", MULTILINE: "m", IGNORECASE: "i"}


class error(ValueError):
    """A pattern RE2 cannot run with ``re``'s meaning (lookaround, backreference, ...) or does not compile."""


_OPTIONS = _Options()
_OPTIONS.log_errors = False  # a bad pattern raises here; RE2 need not print it on stderr too
_UNANCHORED = _re2.RE2.Anchor.UNANCHORED
_ANCHOR_START = _re2.RE2.Anchor.ANCHOR_START
_ANCHOR_BOTH = _re2.RE2.Anchor.ANCHOR_BOTH
_NO_MATCH = (-1, -1)

# What ``\s`` means in ``re`` for str patterns (Py_UNICODE_ISSPACE); RE2's \s is [\t\n\f\r ].
_SPACE_ASCII = r"\t\n\x0b\x0c\r\x1c-\x1f "
_SPACE_UNICODE = _SPACE_ASCII + r"\x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}"
# Class contents (usable inside [...]) for \d, \w, \s, per program.
_CLASS = {
    True: {"d": "0-9", "w": "0-9A-Za-z_", "s": _SPACE_ASCII},
    False: {"d": r"\p{Nd}", "w": r"\p{L}\p{N}_", "s": _SPACE_UNICODE},
}


def _surrogates_as_fffd(exc: UnicodeError):
    if isinstance(exc, UnicodeEncodeError):
        return "\ufffd".encode("utf-8") * (exc.end - exc.start), exc.end  # bytes: copied as they are
    raise exc


codecs.register_error("soc.linear_re.fffd", _surrogates_as_fffd)


def _translate(pattern: str, flags: int, ascii_only: bool, full: bool = False) -> tuple[str, list[bool]]:
    """The RE2 spelling of a Python ``re`` pattern (see the module's notes), and for each capturing group of it, in
    order, whether it is one added here (the newline a ``$`` may stand before); refuses what RE2 cannot do alike."""
    classes = _CLASS[ascii_only]
    out: list[str] = []
    added: list[bool] = []
    i, n = 0, len(pattern)
    in_class = False
    class_start = 0
    multiline = bool(flags & MULTILINE)
    while i < n:
        ch = pattern[i]
        if ch == "\\":
            if i + 1 >= n:
                raise error(f"pattern ends with a backslash: {pattern!r}")
            esc = pattern[i + 1]
            i += 2
            if esc in "dwsDWS":
                body = classes[esc.lower()]
                if in_class:
                    if esc.isupper():
                        raise error(f"\\{esc} inside a character class is not supported: {pattern!r}")
                    if pattern[i:i + 1] == "-" and pattern[i + 1:i + 2] != "]":
                        raise error(f"a range after \\{esc} in a character class is ambiguous: {pattern!r}")
                    out.append(body)
                else:
                    out.append(f"[{'^' if esc.isupper() else ''}{body}]")
            elif esc == "Z" and not in_class:
                out.append(r"\z")
            elif esc == "A" and not in_class:
                out.append(r"\A")
            elif esc in "fnrtv":
                out.append("\\" + esc)
            elif esc == "x" and _re.fullmatch(r"[0-9A-Fa-f]{2}", pattern[i:i + 2]):
                out.append("\\x" + pattern[i:i + 2])
                i += 2
            elif esc == "u" and _re.fullmatch(r"[0-9A-Fa-f]{4}", pattern[i:i + 4]):
                out.append("\\x{" + pattern[i:i + 4] + "}")
                i += 4
            elif esc.isascii() and not esc.isalnum() and esc != "_":
                out.append("\\" + esc)  # an escaped punctuation character: the character itself
            else:  # \b \B (ASCII-only in RE2), backreferences, \g, octal, unknown letters
                raise error(f"escape \\{esc} is not supported (RE2 has no such thing with re's meaning): {pattern!r}")
            continue
        if in_class:
            if ch == "]" and i > class_start:
                in_class = False
            elif ch == "[" and pattern[i + 1:i + 2] == ":":
                raise error(f"POSIX classes are not supported: {pattern!r}")
            out.append(ch)
            i += 1
            continue
        if ch == "[":
            in_class = True
            out.append(ch)
            i += 1
            if pattern[i:i + 1] == "^":
                out.append("^")
                i += 1
            class_start = i  # a "]" right here is a literal, as in re
            continue
        if ch == "(" and pattern[i + 1:i + 2] == "?":
            head = pattern[i + 2:i + 4]
            if head[:1] in ("=", "!") or head in ("<=", "<!"):
                raise error(f"lookarounds are not supported: {pattern!r}")
            if head[:1] == ">" or head == "P=":
                raise error(f"atomic groups and backreferences are not supported: {pattern!r}")
            if head[:1] not in (":", "P"):
                raise error(f"inline flags and other (? groups are not supported (use flags=): {pattern!r}")
            if head == "P<":
                added.append(False)
        elif ch == "(":
            added.append(False)
        if ch in "*+?}" and pattern[i + 1:i + 2] == "+":
            raise error(f"possessive quantifiers are not supported: {pattern!r}")
        if ch == "$" and not multiline and full:
            out.append(r"\z")  # fullmatch: a match must end at the end, so "$" before a final newline never counts
            i += 1
            continue
        if ch == "$" and not multiline:
            # The end, or before a final newline. RE2's $ is the end only: the newline is matched, in a group of
            # its own, and taken off the spans afterwards (Pattern._user_spans), so they are re's.
            out.append(r"(?:(\n)?\z)")
            added.append(True)
            i += 1
            continue
        out.append(ch)
        i += 1
    if in_class:
        raise error(f"unterminated character class: {pattern!r}")
    prefix = "".join(_FLAGS[f] for f in _FLAGS if flags & f)
    unknown = flags & ~(DOTALL | MULTILINE | IGNORECASE)
    if unknown:
        raise error(f"flags {unknown:#x} are not supported")
    return (f"(?{prefix})" if prefix else "") + "".join(out), added


def _program(text: str) -> "_re2.RE2":
    regexp = _re2.RE2(text.encode("utf-8"), _OPTIONS)
    if not regexp.ok():
        raise error(f"RE2 cannot compile {text!r}: {regexp.error()}")
    return regexp


_COMPILED: list["Pattern"] = []


def compiled() -> list["Pattern"]:
    """Every pattern compiled so far (the tests compare each with ``re``)."""
    return list(_COMPILED)


def _literal_prefix(pattern: str, flags: int) -> tuple[str, bool]:
    """The literal text every match starts with, if any (a text without it cannot match: it is answered without
    calling RE2, as CPython's re does), and whether every match starts at the start of the text (^ or \\A)."""
    out: list[str] = []
    at_start = False
    for op, av in _sre_parse.parse(pattern, flags):
        if op is _sre.AT and not out and av in (_sre.AT_BEGINNING, _sre.AT_BEGINNING_STRING, _sre.AT_BEGINNING_LINE):
            at_start = at_start or av is _sre.AT_BEGINNING_STRING or (av is _sre.AT_BEGINNING
                                                                      and not flags & MULTILINE)
            continue
        if op is not _sre.LITERAL or flags & IGNORECASE:
            break
        out.append(chr(av))
    return "".join(out), at_start


def _char_spans(data: bytes, spans: list, cursor: tuple[int, int]) -> tuple[list, tuple[int, int]]:
    """RE2's byte offsets as character offsets, counting from ``cursor`` (a byte offset and its character offset,
    at or before every offset of ``spans``): each byte of the text is counted once however many matches there are."""
    last_byte, last_char = cursor
    chars = {-1: -1}
    for offset in sorted({o for span in spans for o in span if o >= 0}):
        last_char += _re2.BytesToCharLen(data, last_byte, offset)
        last_byte = offset
        chars[offset] = last_char
    return [(chars[a], chars[b]) for a, b in spans], (last_byte, last_char)


_INLINE_FLAGS = _re.compile(r"\(\?([a-zA-Z]+)\)")
_INLINE = {"i": IGNORECASE, "m": MULTILINE, "s": DOTALL, "u": 0}  # u: what a str pattern means anyway


def _leading_flags(pattern: str) -> tuple[int, str]:
    """The flags of the global inline flag groups a pattern starts with (``(?i)``, ``(?is)``...), and the rest."""
    flags, at = 0, 0
    while pattern.startswith("(?", at):
        found = _INLINE_FLAGS.match(pattern, at)
        if found is None:
            break
        for letter in found.group(1):
            if letter not in _INLINE:
                raise error(f"inline flag {letter!r} is not supported (only i, m, s): {pattern!r}")
            flags |= _INLINE[letter]
        at = found.end()
    return flags, pattern[at:]


class Pattern:
    __slots__ = ("pattern", "flags", "groups", "groupindex", "_named", "_ascii", "_unicode", "_prefix", "_at_start",
                 "_eol", "_user", "_full")

    def __init__(self, pattern: str, flags: int = 0, full: bool = False):
        inline, body = _leading_flags(pattern)
        flags |= inline
        self.pattern, self.flags = pattern, flags
        text, added = _translate(body, flags, True, full)
        self._ascii = _program(text)
        self._unicode = _program(_translate(body, flags, False, full)[0])
        # RE2's groups: the pattern's own, and those added for "$" (self._eol); self._user maps re's group numbers
        # to RE2's.
        self._eol = tuple(index for index, is_added in enumerate(added, start=1) if is_added)
        self._user = (0, *(index for index, is_added in enumerate(added, start=1) if not is_added))
        self.groups = len(self._user) - 1
        self._full: tuple | None = None  # for fullmatch, when "$" means something else there (compiled when used)
        self.groupindex = {name.decode("utf-8"): self._user.index(index)
                           for name, index in self._ascii.NamedCapturingGroups()}
        self._named = tuple(sorted(self.groupindex.items(), key=lambda item: item[1]))
        self._prefix, self._at_start = _literal_prefix(pattern, flags)

    def __repr__(self) -> str:
        return f"linear_re.compile({self.pattern!r})"

    def _user_spans(self, spans: list) -> list:
        """RE2's spans as re's: without the groups added for "$", and ending before the final newline where a "$"
        matched before it (that newline was matched by the added group, and ends every group around the "$")."""
        for index in self._eol:
            newline, end = spans[index]
            if newline >= 0:
                spans = [(min(a, newline), newline) if b == end else (a, b) for a, b in spans]
                break
        return [spans[index] for index in self._user]

    # --- one match -------------------------------------------------------------------------------------------
    def _spans(self, anchor, text: str, pos: int = 0) -> list | None:
        if pos < 0:
            pos = 0
        if self._at_start and pos:
            return None  # ^ or \\A: only at the very start (RE2 too sees the text before pos)
        prefix = self._prefix
        if prefix and (text.find(prefix, pos) < 0 if anchor is _UNANCHORED and not self._at_start
                       else not text.startswith(prefix, pos)):
            return None
        if text.isascii():
            data = text.encode("ascii")
            size = len(data)
            if pos > size:
                return None
            spans = self._ascii.Match(anchor, data, pos, size)
            if spans[0][0] < 0:
                return None
            return self._user_spans(spans) if self._eol else spans
        if pos > len(text):
            return None
        data = text.encode("utf-8", "soc.linear_re.fffd")
        spans = self._unicode.Match(anchor, data, _re2.CharLenToBytes(data, 0, pos) if pos else 0, len(data))
        if spans[0][0] < 0:
            return None
        return _char_spans(data, self._user_spans(spans) if self._eol else spans, (0, 0))[0]

    def match(self, text: str, pos: int = 0) -> "Match | None":
        spans = self._spans(_ANCHOR_START, text, pos)
        return None if spans is None else Match(self, text, spans)

    def search(self, text: str, pos: int = 0) -> "Match | None":
        spans = self._spans(_UNANCHORED, text, pos)
        return None if spans is None else Match(self, text, spans)

    def fullmatch(self, text: str, pos: int = 0) -> "Match | None":
        if self._eol:  # the pattern has a "$": in a full match it is the end only
            if self._full is None:
                self._full = (Pattern(self.pattern, self.flags, full=True),)
            return self._full[0].fullmatch(text, pos)
        spans = self._spans(_ANCHOR_BOTH, text, pos)
        return None if spans is None else Match(self, text, spans)

    # --- every match -----------------------------------------------------------------------------------------
    def finditer(self, text: str, pos: int = 0) -> Iterator["Match"]:
        """The text is encoded once and each match searched from the end of the last: linear in the text plus the
        matches (a loop of search() calls would encode the whole text again for each match)."""
        pos = max(pos, 0)
        if self._at_start and (pos or not text.startswith(self._prefix)):
            return
        if self._prefix and text.find(self._prefix, pos) < 0:
            return
        if text.isascii():
            data = text.encode("ascii")
            size = len(data)
            program = self._ascii
            while pos <= size:
                spans = program.Match(_UNANCHORED, data, pos, size)
                if spans[0][0] < 0:
                    return
                start, stop = spans[0]  # (where the search goes on: after what RE2 matched)
                yield Match(self, text, self._user_spans(spans) if self._eol else spans)
                pos = stop if stop > start else stop + 1
            return
        if pos > len(text):
            return
        data = text.encode("utf-8", "soc.linear_re.fffd")
        size = len(data)
        program = self._unicode
        at = _re2.CharLenToBytes(data, 0, pos) if pos else 0
        cursor = (0, 0)
        while at <= size:
            spans = program.Match(_UNANCHORED, data, at, size)
            if spans[0][0] < 0:
                return
            start, stop = spans[0]
            chars, cursor = _char_spans(data, self._user_spans(spans) if self._eol else spans, cursor)
            yield Match(self, text, chars)
            at = stop if stop > start else (stop + _re2.CharLenToBytes(data, stop, 1) if stop < size else size + 1)

    def findall(self, text: str, pos: int = 0) -> list:
        if self.groups == 0:
            return [m.group(0) for m in self.finditer(text, pos)]
        if self.groups == 1:
            return [m.group(1) or "" for m in self.finditer(text, pos)]
        return [m.groups("") for m in self.finditer(text, pos)]

    def sub(self, repl: "str | Callable[[Match], str]", text: str, count: int = 0) -> str:
        expand = repl if callable(repl) else _template(repl, self)
        pieces, last, done = [], 0, 0
        for match in self.finditer(text):
            start, stop = match.span()
            pieces.append(text[last:start])
            pieces.append(expand(match))
            last = stop
            done += 1
            if count and done >= count:
                break
        if not done:
            return text
        pieces.append(text[last:])
        return "".join(pieces)

    def split(self, text: str, maxsplit: int = 0) -> list[str]:
        pieces, last, done = [], 0, 0
        for match in self.finditer(text):
            start, stop = match.span()
            pieces.append(text[last:start])
            pieces.extend(match.groups())
            last = stop
            done += 1
            if maxsplit and done >= maxsplit:
                break
        pieces.append(text[last:])
        return pieces


def _template(repl: str, pattern: Pattern) -> Callable[["Match"], str]:
    r"""A replacement string with ``\1``..``\99`` and ``\g<name>`` references (no other escapes)."""
    if "\\" not in repl:
        return lambda match: repl
    parts: list[str | int] = []
    i = 0
    while i < len(repl):
        at = repl.find("\\", i)
        if at < 0:
            parts.append(repl[i:])
            break
        parts.append(repl[i:at])
        ref = _re.match(r"\\(\d{1,2})|\\g<(\w+)>", repl[at:])
        if ref is None:
            raise error(f"only group references are supported in a replacement: {repl!r}")
        name = ref.group(1) or ref.group(2)
        parts.append(int(name) if name.isdigit() else pattern.groupindex[name])
        i = at + ref.end()
    return lambda match: "".join(p if isinstance(p, str) else (match.group(p) or "") for p in parts)


class Match:
    """What ``re.Match`` offers that the parsers use: group, groups, groupdict, start, end, span, [ ]."""

    __slots__ = ("re", "string", "_spans")

    def __init__(self, pattern: Pattern, text: str, spans: list):
        self.re, self.string, self._spans = pattern, text, spans

    def __repr__(self) -> str:
        return f"<linear_re.Match span={self.span()} match={self.group(0)!r}>"

    def _index(self, group) -> int:
        if group.__class__ is int:
            if 0 <= group <= self.re.groups:
                return group
        else:
            index = self.re.groupindex.get(group)
            if index is not None:
                return index
        raise IndexError("no such group")

    def group(self, group=0, *more):
        if more:
            return tuple(self.group(g) for g in (group, *more))
        # (inlined _index: parsers read many groups of many matches)
        index = self.re.groupindex.get(group, -1) if group.__class__ is str else group
        if index < 0:
            raise IndexError("no such group")
        start, stop = self._spans[index]
        return None if start < 0 else self.string[start:stop]

    def __getitem__(self, group):
        return self.group(group)

    def groups(self, default=None) -> tuple:
        text = self.string
        return tuple(default if start < 0 else text[start:stop] for start, stop in self._spans[1:])

    def groupdict(self, default=None) -> dict:
        text, spans = self.string, self._spans
        return {name: default if spans[index][0] < 0 else text[spans[index][0]:spans[index][1]]
                for name, index in self.re._named}

    def start(self, group=0) -> int:
        return self._spans[self._index(group)][0]

    def end(self, group=0) -> int:
        return self._spans[self._index(group)][1]

    def span(self, group=0) -> tuple[int, int]:
        return tuple(self._spans[self._index(group)])  # type: ignore[return-value]


def compile(pattern: str, flags: int = 0) -> Pattern:  # noqa: A001 (the re module's name, on purpose)
    """One of the suite's own patterns (recorded: the tests compare each with ``re``)."""
    compiled_pattern = Pattern(pattern, flags)
    _COMPILED.append(compiled_pattern)
    return compiled_pattern


@functools.lru_cache(maxsize=4096)  # patterns do not change: a silence or a condition is compiled once
def compile_runtime(pattern: str, flags: int = 0) -> Pattern:
    """A pattern someone supplies at run time (a Sigma rule's ``|re``, an analyst's matcher): RE2 as ``compile``,
    not recorded. Raises ``error`` (a ValueError) naming what RE2 cannot run with ``re``'s meaning."""
    return Pattern(pattern, flags)


_BACKTRACKING_FREE: list[tuple["_re.Pattern", str]] = []


def backtracking_free(pattern: str, why: str, flags: int = 0) -> "_re.Pattern":
    """A ``re`` pattern kept on CPython's engine because it runs many matches per line (``findall`` over every
    key=value pair), where RE2's per-call cost through Python (about 1 µs, against 0.2 µs) would multiply the parse
    time. Only for patterns written so that the engine never backtracks: every quantifier possessive or followed by
    something its class excludes, and a failed attempt consuming or skipping what it scanned, so each character is
    looked at a bounded number of times whatever the text. ``why`` says how; the timing tests
    (tests/security/test_parser_redos.py) feed these patterns their worst cases."""
    compiled_pattern = _re.compile(pattern, flags)
    _BACKTRACKING_FREE.append((compiled_pattern, why))
    return compiled_pattern


def backtracking_free_patterns() -> list[tuple["_re.Pattern", str]]:
    return list(_BACKTRACKING_FREE)


_REPEATS = (_sre.MAX_REPEAT, _sre.MIN_REPEAT, getattr(_sre, "POSSESSIVE_REPEAT", _sre.MAX_REPEAT))


def _nested_repeat(items, inside: bool = False) -> bool:
    """Whether a repetition (of more than one) sits inside another one: the shape whose backtracking multiplies."""
    for op, av in items:
        if op in _REPEATS:
            low, high, sub = av
            many = high > 1
            if many and inside:
                return True
            if _nested_repeat(sub, inside or many):
                return True
        elif op is _sre.SUBPATTERN:
            if _nested_repeat(av[-1], inside):
                return True
        elif op is _sre.BRANCH:
            if any(_nested_repeat(branch, inside) for branch in av[1]):
                return True
        elif op in (_sre.ASSERT, _sre.ASSERT_NOT):
            if _nested_repeat(av[1], inside):
                return True
        elif op is getattr(_sre, "ATOMIC_GROUP", None):
            if _nested_repeat(av, inside):
                return True
    return False


class Bounded:
    """A ``re`` pattern that can only look at the first ``width`` characters of a text: ``match`` and ``fullmatch``
    only (anchored at the start), no unbounded repetition, no repetition inside another. Its cost is bounded by the
    pattern whatever the text's length, so it stays on CPython's engine, three to five times cheaper per call
    through Python than RE2 (the syslog header's patterns run on every message)."""

    __slots__ = ("pattern", "width", "groups", "groupindex", "match", "fullmatch")

    def __init__(self, pattern: str, flags: int, max_width: int):
        tree = _sre_parse.parse(pattern, flags)
        self.width = tree.getwidth()[1]
        if self.width > max_width:
            raise error(f"{pattern!r} can match {self.width} characters or more (over {max_width}): use compile()")
        if _nested_repeat(tree):
            raise error(f"{pattern!r} repeats a repetition: use compile()")
        compiled_pattern = _re.compile(pattern, flags)
        self.pattern, self.groups, self.groupindex = pattern, compiled_pattern.groups, compiled_pattern.groupindex
        self.match, self.fullmatch = compiled_pattern.match, compiled_pattern.fullmatch

    def __repr__(self) -> str:
        return f"linear_re.bounded({self.pattern!r})"


_BOUNDED: list[Bounded] = []


def bounded(pattern: str, flags: int = 0, max_width: int = 512) -> Bounded:
    """A pattern for anchored use (``match``/``fullmatch``) whose matches are at most ``max_width`` characters long
    (checked here): see Bounded. Anything else goes through compile()."""
    pattern_object = Bounded(pattern, flags, max_width)
    _BOUNDED.append(pattern_object)
    return pattern_object


def bounded_patterns() -> list[Bounded]:
    return list(_BOUNDED)
