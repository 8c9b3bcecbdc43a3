"""A run's context: inputs taken from the alert (or given with --set), typed and checked, ``{{ input }}``
placeholders in step parameters, and the conditions of a playbook. Nothing here evaluates code."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from inventory.lookup import Inventory
from playbooks.model import PLACEHOLDER, Condition, InputSpec, Playbook, severity_at_least
from playbooks.values import InterfaceName, ValueRefused, normalise_address, normalise_network
from soc import linear_re


class InputError(ValueError):
    pass


MAX_MATCHED_CHARS = 4096  # of an alert value a playbook condition's pattern reads
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: Any) -> int:
    if isinstance(value, bool):
        raise InputError(f"{value!r} is not a duration")
    if isinstance(value, (int, float)):
        seconds = int(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise InputError(f"{value!r} is not a duration (e.g. 3600, 30m, 1h, 7d)")
        seconds = int(float(match.group(1)) * _UNITS[match.group(2)])
    if seconds <= 0:
        raise InputError(f"a duration must be positive, not {value!r}")
    return seconds


def alert_value(alert: dict | None, path: str) -> Any:
    """Walk a dotted path; keys that contain dots themselves (labels["source.ip"]) are found too."""
    if alert is None:
        return None
    parts = path.split(".")

    def walk(node: Any, rest: list[str]) -> Any:
        if not rest:
            return node
        if isinstance(node, list):
            node = node[0] if node else None
        if not isinstance(node, dict):
            return None
        for cut in range(len(rest), 0, -1):
            key = ".".join(rest[:cut])
            if key in node:
                found = walk(node[key], rest[cut:])
                if found is not None:
                    return found
        return None

    value = walk(alert, parts)
    if isinstance(value, list):
        value = value[0] if value else None
    return value


# One line of text for the free-form input types: no control character (a newline or carriage return would start a
# new command line on a device, a new header in a mail), no quote or shell separator, at most 256 characters.
_TEXT_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029]")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@\\-]{0,127}")  # a host or user name (DOMAIN\\user, user@realm)
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]{1,190}\.[A-Za-z]{2,24}")


def coerce(name: str, spec: InputSpec, value: Any) -> Any:
    """An input as its type: addresses and networks strictly parsed and normalised (an IPv4-mapped IPv6 address is
    the IPv4 host it stands for; a scope id is refused), names checked against their grammar, text one clean line."""
    try:
        if isinstance(value, (dict, list)):
            raise ValueError("a single value was expected")
        if spec.type == "ip":
            return str(normalise_address(value, f"input {name}"))
        if spec.type == "network":
            return str(normalise_network(value, f"input {name}"))
        if spec.type == "interface":
            return str(InterfaceName.parse(str(value).strip(), f"input {name}"))
        if spec.type == "int":
            if isinstance(value, bool):
                raise ValueError("not a number")
            return int(value)
        if spec.type == "duration":
            return parse_duration(value)
        if spec.type in ("host", "user"):
            text = str(value).strip()
            if not _NAME.fullmatch(text):
                raise ValueError(f"not a {spec.type} name (letters, digits and . _ @ \\ - only)")
            return text
        if spec.type == "email":
            text = str(value).strip()
            if not _EMAIL.fullmatch(text):
                raise ValueError("not an e-mail address")
            return text
        if spec.type == "url":
            text = str(value).strip()
            if not re.fullmatch(r"https?://[^\s\x00-\x1f\x7f\"'<>\\`]{1,2000}", text):
                raise ValueError("not an http(s) URL")
            return text
        text = str(value)
        if not text or _TEXT_FORBIDDEN.search(text) or len(text) > 256:
            raise ValueError("must be one line of at most 256 characters with no control characters")
        return text
    except ValueRefused as exc:  # already names the input, the value and why
        raise InputError(str(exc)) from exc
    except (ValueError, TypeError) as exc:
        raise InputError(f"input {name}: {str(value)[:80]!r} is not a valid {spec.type}: {exc}") from exc


def resolve_inputs(playbook: Playbook, alert: dict | None, overrides: dict[str, Any]) -> dict[str, Any]:
    unknown = set(overrides) - set(playbook.inputs) - {"agency"}
    if unknown:
        raise InputError(f"{', '.join(sorted(unknown))}: not inputs of playbook {playbook.name} "
                         f"(inputs: {', '.join(playbook.inputs) or 'none'})")
    values: dict[str, Any] = {}
    for name, spec in playbook.inputs.items():
        raw = overrides.get(name)
        if raw is None:
            for path in spec.from_alert:
                raw = alert_value(alert, path)
                if raw not in (None, ""):
                    break
        if raw in (None, ""):
            raw = spec.default
        if raw in (None, ""):
            if spec.required:
                where = f" (looked in the alert at {', '.join(spec.from_alert)})" if spec.from_alert else ""
                raise InputError(f"input {name} is required{where}")
            values[name] = None
            continue
        values[name] = coerce(name, spec, raw)
    return values


def render(value: Any, variables: dict[str, Any]) -> Any:
    """Replace {{ name }}: a value that is exactly one placeholder keeps the input's type."""
    if isinstance(value, str):
        whole = PLACEHOLDER.fullmatch(value.strip())
        if whole:
            return variables.get(whole.group(1))
        return PLACEHOLDER.sub(lambda m: "" if variables.get(m.group(1)) is None else str(variables[m.group(1)]),
                               value)
    if isinstance(value, dict):
        return {k: render(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, variables) for v in value]
    return value


def _networks(names: list[str], inventory: Inventory) -> list:
    found = []
    for name in names:
        if name == "government":
            found.extend(ipaddress.ip_network(c) for c in inventory.document.government_networks)
        elif name == "inventory":
            found.extend(ipaddress.ip_network(n.cidr) for a in inventory.agencies.values() for n in a.networks)
        else:
            found.append(ipaddress.ip_network(name, strict=False))
    return found


def _in_networks(value: Any, names: list[str], inventory: Inventory) -> bool:
    try:
        net = normalise_network(value)
    except ValueRefused:
        return False
    return any(n.version == net.version and net.subnet_of(n) for n in _networks(names, inventory))


def condition_holds(cond: Condition, variables: dict[str, Any], alert: dict | None,
                    inventory: Inventory) -> tuple[bool, str]:
    """(holds, what was tested) for one condition."""
    if cond.min_severity is not None:
        severity = (alert or {}).get("severity")
        return severity_at_least(severity, cond.min_severity), f"alert severity {severity} >= {cond.min_severity}"
    subject = f"input {cond.input}" if cond.input is not None else f"alert {cond.alert}"
    value = variables.get(cond.input) if cond.input is not None else alert_value(alert, cond.alert or "")
    if cond.exists is not None:
        return (value not in (None, "")) == cond.exists, f"{subject} {'exists' if cond.exists else 'is absent'}"
    if cond.equals is not None:
        return value == cond.equals, f"{subject} == {cond.equals!r} (is {value!r})"
    if cond.not_equals is not None:
        return value != cond.not_equals, f"{subject} != {cond.not_equals!r} (is {value!r})"
    if cond.one_of is not None:
        return value in cond.one_of, f"{subject} in {cond.one_of} (is {value!r})"
    if cond.not_one_of is not None:
        return value not in cond.not_one_of, f"{subject} not in {cond.not_one_of} (is {value!r})"
    if cond.in_networks is not None:
        return _in_networks(value, cond.in_networks, inventory), f"{subject} ({value}) in {cond.in_networks}"
    if cond.not_in_networks is not None:
        return (value is not None and not _in_networks(value, cond.not_in_networks, inventory),
                f"{subject} ({value}) not in {cond.not_in_networks}")
    # A playbook author's pattern over alert values (a sender's text): linear time, checked when the library loads.
    matched = linear_re.compile_runtime(cond.matches or "").search(str(value or "")[:MAX_MATCHED_CHARS])
    return matched is not None, f"{subject} matches {cond.matches!r}"


def check_conditions(conditions: list[Condition], variables: dict[str, Any], alert: dict | None,
                     inventory: Inventory) -> str | None:
    """None if all hold, else the first that does not, in words."""
    for cond in conditions:
        holds, said = condition_holds(cond, variables, alert, inventory)
        if not holds:
            return f"condition not met: {said}"
    return None
