"""Bad input never crashes a parser: random and mutated lines (fixture lines with bytes flipped, cut short or
spliced) may only raise collectors.message.ParseError, and through the real pipeline every rejected line comes out
as a dead letter with its reason (never ``internal_error``, which would mean a parser bug).

Example counts are bounded so the whole file runs in a few seconds.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collectors.message import ParseError, RawMessage
from collectors.parsers.registry import ParseContext, all_parsers, parse_record
from tests.test_parser_accuracy import fixture_text, load_cases

CTX = ParseContext(zone=timezone.utc, received=datetime(2026, 11, 22, 9, 0, tzinfo=timezone.utc))
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow],
                derandomize=True)

_CASES = load_cases()
SEEDS: dict[str, list[str]] = {}
for _case in _CASES:
    spec = all_parsers()[_case.fmt]
    text = json.dumps(_case.raw) if spec.carrier == "json" else fixture_text(_case.raw, _case.fmt)
    if text:
        SEEDS.setdefault(_case.fmt, []).append(text)
# JSON shapes with no Elastic fixture in the corpus: the ingest tests' samples (as the agents send them) seed them.
from tests.ingest_samples import NXLOG_4688, OSQUERY_EVENT, OSQUERY_SNAPSHOT, ecs_doc, nxlog_4625  # noqa: E402

SEEDS.setdefault("nxlog_windows", []).extend(json.dumps(d) for d in (nxlog_4625(3), NXLOG_4688))
SEEDS.setdefault("osquery", []).extend(json.dumps(d) for d in (OSQUERY_EVENT, OSQUERY_SNAPSHOT))
SEEDS.setdefault("ecs", []).append(json.dumps(ecs_doc("seed", claim="so-yt")))
SEEDS.setdefault("windows_eventlog", []).append(json.dumps({
    "@timestamp": "2024-05-02T02:14:07.512Z", "event": {"code": "7045", "kind": "event"},
    "winlog": {"channel": "System", "event_id": "7045", "provider_name": "Service Control Manager",
               "computer_name": "PC-KT-07", "record_id": "1200",
               "event_data": {"ServiceName": "PSEXESVC", "ImagePath": "%SystemRoot%\\PSEXESVC.exe",
                              "ServiceType": "user mode service", "StartType": "demand start"}}}))
FORMATS = sorted(all_parsers())


@st.composite
def mutated(draw, seeds: list[str]) -> str:
    """A fixture record with a few edits: flipped characters, a cut, a splice of junk or of another record."""
    text = draw(st.sampled_from(seeds))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "delete", "splice"]))
        pos = draw(st.integers(0, max(len(text) - 1, 0)))
        if kind == "flip" and text:
            text = text[:pos] + draw(st.characters(blacklist_categories=("Cs",))) + text[pos + 1:]
        elif kind == "cut":
            text = text[:pos]
        elif kind == "insert":
            text = text[:pos] + draw(st.sampled_from(['"', "=", "|", ":", "/", "[", "]", " ", "\\", "{", "'",
                                                      "999999999999999999999", "-1", "%ASA-", "IN= OUT="])) + text[pos:]
        elif kind == "delete":
            end = draw(st.integers(pos, min(len(text), pos + 20)))
            text = text[:pos] + text[end:]
        else:
            other = draw(st.sampled_from(seeds))
            text = text[:pos] + other[draw(st.integers(0, max(len(other) - 1, 0))):]
    return text


def _parse_only_parse_errors(fmt: str, text: str) -> None:
    try:
        doc = parse_record(text, fmt, CTX)
    except ParseError as exc:
        assert exc.kind and str(exc)
        return
    assert doc["event"]["dataset"] and doc["@timestamp"] is not None
    json.dumps(doc, default=str)  # what the stores and `soc parse` serialise must serialise


@pytest.mark.parametrize("fmt", FORMATS)
def test_mutated_fixture_records_raise_only_parse_errors(fmt):
    seeds = SEEDS.get(fmt) or SEEDS["cisco_asa"]

    @FUZZ
    @given(mutated(seeds))
    def check(text):
        _parse_only_parse_errors(fmt, text)

    check()


@pytest.mark.parametrize("fmt", FORMATS + ["auto"])
def test_random_text_raises_only_parse_errors(fmt):
    @FUZZ
    @given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=300))
    def check(text):
        _parse_only_parse_errors(fmt, text)

    check()


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                        max_size=3), max_leaves=10)


@pytest.mark.parametrize("fmt", [name for name, spec in sorted(all_parsers().items()) if spec.carrier == "json"])
def test_winlogbeat_documents_with_wrong_shapes_raise_only_parse_errors(fmt):
    """Fields of a real Winlogbeat document replaced by values of other types (lists, numbers, nulls)."""
    base = json.loads(SEEDS[fmt][0])

    @FUZZ
    @given(st.lists(st.tuples(st.sampled_from(["winlog", "event_data", "top"]), st.text(max_size=12), JSON_VALUES),
                    max_size=5))
    def check(edits):
        doc = json.loads(json.dumps(base))
        for where, key, value in edits:
            target = doc if where == "top" else doc.get("winlog") if where == "winlog" else \
                (doc.get("winlog") or {}).get("event_data")
            if isinstance(target, dict):
                target[key or "event_id"] = value
        _parse_only_parse_errors(fmt, json.dumps(doc))

    check()


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    from collectors.pipeline import Pipeline, build_context
    from inventory.lookup import Inventory
    from tests.conftest import make_settings

    settings_ = make_settings(tmp_path_factory.mktemp("fuzz"))
    return Pipeline(build_context(settings_, Inventory.load(settings_.inventory.path)))


SYSLOG_SEEDS = [text for fmt, texts in SEEDS.items() if all_parsers()[fmt].carrier == "syslog" for text in texts]


def test_mutated_lines_through_the_pipeline_become_events_or_dead_letters_with_reasons(pipeline):
    @settings(max_examples=40, deadline=None, derandomize=True)
    @given(st.lists(st.tuples(st.sampled_from(["<134>", "<13>", "", "<999>"]), mutated(SYSLOG_SEEDS)),
                    min_size=1, max_size=8))
    def check(lines):
        messages = [RawMessage(data=(pri + text).encode("utf-8", "surrogatepass"), transport="udp",
                               peer="10.10.1.1", peer_port=514) for pri, text in lines]
        result = pipeline.process_batch(messages)
        assert len(result.events) + len(result.dead_letters) == len(messages)  # nothing lost
        for letter in result.dead_letters:
            kind, _, detail = letter.reason.partition(": ")
            assert kind and detail, letter.reason
            assert kind != "internal_error", (letter.reason, letter.raw[:200])
            assert letter.raw in {m.data for m in messages}
        for event in result.events:
            assert event["event"]["dataset"] and event["event"]["id"]

    check()


def test_raw_bytes_through_the_pipeline_never_raise(pipeline):
    @settings(max_examples=60, deadline=None, derandomize=True)
    @given(st.lists(st.binary(max_size=200), min_size=1, max_size=5))
    def check(blobs):
        messages = [RawMessage(data=blob, transport="tcp", peer="10.10.1.1", peer_port=601) for blob in blobs]
        result = pipeline.process_batch(messages)
        assert len(result.events) + len(result.dead_letters) == len(messages)
        assert not [d.reason for d in result.dead_letters if d.reason.startswith("internal_error")]

    check()


def test_soc_parse_cli_prints_documents_and_reports_bad_lines(tmp_path):
    """The real `soc parse` command in a subprocess: JSON Lines out, reasons on stderr, exit code 1 on failures."""
    import subprocess
    import sys

    log = tmp_path / "mixed.log"
    good = SEEDS["cisco_asa"][3]
    log.write_bytes(good.encode() + b"\nnot a firewall line at all\n" + b"\xff\xfe broken\n")
    run = subprocess.run([sys.executable, "-m", "suite.cli", "parse", "--format", "auto", str(log)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 1, run.stderr
    docs = [json.loads(line) for line in run.stdout.splitlines()]
    assert len(docs) == 1 and docs[0]["event"]["dataset"] == "cisco_asa.log"
    assert "record 2: unknown_format" in run.stderr and "record 3: invalid_utf8" in run.stderr
    listing = subprocess.run([sys.executable, "-m", "suite.cli", "parse", "--list"], capture_output=True, text=True,
                             timeout=60)
    assert listing.returncode == 0 and all(name in listing.stdout for name in FORMATS)
    ok = tmp_path / "ok.log"
    ok.write_text(good + "\n")
    clean = subprocess.run([sys.executable, "-m", "suite.cli", "parse", "-f", "cisco_asa", str(ok)],
                           capture_output=True, text=True, timeout=60)
    assert clean.returncode == 0 and json.loads(clean.stdout)["observer"]["vendor"] == "Cisco"
