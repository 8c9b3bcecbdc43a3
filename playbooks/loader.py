"""Load the playbook library: every ``*.yml`` / ``*.yaml`` under the library folders, validated against the schema
and each step's action parameters. A bad file is reported with its path, the line and the reason, and does not
stop the others from loading."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from playbooks.actions import ACTIONS
from playbooks.model import PLACEHOLDER, Playbook

_SAMPLE = {"ip": "192.0.2.1", "network": "192.0.2.0/28", "int": 1, "duration": 3600, "string": "x", "host": "x",
           "user": "x", "interface": "Gi1/0/1", "email": "soc@example.org", "url": "https://example.org/hook"}


@dataclass
class LoadError:
    path: str
    line: int | None
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line or '?'}: {self.reason}"


@dataclass
class Library:
    playbooks: dict[str, Playbook] = field(default_factory=dict)
    errors: list[LoadError] = field(default_factory=list)

    def get(self, name: str) -> Playbook | None:
        return self.playbooks.get(name)

    def matching(self, alert: dict) -> list[Playbook]:
        return [p for p in self.playbooks.values() if p.matches(alert)]


def _line(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """The line of the deepest node the error location reaches (1-based)."""
    best = node
    for part in loc:
        if isinstance(best, yaml.MappingNode):
            child = next((v for k, v in best.value if k.value == str(part)), None)
            if child is None:
                break
            best = child
        elif isinstance(best, yaml.SequenceNode) and isinstance(part, int) and part < len(best.value):
            best = best.value[part]
        else:
            break
    return best.start_mark.line + 1 if best is not None else None


def _sample(value: Any, inputs: dict[str, Any]) -> Any:
    """Parameters with each placeholder replaced by a sample of its input's type, to validate them at load."""
    if isinstance(value, str):
        whole = PLACEHOLDER.fullmatch(value.strip())
        if whole:
            spec = inputs.get(whole.group(1))
            if spec is not None and spec.default is not None:
                return spec.default
            return _SAMPLE.get(spec.type if spec else "string", "x")
        return PLACEHOLDER.sub("x", value)
    if isinstance(value, dict):
        return {k: _sample(v, inputs) for k, v in value.items()}
    if isinstance(value, list):
        return [_sample(v, inputs) for v in value]
    return value


def parse_playbook(text: str, path: str) -> tuple[Playbook | None, LoadError | None]:
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        return None, LoadError(path, mark.line + 1 if mark else None,
                               f"not valid YAML: {getattr(exc, 'problem', None) or exc}")
    if not isinstance(data, dict):
        return None, LoadError(path, 1, "a playbook is a mapping (name, title, triggers, inputs, steps, ...)")
    try:
        playbook = Playbook.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(first["loc"])
        reason = "unknown key" if first["type"] == "extra_forbidden" else first["msg"]
        where = ".".join(str(p) for p in loc)
        return None, LoadError(path, _line(node, loc), f"{where}: {reason}" if where else reason)
    for index, step in enumerate(playbook.steps):
        action = ACTIONS.get(step.action)
        if action is None:
            return None, LoadError(path, _line(node, ("steps", index, "action")),
                                   f"steps.{index}.action: unknown action {step.action!r} "
                                   f"(actions: {', '.join(sorted(ACTIONS))})")
        try:
            action.params_model.model_validate(_sample(step.params, playbook.inputs))
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = ("steps", index, "params", *first["loc"])
            reason = "unknown parameter" if first["type"] == "extra_forbidden" else first["msg"]
            return None, LoadError(path, _line(node, loc), f"{'.'.join(str(p) for p in loc)}: {reason}")
    playbook.path = path
    return playbook, None


def load_library(dirs: list[str]) -> Library:
    library = Library()
    seen: dict[str, str] = {}
    for folder in dirs:
        base = Path(folder)
        if not base.is_dir():
            library.errors.append(LoadError(str(base), None, "the playbook folder does not exist"))
            continue
        for path in sorted(list(base.rglob("*.yml")) + list(base.rglob("*.yaml"))):
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                library.errors.append(LoadError(str(path), None, f"cannot read: {exc}"))
                continue
            playbook, error = parse_playbook(text, str(path))
            if error is not None:
                library.errors.append(error)
                continue
            if playbook.name in seen:
                library.errors.append(LoadError(str(path), 1, f"name {playbook.name!r} is already used by "
                                                              f"{seen[playbook.name]}"))
                continue
            seen[playbook.name] = str(path)
            library.playbooks[playbook.name] = playbook
    return library
