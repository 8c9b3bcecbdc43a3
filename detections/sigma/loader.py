"""Load Sigma rules from folders with pySigma, compile them, and account for every one of them (rule health).

Each file is parsed on its own so one broken file costs only its own rules. Correlation rules are resolved against
every rule loaded from every folder. The result says, per rule, loaded or failed and why.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from sigma.collection import SigmaCollection
from sigma.correlations import SigmaCorrelationRule
from sigma.exceptions import SigmaError, SigmaRuleLocation
from sigma.rule import SigmaRule

from detections.sigma.compiler import UnsupportedRule, compile_rule
from detections.sigma.logsource import known_logsource

log = logging.getLogger(__name__)
_ATTACK_ID = re.compile(r"^[tgs]\d{4}", re.IGNORECASE)


@dataclass
class RuleHealth:
    id: str
    title: str
    path: str
    kind: str  # detection | correlation
    status: str  # loaded | failed
    reason: str = ""
    level: str = ""
    logsource: dict[str, str | None] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


@dataclass
class RuleMeta:
    id: str
    name: str | None
    title: str
    level: str
    tags: list[str]
    description: str
    path: str

    @property
    def tactics(self) -> list[str]:
        # attack.credential-access is a tactic; attack.t1110, attack.g0032 and attack.s0154 are not.
        return [t[7:] for t in self.tags if t.lower().startswith("attack.") and not _ATTACK_ID.match(t[7:])]

    @property
    def techniques(self) -> list[str]:
        return [t[7:].upper() for t in self.tags if t.lower().startswith("attack.t") and _ATTACK_ID.match(t[7:])]


@dataclass
class CompiledRule:
    meta: RuleMeta
    logsource: dict[str, str | None]
    predicate: Callable[[dict[str, Any]], bool]
    generate: bool = True  # False when only correlations use it (Sigma's "generate")


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
    generate: bool = True


@dataclass
class RuleSet:
    rules: list[CompiledRule] = field(default_factory=list)
    correlations: list[CompiledCorrelation] = field(default_factory=list)
    health: list[RuleHealth] = field(default_factory=list)

    @property
    def loaded(self) -> int:
        return sum(1 for h in self.health if h.status == "loaded")

    @property
    def failed(self) -> int:
        return sum(1 for h in self.health if h.status == "failed")


def _meta(rule: SigmaRule | SigmaCorrelationRule, path: str) -> RuleMeta:
    level = rule.level.name.lower() if rule.level else "medium"
    return RuleMeta(
        id=str(rule.id) if rule.id else (rule.name or f"{path}:{rule.title}"),
        name=rule.name,
        title=rule.title or "",
        level=level,
        tags=[str(t) for t in rule.tags],
        description=rule.description or "",
        path=path,
    )


def _logsource(rule: SigmaRule) -> dict[str, str | None]:
    ls = rule.logsource
    return {"category": ls.category, "product": ls.product, "service": ls.service}


def rule_files(dirs: Iterable[str | Path]) -> list[Path]:
    files: list[Path] = []
    for d in dirs:
        path = Path(d)
        if path.is_file():
            files.append(path)
        else:
            files.extend(sorted(p for p in path.rglob("*.yml")) + sorted(p for p in path.rglob("*.yaml")))
    return files


def load_rules(dirs: Iterable[str | Path], pipeline: Any = None) -> RuleSet:
    """Load and compile every rule under ``dirs``; ``pipeline`` is an optional pySigma ProcessingPipeline."""
    ruleset = RuleSet()
    parsed: list[tuple[SigmaRule | SigmaCorrelationRule, str]] = []
    for path in rule_files(dirs):
        try:
            collection = SigmaCollection.from_yaml(path.read_text(encoding="utf-8"), collect_errors=True,
                                                   source=SigmaRuleLocation(path), resolve_references=False)
        except (SigmaError, ValueError, OSError) as exc:
            ruleset.health.append(RuleHealth(id=str(path), title=path.name, path=str(path), kind="detection",
                                             status="failed", reason=f"cannot parse: {exc}"))
            continue
        for rule in collection.rules:
            if rule.errors:
                ruleset.health.append(RuleHealth(
                    id=str(rule.id or path), title=rule.title or path.name, path=str(path),
                    kind="correlation" if isinstance(rule, SigmaCorrelationRule) else "detection",
                    status="failed", reason="; ".join(str(e) for e in rule.errors)))
                continue
            parsed.append((rule, str(path)))
        # The collection repeats its rules' errors; report only the ones that belong to no rule (a YAML error).
        rule_errors = {str(e) for rule in collection.rules for e in rule.errors}
        for error in collection.errors:
            if str(error) in rule_errors:
                continue
            ruleset.health.append(RuleHealth(id=str(path), title=path.name, path=str(path), kind="detection",
                                             status="failed", reason=str(error)))

    everything = SigmaCollection([r for r, _ in parsed], resolve_references=False)
    referenced: dict[str, bool] = {}  # rule id -> does any correlation want it to generate alerts too
    correlations: list[tuple[SigmaCorrelationRule, str]] = []
    for rule, path in parsed:
        if isinstance(rule, SigmaCorrelationRule):
            try:
                rule.resolve_rule_references(everything)
            except SigmaError as exc:
                ruleset.health.append(RuleHealth(id=_meta(rule, path).id, title=rule.title, path=path,
                                                 kind="correlation", status="failed", reason=str(exc)))
                continue
            correlations.append((rule, path))
            for ref in rule.rules or []:
                target_id = str(ref.rule.id) if ref.rule.id else ref.rule.name
                referenced[target_id] = referenced.get(target_id, False) or rule.generate

    compiled_ids: set[str] = set()
    for rule, path in parsed:
        if isinstance(rule, SigmaCorrelationRule):
            continue
        meta = _meta(rule, path)
        logsource = _logsource(rule)
        health = RuleHealth(id=meta.id, title=meta.title, path=path, kind="detection", status="loaded",
                            level=meta.level, logsource=logsource)
        try:
            if pipeline is not None:
                pipeline.apply(rule)
            predicate = compile_rule(rule)
        except (UnsupportedRule, SigmaError, ValueError, TypeError, KeyError) as exc:
            health.status, health.reason = "failed", str(exc) or type(exc).__name__
            ruleset.health.append(health)
            continue
        if not known_logsource(logsource):
            health.warnings.append("no collector produces events for this logsource yet")
        generate = referenced.get(meta.id, True) if meta.id in referenced else True
        ruleset.rules.append(CompiledRule(meta=meta, logsource=logsource, predicate=predicate, generate=generate))
        compiled_ids.add(meta.id)
        ruleset.health.append(health)

    for rule, path in correlations:
        meta = _meta(rule, path)
        refs = [str(ref.rule.id) if ref.rule.id else ref.rule.name for ref in rule.rules or []]
        health = RuleHealth(id=meta.id, title=meta.title, path=path, kind="correlation", status="loaded",
                            level=meta.level)
        cond = rule.condition
        if not hasattr(cond, "op"):
            health.status, health.reason = "failed", "extended correlation conditions are not supported yet"
            ruleset.health.append(health)
            continue
        ctype = rule.type.name.lower()
        if ctype not in {"event_count", "value_count", "temporal", "temporal_ordered"}:
            health.status, health.reason = "failed", f"correlation type {ctype} is not supported yet"
            ruleset.health.append(health)
            continue
        aliases = {
            alias.alias: {(str(ref.rule.id) if ref.rule.id else ref.rule.name): fld for ref, fld in alias.mapping.items()}
            for alias in rule.aliases
        }
        fieldref = cond.fieldref if isinstance(cond.fieldref, str) or cond.fieldref is None else cond.fieldref[0]
        ruleset.correlations.append(CompiledCorrelation(
            meta=meta, type=ctype, rules=refs, group_by=list(rule.group_by or []),
            timespan=rule.timespan.seconds, op=cond.op.name.lower(), count=cond.count, fieldref=fieldref,
            aliases=aliases, generate=referenced.get(meta.id, True) if meta.id in referenced else True,
        ))
        ruleset.health.append(health)
    # A correlation over a rule that failed to compile can never fire: say so instead of pretending it runs.
    known = compiled_ids | {c.meta.id for c in ruleset.correlations}
    for corr in list(ruleset.correlations):
        missing = [r for r in corr.rules if r not in known]
        if missing:
            ruleset.correlations.remove(corr)
            for h in ruleset.health:
                if h.id == corr.meta.id:
                    h.status, h.reason = "failed", f"referenced rules did not load: {', '.join(missing)}"
    return ruleset
