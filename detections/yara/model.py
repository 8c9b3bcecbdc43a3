"""What a YARA scan says: the health of each rule file, matches with their strings, and files it could not scan.

Plain dataclasses with ``to_dict()`` for JSON (CLI lines, API answers); ``detections/yara/ecs.py`` turns a match
into an ECS alert-shaped document.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# Rule metadata worth carrying with a match; the rest (hashes of samples, dates, licence text) stays in the rule.
KEPT_META = ("author", "description", "reference", "score", "id")


@dataclass
class RuleFileHealth:
    """One rule file: loaded (with how many rules) or failed (with yara's error)."""

    path: str
    namespace: str
    status: str  # loaded | failed
    reason: str = ""
    rules: int = 0
    warnings: list[str] = field(default_factory=list)
    # What the yara command-line tool (a different libyara version) thinks of the same file, when it was asked:
    # "accepted", or "rejected: <its error>". A file only one of them accepts is left out of comparisons.
    cli: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class StringHit:
    identifier: str
    offset: int
    length: int
    preview: str  # the first bytes of the matched data, non-printable bytes escaped

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Target:
    """What was scanned: a file on disk, or a payload (an HTTP body, a transferred file) with a name."""

    path: str
    size: int
    sha256: str = ""  # computed only when something matched (hashing every scanned file would halve throughput)
    kind: str = "file"  # file | payload
    name: str = ""  # the file's name; for a payload, the name it travelled under (URL path, FTP file name)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class YaraMatch:
    rule: str
    namespace: str  # the rule file, relative to its rule folder
    tags: list[str]
    meta: dict[str, Any]
    strings: list[StringHit]
    target: Target

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "namespace": self.namespace, "tags": list(self.tags), "meta": dict(self.meta),
                "strings": [s.to_dict() for s in self.strings], "file": self.target.to_dict()}


@dataclass
class ScanProblem:
    """A target that was not (fully) scanned, and why. Never an exception out of the scanner."""

    path: str
    kind: str  # too_large | unreadable | not_regular | timeout | error
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ScanResult:
    target: Target
    matches: list[YaraMatch] = field(default_factory=list)
    problem: ScanProblem | None = None
    seconds: float = 0.0

    @property
    def scanned(self) -> bool:
        return self.problem is None

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.target.to_dict(), "matches": [m.to_dict() for m in self.matches],
                "problem": self.problem.to_dict() if self.problem else None, "seconds": round(self.seconds, 6)}


@dataclass
class ScanSummary:
    """Totals of one scan job, for the CLI summary line and the API answer."""

    files_scanned: int = 0
    files_matched: int = 0
    matches: int = 0
    bytes_scanned: int = 0
    problems: dict[str, int] = field(default_factory=dict)  # kind -> count
    seconds: float = 0.0

    def add(self, result: ScanResult) -> None:
        if result.problem is not None:
            self.problems[result.problem.kind] = self.problems.get(result.problem.kind, 0) + 1
            return
        self.files_scanned += 1
        self.bytes_scanned += result.target.size
        if result.matches:
            self.files_matched += 1
            self.matches += len(result.matches)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
