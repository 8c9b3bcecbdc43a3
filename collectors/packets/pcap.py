"""Capture files to ECS records: the entry point for the CLI and for file ingest.

``iter_pcap_records(path)`` yields every record; a capture damaged part-way yields the records of the packets
before the damage (flows included) and then raises PcapReadError saying where and why.
"""

from __future__ import annotations

import os
from typing import Callable, Iterator

from collectors.packets.dissectors import FAST
from collectors.packets.extractor import Extractor
from collectors.packets.headers import decode
from collectors.packets.payloads import ExtractedPayload, PayloadStore
from collectors.packets.reader import FrameReader, PcapReadError

PROGRESS_EVERY = 512  # frames between two progress calls
CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".cap", ".dmp", ".pcap.gz", ".pcapng.gz")


def capture_files(paths) -> list:
    """The files named, with folders replaced by the capture files under them (sorted)."""
    from pathlib import Path

    out = []
    for path in map(Path, paths):
        if path.is_dir():
            out += sorted(p for p in path.rglob("*") if p.is_file() and p.name.lower().endswith(CAPTURE_SUFFIXES))
        else:
            out.append(path)
    return out


class PcapExtraction:
    """One capture file's extraction; after ``records()`` is consumed, ``extracted_payloads`` lists the extracted
    bodies (paths and metadata, for YARA scanning) and ``stats`` counts packets and records."""

    def __init__(self, path: str | os.PathLike, payload_dir: str | os.PathLike | None = None) -> None:
        self.path = str(path)
        self.extractor = Extractor(FAST, PayloadStore(payload_dir), log_path=self.path)
        self.error: PcapReadError | None = None

    @property
    def extracted_payloads(self) -> list[ExtractedPayload]:
        return self.extractor.extracted_payloads

    @property
    def stats(self):
        return self.extractor.stats

    def records(self, progress: Callable[[int], None] | None = None) -> Iterator[dict]:
        """Records as they complete; ``progress(bytes_read)`` is called now and then."""
        extractor = self.extractor
        stats = extractor.stats
        with FrameReader(self.path) as reader:
            countdown = PROGRESS_EVERY
            try:
                for ts, linktype, frame in reader:
                    pkt = decode(linktype, frame, ts)
                    if pkt is None:
                        stats["frames_not_ip"] += 1
                    else:
                        extractor.packet(pkt)
                        if extractor.out:
                            yield from extractor.drain()
                    countdown -= 1
                    if progress is not None and countdown <= 0:
                        countdown = PROGRESS_EVERY
                        progress(reader.position())
            except PcapReadError as exc:
                self.error = exc
            stats["frames"] = reader.frames
        extractor.finish()
        yield from extractor.drain()
        if progress is not None:
            progress(os.path.getsize(self.path))
        if self.error is not None:
            raise self.error


def iter_pcap_records(path: str | os.PathLike, payload_dir: str | os.PathLike | None = None) -> Iterator[dict]:
    """ECS records (network.flow, network.dns, network.http, network.tls) of one pcap or pcapng file. HTTP bodies
    are written under ``payload_dir`` (content-addressed) when it is given, and referenced by ``file.*``."""
    return PcapExtraction(path, payload_dir).records()
