"""What a hunt found, for a responder: a timeline of detections in event time, and a summary.

The **timeline** (`soc hunt --timeline FILE`) has one row per detection, sorted by the event's time: timestamp,
computer, channel, event id, EventRecordID, level, rule, ATT&CK techniques and tactics, and a one-line *details*
summary of the event chosen by its kind (a logon: user, source address, logon type; a process creation: image,
command line, parent; a service installation: name, path; a network connection: image, destination; …; any other
event: a few of its fields). CSV, or JSON lines.

The **summary** (`--summary FILE`, and a few lines on stderr): detections by level, by computer, by technique, first
and last seen, and the rules that fired most.

Both take detections one at a time as the hunt streams them and hold nothing that grows with their number: the
summary counts per rule, technique, tactic and level (bounded by the rule set) and per computer, where the computer
names come from the events and so are counted by a bounded counter (TopCounter: exact up to 2 * COMPUTERS distinct
names, beyond that the COMPUTERS most frequent with counts that are lower bounds, and the summary says so).

The timeline's CSV is opened by responders in Excel or LibreOffice, and its cells hold what the events and the rule
pack say: a cell whose first non-blank character would start a formula (= + - @, their full-width forms, a tab, a
carriage return or a line feed) is written with a leading single quote, as OWASP's "CSV injection" page advises, so
that it is shown as text. JSON lines are written as they are.
"""

from __future__ import annotations

import csv
import heapq
import json
import os
import re
import shutil
import sqlite3
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable

from soc.vocabulary import severity_rank

# --- the event's own facts -------------------------------------------------------------------------------------------
SYSTEM_NAMES = frozenset({"EventID", "Channel", "Provider_Name", "Computer", "TimeCreated", "EventRecordID"})
NO_VALUE = (None, "", "-", [], "%%1793")  # Windows writes "-" (and %%1793, "<value not set>") for nothing
MAX_VALUE = 300  # characters of one value in a details line
MAX_DETAILS = 1200  # characters of a whole details line
SEPARATOR = " ¦ "  # as Hayabusa's details: a character no command line or path uses

LOGON_TYPES = {0: "System", 2: "Interactive", 3: "Network", 4: "Batch", 5: "Service", 7: "Unlock",
               8: "NetworkCleartext", 9: "NewCredentials", 10: "RemoteInteractive", 11: "CachedInteractive",
               12: "CachedRemoteInteractive", 13: "CachedUnlock"}
WFP_DIRECTIONS = {"%%14592": "Inbound", "%%14593": "Outbound"}  # Security 5156's message-table values


def _one_line(value: Any) -> str:
    if isinstance(value, list):
        value = ", ".join(str(v) for v in value if v not in NO_VALUE)
    text = " ".join(str(value).split())  # one line: newlines, tabs and runs of blanks become one space
    return text if len(text) <= MAX_VALUE else text[:MAX_VALUE - 1] + "…"


def _get(view: dict[str, Any], name: str) -> Any:
    value = view.get(name)
    return None if value in NO_VALUE else value


def _account(domain: str, user: str) -> Callable[[dict[str, Any]], Any]:
    def account(view: dict[str, Any]) -> Any:
        name = _get(view, user)
        if name is None:
            return None
        realm = _get(view, domain)
        return f"{realm}\\{name}" if realm else name
    return account


def _address(ip: str, port: str) -> Callable[[dict[str, Any]], Any]:
    def address(view: dict[str, Any]) -> Any:
        host = _get(view, ip)
        if host is None:
            return None
        number = _get(view, port)
        if number in (None, 0, "0"):
            return host
        return f"[{host}]:{number}" if ":" in str(host) else f"{host}:{number}"
    return address


def _logon_type(view: dict[str, Any]) -> Any:
    value = _get(view, "LogonType")
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):  # None, text, a huge number, inf or nan
        return value
    return f"{number} ({LOGON_TYPES[number]})" if number in LOGON_TYPES else number


Field = str | Callable[[dict[str, Any]], Any]
SUBJECT = _account("SubjectDomainName", "SubjectUserName")
TARGET = _account("TargetDomainName", "TargetUserName")
LOGON: list[tuple[str, Field]] = [
    ("User", TARGET), ("LogonType", _logon_type), ("SrcIP", _address("IpAddress", "IpPort")),
    ("SrcComp", "WorkstationName"), ("AuthPkg", "AuthenticationPackageName"), ("Process", "ProcessName")]
SYSMON_PROCESS: list[tuple[str, Field]] = [
    ("Image", "Image"), ("CommandLine", "CommandLine"), ("ParentImage", "ParentImage"), ("User", "User"),
    ("ParentCommandLine", "ParentCommandLine")]
SECURITY_PROCESS: list[tuple[str, Field]] = [
    ("Image", "NewProcessName"), ("CommandLine", "CommandLine"), ("ParentImage", "ParentProcessName"),
    ("User", SUBJECT), ("TargetUser", TARGET)]
SYSMON_NETWORK: list[tuple[str, Field]] = [
    ("Image", "Image"), ("Dst", _address("DestinationIp", "DestinationPort")), ("DstHost", "DestinationHostname"),
    ("Src", _address("SourceIp", "SourcePort")), ("Protocol", "Protocol"), ("User", "User")]
WFP_NETWORK: list[tuple[str, Field]] = [
    ("Image", "Application"), ("Dst", _address("DestAddress", "DestPort")),
    ("Src", _address("SourceAddress", "SourcePort")), ("Protocol", "Protocol"),
    ("Direction", lambda view: WFP_DIRECTIONS.get(str(_get(view, "Direction")), _get(view, "Direction")))]
SYSMON = "microsoft-windows-sysmon/operational"

# (channel lowercased, event id) -> the fields of its details line, in order: (label, field name or function).
DETAILS: dict[tuple[str, int], list[tuple[str, Field]]] = {
    ("security", 4624): LOGON,
    ("security", 4625): LOGON + [("Status", "Status"), ("SubStatus", "SubStatus"), ("Reason", "FailureReason")],
    ("security", 4634): [("User", TARGET), ("LogonType", _logon_type)],
    ("security", 4647): [("User", TARGET)],
    ("security", 4648): [("User", SUBJECT), ("TargetUser", TARGET), ("TargetServer", "TargetServerName"),
                         ("SrcIP", _address("IpAddress", "IpPort")), ("Process", "ProcessName")],
    ("security", 4672): [("User", SUBJECT), ("Privileges", "PrivilegeList")],
    ("security", 4768): [("User", TARGET), ("Service", "ServiceName"), ("SrcIP", _address("IpAddress", "IpPort")),
                         ("Status", "Status")],
    ("security", 4769): [("User", TARGET), ("Service", "ServiceName"), ("SrcIP", _address("IpAddress", "IpPort")),
                         ("TicketEncryption", "TicketEncryptionType"), ("Status", "Status")],
    ("security", 4771): [("User", TARGET), ("Service", "ServiceName"), ("SrcIP", _address("IpAddress", "IpPort")),
                         ("Status", "Status")],
    ("security", 4776): [("User", "TargetUserName"), ("SrcComp", "Workstation"), ("Status", "Status")],
    ("security", 4688): SECURITY_PROCESS,
    ("security", 4697): [("Service", "ServiceName"), ("Path", "ServiceFileName"), ("Account", "ServiceAccount"),
                         ("StartType", "ServiceStartType"), ("User", SUBJECT)],
    ("security", 4698): [("Task", "TaskName"), ("User", SUBJECT)],
    ("security", 4699): [("Task", "TaskName"), ("User", SUBJECT)],
    ("security", 4702): [("Task", "TaskName"), ("User", SUBJECT)],
    ("security", 4720): [("NewUser", TARGET), ("User", SUBJECT)],
    ("security", 4726): [("DeletedUser", TARGET), ("User", SUBJECT)],
    ("security", 4728): [("Member", "MemberName"), ("MemberSid", "MemberSid"), ("Group", TARGET), ("User", SUBJECT)],
    ("security", 4732): [("Member", "MemberName"), ("MemberSid", "MemberSid"), ("Group", TARGET), ("User", SUBJECT)],
    ("security", 4756): [("Member", "MemberName"), ("MemberSid", "MemberSid"), ("Group", TARGET), ("User", SUBJECT)],
    ("security", 5140): [("User", SUBJECT), ("SrcIP", _address("IpAddress", "IpPort")), ("Share", "ShareName")],
    ("security", 5145): [("User", SUBJECT), ("SrcIP", _address("IpAddress", "IpPort")), ("Share", "ShareName"),
                         ("Target", "RelativeTargetName"), ("Access", "AccessList")],
    ("security", 5156): WFP_NETWORK,
    ("security", 5157): WFP_NETWORK,
    ("system", 7045): [("Service", "ServiceName"), ("Path", "ImagePath"), ("Account", "AccountName"),
                       ("StartType", "StartType"), ("Type", "ServiceType")],
    (SYSMON, 1): SYSMON_PROCESS,
    (SYSMON, 3): SYSMON_NETWORK,
    (SYSMON, 5): [("Image", "Image"), ("User", "User")],
    (SYSMON, 6): [("Driver", "ImageLoaded"), ("Signature", "Signature"), ("Signed", "Signed")],
    (SYSMON, 7): [("Image", "Image"), ("Loaded", "ImageLoaded"), ("Signed", "Signed"), ("Signature", "Signature")],
    (SYSMON, 8): [("Source", "SourceImage"), ("Target", "TargetImage"), ("StartFunction", "StartFunction")],
    (SYSMON, 10): [("Source", "SourceImage"), ("Target", "TargetImage"), ("Access", "GrantedAccess")],
    (SYSMON, 11): [("Image", "Image"), ("File", "TargetFilename")],
    (SYSMON, 12): [("Image", "Image"), ("Key", "TargetObject"), ("Type", "EventType")],
    (SYSMON, 13): [("Image", "Image"), ("Key", "TargetObject"), ("Value", "Details")],
    (SYSMON, 14): [("Image", "Image"), ("Key", "TargetObject"), ("NewName", "NewName")],
    (SYSMON, 15): [("Image", "Image"), ("File", "TargetFilename")],
    (SYSMON, 17): [("Image", "Image"), ("Pipe", "PipeName")],
    (SYSMON, 18): [("Image", "Image"), ("Pipe", "PipeName")],
    (SYSMON, 22): [("Image", "Image"), ("Query", "QueryName"), ("Result", "QueryResults")],
    (SYSMON, 23): [("Image", "Image"), ("File", "TargetFilename")],
    (SYSMON, 25): [("Image", "Image"), ("Type", "Type")],
    (SYSMON, 26): [("Image", "Image"), ("File", "TargetFilename")],
    ("microsoft-windows-powershell/operational", 4104): [("ScriptBlock", "ScriptBlockText"), ("Path", "Path")],
    ("microsoft-windows-powershell/operational", 4103): [("Payload", "Payload"), ("Context", "ContextInfo")],
    ("powershellcore/operational", 4104): [("ScriptBlock", "ScriptBlockText"), ("Path", "Path")],
}
# Any other event: its users (as DOMAIN\\name), then the fields a responder looks for first, then its other fields, up
# to GENERIC_FIELDS of them; identifiers nobody reads in a line (SIDs, logon ids, GUIDs) are left out.
GENERIC_FIELDS = 5
GENERIC_ACCOUNTS: list[tuple[str, str, Field]] = [
    ("User", "SubjectUserName", SUBJECT), ("TargetUser", "TargetUserName", TARGET)]
ACCOUNT_PARTS = frozenset({"SubjectUserName", "SubjectDomainName", "TargetUserName", "TargetDomainName"})
PREFERRED = ("User", "Image", "CommandLine", "ProcessName", "Application", "ServiceName", "IpAddress",
             "WorkstationName", "Workstation", "TargetFilename", "TargetObject", "ObjectName", "ShareName", "TaskName",
             "QueryName", "user.name", "source.ip", "destination.ip", "process.command_line", "process.executable",
             "url.original", "event.action", "message")
SKIPPED_SUFFIXES = ("Sid", "LogonId", "Guid", "GUID", "UtcTime", "Binary")


def _generic(view: dict[str, Any]) -> list[str]:
    parts: list[str] = []
    for label, name, account in GENERIC_ACCOUNTS:
        if _get(view, name) is not None:
            parts.append(f"{label}: {_one_line(account(view))}")
    used = set(ACCOUNT_PARTS)
    for name in [*PREFERRED, *view]:
        if len(parts) >= GENERIC_FIELDS:
            break
        if name in used or name in SYSTEM_NAMES or " " in name or name.endswith(SKIPPED_SUFFIXES):
            continue
        used.add(name)
        value = _get(view, name)
        if value is not None and not isinstance(value, dict):
            parts.append(f"{name}: {_one_line(value)}")
    return parts


def details(view: dict[str, Any]) -> str:
    """A one-line summary of an event, chosen by its kind."""
    kind = (str(view.get("Channel") or "").lower(), _event_id(view.get("EventID")))
    fields = DETAILS.get(kind)
    if fields is None:
        parts = _generic(view)
    else:
        parts = []
        for label, field in fields:
            value = field(view) if callable(field) else _get(view, field)
            if value is not None:
                parts.append(f"{label}: {_one_line(value)}")
    line = SEPARATOR.join(parts)
    return line if len(line) <= MAX_DETAILS else line[:MAX_DETAILS - 1] + "…"


def _event_id(value: Any) -> Any:
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):  # None, text, a huge number, inf or nan
        return value


def event_facts(view: dict[str, Any]) -> tuple[Any, Any, Any]:
    """(computer, channel, event id) of a Windows view or a flattened ECS document."""
    computer = view.get("Computer") or view.get("host.name") or view.get("host.hostname")
    channel = view.get("Channel") or view.get("event.dataset") or view.get("event.module")
    event_id = view.get("EventID") if view.get("EventID") is not None else (
        view.get("event.code") or view.get("event.action"))
    return computer, channel, event_id


# --- what a spreadsheet or a terminal would take for a command -----------------------------------------------------
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20")  # ＝＋－＠


def csv_cell(value: Any) -> Any:
    """A timeline value as a CSV cell: a number as it is, None as nothing, any other value as text, with a single
    quote in front when a spreadsheet would take it for a formula (OWASP, "CSV injection")."""
    if value is None:
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value  # a number is no formula, "-1" included
    text = value if isinstance(value, str) else str(value)
    return "'" + text if text.lstrip(" ").startswith(FORMULA_STARTS) else text


_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def printable(value: Any) -> str:
    """Text from an event or a rule pack made safe for a terminal: control characters (an escape sequence's ESC
    among them) and bidirectional overrides are shown as \\xNN / \\uNNNN, not obeyed."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m[0]):02x}" if ord(m[0]) < 0x100 else f"\\u{ord(m[0]):04x}", str(value))


# --- the timeline ----------------------------------------------------------------------------------------------------
COLUMNS = ("timestamp", "computer", "channel", "event_id", "record_id", "level", "rule", "rule_id", "techniques",
           "tactics", "details", "file", "line")
LAST = "\uffff"  # the sort key of a row without a time: after every time


def timeline_format(path: Path, requested: str = "auto") -> str:
    if requested in ("csv", "jsonl"):
        return requested
    if requested != "auto":
        raise ValueError(f"timeline format must be csv, jsonl or auto, not {requested!r}")
    return "jsonl" if path.suffix.lower() in (".jsonl", ".json", ".ndjson") else "csv"


def _spill_folder(path: Path) -> str | None:
    """Beside the output, where there is room for it (the system's temporary folder may be memory); the system's
    temporary folder when the output is a device (/dev/stdout) or its folder cannot be written."""
    folder = path.absolute().parent
    if str(folder).startswith(("/dev", "/proc")) or not os.access(folder, os.W_OK):
        return None
    return str(folder)


class Timeline:
    """Detections in event time, written to ``path`` by close().

    Detections arrive in arrival order and a hunt can find millions, so they are not sorted in memory. Each row goes
    to a temporary SQLite file, into a table with an index on (time, arrival): SQLite keeps at most ``cache_size``
    pages of it in memory, the index is kept in order in the file as rows arrive, and reading the table through the
    index gives the rows in time order, with no sort at the end and no temporary files elsewhere
    (tests/test_hunt_outputs.py checks the query plan). Compact rows in memory would grow with the detections; sorted
    runs merged at the end would be more code for the same bound; SQLite is in the standard library.

    The file is made in a private folder (mode 0700) beside the output, opened, and then removed with its folder: on
    Linux and macOS an open file lives on without a name until the connection closes, so nothing is left behind
    however the hunt ends, SIGKILL included (SQLite's journal is off, so it opens no other file beside it; its own
    temporary files, if any, are in TMPDIR and unnamed too). Where an open file cannot be removed (Windows), the file
    stays in its private folder and close() or discard() removes both; a hunt killed there leaves them.
    """

    CACHE_KIB = 8 * 1024
    INSERT_BATCH = 1000
    PRAGMAS = ("journal_mode=OFF", "synchronous=OFF", f"cache_size=-{CACHE_KIB}", "temp_store=FILE")

    def __init__(self, path: Path, fmt: str = "auto"):
        self.path, self.format = path, timeline_format(path, fmt)
        self.folder = Path(tempfile.mkdtemp(prefix=".soc-timeline-", dir=_spill_folder(path)))  # mode 0700
        self.spill = self.folder / "spill.sqlite"
        self.db: sqlite3.Connection | None = None
        try:
            self.db = self._open()
            self._unname()
        except BaseException:
            self.discard()
            raise
        self.pending: list[tuple[bytes, int, bytes]] = []
        self.rows = 0

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.spill, isolation_level=None)
        try:
            for pragma in self.PRAGMAS:
                db.execute(f"PRAGMA {pragma}")
            if db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "off":
                raise sqlite3.OperationalError("the timeline's spill file needs SQLite's journal off")
            db.execute("CREATE TABLE detections (at BLOB NOT NULL, seq INTEGER NOT NULL, row BLOB NOT NULL)")
            db.execute("CREATE INDEX in_time ON detections (at, seq)")
        except BaseException:
            db.close()
            raise
        return db

    def _unname(self) -> None:
        """Remove the open file's name and its folder, where the system allows it and SQLite still writes it then."""
        try:
            self.spill.unlink()
        except OSError:
            return
        try:
            self.db.execute("INSERT INTO detections VALUES (x'', -1, x'')")  # SQLite still writes the unnamed file
            self.db.execute("DELETE FROM detections")
        except sqlite3.Error:  # it refuses (an older SQLite's "database moved"): a file with a name, removed at the end
            self.db.close()
            self.db = self._open()
            return
        try:
            self.folder.rmdir()
        except OSError:
            pass

    def add(self, meta, event, timestamp: str | None, line: str) -> None:
        """One detection: the rule's metadata, the hunt event, its time (ISO 8601 UTC) and details line."""
        computer, channel, event_id = event_facts(event.view)
        row = [timestamp, computer, channel, event_id, event.record, meta.level, meta.title, meta.id,
               meta.techniques, meta.tactics, line, event.source, event.line]
        # Bytes (UTF-8 sorts as the text does): a lone surrogate (JSON's \ud800) is no text SQLite takes, and an
        # unreadable time is kept as the event gives it; surrogatepass keeps it and reads it back.
        self.pending.append(((timestamp or LAST).encode("utf-8", "surrogatepass"), self.rows,
                             json.dumps(row, ensure_ascii=False, default=str).encode("utf-8", "surrogatepass")))
        self.rows += 1
        if len(self.pending) >= self.INSERT_BATCH:
            self._flush()

    def _flush(self) -> None:
        if self.pending:
            self.db.execute("BEGIN")
            self.db.executemany("INSERT INTO detections VALUES (?, ?, ?)", self.pending)
            self.db.execute("COMMIT")
            self.pending = []

    ORDERED = "SELECT row FROM detections ORDER BY at, seq"

    def ordered(self) -> Iterable[list]:
        self._flush()
        for (row,) in self.db.execute(self.ORDERED):
            yield json.loads(row.decode("utf-8", "surrogatepass"))

    def close(self, on_rows: Callable[[int], None] | None = None) -> int:
        """Write the timeline; the number of rows. ``on_rows(n)`` is told every 10,000 rows written."""
        try:
            # a lone surrogate is written as \udXXX: in JSON lines, JSON's own escape for it
            with self.path.open("w", encoding="utf-8", errors="backslashreplace", newline="") as fh:
                writer = csv.writer(fh) if self.format == "csv" else None
                if writer is not None:
                    writer.writerow(COLUMNS)
                for n, row in enumerate(self.ordered(), start=1):
                    if writer is not None:
                        row[8], row[9] = ";".join(map(str, row[8])), ";".join(map(str, row[9]))
                        writer.writerow([csv_cell(v) for v in row])
                    else:
                        fh.write(json.dumps(dict(zip(COLUMNS, row)), ensure_ascii=False, default=str) + "\n")
                    if on_rows is not None and not n % 10_000:
                        on_rows(10_000)
        finally:
            self.discard()
        return self.rows

    def discard(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None
        shutil.rmtree(self.folder, ignore_errors=True)


# --- the summary -----------------------------------------------------------------------------------------------------
COMPUTERS = 1000  # the summary counts up to twice as many computer names exactly; beyond, it lists this many


class TopCounter:
    """Counts per value in bounded memory: the Misra-Gries summary, kept exact until it must drop values.

    Up to ``2 * keep`` values are counted exactly. When one more arrives, the (keep + 1)-th largest count is taken
    off every count and the values left at zero are dropped (``undercount`` grows by it), so at most ``keep``
    remain. Then a count is a lower bound: the value's true count is between it and it + ``undercount``, and
    ``undercount`` is at most total / (keep + 1); any value seen more often than that is still listed. Each drop
    costs O(keep) and comes after at least ``keep`` new values: O(1) a count, amortised. ``exact`` is True while
    nothing was dropped, which is every hunt with fewer than ``2 * keep`` distinct values.
    """

    def __init__(self, keep: int = COMPUTERS):
        self.keep, self.total, self.undercount = keep, 0, 0
        self.counts: dict[str, int] = {}

    def add(self, value: str, n: int = 1) -> None:
        self.total += n
        counts = self.counts
        counts[value] = counts.get(value, 0) + n
        if len(counts) > 2 * self.keep:
            cut = heapq.nlargest(self.keep + 1, counts.values())[-1]
            self.counts = {v: c - cut for v, c in counts.items() if c > cut}
            self.undercount += cut

    @property
    def exact(self) -> bool:
        return self.undercount == 0

    def most_common(self, n: int | None = None) -> list[tuple[str, int]]:
        ranked = sorted(self.counts.items(), key=lambda item: (-item[1], item[0]))
        return ranked if n is None else ranked[:n]

    def __len__(self) -> int:
        return len(self.counts)


class HuntSummary:
    """Counts of what a hunt found: by level, computer, rule, technique and tactic; first and last seen.

    Levels, rules, techniques and tactics come from the rule set, which bounds them; computer names come from the
    events, and are counted by a TopCounter: ``as_dict`` lists them all while it counts exactly (up to 2 * COMPUTERS
    names), and otherwise the COMPUTERS most frequent, saying that their counts are lower bounds:
    ``by_computer_complete`` false, with the most any is under, ``by_computer_undercount``, and the detections not in
    the list, ``by_computer_other``."""

    def __init__(self, computers: int = COMPUTERS) -> None:
        self.detections = 0
        self.by_level: Counter[str] = Counter()
        self.by_computer = TopCounter(computers)
        self.by_technique: Counter[str] = Counter()
        self.by_tactic: Counter[str] = Counter()
        self.rules: dict[str, dict[str, Any]] = {}
        self.first_seen: str | None = None
        self.last_seen: str | None = None

    def add(self, meta, event, timestamp: str | None) -> None:
        self.detections += 1
        self.by_level[meta.level] += 1
        computer = event_facts(event.view)[0]
        self.by_computer.add(_one_line(computer) if computer is not None else "(none)")
        self.by_technique.update(meta.techniques)
        self.by_tactic.update(meta.tactics)
        rule = self.rules.get(meta.id)
        if rule is None:
            rule = self.rules[meta.id] = {"id": meta.id, "title": meta.title, "level": meta.level, "count": 0,
                                          "first_seen": None, "last_seen": None}
        rule["count"] += 1
        if timestamp:
            if self.first_seen is None or timestamp < self.first_seen:
                self.first_seen = timestamp
            if self.last_seen is None or timestamp > self.last_seen:
                self.last_seen = timestamp
            if rule["first_seen"] is None or timestamp < rule["first_seen"]:
                rule["first_seen"] = timestamp
            if rule["last_seen"] is None or timestamp > rule["last_seen"]:
                rule["last_seen"] = timestamp

    def top_rules(self) -> list[dict[str, Any]]:
        return sorted(self.rules.values(), key=lambda r: (-r["count"], -severity_rank(r["level"]), r["title"]))

    def as_dict(self, **run: Any) -> dict[str, Any]:
        levels = sorted(self.by_level, key=lambda level: (-severity_rank(level), level))
        complete = self.by_computer.exact  # every count exact: all listed
        computers = dict(self.by_computer.most_common(None if complete else self.by_computer.keep))
        out = {
            **run,
            "detections": self.detections,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "by_level": {level: self.by_level[level] for level in levels},
            "by_computer": computers,
            "by_computer_complete": complete,
        }
        if not complete:
            out["by_computer_undercount"] = self.by_computer.undercount
            out["by_computer_other"] = self.detections - sum(computers.values())
        out.update({
            "by_technique": dict(self.by_technique.most_common()),
            "by_tactic": dict(self.by_tactic.most_common()),
            "top_rules": self.top_rules(),
        })
        return out

    def text(self, top: int = 5) -> str:
        """A few lines for a human, on stderr; what came from the events or the rule pack is made printable."""
        if not self.detections:
            return "no detections"
        summary = self.as_dict()
        more = len(self.by_computer) - top
        lines = [printable(f"{self.detections} detections from {self.first_seen or '?'} to {self.last_seen or '?'}"),
                 "by level: " + ", ".join(printable(f"{level} {n}") for level, n in summary["by_level"].items()),
                 "by computer: " + ", ".join(printable(f"{c} {n}") for c, n in self.by_computer.most_common(top))
                 + (f" (+{more} more)" if more > 0 and self.by_computer.exact else "")
                 + ("" if self.by_computer.exact else " (and more: too many computers to count each, "
                                                       "counts approximate)"),
                 "top rules:"]
        lines += [printable(f"  {r['count']:>6}  {r['level']:<13} {r['title']}") for r in summary["top_rules"][:top]]
        if self.by_technique:
            lines.append("top techniques: " + ", ".join(printable(f"{t} {n}")
                                                        for t, n in self.by_technique.most_common(top)))
        return "\n".join(lines)
