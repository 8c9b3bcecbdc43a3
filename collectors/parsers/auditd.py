"""Linux audit daemon records (``type=USER_LOGIN msg=audit(1610903553.686:584): ... msg='op=... res=success'``).

Record types map to ECS categories/actions as in the Elastic ``auditd`` integration; enriched logs (``log_format =
ENRICHED``: ``AUID="alice"`` after the record) give the acting user's name.
"""

from __future__ import annotations

from datetime import datetime, timezone

from collectors.message import ParseError
from collectors.parsers import common as c
from collectors.parsers.registry import ParseContext, ParserSpec
from soc import ecs
from soc import linear_re as rx

# The record's head; its body is the rest of the line (what "\s*(?P<body>.*)$" with DOTALL captured: matched as a
# slice, RE2 would otherwise track a capture over the whole record).
_RECORD = rx.compile(r"^(?:node=(?P<node>\S+) )?type=(?P<type>[A-Z0-9_]+) msg=audit\((?P<sec>\d+)(?:\.(?P<frac>\d+))?"
                     r":(?P<seq>\d+)\):\s*")
# op= runs to the next " key=" or the end. The lookahead that said so ((?= [\w-]+=|$)) is spelled as an
# alternative here (RE2 has no lookarounds): the value is the same group, only the match's end differs (unused).
_OP = rx.compile(r"op=(?P<op>.*?)(?: [\w-]+=|$)")
_HEX_DIGITS = "0123456789ABCDEF"
# record type → (action, category, type)
RECORDS = {
    "ADD_GROUP": ("added-group-account-to", "iam", ("group", "creation")),
    "DEL_GROUP": ("deleted-group-account-from", "iam", ("group", "deletion")),
    "GRP_MGMT": ("modified-group-account", "iam", ("group", "change")),
    "ADD_USER": ("added-user-account", "iam", ("user", "creation")),
    "DEL_USER": ("deleted-user-account", "iam", ("user", "deletion")),
    "USER_MGMT": ("modified-user-account", "iam", ("user", "change")),
    "ACCT_LOCK": ("locked-account", "iam", ("user", "info")),
    "ACCT_UNLOCK": ("unlocked-account", "iam", ("user", "info")),
    "USER_ACCT": ("was-authorized", "authentication", ("info",)),
    "USER_AUTH": ("authenticated", "authentication", ("info",)),
    "USER_LOGIN": ("logged-in", "authentication", ("start",)),
    "USER_LOGOUT": ("logged-out", "authentication", ("end",)),
    "USER_START": ("started-session", "session", ("start",)),
    "USER_END": ("ended-session", "session", ("end",)),
    "CRED_ACQ": ("acquired-credentials", "authentication", ("info",)),
    "CRED_DISP": ("disposed-credentials", "authentication", ("info",)),
    "CRED_REFR": ("refreshed-credentials", "authentication", ("info",)),
    "USER_CMD": ("ran-command", "process", ("start",)),
    "USER_ERR": ("error", "authentication", ("info",)),
    "CRYPTO_SESSION": ("started-crypto-session", "process", ("info",)),
    "CRYPTO_KEY_USER": ("negotiated-crypto-key", "process", ("info",)),
    "SERVICE_START": ("started-service", "process", ("start",)),
    "SERVICE_STOP": ("stopped-service", "process", ("end",)),
    "EXECVE": ("executed", "process", ("start",)),
    "ANOM_PROMISCUOUS": ("changed-promiscuous-mode-on-device", "network", ("info",)),
    "DAEMON_START": ("started-audit", "process", ("start",)),
    "CONFIG_CHANGE": ("changed-audit-configuration", "configuration", ("change",)),
}
# x86_64 syscall numbers for the file and process actions audit rules usually watch.
SYSCALLS = {
    "87": ("unlink", "deleted", "file", "deletion"), "263": ("unlinkat", "deleted", "file", "deletion"),
    "84": ("rmdir", "deleted", "file", "deletion"), "82": ("rename", "renamed", "file", "change"),
    "264": ("renameat", "renamed", "file", "change"), "316": ("renameat2", "renamed", "file", "change"),
    "2": ("open", "opened-file", "file", "access"), "257": ("openat", "opened-file", "file", "access"),
    "90": ("chmod", "changed-file-permissions-of", "file", "change"),
    "268": ("fchmodat", "changed-file-permissions-of", "file", "change"),
    "92": ("chown", "changed-file-ownership-of", "file", "change"),
    "59": ("execve", "executed", "process", "start"), "322": ("execveat", "executed", "process", "start"),
    "42": ("connect", "connected-to", "network", "connection"), "43": ("accept", "accepted-connection-from",
                                                                        "network", "connection"),
    "49": ("bind", "bound-socket", "network", "connection"), "101": ("ptrace", "traced", "process", "access"),
    "175": ("init_module", "loaded-kernel-module", "driver", "start"),
    "313": ("finit_module", "loaded-kernel-module", "driver", "start"),
}


def _hex(text: str) -> bool:
    """Upper-case hex digits in pairs (an encoded value), as ^(?:[0-9A-F]{2})+$ told (a final newline allowed)."""
    body = text[:-1] if text.endswith("\n") else text
    return bool(body) and len(body) % 2 == 0 and not body.strip(_HEX_DIGITS)


def _value(text: str | None) -> str | None:
    if text is None:
        return None
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return text[1:-1]
    if len(text) >= 4 and _hex(text):
        try:
            return bytes.fromhex(text).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return text
    return text


def parse_record(doc: dict, text: str) -> None:
    text = text.strip()
    match = _RECORD.match(text)
    if not match:
        raise ParseError("not_auditd", "line does not start with 'type=... msg=audit(seconds:serial):'")
    record_type, body = match.group("type"), text[match.end():]
    moment = datetime.fromtimestamp(int(match.group("sec")), tz=timezone.utc)
    frac = match.group("frac") or "0"
    doc["@timestamp"] = moment.replace(microsecond=int(frac[:6].ljust(6, "0")))
    c.set(doc, "auditd.log.record_type", record_type)
    c.set(doc, "auditd.log.sequence", int(match.group("seq")))
    c.put(doc, "auditd.log.node", match.group("node"))
    start = body.find("msg='")
    inner, outer = "", body
    if start >= 0:
        end = body.find("'", start + 5)
        inner = body[start + 5:end if end >= 0 else len(body)]
        outer = body[:start] + " " + (body[end + 1:] if end >= 0 else "")
    fields = c.kv(outer)
    fields.update({k: v for k, v in c.kv(inner).items() if k not in fields or k in ("res",)})
    op = _OP.search(inner)
    if op and op.group("op"):
        c.set(doc, "auditd.log.op", op.group("op"))
    result = (fields.get("res") or fields.get("result") or "").lower()
    success = fields.get("success")
    if result:
        c.set(doc, "event.outcome", "success" if result.startswith("success") else "failure")
    elif success:
        c.set(doc, "event.outcome", "success" if success == "yes" else "failure")
    if fields.get("pid", "").isdigit():
        c.set(doc, "process.pid", int(fields["pid"]))
    c.put(doc, "process.executable", _value(fields.get("exe")))
    c.put(doc, "process.name", _value(fields.get("comm")))
    c.put(doc, "user.id", fields.get("uid"))
    c.put(doc, "user.audit.id", fields.get("auid"))
    addr = fields.get("addr")
    if addr and c.is_ip(addr):
        c.endpoint(doc, "source", addr)
    if fields.get("rport"):
        c.endpoint(doc, "source", None, fields["rport"])
    if fields.get("laddr") or fields.get("lport"):
        c.endpoint(doc, "destination", fields.get("laddr"), fields.get("lport"))
    if ecs.get(doc, "user.name") is None:
        c.user(doc, _value(fields.get("AUID")) or _value(fields.get("acct")))
    if record_type == "SYSCALL":
        call = SYSCALLS.get(fields.get("syscall", ""))
        if call:
            name, action, category, kind = call
            c.categorize(doc, (category,), (kind,), None, None)
            c.set(doc, "event.action", [action])
            c.set(doc, "auditd.log.syscall", name)
        return
    known = RECORDS.get(record_type)
    if known is None:
        return
    action, category, types = known
    c.categorize(doc, (category,), types)
    c.set(doc, "event.action", [action])


def _chauthtok(doc: dict) -> None:
    op = (ecs.get(doc, "auditd.log.op") or "").lower()
    if any(word in op for word in ("passw", "passwd", "chauthtok")):
        c.categorize(doc, ("iam",), ("user", "change"))
        c.set(doc, "event.action", ["changed-password"])
    else:
        c.categorize(doc, ("iam",), ("user", "change"))
        c.set(doc, "event.action", "modified-user-account")


def parse_auditd(doc: dict, ctx: ParseContext | None = None) -> dict:
    text = c.message_text(doc)
    first = text.split("\n", 1)[0]
    parse_record(doc, first)
    if ecs.get(doc, "auditd.log.record_type") == "USER_CHAUTHTOK":
        _chauthtok(doc)
    return doc


def detect(doc: dict) -> bool:
    text = doc.get("message") or ""
    return "msg=audit(" in text[:200] and "type=" in text[:120]


SPEC = ParserSpec(
    name="auditd",
    dataset="auditd.log",
    carrier="syslog",
    parse=parse_auditd,
    detect=detect,
    programs=("audispd", "auditd", "audisp-syslog"),
    description="Linux auditd records (raw and enriched log format)",
    max_message_chars=32768,
    max_message_why="an audit record is at most 8970 bytes (MAX_AUDIT_MESSAGE_LENGTH), enriched names added",
)
