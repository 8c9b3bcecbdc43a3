"""Load Sigma rules from folders with pySigma, compile them, and account for every one of them (rule health).

Each file is parsed on its own, so one broken file costs only its own rules. Parsing (YAML + pySigma + processing
pipeline) is the slow part, so its result — the rule's metadata and condition IR (detections/sigma/compiler.py) — is
cached per file, keyed by the file's content, the pipeline and the IR version: a changed file is parsed again, the
rest come from the cache. A cold start parses in parallel worker processes. Correlation rules are resolved (by rule
id or name) against every rule loaded from every folder.

Rule files may come from a rule pack someone else wrote (detections/packs.py, ``pack_dirs``). Each file is parsed
once by detections/untrusted_yaml.py, which refuses YAML aliases (an alias "billion laughs" costs exponential time to
walk) and reports nesting errors, and pySigma is handed the parsed documents, never the text. A pack's rule may not
take the id or the name of one of the suite's own rules (it would take over the own rule's selection, exceptions and
correlation windows, or what the own correlations count) nor share one with another rule of the pack: such a rule
does not load, and its health says why. A pack's correlation never stops an own rule from alerting (Sigma's
``generate``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import pickle  # nosec B403 - only for the suite's own rule cache, see _private
import re
import threading
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable, Iterable

from detections.sigma.compiler import IR_VERSION, UnsupportedRule, compile_ir, requirement
from detections.sigma.logsource import known_logsource
from detections.untrusted_yaml import UntrustedYamlError, load_all
from soc.files import atomic_write
from soc.vocabulary import DEFAULT_SEVERITY

log = logging.getLogger(__name__)
_ATTACK_ID = re.compile(r"^[tgs]\d{4}", re.IGNORECASE)
PARALLEL_FROM = 300  # files; below this a single process is faster than starting workers
# Part of the cache key beside the compiler's IR_VERSION: bump when what parse_file keeps changes
# (2: the rule's status, and a failed rule's level, status, tags and log source when they are known; 3: one parse
# that refuses aliases, handed to pySigma as data).
LOADER_VERSION = 3


@dataclass
class RuleHealth:
    id: str
    title: str
    path: str
    kind: str  # detection | correlation
    status: str  # loaded | failed | disabled (loaded or not, the rule selection leaves it out: detections/selection.py)
    reason: str = ""  # why it failed (or, when disabled, why it is not selected)
    level: str = ""
    logsource: dict[str, str | None] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    rule_status: str = ""  # the rule's own Sigma status: stable, test, experimental, deprecated, unsupported
    tags: list[str] = field(default_factory=list)
    digest: str = ""  # the content hash of the rule's file (what a pack's change report compares)
    selection: str = ""  # why the rule selection runs it or leaves it out ("own rule", "level low below medium")


@dataclass
class RuleMeta:
    id: str
    name: str | None
    title: str
    level: str
    tags: list[str]
    description: str
    path: str
    status: str = ""  # the Sigma status (stable, test, experimental, deprecated, unsupported); "" when not given

    @property
    def tactics(self) -> list[str]:
        # attack.credential-access is a tactic; attack.t1110, attack.g0032 and attack.s0154 are not.
        return [t[7:] for t in self.tags if t.lower().startswith("attack.") and not _ATTACK_ID.match(t[7:])]

    @property
    def techniques(self) -> list[str]:
        return [t[7:].upper() for t in self.tags if t.lower().startswith("attack.t") and _ATTACK_ID.match(t[7:])]


class CompiledRule:
    """A loaded rule. Its predicate and prefilter literals are built on first use: a hunt over Sysmon logs never
    pays for compiling the thousands of rules of other log sources."""

    __slots__ = ("meta", "logsource", "ir", "generate", "_predicate", "_requirement")

    def __init__(self, meta: RuleMeta, logsource: dict[str, str | None], ir: tuple, generate: bool = True):
        self.meta, self.logsource, self.ir, self.generate = meta, logsource, ir, generate
        self._predicate: Callable[[dict[str, Any]], bool] | None = None
        self._requirement: Any = _UNSET

    @property
    def predicate(self) -> Callable[[dict[str, Any]], bool]:
        if self._predicate is None:
            self._predicate = compile_ir(self.ir)
        return self._predicate

    @property
    def requirement(self) -> frozenset[str] | None:
        """Prefilter literals; None = always evaluate."""
        if self._requirement is _UNSET:
            self._requirement = requirement(self.ir)
        return self._requirement


_UNSET = object()


@dataclass
class CompiledCorrelation:
    meta: RuleMeta
    type: str  # event_count | value_count | temporal | temporal_ordered
    rules: list[str]  # ids of the referenced rules (detections or correlations), in order
    group_by: list[str]
    timespan: int  # seconds
    op: str  # gte, gt, lt, lte, eq, neq
    count: int
    fieldref: str | None
    aliases: dict[str, dict[str, str]]  # alias -> {rule id: field}
    generate: bool = True  # does it alert on its own (not when only another correlation counts it, see below)
    generate_refs: bool = False  # Sigma's "generate": do the rules it counts alert on their own too


@dataclass
class RuleSet:
    rules: list[CompiledRule] = field(default_factory=list)
    correlations: list[CompiledCorrelation] = field(default_factory=list)
    health: list[RuleHealth] = field(default_factory=list)
    from_cache: int = 0  # files whose parse came from the cache
    parsed: int = 0  # files parsed in this load

    @property
    def loaded(self) -> int:
        return sum(1 for h in self.health if h.status == "loaded")

    @property
    def failed(self) -> int:
        return sum(1 for h in self.health if h.status == "failed")

    @property
    def disabled(self) -> int:
        """Rules the rule selection leaves out (detections/selection.py): neither run nor counted as loaded."""
        return sum(1 for h in self.health if h.status == "disabled")


# --- parsing one file (runs in worker processes) -----------------------------------------------------------------
def _meta(rule, path: str) -> RuleMeta:
    level = rule.level.name.lower() if rule.level else DEFAULT_SEVERITY.value
    return RuleMeta(id=str(rule.id) if rule.id else (rule.name or _file_id(path, rule.title)), name=rule.name,
                    title=rule.title or "", level=level, tags=[str(t) for t in rule.tags],
                    description=rule.description or "", path=path, status=_status(rule))


def _file_id(path: str, title: str | None) -> str:
    """The id of a rule with neither id nor name: where it is (``_assemble`` moves it with the file)."""
    return f"{path}:{title or ''}"


def _status(rule) -> str:
    status = getattr(rule, "status", None)
    return status.name.lower() if status is not None else ""


def _described(rule) -> dict[str, Any]:
    """What is known of a rule that failed, for the rule selection and the change report (detections/selection.py)."""
    logsource = getattr(rule, "logsource", None)
    return {"level": rule.level.name.lower() if getattr(rule, "level", None) else "", "rule_status": _status(rule),
            "tags": [str(t) for t in getattr(rule, "tags", None) or []],
            "logsource": {"category": logsource.category, "product": logsource.product,
                          "service": logsource.service} if logsource is not None else {}}


def _ref(rule) -> str:
    return str(rule.id) if getattr(rule, "id", None) else rule.name


def parse_file(path: str, text: str, pipeline_name: str | None,
               placeholders: dict[str, list[str]] | None = None) -> list[tuple]:
    """One rule file → entries: ("rule", meta, logsource, ir), ("correlation", meta, spec) or ("failed", health)."""
    from sigma.collection import SigmaCollection
    from sigma.correlations import SigmaCorrelationRule
    from sigma.exceptions import SigmaError, SigmaRuleLocation

    import yaml

    from detections.sigma.pipelines import build_pipeline
    from detections.sigma.to_ir import rule_ir

    entries: list[tuple] = []

    def failed(rule_id: str, title: str, kind: str, reason: str, rule=None) -> None:
        known = _described(rule) if rule is not None else {}
        entries.append(("failed", RuleHealth(id=rule_id, title=title, path=path, kind=kind, status="failed",
                                             reason=reason, **known)))

    try:  # one parse, aliases refused; pySigma gets the documents, not the text (detections/untrusted_yaml.py)
        documents = load_all(text)
    except UntrustedYamlError as exc:
        failed(path, Path(path).name, "detection", f"cannot parse: {exc}")
        return entries
    try:
        collection = SigmaCollection.from_dicts(documents, collect_errors=True, source=SigmaRuleLocation(path),
                                                resolve_references=False)
    except (SigmaError, ValueError, yaml.YAMLError) as exc:  # a broken file costs only its own rules
        failed(path, Path(path).name, "detection", f"cannot parse: {' '.join(str(exc).split())}")
        return entries
    except Exception as exc:  # pySigma trips over YAML that is not a rule at all (a list, a scalar)
        failed(path, Path(path).name, "detection", f"not a Sigma rule: {type(exc).__name__}: {exc}")
        return entries
    rule_errors = {str(e) for rule in collection.rules for e in rule.errors}
    for error in collection.errors:  # the collection repeats its rules' errors: keep the ones of no rule
        if str(error) not in rule_errors:
            failed(path, Path(path).name, "detection", str(error))
    for rule in collection.rules:
        pipeline = build_pipeline(pipeline_name, placeholders)  # a pipeline keeps state per rule: one each
        is_correlation = isinstance(rule, SigmaCorrelationRule)
        kind = "correlation" if is_correlation else "detection"
        if rule.errors:
            failed(str(rule.id or path), rule.title or Path(path).name, kind,
                   "; ".join(str(e) for e in rule.errors), rule)
            continue
        meta = _meta(rule, path)
        if is_correlation:
            cond = rule.condition
            if not hasattr(cond, "op"):
                failed(meta.id, meta.title, kind, "extended correlation conditions are not supported yet", rule)
                continue
            ctype = rule.type.name.lower()
            if ctype not in {"event_count", "value_count", "temporal", "temporal_ordered"}:
                failed(meta.id, meta.title, kind, f"correlation type {ctype} is not supported yet", rule)
                continue
            fieldref = cond.fieldref if isinstance(cond.fieldref, str) or cond.fieldref is None \
                else cond.fieldref[0]
            aliases = {alias.alias: {ref.reference: fld for ref, fld in alias.mapping.items()}
                       for alias in rule.aliases}
            entries.append(("correlation", meta, {
                "type": ctype, "rules": [r.reference for r in rule.rules or []],
                "group_by": list(rule.group_by or []), "timespan": rule.timespan.seconds,
                "op": cond.op.name.lower(), "count": cond.count, "fieldref": fieldref, "aliases": aliases,
                "generate": rule.generate,
            }))
            continue
        logsource = {"category": rule.logsource.category, "product": rule.logsource.product,
                     "service": rule.logsource.service}
        try:
            if pipeline is not None:
                pipeline.apply(rule)
            ir = rule_ir(rule)
            compile_ir(ir)  # fail here, with the reason, rather than at evaluation time
        except (UnsupportedRule, SigmaError, ValueError, TypeError, KeyError, re.error) as exc:
            failed(meta.id, meta.title, kind, str(exc) or type(exc).__name__, rule)
            continue
        entries.append(("rule", meta, logsource, ir))
    return entries


def _parse_batch(batch: list[tuple[str, str]], pipeline_name: str | None,
                 placeholders: dict[str, list[str]] | None) -> list[list[tuple]]:
    return [parse_file(path, text, pipeline_name, placeholders) for path, text in batch]


# --- loading -------------------------------------------------------------------------------------------------------
def _private(path: Path) -> bool:
    """Only a file this user owns and no one else can write is unpickled."""
    try:
        info = path.stat()
    except OSError:
        return False
    if info.st_uid != os.getuid() or info.st_mode & 0o022:
        log.warning("ignoring the Sigma cache %s: it must belong to this user and be writable by no one else", path)
        return False
    return True


def rule_files(dirs: Iterable[str | Path]) -> list[Path]:
    files: list[Path] = []
    for d in dirs:
        path = Path(d)
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            files.extend(sorted(set(path.rglob("*.yml")) | set(path.rglob("*.yaml"))))
        else:
            log.warning("Sigma rule folder %s does not exist", path)
    return files


def _cache_key(text: bytes, setup: bytes) -> str:
    return hashlib.sha256(setup + text).hexdigest()


def _setup_key(pipeline_name: str | None, placeholders: dict[str, list[str]] | None) -> bytes:
    """What besides a file's text decides its parse: IR version, pySigma version, pipeline, placeholder values."""
    import json

    return b"%d.%d\x00%s\x00%s\x00%s\x00" % (IR_VERSION, LOADER_VERSION, _pysigma_version().encode(),
                                             (pipeline_name or "").encode(),
                                             json.dumps(placeholders or {}, sort_keys=True).encode())


@lru_cache(maxsize=1)
def _pysigma_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pysigma")
    except PackageNotFoundError:
        return "?"


def load_rules(dirs: Iterable[str | Path], pipeline: str | None = "soc", cache_dir: str | Path | None = None,
               workers: int | None = None, progress: Callable[[int, int], None] | None = None,
               placeholders: dict[str, list[str]] | None = None,
               pack_dirs: Iterable[str | Path] = ()) -> RuleSet:
    """Load and compile every rule under ``dirs`` (the suite's own rules) and ``pack_dirs`` (a rule pack's: loaded
    after, and refused where they would collide with an own rule, see the module's text) with the named processing
    pipeline (detections/sigma/pipelines.py).

    ``cache_dir``: where parsed rules are kept between runs (None: no cache). ``progress(done, total)`` is called as
    files are parsed.
    """
    pack_files = rule_files(pack_dirs)
    in_pack = set(pack_files)  # a pack's file is the pack's, even under an own folder
    own_files = [f for f in rule_files(dirs) if f not in in_pack]
    files = own_files + pack_files
    pack_paths = {str(f) for f in pack_files}
    setup = _setup_key(pipeline, placeholders)
    cache: dict[str, Any] = {}
    cache_file = Path(cache_dir) / "sigma-rules.pickle" if cache_dir else None
    if cache_file is not None and cache_file.exists() and _private(cache_file):
        try:
            with cache_file.open("rb") as fh:
                # The cache is the suite's own file in the user's or the data folder, loaded only when that user
                # owns it and nobody else may write it (_private): unpickling it runs no one else's code.
                cache = pickle.load(fh)  # nosec B301
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError) as exc:
            log.warning("ignoring the unreadable Sigma cache %s: %s", cache_file, exc)
            cache = {}
    # A file whose size and modification time are what the cache saw keeps its content key without being read again
    # (make's rule); any other file is read and keyed by its content.
    stats: dict[str, tuple] = cache.get("_stats", {})
    new_stats: dict[str, tuple] = {}
    texts: dict[int, str] = {}
    keys: list[str] = []
    for i, path in enumerate(files):
        try:
            st = path.stat()
            signature = (st.st_size, st.st_mtime_ns, setup)
            known = stats.get(str(path))
            if known is not None and known[0] == signature and known[1] in cache:
                keys.append(known[1])
                new_stats[str(path)] = known
                continue
            data = path.read_bytes()
        except OSError as exc:
            log.warning("cannot read %s: %s", path, exc)
            data, signature = b"", None
        key = _cache_key(data, setup)
        keys.append(key)
        texts[i] = data.decode("utf-8", "replace")
        if signature is not None:
            new_stats[str(path)] = (signature, key)
    missing = [i for i, key in enumerate(keys) if key not in cache]
    results: dict[int, list[tuple]] = {}
    todo = [(str(files[i]), texts[i]) for i in missing]
    if progress:
        progress(len(files) - len(missing), len(files))
    # Forked workers inherit the loaded code and need no importable __main__; forking is only safe while this
    # process runs a single thread (a suite that already serves parses in-process instead).
    if len(todo) >= PARALLEL_FROM and (workers or os.cpu_count() or 1) > 1 and threading.active_count() == 1:
        n = workers or os.cpu_count() or 2
        chunks = [todo[i::n * 4] for i in range(n * 4)]
        index_chunks = [missing[i::n * 4] for i in range(n * 4)]
        done = len(files) - len(missing)
        with ProcessPoolExecutor(max_workers=n, mp_context=get_context("fork")) as pool:
            futures = [pool.submit(_parse_batch, chunk, pipeline, placeholders) for chunk in chunks]
            for indices, future in zip(index_chunks, futures):
                for i, entries in zip(indices, future.result()):
                    results[i] = entries
                done += len(indices)
                if progress:
                    progress(done, len(files))
    else:
        for n_done, (i, (path, text)) in enumerate(zip(missing, todo), start=1):
            results[i] = parse_file(path, text, pipeline, placeholders)
            if progress and (n_done % 50 == 0 or n_done == len(todo)):
                progress(len(files) - len(missing) + n_done, len(files))
    for i, entries in results.items():
        cache[keys[i]] = entries
    if cache_file is not None and (results or new_stats != stats):
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        live: dict[str, Any] = {key: cache[key] for key in keys}  # drop entries of files changed or gone
        live["_stats"] = new_stats
        # A temporary file of its own, then a rename: `soc rules install` and a running suite may both write it.
        atomic_write(cache_file, pickle.dumps(live, protocol=pickle.HIGHEST_PROTOCOL), durable=False)
    ruleset = _assemble([cache[key] for key in keys], [key[:16] for key in keys], [str(f) for f in files],
                        pack_paths)
    ruleset.parsed, ruleset.from_cache = len(results), len(files) - len(results)
    return ruleset


def _assemble(per_file: list[list[tuple]], digests: list[str], paths: list[str],
              pack_paths: set[str] | frozenset[str] = frozenset()) -> RuleSet:
    """``digests``: each file's content hash (within one setup: the same text, the same digest); ``paths``: where
    each file is now; ``pack_paths``: those of them that are a rule pack's. The cache is keyed by content, so an entry
    may come from the same text at another path (a rule pack's next version, a copy): its rules are given the path
    they are read from now (and a rule known by its file, the id of that path)."""
    ruleset = RuleSet()
    rules: list[tuple[RuleMeta, dict, tuple]] = []
    correlations: list[tuple[RuleMeta, dict]] = []
    digest_of: dict[str, str] = {}
    for entries, digest, path in zip(per_file, digests, paths):
        digest_of[path] = digest
        for entry in entries:
            if entry[0] == "failed":
                health = {**asdict(entry[1]), "digest": digest, "path": path}
                if entry[1].id == entry[1].path:  # a file that cannot be parsed is known by its path
                    health["id"] = path
                ruleset.health.append(RuleHealth(**health))
                continue
            meta = entry[1]
            if meta.path != path:
                moved = {"path": path}
                if meta.id == _file_id(meta.path, meta.title):
                    moved["id"] = _file_id(path, meta.title)
                meta = dataclasses.replace(meta, **moved)
            if entry[0] == "rule":
                rules.append((meta, entry[2], entry[3]))
            else:
                correlations.append((meta, entry[2]))
    _resolve(ruleset, rules, correlations, digest_of, pack_paths)
    return ruleset


def _refs(meta: RuleMeta) -> list[str]:
    """What a rule is known by (its id, its name), as compared for collisions: without regard to case, as the rule
    selection and the rule exceptions compare them."""
    return [r.lower() for r in dict.fromkeys((meta.id, meta.name)) if r]


def _colliding(ruleset: RuleSet, rules: list[tuple], correlations: list[tuple], pack_paths: set[str] | frozenset[str],
               ) -> dict[int, str]:
    """The pack's rules and correlations that may not load, by ``id()`` of their meta, with the reason: those taking
    the id or the name of one of the suite's own rules (loaded or failed), and those sharing one inside the pack."""
    own: dict[str, str] = {}
    for health in ruleset.health:  # own rules that failed: their id is still theirs
        if health.path not in pack_paths and health.id != health.path:
            own.setdefault(health.id.lower(), f"{health.title!r} ({health.id}, {health.path})")
    pack: list[RuleMeta] = []
    for meta, *_ in rules + correlations:
        if meta.path in pack_paths:
            pack.append(meta)
            continue
        for ref in _refs(meta):
            own.setdefault(ref, f"{meta.title!r} ({meta.id}, {meta.path})")
    holders: dict[str, list[RuleMeta]] = {}
    for meta in pack:
        for ref in _refs(meta):
            holders.setdefault(ref, []).append(meta)
    refused: dict[int, str] = {}
    for meta in pack:
        for ref in _refs(meta):
            what = "id" if ref == meta.id.lower() else "name"
            if ref in own:
                refused[id(meta)] = (f"collides with the suite's own rule {own[ref]}: its {what} {ref!r} is the "
                                     "own rule's; a pack's rule may not take it (not loaded)")
                break
            others = [m.path for m in holders[ref] if m is not meta]
            if others:
                refused[id(meta)] = (f"its {what} {ref!r} is also that of another rule of the pack ({others[0]}): "
                                     "a pack's rules must each have their own (none of them is loaded)")
                break
    return refused


def generating(correlations: Iterable[CompiledCorrelation], own: Callable[[str], bool],
               pack: Callable[[CompiledCorrelation], bool]) -> dict[str, bool]:
    """Rule id -> does it alert on its own, for the rules ``correlations`` count (a rule none counts alerts): only
    when one of them says so (Sigma's ``generate``). A pack's correlation (``pack``) has no say over the suite's own
    rules (``own``): an own rule is silenced only by an own correlation."""
    referenced: dict[str, bool] = {}
    for corr in correlations:
        for ref in corr.rules:
            if pack(corr) and own(ref):
                continue
            referenced[ref] = referenced.get(ref, False) or corr.generate_refs
    return referenced


def _resolve(ruleset: RuleSet, rules: list[tuple[RuleMeta, dict, tuple]], correlations: list[tuple[RuleMeta, dict]],
             digest_of: dict[str, str], pack_paths: set[str] | frozenset[str] = frozenset()) -> None:
    def described(meta: RuleMeta, **more: Any) -> RuleHealth:
        return RuleHealth(id=meta.id, title=meta.title, path=meta.path, level=meta.level, rule_status=meta.status,
                          tags=list(meta.tags), digest=digest_of.get(meta.path, ""), **more)

    refused = _colliding(ruleset, rules, correlations, pack_paths) if pack_paths else {}
    if refused:
        for meta, logsource, _ in rules:
            if id(meta) in refused:
                ruleset.health.append(described(meta, kind="detection", status="failed", reason=refused[id(meta)],
                                                logsource=logsource))
        for meta, _ in correlations:
            if id(meta) in refused:
                ruleset.health.append(described(meta, kind="correlation", status="failed", reason=refused[id(meta)]))
        rules = [r for r in rules if id(r[0]) not in refused]
        correlations = [c for c in correlations if id(c[0]) not in refused]
    # References are by id or by name; both resolve to the rule's id. The suite's own rules are entered last, so a
    # name an own rule holds always means the own rule (a pack's rule cannot hold one: refused above).
    by_ref: dict[str, str] = {}
    for meta, *_ in sorted(rules + correlations, key=lambda r: r[0].path not in pack_paths):  # type: ignore[operator]
        by_ref[meta.id] = meta.id
        if meta.name:
            by_ref[meta.name] = meta.id
    own_ids = {meta.id for meta, *_ in rules + correlations if meta.path not in pack_paths}  # type: ignore[operator]
    resolved: list[CompiledCorrelation] = []
    for meta, spec in correlations:
        missing = [r for r in spec["rules"] if r not in by_ref]
        if missing:
            ruleset.health.append(described(meta, kind="correlation", status="failed",
                                            reason=f"Rule '{missing[0]}' not found in the loaded rules"))
            continue
        aliases = {alias: {by_ref.get(ref, ref): fld for ref, fld in mapping.items()}
                   for alias, mapping in spec["aliases"].items()}
        resolved.append(CompiledCorrelation(
            meta=meta, type=spec["type"], rules=[by_ref[r] for r in spec["rules"]], group_by=spec["group_by"],
            timespan=spec["timespan"], op=spec["op"], count=spec["count"], fieldref=spec["fieldref"],
            aliases=aliases, generate_refs=bool(spec["generate"])))
    referenced = generating(resolved, own_ids.__contains__, lambda corr: corr.meta.path in pack_paths)
    compiled_ids: set[str] = set()
    for meta, logsource, ir in rules:
        health = described(meta, kind="detection", status="loaded", logsource=logsource)
        if not known_logsource(logsource):
            health.warnings.append("no collector produces events for this logsource yet")
        ruleset.rules.append(CompiledRule(meta=meta, logsource=logsource, ir=ir,
                                          generate=referenced.get(meta.id, True)))
        compiled_ids.add(meta.id)
        ruleset.health.append(health)
    known = compiled_ids | {corr.meta.id for corr in resolved}
    for corr in resolved:
        health = described(corr.meta, kind="correlation", status="loaded")
        dead = [r for r in corr.rules if r not in known]
        if dead:  # a correlation over a rule that failed can never fire: say so instead of pretending it runs
            health.status, health.reason = "failed", f"referenced rules did not load: {', '.join(dead)}"
            ruleset.health.append(health)
            continue
        corr.generate = referenced.get(corr.meta.id, True)
        ruleset.correlations.append(corr)
        ruleset.health.append(health)
