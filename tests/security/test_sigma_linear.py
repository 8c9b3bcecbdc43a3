"""Sigma rules take time linear in the event: no value a sender writes keeps detection busy.

*Attack demonstrated:* SigmaHQ's wildcard values were compiled to backtracking regexes (``*`` as ``.*``): one 3 KB
Winlogbeat 4688 event whose CommandLine is ``cmd.exe /C  > \\\\\\\\`` repeated froze `soc serve` (SIGTERM ignored)
and `soc hunt` with proc_creation_win_hktl_crackmapexec_execution_patterns.yml (1 KB: 2 s, 2 KB: 66 s, about n^5).

Through the real paths: that event posted to `soc serve` with an agency key (the suite goes on: a matching event
sent after it raises its alert, and SIGTERM stops the suite), and hunted from a JSON-lines file. Then every loaded
rule of SigmaHQ's rules folder and of the suite's own detections/rules, on crafted worst-case events: each field a
rule reads holds 64 KB of what its wildcards and regular expressions consume (their literals, their concatenation,
their characters; generic text for the rest), and every rule and every one of its leaves must answer each event in
under a second. The events are built from the rules, so a new rule is covered as soon as it is in a folder. The
wildcard matcher gives what the regexes gave (re's case folding included); a ``|re`` that RE2 cannot run fails to
load with the reason in rule health; the scheduled SQLite REGEXP is linear too.
"""

from __future__ import annotations

import json
import random
import re
import time
from re import _constants as sre
from re import _parser as sre_parse

import httpx
import pytest

from detections.engine import DetectionEngine
from detections.hunt import hunt
from detections.scheduled import _regexp
from detections.sigma.compiler import FOLD_RANGE, compile_ir, fold_like_re, ir_fields
from detections.sigma.loader import load_rules
from detections.sigma.placeholders import placeholder_values
from inventory.lookup import Inventory
from tests.conftest import CORPUS, PROJECT, wait_until
from tests.ingest_samples import WINLOGBEAT_4688
from tests.security.suite_process import suite_process
from tests.security.timing import GUARD_SECONDS, LIMIT_SECONDS, Runaway, cpu_guard, too_slow

SIGMAHQ_RULES = CORPUS / "sigmahq" / "rules"
OWN_RULES = PROJECT / "detections" / "rules"
CME = SIGMAHQ_RULES / "windows" / "process_creation" / "proc_creation_win_hktl_crackmapexec_execution_patterns.yml"
CME_ID = "058f4380-962d-40a5-afce-50207d36d7e2"
UNIT = "cmd.exe /C  > \\\\\\\\"  # the demonstrated CommandLine, repeated
REAL_CME = "cmd.exe /C whoami > \\\\127.0.0.1\\ADMIN$\\__1712345678.12 2>&1"
SIZE = 64 * 1024
GENERIC = ["a", " ", "\\", "é"]  # for rules without wildcards or regexes
MAX_UNITS = 16  # crafted values per rule
MAX_SLOW = 10  # stop after this many slow cases (before the fix, each costs GUARD_SECONDS)
PLAIN = ("eq", "contains", "startswith", "endswith")


def _event_4688(command_line: str, record: int) -> dict:
    event = json.loads(json.dumps(WINLOGBEAT_4688))
    event["winlog"]["event_data"]["CommandLine"] = command_line
    event["winlog"]["record_id"] = str(record)
    return event


# --- the demonstrated event, through the real paths -------------------------------------------------------------------
def test_the_crackmapexec_event_does_not_freeze_soc_serve(tmp_path):
    env = {"SOC__DETECTIONS__SIGMA_RULE_DIRS": json.dumps([str(CME)])}
    with suite_process(tmp_path, keys=[("agency", "so-tttt"), ("analyst", None)], env=env) as (served, keys):
        agency, analyst = keys
        ingest = httpx.Client(base_url=served.api, timeout=10,
                              headers={"X-API-Key": agency, "Content-Type": "application/x-ndjson"})
        crafted = UNIT * (3000 // len(UNIT))
        sent = ingest.post("/api/v1/ingest", content=json.dumps(_event_4688(crafted, 1)) + "\n")
        assert sent.status_code == 202, sent.text
        # Before the fix the suite froze on the first event (the GIL held by re): this request timed out.
        sent = ingest.post("/api/v1/ingest", content=json.dumps(_event_4688(REAL_CME, 2)) + "\n")
        assert sent.status_code == 202, sent.text

        def alert():
            found = httpx.get(f"{served.api}/api/v1/alerts", headers={"X-API-Key": analyst}, timeout=10).json()
            return [a for a in found["alerts"] if a["rule"]["id"] == CME_ID]

        assert wait_until(alert, timeout=30), "the rule did not fire on the real CrackMapExec command line"
        assert served.metric("soc_events_stored_total", store="sqlite") == 2


def test_the_crackmapexec_event_does_not_hold_a_hunt(tmp_path):
    events = tmp_path / "winlogbeat.ndjson"
    lines = [_event_4688(UNIT * (size // len(UNIT)), size) for size in (1000, 3000, SIZE)]
    events.write_text("\n".join(json.dumps(e) for e in lines + [_event_4688(REAL_CME, 1)]) + "\n")
    engine = DetectionEngine(load_rules([CME]))
    errors: list = []
    started = time.perf_counter()
    try:
        with cpu_guard(GUARD_SECONDS):
            hits = [event for rule, event in hunt(engine, [events], errors)]
    except Runaway:
        pytest.fail(f"the hunt was still matching after {GUARD_SECONDS} s of CPU")
    took = time.perf_counter() - started
    assert not errors and len(hits) == 1 and took < LIMIT_SECONDS, (errors, len(hits), took)


# --- every rule, on events built from it ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ruleset():
    inventory = Inventory.load(PROJECT / "inventory" / "sample" / "province.yaml")  # the default inventory
    return load_rules([SIGMAHQ_RULES, OWN_RULES], cache_dir=PROJECT / ".cache" / "test-sigma",
                      placeholders=placeholder_values(inventory, {}))


def _leaves(node: tuple) -> list[tuple]:
    if node[0] in ("field", "keyword"):
        return [node]
    if node[0] == "not":
        return _leaves(node[1])
    return [leaf for child in node[1] for leaf in _leaves(child)]


def _specs(spec: tuple) -> list[tuple]:
    return [s for inner in spec[1] for s in _specs(inner)] if spec[0] == "any" else [spec]


def _hidden(leaf: tuple) -> bool:
    """A leaf the rule's condition may never reach (an AND or a NOT decided before it) that is not a plain string
    test: plain ones are str methods and Aho-Corasick (linear by construction; a rule can have thousands, all
    evaluated at once by the predicate); the others (wildcards, regexes, anything added later) are timed one by one."""
    return not all(spec[0] in PLAIN for spec in _specs(leaf[-1]))


def _regex_pieces(pattern: str, flags: int) -> tuple[list[str], set[str]]:
    """The literal runs of a regular expression and the characters it consumes (one for each class)."""
    runs: list[str] = []
    chars: set[str] = set()

    def walk(items) -> None:
        run: list[str] = []
        for op, av in items:
            if op is sre.LITERAL:
                run.append(chr(av))
                continue
            if run:
                runs.append("".join(run))
                run = []
            if op is sre.IN:
                negated = any(o is sre.NEGATE for o, _ in av)
                for o, a in av:
                    if o is sre.LITERAL and not negated:
                        chars.add(chr(a))
                    elif o is sre.RANGE and not negated:
                        chars.update({chr(a[0]), chr(a[1])})
                    elif o is sre.CATEGORY:
                        chars.add({"CATEGORY_DIGIT": "1", "CATEGORY_SPACE": " "}.get(str(a), "a"))
                if negated:
                    chars.update({"a", " ", "é"})
            elif op is sre.ANY:
                chars.add("a")
            elif op in (sre.MAX_REPEAT, sre.MIN_REPEAT, getattr(sre, "POSSESSIVE_REPEAT", sre.MAX_REPEAT)):
                walk(av[2])
            elif op is sre.SUBPATTERN:
                walk(av[-1])
            elif op is sre.BRANCH:
                for branch in av[1]:
                    walk(branch)
        if run:
            runs.append("".join(run))

    walk(sre_parse.parse(pattern, flags))
    chars.update(c for r in runs for c in r)
    return runs, chars


def _units(rule) -> list[str]:
    """What the rule's wildcards and regexes consume, most dangerous first: the concatenation of their literals (the
    demonstrated shape: every literal but the last, over and over), each literal, each character."""
    whole: list[str] = []
    pieces: list[str] = []
    chars: set[str] = set()
    for leaf in _leaves(rule.ir):
        for spec in _specs(leaf[-1]):
            if spec[0] == "wild":
                literals = list(spec[3])
            elif spec[0] == "re":
                literals, found = _regex_pieces(spec[1], spec[2])
                chars |= found
            else:
                continue
            whole += ["".join(literals[:-1]), "".join(literals)]
            pieces += literals
            chars |= {c for literal in literals for c in literal}
    if not whole:
        return GENERIC
    units = list(dict.fromkeys(u for u in whole + pieces + sorted(chars) if u))
    return units[:MAX_UNITS]


def test_every_rule_answers_crafted_64kb_events_within_a_second(ruleset):
    rules = ruleset.rules
    assert len(rules) >= 3000 and any("detections/rules" in r.meta.path for r in rules)
    slow: list[str] = []
    timings: list[float] = []
    for rule in rules:
        leaves = [compile_ir(leaf) for leaf in _leaves(rule.ir) if _hidden(leaf)]
        fields = sorted(ir_fields(rule.ir))

        def evaluate(event: dict) -> None:
            rule.predicate(event)
            for leaf in leaves:  # whatever the condition would have short-circuited
                leaf(event)

        for unit in _units(rule):
            value = unit * (SIZE // len(unit))
            event = dict.fromkeys(fields, value)
            started = time.perf_counter()
            took = too_slow(evaluate, event)
            timings.append(time.perf_counter() - started)
            if took is not None:
                slow.append(f"{rule.meta.path} {unit!r}: {took:.2f} s")
                if len(slow) >= MAX_SLOW:
                    break
        if len(slow) >= MAX_SLOW:
            break
    assert not slow, f"over {LIMIT_SECONDS} s:\n" + "\n".join(slow)
    assert len(timings) > len(rules)  # rules with wildcards or regexes got events of their own


# --- the wildcard matcher gives what the regexes gave ---------------------------------------------------------------
def test_wildcards_match_as_the_regexes_did():
    """Random wildcards (literals with the characters where case folding is special, "*", "?") against
    re.fullmatch of the regex they used to be, on short texts (where re is cheap), cased and not."""
    rnd = random.Random(7)
    alphabet = ["a", "b", "A", "\\", " ", "\n", "ı", "I", "İ", "ſ", "S", "s", "K", "k", "\u212a", "ß", "é", "É",
                "Σ", "σ", "ς", "µ", "Μ", "\u0345", "ι"]
    for _ in range(3000):
        parts = [rnd.choice(["*", "?", "".join(rnd.choices(alphabet, k=rnd.randint(1, 3)))])
                 for _ in range(rnd.randint(0, 6))]
        cased = rnd.random() < 0.2
        segments: list[list] = [[]]
        for part in parts:
            if part == "*":
                segments.append([])
            elif part == "?":
                segments[-1].append(None)
            elif segments[-1] and isinstance(segments[-1][-1], str):
                segments[-1][-1] += part
            else:
                segments[-1].append(part)
        regex = re.compile("".join(".*" if p == "*" else "." if p == "?" else re.escape(p) for p in parts),
                           re.DOTALL | (0 if cased else re.IGNORECASE))
        ours = compile_ir(("field", "f", ("wild", tuple(map(tuple, segments)), cased, ())))
        for _ in range(10):
            text = "".join(rnd.choices(alphabet, k=rnd.randint(0, 9)))
            if rnd.random() < 0.5:  # something close to a match
                text = "".join("".join(rnd.choices(alphabet, k=rnd.randint(0, 2))) if p == "*" else
                               rnd.choice(alphabet) if p == "?" else rnd.choice([p, p.upper(), p.lower()])
                               for p in parts)
            assert ours({"f": text}) is (regex.fullmatch(text) is not None), (parts, cased, text)


def test_case_folding_is_res_on_every_code_point():
    """The fold table covers every character re's IGNORECASE takes for another (none from FOLD_RANGE on), and a
    folded literal finds exactly what re finds, for every ASCII letter and every character with a special fold."""
    import _sre
    from re._casefix import _EXTRA_CASES

    assert all(_sre.unicode_tolower(code) == code and code not in _EXTRA_CASES
               for code in range(FOLD_RANGE, 0x110000))
    every = "".join(chr(code) for code in range(0x110000) if not 0xD800 <= code < 0xE000)
    folded = fold_like_re(every)
    assert len(folded) == len(every)
    special = {*range(0x41, 0x5B), *_EXTRA_CASES, *(c for cases in _EXTRA_CASES.values() for c in cases), 0x130,
               0x212A, 0x3A3}
    for code in sorted(special):
        needle, theirs = fold_like_re(chr(code)), [m.start() for m in re.finditer(re.escape(chr(code)), every, re.I)]
        ours, at = [], folded.find(needle)
        while at >= 0:
            ours.append(at)
            at = folded.find(needle, at + 1)
        assert ours == theirs, hex(code)


# --- |re on RE2: what it cannot run is a rule that does not load ----------------------------------------------------
RULE = """title: Crafted
id: {id}
status: test
logsource:
    product: linux
    service: sshd
detection:
    selection:
        message|re{flags}: '{pattern}'
    condition: selection
level: low
"""


def test_a_regex_re2_cannot_run_fails_to_load_with_the_reason(tmp_path):
    cases = {"11111111-0000-0000-0000-000000000001": ("\\bpassword\\b", ""),
             "11111111-0000-0000-0000-000000000002": ("(a)\\1", ""),
             "11111111-0000-0000-0000-000000000003": ("(?i)fail(ed)? pass", ""),
             "11111111-0000-0000-0000-000000000004": ("FAILED PASS", "|i")}
    for rule_id, (pattern, flags) in cases.items():
        (tmp_path / f"{rule_id}.yml").write_text(RULE.format(id=rule_id, flags=flags, pattern=pattern))
    ruleset = load_rules([tmp_path])
    health = {h.id: h for h in ruleset.health}
    for rule_id in list(cases)[:2]:
        assert health[rule_id].status == "failed" and "linear time" in health[rule_id].reason, health[rule_id]
    loaded = {r.meta.id: r for r in ruleset.rules}
    for rule_id in list(cases)[2:]:
        assert health[rule_id].status == "loaded", health[rule_id]
        assert loaded[rule_id].predicate({"message": "sshd: Failed password for root"})
        assert too_slow(loaded[rule_id].predicate, {"message": "fail" * SIZE}) is None


def test_the_scheduled_regexp_is_linear_and_never_backtracks():
    assert _regexp("(?i)failed pass", "sshd: FAILED password") is True
    assert _regexp("x", None) is False
    assert _regexp("\\bword", "word") is None  # unknown (SQL NULL): neither it nor its negation selects a row
    for pattern in ("(a|aa)*c", "(a+)+b", "(.*a){12}x"):
        assert too_slow(_regexp, pattern, "a" * SIZE) is None


def test_long_repetitive_values_in_a_rule_cost_linear_time(tmp_path):
    """A rule pack's rule with long, self-repeating "contains" values (4,000 "a" then a letter): pyahocorasick walks
    a failure chain as long as the value at every character, so in one automaton (the rule's OR of values, and the
    engine's literal prefilter) 64 KB of "a" cost half a second per field and event. Long values are searched one by
    one and the prefilter keys on their first 64 characters (detections/sigma/compiler.py, engine.py)."""
    values = "\n".join(f"            - '{'a' * 4000}{letter}'" for letter in "bcdefgh")
    (tmp_path / "long.yml").write_text(
        "title: long values\nid: 5c0ffee0-0000-4000-8000-000000000001\nstatus: test\n"
        "logsource: {product: windows, category: process_creation}\n"
        f"detection:\n    selection:\n        CommandLine|contains:\n{values}\n    condition: selection\n"
        "level: high\n")
    ruleset = load_rules([tmp_path], cache_dir=None)
    assert ruleset.loaded == 1, [h.reason for h in ruleset.health]
    engine = DetectionEngine(ruleset)
    view = {"EventID": 1, "Channel": "Microsoft-Windows-Sysmon/Operational", "CommandLine": "a" * SIZE}
    key = ("windows", "microsoft-windows-sysmon/operational", 1)
    took = too_slow(lambda: [engine.match(view, key) for _ in range(5)])
    assert took is None, f"five 64 KB events took {took:.2f} s"
    assert [r.meta.title for r in engine.match(dict(view, CommandLine="x" + "a" * 4000 + "f"), key)] == ["long values"]
