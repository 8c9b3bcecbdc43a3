"""Windows event records: their shape, the names Sigma rules give their fields, and the Sigma log sources they belong
to — one set of rules, whichever way a record arrives (an EVTX file, Winlogbeat, NXLog) and whoever reads it (the
parsers, ``soc ingest``, the Sigma engine, ``soc hunt``, scheduled rules).

It lives in ``soc/``, the shared basics, because both feature packages need it and ``soc/`` is below both:
collectors/ builds and stores records in this shape (collectors/sources/evtx.py, collectors/parsers/windows.py and
nxlog.py, collectors/ingest.py) and detections/ reads them (detections/sigma/logsource.py, detections/hunt.py,
detections/scheduled.py, detections/sigma/pipelines.py). In detections/ it would make the parsers depend on the
detection package for the shape of their own output; here neither package imports the other for it, and as it imports
only the standard library and ``soc.ecs`` it can close no import cycle.

**The record** (what the store keeps) is a Winlogbeat document: ``winlog.channel``, ``winlog.event_id``,
``winlog.provider_name``, ``winlog.computer_name``, ``winlog.record_id`` and ``winlog.event_data``, ids as strings.
Event data follows one rule set, also used for the view below:

- names: EventData and UserData are flattened into one map of names, EventData first, UserData after it (a later name
  replaces an earlier one, also for elements nested in elements); attributes are not data; unnamed ``<Data>``
  elements become one list of texts ``Data``; Winlogbeat's ``user_data.xml_name`` (the element's name) is not data;
- values: an element's text; an element without text (or a null) is left out, in lists too;
- types: the record keeps text (as Winlogbeat sends it, so a field has one type in the store): numbers and booleans
  as ``str()`` writes them ("4", "True"); the view keeps the values as they come, since the engine compares text;
- aliases: a name with spaces is also given without them (Defender's "Threat Name" is ThreatName to Sigma), and the
  names of FIELD_ALIASES are added beside the event's own — in the record (for scheduled rules, which query the store)
  and in the view (for records stored before, and for EVTX files hunted directly). An event's own field always wins.

**The view** is what Sigma rules are evaluated on: the event data under Windows' own names plus the System fields
(SYSTEM_FIELDS), routed by (channel, event id) to the rules whose log source applies (``logsources``).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Callable

from soc import ecs

# --- names ----------------------------------------------------------------------------------------------------------
# The System fields Sigma rules name -> the key of the Winlogbeat document's ``winlog`` object holding it.
SYSTEM_FIELDS = {"EventID": "event_id", "Channel": "channel", "Provider_Name": "provider_name",
                 "Computer": "computer_name", "EventRecordID": "record_id"}

# Security events describe what Sysmon describes with other names and spellings, and Sigma's category rules
# (process_creation, network_connection) are written against Sysmon's. FIELD_ALIASES gives, per (channel lowercased,
# event id), each Sysmon name: the event's own field that holds it, or a function of the event data. An alias never
# replaces a field the event has. VALUE_SPELLINGS adds Sysmon's spelling beside the event's own value of a field
# both share (5156's Protocol 6 is Sysmon's "tcp"): the field then holds both, and a rule written either way matches.
Alias = str | Callable[[dict[str, Any]], Any]

# Mandatory (integrity) label SIDs -> the level name Sysmon writes. A rule may name either; the alias holds both.
INTEGRITY_LEVELS = {"S-1-16-0": "Untrusted", "S-1-16-4096": "Low", "S-1-16-8192": "Medium",
                    "S-1-16-8448": "MediumPlus", "S-1-16-12288": "High", "S-1-16-16384": "System",
                    "S-1-16-20480": "Protected", "S-1-16-28672": "Secure"}
# Well-known service accounts: Sysmon names them "NT AUTHORITY\SYSTEM"; 4688 gives the machine account ("PC01$").
WELL_KNOWN_ACCOUNTS = {"S-1-5-18": "NT AUTHORITY\\SYSTEM", "S-1-5-19": "NT AUTHORITY\\LOCAL SERVICE",
                       "S-1-5-20": "NT AUTHORITY\\NETWORK SERVICE"}
_NO_ACCOUNT = {"", "-", "S-1-0-0"}
_NO_LOGON = {"", "-", "0x0", "0"}


def _integrity_level(data: dict[str, Any]) -> Any:
    """4688's MandatoryLabel (a SID, or "Mandatory Label\\High Mandatory Level" as some renderers write it) as
    [Sysmon's level name, the SID]; an unknown label as it is."""
    label = data.get("MandatoryLabel")
    if not isinstance(label, str) or not label:
        return None
    sid = label.strip().upper()
    if sid in INTEGRITY_LEVELS:
        return [INTEGRITY_LEVELS[sid], sid]
    words = label.rsplit("\\", 1)[-1].split()
    if len(words) >= 2 and words[-2:] == ["Mandatory", "Level"]:
        name = "".join(words[:-2])
        sids = [s for s, level in INTEGRITY_LEVELS.items() if level.lower() == name.lower()]
        return [INTEGRITY_LEVELS[sids[0]], sids[0]] if sids else label
    return label


def _runs_as_target(data: dict[str, Any]) -> bool:
    """Whether a 4688 process runs under another account than its creator's: Windows 10 fills the Target fields
    only then ("Target Subject"); otherwise the new process has the creator's account and logon session."""
    return str(data.get("TargetLogonId") or "").lower() not in _NO_LOGON and \
        str(data.get("TargetUserName") or "") not in _NO_ACCOUNT


def _account(data: dict[str, Any], prefix: str) -> Any:
    sid = str(data.get(f"{prefix}UserSid") or "").upper()
    if sid in WELL_KNOWN_ACCOUNTS:
        return WELL_KNOWN_ACCOUNTS[sid]
    name, domain = data.get(f"{prefix}UserName"), data.get(f"{prefix}DomainName")
    if not isinstance(name, str) or name in _NO_ACCOUNT:
        return None
    return f"{domain}\\{name}" if isinstance(domain, str) and domain not in _NO_ACCOUNT else name


def _process_user(data: dict[str, Any]) -> Any:
    """Sysmon's User of a new process (DOMAIN\\name, "NT AUTHORITY\\SYSTEM") from 4688's Target or creator Subject."""
    return _account(data, "Target") if _runs_as_target(data) else _account(data, "Subject")


def _process_logon_id(data: dict[str, Any]) -> Any:
    """Sysmon's LogonId of a new process: 4688's TargetLogonId when it runs as another account, else the creator's."""
    return data.get("TargetLogonId") if _runs_as_target(data) else data.get("SubjectLogonId")


# 5156's Direction: %%14593 is outbound (Sysmon's Initiated "true"), %%14592 inbound; renderers may write the word.
_DIRECTIONS = {"%%14593": "true", "outbound": "true", "%%14592": "false", "inbound": "false"}


def _initiated(data: dict[str, Any]) -> Any:
    return _DIRECTIONS.get(str(data.get("Direction") or "").strip().lower())


_VOLUME = "\\device\\harddiskvolume"


def _application_image(data: dict[str, Any]) -> Any:
    """5156 names the program by its device path ("\\device\\harddiskvolume2\\windows\\system32\\lsass.exe");
    rules name programs by drive path, and a filter written "C:\\Windows\\System32\\lsass.exe" must still exclude
    it. Which volume holds which drive the event does not say: the alias holds the path as written and the same path
    on C:, the system drive of nearly every Windows host (a program on another volume is then named on C: too; only
    the rules' drive-letter conditions can be misled, never the path after it)."""
    application = data.get("Application")
    if not isinstance(application, str) or not application.lower().startswith(_VOLUME):
        return application
    rest = application[len(_VOLUME):]
    digits = len(rest) - len(rest.lstrip("0123456789"))
    return [application, "C:" + rest[digits:]] if digits and rest[digits:digits + 1] == "\\" else application


FIELD_ALIASES: dict[tuple[str, str], dict[str, Alias]] = {
    # Process creation (Sigma's process_creation category).
    ("security", "4688"): {"Image": "NewProcessName", "ParentImage": "ParentProcessName",
                           "IntegrityLevel": _integrity_level, "User": _process_user, "LogonId": _process_logon_id},
    # Windows Filtering Platform permitted a connection (Sigma's network_connection category).
    ("security", "5156"): {"Image": _application_image, "ProcessId": "ProcessID", "SourceIp": "SourceAddress",
                           "SourcePort": "SourcePort", "DestinationIp": "DestAddress",
                           "DestinationPort": "DestPort", "Initiated": _initiated},
}
# IANA protocol numbers -> the names Sysmon writes.
_PROTOCOLS = {"1": "icmp", "6": "tcp", "17": "udp", "58": "ipv6-icmp"}
VALUE_SPELLINGS: dict[tuple[str, str], dict[str, dict[str, str]]] = {
    ("security", "5156"): {"Protocol": _PROTOCOLS},
}


def add_aliases(channel: Any, event_id: Any, fields: dict[str, Any]) -> dict[str, Any]:
    """FIELD_ALIASES' names added to ``fields`` (event data or a view), beside the event's own, and VALUE_SPELLINGS'
    spellings beside the event's own values."""
    key = (str(channel or "").lower(), str(event_id or ""))
    for alias, source in FIELD_ALIASES.get(key, {}).items():
        if alias not in fields:
            value = source(fields) if callable(source) else fields.get(source)
            if value is not None:
                fields[alias] = value
    for name, spellings in VALUE_SPELLINGS.get(key, {}).items():
        own = fields.get(name)
        if own is not None and not isinstance(own, list) and str(own).strip().lower() in spellings:
            fields[name] = [own, spellings[str(own).strip().lower()]]
    return fields


# Whitespace around a value: Windows writes some values with a trailing space ("NtLmSsp ", a command line ending in
# ".zip "), which a rule written without it would miss. A rule's string condition on a Windows field matches the
# value as written OR the value with this whitespace removed from both ends (detections/sigma/compiler.py), so a
# rule written with the space (SigmaHQ has some: endswith ' ') and one written without both match. These are the
# characters Lucene's TrimFilter removes (Java's Character.isWhitespace), so that the stored events' ".trimmed"
# copies (soc/storage/mappings.py), which scheduled detection queries, are trimmed exactly alike.
TRIMMED_WHITESPACE = ("\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
                      "\u2008\u2009\u200a\u2028\u2029\u205f\u3000")


def trimmed(text: str) -> str:
    return text.strip(TRIMMED_WHITESPACE)


# --- values ---------------------------------------------------------------------------------------------------------
def text_of(node: Any) -> Any:
    """EVTX JSON keeps attributes beside text: ``{"#attributes": {...}, "#text": x}`` -> x; an element of attributes
    only -> None."""
    if isinstance(node, dict):
        return text_of(node["#text"]) if "#text" in node else None
    return node


def record_value(node: Any) -> Any:
    """A data value as the record keeps it: text, or a list of texts (a repeated element); None when it has none."""
    value = text_of(node)
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list):
        return [text for text in map(record_value, value) if text is not None]
    return str(value)


def view_value(node: Any) -> Any:
    """A data value as the view shows it: the value as it comes (the engine compares text); None when it has none."""
    value = text_of(node)
    if isinstance(value, list):
        return [item for item in map(view_value, value) if item is not None]
    return value


def flatten_data(node: Any, out: dict[str, Any], value: Callable[[Any], Any]) -> dict[str, Any]:
    """EventData / UserData (or Winlogbeat's event_data / user_data) -> flat Windows field names in ``out``."""
    if not isinstance(node, dict):
        return out
    for name, child in node.items():
        if name == "#attributes":
            continue
        if name == "Data" and isinstance(child, list):  # unnamed <Data> elements
            texts = [str(text) for text in map(text_of, child) if text is not None]
            if texts:
                out["Data"] = texts
        elif isinstance(child, dict) and "#text" not in child:  # an element of elements
            flatten_data(child, out, value)
        else:
            found = value(child)
            if found is not None:
                out[name] = found
                if " " in name:  # Defender writes "Threat Name"; Sigma rules say ThreatName
                    out.setdefault(name.replace(" ", ""), found)
    return out


def _winlogbeat_data(winlog: dict, value: Callable[[Any], Any]) -> dict[str, Any]:
    data = flatten_data(winlog.get("event_data"), {}, value)
    user_data = winlog.get("user_data")
    if isinstance(user_data, dict):
        flatten_data({k: v for k, v in user_data.items() if k != "xml_name"}, data, value)
    return data


def _event_number(value: Any) -> Any:
    try:
        return int(value)
    except (TypeError, ValueError):
        return value


# --- records --------------------------------------------------------------------------------------------------------
def _system(event: dict) -> dict[str, Any]:
    """An EVTX record's System fields, by their ``winlog`` keys (and ``time_created``)."""
    system = event.get("System") or {}
    return {
        "event_id": text_of(system.get("EventID")),
        "channel": text_of(system.get("Channel")),
        "provider_name": (system.get("Provider") or {}).get("#attributes", {}).get("Name"),
        "computer_name": text_of(system.get("Computer")),
        "record_id": text_of(system.get("EventRecordID")),
        "time_created": (system.get("TimeCreated") or {}).get("#attributes", {}).get("SystemTime"),
    }


def winlogbeat_from_evtx(record: dict) -> dict:
    """An EVTX record as the ``evtx`` package gives it (``{"Event": {"System": ..., "EventData": ...}}``) as the
    Winlogbeat document a Winlogbeat agent would have sent for it."""
    event = record.get("Event", record)
    system = _system(event)
    event_id = str(system["event_id"])
    data = flatten_data(event.get("EventData"), {}, record_value)
    flatten_data(event.get("UserData"), data, record_value)
    add_aliases(system["channel"], event_id, data)
    return {
        "@timestamp": system["time_created"],
        "event": {"code": event_id, "kind": "event"},
        "winlog": {
            "channel": system["channel"],
            "event_id": event_id,
            "provider_name": system["provider_name"],
            "computer_name": system["computer_name"],
            "record_id": str(system["record_id"]),
            "event_data": data,
        },
    }


def _id_text(value: Any) -> Any:
    return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


def normalize_winlogbeat(document: dict) -> dict:
    """A Winlogbeat document as any Winlogbeat version or agent sends it, in place, in the shape
    ``winlogbeat_from_evtx`` gives: ``winlog.event_id``, ``winlog.record_id`` and ``event.code`` as strings
    (Winlogbeat 7 sends numbers), UserData flattened into ``winlog.event_data`` by the rules above, aliases added."""
    winlog = document["winlog"]
    for key in ("event_id", "record_id"):
        if key in winlog:
            winlog[key] = _id_text(winlog[key])
    event = document.get("event") if isinstance(document.get("event"), dict) else {}
    if "code" in event:
        event["code"] = _id_text(event["code"])
    if isinstance(winlog.get("event_data"), dict) or isinstance(winlog.get("user_data"), dict):
        data = winlog["event_data"] = _winlogbeat_data(winlog, record_value)
        if isinstance(winlog.get("user_data"), dict):
            del winlog["user_data"]
        add_aliases(winlog.get("channel"), winlog.get("event_id") or event.get("code"), data)
    return document


# --- the view Sigma rules see ---------------------------------------------------------------------------------------
def view_from_evtx(record: dict) -> dict[str, Any]:
    """An EVTX record as the ``evtx`` package gives it, as Sigma rules see it."""
    event = record.get("Event", record)
    view = flatten_data(event.get("EventData"), {}, view_value)
    flatten_data(event.get("UserData"), view, view_value)
    system = _system(event)
    view["EventID"] = _event_number(system["event_id"])
    view["Provider_Name"] = system["provider_name"]
    view["Channel"] = system["channel"]
    view["Computer"] = system["computer_name"]
    if system["time_created"]:
        view["TimeCreated"] = system["time_created"]
    view["EventRecordID"] = system["record_id"]
    return add_aliases(view["Channel"], view["EventID"], view)


def view_from_winlogbeat(document: dict) -> dict[str, Any]:
    """A Winlogbeat document (as stored, with ECS fields beside ``winlog``, or as an agent sent it) as Sigma rules
    see it; ``message`` and ``event.original`` are kept for keyword searches."""
    winlog = document.get("winlog") or {}
    view = _winlogbeat_data(winlog, view_value)
    view["EventID"] = _event_number(ecs.get(document, "event.code") or winlog.get("event_id"))
    view["Channel"] = winlog.get("channel")
    view["Provider_Name"] = winlog.get("provider_name")
    view["Computer"] = winlog.get("computer_name") or ecs.get(document, "host.name")
    if winlog.get("record_id") is not None:
        view["EventRecordID"] = winlog["record_id"]
    for name in ("message", "event.original"):
        value = ecs.get(document, name)
        if value is not None:
            view[name] = value
    return add_aliases(view["Channel"], view["EventID"], view)


def routing_key(view: dict[str, Any]) -> tuple:
    """The key the Sigma engine routes a Windows view by: (channel lowercased, event id)."""
    return ("windows", str(view.get("Channel") or "").lower(), view.get("EventID"))


# --- Sigma log sources ----------------------------------------------------------------------------------------------
# Sigma Windows service -> event log channel(s): pySigma's own table (sigma.pipelines.common.windows_logsource_mapping),
# kept here as data so that evaluating rules needs no pySigma import; tests/test_sigma_engine.py checks it is equal.
SERVICE_CHANNELS: dict[str, str | list[str]] = {
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
def channel_services() -> dict[str, list[str]]:
    """Channel (lowercase) -> Sigma services."""
    services: dict[str, list[str]] = {}
    for service, channels in SERVICE_CHANNELS.items():
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
# (channel lowercased, event id) -> Sigma categories, for channels other than Sysmon's.
EVENT_CATEGORIES: dict[tuple[str, int], tuple[str, ...]] = {
    ("security", 4688): ("process_creation",),
    ("security", 5156): ("network_connection",),
    ("microsoft-windows-powershell/operational", 4103): ("ps_module",),
    ("microsoft-windows-powershell/operational", 4104): ("ps_script",),
    ("powershellcore/operational", 4103): ("ps_module",),
    ("powershellcore/operational", 4104): ("ps_script",),
    ("windows powershell", 400): ("ps_classic_start",),
    ("windows powershell", 600): ("ps_classic_provider_start",),
    ("windows powershell", 800): ("ps_classic_script",),
}


def logsources(channel: str, event_id: Any) -> tuple[dict[str, str], ...]:
    """The Sigma log source descriptors of a Windows event (``routing_key``'s channel and event id)."""
    descriptors = [{"product": "windows", "service": s} for s in channel_services().get(channel, ())]
    if channel == SYSMON_CHANNEL:
        categories = SYSMON_CATEGORIES.get(event_id, ()) if isinstance(event_id, int) else ()
    else:
        categories = EVENT_CATEGORIES.get((channel, event_id), ())
    descriptors += [{"product": "windows", "category": c} for c in categories]
    return tuple(descriptors) or ({"product": "windows"},)


def all_logsources() -> list[dict[str, str]]:
    """Every descriptor a Windows event can have."""
    found = [{"product": "windows", "service": s} for ss in channel_services().values() for s in ss]
    found += [{"product": "windows", "category": c} for cs in SYSMON_CATEGORIES.values() for c in cs]
    found += [{"product": "windows", "category": c} for cs in EVENT_CATEGORIES.values() for c in cs]
    return found
