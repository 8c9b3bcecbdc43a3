"""soc/linear_re.py gives what CPython's re gives, for every pattern the parsers compile with it.

Each pattern is run through both engines (RE2 behind linear_re, and re on the same pattern string) on records of
every format cut at separators, on random strings made of the pattern's own words and separators, and on text with
the characters where the two engines' defaults differ (Unicode digits and spaces, \\v and \\x1c-\\x1f, a final
newline, a lone surrogate); ``match``, ``search``, ``fullmatch`` and ``findall`` must agree, group by group. The
texts are short, so re's backtracking stays cheap here.
"""

from __future__ import annotations

import random
import re

import pytest

from soc import linear_re
from collectors.parsers.registry import all_parsers

all_parsers()  # every parser module imported: their patterns are compiled
PATTERNS = linear_re.compiled()
SPECIAL = ["\u0663", "\u3000", "\xa0", "\x0b", "\x1c", "\x85", "\u2028", "\n", "\t", "\r", "\ud800", "é", "_", "ß"]


@pytest.fixture(scope="module")
def corpus_pieces() -> list[str]:
    try:
        from tests.test_parser_accuracy import fixture_text, load_cases

        texts = [fixture_text(case.raw, case.fmt) for case in load_cases() if isinstance(case.raw, str)]
    except Exception:
        texts = []
    pieces = []
    for text in texts:
        for at in [0] + [i + 1 for i, ch in enumerate(text) if ch in " =:,[(\"'<%"][:40]:
            pieces.append(text[at:at + 200])
    return pieces


def _words(pattern: str) -> list[str]:
    return re.findall(r"[A-Za-z]{2,}|[ =:,;/()\[\]<>\"'%#.@|{}-]", pattern.replace("\\", "")) or ["a"]


def _texts(pattern: str, pieces: list[str], rnd: random.Random) -> list[str]:
    words = _words(pattern) + ["1", "42", "10.0.0.1", "a", " ", "  ", "-", *SPECIAL]
    texts = [""] + rnd.sample(pieces, min(len(pieces), 250))
    for _ in range(250):
        texts.append("".join(rnd.choice(words) for _ in range(rnd.randint(1, 14))))
    for text in list(texts[:60]):  # the same with the engines' differences mixed in
        if text:
            at = rnd.randrange(len(text))
            texts.append(text[:at] + rnd.choice(SPECIAL) + text[at:])
            texts.append(text + "\n")
            texts.append(text.replace(" ", rnd.choice(["\u3000", "\xa0", "\x0b", "\t"])))
            texts.append(re.sub(r"\d", "\u0663", text))
    return texts


def _outcome(result):
    if result is None:
        return None
    return result.span(), result.groups(), result.groupdict()


@pytest.mark.parametrize("index", range(len(PATTERNS)), ids=[p.pattern[:40] for p in PATTERNS])
def test_each_pattern_agrees_with_re(index, corpus_pieces):
    ours = PATTERNS[index]
    theirs = re.compile(ours.pattern, ours.flags)
    assert ours.groups == theirs.groups and ours.groupindex == dict(theirs.groupindex)
    rnd = random.Random(index)
    for text in _texts(ours.pattern, corpus_pieces, rnd):
        for op in ("match", "search", "fullmatch"):
            assert _outcome(getattr(ours, op)(text)) == _outcome(getattr(theirs, op)(text)), (op, text)
        assert ours.findall(text) == theirs.findall(text), ("findall", text)


def test_classes_mean_what_they_mean_in_re():
    for cls in (r"\d", r"\D", r"\w", r"\W", r"\s", r"\S", r"[\w.\-]", r"[^\s/()]", r"[^\]\s]", "."):
        ours, theirs = linear_re.compile(cls), re.compile(cls)
        for code in [*range(0x3001), *range(0xFE00, 0x10000), *range(0x1D7C0, 0x1D800)]:
            char = chr(code)
            assert (ours.fullmatch(char) is None) == (theirs.fullmatch(char) is None), (cls, hex(code))


def test_dollar_z_surrogates_offsets_and_sub():
    assert linear_re.compile(r"a$").search("xa\n").span() == (1, 2)  # $ before a final newline, as in re
    assert linear_re.compile(r"a$").search("a\nb") is None
    assert linear_re.compile(r"a\Z").search("xa\n") is None
    lone = linear_re.compile(r"x(.)y(\S+)").search("ééx\ud800y\u0663\u0663 z")
    assert lone.group(1) == "\ud800" and lone.group(2) == "\u0663\u0663" and lone.span() == (2, 7)
    assert linear_re.compile(r"\\(.)").sub(r"\1", "a\\=b\\\\c") == "a=b\\c"
    assert linear_re.compile(r"é(\d)").sub(lambda m: m.group(1) * 2, "éé1ü é2") == "é11ü 22"
    assert [m.span() for m in linear_re.compile(r"é+").finditer("aéébéc")] == [(1, 3), (4, 5)]


@pytest.mark.parametrize("pattern", [r"a(?=b)", r"(?<=a)b", r"(?!x)y", r"(a)\1", r"a*+", r"(?>a)", r"\bword",
                                     r"(?i:x)", r"(?x)a b", r"(?a)\w", r"[\S-z]", r"\g<1>"])
def test_what_re2_cannot_do_alike_is_refused(pattern):
    with pytest.raises(linear_re.error):
        linear_re.compile_runtime(pattern)


@pytest.mark.parametrize("pattern", [r"(?i)ab$", r"(?s)a.b", r"(?m)^b$", r"(?is)A.B", r"(?i)(?s)a.b", r"(?u)\w+"])
def test_leading_inline_flags_are_the_flags_they_name(pattern):
    """Sigma |re values and analysts' matchers start with (?i) often; re allows global flags only there."""
    ours, theirs = linear_re.compile_runtime(pattern), re.compile(pattern)
    assert ours.flags & ~re.UNICODE == theirs.flags & ~re.UNICODE
    for text in ("ab", "AB\n", "a\nb", "A\nB", "x\nb\ny", "é_1", ""):
        for op in ("match", "search", "fullmatch"):
            assert _outcome(getattr(ours, op)(text)) == _outcome(getattr(theirs, op)(text)), (op, text)
    assert all(p is not ours for p in linear_re.compiled())  # run-time patterns are not recorded


def test_bounded_patterns_are_anchored_and_short():
    assert linear_re.bounded_patterns(), "the syslog header's patterns are bounded ones"
    for pattern in linear_re.bounded_patterns():
        assert pattern.width <= 512
        assert not hasattr(pattern, "search") and not hasattr(pattern, "findall")
    with pytest.raises(linear_re.error):
        linear_re.bounded(r"<(\d+)>")  # unbounded
    with pytest.raises(linear_re.error):
        linear_re.bounded(r"(?:a{1,9}){1,9}")  # a repetition repeated


def test_backtracking_free_patterns_are_the_two_key_scanners():
    kept = [pattern.pattern for pattern, why in linear_re.backtracking_free_patterns()]
    assert len(kept) == 2 and all(why for _, why in linear_re.backtracking_free_patterns()), kept
