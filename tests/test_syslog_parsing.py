"""Syslog headers (RFC 3164 and 5424) and Linux auth messages to ECS."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from collectors.message import ParseError
from collectors.parsers.linux_auth import parse_linux_auth
from collectors.parsers.syslog import parse_syslog
from tests.conftest import CORPUS

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
RECEIVED = datetime(2026, 11, 22, 9, 0, tzinfo=timezone.utc)


def test_rfc3164_with_local_zone_and_pid():
    doc = parse_syslog("<38>Nov 22 16:10:01 so-tttt-web-01 sshd[4321]: Failed password for root", HCM, RECEIVED)
    assert doc["@timestamp"] == datetime(2026, 11, 22, 9, 10, 1, tzinfo=timezone.utc)  # 16:10 at UTC+7
    assert doc["host"]["hostname"] == "so-tttt-web-01"
    assert doc["process"] == {"name": "sshd", "pid": 4321}
    assert doc["log"]["syslog"]["facility"]["name"] == "auth" and doc["log"]["syslog"]["severity"]["code"] == 6
    assert doc["message"] == "Failed password for root"


def test_rfc3164_year_is_never_in_the_future():
    # A "Dec 31" line received on 1 January belongs to the year before.
    doc = parse_syslog("<13>Dec 31 23:59:59 h app: x", ZoneInfo("UTC"), datetime(2027, 1, 1, 0, 0, 5, tzinfo=timezone.utc))
    assert doc["@timestamp"].year == 2026
    doc = parse_syslog("<13>Feb 21 21:54:44 h app: x", ZoneInfo("UTC"), RECEIVED)
    assert doc["@timestamp"].year == 2026


def test_rfc5424_with_structured_data_and_escapes():
    line = ('<165>1 2026-10-11T22:14:15.003123456+07:00 mymachine.example.com evntslog 77 ID47 '
            '[exampleSDID@32473 iut="3" eventSource="App\\"lication\\]"][meta seq="1"] \ufeffAn application event')
    doc = parse_syslog(line, HCM, RECEIVED)
    assert doc["@timestamp"] == datetime(2026, 10, 11, 15, 14, 15, 3123, tzinfo=timezone.utc)
    sd = doc["log"]["syslog"]["structured_data"]
    assert sd == {"exampleSDID@32473": {"iut": "3", "eventSource": 'App"lication]'}, "meta": {"seq": "1"}}
    assert doc["process"] == {"name": "evntslog", "pid": 77}
    assert doc["log"]["syslog"]["msgid"] == "ID47"
    assert doc["message"] == "An application event"


def test_rfc5424_nil_values():
    doc = parse_syslog("<14>1 2026-11-22T01:02:03Z - - - - - hello", HCM, RECEIVED)
    assert "host" not in doc and "process" not in doc
    assert doc["message"] == "hello"


@pytest.mark.parametrize("line, kind", [
    ("<3", "truncated_header"),
    ("<34>", "truncated_header"),
    ("<34>Oct 11 22:1", "truncated_header"),
    ("<34>1 2026-11-22T01:02:03Z host", "truncated_header"),
    ("no pri at all", "bad_header"),
    ("<999>Oct 11 22:14:15 host app: x", "bad_header"),
    ("<34>hello world", "bad_header"),
    ('<34>1 2026-11-22T01:02:03Z h a p m [broken x="1" oops', "bad_structured_data"),
])
def test_bad_headers_are_rejected_with_a_reason(line, kind):
    with pytest.raises(ParseError) as info:
        parse_syslog(line, HCM, RECEIVED)
    assert info.value.kind == kind
    assert str(info.value)


def _auth_fixture():
    folder = CORPUS / "vendor-logs" / "system" / "auth"
    lines = (folder / "test-auth.log").read_text().splitlines()
    expected = json.loads((folder / "test-auth.log-expected.json").read_text())["expected"]
    return list(zip(lines, expected))


CORE = ("event.action", "event.category", "event.type", "event.outcome", "source.ip", "source.port", "user.name",
        "process.name", "process.pid", "host.hostname")


def _get(doc, dotted):
    for part in dotted.split("."):
        if not isinstance(doc, dict) or part not in doc:
            return None
        doc = doc[part]
    return doc


def test_sshd_and_sudo_lines_agree_with_the_reference_pipeline():
    """Real auth.log lines from ../shared/corpus/vendor-logs/system/auth, compared field by field."""
    pairs = [(line, exp) for line, exp in _auth_fixture() if " sshd[" in line or " sudo" in line]
    assert len(pairs) >= 7
    disagreements = []
    for line, expected in pairs:
        doc = parse_linux_auth(parse_syslog(line, ZoneInfo("UTC"), RECEIVED, require_pri=False))
        for name in CORE:
            want = _get(expected, name)
            if want is None and name not in ("event.action",):
                continue
            if _get(doc, name) != want:
                disagreements.append((line[:60], name, _get(doc, name), want))
    assert not disagreements, disagreements
