"""Which loaded rules run: the rule selection of the configuration (``detections.rule_selection``), applied to a
loaded rule set.

A rule pack holds thousands of rules, many experimental or of low level: run all of them and the analysts drown.
So a pack's rules run only when their status, level, log source and tags are selected (by default: stable and test
rules of level medium or worse), or when their id is included; deprecated and unsupported rules never run from a
pack. The suite's own rules (``detections.sigma_rule_dirs``) run unless excluded by id. Every rule gets the reason
it runs or not (``RuleHealth.selection``), which `soc rules check` shows.

A rule not selected is not evaluated and not counted as loaded (its health says ``disabled``). One exception: a
rule that a selected correlation counts still runs, for the correlation only (it raises no alert of its own),
otherwise the correlation could never fire. Whether a rule a correlation counts also alerts on its own (Sigma's
``generate``) is decided again here, from the correlations that run: one left out silences nothing, and a pack's
correlation never silences one of the suite's own rules.

Each rule is decided on its own (by its file and its id): a pack's rule cannot take an own rule's decision (the
loader refuses a pack rule with an own rule's id or name anyway, detections/sigma/loader.py).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Iterable

from detections.settings import LogsourceFilter, RuleSelectionConfig
from detections.sigma.loader import CompiledCorrelation, CompiledRule, RuleHealth, RuleSet, generating
from soc.vocabulary import SEVERITIES

NEVER_FROM_A_PACK = ("deprecated", "unsupported")
OWN_RULE = "own rule"


def _under(path: str, roots: tuple[str, ...]) -> bool:
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


def _logsource_text(logsource: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(logsource.items()) if v) or "any"


def _matches(logsource: dict, wanted: LogsourceFilter) -> bool:
    return all(getattr(wanted, key) is None or logsource.get(key) == getattr(wanted, key)
               for key in ("product", "category", "service"))


def _tag_hit(tags: Iterable[str], patterns: list[str]) -> str | None:
    """The first pattern one of ``tags`` matches (case-insensitive; a trailing * makes it a prefix)."""
    lowered = [t.lower() for t in tags]
    for pattern in patterns:
        p = pattern.lower()
        if p.endswith("*"):
            if any(t.startswith(p[:-1]) for t in lowered):
                return pattern
        elif p in lowered:
            return pattern
    return None


class RuleSelection:
    """The configured selection, deciding one rule at a time."""

    def __init__(self, config: RuleSelectionConfig, pack_roots: Iterable[str | Path] = ()):
        """``pack_roots``: the folders of pack rules (the selection applies to them); any other rule is the suite's
        own."""
        self.config = config
        self.pack_roots = tuple(str(Path(root)) for root in pack_roots)
        self.excluded = {i.lower() for i in config.ids_exclude}
        self.included = {i.lower() for i in config.ids_include}

    def own(self, path: str) -> bool:
        """Whether the rule file at ``path`` is one of the suite's own (not under a pack's folder)."""
        return not _under(path, self.pack_roots)

    def decide(self, health: RuleHealth, name: str | None = None) -> tuple[bool, str]:
        """(selected, why) for one rule, from what its health entry knows of it."""
        c = self.config
        ids = {health.id.lower()} | ({name.lower()} if name else set())
        if ids & self.excluded:
            return False, "excluded by id"
        own = self.own(health.path)
        if own and c.own_rules == "all":
            return True, OWN_RULE
        if health.status == "failed" and not health.rule_status and not health.level:
            return True, "nothing is known of it (it does not load)"  # a failure must not hide behind the selection
        status = health.rule_status or "experimental"
        status_text = f"status {health.rule_status}" if health.rule_status else "no status (taken as experimental)"
        if status in NEVER_FROM_A_PACK:
            return False, f"status {status} never runs"
        if ids & self.included:
            return True, "included by id"
        if status not in c.statuses:
            return False, f"{status_text} not selected"
        level = health.level or "medium"
        if level in SEVERITIES and SEVERITIES.index(level) < SEVERITIES.index(c.min_level):
            return False, f"level {level} below {c.min_level}"
        logsource = health.logsource or {}
        if c.logsources and not any(_matches(logsource, wanted) for wanted in c.logsources):
            return False, f"log source {_logsource_text(logsource)} not selected"
        if any(_matches(logsource, wanted) for wanted in c.logsources_exclude):
            return False, f"log source {_logsource_text(logsource)} excluded"
        excluded_tag = _tag_hit(health.tags, c.tags_exclude)
        if excluded_tag:
            return False, f"tag {excluded_tag} excluded"
        if c.tags_include and not _tag_hit(health.tags, c.tags_include):
            return False, "no selected tag"
        return True, f"{status_text}, level {level}"


def select(ruleset: RuleSet, selection: RuleSelection) -> RuleSet:
    """A new RuleSet of the selected rules (the loaded one is left as it was): its health has every rule, the ones
    left out as ``disabled`` with the reason; a failed rule the selection would leave out anyway is disabled too
    (its failure stays in the reason), so failures count only among rules that would run."""
    def key(meta_or_health) -> tuple[str, str]:
        return (meta_or_health.path, meta_or_health.id)

    names = {key(r.meta): r.meta.name for r in ruleset.rules} | {key(c.meta): c.meta.name
                                                                 for c in ruleset.correlations}
    decided = {key(h): selection.decide(h, names.get(key(h))) for h in ruleset.health}
    # A correlation refers to the rules it counts by id: the decision of the rule (or correlation) loaded under it.
    by_id = {r.meta.id: decided[key(r.meta)][0] for r in ruleset.rules + ruleset.correlations}  # type: ignore[operator]
    chosen_correlations = [c for c in ruleset.correlations if decided[key(c.meta)][0]]
    # What the selected correlations count must run, selected or not (chains included): ids -> the correlation.
    feeds: dict[str, str] = {}
    correlation_of = {c.meta.id: c for c in ruleset.correlations}
    pending = list(chosen_correlations)
    while pending:
        corr = pending.pop()
        for ref in corr.rules:
            if ref not in feeds and not by_id.get(ref, True):
                feeds[ref] = corr.meta.title
                if ref in correlation_of:
                    pending.append(correlation_of[ref])
    running = chosen_correlations + [c for c in ruleset.correlations if c.meta.id in feeds]
    own_ids = {r.meta.id for r in ruleset.rules + ruleset.correlations  # type: ignore[operator]
               if selection.own(r.meta.path)}
    referenced = generating(running, own_ids.__contains__, lambda c: not selection.own(c.meta.path))
    out = RuleSet(from_cache=ruleset.from_cache, parsed=ruleset.parsed)
    for rule in ruleset.rules:
        if decided[key(rule.meta)][0]:
            generate = referenced.get(rule.meta.id, True)
            out.rules.append(rule if rule.generate == generate else
                             CompiledRule(rule.meta, rule.logsource, rule.ir, generate=generate))
        elif rule.meta.id in feeds:  # runs for its correlation only: no alert of its own
            out.rules.append(CompiledRule(rule.meta, rule.logsource, rule.ir, generate=False))
    for corr in ruleset.correlations:
        if decided[key(corr.meta)][0]:
            generate = referenced.get(corr.meta.id, True)
            out.correlations.append(corr if corr.generate == generate else dataclasses.replace(corr, generate=generate))
        elif corr.meta.id in feeds:
            out.correlations.append(_feeding_only(corr))
    for health in ruleset.health:
        selected, why = decided[key(health)]
        entry = dataclasses.replace(health, warnings=list(health.warnings), selection=why)
        if not selected and health.id in feeds and health.status == "loaded":
            entry.selection = f"{why}; runs only for the correlation {feeds[health.id]!r}"
        elif not selected:
            if health.status == "failed":
                entry.reason = f"{why} (and it does not load: {health.reason})"
            else:
                entry.reason = why
            entry.status = "disabled"
        out.health.append(entry)
    return out


def _feeding_only(corr: CompiledCorrelation) -> CompiledCorrelation:
    return dataclasses.replace(corr, generate=False)
