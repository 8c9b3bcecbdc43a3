"""Rule health for the console, as data for its template (soc_api/routers/console_rules.py serves it).

Nothing here reads the store or decides who may see what. The router hands over what the API answers —
``GET /api/v1/rules`` (every Sigma rule, YARA file and matcher: loaded, failed or disabled, with the reason, the rule
pack in use) and ``GET /api/v1/rules/packs`` — and the suite's rule exceptions (``suite.ruleset.exceptions``, the
entries of ``detections.rule_exceptions_file``); these functions filter, order and page the rows, and attach to each
rule the exceptions that name it (by id or by name, as the detection stage finds them).
"""

from __future__ import annotations

import math
import time
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

STATES = ("loaded", "failed", "disabled")
ENGINES = ("sigma", "yara", "indicators")
STATE_ORDER = {"failed": 0, "loaded": 1, "disabled": 2}
PAGE_SIZE = 100
MAX_SEARCH = 200
MAX_PAGE = 10_000


def folded(text: Any) -> str:
    """Text compared without case or diacritics ("Đăng nhập" finds "dang nhap")."""
    value = unicodedata.normalize("NFKD", str(text or "")).replace("đ", "d").replace("Đ", "D")
    return "".join(ch for ch in value if not unicodedata.combining(ch)).casefold()


@dataclass
class RuleQuery:
    """The rule list's filters as the GET form carries them."""

    state: str = ""
    engine: str = ""
    q: str = ""
    with_exceptions: bool = False
    page: int = 1
    problems: list[str] = field(default_factory=list)

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> "RuleQuery":
        out = cls()
        state = (params.get("state") or "").strip()
        if state and state not in STATES:
            out.problems.append("rules.problem.state")
            state = ""
        engine = (params.get("engine") or "").strip()
        if engine and engine not in ENGINES:
            out.problems.append("rules.problem.engine")
            engine = ""
        q = (params.get("q") or "").strip()
        if len(q) > MAX_SEARCH:
            out.problems.append("rules.problem.search")
            q = ""
        try:
            page = int(params.get("page") or 1)
        except ValueError:
            page = 1
        out.state, out.engine, out.q = state, engine, q
        out.with_exceptions = params.get("exceptions") in ("1", "on", "true")
        out.page = min(max(page, 1), MAX_PAGE)
        return out

    def params(self, **changes) -> dict[str, str]:
        values = {"state": self.state, "engine": self.engine, "q": self.q,
                  "exceptions": "1" if self.with_exceptions else "", "page": str(self.page)}
        values.update({k: str(v) for k, v in changes.items()})
        if values.get("page") == "1":
            values["page"] = ""
        return {k: v for k, v in values.items() if v}


def rule_names(ruleset: Any) -> dict[str, str]:
    """Rule id -> its Sigma ``name`` (an exception may name a rule by either), for the rules loaded now."""
    out: dict[str, str] = {}
    for rule in list(getattr(ruleset, "rules", []) or []) + list(getattr(ruleset, "correlations", []) or []):
        meta = rule.meta
        if meta.name:
            out[meta.id] = meta.name
    return out


def exceptions_of(exceptions: Any, rule_id: str, name: str | None, now: float) -> list[dict]:
    """The exception entries for a rule, as ``RuleException.as_dict`` writes them (in force or expired)."""
    if exceptions is None or not hasattr(exceptions, "for_rule"):
        return []
    return [entry.as_dict(now) for entry in exceptions.for_rule(rule_id, name)]


def rule_rows(rules: Iterable[Mapping], exceptions: Any, names: Mapping[str, str], now: float | None = None
              ) -> list[dict]:
    """Every rule as the API gives it (``RuleHealthOut`` as a dict), with ``exceptions`` (its entries) added."""
    now = time.time() if now is None else now
    rows = []
    for rule in rules:
        row = dict(rule)
        row["exceptions"] = exceptions_of(exceptions, str(row.get("id") or ""), names.get(str(row.get("id"))), now) \
            if row.get("engine") == "sigma" else []
        row["exceptions_in_force"] = sum(1 for e in row["exceptions"] if not e.get("expired"))
        rows.append(row)
    return rows


def matches(row: Mapping, q: RuleQuery) -> bool:
    if q.state and row.get("status") != q.state:
        return False
    if q.engine and row.get("engine") != q.engine:
        return False
    if q.with_exceptions and not row.get("exceptions"):
        return False
    if q.q:
        wanted = folded(q.q)
        if wanted not in folded(row.get("title")) and wanted not in folded(row.get("id")):
            return False
    return True


def ordered(rows: list[dict]) -> list[dict]:
    """Failed rules first (they need someone), then loaded, then disabled; by title within each."""
    return sorted(rows, key=lambda r: (STATE_ORDER.get(str(r.get("status")), 3), folded(r.get("title")),
                                       str(r.get("id"))))


@dataclass
class RulePage:
    rows: list[dict]
    total: int  # rows matching the filters
    page: int
    pages: int


def page_of(rows: list[dict], q: RuleQuery, size: int = PAGE_SIZE) -> RulePage:
    found = ordered([r for r in rows if matches(r, q)])
    pages = max(1, math.ceil(len(found) / size))
    page = min(q.page, pages)
    q.page = page
    return RulePage(found[(page - 1) * size:page * size], len(found), page, pages)


def counts(rows: Iterable[Mapping]) -> dict[str, int]:
    out = {state: 0 for state in STATES}
    out["exceptions"] = 0
    for row in rows:
        if row.get("status") in out:
            out[str(row["status"])] += 1
        if row.get("exceptions"):
            out["exceptions"] += 1
    return out


def unknown_exceptions(exceptions: Any, rows: Iterable[Mapping], names: Mapping[str, str],
                       now: float | None = None) -> list[dict]:
    """Exception entries that name no rule the suite knows (a typo, or a rule that is gone): they do nothing."""
    if exceptions is None or not hasattr(exceptions, "unknown_rules"):
        return []
    known = [str(r.get("id")) for r in rows] + list(names.values())
    now = time.time() if now is None else now
    return [entry.as_dict(now) for entry in exceptions.unknown_rules(known)]


def rollback_target(packs: Mapping | None) -> tuple[bool, str | None]:
    """Whether a rollback is possible, and the version it would go back to (None: no pack, own rules only)."""
    previous = list((packs or {}).get("previous") or [])
    if not previous:
        return False, None
    return True, previous[-1]
