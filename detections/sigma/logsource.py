"""Which Sigma log sources an event belongs to, and the field view the rules see: data, not code paths.

A rule's logsource (category / product / service) applies to an event when one of the event's descriptors has every
attribute the rule sets. Rules are routed once per routing key — (dataset, program) for ECS events, (channel, event
id) for Windows events — so an event is only tested against rules that could apply to it.

Windows events are shown to the rules with Windows' own field names (EventID, Channel, Image, CommandLine, ...), the
names SigmaHQ's Windows rules are written against, whether they come from an EVTX file or from a Winlogbeat document
stored as ECS (``winlog.event_data.*``). Other events are shown as flattened ECS; their rules were mapped to ECS by the
processing pipeline (detections/sigma/pipelines.py).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from collectors.parsers.windows import normalize_event_data
from soc import ecs

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

# --- Windows events -------------------------------------------------------------------------------------------------
# Sigma Windows service -> event log channel(s): pySigma"s own table (sigma.pipelines.common.windows_logsource_mapping),
# kept here as data so that evaluating rules needs no pySigma import; tests/test_sigma_engine.py checks it is equal.
WINDOWS_SERVICE_CHANNELS: dict[str, str | list[str]] = {
    "security": "Security",
    "application": "Application",
    "system": "System",
    "sysmon": "Microsoft-Windows-Sysmon/Operational",
    "powershell": ["Microsoft-Windows-PowerShell/Operational", "PowerShellCore/Operational"],
    "powershell-classic": "Windows PowerShell",
    "taskscheduler": "Microsoft-Windows-TaskScheduler/Operational",
    "wmi": "Microsoft-Windows-WMI-Activity/Operational",
    "dns-server": "DNS Server",
    "dns-server-audit": "Microsoft-Windows-DNS-Server/Audit",
    "dns-server-analytic": "Microsoft-Windows-DNS-Server/Analytical",
    "driver-framework": "Microsoft-Windows-DriverFrameworks-UserMode/Operational",
    "ntlm": "Microsoft-Windows-NTLM/Operational",
    "dhcp": "Microsoft-Windows-DHCP-Server/Operational",
    "msexchange-management": "MSExchange Management",
    "applocker": ["Microsoft-Windows-AppLocker/MSI and Script", "Microsoft-Windows-AppLocker/EXE and DLL",
                  "Microsoft-Windows-AppLocker/Packaged app-Deployment",
                  "Microsoft-Windows-AppLocker/Packaged app-Execution"],
    "printservice-admin": "Microsoft-Windows-PrintService/Admin",
    "printservice-operational": "Microsoft-Windows-PrintService/Operational",
    "codeintegrity-operational": "Microsoft-Windows-CodeIntegrity/Operational",
    "smbclient-security": "Microsoft-Windows-SmbClient/Security",
    "firewall-as": "Microsoft-Windows-Windows Firewall With Advanced Security/Firewall",
    "bits-client": "Microsoft-Windows-Bits-Client/Operational",
    "windefend": "Microsoft-Windows-Windows Defender/Operational",
    "terminalservices-localsessionmanager": "Microsoft-Windows-TerminalServices-LocalSessionManager/Operational",
    "microsoft-servicebus-client": "Microsoft-ServiceBus-Client",
    "ldap_debug": "Microsoft-Windows-LDAP-Client/Debug",
    "security-mitigations": ["Microsoft-Windows-Security-Mitigations/Kernel Mode",
                             "Microsoft-Windows-Security-Mitigations/User Mode"],
    "diagnosis-scripted": "Microsoft-Windows-Diagnosis-Scripted/Operational",
    "shell-core": "Microsoft-Windows-Shell-Core/Operational",
    "openssh": "OpenSSH/Operational",
    "bitlocker": "Microsoft-Windows-BitLocker/BitLocker Management",
    "vhdmp": "Microsoft-Windows-VHDMP/Operational",
    "appxdeployment-server": "Microsoft-Windows-AppXDeploymentServer/Operational",
    "lsa-server": "Microsoft-Windows-LSA/Operational",
    "appxpackaging-om": "Microsoft-Windows-AppxPackaging/Operational",
    "dns-client": "Microsoft-Windows-DNS Client Events/Operational",
    "appmodel-runtime": "Microsoft-Windows-AppModel-Runtime/Admin",
    "capi2": "Microsoft-Windows-CAPI2/Operational",
    "certificateservicesclient-lifecycle-system":
        "Microsoft-Windows-CertificateServicesClient-Lifecycle-System/Operational",
}


@lru_cache(maxsize=1)
def windows_channel_services() -> dict[str, list[str]]:
    """Channel (lowercase) -> Sigma services."""
    services: dict[str, list[str]] = {}
    for service, channels in WINDOWS_SERVICE_CHANNELS.items():
        for channel in [channels] if isinstance(channels, str) else channels:
            services.setdefault(channel.lower(), []).append(service)
    return services


SYSMON_CHANNEL = "microsoft-windows-sysmon/operational"
# Sysmon event id -> Sigma categories (as in Sigma's Sysmon mapping).
SYSMON_CATEGORIES: dict[int, tuple[str, ...]] = {
    1: ("process_creation",), 2: ("file_change",), 3: ("network_connection",), 4: ("sysmon_status",),
    5: ("process_termination",), 6: ("driver_load",), 7: ("image_load",), 8: ("create_remote_thread",),
    9: ("raw_access_thread",), 10: ("process_access",), 11: ("file_event",),
    12: ("registry_add", "registry_delete", "registry_event"), 13: ("registry_set", "registry_event"),
    14: ("registry_rename", "registry_event"), 15: ("create_stream_hash",), 16: ("sysmon_status",),
    17: ("pipe_created",), 18: ("pipe_created",), 19: ("wmi_event",), 20: ("wmi_event",), 21: ("wmi_event",),
    22: ("dns_query",), 23: ("file_delete",), 24: ("clipboard_change",), 25: ("process_tampering",),
    26: ("file_delete_detected", "file_delete"), 27: ("file_block_executable",), 28: ("file_block_shredding",),
    29: ("file_executable_detected",), 255: ("sysmon_error",),
}
# (channel, event id) -> categories, for sources other than Sysmon.
OTHER_WINDOWS_CATEGORIES: dict[tuple[str, int], tuple[str, ...]] = {
    ("security", 4688): ("process_creation",),
    ("microsoft-windows-powershell/operational", 4103): ("ps_module",),
    ("microsoft-windows-powershell/operational", 4104): ("ps_script",),
    ("powershellcore/operational", 4103): ("ps_module",),
    ("powershellcore/operational", 4104): ("ps_script",),
    ("windows powershell", 400): ("ps_classic_start",),
    ("windows powershell", 600): ("ps_classic_provider_start",),
    ("windows powershell", 800): ("ps_classic_script",),
}
# Security 4688 describes a process creation with other field names than Sysmon's: Sysmon's names are added beside
# them (collectors/parsers/windows.py holds the table, so every detection mode sees the same fields).


def _scalar(value: Any) -> Any:
    """EVTX JSON keeps attributes beside text: {"#attributes": {...}, "#text": "..."} -> the text."""
    if isinstance(value, dict):
        if "#text" in value:
            return _scalar(value["#text"])
        return None
    return value


def _walk_data(node: Any, out: dict[str, Any]) -> None:
    """EventData / UserData -> flat Windows field names (the innermost name wins, as Sigma backends do)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "#attributes":
                continue
            if key == "Data" and isinstance(value, list):  # unnamed <Data> elements
                texts = [str(_scalar(v)) for v in value if _scalar(v) is not None]
                if texts:
                    out["Data"] = texts
                continue
            if isinstance(value, dict) and "#text" not in value:
                _walk_data(value, out)
            elif isinstance(value, list):
                out[key] = [_scalar(v) for v in value if not isinstance(v, dict) or "#text" in v]
            else:
                scalar = _scalar(value)
                if scalar is not None:
                    out[key] = scalar
                    if " " in key:  # Defender writes "Threat Name"; Sigma rules say ThreatName
                        out.setdefault(key.replace(" ", ""), scalar)


def windows_view_from_evtx(record: dict) -> dict[str, Any]:
    """An EVTX record as the evtx package gives it ({"Event": {"System": ..., "EventData": ...}})."""
    event = record.get("Event", record)
    system = event.get("System") or {}
    view: dict[str, Any] = {}
    _walk_data(event.get("EventData"), view)
    _walk_data(event.get("UserData"), view)
    event_id = _scalar(system.get("EventID"))
    try:
        view["EventID"] = int(event_id)
    except (TypeError, ValueError):
        view["EventID"] = event_id
    provider = (system.get("Provider") or {}).get("#attributes", {})
    view["Provider_Name"] = provider.get("Name")
    view["Channel"] = _scalar(system.get("Channel"))
    view["Computer"] = _scalar(system.get("Computer"))
    created = (system.get("TimeCreated") or {}).get("#attributes", {}).get("SystemTime")
    if created:
        view["TimeCreated"] = created
    view["EventRecordID"] = _scalar(system.get("EventRecordID"))
    return _with_aliases(view)


def windows_view_from_ecs(doc: dict) -> dict[str, Any]:
    """A Winlogbeat-style ECS document (winlog.event_data.*, winlog.channel, event.code)."""
    winlog = doc.get("winlog") or {}
    view: dict[str, Any] = {}
    _walk_data(winlog.get("event_data"), view)
    _walk_data(winlog.get("user_data"), view)
    code = ecs.get(doc, "event.code") or winlog.get("event_id")
    try:
        view["EventID"] = int(code)
    except (TypeError, ValueError):
        view["EventID"] = code
    view["Channel"] = winlog.get("channel")
    view["Provider_Name"] = winlog.get("provider_name")
    view["Computer"] = winlog.get("computer_name") or ecs.get(doc, "host.name")
    for name in ("message", "event.original"):
        value = ecs.get(doc, name)
        if value is not None:
            view[name] = value
    return _with_aliases(view)


def _with_aliases(view: dict[str, Any]) -> dict[str, Any]:
    return normalize_event_data(view.get("Channel"), str(view.get("EventID")), view)


def view_of(doc: dict) -> tuple[dict[str, Any], tuple]:
    """(the fields rules are evaluated on, the routing key) for a stored ECS document."""
    if "winlog" in doc:
        view = windows_view_from_ecs(doc)
        return view, windows_routing_key(view)
    return ecs.flatten(doc), ecs_routing_key(doc)


def ecs_routing_key(doc: dict) -> tuple:
    """The routing key of an ECS (not Windows) document, nested or already flattened: no flattening needed."""
    program = ecs.get(doc, "process.name")
    return ("ecs", ecs.get(doc, "event.dataset") or "", program if isinstance(program, str) else "")


def windows_routing_key(view: dict[str, Any]) -> tuple:
    return ("windows", str(view.get("Channel") or "").lower(), view.get("EventID"))


@lru_cache(maxsize=4096)
def descriptors_for(key: tuple) -> tuple[dict[str, str], ...]:
    if key[0] == "windows":
        channel, event_id = key[1], key[2]
        descriptors = [{"product": "windows", "service": s} for s in windows_channel_services().get(channel, ())]
        categories: tuple[str, ...] = ()
        if channel == SYSMON_CHANNEL and isinstance(event_id, int):
            categories = SYSMON_CATEGORIES.get(event_id, ())
        else:
            categories = OTHER_WINDOWS_CATEGORIES.get((channel, event_id), ())  # type: ignore[arg-type]
        descriptors += [{"product": "windows", "category": c} for c in categories]
        if not descriptors:
            descriptors = [{"product": "windows"}]
        return tuple(descriptors)
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
    found += [{"product": "windows", "service": s} for ss in windows_channel_services().values() for s in ss]
    found += [{"product": "windows", "category": c} for cs in SYSMON_CATEGORIES.values() for c in cs]
    found += [{"product": "windows", "category": c} for cs in OTHER_WINDOWS_CATEGORIES.values() for c in cs]
    return tuple(found)


def known_logsource(rule_logsource: dict[str, str | None]) -> bool:
    """Whether any collector produces events this logsource applies to (rule health reports it when not)."""
    return _known(rule_logsource.get("category"), rule_logsource.get("product"), rule_logsource.get("service"))


@lru_cache(maxsize=1024)
def _known(category: str | None, product: str | None, service: str | None) -> bool:
    return applies({"category": category, "product": product, "service": service}, _all_descriptors())
