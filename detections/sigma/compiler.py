"""Compile a pySigma rule's condition tree into a Python predicate over a flattened ECS event.

pySigma parses the rule, applies its modifiers (contains, base64, windash, cidr, re, ...) and, after the processing
pipeline mapped field names, yields a tree of AND / OR / NOT nodes whose leaves are "field equals typed value" or
"keyword". This module turns each leaf into a small closure once, at load time, so evaluating an event is a walk of
closures with no parsing. Anything it cannot evaluate raises UnsupportedRule with the reason, so rule health can say
exactly why a rule does not run — it is never silently skipped.

Sigma semantics kept here: strings match case-insensitively (unless ``cased``), ``*`` and ``?`` are wildcards, a
field holding a list matches if any element matches, a missing field never equals anything but ``null``.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Callable

from sigma.conditions import (
    ConditionAND,
    ConditionFieldEqualsValueExpression,
    ConditionNOT,
    ConditionOR,
    ConditionValueExpression,
)
from sigma.types import (
    CompareOperators,
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
    SigmaRegularExpressionFlag,
    SigmaString,
    SpecialChars,
)

Event = dict[str, Any]  # flattened: {"source.ip": "...", "event.category": ["authentication"], ...}
Predicate = Callable[[Event], bool]
ValueTest = Callable[[Any], bool]

# Keyword (field-less) values are searched in these fields, in this order.
KEYWORD_FIELDS = ("message", "event.original")


class UnsupportedRule(Exception):
    """The rule uses something this evaluator cannot run; the message is the reason shown in rule health."""


def _values(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, list):
        return [v for v in value if v is not None]
    return [value]


def _as_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return None


def _string_test(value: SigmaString) -> tuple[ValueTest, list[str]]:
    """A test for one Sigma string, and the literal parts an event must contain for it to match (for prefilters)."""
    if value.contains_placeholder():
        names = ", ".join(sorted({p.name for p in value.s if not isinstance(p, (str, SpecialChars))}))
        raise UnsupportedRule(f"placeholder %{names}% has no value (no pipeline expands it)")
    cased = isinstance(value, SigmaCasedString)
    parts = value.s
    literals = [p for p in parts if isinstance(p, str) and p]
    multi, single = SpecialChars.WILDCARD_MULTI, SpecialChars.WILDCARD_SINGLE
    fold: Callable[[str], str] = (lambda s: s) if cased else str.casefold
    if not value.contains_special():
        target = fold("".join(literals))

        def equals(v: Any) -> bool:
            text = _as_text(v)
            return text is not None and fold(text) == target

        return equals, literals
    plain_inner = all(isinstance(p, str) for p in parts[1:-1])
    if len(parts) == 3 and parts[0] is multi and parts[2] is multi and isinstance(parts[1], str):
        needle = fold(parts[1])

        def contains(v: Any) -> bool:
            text = _as_text(v)
            return text is not None and needle in fold(text)

        return contains, literals
    if len(parts) == 2 and parts[1] is multi and isinstance(parts[0], str):
        prefix = fold(parts[0])

        def startswith(v: Any) -> bool:
            text = _as_text(v)
            return text is not None and fold(text).startswith(prefix)

        return startswith, literals
    if len(parts) == 2 and parts[0] is multi and isinstance(parts[1], str):
        suffix = fold(parts[1])

        def endswith(v: Any) -> bool:
            text = _as_text(v)
            return text is not None and fold(text).endswith(suffix)

        return endswith, literals
    del plain_inner
    pattern = "".join(
        ".*" if p is multi else "." if p is single else re.escape(p) for p in parts  # type: ignore[arg-type]
    )
    regex = re.compile(pattern, re.DOTALL | (0 if cased else re.IGNORECASE))

    def wildcard(v: Any) -> bool:
        text = _as_text(v)
        return text is not None and regex.fullmatch(text) is not None

    return wildcard, literals


def _number_test(value: SigmaNumber) -> ValueTest:
    target = value.number

    def equals(v: Any) -> bool:
        if isinstance(v, bool):
            return False
        if isinstance(v, (int, float)):
            return v == target
        if isinstance(v, str):
            try:
                return float(v) == target
            except ValueError:
                return False
        return False

    return equals


def _compare_test(value: SigmaCompareExpression) -> ValueTest:
    target = value.number.number
    op = {
        CompareOperators.LT: lambda a: a < target,
        CompareOperators.LTE: lambda a: a <= target,
        CompareOperators.GT: lambda a: a > target,
        CompareOperators.GTE: lambda a: a >= target,
    }[value.op]

    def compare(v: Any) -> bool:
        if isinstance(v, bool):
            return False
        if isinstance(v, str):
            try:
                v = float(v)
            except ValueError:
                return False
        return isinstance(v, (int, float)) and op(v)

    return compare


def _cidr_test(value: SigmaCIDRExpression) -> ValueTest:
    network = ipaddress.ip_network(value.cidr, strict=False)

    def in_network(v: Any) -> bool:
        if not isinstance(v, str):
            return False
        try:
            return ipaddress.ip_address(v) in network
        except ValueError:
            return False

    return in_network


def _regex_test(value: SigmaRegularExpression) -> ValueTest:
    flags = 0
    for flag in value.flags:
        flags |= SigmaRegularExpression.sigma_to_python_flags[flag]
    regex = re.compile(str(value.regexp), flags)

    def search(v: Any) -> bool:
        text = _as_text(v)
        return text is not None and regex.search(text) is not None

    return search


def _value_test(value: Any) -> ValueTest:
    if isinstance(value, SigmaString):
        return _string_test(value)[0]
    if isinstance(value, SigmaBool):
        target = value.boolean
        return lambda v: v is target or (isinstance(v, str) and v.lower() == str(target).lower())
    if isinstance(value, SigmaNumber):
        return _number_test(value)
    if isinstance(value, SigmaCompareExpression):
        return _compare_test(value)
    if isinstance(value, SigmaCIDRExpression):
        return _cidr_test(value)
    if isinstance(value, SigmaRegularExpression):
        return _regex_test(value)
    if isinstance(value, SigmaExpansion):
        tests = [_value_test(v) for v in value.values]
        return lambda v: any(t(v) for t in tests)
    raise UnsupportedRule(f"value type {type(value).__name__} is not supported by the streaming evaluator")


def _field_leaf(node: ConditionFieldEqualsValueExpression) -> Predicate:
    field, value = node.field, node.value
    if isinstance(value, SigmaNull):
        return lambda e: not _values(e.get(field))
    if isinstance(value, SigmaExists):
        wanted = value.exists
        return lambda e: bool(_values(e.get(field))) is wanted
    if isinstance(value, SigmaFieldReference):
        other = value.field
        starts, ends = value.starts_with, value.ends_with

        def fieldref(e: Event) -> bool:
            mine, theirs = _values(e.get(field)), _values(e.get(other))
            for a in mine:
                ta = _as_text(a)
                for b in theirs:
                    tb = _as_text(b)
                    if ta is None or tb is None:
                        continue
                    if starts and ta.casefold().startswith(tb.casefold()):
                        return True
                    if ends and ta.casefold().endswith(tb.casefold()):
                        return True
                    if not starts and not ends and ta.casefold() == tb.casefold():
                        return True
            return False

        return fieldref
    test = _value_test(value)

    def leaf(e: Event) -> bool:
        v = e.get(field)
        if v is None:
            return False
        if isinstance(v, list):
            return any(test(x) for x in v if x is not None)
        return test(v)

    return leaf


def _keyword_leaf(node: ConditionValueExpression) -> Predicate:
    value = node.value
    if isinstance(value, SigmaString):
        # A keyword matches anywhere in the text, as Sigma backends search free text.
        inner = value if value.startswith(SpecialChars.WILDCARD_MULTI) else SigmaString("*") + value
        inner = inner if inner.endswith(SpecialChars.WILDCARD_MULTI) else inner + SigmaString("*")
        test = _string_test(inner)[0]
    else:
        test = _value_test(value)

    def keyword(e: Event) -> bool:
        for name in KEYWORD_FIELDS:
            v = e.get(name)
            if v is not None and test(v):
                return True
        return False

    return keyword


def compile_condition(node: Any) -> Predicate:
    if isinstance(node, ConditionAND):
        parts = [compile_condition(a) for a in node.args]
        if len(parts) == 2:
            a, b = parts
            return lambda e: a(e) and b(e)
        return lambda e: all(p(e) for p in parts)
    if isinstance(node, ConditionOR):
        parts = [compile_condition(a) for a in node.args]
        if len(parts) == 2:
            a, b = parts
            return lambda e: a(e) or b(e)
        return lambda e: any(p(e) for p in parts)
    if isinstance(node, ConditionNOT):
        inner = compile_condition(node.args[0])
        return lambda e: not inner(e)
    if isinstance(node, ConditionFieldEqualsValueExpression):
        return _field_leaf(node)
    if isinstance(node, ConditionValueExpression):
        return _keyword_leaf(node)
    if node is None:
        raise UnsupportedRule("the detection is empty after processing")
    raise UnsupportedRule(f"condition element {type(node).__name__} is not supported")


def compile_rule(rule) -> Predicate:
    """A predicate for a pySigma SigmaRule: true when any of its conditions holds."""
    predicates = [compile_condition(condition.parsed) for condition in rule.detection.parsed_condition]
    if len(predicates) == 1:
        return predicates[0]
    return lambda e: any(p(e) for p in predicates)


__all__ = ["compile_rule", "compile_condition", "UnsupportedRule", "SigmaRegularExpressionFlag"]
