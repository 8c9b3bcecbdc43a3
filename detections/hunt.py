"""Offline hunting, like Hayabusa or Zircolite: Sigma rules over EVTX files, folders and JSON lines.

Events are read with the ``evtx`` package (a Rust EVTX parser) or as JSON lines (an EVTX record as JSON, a
Winlogbeat/ECS document, or a flat object of fields), shown to the rules as soc/windows.py and logsource.py describe,
and matched by the same engine the live pipeline uses. Single-event rules only: SigmaHQ's rule packs hold no
correlations, and a hunt spread over worker processes by file cannot see across files.

A detection names its event as Event Viewer and every other tool does: ``record_id`` is the record's
``EventRecordID`` (System/EventRecordID), not the number of the record's header in its chunk, which the ``evtx``
package calls ``event_record_id`` and which differs on almost every record of a real log. A JSON line keeps its line
number as ``line`` beside the EventRecordID its document holds.

Detections stream: the single-process hunt yields each as it is found; with worker processes (one file at a time
each, largest files first) a worker sends what it found in small batches, at the latest every FLUSH_SECONDS, through
a pipe of its own that holds little and makes it wait when full, and the parent yields them as they arrive. Nothing
is held until the end, so memory does not grow with the number of records or detections; the order is arrival
order, not file order.

A hunt reads files nobody vouches for, so one record never ends it: a record that cannot be decoded or shown to the
rules (not JSON, nested deeper than MAX_DEPTH, a JSON line longer than MAX_LINE bytes, a shape the views do not
expect, a damaged EVTX record) is a HuntError, counted and reported, and the hunt goes on. Files are handed out by
the parent, a few at a time, over a pipe of each worker's own: no lock is shared, and a worker that dies costs the
file it was reading only (it is reported; the files it was given but had not started go to another worker, and a
new worker takes its place).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from detections.engine import DetectionEngine
from detections.sigma.logsource import ecs_routing_key, view_of
from soc.windows import routing_key, view_from_evtx

log = logging.getLogger(__name__)

HUNTABLE = (".evtx", ".json", ".jsonl", ".ndjson")
MAX_LINE = 8 * 1024 * 1024  # bytes of one JSON line: a longer one is skipped (and reported) without being held
MAX_DEPTH = 64  # nesting of one record's JSON: far beyond any log's, far below what would exhaust the stack later
MAX_REASON = 300  # characters of an error's reason (an exception's text can hold the record's)
BATCH = 64  # detections (or unreadable records) per message from a worker
FLUSH_SECONDS = 0.2  # a worker reports at least this often while it reads (progress, and sparse detections)
CHECK_EVERY = 64  # records between two looks at the clock

# on_progress(file, records read since the last call, bytes read since the last call, the file is done). For an
# EVTX file the bytes are an estimate (from record numbers) until the file is done, when they add up to its size.
Progress = Callable[[str, int, int, bool], None]


@dataclass(slots=True)
class HuntEvent:
    view: dict[str, Any]
    key: tuple
    source: str  # file path
    record: int | str | None  # the Windows EventRecordID, when the event has one
    timestamp: str | None  # the event's time as the event gives it (event_time() makes it ISO 8601 UTC)
    line: int | None = None  # JSON lines: the line number


@dataclass
class HuntError:
    source: str
    record: int | None  # an EVTX record's header number (no EventRecordID could be read), or a line number
    reason: str


class HuntErrors:
    """The records a hunt could not read, all counted and the first ``keep`` kept: a damaged file can hold millions,
    and a hunt's memory must not grow with them. ``len()`` is the count; iterating and indexing see those kept."""

    def __init__(self, keep: int = 1000):
        self.keep, self.total, self.kept = keep, 0, []

    def append(self, error: HuntError) -> None:
        self.total += 1
        if len(self.kept) < self.keep:
            self.kept.append(error)

    def extend(self, errors) -> None:
        for error in errors:
            self.append(error)

    def __len__(self) -> int:
        return self.total

    def __iter__(self):
        return iter(self.kept)

    def __getitem__(self, index):
        return self.kept[index]


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


def record_number(value: Any) -> int | str | None:
    """An EventRecordID as a number (Winlogbeat sends it as text); None when there is none."""
    if value is None or value == "":
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = str(value).strip()
    # ASCII digits only ("²" is a digit to isdigit(), not to int()), and no more than a 64-bit number has
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 20 else text


def event_time(value: Any) -> str | None:
    """An event's time as ISO 8601 in UTC with microseconds ("2022-04-25T22:17:47.058172Z"), so that times of every
    source sort as text. EVTX's SystemTime is UTC; a time without a zone is taken as UTC; one that cannot be read is
    kept as it is."""
    if value is None or value == "":
        return None
    text = str(value).strip()
    if text.endswith(" UTC"):  # the evtx package's record header time
        text = text[:-4]
    try:
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    except (ValueError, OverflowError):  # not a time, or one that leaves the calendar once in UTC (year 1 at +01:00)
        return text


# --- reading ---------------------------------------------------------------------------------------------------------
# What reading or viewing one record may raise on hostile input, beyond ValueError: RecursionError (deep nesting),
# AttributeError and TypeError (a string where an object is expected), MemoryError, and the Rust parser's
# PanicException (a BaseException). All of them cost that record only; an interrupt or an exit still ends the hunt.
_NOT_RECORD_FAILURES = (KeyboardInterrupt, SystemExit, GeneratorExit)


def _reason(what: str, exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        text = f"nested too deeply (more than {MAX_DEPTH} levels of objects and arrays)"
    else:
        text = f"{what}: " + (str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}")
    text = " ".join(text.split())
    return text if len(text) <= MAX_REASON else text[:MAX_REASON - 1] + "…"


def _too_deep(doc: Any, text: str | bytes) -> bool:
    """Whether a decoded record nests objects and arrays deeper than MAX_DEPTH. Counting brackets in its text (in C)
    rules out nearly every record at once; only a record with many of them is walked, without recursion."""
    opening = (b"{", b"[") if isinstance(text, bytes) else ("{", "[")
    if text.count(opening[0]) + text.count(opening[1]) <= MAX_DEPTH:
        return False
    stack = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            return True
        for item in (value.values() if isinstance(value, dict) else value):
            if isinstance(item, (dict, list)):
                stack.append((item, depth + 1))
    return False


class RecordError(ValueError):
    """A record the hunt cannot use (its reason is the message)."""


def _decode(text: str | bytes) -> dict:
    doc = json.loads(text)
    if not isinstance(doc, dict):
        raise RecordError("a line must hold a JSON object")
    if _too_deep(doc, text):
        raise RecursionError
    return doc


class _Position:
    """How far a reader is into its file, in bytes (an estimate for EVTX)."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = 0


def _evtx_span(path: Path) -> tuple[int, int] | None:
    """(the first chunk's first record header number, the file header's next record number): where a record's header
    number falls between them tells how far into the file it is. None when the headers are not there."""
    try:
        with path.open("rb") as fh:
            head = fh.read(4096 + 40)
    except OSError:
        return None
    if len(head) < 4096 + 40 or head[:8] != b"ElfFile\0" or head[4096:4104] != b"ElfChnk\0":
        return None
    following = int.from_bytes(head[24:32], "little")
    first = int.from_bytes(head[4096 + 24:4096 + 32], "little")
    return (first, following) if following > first else None


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _evtx_events(path: Path, errors, position: _Position) -> Iterator[HuntEvent | None]:
    import evtx

    try:
        # One thread per parser: hunting runs one worker process per core already.
        parser = evtx.PyEvtxParser(str(path), number_of_threads=1)
        records = parser.records_json()
    except _NOT_RECORD_FAILURES:
        raise
    except BaseException as exc:  # noqa: BLE001 - OSError, RuntimeError, the parser's PanicException
        errors.append(HuntError(str(path), None, _reason("cannot read EVTX", exc)))
        return
    span, size = _evtx_span(path), _size(path)
    while True:
        try:
            record = next(records)
        except StopIteration:
            return
        except _NOT_RECORD_FAILURES:
            raise
        except BaseException as exc:  # noqa: BLE001 - a damaged chunk: report it, keep what was read
            errors.append(HuntError(str(path), None, _reason("damaged EVTX record", exc)))
            return
        header_number = record.get("event_record_id") if isinstance(record, dict) else None
        if span is not None and isinstance(header_number, int):
            first, following = span
            estimate = size * (header_number - first + 1) // (following - first)
            if position.done < estimate <= size:  # a wrapped log's numbers are not in file order: never go back
                position.done = estimate
        try:
            view = view_from_evtx(_decode(record["data"]))
            event = HuntEvent(view, _hashable(routing_key(view)), str(path), record_number(view.get("EventRecordID")),
                              _text(view.get("TimeCreated") or record.get("timestamp")))
        except _NOT_RECORD_FAILURES:
            raise
        except BaseException as exc:  # noqa: BLE001 - any failure of one record costs that record only
            errors.append(HuntError(str(path), header_number if isinstance(header_number, int) else None,
                                    _reason("bad record", exc)))
            yield None
            continue
        yield event


LINE_BLOCK = 1 << 20  # bytes read at a time of a line longer than this


def _lines(fh, position: _Position) -> Iterator[tuple[int, bytes | bytearray | None]]:
    """(line number, the line) of a binary file; the line is None when it is longer than MAX_LINE bytes: such a line
    is read a block at a time, and what is held of it at once is never much more than MAX_LINE bytes."""
    number = 0
    while True:
        raw = fh.readline(LINE_BLOCK)
        if not raw:
            return
        number += 1
        position.done += len(raw)
        if raw.endswith(b"\n") or len(raw) < LINE_BLOCK:  # nearly every line: whole at once
            yield number, raw
            continue
        line: bytearray | None = bytearray(raw)  # json.loads takes a bytearray: no copy
        while raw and not raw.endswith(b"\n"):
            raw = fh.readline(LINE_BLOCK)
            position.done += len(raw)
            if line is not None:
                line += raw
                if len(line) > MAX_LINE + 1:  # the newline aside
                    line = None  # too long: the rest is read past, not held
        yield number, line


def _json_view(doc: dict) -> tuple[dict[str, Any], tuple, Any]:
    """(the view, its routing key, its time) of one JSON-lines document."""
    if "Event" in doc and isinstance(doc["Event"], dict):
        view = view_from_evtx(doc)
        key = routing_key(view)
    elif "winlog" in doc or "@timestamp" in doc or "event" in doc:
        view, key = view_of(doc)
    else:  # a flat object of Windows fields (Zircolite's JSON input)
        view = doc
        key = routing_key(view) if "Channel" in doc else ecs_routing_key(view)
    when = view.get("TimeCreated") or doc.get("@timestamp") or doc.get("SystemTime") or doc.get("EventTime")
    return view, _hashable(key), _text(when)


def _json_events(path: Path, errors, position: _Position) -> Iterator[HuntEvent | None]:
    try:
        fh = path.open("rb")
    except OSError as exc:
        errors.append(HuntError(str(path), None, _reason("cannot read", exc)))
        return
    with fh:
        lines = _lines(fh, position)
        while True:
            try:
                number, raw = next(lines)
            except StopIteration:
                return
            except OSError as exc:  # a read error: report it, keep what was read
                errors.append(HuntError(str(path), None, _reason("cannot read", exc)))
                return
            if raw is None:
                errors.append(HuntError(str(path), number, f"line longer than {MAX_LINE} bytes: skipped"))
                yield None
                continue
            if not raw.strip():
                continue
            try:
                doc = _decode(raw)
            except _NOT_RECORD_FAILURES:
                raise
            except BaseException as exc:  # noqa: BLE001 - not JSON, not an object, nested too deeply...
                errors.append(HuntError(str(path), number, _reason("not a JSON object", exc)))
                yield None
                continue
            try:
                view, key, when = _json_view(doc)
                event = HuntEvent(view, key, str(path), record_number(view.get("EventRecordID")), when, number)
            except _NOT_RECORD_FAILURES:
                raise
            except BaseException as exc:  # noqa: BLE001 - a shape the views do not expect
                errors.append(HuntError(str(path), number, _reason("bad record", exc)))
                yield None
                continue
            yield event


def _hashable(key: tuple) -> tuple:
    """A routing key the engine can look up: a list where an event id should be raises here, for that record."""
    hash(key)
    return key


def _text(value: Any) -> Any:
    """An event's time as the event gives it, if it is a scalar (a list or an object there is no time)."""
    return value if isinstance(value, (str, int, float)) and not isinstance(value, bool) else None


def _file_events(path: Path, errors, position: _Position) -> Iterator[HuntEvent | None]:
    """A file's events; None for a record that could not be read (it is in ``errors``), so that a reader of a file
    of nothing but damage still gets control back to report and to bound what it holds."""
    if path.suffix.lower() == ".evtx":
        return _evtx_events(path, errors, position)
    return _json_events(path, errors, position)


def iter_events(files: list[Path], errors) -> Iterator[HuntEvent]:
    for path in files:
        for event in _file_events(path, errors, _Position()):
            if event is not None:
                yield event


def detection_record(rule, event: HuntEvent, with_event: bool = True) -> dict:
    meta = rule.meta
    out = {
        "rule": {"id": meta.id, "title": meta.title, "level": meta.level, "tags": meta.tags},
        "attack": {"tactics": meta.tactics, "techniques": meta.techniques},
        "file": event.source,
        "record_id": event.record,
        "timestamp": event_time(event.timestamp),
    }
    if event.line is not None:
        out["line"] = event.line
    if with_event:
        out["event"] = event.view
    return out


def hunt(engine: DetectionEngine, files: list[Path], errors,
         on_event: Callable[[HuntEvent], None] | None = None) -> Iterator[tuple[Any, HuntEvent]]:
    """Yield (rule, event) for every match of a single-event rule."""
    for event in iter_events(files, errors):
        if on_event:
            on_event(event)
        for rule in engine.match(event.view, event.key):
            yield rule, event


def _hunt_here(engine: DetectionEngine, files: list[Path], errors,
               on_progress: Progress | None) -> Iterator[tuple[Any, HuntEvent]]:
    """The hunt in this process, reporting progress within each file."""
    for path in files:
        size, position = _size(path), _Position()
        items = events = told_events = told_bytes = 0
        last = time.monotonic()
        for event in _file_events(path, errors, position):
            items += 1
            if event is not None:
                events += 1
                for rule in engine.match(event.view, event.key):
                    yield rule, event
            if on_progress and not items % CHECK_EVERY and time.monotonic() - last >= FLUSH_SECONDS:
                done = min(position.done, size)
                on_progress(str(path), events - told_events, done - told_bytes, False)
                told_events, told_bytes, last = events, done, time.monotonic()
        if on_progress:
            on_progress(str(path), events - told_events, size - told_bytes, True)


# --- parallel hunting: files are independent, so workers (forked after the rules are loaded) read one at a time ----
# The parent hands the files out, largest first, PREFETCH at a time to each worker, over a pipe to that worker (the
# next file is there when the worker finishes one): no lock or counter is shared, so a worker that dies holds up no
# one. Each worker has a pipe of its own to the parent too and sends on it synchronously: what send() returned from
# is in the pipe, so a worker killed afterwards loses nothing it sent, and a worker killed while sending spoils only
# its own pipe. A full pipe (the kernel's buffer) makes the worker wait: the parent, writing slowly, slows the
# workers, and all in flight is at most a pipe's buffer and one batch per worker. A worker that ends closes its pipe:
# the parent sees the end at once and knows which files it gave it: the first (the one it was reading) is reported,
# the others go back to be handed out, and a new worker is forked in its place.
PREFETCH = 2  # files a worker holds: the one it reads and the next
_SHARED: dict[str, Any] = {}  # set in the parent just before a worker forks, cleared right after


class HuntWorkerError(RuntimeError):
    """A worker process failed; the message is its traceback."""


def _worker() -> None:
    engine: DetectionEngine = _SHARED["engine"]
    files: list[Path] = _SHARED["files"]
    inbox, conn = _SHARED["inbox"], _SHARED["outbox"]
    code = 0
    try:
        for other in _SHARED["close"]:
            other.close()  # the parent's ends: a pipe's end is seen when its own process ends, whoever else lives
        index = {id(rule): i for i, rule in enumerate(engine.ruleset.rules)}
        while True:
            try:
                i = inbox.recv()  # the next file, or None: no more
            except (EOFError, OSError):  # the parent is gone
                break
            if i is None:
                break
            path = files[i]
            size, position = _size(path), _Position()
            errors: list[HuntError] = []
            found: list[tuple[int, HuntEvent]] = []
            items = events = told_events = told_bytes = 0
            last = time.monotonic()
            for event in _file_events(path, errors, position):
                items += 1
                if event is not None:
                    events += 1
                    for rule in engine.match(event.view, event.key):
                        found.append((index[id(rule)], event))
                if len(found) >= BATCH or len(errors) >= BATCH or (
                        not items % CHECK_EVERY and time.monotonic() - last >= FLUSH_SECONDS):
                    done = min(position.done, size)
                    conn.send(("batch", i, events - told_events, done - told_bytes, found, errors[:], False))
                    found = []
                    errors.clear()
                    told_events, told_bytes, last = events, done, time.monotonic()
            conn.send(("batch", i, events - told_events, size - told_bytes, found, errors[:], True))
    except BaseException:  # noqa: BLE001 - the parent raises it, with this traceback
        code = 1
        try:
            conn.send(("failed", traceback.format_exc()))
        except OSError:
            pass
    finally:
        try:
            conn.send(("exit",))
            conn.close()
        except OSError:
            pass
        # No interpreter shutdown: it would flush stdio buffers and close files the parent forked us with.
        os._exit(code)


@dataclass
class _Worker:
    """The parent's view of a worker: its process, its pipes, the files it was given and has not finished."""

    proc: Any
    results: Any  # the parent's end of the worker's pipe: what it found
    orders: Any  # the parent's end of the pipe to the worker: the files to read
    files: deque = field(default_factory=deque)
    stopped: bool = False


def hunt_parallel(engine: DetectionEngine, files: list[Path], errors, workers: int,
                  on_progress: Progress | None = None) -> Iterator[tuple[Any, HuntEvent]]:
    """Like hunt(), over ``workers`` processes, with progress; detections come out as they are found (arrival
    order: files are read at the same time), never held until the end. A worker that dies costs the file it was
    reading (a HuntError); the hunt goes on without waiting for it."""
    if workers <= 1 or len(files) < 2:
        yield from _hunt_here(engine, files, errors, on_progress)
        return
    import multiprocessing
    from multiprocessing.connection import wait

    ctx = multiprocessing.get_context("fork")
    n = min(workers, len(files))
    # Largest files first keeps the workers busy to the end.
    pending = deque(sorted(range(len(files)), key=lambda i: -_size(files[i])))
    live: dict[Any, _Worker] = {}  # by the parent's end of its results pipe
    spare = [n]  # workers that died reading nothing may be replaced this many times (one that costs a file always is)

    def start() -> _Worker:
        for stream in (sys.stdout, sys.stderr):  # a forked worker must not inherit half-written output
            try:
                stream.flush()
            except (OSError, ValueError, AttributeError):
                pass
        results, outbox = ctx.Pipe(duplex=False)
        inbox, orders = ctx.Pipe(duplex=False)
        held = [end for w in live.values() for end in (w.results, w.orders)] + [results, orders]
        _SHARED.update(engine=engine, files=files, inbox=inbox, outbox=outbox, close=held)
        try:
            proc = ctx.Process(target=_worker, name="soc-hunt", daemon=True)
            proc.start()
        except BaseException:
            for end in (results, orders):
                end.close()
            raise
        finally:
            _SHARED.clear()
            outbox.close()
            inbox.close()
        worker = live[results] = _Worker(proc, results, orders)
        return worker

    def hand_out(worker: _Worker, up_to: int = PREFETCH) -> None:
        while pending and len(worker.files) < up_to and not worker.stopped:
            i = pending.popleft()
            try:
                worker.orders.send(i)
            except OSError:  # it died: the end of its results pipe says so, and ended() hands its files on
                pending.appendleft(i)
                return
            worker.files.append(i)

    def stop_when_done() -> None:
        if pending or any(w.files for w in live.values()):
            return
        for worker in live.values():
            if not worker.stopped:
                worker.stopped = True
                try:
                    worker.orders.send(None)
                except OSError:
                    pass

    def ended(worker: _Worker, normally: bool) -> None:
        del live[worker.results]
        worker.results.close()
        worker.orders.close()
        worker.proc.join(timeout=10)
        if worker.files:  # it died: the file it was reading is lost, those it had not started are handed on
            i = worker.files.popleft()
            errors.append(HuntError(str(files[i]), None,
                                    f"the hunt worker reading it died (exit code {worker.proc.exitcode}); "
                                    "detections it sent before are kept"))
            if on_progress:
                on_progress(str(files[i]), 0, 0, True)
            pending.extendleft(reversed(worker.files))
            worker.files.clear()
            if pending:
                hand_out(start())
        elif not normally and pending and spare[0] > 0:
            spare[0] -= 1
            hand_out(start())
        for other in list(live.values()):
            hand_out(other)
        stop_when_done()

    try:
        for _ in range(n):
            start()
        for up_to in range(1, PREFETCH + 1):  # one file each first: the largest go to different workers
            for worker in list(live.values()):
                hand_out(worker, up_to)
        while live:
            for results in wait(list(live), timeout=5.0):
                worker = live.get(results)
                if worker is None:
                    continue
                try:
                    message = results.recv()
                except (EOFError, OSError):  # the worker ended without saying so: killed
                    ended(worker, False)
                    continue
                if message[0] == "batch":
                    _, i, events, nbytes, found, file_errors, finished = message
                    if finished:
                        if worker.files and worker.files[0] == i:
                            worker.files.popleft()
                        hand_out(worker)
                        stop_when_done()
                    errors.extend(file_errors)
                    for rule_index, event in found:
                        yield engine.ruleset.rules[rule_index], event
                    if on_progress:
                        on_progress(str(files[i]), events, nbytes, finished)
                elif message[0] == "failed":
                    raise HuntWorkerError(f"a hunt worker failed:\n{message[1]}")
                else:  # exit
                    ended(worker, True)
        for i in pending:  # only when the workers kept dying
            errors.append(HuntError(str(files[i]), None, "not hunted: the hunt workers kept dying"))
            if on_progress:
                on_progress(str(files[i]), 0, 0, True)
    finally:
        for worker in live.values():
            if worker.proc.is_alive():
                worker.proc.terminate()
        for worker in live.values():
            worker.proc.join(timeout=10)
            worker.results.close()
            worker.orders.close()
