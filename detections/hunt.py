"""Offline hunting, like Hayabusa or Zircolite: Sigma rules over EVTX files, folders and JSON lines.

Events are read with the ``evtx`` package (a Rust EVTX parser) or as JSON lines (an EVTX record as JSON, a
Winlogbeat/ECS document, or a flat object of fields), shown to the rules as soc/windows.py and logsource.py describe,
and matched by the same engine the live pipeline uses. Single-event rules only: SigmaHQ's rule packs hold no
correlations, and a hunt spread over worker processes by file cannot see across files.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from detections.engine import DetectionEngine
from detections.sigma.logsource import ecs_routing_key, view_of
from soc.windows import routing_key, view_from_evtx

log = logging.getLogger(__name__)

HUNTABLE = (".evtx", ".json", ".jsonl", ".ndjson")


@dataclass
class HuntEvent:
    view: dict[str, Any]
    key: tuple
    source: str  # file path
    record: int | None  # EVTX record id or line number
    timestamp: str | None


@dataclass
class HuntError:
    source: str
    record: int | None
    reason: str


def hunt_files(paths: list[str | Path]) -> list[Path]:
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in HUNTABLE))
        elif p.exists():
            files.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such file or folder")
    return files


def _evtx_events(path: Path, errors: list[HuntError]) -> Iterator[HuntEvent]:
    import evtx

    try:
        # One thread per parser: hunting runs one worker process per core already.
        parser = evtx.PyEvtxParser(str(path), number_of_threads=1)
        records = parser.records_json()
    except (OSError, RuntimeError) as exc:
        errors.append(HuntError(str(path), None, f"cannot read EVTX: {exc}"))
        return
    while True:
        try:
            record = next(records)
        except StopIteration:
            return
        except (RuntimeError, OSError) as exc:  # a damaged chunk: report it, keep what was read
            errors.append(HuntError(str(path), None, f"damaged EVTX record: {exc}"))
            return
        try:
            view = view_from_evtx(json.loads(record["data"]))
        except (ValueError, KeyError, TypeError) as exc:
            errors.append(HuntError(str(path), record.get("event_record_id"), f"bad record: {exc}"))
            continue
        yield HuntEvent(view, routing_key(view), str(path), record.get("event_record_id"),
                        record.get("timestamp"))


def _json_events(path: Path, errors: list[HuntError]) -> Iterator[HuntEvent]:
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                doc = json.loads(raw)
                if not isinstance(doc, dict):
                    raise ValueError("a line must hold a JSON object")
            except ValueError as exc:
                errors.append(HuntError(str(path), number, f"not a JSON object: {exc}"))
                continue
            if "Event" in doc and isinstance(doc["Event"], dict):
                view = view_from_evtx(doc)
                key = routing_key(view)
            elif "winlog" in doc or "@timestamp" in doc or "event" in doc:
                view, key = view_of(doc)
            else:  # a flat object of Windows fields (Zircolite's JSON input)
                view = doc
                key = routing_key(view) if "Channel" in doc else ecs_routing_key(view)
            yield HuntEvent(view, key, str(path), number, view.get("TimeCreated") or doc.get("@timestamp"))


def iter_events(files: list[Path], errors: list[HuntError]) -> Iterator[HuntEvent]:
    for path in files:
        if path.suffix.lower() == ".evtx":
            yield from _evtx_events(path, errors)
        else:
            yield from _json_events(path, errors)


def detection_record(rule, event: HuntEvent, with_event: bool = True) -> dict:
    meta = rule.meta
    out = {
        "rule": {"id": meta.id, "title": meta.title, "level": meta.level, "tags": meta.tags},
        "attack": {"tactics": meta.tactics, "techniques": meta.techniques},
        "file": event.source,
        "record_id": event.record,
        "timestamp": event.timestamp,
    }
    if with_event:
        out["event"] = event.view
    return out


def hunt(engine: DetectionEngine, files: list[Path], errors: list[HuntError],
         on_event: Callable[[HuntEvent], None] | None = None) -> Iterator[tuple[Any, HuntEvent]]:
    """Yield (rule, event) for every match of a single-event rule."""
    for event in iter_events(files, errors):
        if on_event:
            on_event(event)
        for rule in engine.match(event.view, event.key):
            yield rule, event


# --- parallel hunting: files are independent, so workers (forked after the rules are loaded) take one each ---------
_WORKER_ENGINE: DetectionEngine | None = None


def _hunt_one(path: Path) -> tuple[str, int, list[tuple[int, HuntEvent]], list[HuntError]]:
    engine = _WORKER_ENGINE
    if engine is None:
        raise RuntimeError("a hunt worker runs only after its initializer built the engine")
    index = {id(rule): i for i, rule in enumerate(engine.ruleset.rules)}
    errors: list[HuntError] = []
    found, events = [], 0
    for event in iter_events([path], errors):
        events += 1
        for rule in engine.match(event.view, event.key):
            found.append((index[id(rule)], event))
    return str(path), events, found, errors


def hunt_parallel(engine: DetectionEngine, files: list[Path], errors: list[HuntError], workers: int,
                  on_file: Callable[[str, int], None] | None = None) -> Iterator[tuple[Any, HuntEvent]]:
    """Like hunt(), over ``workers`` processes; detections come out in file order."""
    global _WORKER_ENGINE
    if workers <= 1 or len(files) < 2:
        counts: dict[str, int] = {}

        def count(event: HuntEvent) -> None:
            counts[event.source] = counts.get(event.source, 0) + 1

        for rule, event in hunt(engine, files, errors, count):
            yield rule, event
        for path in files:
            if on_file:
                on_file(str(path), counts.get(str(path), 0))
        return
    import multiprocessing

    _WORKER_ENGINE = engine
    # Largest files first keeps the workers busy to the end; results are put back in file order.
    order = sorted(range(len(files)), key=lambda i: -files[i].stat().st_size)
    results: dict[int, tuple] = {}
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        for i, result in zip(order, pool.imap(_hunt_one, [files[i] for i in order], chunksize=1)):
            results[i] = result
            if on_file:
                on_file(result[0], result[1])
    _WORKER_ENGINE = None
    for i in range(len(files)):
        _, _, found, file_errors = results[i]
        errors.extend(file_errors)
        for rule_index, event in found:
            yield engine.ruleset.rules[rule_index], event
