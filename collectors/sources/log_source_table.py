"""How the suite recognises each log source the inventory expects: one data table, nothing else.

An inventory asset lists ``log_sources`` by name (``linux-auth``, ``cisco-asa``, ...). An event belongs to one of
those sources when its ``event.dataset`` or its syslog program (``process.name``) matches the source's patterns
(shell-style, case-insensitive). Parsers for several formats are written by other parts of the suite, so each row
accepts both the Elastic module spelling (``cisco.asa``) and the suite's parser spelling (``cisco_asa.*``).
Source health (collectors/sources/source_health.py) and the audit reports (reports/) both use this table.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import lru_cache


@dataclass(frozen=True)
class LogSourceKind:
    name: str
    datasets: tuple[str, ...] = ()  # event.dataset patterns
    programs: tuple[str, ...] = ()  # process.name patterns (syslog APP-NAME / TAG)
    # Seconds without an event after which the source counts as silent; quiet sources get longer.
    silent_after_seconds: int = 1800


LOG_SOURCES: tuple[LogSourceKind, ...] = (
    LogSourceKind("linux-auth", ("system.auth", "linux.auth*", "linux_auth*"),
                  ("sshd", "sshd-session", "sudo", "su", "login", "systemd-logind", "passwd"), 6 * 3600),
    LogSourceKind("syslog", ("syslog.*", "system.syslog")),
    LogSourceKind("windows-security", ("windows.security*", "system.security", "winlog.security*",
                                       "windows_security*")),
    LogSourceKind("sysmon", ("windows.sysmon*", "sysmon*", "windows_sysmon*")),
    LogSourceKind("nginx", ("nginx.*",), ("nginx",)),
    LogSourceKind("modsecurity", ("modsecurity*", "modsec*"), ("modsecurity", "modsec*")),
    LogSourceKind("cef-antivirus", ("cef*", "antivirus*", "kaspersky*", "cef_antivirus*"), (), 6 * 3600),
    LogSourceKind("sophos-xg", ("sophos.xg*", "sophos_xg*", "sophos.sfos*")),
    LogSourceKind("sonicwall", ("sonicwall*",)),
    LogSourceKind("cisco-asa", ("cisco.asa*", "cisco_asa*"), ("%asa-*",)),
    LogSourceKind("cisco-ios", ("cisco.ios*", "cisco_ios*"), (), 6 * 3600),
    LogSourceKind("f5-bigip", ("f5.*", "f5_bigip*", "bigip*")),
    LogSourceKind("nftables", ("nftables*", "iptables*", "netfilter*"), ()),
)
BY_NAME: dict[str, LogSourceKind] = {kind.name: kind for kind in LOG_SOURCES}


@lru_cache(maxsize=4096)
def sources_of(dataset: str | None, program: str | None) -> frozenset[str]:
    """The log source names an event with this dataset and program counts for (often one, sometimes none)."""
    dataset = (dataset or "").lower()
    program = (program or "").lower()
    found = set()
    for kind in LOG_SOURCES:
        if dataset and any(fnmatchcase(dataset, p) for p in kind.datasets):
            found.add(kind.name)
        elif program and any(fnmatchcase(program, p) for p in kind.programs):
            found.add(kind.name)
    return frozenset(found)


def silent_after(name: str, default: int = 1800) -> int:
    kind = BY_NAME.get(name)
    return kind.silent_after_seconds if kind else default
