"""The fast extractor against the reference one (full scapy dissection and scapy's DNS/HTTP/TLS layers): the same
records, file by file, over the whole pcap corpus. The reference reads every header and hello independently of
the struct parsers, so any field the fast path gets wrong shows up as a difference here."""

from __future__ import annotations

import json
import logging
from collections import Counter

import pytest

from tests.conftest import CORPUS
from collectors.packets.naive import naive_records
from collectors.packets.pcap import iter_pcap_records

CAPTURES = sorted(p for p in (CORPUS / "pcap").rglob("*.pcap*") if p.is_file())


def _canonical(docs, payload_dir) -> Counter:
    prefix = json.dumps(str(payload_dir))[1:-1]
    return Counter(json.dumps(d, sort_keys=True).replace(prefix, "<payloads>") for d in docs)


@pytest.fixture(scope="module", autouse=True)
def quiet_scapy():
    logger = logging.getLogger("scapy")
    level = logger.level
    logger.setLevel(logging.ERROR)
    yield
    logger.setLevel(level)


def test_corpus_is_there():
    assert len(CAPTURES) > 100, f"pcap corpus missing under {CORPUS / 'pcap'}"


@pytest.mark.parametrize("capture", CAPTURES, ids=lambda p: str(p.relative_to(CORPUS / "pcap")))
def test_fast_and_reference_records_are_identical(capture, tmp_path):
    fast = _canonical(iter_pcap_records(capture, tmp_path / "fast"), tmp_path / "fast")
    reference = _canonical(naive_records(capture, tmp_path / "ref"), tmp_path / "ref")
    only_fast, only_reference = fast - reference, reference - fast
    assert not only_fast and not only_reference, (
        f"fast only: {list(only_fast)[:2]}\nreference only: {list(only_reference)[:2]}")
    assert sorted(p.name for p in (tmp_path / "fast").rglob("*") if p.is_file()) == \
        sorted(p.name for p in (tmp_path / "ref").rglob("*") if p.is_file())


def test_corpus_yields_every_record_type():
    seen = Counter()
    for capture in CAPTURES:
        seen.update(d["event"]["dataset"] for d in iter_pcap_records(capture))
    assert {"network.flow", "network.dns", "network.http", "network.tls", "network.ftp"} <= set(seen)
    assert seen["network.flow"] > 500 and seen["network.dns"] > 400 and seen["network.http"] > 200
