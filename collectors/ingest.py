"""`soc ingest PATH...`: files into the suite offline — the same pipeline, store and detections as live input.

EVTX files become Winlogbeat documents (soc/windows.py) sent through the JSON pipeline, JSON lines
(``.json``, ``.jsonl``, ``.ndjson``) one document per line, any other file one line at a time through the syslog
pipeline (a line without <PRI> is fine) or the parser named by ``--format``. Messages go to ``Suite.process`` in
batches. A file that cannot be read, or an EVTX file that is damaged, is reported and the run goes on with the next
one; what was read of it is kept. Unparseable records become dead letters with the file and line as their source.
Event ids derive from the agency (or none), the time and the record, so ingesting a file again stores nothing twice.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from collectors.message import RawMessage

JSON_SUFFIXES = (".json", ".jsonl", ".ndjson")
# Extensions the offline run must not start: containment playbooks for historic events.
OFFLINE_SKIPPED_EXTENSIONS = ("playbooks.service",)


class FileFailed(Exception):
    """A file that cannot be read (or not to its end); the message says why."""


@dataclass
class FileReport:
    path: str
    kind: str  # evtx | json | lines
    records: int = 0
    bytes: int = 0
    error: str | None = None


@dataclass
class IngestSummary:
    files: list[FileReport] = field(default_factory=list)
    events: int = 0
    dead_letters: Counter = field(default_factory=Counter)  # reason kind -> count
    alerts: dict[str, str] = field(default_factory=dict)  # alert id -> rule title

    @property
    def failed(self) -> list[FileReport]:
        return [f for f in self.files if f.error]


def expand(paths: list[str]) -> tuple[list[Path], list[FileReport]]:
    """Files of the paths (folders walked, sorted); paths that do not exist are reported, not fatal."""
    files: list[Path] = []
    missing: list[FileReport] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.is_file()))
        elif path.exists():
            files.append(path)
        else:
            missing.append(FileReport(str(path), "-", error="no such file or folder"))
    return files, missing


def kind_of(path: Path) -> str:
    suffix = path.suffix.lower()
    return "evtx" if suffix == ".evtx" else "json" if suffix in JSON_SUFFIXES else "lines"


def evtx_messages(path: Path, agency: str, report: FileReport) -> Iterator[RawMessage]:
    import evtx

    from soc.windows import winlogbeat_from_evtx

    try:
        records = evtx.PyEvtxParser(str(path), number_of_threads=1).records_json()
    except (OSError, RuntimeError, ValueError) as exc:
        raise FileFailed(f"cannot read EVTX: {exc}") from exc
    while True:
        try:
            record = next(records)
        except StopIteration:
            return
        except (OSError, RuntimeError, ValueError) as exc:  # a damaged chunk: what was read is kept
            raise FileFailed(f"damaged EVTX after {report.records} records: {exc}") from exc
        number = record.get("event_record_id")
        try:
            doc = winlogbeat_from_evtx(json.loads(record["data"]))
            data = json.dumps(doc, ensure_ascii=False, sort_keys=True).encode("utf-8")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            # The record's own JSON goes to the pipeline as it is: it becomes a dead letter with the reason.
            data = str(record.get("data", "")).encode("utf-8", "surrogateescape") or f"{exc}".encode()
        report.records += 1
        yield RawMessage(data=data, transport="file", format="json", agency=agency,
                         origin=f"{path}#record {number}")


def line_messages(path: Path, fmt: str, agency: str, report: FileReport,
                  advance: Callable[[int], None]) -> Iterator[RawMessage]:
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise FileFailed(f"cannot read: {exc.strerror or exc}") from exc
    with handle:
        number = 0
        while True:
            try:
                raw = handle.readline()
            except OSError as exc:
                raise FileFailed(f"read failed after line {number}: {exc.strerror or exc}") from exc
            if not raw:
                return
            number += 1
            report.bytes += len(raw)
            advance(len(raw))
            if not raw.strip():
                continue
            report.records += 1
            yield RawMessage(data=raw.rstrip(b"\r\n"), transport="file", format=fmt, agency=agency,
                             origin=f"{path}:{number}")


def messages_of(path: Path, fmt: str | None, agency: str, report: FileReport,
                advance: Callable[[int], None]) -> Iterator[RawMessage]:
    if report.kind == "evtx":
        yield from evtx_messages(path, agency, report)
    elif report.kind == "json":
        yield from line_messages(path, fmt or "json", agency, report, advance)
    else:
        yield from line_messages(path, fmt or "syslog", agency, report, advance)


def dead_letter_counts() -> Counter:
    """Dead letters counted so far in this process, by reason (the pipeline and the suite count every one)."""
    from soc import metrics

    counts: Counter = Counter()
    for family in metrics.DEAD_LETTERS.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                counts[sample.labels.get("reason", "?")] += int(sample.value)
    return counts


def ingest(suite, files: list[Path], *, fmt: str | None, agency: str, batch_size: int,
           on_file: Callable[[FileReport, int | None], None] | None = None,
           on_progress: Callable[[FileReport, int], None] | None = None,
           summary: IngestSummary | None = None) -> IngestSummary:
    """Every file through ``suite.process`` in batches; returns what was stored, dead-lettered and raised."""
    summary = summary or IngestSummary()
    before = dead_letter_counts()

    def flush(batch: list[RawMessage]) -> None:
        if not batch:
            return
        outcome = suite.process(batch)
        summary.events += len(outcome.events)
        for alert in outcome.alerts:
            summary.alerts[alert.get("id")] = (alert.get("rule") or {}).get("title") or alert.get("summary", "")
        batch.clear()

    for path in files:
        report = FileReport(str(path), kind_of(path))
        summary.files.append(report)
        try:
            size = path.stat().st_size
        except OSError:
            size = None
        if on_file:
            on_file(report, size if report.kind != "evtx" else None)
        batch: list[RawMessage] = []

        def advance(n: int, report=report) -> None:
            if on_progress:
                on_progress(report, n)

        try:
            for msg in messages_of(path, fmt, agency, report, advance):
                batch.append(msg)
                if report.kind == "evtx" and on_progress:
                    on_progress(report, 0)
                if len(batch) >= batch_size:
                    flush(batch)
        except FileFailed as exc:
            report.error = str(exc)
        finally:
            flush(batch)  # what was read of a failed file is kept
    after = dead_letter_counts()
    summary.dead_letters.update({reason: after[reason] - before.get(reason, 0) for reason in after
                                 if after[reason] - before.get(reason, 0) > 0})
    return summary
