"""`soc field scan`: the suite's own detection code run locally over what the case holds; no network, no store.

* Sigma over EVTX files through detections/hunt.py (what `soc hunt` runs), as a library;
* Sigma over log files: each line made an ECS document by the suite's parsers (collectors/parsers, as `soc parse`),
  written to derived/ as JSON lines, and hunted the same way;
* pcaps: decoded to ECS records by collectors/packets (as `soc pcap`), written to derived/, and hunted too;
* indicators: an indicators export (STIX 2.1 bundle, MISP export or a plain list) given with --indicators, loaded
  into the suite's IndicatorIndex and probed by its IndicatorMatcher with every derived document and every EVTX
  event's addresses, names and hashes;
* YARA over every collected file with the suite's compiled rules (detections/yara), when rule folders are given.

Every detection names the evidence file and the record (EVTX EventRecordID, line number of a log file, record
number of a pcap) that caused it; the timeline is written as timeline.jsonl and timeline.csv, in event time.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

from field.case import DERIVED, MANIFEST, TIMELINE_CSV, TIMELINE_JSONL, open_case, replace_file
from field.collect import collected
from field.errors import FieldError

_PCAP_DERIVED: set[str] = set()  # derived files made from pcaps (their records are numbered, not lines)
COLUMNS = ("timestamp", "source", "level", "rule", "rule_id", "evidence", "record", "sha256", "details")
_IP = re.compile(r"^(?:\d{1,3}\.){3}\d{1,3}$|^[0-9a-fA-F:]*:[0-9a-fA-F:.]+$")
_HASH = re.compile(r"(?:^|[=,\s])(?:MD5|SHA1|SHA256|IMPHASH)=([0-9A-Fa-f]{32,64})", re.I)
EVTX_ADDRESS_FIELDS = ("IpAddress", "SourceIp", "DestinationIp", "SourceAddress", "DestAddress", "ClientAddress")
EVTX_NAME_FIELDS = ("DestinationHostname", "QueryName", "SourceHostname")


@dataclass
class ScanReport:
    detections: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what was not run and why, what failed
    events: int = 0
    unreadable: int = 0


class _Stage:
    """A progress task, or nothing."""

    def __init__(self, progress, description: str, total: int | None):
        self.progress = progress
        self.task = progress.add_task(description, total=total) if progress is not None else None

    def advance(self, n: int = 1) -> None:
        if self.task is not None:
            self.progress.advance(self.task, n)

    def done(self) -> None:
        if self.task is not None:
            task = self.progress.tasks[self.task]
            self.progress.update(self.task, completed=task.total or 1, total=task.total or 1)


class _Derived:
    """A derived file written as it is made (not held in memory): a new temporary file, renamed over the old one
    when complete, never written through a link."""

    def __init__(self, target: Path):
        self.target, self.tmp = target, target.with_name(target.name + ".tmp")

    def __enter__(self):
        try:
            os.unlink(self.tmp)
        except FileNotFoundError:
            pass
        fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        self.fh = open(fd, "w", encoding="utf-8", errors="backslashreplace")
        return self.fh

    def __exit__(self, kind, exc, tb):
        self.fh.close()
        if kind is None:
            os.replace(self.tmp, self.target)
        else:
            os.unlink(self.tmp)
        return False


def _json_default(value):
    """As `soc parse` writes a document: times as ISO 8601 UTC, anything else as text."""
    if isinstance(value, datetime):
        from soc import ecs

        return ecs.utc_iso(value)
    return str(value)


def _derive_logs(case_dir: Path, entries: list[dict], zone, report: ScanReport) -> dict[str, tuple[str, list[int]]]:
    """Each log file's lines as ECS documents (JSON lines under derived/); derived path -> (evidence, line numbers)."""
    from collectors.message import ParseError
    from collectors.parsers.registry import ParseContext, parse_record

    out = {}
    ctx = ParseContext(zone=zone, received=datetime.now(timezone.utc))
    for entry in entries:
        source = case_dir / entry["path"]
        target = case_dir / DERIVED / (entry["path"].replace("/", "__") + ".ecs.jsonl")
        lines, failed = [], 0
        with _Derived(target) as buf, open(source, encoding="utf-8", errors="surrogateescape") as fh:
            numbered = ((n, raw.rstrip("\r\n")) for n, raw in enumerate(fh, start=1))
            for number, text in numbered:
                if not text.strip():
                    continue
                try:
                    text.encode("utf-8")
                    doc = parse_record(text, "auto", ctx)
                except (ParseError, UnicodeEncodeError):
                    failed += 1
                    continue
                except Exception:  # a parser bug on one line: counted, the scan goes on
                    failed += 1
                    continue
                buf.write(json.dumps(doc, default=_json_default, ensure_ascii=False) + "\n")
                lines.append(number)
        if failed:
            report.notes.append(f"{entry['path']}: {failed} lines no parser recognised (not matched by Sigma)")
        out[str(target)] = (entry["path"], lines)
    return out


def _derive_pcaps(case_dir: Path, entries: list[dict], report: ScanReport) -> dict[str, tuple[str, list[int]]]:
    from collectors.packets.pcap import PcapExtraction

    out = {}
    for entry in entries:
        target = case_dir / DERIVED / (entry["path"].replace("/", "__") + ".ecs.jsonl")
        extraction = PcapExtraction(case_dir / entry["path"], None)
        numbers = []
        with _Derived(target) as buf:
            try:
                for number, doc in enumerate(extraction.records(), start=1):
                    buf.write(json.dumps(doc, default=_json_default, ensure_ascii=False) + "\n")
                    numbers.append(number)
            except Exception as exc:  # a damaged capture: what was read so far is kept
                report.notes.append(f"{entry['path']}: capture read stopped: {type(exc).__name__}: {exc}")
        if extraction.error is not None:
            report.notes.append(f"{entry['path']}: {extraction.error}")
        out[str(target)] = (entry["path"], numbers)
    return out


def _sha_of(entries: list[dict]) -> dict[str, str]:
    return {e["path"]: e["sha256"] for e in entries}


def _sigma(case_dir, rules, cache_dir, workers, evtx, derived, shas, report, progress) -> None:
    from detections.engine import DetectionEngine
    from detections.hunt import HuntErrors, event_time, hunt_parallel
    from detections.sigma.loader import load_rules
    from detections.timeline import details

    ruleset = load_rules(rules, pipeline="soc", cache_dir=cache_dir, workers=workers)
    report.notes.append(f"Sigma: {ruleset.loaded} rules loaded, {ruleset.failed} failed")
    engine = DetectionEngine(ruleset)
    files = [case_dir / e["path"] for e in evtx] + [Path(p) for p in derived]
    stage = _Stage(progress, "Sigma", sum(f.stat().st_size for f in files) or 1)
    errors = HuntErrors()

    def on_progress(source, events, nbytes, finished):
        report.events += events
        stage.advance(nbytes)

    for rule, event in hunt_parallel(engine, files, errors, workers, on_progress):
        source = str(event.source)
        if source in derived:
            evidence, numbers = derived[source]
            line = numbers[event.line - 1] if event.line and event.line <= len(numbers) else event.line
            record = f"record {line}" if source in _PCAP_DERIVED else f"line {line}"
        else:
            evidence = Path(source).relative_to(case_dir).as_posix()
            record = f"EventRecordID {event.record}"
        meta = rule.meta
        report.detections.append({
            "timestamp": event_time(event.timestamp), "source": "sigma", "level": meta.level, "rule": meta.title,
            "rule_id": meta.id, "evidence": evidence, "record": record, "sha256": shas.get(evidence),
            "details": details(event.view), "techniques": meta.techniques})
    report.unreadable += len(errors)
    if len(errors):
        report.notes.append(f"Sigma: {len(errors)} unreadable records skipped")
    stage.done()


def _load_indicators(path: Path):
    from detections.indicators.feed_formats import FeedDefaults, FeedRefused, parse_misp, parse_plain, \
        parse_stix_bundle
    from detections.indicators.index import IndicatorIndex

    data = path.read_bytes()
    defaults = FeedDefaults(name="field-kit", kind="file")
    try:
        doc = json.loads(data)
    except ValueError:
        doc = None
    try:
        if isinstance(doc, dict) and doc.get("type") == "bundle":
            parsed = parse_stix_bundle(data, defaults)
        elif doc is not None:
            parsed = parse_misp(data, defaults)
        else:
            parsed = parse_plain(data, defaults)
    except FeedRefused as exc:
        raise FieldError(f"--indicators {path}: refused: {exc}") from exc
    index = IndicatorIndex()
    for indicator in parsed.docs:
        index.put(indicator)
    return index, parsed


def _evtx_doc(view: dict) -> dict:
    """The addresses, names and hashes of an EVTX event as the ECS related.* fields the indicator matcher probes."""
    ips, hosts, hashes = [], [], []
    for name in EVTX_ADDRESS_FIELDS:
        value = view.get(name)
        if isinstance(value, str) and _IP.match(value.strip()):
            ips.append(value.strip())
    for name in EVTX_NAME_FIELDS:
        value = view.get(name)
        if isinstance(value, str) and "." in value:
            hosts.append(value.strip().rstrip("."))
    for value in (view.get("Hashes"), view.get("Hash")):
        if isinstance(value, str):
            hashes += [h.lower() for h in _HASH.findall(value)]
    return {"related": {"ip": ips, "hosts": hosts, "hash": hashes}}


def _indicators(case_dir, path, evtx, derived, shas, report, progress) -> None:
    from detections.hunt import HuntErrors, event_time, iter_events
    from detections.indicators.decay import matching
    from detections.indicators.matcher import IndicatorMatcher
    from soc import ecs

    index, parsed = _load_indicators(path)
    report.notes.append(f"indicators: {len(index)} loaded from {path}"
                        + (f", {sum(parsed.refused.values())} refused" if parsed.refused else ""))
    matcher = IndicatorMatcher(SimpleNamespace(index=index))
    now = ecs.now_iso()
    stage = _Stage(progress, "indicators", len(evtx) + len(derived) or 1)

    def add(doc, evidence, record, when):
        for indicator_id, name, value in matcher.hits(doc):
            indicator = index.docs.get(indicator_id)
            if indicator is None or not matching(indicator, now):
                continue
            report.detections.append({
                "timestamp": when, "source": "indicator", "level": "high", "rule": f"Indicator match: "
                f"{indicator.get('name', indicator_id)}", "rule_id": indicator_id, "evidence": evidence,
                "record": record, "sha256": shas.get(evidence), "details": f"{name}={value}", "techniques": []})

    for entry in evtx:
        for event in iter_events([case_dir / entry["path"]], HuntErrors()):
            add(_evtx_doc(event.view), entry["path"], f"EventRecordID {event.record}", event_time(event.timestamp))
        stage.advance()
    for target, (evidence, numbers) in derived.items():
        label = "record" if target in _PCAP_DERIVED else "line"
        with open(target, encoding="utf-8") as fh:
            for i, line in enumerate(fh):
                doc = json.loads(line)
                add(doc, evidence, f"{label} {numbers[i]}", doc.get("@timestamp"))
        stage.advance()
    stage.done()


def _yara(case_dir, rule_dirs, entries, shas, report, progress) -> None:
    from detections.yara.cache import load_pack
    from detections.yara.compiler import RulePackError
    from detections.yara.scanner import Scanner

    try:
        pack = load_pack(rule_dirs, cache_dir=None)
    except RulePackError as exc:
        raise FieldError(f"YARA rules: {exc}") from exc
    report.notes.append(f"YARA: {pack.loaded} rule files, {pack.rule_count} rules, {pack.failed} failed")
    scanner = Scanner(pack)
    stage = _Stage(progress, "YARA", len(entries) or 1)
    for entry in entries:
        result = scanner.scan_file(str(case_dir / entry["path"]))
        for match in result.matches:
            report.detections.append({
                "timestamp": entry["collected_at"], "source": "yara", "level": str(match.meta.get("severity", "high")),
                "rule": match.rule, "rule_id": match.namespace, "evidence": entry["path"], "record": None,
                "sha256": entry["sha256"], "details": ", ".join(s.identifier for s in match.strings[:5]), "techniques": []})
        if result.problem:
            report.notes.append(f"YARA: {entry['path']} not scanned: {result.problem.kind}: {result.problem.reason}")
        stage.advance()
    stage.done()


def scan(case_dir: Path, *, rules: list[Path] | None = None, yara_rules: list[Path] | None = None,
         indicators: Path | None = None, workers: int = 1, cache_dir: Path | None = None, zone=timezone.utc,
         progress=None) -> ScanReport:
    open_case(case_dir)
    if (case_dir / MANIFEST).exists():
        raise FieldError(f"case {case_dir} is sealed: a scan now would change it")
    if indicators is not None and not indicators.is_file():
        raise FieldError(f"--indicators {indicators}: no such file")
    entries = collected(case_dir)
    if not entries:
        raise FieldError(f"case {case_dir}: nothing collected yet (`soc field collect`)")
    by_kind: dict[str, list[dict]] = {}
    for entry in entries:
        by_kind.setdefault(entry["kind"], []).append(entry)
    report = ScanReport()
    shas = _sha_of(entries)
    derived = _derive_logs(case_dir, by_kind.get("log", []), zone, report)
    pcaps = _derive_pcaps(case_dir, by_kind.get("pcap", []), report)
    _PCAP_DERIVED.clear()
    _PCAP_DERIVED.update(pcaps)
    derived.update(pcaps)
    evtx = by_kind.get("evtx", [])
    if rules:
        _sigma(case_dir, rules, cache_dir, workers, evtx, derived, shas, report, progress)
    else:
        report.notes.append("Sigma: no rules given (--rules DIR): not run")
    if indicators is not None:
        _indicators(case_dir, indicators, evtx, derived, shas, report, progress)
    else:
        report.notes.append("indicators: no indicators export given (--indicators FILE): not run")
    if yara_rules:
        _yara(case_dir, yara_rules, entries, shas, report, progress)
    else:
        report.notes.append("YARA: no rules configured (--yara-rules DIR): not run")
    report.detections.sort(key=lambda d: (d["timestamp"] or "", d["evidence"], str(d["record"]), d["rule"]))
    write_timeline(case_dir, report.detections)
    return report


def write_timeline(case_dir: Path, detections: list[dict]) -> None:
    from detections.timeline import csv_cell

    lines = "".join(json.dumps(d, ensure_ascii=False, default=str) + "\n" for d in detections)
    replace_file(case_dir / TIMELINE_JSONL, lines.encode("utf-8", "backslashreplace"))
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(COLUMNS)
    for d in detections:
        writer.writerow([csv_cell(d.get(c)) for c in COLUMNS])
    replace_file(case_dir / TIMELINE_CSV, buf.getvalue().encode("utf-8", "backslashreplace"))
