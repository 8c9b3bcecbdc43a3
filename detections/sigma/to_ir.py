"""pySigma's condition tree → the compiler's intermediate form (plain tuples; see compiler.py).

Kept apart from compiler.py so that evaluating cached rules never imports pySigma: only parsing does.
"""

from __future__ import annotations

from typing import Any

from sigma.conditions import (
    ConditionAND,
    ConditionFieldEqualsValueExpression,
    ConditionNOT,
    ConditionOR,
    ConditionValueExpression,
)
from sigma.types import (
    SigmaBool,
    SigmaCasedString,
    SigmaCIDRExpression,
    SigmaCompareExpression,
    SigmaExists,
    SigmaExpansion,
    SigmaFieldReference,
    SigmaNull,
    SigmaNumber,
    SigmaRegularExpression,
    SigmaString,
    SigmaTimestampPart,
    SpecialChars,
)


from detections.sigma.compiler import TEXT_TESTS
from detections.sigma.errors import UnsupportedRule

def _string_ir(value: SigmaString, keyword: bool = False) -> tuple:
    if value.contains_placeholder():
        names = ", ".join(sorted({p.name for p in value.s if not isinstance(p, (str, SpecialChars))}))
        raise UnsupportedRule(f"placeholder %{names}% has no value (no pipeline expands it)")
    cased = isinstance(value, SigmaCasedString)
    parts = list(value.s)
    multi, single = SpecialChars.WILDCARD_MULTI, SpecialChars.WILDCARD_SINGLE
    if keyword:  # a keyword matches anywhere in the text, as Sigma backends search free text
        if not parts or parts[0] is not multi:
            parts.insert(0, multi)
        if parts[-1] is not multi:
            parts.append(multi)
    if not any(isinstance(p, SpecialChars) for p in parts):
        return ("eq", "".join(parts), cased)
    if len(parts) == 3 and parts[0] is multi and parts[2] is multi and isinstance(parts[1], str):
        return ("contains", parts[1], cased)
    if len(parts) == 2 and parts[1] is multi and isinstance(parts[0], str):
        return ("startswith", parts[0], cased)
    if len(parts) == 2 and parts[0] is multi and isinstance(parts[1], str):
        return ("endswith", parts[1], cased)
    # Matched by the compiler's linear segment matcher, never as a regex: the runs between "*", each a tuple of
    # literals and None for "?" (a regex of ".*" backtracked polynomially on crafted values).
    segments: list[list[str | None]] = [[]]
    for p in parts:
        if p is multi:
            segments.append([])
        elif p is single:
            segments[-1].append(None)
        elif p:
            run = segments[-1]
            if run and isinstance(run[-1], str):
                run[-1] += p
            else:
                run.append(p)
    literals = tuple(p for p in parts if isinstance(p, str) and p)
    return ("wild", tuple(tuple(run) for run in segments), cased, literals)


def _value_ir(value: Any, keyword: bool = False) -> tuple:
    if isinstance(value, SigmaString):
        return _string_ir(value, keyword)
    if isinstance(value, SigmaBool):
        return ("bool", value.boolean)
    if isinstance(value, SigmaTimestampPart):  # |minute |hour |day |week |month |year of a timestamp field
        return ("tspart", value.timestamp_part.name.lower(), value.number)
    if isinstance(value, SigmaNumber):
        return ("num", value.number)
    if isinstance(value, SigmaCompareExpression):
        return ("cmp", value.op.name.lower(), value.number.number)
    if isinstance(value, SigmaCIDRExpression):
        return ("cidr", value.cidr)
    if isinstance(value, SigmaRegularExpression):
        flags = 0
        for flag in value.flags:
            flags |= SigmaRegularExpression.sigma_to_python_flags[flag]
        return ("re", str(value.regexp), flags)
    if isinstance(value, SigmaExpansion):
        return ("any", tuple(_value_ir(v, keyword) for v in value.values))
    raise UnsupportedRule(f"value type {type(value).__name__} is not supported by the streaming evaluator")


def to_ir(node: Any, windows: bool = False) -> tuple:
    """``windows``: the rule is for Windows events, whose string conditions also match a value trimmed of the
    whitespace around it (a 4th element "trim") and whose keywords search every value (a 3rd element "all"): see
    compiler.py and soc/windows.py."""
    if isinstance(node, ConditionAND):
        return ("and", tuple(to_ir(a, windows) for a in node.args))
    if isinstance(node, ConditionOR):
        return ("or", tuple(to_ir(a, windows) for a in node.args))
    if isinstance(node, ConditionNOT):
        return ("not", to_ir(node.args[0], windows))
    if isinstance(node, ConditionFieldEqualsValueExpression):
        value = node.value
        if isinstance(value, SigmaNull):
            return ("field", node.field, ("null",))
        if isinstance(value, SigmaExists):
            return ("field", node.field, ("exists", value.exists))
        if isinstance(value, SigmaFieldReference):
            return ("field", node.field, ("fieldref", value.field, value.starts_with, value.ends_with))
        spec = _value_ir(value)
        return ("field", node.field, spec, "trim") if windows and spec[0] in TEXT_TESTS else ("field", node.field, spec)
    if isinstance(node, ConditionValueExpression):
        spec = _value_ir(node.value, keyword=True)
        return ("keyword", spec, "all") if windows else ("keyword", spec)
    if node is None:
        raise UnsupportedRule("the detection is empty after processing")
    raise UnsupportedRule(f"condition element {type(node).__name__} is not supported")


def rule_ir(rule) -> tuple:
    """The IR of a pySigma SigmaRule: an OR of its conditions (Sigma allows a list of conditions)."""
    windows = getattr(rule.logsource, "product", None) == "windows"
    conditions = tuple(to_ir(condition.parsed, windows) for condition in rule.detection.parsed_condition)
    return conditions[0] if len(conditions) == 1 else ("or", conditions)


