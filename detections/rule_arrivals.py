"""When each detection rule arrived in this suite, and which new rules cover an agency's log sources.

A rule set keeps no history, so the suite writes one small document per rule the first time it runs it (collection
``rule_arrivals``: the rule's id, title, level, log source and the time it was first loaded) — at start and whenever a
rule pack is installed or rolled back (the suite subscribes this to its active rules). A rule seen again keeps its
first time. The threat-update digest (soc_api/digest.py) and the monthly report (reports/digest_section.py) ask
:func:`new_rules_covering`: the rules that arrived in a period whose Sigma log source applies to what an agency's
events look like (their dataset and program, counted by the store's aggregations over the same period).
"""

from __future__ import annotations

import logging
from typing import Any

from detections.sigma.logsource import applies, event_descriptors
from soc import ecs
from soc.storage.aggregations import AggregateQuery
from soc.storage.base import DocumentQuery, Store, StoreError

log = logging.getLogger(__name__)

COLLECTION = "rule_arrivals"
PAGE = 5000
LISTED = 50  # rules listed in a digest; the count says how many in all


def _known(store: Store) -> set[str]:
    known: set[str] = set()
    after = None
    while True:
        page = store.find_documents(COLLECTION, DocumentQuery(limit=PAGE, after=after))
        known.update(str(d["id"]) for d in page)
        if len(page) < PAGE:
            return known
        after = (page[-1]["id"], page[-1]["id"])


def record(store: Store, ruleset: Any, now: str | None = None) -> int:
    """Write the arrival of every rule of ``ruleset`` not recorded yet; returns how many were new. A store that
    cannot take it is logged and skipped: detection never waits for this record."""
    now = now or ecs.now_iso()
    try:
        known = _known(store)
        rules = list(getattr(ruleset, "rules", []))
        sources: dict[str, dict] = {}
        for rule in rules:
            logsource = {k: v for k, v in (rule.logsource or {}).items() if v}
            sources[rule.meta.id] = logsource
            if rule.meta.name:
                sources[rule.meta.name] = logsource
        new = []
        for rule in rules + list(getattr(ruleset, "correlations", [])):
            meta = rule.meta
            if meta.id in known:
                continue
            known.add(meta.id)
            if hasattr(rule, "logsource"):
                logsource = sources[meta.id]
            else:  # a correlation reads the events of the rules it names: it covers what the first of them covers
                logsource = next((sources[r] for r in getattr(rule, "rules", ()) if sources.get(r)), {})
            new.append({"id": meta.id, "title": meta.title, "level": meta.level, "logsource": logsource,
                        "arrived": now})
        for i in range(0, len(new), PAGE):
            store.put_documents(COLLECTION, new[i:i + PAGE])
        return len(new)
    except StoreError as exc:
        log.warning("rule arrivals not recorded: %s", exc)
        return 0


def new_rules_covering(store: Store, agency: str | None, start: str, end: str) -> dict[str, Any]:
    """Rules that arrived in [start, end) and apply to the kinds of events the agency (every agency: None) sent in
    that period: {"total": n, "rules": [the first LISTED, newest first]}."""
    arrived = store.find_documents(COLLECTION, DocumentQuery(ranges={"arrived": (start, end)}, sort="arrived",
                                                             descending=True, limit=10_000))
    if not arrived:
        return {"total": 0, "rules": []}
    kinds = store.aggregate(AggregateQuery(start=start, end=end, agency=agency,
                                           group_by=("event.dataset", "process.name"), top=500))
    descriptors = tuple(d for row in kinds.rows
                        for d in event_descriptors({"event.dataset": row.key[0] or "",
                                                    "process.name": row.key[1] if isinstance(row.key[1], str)
                                                    else ""}))
    # A rule with no log source (a correlation naming no loaded rule) cannot be said to cover anything.
    covering = [doc for doc in arrived if descriptors and doc.get("logsource")
                and applies(doc["logsource"], descriptors)]
    return {"total": len(covering), "rules": [{k: doc.get(k) for k in ("id", "title", "level", "logsource",
                                                                         "arrived")} for doc in covering[:LISTED]]}
