"""Linux authentication messages (sshd, sudo, su, PAM) to ECS authentication events.

Field choices follow the Elastic ``system.auth`` pipeline so that the fixtures in
``../shared/corpus/vendor-logs/system/auth`` can score this parser field by field.
"""

from __future__ import annotations

import ipaddress
import re

from collectors.parsers.registry import ParseContext, ParserSpec
from soc import ecs

PROGRAMS = frozenset({"sshd", "sudo", "su", "login", "sshd-session", "systemd-logind"})

_SSH_LOGIN = re.compile(
    r"(?P<result>Accepted|Failed|Invalid|Postponed) (?P<method>[\w-]+) for (?:invalid user )?(?P<user>.*?) "
    r"from (?P<ip>[0-9a-fA-F.:]+) port (?P<port>\d+)(?: (?P<proto>ssh2?))?(?:: (?P<sig>.*))?$"
)
_SSH_INVALID_USER = re.compile(r"Invalid user (?P<user>.*?) from (?P<ip>[0-9a-fA-F.:]+)(?: port (?P<port>\d+))?$")
_SSH_DISCONNECT = re.compile(
    r"(?:Disconnected from|Connection closed by|Received disconnect from) (?:(?:invalid |authenticating )?user "
    r"(?P<user>\S+) )?(?P<ip>[0-9a-fA-F.:]+) port (?P<port>\d+)"
)
_SSH_NO_IDENT = re.compile(r"Did not receive identification string from (?P<ip>[0-9a-fA-F.:]+)(?: port (?P<port>\d+))?")
_SUDO = re.compile(
    r"\s*(?P<user>\S+) : (?:(?P<error>.+?) ; )?TTY=(?P<tty>\S+) ; PWD=(?P<pwd>.+?) ; USER=(?P<target>\S+) ; "
    r"(?:GROUP=\S+ ; )?COMMAND=(?P<command>.*)$"
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
    _user(doc, match.group("user"))
    ecs.put(doc, "user.effective.name", match.group("target"))
    ecs.put(doc, "process.command_line", match.group("command"))
    ecs.put(doc, "system.auth.sudo.tty", match.group("tty"))
    ecs.put(doc, "system.auth.sudo.pwd", match.group("pwd"))
    if match.group("error"):
        ecs.put(doc, "system.auth.sudo.error", match.group("error").strip())
    return True


_SSH_PAM_ERROR = re.compile(r"error: PAM: (?P<reason>.+?) for (?:illegal user |invalid user )?(?P<user>\S+) from "
                            r"(?P<host>\S+)$")
_PAM_FAILURE = re.compile(r"pam_unix\((?P<service>[^:)]+):auth\): authentication failure;(?P<kv>.*)$")


def parse_pam(doc: dict, message: str) -> bool:
    match = _PAM_FAILURE.match(message)
    if not match:
        return False
    fields = dict(kv.split("=", 1) for kv in match.group("kv").split() if "=" in kv)
    ecs.put(doc, "event.category", ["authentication"])
    ecs.put(doc, "event.outcome", "failure")
    # ruser asked to become user: the person is ruser, the account they tried is the effective user.
    person, account = fields.get("ruser") or fields.get("user"), fields.get("user")
    if person:
        _user(doc, person)
    if account and account != person:
        ecs.put(doc, "user.effective.name", account)
        doc["related"]["user"].append(account)
    if fields.get("uid"):
        ecs.put(doc, "user.id", fields["uid"])
    if fields.get("rhost"):
        _source(doc, fields["rhost"], None)
    return True


def parse_linux_auth(doc: dict, ctx: ParseContext | None = None) -> dict:
    """Add authentication fields to a syslog document whose program is one of PROGRAMS. Unknown lines stay as
    plain syslog events (they are valid data, just not an authentication event we recognise)."""
    program = ecs.get(doc, "process.name") or ""
    message = doc.get("message", "")
    ecs.put(doc, "event.module", "system")
    ecs.put(doc, "event.dataset", "system.auth")
    if message.startswith("pam_unix("):
        parse_pam(doc, message)
    elif program.startswith("sshd"):
        parse_sshd(doc, message)
    elif program == "sudo":
        parse_sudo(doc, message)
    return doc


SPEC = ParserSpec(
    name="linux_auth",
    dataset="system.auth",
    carrier="syslog",
    parse=parse_linux_auth,
    programs=tuple(sorted(PROGRAMS)),
    description="Linux authentication: sshd, sudo, su, PAM (auth.log / secure)",
)
