"""The disk spool (collectors/spool.py): records survive the death of the process, in order, once each; torn tails
are cut; commits delete finished segments; the bound is reported; one process per spool directory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from datetime import datetime, timezone

import pytest

from collectors.message import RawMessage
from collectors.spool import Spool, SpoolError, decode, encode


def _msg(i: int, **extra) -> RawMessage:
    return RawMessage(data=f"<13>Nov 22 10:00:00 host app: message {i}".encode(), transport="tcp",
                      peer="10.20.10.10", peer_port=514 + i % 7, **extra)


def test_a_record_keeps_every_field():
    received = datetime(2026, 11, 22, 10, 0, 1, 123456, tzinfo=timezone.utc)
    original = RawMessage(data=b"\xff\x00not utf-8 \xe1", transport="http", peer="2001:db8::1", peer_port=65535,
                          received=received, truncated=True, agency="so-tttt", sender_name="fw01.so-tttt.gov.vn",
                          format="json", origin="/var/log/ünicode/" + "x" * 300 + ".log:12")
    payload = memoryview(encode(original))[8:]
    assert decode(payload) == original


def test_read_commit_and_segments_roll_and_go(tmp_path):
    spool = Spool(tmp_path, segment_bytes=64 * 1024, max_bytes=10 << 20, buffer_bytes=8192)
    for i in range(3000):
        spool.append(_msg(i))
    spool.flush()
    segments = sorted(p.name for p in tmp_path.glob("*.seg"))
    assert len(segments) > 2  # ~200 KB in 64 KB segments
    seen = []
    while len(seen) < 3000:
        batch = spool.read(500, timeout=1)
        assert batch, "the reader stopped before the end"
        seen.extend(batch)
        spool.commit(spool.read_position, len(batch))
    assert [m.data for m in seen] == [_msg(i).data for i in range(3000)]
    assert spool.depth() == 0 and spool.pending_bytes == 0
    assert len(list(tmp_path.glob("*.seg"))) == 1  # only the segment still being written is left
    assert spool.read(10, timeout=0.05) == []
    spool.close()


def test_uncommitted_records_are_replayed_after_a_restart_and_committed_ones_are_not(tmp_path):
    spool = Spool(tmp_path)
    for i in range(100):
        spool.append(_msg(i))
    spool.flush()
    first = spool.read(40, timeout=1)
    spool.commit(spool.read_position, len(first))
    spool.read(30, timeout=1)  # read, "processed", but the store never confirmed: must come again
    spool.close()

    again = Spool(tmp_path)
    assert again.recovered_records == 60 and again.depth() == 60
    replayed = again.read(1000, timeout=1)
    assert [m.data for m in replayed] == [_msg(i).data for i in range(40, 100)]
    again.close()


def test_a_torn_tail_is_cut_and_counted(tmp_path):
    spool = Spool(tmp_path)
    for i in range(10):
        spool.append(_msg(i))
    spool.flush()
    spool.close()
    last = sorted(tmp_path.glob("*.seg"))[-1]
    whole = last.stat().st_size
    record = encode(_msg(10))
    with open(last, "ab") as handle:
        handle.write(record[: len(record) // 2])  # the process died in the middle of this write
    again = Spool(tmp_path)
    assert last.stat().st_size == whole
    assert [m.data for m in again.read(100, timeout=1)] == [_msg(i).data for i in range(10)]
    again.close()


def test_a_damaged_record_is_not_passed_on_as_data(tmp_path):
    spool = Spool(tmp_path)
    for i in range(5):
        spool.append(_msg(i))
    spool.flush()
    spool.close()
    last = sorted(tmp_path.glob("*.seg"))[-1]
    data = bytearray(last.read_bytes())
    data[-3] ^= 0xFF  # the last record's checksum no longer matches
    last.write_bytes(bytes(data))
    again = Spool(tmp_path)
    assert [m.data for m in again.read(100, timeout=1)] == [_msg(i).data for i in range(4)]
    again.close()


def test_the_bound_is_reported_and_a_commit_frees_it(tmp_path):
    spool = Spool(tmp_path, max_bytes=64 * 1024)
    i = 0
    while not spool.full():
        spool.append(_msg(i))
        i += 1
    assert 64 * 1024 <= spool.pending_bytes < 64 * 1024 + 200
    spool.flush()
    batch = spool.read(10_000, timeout=1)
    spool.commit(spool.read_position, len(batch))
    assert not spool.full() and spool.pending_bytes == 0
    spool.close()


def test_one_process_per_spool_directory(tmp_path):
    first = Spool(tmp_path)
    with pytest.raises(SpoolError, match="in use by another collector process"):
        Spool(tmp_path)
    first.close()
    Spool(tmp_path).close()  # free again once the first is closed


WRITER = textwrap.dedent("""
    import sys
    from collectors.message import RawMessage
    from collectors.spool import Spool
    spool = Spool(sys.argv[1], segment_bytes=256 * 1024)
    i = 0
    while True:
        for _ in range(100):
            spool.append(RawMessage(data=b"message %d" % i, transport="tcp", peer="10.0.0.1"))
            i += 1
        spool.flush()
        print(i, flush=True)
""")


def test_everything_flushed_survives_kill_9(tmp_path):
    """A real process appends and flushes; SIGKILL it mid-stream: every flushed record is there, in order, once."""
    spool_dir = tmp_path / "spool"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(spool_dir)], stdout=subprocess.PIPE, text=True,
                            cwd=os.path.dirname(os.path.dirname(__file__)))
    flushed = 0
    try:
        for line in proc.stdout:
            flushed = int(line)
            if flushed >= 30_000:
                break
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=10)
        proc.stdout.close()
    assert flushed >= 30_000
    spool = Spool(spool_dir)
    records = []
    while batch := spool.read(10_000, timeout=0.1):
        records.extend(batch)
    spool.close()
    assert len(records) >= flushed  # the writer may have flushed more after its last report
    assert [m.data for m in records] == [b"message %d" % i for i in range(len(records))]
