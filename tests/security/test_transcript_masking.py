"""Device answers are masked in linear time, and what the suite keeps of one is capped.

*Attack demonstrated:* a compromised firewall answered ``nft -j list set ...`` with 660 kB of ``<Password>``; the
masker that takes secrets out of every recorded answer (``(?is)(<Password>)(.*?)(</Password>)`` on Python's re,
quadratic) held the suite for more than five minutes (400 kB: 78 s), every thread with it.

Through the real path: a block run by the playbook runner on an nftables firewall whose every answer is that flood
(netmiko stood in for by a recorded connection, as in tests/test_playbook_drivers.py): the run ends within seconds,
its stored transcript keeps at most TRANSCRIPT_MAX_CHARS of an answer, with the line that says it was cut, and no
secret. Then the masker alone on 1 MB of what its patterns consume, and the cuts: a driver reads at most
ANSWER_MAX_CHARS of an answer, and a cut never leaves part of a secret.
"""

from __future__ import annotations

import time

import pytest

import tests.test_playbook_drivers as drivers_test
from playbooks.connections import (
    ANSWER_MAX_CHARS,
    MASK,
    TRANSCRIPT_MAX_CHARS,
    Masker,
    NetmikoSession,
    cut_marker,
)
from playbooks.drivers.sophos_xg import login_xml
from playbooks.runner import Actor
from tests.security.timing import GUARD_SECONDS, LIMIT_SECONDS, Runaway, cpu_guard, too_slow

SECRET = "Tr0ub4dor&3"  # the device password the test pool hands out (tests/test_playbook_drivers.py)
FLOOD = "<Password>" * 66_000 + f" {SECRET}\nSOC_RC=0\n"  # 660 kB, the device's password echoed at the end
UNITS = ["<Password>", "<password>x</password>", "password ", "password 1 ", "PASSWORD\t", "secret 5 ", "\n", " "]
MARKER = "\n[soc: cut here:"


class FloodingDevice(drivers_test.RecordedConnection):
    """Answers every command with the flood (and SOC_RC=0, so the shell reads as having succeeded)."""

    def send_command(self, command, read_timeout=None, **kwargs):
        self.sent.append(command)
        return FLOOD


def test_a_firewall_answering_660_kb_of_password_tags_does_not_hold_the_runner(tmp_path, monkeypatch):
    monkeypatch.setitem(drivers_test.NETMIKO_TYPES, "nftables", "linux")
    connection = FloodingDevice({})
    runner = drivers_test._runner(tmp_path, "nftables", connection)
    started = time.perf_counter()
    try:
        with cpu_guard(GUARD_SECONDS):
            run = runner.execute(runner.create("block_address", actor=Actor("cli", "red team"),
                                               overrides={"address": "203.0.113.5"})["id"])
    except Runaway:
        pytest.fail(f"the run was still masking answers after {GUARD_SECONDS} s of CPU")
    took = time.perf_counter() - started
    assert took < 10 * LIMIT_SECONDS, f"{took:.1f} s"  # before the fix: minutes
    assert len(connection.sent) >= 3, connection.sent  # it did talk to the device: prepare, check...
    exchanges = [x for step in run["steps"] for device in step.get("devices", []) for x in device["exchanges"]]
    assert exchanges, run
    for exchange in exchanges:
        answer = exchange["answer"]
        assert len(answer) <= TRANSCRIPT_MAX_CHARS + len(cut_marker(len(FLOOD), TRANSCRIPT_MAX_CHARS))
        assert MARKER in answer and f"answered {len(FLOOD)} characters" in answer, answer[-200:]
        assert answer.startswith("<Password>" + MASK)  # an unclosed tag is masked to the cut
    stored = str(runner.store.get_document("playbook_runs", run["id"]))
    assert SECRET not in stored


@pytest.mark.parametrize("unit", UNITS)
def test_masking_takes_linear_time_on_1_mb_answers(unit):
    masker = Masker([SECRET, "community-string-42"])
    text = unit * (1_000_000 // len(unit))
    assert too_slow(masker, text) is None
    assert too_slow(masker.transcript, text) is None


def test_what_is_masked_and_what_drivers_read():
    masker = Masker([SECRET])
    # Ordinary answers are masked as before.
    text = (f"username soc password 0 {SECRET}\nenable secret 5 $1$abcd$xyz\nsnmp-server community s3cr3t RO\n"
            + login_xml("admin", SECRET) + "\nxpassword kept\népassword kept")
    masked = masker(text)
    assert SECRET not in masked and "$1$abcd$xyz" not in masked and "s3cr3t" not in masked
    assert "username soc password 0 ********" in masked and "<Password>********</Password>" in masked
    assert masked.endswith("xpassword kept\népassword kept")  # a keyword inside a word is not one
    # An unclosed <Password> (a cut answer) is masked to the end.
    assert masker("<Login><PASSWORD>half-a-secr") == "<Login><PASSWORD>********"
    # A cut through the device password leaves none of it in the transcript.
    head = "x" * (TRANSCRIPT_MAX_CHARS - 4)
    kept = masker.transcript(head + SECRET + " and more")
    assert kept.startswith(head) and SECRET[:4] not in kept[len(head) - 1:] and MARKER in kept
    # A driver reads at most ANSWER_MAX_CHARS of an answer, and is told it was cut.
    session = NetmikoSession("fw", FloodingDevice({}), masker, timeout=5)
    big = "{" + "x" * (3 * ANSWER_MAX_CHARS) + "}"
    session.connection.send_command = lambda command, **kwargs: big
    read = session.send("nft -j list set inet soc block4", phase="check")
    assert read.startswith(big[:ANSWER_MAX_CHARS]) and read[ANSWER_MAX_CHARS:] == cut_marker(len(big),
                                                                                             ANSWER_MAX_CHARS)
    [exchange] = session.take()
    assert len(exchange.answer) == TRANSCRIPT_MAX_CHARS + len(cut_marker(len(big), TRANSCRIPT_MAX_CHARS))
