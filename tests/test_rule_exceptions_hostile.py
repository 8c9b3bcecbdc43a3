"""The rule exceptions file is input the suite reads at start and whenever it changes: a hostile one (huge, deeply
nested, an alias bomb, too many entries, values built to be slow) is refused quickly with the reason, or matched in
linear time; it never hangs or crashes the reader."""

from __future__ import annotations

import time

import pytest

from detections.engine import DetectionEngine
from detections.exceptions import MAX_ENTRIES, MAX_FILE_BYTES, ExceptionsError, load_exceptions, parse_exceptions
from detections.sigma.loader import load_rules
from tests.conftest import PROJECT

QUICK = 2.0  # seconds: each hostile file is refused (or read) well within this


def _refused(tmp_path, text: str | bytes) -> ExceptionsError:
    path = tmp_path / "exceptions.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    started = time.monotonic()
    with pytest.raises(ExceptionsError) as caught:
        load_exceptions(path)
    assert time.monotonic() - started < QUICK
    return caught.value


def test_a_file_over_the_size_limit_is_refused_unread(tmp_path):
    error = _refused(tmp_path, b"# " + b"x" * (MAX_FILE_BYTES + 10))
    assert "larger than" in error.reason


def test_deep_nesting_is_an_error_not_a_crash(tmp_path):
    for text in ("exceptions: " + "[" * 200_000, "exceptions:\n" + "".join(" " * i + "- \n" for i in range(1, 1200))):
        error = _refused(tmp_path, text[:MAX_FILE_BYTES])
        assert error.reason


def test_an_alias_bomb_is_refused(tmp_path):
    laughs = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for n in range(1, 12):
        laughs.append(f"a{n}: &a{n} [" + ", ".join([f"*a{n - 1}"] * 9) + "]")
    text = "\n".join(laughs) + ("\nexceptions:\n  - rule: r\n    reason: x\n    author: y\n"
                                "    match: {CommandLine: *a11}\n")
    assert "aliases" in _refused(tmp_path, text).reason


def test_too_many_entries_or_values_are_refused(tmp_path):
    entries = "".join(f"  - {{rule: r{i}, reason: x, author: y, agencies: [a]}}\n" for i in range(MAX_ENTRIES + 1))
    assert "exceptions" in _refused(tmp_path, "exceptions:\n" + entries).key
    values = "[" + ", ".join(f"v{i}" for i in range(1001)) + "]"
    assert "1000" in _refused(tmp_path, f"exceptions:\n  - {{rule: r, reason: x, author: y, match: {{a: {values}}}}}\n"
                              ).reason
    assert "4096" in _refused(tmp_path, "exceptions:\n  - {rule: r, reason: x, author: y, match: {a|contains: "
                              + "x" * 5000 + "}}\n").reason


def test_binary_or_non_utf8_content_is_refused(tmp_path):
    assert "UTF-8" in _refused(tmp_path, b"exceptions:\n  - rule: \xff\xfe\n").reason


def test_matching_the_largest_allowed_values_against_a_64kb_event_is_linear(tmp_path):
    """Values built against the text (long near-misses) cost a string search each, not a backtracking match."""
    rules = load_rules([PROJECT / "detections" / "rules" / "linux" / "ssh_failed_login.yml"])
    near_miss = "a" * 4000 + "b"
    entries = "".join(
        f"  - rule: soc_ssh_failed_login\n    reason: r{i}\n    author: x\n    match:\n"
        f"      message|contains: [{', '.join([near_miss + str(j) for j in range(40)])}]\n"
        f"      message|endswith: [{near_miss}]\n" for i in range(5))
    exceptions = parse_exceptions("exceptions:\n" + entries, "hostile")
    engine = DetectionEngine(rules, exceptions=exceptions)
    doc = {"@timestamp": "2026-11-22T10:00:00Z", "event": {"dataset": "system.auth", "action": "ssh_login",
                                                          "outcome": "failure"}, "process": {"name": "sshd"},
           "message": "a" * 64 * 1024, "organization": {"id": "so-a"}}
    from detections.sigma.logsource import view_of

    view, key = view_of(doc)
    started = time.monotonic()
    for _ in range(10):
        assert [r.meta.name for r in engine.match(view, key)] == ["soc_ssh_failed_login"]
    assert time.monotonic() - started < QUICK


def _largest(entry, count: int = MAX_ENTRIES) -> str:
    """As many entries as the size limit allows (``entry``: formatted with, or called with, the entry's number)."""
    lines, size = ["exceptions:\n"], len("exceptions:\n")
    for i in range(count):
        line = entry(i) if callable(entry) else entry.format(i=i)
        if size + len(line.encode()) > MAX_FILE_BYTES:
            break
        lines.append(line)
        size += len(line.encode())
    return "".join(lines)


LARGEST_FILES = {
    # red team, MEDIUM 5: 126 entries of 1,000 short values (4.5 s a match, matched value by value)
    "1000 values an entry": "  - {{rule: r, reason: x, author: y, match: {{CommandLine|contains: ["
                            + ", ".join(f"z{{i}}v{n}" for n in range(1000)) + "]}}}}\n",
    # 10,000 entries of one value each: one search per entry was half a second a match
    "one value an entry": "  - {{rule: r, reason: x, author: y, match: {{CommandLine|contains: z{i}q}}}}\n",
    "all modifiers": "  - {{rule: r, reason: x, author: y, match: {{CommandLine|startswith: [z{i}a, z{i}b], "
                     "CommandLine|endswith: [z{i}c, z{i}d], CommandLine: z{i}e, Image|contains: [z{i}f, q]}}}}\n",
    # values that overlap themselves, for an automaton that walks its failure links at every character
    "self-overlapping": "  - {{rule: r, reason: x, author: y, match: {{CommandLine|contains: ["
                        + "a" * 60 + "b{i}, " + "a" * 64 + "c{i}, " + "a" * 64 + "d{i}]}}}}\n",
    # "a", "aa", "aaa"...: every value ending at a character is reported there
    "values that end one another": lambda i: ("  - {rule: r, reason: x, author: y, match: {CommandLine|contains: "
                                              f"[b{i}, {'a' * (i % 64 + 1)}], Image: never}}}}\n"),
}


@pytest.mark.parametrize("shape", LARGEST_FILES.values(), ids=LARGEST_FILES.keys())
def test_a_match_against_the_largest_allowed_file_stays_under_a_second(shape):
    """A match costs a read of each field an exception names (all the file's values for that field at once), not a
    search per value or per entry, whatever the file holds within its limits."""
    import random

    exceptions = parse_exceptions(_largest(shape), "largest")
    assert len(exceptions) > 100
    rng = random.Random(5)
    texts = ["".join(rng.choice("abcdefghijklmnopqrstuvwxy0123456789 ") for _ in range(64 * 1024)),
             "a" * 64 * 1024]
    exceptions.covering("r", None, {"CommandLine": "warm", "Image": "x"}, None)  # built once, at the first match
    for text in texts:
        started = time.monotonic()
        assert exceptions.covering("r", None, {"CommandLine": text, "Image": "q" + text}, None) is None
        assert time.monotonic() - started < 1.0, shape[:60]


def test_matching_all_entries_at_once_agrees_with_matching_one_at_a_time():
    """The grouped match (``covering``) and each entry's own (``covers``) say the same on random events."""
    import random

    rng = random.Random(11)
    alphabet = "abc"
    words = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 4))) for _ in range(60)]
    modifiers = ["", "|contains", "|startswith", "|endswith"]
    entries = []
    for _ in range(40):
        match = {}
        for field in rng.sample(["A", "B", "C"], rng.randint(1, 3)):
            values = rng.sample(words, rng.randint(1, 8)) + ([None] if rng.random() < 0.1 else [])
            modifier = rng.choice(modifiers) if None not in values else ""
            match[field + modifier] = values
        entries.append({"rule": "r", "reason": "x", "author": "y", "match": match})
    import json

    exceptions = parse_exceptions(json.dumps({"exceptions": entries}), "random")
    for _ in range(2000):
        view = {field: ("".join(rng.choice(alphabet) for _ in range(rng.randint(0, 8))) if rng.random() < 0.8
                        else [rng.choice(words), rng.choice(words)])
                for field in ("A", "B", "C") if rng.random() < 0.9}
        one_by_one = next((e for e in exceptions.entries if e.covers(view, None)), None)
        assert exceptions.covering("r", None, view, None) is one_by_one, view


def test_a_computer_name_matches_only_whole():
    """Red team, MEDIUM 6: any sender writes the computer's name; a short name used to match the first label of a
    longer one (``PATCH-01.evil.lan`` was ``PATCH-01``)."""
    exceptions = parse_exceptions("exceptions:\n  - {rule: r, reason: x, author: y, computers: [PATCH-01, "
                                  "srv-02.corp.example]}\n", "computers")
    for name, covered in (("PATCH-01", True), ("patch-01", True), ("PATCH-01.evil.lan", False),
                          ("PATCH-01.corp.example", False), ("srv-02.corp.example", True), ("SRV-02", False)):
        assert (exceptions.covering("r", None, {"Computer": name}, None) is not None) is covered, name
