"""The ATT&CK matrix of the console: techniques covered by the loaded rules versus techniques seen in alerts over a
period, as a tactic × technique grid (soc_api/routers/console_rules.py serves it, templates/attack.html draws it).

*Covered* comes from the rules the suite runs now (``suite.ruleset``: its Sigma rules and correlations, the same set
GET /api/v1/posture's ``attack_covered`` is made from): each rule's ``attack.tNNNN`` tags are its techniques and its
other ``attack.*`` tags its tactics (``RuleMeta.techniques``/``.tactics``). A technique is put under each tactic its
rule names — a rule's tags do not say which of a technique's tactics they mean, so a rule tagged with two tactics
covers its techniques under both. A rule naming techniques but no tactic puts them in the "no tactic" column.

*Seen* comes from the alerts last seen in the period, read through the caller's ``Data`` (so tenancy is the API's),
newest first and at most :data:`ALERT_CAP` of them: when the period holds more, the page says the counts are a
sample. An alert counts once in each (tactic, technique) cell of its own ``threat`` (the tags of the rule that raised
it, copied into the alert when it was raised), and once in its technique's total.

The suite holds no ATT&CK catalogue: techniques are shown by id (with a link to attack.mitre.org) and the titles of
the rules that cover them; tactics by the names the console already has (``alerts.tactic.*``).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Mapping

from soc import ecs
from soc_api.console.alerts import TACTICS, tactic_slug, tactic_url, technique_url

ALERT_CAP = 20_000  # alerts read at most for one matrix (newest first); more in the period: the page says sampled
RANGES = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}
DEFAULT_RANGE = "7d"
NO_TACTIC = ""  # the column of techniques named without a tactic (or with a tactic the matrix does not know)
TECHNIQUE = re.compile(r"^T\d{4}(\.\d{3})?$")
TITLES_SHOWN = 3  # rule titles listed beside a technique
TACTIC_ORDER = {slug: n for n, (slug, _) in enumerate(TACTICS)}

# A cell's state, and how it is drawn: a colour, a pattern and a word, so that nothing rests on colour alone.
STATES = ("both", "covered", "gap")
STYLE = {
    "both": "background:#cdebd6;border:2px solid #14532d",
    "covered": "background-color:#e3edf8;background-image:repeating-linear-gradient(90deg,#c4d8ee 0 2px,"
               "transparent 2px 8px);border:1px solid #0b5394",
    "gap": "background-color:#fdecea;background-image:repeating-linear-gradient(45deg,#f6c1bb 0 4px,"
           "transparent 4px 10px);border:2px dashed #8f1116",
}
MARK = {"both": "✓●", "covered": "✓", "gap": "!●"}


def column_of(tactic: Any) -> str:
    slug = tactic_slug(tactic)
    return slug if slug in TACTIC_ORDER else NO_TACTIC


def techniques_in(values: Iterable[Any]) -> list[str]:
    out = []
    for value in values or ():
        technique = str(value).strip().upper()
        if TECHNIQUE.match(technique) and technique not in out:
            out.append(technique)
    return out


def columns_in(values: Iterable[Any]) -> list[str]:
    out = []
    for value in values or ():
        column = column_of(value)
        if column not in out:
            out.append(column)
    return out or [NO_TACTIC]


# --- what the rules cover ------------------------------------------------------------------------------------------
@dataclass
class Coverage:
    cells: dict[tuple[str, str], set[str]] = field(default_factory=lambda: defaultdict(set))  # -> rule ids
    techniques: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))  # technique -> rule ids
    titles: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))  # technique -> rule titles
    rules: int = 0  # loaded rules naming at least one technique


def coverage(ruleset: Any) -> Coverage:
    """The (tactic, technique) pairs the loaded rules and correlations cover, with the rules of each."""
    out = Coverage()
    for rule in list(getattr(ruleset, "rules", []) or []) + list(getattr(ruleset, "correlations", []) or []):
        meta = rule.meta
        techniques = techniques_in(meta.techniques)
        if not techniques:
            continue
        out.rules += 1
        for technique in techniques:
            out.techniques[technique].add(meta.id)
            if meta.title not in out.titles[technique]:
                out.titles[technique].append(meta.title)
            for column in columns_in(meta.tactics):
                out.cells[(column, technique)].add(meta.id)
    return out


# --- what the alerts show ------------------------------------------------------------------------------------------
@dataclass
class Seen:
    cells: Counter = field(default_factory=Counter)  # (tactic, technique) -> alerts
    techniques: Counter = field(default_factory=Counter)  # technique -> alerts
    tactics: Counter = field(default_factory=Counter)  # tactic -> alerts naming it (with a technique or not)
    alerts: int = 0  # alerts read
    with_technique: int = 0  # of which naming a technique
    sampled: bool = False  # the period holds more alerts than were read
    oldest: str | None = None  # last_seen of the oldest alert read (when sampled: the counts start there)


def seen_in(alerts: Iterable[Mapping], cap: int = ALERT_CAP) -> Seen:
    """Counts over ``alerts`` (newest first), reading at most ``cap`` and one more to know whether there are more."""
    out = Seen()
    for alert in alerts:
        if out.alerts >= cap:
            out.sampled = True
            break
        out.alerts += 1
        out.oldest = alert.get("last_seen") or out.oldest
        threat = alert.get("threat") or {}
        tactics = columns_in(threat.get("tactic") or [])
        for column in tactics:
            if column:
                out.tactics[column] += 1
        techniques = techniques_in(threat.get("technique") or [])
        if not techniques:
            continue
        out.with_technique += 1
        for technique in techniques:
            out.techniques[technique] += 1
            for column in tactics:
                out.cells[(column, technique)] += 1
    return out


def period_start(range_key: str, now: datetime | None = None) -> str:
    now = now or datetime.now(timezone.utc)
    return ecs.utc_iso(now - RANGES[range_key])


# --- the grid ------------------------------------------------------------------------------------------------------
def cell_state(rules: int, alerts: int) -> str | None:
    if rules and alerts:
        return "both"
    if rules:
        return "covered"
    if alerts:
        return "gap"
    return None


def sort_key(technique: str) -> tuple[int, int]:
    main, _, sub = technique[1:].partition(".")
    return int(main), int(sub or 0)


def matrix(cov: Coverage, seen: Seen) -> dict:
    """The grid: ``columns`` (every tactic in the matrix's order, then "no tactic" when used), ``rows`` (every
    technique covered or seen, by id), each with its cells, and the totals."""
    techniques = sorted(set(cov.techniques) | set(seen.techniques), key=sort_key)
    used = {column for column, _ in cov.cells} | {column for column, _ in seen.cells}
    columns = [{"slug": slug, "id": tactic_id, "url": tactic_url(slug), "alerts": seen.tactics.get(slug, 0),
                "covered": sum(1 for (c, _t) in cov.cells if c == slug)} for slug, tactic_id in TACTICS]
    if NO_TACTIC in used:
        columns.append({"slug": NO_TACTIC, "id": None, "url": None, "alerts": None,
                        "covered": sum(1 for (c, _t) in cov.cells if c == NO_TACTIC)})
    rows = []
    for technique in techniques:
        rules_total = len(cov.techniques.get(technique, ()))
        alerts_total = seen.techniques.get(technique, 0)
        cells = []
        for column in columns:
            rules = len(cov.cells.get((column["slug"], technique), ()))
            alerts = seen.cells.get((column["slug"], technique), 0)
            state = cell_state(rules, alerts)
            cells.append({"tactic": column["slug"], "rules": rules, "alerts": alerts, "state": state,
                          "style": STYLE.get(state or "", ""), "mark": MARK.get(state or "", "")})
        rows.append({"technique": technique, "url": technique_url(technique), "rules": rules_total,
                     "alerts": alerts_total, "state": cell_state(rules_total, alerts_total),
                     "titles": cov.titles.get(technique, [])[:TITLES_SHOWN],
                     "more_titles": max(0, len(cov.titles.get(technique, [])) - TITLES_SHOWN),
                     "cells": cells})
    covered = set(cov.techniques)
    observed = set(seen.techniques)
    return {
        "columns": columns,
        "rows": rows,
        "covered": len(covered),
        "seen": len(observed),
        "seen_covered": len(observed & covered),
        "gaps": sorted(observed - covered, key=sort_key),
        "not_seen": len(covered - observed),
        "rules": cov.rules,
    }


STYLE_LEGEND = [(state, STYLE[state], MARK[state]) for state in STATES]
