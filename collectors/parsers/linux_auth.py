"""Linux authentication messages (sshd, sudo, su, PAM) to ECS authentication events.

Field choices follow the Elastic ``system.auth`` pipeline so that the fixtures in
``../shared/corpus/vendor-logs/system/auth`` can score this parser field by field.
"""

from __future__ import annotations

import ipaddress

from collectors.parsers.registry import ParseContext, ParserSpec
from soc import ecs
from soc import linear_re as rx

PROGRAMS = frozenset({"sshd", "sudo", "su", "login", "sshd-session", "systemd-logind", "passwd", "unix_chkpwd",
                      "useradd", "userdel", "usermod", "groupadd", "groupdel", "groupmod", "gpasswd", "chage",
                      "chpasswd"})

_SSH_LOGIN = rx.compile(
    r"(?P<result>Accepted|Failed|Invalid|Postponed) (?P<method>[\w-]+) for (?:invalid user )?(?P<user>.*?) "
    r"from (?P<ip>[0-9a-fA-F.:]+) port (?P<port>\d+)(?: (?P<proto>ssh2?))?(?:: (?P<sig>.*))?$"
)
_SSH_INVALID_USER = rx.compile(r"Invalid user (?P<user>.*?) from (?P<ip>[0-9a-fA-F.:]+)(?: port (?P<port>\d+))?$")
_SSH_DISCONNECT = rx.compile(
    r"(?:Disconnected from|Connection closed by|Received disconnect from) (?:(?:invalid |authenticating )?user "
    r"(?P<user>\S+) )?(?P<ip>[0-9a-fA-F.:]+) port (?P<port>\d+)"
)
_SSH_NO_IDENT = rx.compile(r"Did not receive identification string from (?P<ip>[0-9a-fA-F.:]+)(?: port (?P<port>\d+))?")
_SUDO = rx.compile(
    r"\s*(?P<user>\S+) : (?:(?P<error>[^;]+?) ; )?(?:TTY=(?P<tty>\S+) ; )?PWD=(?P<pwd>.+?) ; USER=(?P<target>\S+) ; "
    r"(?:GROUP=\S+ ; )?(?:ENV=.*? ; )?COMMAND=(?P<command>.*)$"
)


def _ip(value: str) -> str | None:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def _source(doc: dict, ip: str | None, port: str | None) -> None:
    addr = _ip(ip) if ip else None
    if addr:
        ecs.put(doc, "source.ip", addr)
        ecs.put(doc, "related.ip", [addr])
    if port:
        ecs.put(doc, "source.port", int(port))


def _user(doc: dict, name: str) -> None:
    ecs.put(doc, "user.name", name)
    ecs.put(doc, "related.user", [name])


def parse_sshd(doc: dict, message: str) -> bool:
    match = _SSH_LOGIN.match(message)
    if match:
        result = match.group("result")
        outcome = "success" if result == "Accepted" else "failure"
        ecs.put(doc, "event.action", "ssh_login")
        ecs.put(doc, "event.category", ["authentication", "session"] if outcome == "success" else ["authentication"])
        ecs.put(doc, "event.type", ["info"])
        ecs.put(doc, "event.outcome", outcome)
        ecs.put(doc, "system.auth.ssh.event", result)
        ecs.put(doc, "system.auth.ssh.method", match.group("method"))
        if match.group("sig"):
            ecs.put(doc, "system.auth.ssh.signature", match.group("sig"))
        _user(doc, match.group("user"))
        _source(doc, match.group("ip"), match.group("port"))
        return True
    match = _SSH_INVALID_USER.match(message)
    if match:
        ecs.put(doc, "event.action", "ssh_login")
        ecs.put(doc, "event.category", ["authentication"])
        ecs.put(doc, "event.type", ["info"])
        ecs.put(doc, "event.outcome", "failure")
        ecs.put(doc, "system.auth.ssh.event", "Invalid")
        _user(doc, match.group("user"))
        _source(doc, match.group("ip"), match.group("port"))
        return True
    match = _SSH_PAM_ERROR.match(message)
    if match:
        _user(doc, match.group("user"))
        _source(doc, match.group("host"), None)
        return True
    match = _SSH_NO_IDENT.match(message)
    if match:  # a scanner or a client that gave up before the SSH handshake
        _source(doc, match.group("ip"), match.group("port"))
        return True
    match = _SSH_DISCONNECT.match(message)
    if match:
        ecs.put(doc, "event.action", "ssh_disconnect")
        ecs.put(doc, "event.category", ["network"])
        ecs.put(doc, "event.type", ["end"])
        if match.group("user"):
            _user(doc, match.group("user"))
        _source(doc, match.group("ip"), match.group("port"))
        return True
    return False


def parse_sudo(doc: dict, message: str) -> bool:
    match = _SUDO.match(message)
    if not match:
        return False
    ecs.put(doc, "event.category", ["process"])
    ecs.put(doc, "event.type", ["start"])
    _user(doc, match.group("user"))
    ecs.put(doc, "user.effective.name", match.group("target"))
    ecs.put(doc, "process.command_line", match.group("command"))
    if match.group("tty"):
        ecs.put(doc, "system.auth.sudo.tty", match.group("tty"))
    ecs.put(doc, "system.auth.sudo.pwd", match.group("pwd"))
    if match.group("error"):
        ecs.put(doc, "system.auth.sudo.error", match.group("error").strip())
    return True


_SSH_PAM_ERROR = rx.compile(r"error: PAM: (?P<reason>.+?) for (?:illegal user |invalid user )?(?P<user>\S+) from "
                            r"(?P<host>\S+)$")
_PAM_FAILURE = rx.compile(r"(?:pam_unix\((?P<service>[^:)]+):(?P<phase>\w+)\): authentication failure;|PAM \d+ more "
                          r"authentication failures?;)(?P<kv>.*)$")


def parse_pam(doc: dict, message: str) -> bool:
    match = _PAM_FAILURE.match(message)
    if not match:
        return False
    fields = dict(kv.split("=", 1) for kv in match.group("kv").split() if "=" in kv)
    ecs.put(doc, "event.outcome", "failure")
    if match.group("phase") == "chauthtok":  # a password change whose old-password check failed
        c_categorize(doc, ["iam", "authentication"], ["change", "info"], "authentication_failure")
        return True
    ecs.put(doc, "event.category", ["authentication"])
    # ruser asked to become user: the person is ruser, the account they tried is the effective user.
    person, account = fields.get("ruser") or fields.get("user"), fields.get("user")
    if person:
        _user(doc, person)
    if account and account != person:
        ecs.put(doc, "user.effective.name", account)
        doc.setdefault("related", {}).setdefault("user", []).append(account)
    if fields.get("uid"):
        ecs.put(doc, "user.id", fields["uid"])
    if fields.get("rhost"):
        _source(doc, fields["rhost"], None)
    return True


def c_categorize(doc: dict, category: list, types: list, action: str | None = None,
                 outcome: str | None = None) -> None:
    ecs.put(doc, "event.category", category)
    ecs.put(doc, "event.type", types)
    if action:
        ecs.put(doc, "event.action", action)
    if outcome:
        ecs.put(doc, "event.outcome", outcome)


def _set_user_if_absent(doc: dict, name: str) -> None:
    if not ecs.get(doc, "user.name"):
        _user(doc, name)


_ACCOUNT_MESSAGES: list[tuple[rx.Pattern, tuple]] = [
    # (pattern, (category, type, action, outcome, user group or None))
    (rx.compile(r"new group: name=(?P<group>[^,\s]+)"), (["iam"], ["group", "creation"], None, "success", None)),
    (rx.compile(r"group added to \S+: name=(?P<group>[^,\s]+)"),
     (["iam"], ["group", "creation"], "group-added", "success", None)),
    (rx.compile(r"group '(?P<group>[^']+)' removed(?: from \S+)?"),
     (["iam"], ["group", "deletion"], "group-deleted", "success", None)),
    (rx.compile(r"new user: name=(?P<user>[^,\s]+)"), (["iam"], ["user", "creation"], None, "success", "user")),
    (rx.compile(r"failed adding user '(?P<user>[^']+)'"), (["iam"], ["user", "creation"], None, "failure", "user")),
    (rx.compile(r"delete user '(?P<user>[^']+)'"), (["iam"], ["user", "deletion"], None, "success", "user")),
    (rx.compile(r"delete '(?P<member>[^']+)' from (?:shadow )?group '(?P<group>[^']+)'"),
     (["iam"], ["user", "deletion"], "group-member-removed", "success", None)),
    (rx.compile(r"removed (?:shadow )?group '(?P<group>[^']+)'"),
     (["iam"], ["user", "deletion"], None, "success", None)),
    (rx.compile(r"add '(?P<user>[^']+)' to (?:shadow )?group '(?P<group>[^']+)'"),
     (["iam"], ["user", "change"], "group-member-added", "success", "user")),
    (rx.compile(r"change user '(?P<user>[^']+)' "), (["iam"], ["user", "change"], None, "success", "user")),
    (rx.compile(r"user (?P<member>\S+) (?:added|removed) by (?P<user>\S+) (?:to|from) group (?P<group>\S+)"),
     (["iam"], ["change"], None, "success", "user")),
    (rx.compile(r"password check failed for user \((?P<user>[^)]+)\)"),
     (["authentication"], ["info"], None, "failure", "user")),
    (rx.compile(r"pam_faillock\([^)]*\): Consecutive login failures for user (?P<user>\S+) account temporarily "
                r"locked"), (["authentication"], ["info"], "account-locked", "failure", "user")),
]
_PASSWORD_CHANGED = rx.compile(r"pam_unix\([^)]*:chauthtok\): (?:password changed for (?P<user>\S+)|(?P<bad>.+))$")


def parse_account(doc: dict, message: str) -> bool:
    """useradd/userdel/usermod/groupadd/gpasswd/passwd/unix_chkpwd/pam_faillock messages."""
    changed = _PASSWORD_CHANGED.match(message)
    if changed and "authentication failure;" not in message:
        ok = changed.group("user") is not None
        c_categorize(doc, ["iam"], ["change"], "password-changed", "success" if ok else "failure")
        if ok:
            _set_user_if_absent(doc, changed.group("user"))
        return True
    for pattern, (category, types, action, outcome, who) in _ACCOUNT_MESSAGES:
        match = pattern.search(message)
        if match:
            c_categorize(doc, category, types, action, outcome)
            if who and match.groupdict().get(who):
                _set_user_if_absent(doc, match.group(who))
            groups = match.groupdict()
            if groups.get("group"):
                ecs.put(doc, "group.name", groups["group"])
            if groups.get("member"):
                ecs.put(doc, "user.target.name", groups["member"])
            return True
    return False


def parse_linux_auth(doc: dict, ctx: ParseContext | None = None) -> dict:
    """Add authentication fields to a syslog document whose program is one of PROGRAMS. Unknown lines stay as
    plain syslog events (they are valid data, just not an authentication event we recognise)."""
    program = ecs.get(doc, "process.name") or ecs.get(doc, "log.syslog.appname") or ""
    message = doc.get("message", "")
    ecs.put(doc, "event.module", "system")
    ecs.put(doc, "event.dataset", "system.auth")
    if (message.startswith(("pam_unix(", "PAM ")) and "authentication failure" in message
            and parse_pam(doc, message)):
        return doc
    if parse_account(doc, message):
        return doc
    if program.startswith("sshd"):
        parse_sshd(doc, message)
    elif program == "sudo" or not program:
        parse_sudo(doc, message)
    return doc


SPEC = ParserSpec(
    name="linux_auth",
    dataset="system.auth",
    carrier="syslog",
    parse=parse_linux_auth,
    programs=tuple(sorted(PROGRAMS)),
    description="Linux authentication: sshd, sudo, su, PAM (auth.log / secure)",
    max_message_chars=8192,
    max_message_why="sshd logs at most 1 KiB a message (MSGBUFSIZ), sudo splits its lines at 960 bytes",
)
