"""The compiled rule set, saved with ``rules.save`` and reused while no rule file changed.

The key is a hash of every rule file's namespace and content, the declared externals and the yara-python version,
so editing, adding or removing a file (or upgrading yara) gives a new key and a fresh compile. An entry is two
files: ``<key>.yarc`` (the compiled rules) and ``<key>.json`` (the per-file health), written atomically, the JSON
last, so a half-written entry is never read. Older entries are removed after a new one is written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Callable, Iterable

import yara

from detections.yara.compiler import EXTERNAL_DEFAULTS, RulePack, RuleSource, compile_sources, discover
from detections.yara.model import RuleFileHealth
from soc.files import atomic_write

log = logging.getLogger(__name__)

FORMAT = 1  # bump when the entry layout changes
KEEP_ENTRIES = 3


def pack_key(sources: list[RuleSource], externals: dict[str, str]) -> str:
    digest = hashlib.sha256()
    digest.update(f"format={FORMAT};yara-python={yara.__version__};".encode())
    digest.update(json.dumps(externals, sort_keys=True).encode())
    for source in sorted(sources, key=lambda s: s.namespace):
        digest.update(source.namespace.encode() + b"\0")
        try:
            digest.update(hashlib.sha256(source.path.read_bytes()).digest())
        except OSError as exc:  # an unreadable file is part of the key too: it fails the same way until fixed
            digest.update(f"unreadable:{exc.errno}".encode())
    return digest.hexdigest()[:40]


def _read_entry(cache_dir: Path, key: str, started: float) -> RulePack | None:
    meta_path, rules_path = cache_dir / f"{key}.json", cache_dir / f"{key}.yarc"
    if not (meta_path.is_file() and rules_path.is_file()):
        return None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        pack = RulePack(health=[RuleFileHealth(**h) for h in meta["health"]], key=key, origin="cache",
                        compiled_path=str(rules_path), externals=meta["externals"])
        pack._rules = yara.load(filepath=str(rules_path))  # proves the entry is readable before we rely on it
    except (OSError, ValueError, KeyError, TypeError, yara.Error) as exc:
        log.warning("YARA rule cache entry %s is unusable (%s); compiling again", rules_path, exc)
        return None
    pack.seconds = time.perf_counter() - started
    return pack


def _write_entry(cache_dir: Path, pack: RulePack) -> None:
    rules_path = cache_dir / f"{pack.key}.yarc"
    atomic_write(rules_path, pack.compiled or b"", durable=False)  # a cache: an entry lost in a crash is compiled again
    meta = {"format": FORMAT, "yara_python": yara.__version__, "created": time.time(), "externals": pack.externals,
            "health": [h.to_dict() for h in pack.health]}
    atomic_write(cache_dir / f"{pack.key}.json", json.dumps(meta, ensure_ascii=False), durable=False)
    pack.compiled_path = str(rules_path)
    pack.compiled = None  # loaded from the file from now on (faster than from memory, and 16 MB less held)
    _prune(cache_dir, keep=pack.key)


def _prune(cache_dir: Path, keep: str) -> None:
    entries = sorted(cache_dir.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in [p for p in entries if p.stem != keep][KEEP_ENTRIES - 1:]:
        for path in (old, old.with_suffix(".yarc")):
            path.unlink(missing_ok=True)


def load_pack(rule_dirs: Iterable[str | Path], cache_dir: str | Path | None = None,
              externals: dict[str, str] | None = None,
              progress: Callable[[int, int], None] | None = None) -> RulePack:
    """The compiled rule set for these folders: from the cache when nothing changed, else compiled (and cached).

    ``cache_dir=None`` compiles without caching. A cache that cannot be written is logged, not fatal.
    """
    started = time.perf_counter()
    externals = dict(EXTERNAL_DEFAULTS if externals is None else externals)
    sources = discover(rule_dirs)
    key = pack_key(sources, externals)
    directory = Path(cache_dir) if cache_dir is not None else None
    if directory is not None:
        cached = _read_entry(directory, key, started)
        if cached is not None:
            return cached
    pack = compile_sources(sources, externals, progress=progress)
    pack.key = key
    if directory is not None:
        try:
            directory.mkdir(parents=True, exist_ok=True)
            _write_entry(directory, pack)
        except OSError as exc:
            log.warning("cannot write the YARA rule cache in %s: %s", directory, exc)
    pack.seconds = time.perf_counter() - started
    return pack
