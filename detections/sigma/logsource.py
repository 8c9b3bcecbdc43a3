"""Which Sigma log sources an ECS event belongs to: data, not code paths.

A rule's logsource (category / product / service) applies to an event when one of the event's descriptors has every
attribute the rule sets. Descriptors come from the event's ``event.dataset`` (set by the parser) and, for syslog
programs, the program name. Rules are routed once per (dataset, program) pair, so an event is only tested against
rules that could apply to it.
"""

from __future__ import annotations

from typing import Any

# event.dataset -> the log source descriptors of events of that dataset.
DATASET_LOGSOURCES: dict[str, list[dict[str, str]]] = {
    "system.auth": [{"product": "linux", "service": "auth"}, {"product": "linux", "category": "authentication"}],
    "syslog.generic": [{"product": "linux", "service": "syslog"}],
}
# program name -> an extra descriptor (linux sshd rules use service: sshd).
PROGRAM_SERVICES: dict[str, dict[str, str]] = {
    "sshd": {"product": "linux", "service": "sshd"},
    "sudo": {"product": "linux", "service": "sudo"},
    "su": {"product": "linux", "service": "su"},
}


def event_descriptors(flat: dict[str, Any]) -> tuple[dict[str, str], ...]:
    dataset = flat.get("event.dataset") or ""
    descriptors = list(DATASET_LOGSOURCES.get(dataset, ()))
    program = flat.get("process.name")
    if isinstance(program, str) and program in PROGRAM_SERVICES:
        descriptors.append(PROGRAM_SERVICES[program])
    return tuple(descriptors)


def routing_key(flat: dict[str, Any]) -> tuple[str, str]:
    program = flat.get("process.name")
    return (flat.get("event.dataset") or "", program if isinstance(program, str) else "")


def applies(rule_logsource: dict[str, str | None], descriptors: tuple[dict[str, str], ...]) -> bool:
    wanted = {k: v for k, v in rule_logsource.items() if v}
    if not wanted:
        return True
    return any(all(d.get(k) == v for k, v in wanted.items()) for d in descriptors)


def known_logsource(rule_logsource: dict[str, str | None]) -> bool:
    """Whether any collector produces events this logsource applies to (rule health reports it when not)."""
    all_descriptors = [d for ds in DATASET_LOGSOURCES.values() for d in ds] + list(PROGRAM_SERVICES.values())
    return applies(rule_logsource, tuple(all_descriptors))
