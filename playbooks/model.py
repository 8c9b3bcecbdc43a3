"""The playbook schema, validated when the library is loaded (playbooks/loader.py reports file, line, reason).

A playbook says when it runs (triggers on alerts), what it takes from the alert (inputs), when it may act
(conditions), what it does (steps, each an action with parameters) and who must agree first (approval).
Parameters may use ``{{ input }}`` placeholders; nothing else is evaluated.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from soc import linear_re
from soc.vocabulary import Severity, severity_at_least

PLACEHOLDER = re.compile(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}")
_Strict = ConfigDict(extra="forbid")


class Trigger(BaseModel):
    """An alert matches when every field given here matches (a list means any of its values)."""

    model_config = _Strict
    rules: list[str] = []  # rule.name or rule.id
    tags: list[str] = []  # any of the rule's tags
    severity: list[Severity] = []
    min_severity: Severity | None = None
    agencies: list[str] = []  # organization.id

    @model_validator(mode="after")
    def _says_something(self) -> "Trigger":
        if not (self.rules or self.tags or self.severity or self.min_severity or self.agencies):
            raise ValueError("a trigger needs at least one of rules, tags, severity, min_severity, agencies")
        return self


class InputSpec(BaseModel):
    model_config = _Strict
    type: Literal["ip", "network", "string", "int", "duration", "host", "user", "interface", "email", "url"] = \
        "string"
    # Alert fields tried in order; the first present wins (a list gives its first element). Dots walk into the
    # alert, and keys that themselves contain dots (labels["source.ip"]) are found too: "labels.source.ip".
    from_alert: list[str] = Field(default=[], alias="from")
    default: Any = None
    required: bool = True
    description: str = ""

    @field_validator("from_alert", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class Condition(BaseModel):
    """One test on an input or an alert field. Network names: a CIDR, or 'government' (the inventory's government
    networks), 'inventory' (any agency network)."""

    model_config = _Strict
    input: str | None = None
    alert: str | None = None
    equals: Any = None
    not_equals: Any = None
    one_of: list[Any] | None = None
    not_one_of: list[Any] | None = None
    in_networks: list[str] | None = None
    not_in_networks: list[str] | None = None
    matches: str | None = None
    min_severity: Severity | None = None
    exists: bool | None = None

    @model_validator(mode="after")
    def _one_subject_one_test(self) -> "Condition":
        if (self.input is None) == (self.alert is None) and self.min_severity is None:
            raise ValueError("a condition names exactly one of 'input' or 'alert'")
        tests = [k for k in ("equals", "not_equals", "one_of", "not_one_of", "in_networks", "not_in_networks",
                             "matches", "min_severity", "exists") if getattr(self, k) is not None]
        if len(tests) != 1:
            raise ValueError("a condition has exactly one test (equals, not_equals, one_of, not_one_of, "
                             "in_networks, not_in_networks, matches, min_severity, exists)")
        if self.matches is not None:
            linear_re.compile_runtime(self.matches)  # refused here if it cannot run in linear time
        return self


class Step(BaseModel):
    model_config = _Strict
    id: str = Field(pattern=r"^[a-z][a-z0-9_]{0,40}$")
    action: str
    params: dict[str, Any] = {}
    when: list[Condition] = []  # the step is skipped (and says why) unless all hold
    on_error: Literal["stop", "continue"] = "stop"
    description: str = ""


class Approval(BaseModel):
    model_config = _Strict
    # Runs whose every step is low-impact start at once when this is true; anything high-impact always waits.
    auto_low_impact: bool = False
    # Always wait for an approver, whatever the impact.
    always: bool = False


class Playbook(BaseModel):
    model_config = _Strict
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,60}$")
    title: str
    description: str = ""
    version: int = 1
    enabled: bool = True
    triggers: list[Trigger] = []
    inputs: dict[str, InputSpec] = {}
    conditions: list[Condition] = []
    steps: list[Step] = Field(min_length=1)
    approval: Approval = Approval()
    path: str = Field(default="", exclude=True)

    @field_validator("inputs")
    @classmethod
    def _input_names(cls, value: dict[str, InputSpec]) -> dict[str, InputSpec]:
        for name in value:
            if not re.match(r"^[a-z][a-z0-9_]{0,40}$", name):
                raise ValueError(f"input name {name!r} must be lower-case letters, digits and _")
        return value

    @model_validator(mode="after")
    def _references_resolve(self) -> "Playbook":
        known = set(self.inputs) | {"alert_id", "agency", "run_id", "playbook"}
        ids = set()
        for step in self.steps:
            if step.id in ids:
                raise ValueError(f"step id {step.id!r} is used twice")
            ids.add(step.id)
            for name in placeholders(step.params):
                if name not in known:
                    raise ValueError(f"step {step.id!r}: {{{{ {name} }}}} is not an input of this playbook")
        for cond in self.conditions + [c for s in self.steps for c in s.when]:
            if cond.input is not None and cond.input not in known:
                raise ValueError(f"condition on {cond.input!r}: not an input of this playbook")
        return self

    def matches(self, alert: dict) -> bool:
        return self.enabled and any(trigger_matches(t, alert) for t in self.triggers)


def placeholders(value: Any) -> set[str]:
    if isinstance(value, str):
        return set(PLACEHOLDER.findall(value))
    if isinstance(value, dict):
        return set().union(*(placeholders(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(placeholders(v) for v in value)) if value else set()
    return set()


def trigger_matches(trigger: Trigger, alert: dict) -> bool:
    rule = alert.get("rule") or {}
    if trigger.rules and rule.get("name") not in trigger.rules and rule.get("id") not in trigger.rules:
        return False
    if trigger.tags and not set(trigger.tags) & set(rule.get("tags") or []):
        return False
    severity = alert.get("severity")
    if trigger.severity and severity not in trigger.severity:
        return False
    if trigger.min_severity and not severity_at_least(severity, trigger.min_severity):
        return False
    agency = (alert.get("organization") or {}).get("id")
    if trigger.agencies and agency not in trigger.agencies:
        return False
    return True
