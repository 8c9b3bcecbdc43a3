"""Every format parser scored field by field against the Elastic integrations' pipeline fixtures.

../shared/corpus/vendor-logs/<pkg>/<ds>/ pairs raw events with the ECS documents Elastic's reference ingest pipeline
produced from them. Each raw event goes through our parser the way `soc parse --format <name>` reads a file (syslog
header when there is one; agent JSON documents keep their pre-decoded fields and give the parser their `message`).

Scored: the CORE fields (below) that the expected document has. A field the expected document lacks is not scored;
a field we set to another value than expected is a disagreement. Normalisation: a scalar equals a one-element list,
category/type lists compare as sets, timestamps compare as instants to the millisecond, and the year is masked
when the raw event carried no year (syslog "Jan 23 15:10:55": upstream's year is the fixture generation date).
Fields the fixture configs mark `dynamic_fields` are not scored. Time zones follow each `-config.yml`.

SUPERSEDED lists the few expected values that an older Elastic pipeline produced and the current one (which we
follow) changed; each entry names the evidence. They are reported, and left out of the agreement figure.
"""

from __future__ import annotations

import copy
import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

from collectors.message import ParseError
from collectors.parsers import common
from collectors.parsers.registry import ParseContext, _carrier_doc, all_parsers, parser_for_syslog
from soc import ecs
from tests.conftest import CORPUS

FIXTURES = CORPUS / "vendor-logs"

# fixture data stream → our format name
DATASETS = {
    "cisco_asa/log": "cisco_asa",
    "fortinet_fortigate/log": "fortigate",
    "sophos/xg": "sophos_xg",
    "sonicwall_firewall/log": "sonicwall",
    "pfsense/log": "pfsense",
    "iptables/log": "iptables",
    "modsecurity/auditlog": "modsecurity",
    "system/auth": "linux_auth",
    "system/syslog": "systemd",
    "auditd/log": "auditd",
    "nginx/access": "nginx_access",
    "nginx/error": "nginx_error",
    "apache/access": "apache_access",
    "apache/error": "apache_error",
    "cef/log": "cef",
    "system/security": "windows_security",
    "windows/sysmon_operational": "windows_sysmon",
}

CORE_FIELDS = ("@timestamp", "event.action", "event.category", "event.type", "event.outcome", "source.ip",
               "source.port", "destination.ip", "destination.port", "network.transport", "user.name", "rule.id")
CORE_PREFIXES = ("url.", "http.", "observer.")
SET_FIELDS = ("event.category", "event.type", "event.action")

# (fixture file, event index, field): why the expected value is not the current reference behaviour.
_ASA_OLD_OUTCOME = "older cisco_asa pipeline set event.outcome=failure on denies; the current one (and test-106023-" \
                   "iface-with-prefix, test-non-canonical) has success: the firewall carried the deny out"
_ASA_OLD_302 = "ECS 8.4 cisco_asa pipeline (test-non-canonical) labelled 302013/302015/305011 firewall-rule/info and " \
               "did not swap outbound addresses; current pipeline: flow-creation/start (test-asa-fix 302015) and " \
               "outbound = initiated from inside"
SUPERSEDED: dict[tuple[str, int, str], str] = {}
for _i in (1, 2, 3, 4, 5, 6, 15):
    SUPERSEDED[("cisco_asa/log/test-asa-fix.log", _i, "event.outcome")] = _ASA_OLD_OUTCOME
SUPERSEDED[("cisco_asa/log/test-asa-tz-mapping.log", 2, "event.outcome")] = _ASA_OLD_OUTCOME
SUPERSEDED[("cisco_asa/log/test-repeat-deny.log", 0, "event.outcome")] = _ASA_OLD_OUTCOME
SUPERSEDED[("cisco_asa/log/test-asa-fix.log", 10, "event.outcome")] = _ASA_OLD_OUTCOME
for _i in (0, 1, 2, 3, 6, 7, 8, 9):
    for _f in ("event.action", "event.type") + (("event.category",) if _i >= 6 else ()):
        SUPERSEDED[("cisco_asa/log/test-non-canonical.log", _i, _f)] = _ASA_OLD_302
for _i in (1, 2, 3):
    for _f in ("destination.ip", "destination.port", "source.port", "observer.ingress.interface.name",
               "observer.egress.interface.name"):
        SUPERSEDED[("cisco_asa/log/test-non-canonical.log", _i, _f)] = _ASA_OLD_302
for _i in (12, 13):
    for _f in ("event.action", "event.type"):
        SUPERSEDED[("cisco_asa/log/test-non-canonical.log", _i, _f)] = \
            "ECS 8.4 pipeline labelled 302020 (Built) as flow-expiration/end; current: flow-creation/start " \
            "(test-302020-direction)"
    SUPERSEDED[("cisco_asa/log/test-non-canonical.log", _i, "source.ip")] = \
        "ECS 8.4 pipeline took laddr as the source of an inbound 302020; current: faddr (test-302020-direction)"
for _f in ("event.action", "event.type"):
    SUPERSEDED[("cisco_asa/log/test-non-canonical.log", 18, _f)] = \
        "ECS 8.4 pipeline labelled 304001 firewall-rule/[connection, allowed]; current: url-access/[access, allowed]"
# Values the reference itself gets inconsistent or wrong; we produce the consistent value instead.
SUPERSEDED[("system/auth/test-pam-extraction.log", 5, "event.action")] = \
    "pam_faillock lockout is 'account_locked' here but 'account-locked' in test-pam-faillock (newer); we follow the latter"
SUPERSEDED[("iptables/log/test-journald.json", 0, "event.type")] = \
    "Elastic's journald path skips the log-prefix parsing: the same 'iptables DROP_INPUT:' prefix gives " \
    "[denied, connection] on its syslog path (test-iptables-raw); we treat both alike"
SUPERSEDED[("sophos/xg/test-sophos-18-5-atp-firewall.log", 0, "network.transport")] = \
    "Elastic keeps the leading space of protocol=\" ICMP\" (' icmp'); we trim it"
for _i, _host in ((1, "v10"), (2, "eu-mobile")):
    SUPERSEDED[("pfsense/log/test-opnsense-squid.log", _i, "url.scheme")] = \
        "Elastic's uri_parts reads a CONNECT target 'host:443' as scheme 'host'; a host:port has no scheme"


@dataclass
class Case:
    fixture: str  # pkg/ds/file
    index: int
    fmt: str
    raw: str | dict  # the text, or the agent JSON document
    expected: dict
    dynamic: frozenset
    zone: object


@dataclass
class Score:
    events: int = 0
    agreeing: int = 0
    fields: int = 0
    fields_agreeing: int = 0
    superseded: int = 0
    disagreements: list = field(default_factory=list)


def _config(folder: Path, name: str) -> dict:
    merged: dict = {}
    for path in (folder / "test-common-config.yml", folder / f"{name}-config.yml"):
        if path.exists():
            data = yaml.safe_load(path.read_text()) or {}
            for key, value in data.items():
                if isinstance(value, dict) and isinstance(merged.get(key), dict):
                    merged[key] = {**merged[key], **value}
                else:
                    merged[key] = value
    return merged


def _zone(config: dict):
    flat = ecs.flatten(config.get("fields") or {})
    for key in ("_tmp.tz_offset", "_conf.tz_offset", "tz_offset", "event.timezone"):
        zone = common.fixed_zone(str(flat[key])) if key in flat else None
        if zone is not None:
            return zone
    return timezone.utc


def _raw_events(path: Path, config: dict) -> list:
    if path.suffix == ".json":
        return json.loads(path.read_text())["events"]
    lines = path.read_text(encoding="utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    first = (config.get("multiline") or {}).get("first_line_pattern")
    if not first:
        return lines
    pattern, events = re.compile(first), []
    for line in lines:
        if pattern.search(line) or not events:
            events.append(line)
        else:
            events[-1] += "\n" + line
    return events


def load_cases(datasets=DATASETS) -> list[Case]:
    cases = []
    for dataset, fmt in datasets.items():
        folder = FIXTURES / dataset
        for expected_path in sorted(folder.glob("*-expected.json")):
            name = expected_path.name[: -len("-expected.json")]
            config = _config(folder, name)
            expected = json.loads(expected_path.read_text())["expected"]
            raws = _raw_events(folder / name, config)
            assert len(raws) == len(expected), f"{dataset}/{name}: {len(raws)} raw vs {len(expected)} expected"
            dynamic = frozenset((config.get("dynamic_fields") or {}).keys())
            for index, (raw, exp) in enumerate(zip(raws, expected)):
                cases.append(Case(f"{dataset}/{name}", index, fmt, raw, exp, dynamic, _zone(config)))
    return cases


def fixture_text(raw, fmt: str | None = None) -> str:
    """The text an agent document hands the parser: its message, or event.original when only that one is in the
    format (CEF documents carry the decoded event name in message)."""
    if isinstance(raw, str):
        return raw
    candidates = [t for t in (raw.get("message"), (raw.get("event") or {}).get("original")) if isinstance(t, str)]
    if isinstance((raw.get("auditd") or {}).get("messages"), list):
        candidates.append("\n".join(raw["auditd"]["messages"]))
    if fmt is not None:
        spec = all_parsers()[fmt]
        for text in candidates:
            if spec.detect({"message": text}):
                return text
    return candidates[0] if candidates else ""


def run_case(case: Case, received: datetime) -> dict:
    spec = all_parsers()[case.fmt]
    ctx = ParseContext(zone=case.zone, received=received)
    if spec.carrier == "json":
        assert isinstance(case.raw, dict)
        doc = {"_json": copy.deepcopy(case.raw)}
    else:
        text = fixture_text(case.raw, case.fmt)
        doc = _carrier_doc(spec.carrier, text, ctx)
        if isinstance(case.raw, dict):  # agent document: its decoded fields are there before our parser runs
            agent = copy.deepcopy(case.raw)
            agent.pop("message", None)
            for key, value in agent.items():
                if key == "@timestamp":
                    doc[key] = ecs.parse_time(value)
                elif key not in doc:
                    doc[key] = value
                elif isinstance(value, dict) and isinstance(doc[key], dict):
                    doc[key] = {**value, **doc[key]}
        doc.setdefault("event", {}).setdefault("original", text)
    doc = spec.parse(doc, ctx)
    doc.pop("_json", None)
    return doc


def _flat(doc: dict) -> dict:
    out = {}
    for key, value in ecs.flatten(doc).items():
        out[key] = value
    return out


def _scored(name: str) -> bool:
    return name in CORE_FIELDS or name.startswith(CORE_PREFIXES)


def _instant(value) -> datetime | None:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    moment = moment.astimezone(timezone.utc)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def _same(name: str, ours, want, raw_text: str) -> bool:
    if name == "@timestamp":
        a, b = _instant(ours), _instant(want)
        if a is None or b is None:
            return False
        if str(b.year) not in raw_text and str(_instant(want).astimezone().year) not in raw_text:
            a, b = a.replace(year=2000), b.replace(year=2000)  # year-less source: upstream's year is arbitrary
        return a == b
    if isinstance(want, list) or isinstance(ours, list):
        want_list = want if isinstance(want, list) else [want]
        ours_list = ours if isinstance(ours, list) else [ours]
        if name in SET_FIELDS:
            return sorted(map(str, want_list)) == sorted(map(str, ours_list))
        return want_list == ours_list
    return ours == want


def score(cases: list[Case], received: datetime) -> dict[str, Score]:
    scores: dict[str, Score] = defaultdict(Score)
    for case in cases:
        result = scores[case.fmt]
        result.events += 1
        try:
            ours = _flat(run_case(case, received))
        except ParseError as exc:
            ours = {}
            error = f"ParseError {exc.kind}: {exc}"
        else:
            error = None
        want = _flat(case.expected)
        raw_text = fixture_text(case.raw, case.fmt)
        agree = True
        for name, value in want.items():
            if not _scored(name) or name in case.dynamic:
                continue
            if (case.fixture, case.index, name) in SUPERSEDED:
                result.superseded += 1
                continue
            result.fields += 1
            if _same(name, ours.get(name), value, raw_text):
                result.fields_agreeing += 1
            else:
                agree = False
                result.disagreements.append((case.fixture, case.index, name, ours.get(name), value, error))
        result.agreeing += agree
    return dict(scores)


def table(scores: dict[str, Score]) -> str:
    lines = [f"{'format':<18}{'events':>7}{'agree':>7}{'event %':>9}{'fields':>8}{'field %':>9}{'superseded':>11}"]
    total = Score()
    for fmt in sorted(scores):
        s = scores[fmt]
        lines.append(f"{fmt:<18}{s.events:>7}{s.agreeing:>7}{100 * s.agreeing / s.events:>8.1f}%{s.fields:>8}"
                     f"{100 * s.fields_agreeing / max(s.fields, 1):>8.1f}%{s.superseded:>11}")
        total.events += s.events
        total.agreeing += s.agreeing
        total.fields += s.fields
        total.fields_agreeing += s.fields_agreeing
        total.superseded += s.superseded
    lines.append(f"{'ALL':<18}{total.events:>7}{total.agreeing:>7}{100 * total.agreeing / total.events:>8.1f}%"
                 f"{total.fields:>8}{100 * total.fields_agreeing / max(total.fields, 1):>8.1f}%{total.superseded:>11}")
    return "\n".join(lines)


@pytest.fixture(scope="module")
def scores():
    if not FIXTURES.exists():
        pytest.fail(f"the fixture corpus is missing: {FIXTURES}")
    return score(load_cases(), datetime.now(timezone.utc))


def test_core_fields_agree_with_the_reference_pipeline(scores, capsys):
    report = table(scores)
    with capsys.disabled():
        print("\n" + report)
        for fmt in sorted(scores):
            for fixture, index, name, ours, want, error in scores[fmt].disagreements:
                print(f"  {fmt}: {fixture}#{index} {name}: ours={ours!r} expected={want!r}"
                      + (f" ({error})" if error else ""))
    events = sum(s.events for s in scores.values())
    agreeing = sum(s.agreeing for s in scores.values())
    assert set(scores) == set(DATASETS.values()), "every format has fixture events"
    assert agreeing / events >= 0.99, report


def test_superseded_expectations_really_differ_from_what_we_produce():
    """An entry in SUPERSEDED that we now agree with is stale and would hide nothing: it must be removed."""
    cases = {(c.fixture, c.index): c for c in load_cases()}
    received = datetime.now(timezone.utc)
    for (fixture, index, name), reason in SUPERSEDED.items():
        case = cases[(fixture, index)]
        ours = _flat(run_case(case, received)).get(name)
        want = _flat(case.expected).get(name)
        assert want is not None, (fixture, index, name)
        assert not _same(name, ours, want, fixture_text(case.raw, case.fmt)), f"stale SUPERSEDED entry {fixture}#{index} {name}"


def test_detection_never_sends_a_fixture_line_to_the_wrong_parser():
    """parser_for_syslog on every syslog-carried fixture line: the right parser or none, never another one."""
    wrong, detected, total, marked = [], 0, 0, []
    received = datetime.now(timezone.utc)
    for case in load_cases():
        spec = all_parsers()[case.fmt]
        if spec.carrier != "syslog" or not isinstance(case.raw, str) or not case.raw.strip():
            continue
        doc = _carrier_doc("syslog", case.raw, ParseContext(zone=timezone.utc, received=received))
        found = parser_for_syslog(doc)
        total += 1
        if found is None:
            continue
        if found.name == case.fmt or _acceptable_alternative(case.fmt, found.name):
            detected += 1
        else:
            wrong.append((case.fixture, case.index, found.name, case.raw[:100]))
        marker = MARKERS.get(case.fmt)
        if marker and marker.search(case.raw):
            marked.append((case.fixture, case.index, found.name if found else None))
    print(f"\ndetection: {detected}/{total} fixture lines routed to their own parser, {len(wrong)} wrong")
    assert not wrong, wrong
    # Lines that carry their vendor's marker must all be found; the others (Elastic's junk-line tests, pfSense's
    # non-filterlog daemons, nginx/Apache access lines that only the program name can tell apart) may stay generic.
    missed = [m for m in marked if m[2] is None]
    assert len(marked) > 150 and not missed, missed


MARKERS = {
    "cisco_asa": re.compile(r"%(?:ASA|FTD)-\d-\d+"),
    "fortigate": re.compile(r"devname=.*logid="),
    "sophos_xg": re.compile(r'device(?:_name)?="SFW".*log_id='),
    "sonicwall": re.compile(r"id=firewall sn="),
    "pfsense": re.compile(r"filterlog(?:\[\d+\])?:"),
    "iptables": re.compile(r"IN=\S* OUT=\S* .*SRC="),
    "auditd": re.compile(r"^(?:node=\S+ )?type=\w+ msg=audit\("),
    "modsecurity": re.compile(r'^\{"transaction":'),
    "cef": re.compile(r"CEF:\d\|"),
}


def _acceptable_alternative(fmt: str, found: str) -> bool:
    # Elastic's system.syslog fixtures include auth lines (sudo pam_unix): our auth parser taking them is right.
    return fmt == "systemd" and found == "linux_auth"


# One line per syslog-carried format as a device sends it: through the real pipeline (decode → syslog header →
# program parser → inventory enrichment → finalize) it must come out as an event of that format's dataset.
PIPELINE_LINES = {
    "cisco_asa.log": b"<166>Aug 18 2026 18:24:29 asa-fw-01 : %ASA-4-106023: Deny tcp src outside:203.0.113.9/4444 "
                     b"dst inside:10.10.1.5/22 by access-group \"outside_in\" [0x0, 0x0]",
    "fortinet_fortigate.log": b'<189>date=2026-03-31 time=07:48:26 devname="FGT-HCM" devid="FG100F" logid="0000000013" '
                              b'type="traffic" subtype="forward" srcip=10.10.1.5 srcport=50000 dstip=8.8.8.8 '
                              b'dstport=53 proto=17 action="accept" policyid=7',
    "sophos.xg": b'<30>device="SFW" date=2026-06-21 time=19:50:23 timezone="ICT" device_name="XG" device_id=C01 '
                 b'log_id=010101600001 log_type="Firewall" log_component="Firewall Rule" log_subtype="Denied" '
                 b'fw_rule_id=5 src_ip=203.0.113.9 dst_ip=10.10.1.5 protocol="TCP" src_port=4444 dst_port=22',
    "sonicwall_firewall.log": b'<134>  id=firewall sn=0040103CE114 time="2026-05-16 08:19:21" fw=10.0.0.96 pri=6 '
                              b'c=0 m=36 src=203.0.113.9:4444:X1 dst=10.10.1.5:22:X0 proto=tcp/ssh fw_action="drop"',
    "pfsense.log": b"<134>Jan 1 02:21:39 fw filterlog[1]: 5,,,1000,em0,match,block,in,4,0x0,,64,0,0,DF,6,tcp,60,"
                   b"203.0.113.5,10.10.1.2,4444,22,0,S,1,,64240,,mss",
    "iptables.log": b"<4>Jan  8 03:37:09 gw kernel: [12.5] DROP_INPUT: IN=eth0 OUT= MAC=00:00:00:00:00:00:00:00:00:00"
                    b":00:00:08:00 SRC=203.0.113.9 DST=10.10.1.5 LEN=52 TTL=50 PROTO=TCP SPT=4444 DPT=445 SYN URGP=0",
    "modsecurity.auditlog": b'<132>May 10 04:52:04 waf modsecurity: {"transaction":{"client_ip":"203.0.113.9",'
                            b'"time_stamp":"Tue May 10 04:52:04 2026","client_port":41836,"host_ip":"10.10.1.5",'
                            b'"host_port":443,"request":{"method":"GET","http_version":1.1,"uri":"/admin"},'
                            b'"response":{"http_code":403},"messages":[{"message":"SQLi","details":{"ruleId":"942100"}}]}}',
    "auditd.log": b"<29>Jan 17 17:12:33 srv audispd: type=USER_AUTH msg=audit(1610903558.178:595): pid=2954 uid=0 "
                  b"auid=1000 ses=14 msg='op=PAM:authentication acct=\"root\" exe=\"/usr/bin/su\" hostname=? "
                  b"addr=203.0.113.9 terminal=pts/2 res=failed'",
    "system.auth": b"<38>Nov 22 16:10:01 so-tttt-web-01 sshd[4321]: Failed password for root from 203.0.113.9 port "
                   b"4242 ssh2",
    "nginx.access": b'<190>Nov 22 16:10:01 web nginx: 203.0.113.9 - - [22/Nov/2026:16:10:01 +0700] "GET /wp-login.php '
                    b'HTTP/1.1" 404 153 "-" "curl/8"',
    "nginx.error": b"<187>Nov 22 16:10:01 web nginx: 2026/11/22 16:10:01 [error] 54053#0: *1 open() failed, client: "
                   b"203.0.113.9, server: localhost",
    "apache.access": b'<190>Nov 22 16:10:01 web httpd: 203.0.113.9 - - [22/Nov/2026:16:10:01 +0700] "GET / HTTP/1.1" '
                     b'200 512 "-" "curl/8"',
    "apache.error": b"<187>Nov 22 16:10:01 web httpd: [Sun Nov 22 16:10:01.1 2026] [core:error] [pid 1] [client "
                    b"203.0.113.9:1234] File does not exist",
    "cef.log": b"<134>Nov 22 16:10:01 av CEF:0|Kaspersky|Security Center|14|GNRL_EV_VIRUS_FOUND|Virus found|High|"
               b"src=10.10.1.5 dhost=pc-01 suser=alice act=blocked",
    "leef.log": b"<134>Nov 22 16:10:01 qr LEEF:1.0|Vendor|WAF|1.0|4001|src=203.0.113.9\tdst=10.10.1.5\tsrcPort=4444"
                b"\tdstPort=443\tproto=TCP\taction=blocked\tusrName=bob",
    "system.syslog": b"<30>May 27 11:19:35 srv systemd[1]: Started OpenBSD Secure Shell server.",
}


def test_each_syslog_format_goes_through_the_real_pipeline_to_its_dataset(tmp_path):
    from collectors.message import RawMessage
    from collectors.pipeline import Pipeline, build_context
    from inventory.lookup import Inventory
    from tests.conftest import make_settings

    settings = make_settings(tmp_path)
    pipeline = Pipeline(build_context(settings, Inventory.load(settings.inventory.path)))
    datasets = {spec.dataset for spec in all_parsers().values() if spec.carrier == "syslog"}
    assert datasets <= set(PIPELINE_LINES), datasets - set(PIPELINE_LINES)
    messages = [RawMessage(data=line, transport="udp", peer="10.10.1.1", peer_port=514)
                for line in PIPELINE_LINES.values()]
    result = pipeline.process_batch(messages)
    assert not result.dead_letters, [(d.reason, d.raw[:80]) for d in result.dead_letters]
    got = [ecs.get(event, "event.dataset") for event in result.events]
    assert got == list(PIPELINE_LINES), list(zip(PIPELINE_LINES, got))
    for event in result.events:
        assert event["event"]["id"] and event["@timestamp"].endswith("Z")
    firewall = result.events[0]
    assert firewall["source"]["ip"] == "203.0.113.9" and firewall["event"]["type"] == ["connection", "denied"]
