"""Compile YARA rule packs with yara-python, accounting for every rule file.

Each file is compiled on its own first, so a broken file is reported with yara's error and costs only its own rules;
the good files are then compiled together, one namespace per file (two files may both define ``rule Webshell``).
The externals the signature-base rules use (filename, filepath, extension, filetype, owner) are declared with empty
defaults at compile time and set per scanned file by the scanner.
"""

from __future__ import annotations

import io
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import yara

from detections.yara.model import RuleFileHealth

log = logging.getLogger(__name__)

RULE_SUFFIXES = (".yar", ".yara")
# Declared for every pack; a rule may use any of them. Values are set per file by detections/yara/externals.py.
EXTERNAL_DEFAULTS: dict[str, str] = {"filename": "", "filepath": "", "extension": "", "filetype": "", "owner": ""}


class RulePackError(Exception):
    """No usable rule set: no rule files, none that compile, or the combined set fails for a reason no file explains."""


@dataclass(frozen=True)
class RuleSource:
    path: Path
    namespace: str


@dataclass
class RulePack:
    """A compiled rule set plus the health of every rule file that went into it.

    ``compiled`` (or ``compiled_path``) is the saved form: yara-python sets externals on the shared Rules object
    for the duration of a match, so concurrent scans with per-file externals each need their own Rules instance,
    loaded from this.
    """

    health: list[RuleFileHealth]
    key: str = ""
    origin: str = "compiled"  # compiled | cache
    seconds: float = 0.0
    compiled: bytes | None = None
    compiled_path: str | None = None
    externals: dict[str, str] = field(default_factory=lambda: dict(EXTERNAL_DEFAULTS))
    _rules: yara.Rules | None = None

    @property
    def loaded(self) -> int:
        return sum(1 for h in self.health if h.status == "loaded")

    @property
    def failed(self) -> int:
        return sum(1 for h in self.health if h.status == "failed")

    @property
    def rule_count(self) -> int:
        return sum(h.rules for h in self.health if h.status == "loaded")

    def new_rules(self) -> yara.Rules:
        """A fresh Rules instance (one per concurrent scan)."""
        if self.compiled is None:
            if self.compiled_path:
                try:
                    return yara.load(filepath=self.compiled_path)
                except yara.Error:
                    pass  # the cache entry was removed meanwhile: copy the instance we have
            if self._rules is None:
                raise RulePackError("this rule pack holds no compiled rules")
            buffer = io.BytesIO()
            self._rules.save(file=buffer)
            self.compiled = buffer.getvalue()
        return yara.load(file=io.BytesIO(self.compiled))

    @property
    def rules(self) -> yara.Rules:
        if self._rules is None:
            self._rules = self.new_rules()
        return self._rules


def discover(rule_dirs: Iterable[str | Path]) -> list[RuleSource]:
    """Every *.yar / *.yara under the given folders (or the files themselves), with a namespace per file.

    The namespace is the path relative to its folder; with several folders it is prefixed by the folder's name.
    ':' is replaced because the yara command line reads ``NAMESPACE:FILE``.
    """
    dirs = [Path(d) for d in rule_dirs]
    sources: list[RuleSource] = []
    seen: set[str] = set()
    for folder in dirs:
        if folder.is_file():
            files, base = [folder], folder.parent
        elif folder.is_dir():
            files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in RULE_SUFFIXES and p.is_file())
            base = folder
        else:
            raise RulePackError(f"rule folder {folder} does not exist")
        for path in files:
            name = path.relative_to(base).as_posix()
            if len(dirs) > 1:
                name = f"{folder.name}/{name}"
            name = name.replace(":", "_")
            unique, n = name, 2
            while unique in seen:
                unique, n = f"{name}#{n}", n + 1
            seen.add(unique)
            sources.append(RuleSource(path=path, namespace=unique))
    return sources


def _count_public(rules: yara.Rules) -> int:
    return sum(1 for r in rules if not r.is_private)


def check_file(source: RuleSource, externals: dict[str, str] = EXTERNAL_DEFAULTS) -> RuleFileHealth:
    """Compile one file alone: loaded with its rule count and warnings, or failed with yara's error."""
    try:
        rules = yara.compile(filepath=str(source.path), externals=externals)
    except yara.Error as exc:
        return RuleFileHealth(path=str(source.path), namespace=source.namespace, status="failed", reason=str(exc))
    except Exception as exc:  # an unreadable or undecodable file must not stop the others
        return RuleFileHealth(path=str(source.path), namespace=source.namespace, status="failed",
                              reason=f"{type(exc).__name__}: {exc}")
    return RuleFileHealth(path=str(source.path), namespace=source.namespace, status="loaded",
                          rules=_count_public(rules), warnings=list(getattr(rules, "warnings", []) or []))


def compile_sources(sources: list[RuleSource], externals: dict[str, str] | None = None,
                    progress: Callable[[int, int], None] | None = None) -> RulePack:
    """Check every file alone, then compile the good ones together (namespace per file)."""
    externals = dict(EXTERNAL_DEFAULTS if externals is None else externals)
    started = time.perf_counter()
    if not sources:
        raise RulePackError("no YARA rule files (*.yar, *.yara) found")
    health = []
    for i, source in enumerate(sources, 1):
        health.append(check_file(source, externals))
        if progress:
            progress(i, len(sources))
    by_namespace = {h.namespace: h for h in health}
    while True:
        good = {s.namespace: str(s.path) for s in sources if by_namespace[s.namespace].status == "loaded"}
        if not good:
            raise RulePackError(f"none of the {len(sources)} rule files compiles; first error: "
                                f"{health[0].path}: {health[0].reason}")
        try:
            rules = yara.compile(filepaths=good, externals=externals)
            break
        except yara.Error as exc:
            # Every file compiled alone, so the set fails only in combination (a duplicate global, a limit). Drop
            # the file yara names and try again; if it names none we cannot tell which one, which is fatal.
            culprit = next((ns for ns, path in good.items() if path in str(exc)), None)
            if culprit is None:
                raise RulePackError(f"the rule files compile one by one but not together: {exc}") from exc
            h = by_namespace[culprit]
            h.status, h.rules = "failed", 0
            h.reason = f"compiles alone but not with the other files: {exc}"
            log.warning("YARA rule file %s excluded: %s", h.path, h.reason)
    buffer = io.BytesIO()
    rules.save(file=buffer)
    pack = RulePack(health=health, origin="compiled", seconds=time.perf_counter() - started,
                    compiled=buffer.getvalue(), externals=externals)
    pack._rules = rules
    return pack
