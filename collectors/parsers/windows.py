"""Windows Security and Sysmon events as Winlogbeat JSON documents (``winlog.event_id``, ``winlog.event_data``).

Per event id: action, category and type as the Elastic ``system.security`` / ``windows.sysmon_operational``
pipelines set them, for the events a SOC watches (logons, account and group changes, process creation, audit
log clearing, service installs; Sysmon process, network, image, file, registry and DNS events).
"""

from __future__ import annotations

from datetime import datetime, timezone

from collectors.message import ParseError
from collectors.parsers import common as c
from collectors.parsers.registry import ParseContext, ParserSpec
from soc import ecs
from soc.windows import normalize_winlogbeat

# id → (action, category, type, outcome or None)
SECURITY = {
    "1100": ("logging-service-shutdown", ("process",), ("end",), None),
    "1102": ("audit-log-cleared", ("iam",), ("admin", "change"), None),
    "4624": ("logged-in", ("authentication",), ("start",), None),
    "4625": ("logon-failed", ("authentication",), ("start",), "failure"),
    "4627": ("group-membership-info", ("iam",), ("info",), None),
    "4634": ("logged-out", ("authentication",), ("end",), None),
    "4647": ("logged-out", ("authentication",), ("end",), None),
    "4648": ("logged-in-explicit", ("authentication",), ("start",), None),
    "4656": ("request-a-handle-to-an-object", ("iam", "configuration"), ("access",), None),
    "4658": ("handle-closed-object", ("iam", "configuration"), ("change",), None),
    "4663": ("object-access-attempt", ("iam", "configuration"), ("access",), None),
    "4670": ("permissions-changed", ("iam", "configuration"), ("change",), None),
    "4672": ("logged-in-special", ("iam",), ("admin",), None),
    "4688": ("created-process", ("process",), ("start",), None),
    "4689": ("exited-process", ("process",), ("end",), None),
    "4690": ("duplicate-handle-attempt", ("process",), ("access",), None),
    "4697": ("service-installed", ("iam", "configuration"), ("admin", "change"), None),
    "4698": ("scheduled-task-created", ("iam", "configuration"), ("creation", "admin"), None),
    "4702": ("scheduled-task-updated", ("iam", "configuration"), ("change", "admin"), None),
    "4719": ("changed-audit-config", ("iam", "configuration"), ("change",), None),
    "4720": ("added-user-account", ("iam",), ("user", "creation"), None),
    "4722": ("enabled-user-account", ("iam",), ("user", "change"), None),
    "4723": ("changed-password", ("iam",), ("user", "change"), None),
    "4724": ("reset-password", ("iam",), ("user", "change"), None),
    "4725": ("disabled-user-account", ("iam",), ("user", "change"), None),
    "4726": ("deleted-user-account", ("iam",), ("user", "deletion"), None),
    "4728": ("added-member-to-group", ("iam",), ("group", "change"), None),
    "4729": ("removed-member-from-group", ("iam",), ("group", "change"), None),
    "4732": ("added-member-to-group", ("iam",), ("group", "change"), None),
    "4733": ("removed-member-from-group", ("iam",), ("group", "change"), None),
    "4738": ("modified-user-account", ("iam",), ("user", "change"), None),
    "4740": ("locked-out-user-account", ("iam",), ("user", "change"), None),
    "4756": ("added-member-to-group", ("iam",), ("group", "change"), None),
    "4757": ("removed-member-from-group", ("iam",), ("group", "change"), None),
    "4767": ("unlocked-user-account", ("iam",), ("user", "change"), None),
    "4768": ("kerberos-authentication-ticket-requested", ("authentication",), ("start",), None),
    "4769": ("kerberos-service-ticket-requested", ("authentication",), ("start",), None),
    "4771": ("kerberos-preauth-failed", ("authentication",), ("start",), "failure"),
    "4776": ("credential-validated", ("authentication",), ("start",), None),
    "4798": ("group-membership-enumerated", ("iam",), ("user", "info"), None),
    "4799": ("user-member-enumerated", ("iam",), ("group", "info"), None),
    "7045": ("service-installed", ("iam", "configuration"), ("admin", "change"), None),
}
# Sysmon id → (task name, action verb, category, type)
SYSMON = {
    "1": ("Process Create", "start", ("process",), ("start",)),
    "2": ("File creation time changed", "change", ("file",), ("change",)),
    "3": ("Network connection detected", "connection", ("network",), ("start", "connection")),
    "5": ("Process terminated", "end", ("process",), ("end",)),
    "6": ("Driver loaded", "load", ("driver",), ("start",)),
    "7": ("Image loaded", "load", ("process", "library"), ("change", "start")),
    "8": ("CreateRemoteThread detected", "change", ("process",), ("change",)),
    "10": ("Process accessed", "access", ("process",), ("access",)),
    "11": ("File created", "creation", ("file",), ("creation",)),
    "12": ("Registry object added or deleted", "change", ("configuration", "registry"), ("change",)),
    "13": ("Registry value set", "change", ("configuration", "registry"), ("change",)),
    "14": ("Registry object renamed", "change", ("configuration", "registry"), ("change",)),
    "15": ("File stream created", "creation", ("file",), ("creation",)),
    "22": ("Dns query", "dns-query", ("network",), ("connection", "protocol", "info")),
    "23": ("File Delete archived", "deletion", ("file",), ("deletion",)),
    "26": ("File Delete logged", "deletion", ("file",), ("deletion",)),
}
LOGON_FAILED_REASON = {"0xc000006a": "wrong password", "0xc0000064": "no such user", "0xc0000234": "locked out",
                       "0xc0000072": "account disabled", "0xc000006f": "outside logon hours"}


def _winlog(doc: dict) -> dict:
    record = doc.get("_json")
    if isinstance(record, dict) and isinstance(record.get("winlog"), dict):
        # The document is copied into the event: its dotted names made nested first, at every depth (soc.ecs.nest),
        # but for the Windows data names of winlog.event_data / user_data, which are names, not ECS paths.
        try:
            record = doc["_json"] = ecs.nest(record)
        except ecs.FieldNameError as exc:
            raise ParseError(exc.kind, str(exc)) from exc
        return record
    raise ParseError("not_winlog", "not a Winlogbeat document (no 'winlog' object)")


def _time(record: dict, data: dict) -> datetime | None:
    utc = data.get("UtcTime")
    if isinstance(utc, str) and utc:
        try:
            return datetime.fromisoformat(utc.replace(" ", "T")).replace(tzinfo=timezone.utc)
        except ValueError:
            pass
    for value in (record["winlog"].get("time_created"), record.get("@timestamp")):
        if isinstance(value, str) and value:
            try:
                return ecs.parse_time(_trim_fraction(value))
            except ValueError:
                continue
    return None


def _trim_fraction(value: str) -> str:
    head, dot, rest = value.partition(".")
    if not dot:
        return value
    digits = "".join(ch for ch in rest if ch.isdigit())
    return f"{head}.{digits[:6]}{rest[len(digits):]}"


def _base(doc: dict, record: dict) -> tuple[dict, str]:
    normalize_winlogbeat(record)  # ids as text, UserData into event_data, the aliases Sigma rules use
    winlog = record["winlog"]
    data = winlog.get("event_data") if isinstance(winlog.get("event_data"), dict) else {}
    event = record.get("event") if isinstance(record.get("event"), dict) else {}
    event_id = str(winlog.get("event_id") or event.get("code") or "")
    out = {key: value for key, value in record.items() if key not in ("_json",)}
    doc.clear()
    doc.update(out)
    moment = _time(record, data)
    if moment is not None:
        doc["@timestamp"] = moment
    c.put(doc, "event.code", event_id)
    c.put(doc, "event.provider", winlog.get("provider_name"))
    c.put(doc, "host.name", winlog.get("computer_name") or ecs.get(doc, "host.name"))
    if isinstance(record.get("message"), str):
        doc["message"] = record["message"]
    return data, event_id


def _name(value) -> str | None:
    return value if isinstance(value, str) and value not in ("", "-") else None


def parse_security(doc: dict, ctx: ParseContext | None = None) -> dict:
    record = _winlog(doc)
    data, event_id = _base(doc, record)
    known = SECURITY.get(event_id)
    if known:
        action, category, types, outcome = known
        c.categorize(doc, category, types, outcome, action)
    keywords = record["winlog"].get("keywords") or []
    if not ecs.get(doc, "event.outcome"):
        if "Audit Success" in keywords:
            c.set(doc, "event.outcome", "success")
        elif "Audit Failure" in keywords:
            c.set(doc, "event.outcome", "failure")
    subject, target = _name(data.get("SubjectUserName")), _name(data.get("TargetUserName"))
    if event_id in ("4624", "4625", "4634", "4647", "4648", "4768", "4769", "4771", "4776") and target:
        c.user(doc, target)
        c.put(doc, "user.domain", _name(data.get("TargetDomainName")))
    elif subject:
        c.user(doc, subject)
        c.put(doc, "user.domain", _name(data.get("SubjectDomainName")))
        if target and target != subject:
            c.user(doc, target, "user.target.name")
    elif target:
        c.user(doc, target)
    address = data.get("IpAddress")
    if isinstance(address, str) and c.is_ip(address.removeprefix("::ffff:")):
        c.endpoint(doc, "source", address.removeprefix("::ffff:"), data.get("IpPort"))
    c.put(doc, "source.domain", _name(data.get("WorkstationName")))
    c.put(doc, "winlog.logon.type", data.get("LogonType"))
    if event_id == "4625":
        status = str(data.get("SubStatus") or data.get("Status") or "").lower()
        c.put(doc, "event.reason", LOGON_FAILED_REASON.get(status))
    if event_id == "4688":
        c.put(doc, "process.executable", data.get("NewProcessName"))
        c.put(doc, "process.command_line", data.get("CommandLine"))
        c.put(doc, "process.parent.executable", data.get("ParentProcessName"))
    return doc


def parse_sysmon(doc: dict, ctx: ParseContext | None = None) -> dict:
    record = _winlog(doc)
    data, event_id = _base(doc, record)
    known = SYSMON.get(event_id)
    if known:
        task, verb, category, types = known
        c.categorize(doc, category, types)
        c.set(doc, "event.action", [task, verb])
    user = data.get("User")
    if isinstance(user, str) and user:
        domain, _, name = user.rpartition("\\")
        c.user(doc, name)
        c.put(doc, "user.domain", domain)
    c.put(doc, "process.executable", data.get("Image"))
    c.put(doc, "process.command_line", data.get("CommandLine"))
    c.put(doc, "process.entity_id", data.get("ProcessGuid"))
    if str(data.get("ProcessId") or "").isdigit():
        c.set(doc, "process.pid", int(data["ProcessId"]))
    c.put(doc, "file.path", data.get("ImageLoaded") or data.get("TargetFilename"))
    c.put(doc, "dns.question.name", data.get("QueryName"))
    if event_id == "3":
        c.endpoint(doc, "source", data.get("SourceIp"), data.get("SourcePort"))
        c.endpoint(doc, "destination", data.get("DestinationIp"), data.get("DestinationPort"))
        c.transport(doc, data.get("Protocol"))
    return doc


def parse_eventlog(doc: dict, ctx: ParseContext | None = None) -> dict:
    """Any other channel (System, PowerShell, TaskScheduler, Defender...): the Winlogbeat document kept, with
    ``event.code``, ``event.provider``, ``host.name`` and the outcome from the keywords; the rules read winlog.*."""
    record = _winlog(doc)
    data, event_id = _base(doc, record)
    channel = str(record["winlog"].get("channel") or "")
    if channel == "System" and event_id == "7045":
        action, category, types, outcome = SECURITY["7045"]
        c.categorize(doc, category, types, outcome, action)
    keywords = record["winlog"].get("keywords") or []
    if isinstance(keywords, list) and not ecs.get(doc, "event.outcome"):
        if "Audit Success" in keywords:
            c.set(doc, "event.outcome", "success")
        elif "Audit Failure" in keywords:
            c.set(doc, "event.outcome", "failure")
    return doc


def _detector(channel_word: str):
    def detect(doc: dict) -> bool:
        record = doc.get("_json")
        if not isinstance(record, dict) or not isinstance(record.get("winlog"), dict):
            return False
        channel = str(record["winlog"].get("channel") or record["winlog"].get("provider_name") or "")
        return channel_word in channel
    return detect


SPECS = [
    ParserSpec(name="windows_security", dataset="system.security", carrier="json", parse=parse_security,
               detect=_detector("Security"), description="Windows Security event log (Winlogbeat JSON)"),
    ParserSpec(name="windows_sysmon", dataset="windows.sysmon_operational", carrier="json", parse=parse_sysmon,
               detect=_detector("Sysmon"), description="Sysmon operational events (Winlogbeat JSON)"),
    # After the two above: a Winlogbeat document of any other channel.
    ParserSpec(name="windows_eventlog", dataset="windows.eventlog", carrier="json", parse=parse_eventlog,
               detect=_detector(""), description="Any other Windows event log channel (Winlogbeat JSON)"),
]
