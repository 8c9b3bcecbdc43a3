"""Scan files, folders and payloads with a compiled rule pack.

Per target: a size limit (larger targets are skipped with the reason), yara's own timeout, externals set for that
target. Nothing a target does (vanishing, unreadable, a FIFO, a timeout) raises out of the scanner: it comes back
as a ``ScanResult`` with a ``problem``.

Folders are scanned on ``threads`` worker threads. yara-python releases the GIL while it scans, but it sets the
externals on the shared Rules object for the duration of a match, so two concurrent scans must not share one Rules
instance. A small pool hands each scan its own instance (loaded from the pack's saved form, a few tens of
milliseconds each), at most ``threads`` of them, whatever thread calls: API requests included.
"""

from __future__ import annotations

import hashlib
import os
import queue
import stat
import threading
import time
from collections import deque
from contextlib import contextmanager
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Iterable, Iterator

import yara

from detections.yara import externals as ext
from detections.yara.compiler import RulePack
from detections.yara.model import KEPT_META, ScanProblem, ScanResult, StringHit, Target, YaraMatch

PREVIEW_BYTES = 48
MAX_HITS_PER_STRING = 5  # a string that matches 10,000 times is reported with its first few offsets


@dataclass
class ScanOptions:
    timeout_seconds: int = 60  # yara's per-target timeout (whole seconds)
    max_file_bytes: int = 256 * 1024 * 1024
    threads: int = 2
    # False: every target is scanned with ``fixed_externals`` (as the yara command line does with -d); used to
    # compare with it. True: filename, filepath, extension, filetype and owner are those of each target.
    per_file_externals: bool = True
    fixed_externals: dict[str, str] | None = None
    preview_bytes: int = PREVIEW_BYTES
    max_hits_per_string: int = MAX_HITS_PER_STRING
    # Symlinks to files are scanned (as `yara` does); symlinks to folders are walked only when this is set, since
    # they can loop.
    follow_dir_symlinks: bool = False


def _preview(data: bytes, limit: int) -> str:
    """Printable ASCII as is, other bytes as \\xNN (as `yara -s` shows them), cut at ``limit`` bytes."""
    text = "".join(chr(b) if 32 <= b < 127 else f"\\x{b:02x}" for b in data[:limit])
    return text + ("…" if len(data) > limit else "")


def _utf8_path(path: str) -> bool:
    try:
        path.encode("utf-8")
        return True
    except UnicodeEncodeError:  # undecodable bytes in a file name (os.fsdecode's surrogate escapes)
        return False


def _sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Scanner:
    def __init__(self, pack: RulePack, options: ScanOptions | None = None):
        self.pack = pack
        self.options = options or ScanOptions()
        self._fixed = dict(pack.externals)
        self._fixed.update(self.options.fixed_externals or {})
        self._idle: queue.LifoQueue[yara.Rules] = queue.LifoQueue()
        self._idle.put(pack.rules)
        self._created = 1
        self._lock = threading.Lock()

    # --- one Rules instance per concurrent scan --------------------------------------------------------------
    @contextmanager
    def _rules(self) -> Iterator[yara.Rules]:
        try:
            rules = self._idle.get_nowait()
        except queue.Empty:
            with self._lock:
                create = self._created < max(1, self.options.threads)
                if create:
                    self._created += 1
            if not create:
                rules = self._idle.get()
            else:
                try:
                    rules = self.pack.new_rules()
                except BaseException:
                    with self._lock:
                        self._created -= 1
                    raise
        try:
            yield rules
        finally:
            self._idle.put(rules)

    def _match(self, **kwargs) -> list:
        with self._rules() as rules:
            return rules.match(timeout=self.options.timeout_seconds, **kwargs)

    # --- one target ------------------------------------------------------------------------------------------
    def scan_file(self, path: str | os.PathLike) -> ScanResult:
        started = time.perf_counter()
        path = os.path.abspath(os.fspath(path))
        target = Target(path=path, size=0, name=os.path.basename(path))
        try:
            return self._scan_file(path, target, started)
        except Exception as exc:  # whatever a file does, the scan of the others goes on
            return self._problem(target, "error", f"{type(exc).__name__}: {exc}", started)

    def _scan_file(self, path: str, target: Target, started: float) -> ScanResult:
        try:
            st = os.stat(path)
        except OSError as exc:
            return self._problem(target, "unreadable", exc.strerror or str(exc), started)
        target.size = st.st_size
        if not stat.S_ISREG(st.st_mode):
            return self._problem(target, "not_regular", "not a regular file", started)
        if st.st_size > self.options.max_file_bytes:
            return self._problem(target, "too_large", f"{st.st_size} bytes is over the limit of "
                                 f"{self.options.max_file_bytes} bytes", started)
        if self.options.per_file_externals:
            try:
                with open(path, "rb") as handle:
                    head = handle.read(ext.HEAD_BYTES)
            except OSError as exc:
                return self._problem(target, "unreadable", exc.strerror or str(exc), started)
            values = ext.for_file(path, head, st.st_uid)
        else:
            values = self._fixed
        try:
            if _utf8_path(path):
                found = self._match(filepath=path, externals=values)
            else:  # yara-python takes the path as UTF-8 text: a name with other bytes is read and scanned as data
                with open(path, "rb") as handle:
                    found = self._match(data=handle.read(self.options.max_file_bytes + 1), externals=values)
        except yara.TimeoutError:
            return self._problem(target, "timeout", f"scanning took longer than {self.options.timeout_seconds} s",
                                 started)
        except yara.Error as exc:
            kind = "unreadable" if "could not open" in str(exc) or "could not map" in str(exc) else "error"
            return self._problem(target, kind, str(exc), started)
        result = ScanResult(target=target, matches=self._convert(found, target))
        if result.matches:
            try:
                target.sha256 = _sha256_file(path)
            except OSError:
                pass  # the match stands; the file went away between scan and hash
        result.seconds = time.perf_counter() - started
        return result

    def scan_bytes(self, data: bytes, name: str, *, path: str = "") -> ScanResult:
        """Scan a payload the collectors extracted (an HTTP body, a transferred file), reported under ``name``."""
        started = time.perf_counter()
        target = Target(path=path or name, size=len(data), kind="payload", name=name)
        if len(data) > self.options.max_file_bytes:
            return self._problem(target, "too_large", f"{len(data)} bytes is over the limit of "
                                 f"{self.options.max_file_bytes} bytes", started)
        values = ext.for_payload(name, data, path) if self.options.per_file_externals else self._fixed
        try:
            found = self._match(data=data, externals=values)
        except yara.TimeoutError:
            return self._problem(target, "timeout", f"scanning took longer than {self.options.timeout_seconds} s",
                                 started)
        except yara.Error as exc:
            return self._problem(target, "error", str(exc), started)
        result = ScanResult(target=target, matches=self._convert(found, target))
        if result.matches:
            target.sha256 = hashlib.sha256(data).hexdigest()
        result.seconds = time.perf_counter() - started
        return result

    # --- many targets ----------------------------------------------------------------------------------------
    def iter_files(self, paths: Iterable[str | os.PathLike]) -> Iterator[str]:
        """Every file under the given paths, folders walked recursively in name order. A folder that cannot be
        listed is yielded as itself, so that scanning it reports why."""
        for given in paths:
            given = os.fspath(given)
            if os.path.isdir(given):
                yield from self._walk(given)
            else:
                yield given

    def _walk(self, folder: str) -> Iterator[str]:
        failures: list[str] = []
        for root, dirs, files in os.walk(folder, onerror=lambda exc: failures.append(exc.filename or folder),
                                         followlinks=self.options.follow_dir_symlinks):
            dirs.sort()
            for name in sorted(files):
                yield os.path.join(root, name)
            while failures:
                yield failures.pop()
        while failures:
            yield failures.pop()

    def scan_paths(self, paths: Iterable[str | os.PathLike]) -> Iterator[ScanResult]:
        """Scan every file under ``paths`` on the worker threads; results come back as they finish."""
        return self.scan_items(self.iter_files(paths))

    def scan_items(self, files: Iterable[str]) -> Iterator[ScanResult]:
        """Scan paths from ``iter_files`` (a caller may list them first to show a progress bar)."""
        threads = max(1, self.options.threads)
        if threads == 1:
            for path in files:
                yield self.scan_file(path)
            return
        in_flight: deque[Future] = deque()
        limit = threads * 8  # bounded look-ahead: a folder of a million files is not queued at once
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="soc-yara") as pool:
            for path in files:
                in_flight.append(pool.submit(self.scan_file, path))
                if len(in_flight) >= limit:
                    done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                    for future in [f for f in in_flight if f in done]:
                        in_flight.remove(future)
                        yield future.result()
            while in_flight:
                yield in_flight.popleft().result()

    # --- helpers ---------------------------------------------------------------------------------------------
    def _convert(self, found: list, target: Target) -> list[YaraMatch]:
        matches = []
        for m in found:
            hits = []
            for string in m.strings:
                for instance in string.instances[:self.options.max_hits_per_string]:
                    hits.append(StringHit(identifier=string.identifier, offset=instance.offset,
                                          length=instance.matched_length,
                                          preview=_preview(instance.matched_data, self.options.preview_bytes)))
            meta = {k: m.meta[k] for k in KEPT_META if k in m.meta}
            matches.append(YaraMatch(rule=m.rule, namespace=m.namespace, tags=list(m.tags), meta=meta, strings=hits,
                                     target=target))
        return matches

    @staticmethod
    def _problem(target: Target, kind: str, reason: str, started: float) -> ScanResult:
        return ScanResult(target=target, problem=ScanProblem(path=target.path, kind=kind, reason=reason),
                          seconds=time.perf_counter() - started)
