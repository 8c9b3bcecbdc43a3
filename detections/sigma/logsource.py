"""Which Sigma log sources an event belongs to, and the field view the rules see: data, not code paths.

A rule's logsource (category / product / service) applies to an event when one of the event's descriptors has every
attribute the rule sets. Rules are routed once per routing key — (dataset, program) for ECS events, (channel, event
id) for Windows events — so an event is only tested against rules that could apply to it.

Windows events are shown to the rules with Windows' own field names (EventID, Channel, Image, CommandLine, ...), the
names SigmaHQ's Windows rules are written against, whether they come from an EVTX file or from a Winlogbeat document
stored as ECS (``winlog.event_data.*``): soc/windows.py holds that view and the Windows log source tables. Other
events are shown as flattened ECS; their rules were mapped to ECS by the processing pipeline
(detections/sigma/pipelines.py).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from soc import ecs, windows

# --- ECS events -----------------------------------------------------------------------------------------------------
# event.dataset -> the log source descriptors of its events.
_LINUX_AUTH = [{"product": "linux", "service": "auth"}, {"product": "linux", "category": "authentication"}]
_FIREWALL = [{"category": "firewall"}]
_WEB = [{"category": "webserver"}]
DATASET_LOGSOURCES: dict[str, list[dict[str, str]]] = {
    "system.auth": _LINUX_AUTH,
    "syslog.generic": [{"product": "linux", "service": "syslog"}],
    "system.syslog": [{"product": "linux", "service": "syslog"}],
    "leef.log": [{"product": "leef"}],
    "auditd.log": [{"product": "linux", "service": "auditd"}],
    "iptables.log": _FIREWALL + [{"product": "linux", "service": "iptables"}],
    "cisco_asa.log": _FIREWALL + [{"product": "cisco", "service": "asa"}],
    "fortinet_fortigate.log": _FIREWALL + [{"product": "fortinet", "service": "fortigate"}],
    "sophos.xg": _FIREWALL + [{"product": "sophos", "service": "xg"}],
    "sonicwall_firewall.log": _FIREWALL + [{"product": "sonicwall"}],
    "pfsense.log": _FIREWALL + [{"product": "pfsense"}],
    "nginx.access": _WEB + [{"product": "nginx"}],
    "nginx.error": [{"product": "nginx", "service": "error"}],
    "apache.access": _WEB + [{"product": "apache"}],
    "apache.error": [{"product": "apache", "service": "error"}],
    "modsecurity.auditlog": _WEB + [{"product": "modsecurity"}],
    "network.dns": [{"category": "dns"}],
    "network.http": [{"category": "proxy"}],
    "network.tls": [{"category": "network", "service": "tls"}],
    "network.flow": [{"category": "network_connection"}],
    "cef.log": [{"product": "cef"}],
    "antivirus.log": [{"category": "antivirus"}],
}
# program name -> an extra descriptor (linux sshd rules use service: sshd).
PROGRAM_SERVICES: dict[str, dict[str, str]] = {
    "sshd": {"product": "linux", "service": "sshd"},
    "sudo": {"product": "linux", "service": "sudo"},
    "su": {"product": "linux", "service": "su"},
    "vsftpd": {"product": "linux", "service": "vsftpd"},
    "clamd": {"product": "linux", "service": "clamav"},
    "cron": {"product": "linux", "service": "cron"},
    "guacd": {"product": "linux", "service": "guacamole"},
}


def view_of(doc: dict) -> tuple[dict[str, Any], tuple]:
    """(the fields rules are evaluated on, the routing key) for a stored ECS document."""
    if "winlog" in doc:
        view = windows.view_from_winlogbeat(doc)
        return view, windows.routing_key(view)
    return ecs.flatten(doc), ecs_routing_key(doc)


def ecs_routing_key(doc: dict) -> tuple:
    """The routing key of an ECS (not Windows) document, nested or already flattened: no flattening needed."""
    program = ecs.get(doc, "process.name")
    return ("ecs", ecs.get(doc, "event.dataset") or "", program if isinstance(program, str) else "")


@lru_cache(maxsize=4096)
def descriptors_for(key: tuple) -> tuple[dict[str, str], ...]:
    if key[0] == "windows":
        return windows.logsources(key[1], key[2])
    _, dataset, program = key
    descriptors = list(DATASET_LOGSOURCES.get(dataset, ()))
    if program in PROGRAM_SERVICES:
        descriptors.append(PROGRAM_SERVICES[program])
    return tuple(descriptors)


def event_descriptors(flat: dict[str, Any]) -> tuple[dict[str, str], ...]:
    return descriptors_for(ecs_routing_key(flat))  # ecs.get reads dotted keys of a flat view as well


def applies(rule_logsource: dict[str, str | None], descriptors: tuple[dict[str, str], ...]) -> bool:
    wanted = {k: v for k, v in rule_logsource.items() if v}
    if not wanted:
        return True
    return any(all(d.get(k) == v for k, v in wanted.items()) for d in descriptors)


@lru_cache(maxsize=1)
def _all_descriptors() -> tuple[dict[str, str], ...]:
    found = [d for ds in DATASET_LOGSOURCES.values() for d in ds] + list(PROGRAM_SERVICES.values())
    return tuple(found + windows.all_logsources())


def known_logsource(rule_logsource: dict[str, str | None]) -> bool:
    """Whether any collector produces events this logsource applies to (rule health reports it when not)."""
    return _known(rule_logsource.get("category"), rule_logsource.get("product"), rule_logsource.get("service"))


@lru_cache(maxsize=1024)
def _known(category: str | None, product: str | None, service: str | None) -> bool:
    return applies({"category": category, "product": product, "service": service}, _all_descriptors())
