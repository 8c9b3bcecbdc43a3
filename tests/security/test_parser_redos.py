"""Parsing untrusted text is linear: no record a sender can craft keeps a parser busy.

Every registered parser (collectors/parsers/registry.py, what `soc parse --list` shows) is fed crafted worst-case
records up to 64 KB and must answer each one, accepting or refusing it, in under a second (measured with
time.perf_counter around the call). The records are built generically, so a new parser is covered as soon as it is
registered: for each format, a few of its own records (the Elastic fixtures of tests/test_parser_accuracy.py, and the
samples below) are cut after a separator and continued with 64 KB of one character or of the piece that followed
the cut (long runs of what the patterns' quantifiers consume, after a nearly-matching prefix; repeated separators;
unclosed quotes and brackets). They go through the file path (``parse_record`` with the format named), through the
network path (a syslog line with the format's program name, through the real pipeline: header, routing, parser,
enrichment) and through every format's ``detect``. The Cisco ASA messages that backtracked for minutes (113019,
113004, "message repeated") have targeted cases too.

A runaway match is stopped after a few seconds of CPU (tests/security/timing.py: SIGPROF; CPython's re checks for
signals while it matches) so that a regression fails in seconds instead of hanging the run.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from collectors.message import ParseError, RawMessage
from collectors.parsers import cisco_asa
from collectors.parsers.registry import ParseContext, all_parsers, parse_record
from tests.ingest_samples import NXLOG_4688, OSQUERY_EVENT, OSQUERY_SNAPSHOT, WINLOGBEAT_4688, ecs_doc
from tests.security.timing import LIMIT_SECONDS
from tests.security.timing import too_slow as _too_slow

SIZE = 64 * 1024 - 512  # room for a syslog header: through the pipeline the lines stay under its 64 KiB limit
CTX = ParseContext(zone=timezone.utc, received=datetime(2026, 11, 22, 9, 0, tzinfo=timezone.utc))

SEPARATORS = frozenset(' =:,;"\'[](){}<>|/\\\t')
FILLERS = (" ", "a", "0", "=", ":", ",", '"', "[", "\\", "é")
CUTS_PER_SEED = 10
SEEDS_PER_FORMAT = 4

# A few records per format that the fixtures may lack (and that make the generic run independent of the corpus).
SAMPLES: dict[str, list[str]] = {
    "cisco_asa": [
        "%ASA-4-113019: Group = vpn, Username = alice, IP = 203.0.113.5, Session disconnected. Session Type: SSL, "
        "Duration: 0h:10m:00s, Bytes xmt: 1, Bytes rcv: 2, Reason: User Requested",
        "%ASA-6-113004: AAA user authentication Successful : server = 10.0.0.1 : user = alice",
        "%ASA-4-106023: message repeated 3 times: [ Deny tcp src outside:10.0.0.1/1 dst inside:10.0.0.2/2 by "
        "access-group \"in\" [0x0, 0x0]]",
    ],
    "fortigate": ['date=2024-01-01 time=10:00:00 devname="fw" devid="FG1" logid="0000000013" type="traffic" '
                  'subtype="forward" srcip=10.0.0.1 dstip=10.0.0.2 action="deny" msg="x"'],
    "sophos_xg": ['device="SFW" date=2024-01-01 time=10:00:00 log_id=010101600001 log_type="Firewall" '
                  'log_subtype="Denied" src_ip=10.0.0.1 dst_ip=10.0.0.2 message="m"'],
    "sonicwall": ['id=firewall sn=0017C5 time="2024-01-01 10:00:00" fw=10.0.0.1 m=36 msg="drop" '
                  'src=10.0.0.1:1:X1 dst=10.0.0.2:2:X0 proto=tcp/80 fw_action="drop"'],
    "iptables": ["[UFW BLOCK] IN=eth0 OUT= MAC=00:11 SRC=10.0.0.1 DST=10.0.0.2 LEN=40 PROTO=TCP SPT=1 DPT=2 SYN"],
    "cef": ["CEF:0|Vendor|Product|1.0|100|Name|5|src=10.0.0.1 dst=10.0.0.2 msg=a\\=b suser=alice act=blocked"],
    "leef": ["LEEF:2.0|Vendor|Product|1.0|100|^|src=10.0.0.1^dst=10.0.0.2^usrName=alice"],
    "auditd": ["type=USER_LOGIN msg=audit(1610903553.686:584): pid=1 uid=0 msg='op=login acct=\"root\" "
               "exe=\"/usr/sbin/sshd\" addr=10.0.0.1 res=failed'"],
    "linux_auth": ["Failed password for invalid user alice from 10.0.0.1 port 22 ssh2",
                   "alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/bin/ls"],
    "modsecurity": ['{"transaction":{"client_ip":"10.0.0.1","messages":["[id \\"942100\\"] [msg \\"SQLi\\"]"]}}',
                    "--a1-A--\n[10/May/2022:04:52:04 +0000] id 10.0.0.1 1 10.0.0.2 80\n--a1-Z--"],
    "nginx_access": ['10.0.0.1 - alice [10/Oct/2000:13:55:36 -0700] "GET /a HTTP/1.1" 200 5 "-" "curl"'],
    "nginx_error": ["2024/01/01 10:00:00 [error] 12#34: *5 open() failed, client: 10.0.0.1"],
    "apache_access": ['10.0.0.1 - alice [10/Oct/2000:13:55:36 -0700] "GET /a HTTP/1.1" 200 5 "-" "curl"'],
    "apache_error": ["[Wed Oct 11 14:32:52.123 2000] [core:error] [pid 1:tid 2] [client 10.0.0.1:5] oops"],
    "pfsense": ["5,,,1000,em0,match,block,in,4,0x0,,64,0,0,DF,6,tcp,60,10.0.0.1,10.0.0.2,1,2,0,S,1,,64240,,mss"],
    "systemd": ["Started Session 1 of User root."],
}
JSON_SAMPLES = [NXLOG_4688, OSQUERY_EVENT, OSQUERY_SNAPSHOT, WINLOGBEAT_4688, ecs_doc("redos")]


@pytest.fixture(scope="module")
def fixture_seeds() -> dict[str, list[str]]:
    """The Elastic fixture records per format (the corpus of tests/test_parser_accuracy.py), when it is there."""
    try:
        from tests.test_parser_accuracy import fixture_text, load_cases

        cases = load_cases()
    except Exception:  # no corpus: the samples above still cover every format
        return {}
    seeds: dict[str, list[str]] = {}
    for case in cases:
        if all_parsers()[case.fmt].carrier == "json":
            seeds.setdefault(case.fmt, []).append(json.dumps(case.raw))
        else:
            text = fixture_text(case.raw, case.fmt)
            if text:
                seeds.setdefault(case.fmt, []).append(text)
    return seeds


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    from collectors.pipeline import Pipeline, build_context
    from inventory.lookup import Inventory
    from tests.conftest import make_settings

    settings = make_settings(tmp_path_factory.mktemp("redos"))
    return Pipeline(build_context(settings, Inventory.load(settings.inventory.path)))


def _pump(prefix: str, unit: str, suffix: str = "") -> str:
    return prefix + unit * max(1, (SIZE - len(prefix) - len(suffix)) // max(len(unit), 1)) + suffix


def _cuts(seed: str) -> list[int]:
    """Where to cut a record: the start, and right after separators (spread over the record)."""
    spots = sorted({i + 1 for i, ch in enumerate(seed) if ch in SEPARATORS})
    if len(spots) > CUTS_PER_SEED:
        step = len(spots) / CUTS_PER_SEED
        spots = [spots[int(i * step)] for i in range(CUTS_PER_SEED)]
    return [0, *spots]


def _own_units(seed: str, cut: int) -> list[str]:
    """What follows the cut up to the next separator, and up to the one after: repeating them repeats the structure
    the format's patterns expect there (", Username = , IP = a" ...)."""
    units, at = [], cut
    for _ in range(2):
        nxt = next((i for i in range(at + 1, len(seed)) if seed[i] in SEPARATORS), None)
        if nxt is None:
            break
        at = nxt
        units.append(seed[cut:at + 1])
    return [u for u in units if u]


def crafted(seeds: list[str]) -> list[str]:
    texts = []
    for seed in seeds:
        for cut in _cuts(seed):
            prefix = seed[:cut]
            for unit in (*FILLERS, *_own_units(seed, cut)):
                texts.append(_pump(prefix, unit))
            texts.append(_pump(prefix, seed[cut:cut + 1] or "a", suffix="!"))  # a run that ends in a mismatch
    return texts


def _pick(records: list[str], count: int) -> list[str]:
    """A few records spread over the list (each parser's fixtures in order), distinct."""
    records = list(dict.fromkeys(records))
    if len(records) <= count:
        return records
    step = len(records) / count
    return [records[int(i * step)] for i in range(count)]


def _seeds_for(fmt: str, fixture_seeds: dict[str, list[str]]) -> list[str]:
    return list(dict.fromkeys(SAMPLES.get(fmt, []) + _pick(fixture_seeds.get(fmt, []), SEEDS_PER_FORMAT)))


def _syslog_line(fmt: str, text: str) -> bytes:
    program = next(iter(all_parsers()[fmt].programs), "")
    tag = f"{program}: " if program else ""
    return f"<134>Nov 22 16:10:01 fw-01 {tag}{text}".encode("utf-8", "surrogatepass")


def _detect_all(text: str) -> None:
    for spec in all_parsers().values():
        if spec.carrier != "json":
            spec.detect({"message": text})


def _records(fmt: str, text: str) -> None:
    spec = all_parsers()[fmt]
    if spec.records is not None:
        for _ in spec.records([text, text]):
            pass


def _assert_fast(fmt: str, texts: list[str], pipeline=None) -> None:
    slow = []
    for text in texts:
        checks = [("parse_record", parse_record, (text, fmt, CTX)), ("detect", _detect_all, (text,)),
                  ("records", _records, (fmt, text))]
        if pipeline is not None:
            message = RawMessage(data=_syslog_line(fmt, text), transport="tcp", peer="192.0.2.7", peer_port=514)
            checks.append(("pipeline", pipeline.process, (message,)))
        for name, call, args in checks:
            took = _too_slow(call, *args)
            if took is not None:
                slow.append(f"{name} {took:.2f}s on {len(text)} chars {text[:80]!r}...")
                break
        if len(slow) >= 3:
            break
    assert not slow, f"{fmt}: over {LIMIT_SECONDS}s:\n" + "\n".join(slow)


SYSLOG_FORMATS = sorted(name for name, spec in all_parsers().items() if spec.carrier != "json")
JSON_FORMATS = sorted(name for name, spec in all_parsers().items() if spec.carrier == "json")


def test_every_registered_parser_is_covered():
    assert set(SYSLOG_FORMATS) | set(JSON_FORMATS) == set(all_parsers())
    assert {"cisco_asa", "fortigate", "sophos_xg", "sonicwall", "linux_auth", "cef"} <= set(SYSLOG_FORMATS)


@pytest.mark.parametrize("fmt", SYSLOG_FORMATS)
def test_crafted_text_records_parse_in_under_a_second(fmt, fixture_seeds, pipeline):
    seeds = _seeds_for(fmt, fixture_seeds)
    texts = crafted(seeds) + [_pump("", unit) for unit in (*FILLERS, "a=", 'a="', "a ", ", ", "%ASA-", "CEF:0|")]
    _assert_fast(fmt, texts, pipeline)


def _string_paths(value, path=()):
    if isinstance(value, str):
        yield path
    elif isinstance(value, dict):
        for key, child in value.items():
            yield from _string_paths(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _string_paths(child, (*path, index))


def _replaced(document, path, text):
    document = json.loads(json.dumps(document))
    node = document
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = text
    return document


@pytest.mark.parametrize("fmt", JSON_FORMATS)
def test_crafted_json_documents_parse_in_under_a_second(fmt, fixture_seeds):
    documents = JSON_SAMPLES + [json.loads(s) for s in _pick(fixture_seeds.get(fmt, []), 2)]
    texts = []
    for document in documents:
        for path in list(_string_paths(document))[:12]:
            for unit in (" ", "0", "a=", "2024-01-01T00:00:00", "\\"):
                texts.append(json.dumps(_replaced(document, path, unit * (SIZE // len(unit) // 2))))
    _assert_fast(fmt, texts)


# --- Cisco ASA: the three patterns that took minutes on a 64 KB line -----------------------------------------------
ASA_WORST = {
    # Group = (.*?), Username = (.*?), IP = ([^,]+), Session disconnected ...: each lazy group may stop at any of
    # the repeated separators (cubic).
    "113019": "%ASA-4-113019: " + "Group = , Username = , IP = a" * (SIZE // 29),
    "113019-spaces": "%ASA-4-113019: Group = " + " " * SIZE,
    # user =\s*(.+?)\s*$ over a run of spaces that is not the end (quadratic).
    "113004": _pump("%ASA-6-113004: AAA user authentication Successful : server = 10.0.0.1 : user = x", " ",
                    suffix="y"),
    # message repeated N times: [\s*(.*?)\s*\]$ over spaces with no closing bracket (cubic).
    "repeated": _pump("%ASA-4-106023: message repeated 5 times: [", " "),
    "repeated-x": _pump("%ASA-4-106023: message repeated 5 times: [", " ", suffix="x"),
}


@pytest.mark.parametrize("case", sorted(ASA_WORST))
def test_cisco_asa_worst_cases_parse_in_under_a_second(case, pipeline):
    text = ASA_WORST[case]
    assert 60_000 < len(text) <= SIZE + 100
    for name, call, args in (
            ("parse_record", parse_record, (text, "cisco_asa", CTX)),
            ("pipeline", pipeline.process, (RawMessage(data=_syslog_line("cisco_asa", text), transport="udp",
                                                       peer="192.0.2.7", peer_port=514),))):
        took = _too_slow(call, *args)
        assert took is None, f"cisco_asa {case} through {name}: {took:.2f}s"


def test_every_cisco_asa_message_pattern_with_crafted_bodies():
    """Each message id's own pattern, after its header, over 64 KB of what its groups consume."""
    texts = [_pump(f"%ASA-4-{mid}: ", unit) for mid in sorted({*cisco_asa.P, *cisco_asa.GROUP_USER_IP_IDS})
             for unit in (" ", "a", "a ", ", ", " = ", "(a) ", "Group = , User = ")]
    _assert_fast("cisco_asa", texts)


def test_the_asa_line_still_parses_after_the_fix():
    """The fix keeps what the patterns extract: a real 113019 line still gives its fields."""
    doc = parse_record(SAMPLES["cisco_asa"][0], "cisco_asa", CTX)
    assert doc["event"]["code"] == "113019" and doc["source"]["user"]["group"]["name"] == "vpn"
    assert doc["event"]["reason"] == "User Requested"
    repeated = parse_record(SAMPLES["cisco_asa"][2], "cisco_asa", CTX)
    assert repeated["cisco"]["asa"]["rule_name"] == "in"


# --- what keeps it so ------------------------------------------------------------------------------------------------
def test_parsers_run_no_pattern_outside_linear_re():
    """Every pattern of collectors/parsers goes through soc/linear_re.py (RE2, or a bounded or backtracking-free
    pattern checked there): a parser calling the re module directly is refused here."""
    import ast
    from pathlib import Path

    import collectors.parsers as package

    calls = ("compile", "match", "search", "fullmatch", "findall", "finditer", "sub", "subn", "split")
    found = []
    for path in sorted(Path(package.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in calls
                    and isinstance(node.func.value, ast.Name) and node.func.value.id in ("re", "regex")):
                found.append(f"{path.name}:{node.lineno} {node.func.value.id}.{node.func.attr}")
    assert not found, found


def test_formats_with_a_natural_bound_refuse_longer_messages():
    """Where a format's producer has a limit (the kernel's 1 KiB log record, sshd's 1 KiB message, nginx's 2 KiB
    error line, httpd's 8 KiB, auditd's 8970 bytes), a message far over it is a dead letter (too_long) before the
    parser runs; one at the bound is parsed as usual."""
    bounded = {name: spec for name, spec in all_parsers().items() if spec.max_message_chars}
    assert {"iptables", "auditd", "linux_auth", "nginx_error", "apache_error"} <= set(bounded)
    for name, spec in bounded.items():
        assert spec.max_message_why and spec.max_message_chars < SIZE
        sample = SAMPLES[name][0]
        at_bound = sample + " " * (spec.max_message_chars - len(sample))
        doc = parse_record(at_bound, name, CTX)  # not refused for its length
        assert doc["event"]["dataset"]
        with pytest.raises(ParseError) as refused:
            parse_record(sample + " x" * (spec.max_message_chars // 2 + 1), name, CTX)
        assert refused.value.kind == "too_long" and str(spec.max_message_chars) in str(refused.value)
