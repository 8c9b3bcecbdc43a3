"""Bad input to the packet extractor: damaged capture files give the records before the damage and a clear error;
random and mutated bytes never make a parser raise."""

from __future__ import annotations

import json
import struct

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from tests.conftest import CORPUS
from tests.packet_builders import Conversation, write_pcapng

from collectors.packets import dns, dns_wire, headers, http, tls
from collectors.packets.extractor import Extractor
from collectors.packets.pcap import PcapExtraction, iter_pcap_records
from collectors.packets.reader import FrameReader, PcapReadError

SAMPLE = CORPUS / "pcap" / "http-protocol-inspect-v2" / "http.pcap"  # DNS and HTTP, 43 packets


def record_offsets(data: bytes) -> list[int]:
    """Where each record of a little-endian pcap starts (and where the file ends)."""
    offsets, pos = [], 24
    while pos + 16 <= len(data):
        offsets.append(pos)
        pos += 16 + struct.unpack_from("<I", data, pos + 8)[0]
    return offsets + [pos]


def strip_path(docs):
    for doc in docs:
        doc.pop("log", None)
    return [json.dumps(d, sort_keys=True) for d in docs]


def read_all(path):
    """(records, error) of a capture."""
    docs = []
    try:
        for doc in iter_pcap_records(path):
            docs.append(doc)
    except PcapReadError as exc:
        return docs, exc
    return docs, None


def test_sample_has_what_the_damage_tests_need():
    docs, error = read_all(SAMPLE)
    assert error is None
    assert {"network.dns", "network.http", "network.flow"} <= {d["event"]["dataset"] for d in docs}


@pytest.mark.parametrize("cut", ["inside_data", "inside_header"])
def test_truncated_capture_gives_records_before_damage_and_error(tmp_path, cut):
    data = SAMPLE.read_bytes()
    offsets = record_offsets(data)
    keep = len(offsets) * 2 // 3  # whole records kept
    boundary = offsets[keep]
    (tmp_path / "whole.pcap").write_bytes(data[:boundary])
    damaged = data[:boundary + (16 + 5 if cut == "inside_data" else 7)]
    (tmp_path / "cut.pcap").write_bytes(damaged)

    expected, error = read_all(tmp_path / "whole.pcap")
    assert error is None and expected
    docs, error = read_all(tmp_path / "cut.pcap")
    assert strip_path(docs) == strip_path(expected)  # every record of the packets before the damage, flows too
    assert isinstance(error, PcapReadError) and error.frames == keep and error.offset == boundary
    assert ("truncated record" if cut == "inside_data" else "truncated") in error.reason


def test_corrupt_record_header_stops_with_reason(tmp_path):
    data = bytearray(SAMPLE.read_bytes())
    offsets = record_offsets(bytes(data))
    struct.pack_into("<I", data, offsets[5] + 8, 0x7FFFFFF0)  # captured length: absurd
    (tmp_path / "bad.pcap").write_bytes(bytes(data))
    docs, error = read_all(tmp_path / "bad.pcap")
    assert error is not None and "corrupt record header" in error.reason and error.frames == 5
    assert any(d["event"]["dataset"] == "network.flow" for d in docs)


def test_truncated_pcapng_is_reported(tmp_path):
    c = Conversation()
    packets = c.handshake() + c.data(True, b"GET /ng HTTP/1.1\r\nHost: ng\r\n\r\n") + c.close()
    write_pcapng(tmp_path / "a.pcapng", packets)
    data = (tmp_path / "a.pcapng").read_bytes()
    (tmp_path / "cut.pcapng").write_bytes(data[:-30])
    docs, error = read_all(tmp_path / "cut.pcapng")
    assert error is not None and "unread" in error.reason
    assert any(d["event"]["dataset"] == "network.http" for d in docs)


@pytest.mark.parametrize("content", [b"", b"hello, this is not a capture\n", b"\xd4\xc3\xb2\xa1\x02\x00"])
def test_not_a_capture(tmp_path, content):
    (tmp_path / "x.pcap").write_bytes(content)
    docs, error = read_all(tmp_path / "x.pcap")
    assert docs == [] and error is not None and str(tmp_path / "x.pcap") in str(error)


def test_missing_file():
    with pytest.raises(PcapReadError, match="cannot open"):
        list(iter_pcap_records("/nonexistent/capture.pcap"))


# --- fuzzing --------------------------------------------------------------------------------------------------------

def _frames():
    frames = []
    for capture in sorted((CORPUS / "pcap").rglob("*.pcap"))[::9]:
        with FrameReader(capture) as reader:
            for i, (ts, linktype, frame) in enumerate(reader):
                if i % 7 == 0:
                    frames.append((linktype, frame))
    return frames


FRAMES = _frames()
LINKTYPES = st.sampled_from([0, 1, 12, 14, 101, 108, 113, 228, 229, 276, 147])


@st.composite
def mutated_frames(draw):
    linktype, frame = draw(st.sampled_from(FRAMES))
    frame = bytearray(frame)
    for _ in range(draw(st.integers(0, 6))):
        if frame:
            frame[draw(st.integers(0, len(frame) - 1))] = draw(st.integers(0, 255))
    cut = draw(st.integers(0, len(frame)))
    return draw(st.one_of(st.just(linktype), LINKTYPES)), bytes(frame[:cut] if draw(st.booleans()) else frame)


FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(LINKTYPES, st.binary(max_size=200))
def test_header_decoder_never_raises_on_random_bytes(linktype, frame):
    pkt = headers.decode(linktype, frame, 0)
    assert pkt is None or pkt.ip_version in (4, 6)


@FUZZ
@given(st.lists(mutated_frames(), min_size=1, max_size=25))
def test_whole_pipeline_never_raises_on_mutated_frames(frames):
    extractor = Extractor()
    for i, (linktype, frame) in enumerate(frames):
        pkt = headers.decode(linktype, frame, i * 1000)
        if pkt is not None:
            assert len(pkt.payload) <= len(frame)
            extractor.packet(pkt)
    extractor.finish()
    for doc in extractor.drain():
        json.dumps(doc)  # every record serialises


@FUZZ
@given(st.binary(max_size=300))
def test_application_parsers_never_raise(data):
    tls.parse_client_hello(b"\x01" + data)
    tls.parse_server_hello(b"\x02" + data)
    tls.HandshakeReader().feed(b"\x16\x03\x01" + data)
    dns.parse_message(data)
    try:
        dns_wire.parse(data)
    except dns_wire.Unusual:
        pass
    head = http.parse_head(data)
    assert head is None or len(head.first) == 3
    stream = http.MessageStream(lambda raw: (http.CHUNKED, 0), lambda body: None)
    stream.feed(b"HTTP/1.1 200 OK\r\n\r\n" + data)
    stream.close()


@FUZZ
@given(st.data())
def test_mutated_capture_files_end_cleanly(tmp_path_factory, data):
    raw = bytearray(SAMPLE.read_bytes()[:3000])
    for _ in range(data.draw(st.integers(1, 8))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    path = tmp_path_factory.mktemp("fuzz") / "m.pcap"
    path.write_bytes(bytes(raw[:data.draw(st.integers(0, len(raw)))]))
    try:
        for doc in PcapExtraction(path).records():
            json.dumps(doc)
    except PcapReadError as exc:
        assert exc.reason
