"""What changes when one rule pack version replaces another: rules added, removed and changed (by rule id and the
content hash of its file), and the rules that do not load in the new version, with the reason.

Both versions are loaded the way the suite loads them (its own rules beside the pack, the same pipeline and
placeholders), so a correlation that refers to a rule the new version lost shows as failing here before it fails in
the suite, and so does a rule that would take the id or the name of one of the suite's own rules (it does not load:
"collides with the suite's own rule ..."). Only the pack's rules are compared; a rule is known by its id, or by its
file when it has none (a file that cannot be parsed, a rule with neither id nor name), and by its file too when
several of the pack's rules share an id (none of them loads).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from detections.sigma.loader import RuleHealth, RuleSet


@dataclass(frozen=True)
class RuleChange:
    id: str
    title: str
    path: str  # inside the pack
    reason: str = ""  # why it does not load (failing)
    new: bool = False  # failing: it loaded in the version before (or was not there)


@dataclass
class PackChanges:
    before: str | None  # version ids; None: no pack
    after: str | None
    added: list[RuleChange] = field(default_factory=list)
    removed: list[RuleChange] = field(default_factory=list)
    changed: list[RuleChange] = field(default_factory=list)
    failing: list[RuleChange] = field(default_factory=list)
    rules_before: int = 0  # rules of the pack (loaded or not)
    rules_after: int = 0
    selected_after: int = 0  # of the pack's rules, those the rule selection runs
    disabled_after: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        """The report as text, one rule a line."""
        out = [f"changes from {self.before or 'no pack'} to {self.after or 'no pack'}: {len(self.added)} added, "
               f"{len(self.removed)} removed, {len(self.changed)} changed, {len(self.failing)} not loading "
               f"({self.rules_before} -> {self.rules_after} rules in the pack)"]
        for word, items in (("added", self.added), ("removed", self.removed), ("changed", self.changed)):
            out.extend(f"  {word:<8} {c.id}  {c.title} [{c.path}]" for c in items)
        for c in self.failing:
            out.append(f"  {'FAILING' if c.new else 'failing':<8} {c.id}  {c.title} [{c.path}]: {c.reason}")
        out.append(f"rule selection: {self.selected_after} of the pack's rules run, {self.disabled_after} not selected "
                   "(`soc rules check` says why for each)")
        return out


def _relative(path: str, root: Path | None) -> str | None:
    """The path inside the pack, or None for a rule that is not the pack's."""
    if root is None:
        return None
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return None


def _pack_rules(ruleset: RuleSet | None, root: Path | None) -> dict[str, tuple[RuleHealth, str]]:
    found: dict[str, tuple[RuleHealth, str]] = {}
    for health in ruleset.health if ruleset is not None else ():
        relative = _relative(health.path, root)
        if relative is None:
            continue
        if health.id == health.path:
            key = f"file:{relative}"
        elif health.id == f"{health.path}:{health.title}":  # neither id nor name (detections/sigma/loader.py)
            key = f"file:{relative}:{health.title}"
        else:
            key = health.id
        if key in found:  # the same id twice in the pack: each is known by its file too
            key = f"{key} [{relative}]"
        found[key] = (health, relative)
    return found


def compare(before: RuleSet | None, before_root: Path | None, after: RuleSet, after_root: Path | None,
            before_id: str | None = None, after_id: str | None = None,
            after_selected: RuleSet | None = None) -> PackChanges:
    """``before``/``after``: the rule sets as loaded (before the rule selection); ``*_root``: each version's rule
    folder; ``after_selected``: ``after`` with the selection applied, for how many of the pack's rules run."""
    old, new = _pack_rules(before, before_root), _pack_rules(after, after_root)
    changes = PackChanges(before_id, after_id, rules_before=len(old), rules_after=len(new))
    for key in sorted(new.keys() - old.keys()):
        health, path = new[key]
        changes.added.append(RuleChange(key, health.title, path))
    for key in sorted(old.keys() - new.keys()):
        health, path = old[key]
        changes.removed.append(RuleChange(key, health.title, path))
    for key in sorted(new.keys() & old.keys()):
        (was, _), (now, path) = old[key], new[key]
        if was.digest != now.digest:
            changes.changed.append(RuleChange(key, now.title, path))
    for key, (health, path) in sorted(new.items()):
        if health.status == "failed":
            earlier = old.get(key)
            changes.failing.append(RuleChange(key, health.title, path, health.reason,
                                              new=earlier is None or earlier[0].status != "failed"))
    if after_selected is not None:
        for health, _ in _pack_rules(after_selected, after_root).values():
            if health.status == "disabled":
                changes.disabled_after += 1
            elif health.status == "loaded":
                changes.selected_after += 1
    return changes
