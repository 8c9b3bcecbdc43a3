"""Scheduled detection: the same Sigma rules, converted by pySigma backends, run over a time window in the store.

Streaming detection (detections/engine.py) sees each event once as it arrives; scheduled detection asks the store
afterwards — to re-run new rules over history, and where the store holds events the stream never saw. Both apply the
same processing pipeline and the same log-source routing (as filters on ``event.dataset`` / ``process.name``), so on
the same events they find the same (rule, event) pairs; tests/test_scheduled_differential.py checks it on the real
OpenSearch node and on SQLite.

* Elasticsearch / OpenSearch: pySigma's OpenSearch Lucene backend → ``query_string`` inside a bool filter with the
  time range and the log-source filter. Event strings are indexed lowercased (soc/storage/mappings.py), which gives
  Sigma's case-insensitive matching.
* Windows rules query stored Winlogbeat documents on the cluster: the soc-winlog pipeline maps Windows field names
  to ``winlog.event_data.*`` (EventID, Channel... to ``winlog.*``); the scope is the channel and event ids streaming
  routes from.
* SQLite (the embedded store): pySigma's SQLite backend → SQL run over the window's events, flattened into a
  temporary table whose text columns compare case-insensitively (COLLATE NOCASE), one row per combination of list
  values (Sigma: a list field matches when any element does).
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from detections.sigma.compiler import KEYWORD_FIELDS
from detections.sigma.loader import rule_files
from detections.sigma.logsource import DATASET_LOGSOURCES, PROGRAM_SERVICES, applies
from detections.sigma.pipelines import KEYWORDS_FIELD, build_pipeline
from soc import ecs, linear_re
from soc.storage.base import EventQuery, Store
from soc.storage.mappings import WINLOG_VALUES

log = logging.getLogger(__name__)


# Where a Windows rule's keywords look in a stored Winlogbeat document: every value streaming searches
# (compiler.ALL_FIELDS over the view of soc/windows.py), the event data and the System fields, which the index
# copies into one field (soc/storage/mappings.py).
WINDOWS_KEYWORD_FIELDS = [WINLOG_VALUES]


@dataclass
class ScheduledRule:
    id: str
    title: str
    logsource: dict[str, str | None]
    query: str  # Lucene query string or SQL


@dataclass
class Conversion:
    rules: list[ScheduledRule] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (rule id or file, reason)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (rule id, why it runs in streaming only)

    @property
    def rule_ids(self) -> set[str]:
        return {r.id for r in self.rules}


def windows_scope(logsource: dict[str, str | None]) -> list[tuple[str, list[str] | None]]:
    """(channel, event ids or None for any) pairs a Windows rule's logsource applies to, as streaming routes them."""
    from soc.windows import EVENT_CATEGORIES, SYSMON_CATEGORIES, SYSMON_CHANNEL, channel_services

    scope: list[tuple[str, list[str] | None]] = []
    category, service = logsource.get("category"), logsource.get("service")
    if service and not category:
        scope += [(channel, None) for channel, services in channel_services().items() if service in services]
    if category:
        sysmon = [str(i) for i, cats in SYSMON_CATEGORIES.items() if category in cats]
        if sysmon and (not service or service == "sysmon"):
            scope.append((SYSMON_CHANNEL, sysmon))
        for (channel, event_id), cats in EVENT_CATEGORIES.items():
            if category in cats and (not service or service in channel_services().get(channel, ())):
                scope.append((channel, [str(event_id)]))
    return scope


def logsource_scope(logsource: dict[str, str | None]) -> tuple[list[str], list[str]]:
    """The datasets and syslog programs whose events a rule's logsource applies to (as streaming routes them)."""
    datasets = sorted(d for d, descriptors in DATASET_LOGSOURCES.items() if applies(logsource, tuple(descriptors)))
    programs = sorted(p for p, descriptor in PROGRAM_SERVICES.items() if applies(logsource, (descriptor,)))
    return datasets, programs


def convert_rules(dirs: Iterable[str | Path], backend_name: str, pipeline: str | None = None,
                  placeholders: dict[str, list[str]] | None = None) -> Conversion:
    pipeline = pipeline or ("soc-sql" if backend_name == "sqlite" else "soc")
    from sigma.collection import SigmaCollection
    from sigma.correlations import SigmaCorrelationRule
    from sigma.exceptions import SigmaError

    from detections.untrusted_yaml import load_all

    conversion = Conversion()
    for path in rule_files(dirs):
        try:  # one parse that refuses YAML aliases; pySigma gets the documents (detections/untrusted_yaml.py)
            collection = SigmaCollection.from_dicts(load_all(path.read_text(encoding="utf-8")), collect_errors=True,
                                                    resolve_references=False)
        except Exception as exc:  # a broken file costs only its own rules (rule health says why)
            conversion.failed.append((str(path), f"cannot parse: {exc}"))
            continue
        for rule in collection.rules:
            if isinstance(rule, SigmaCorrelationRule) or rule.errors:
                continue  # correlations run in the stream; broken rules are reported by rule health
            rule_pipeline = pipeline
            if rule.logsource.product == "windows":
                if backend_name == "sqlite":
                    # Windows event data holds multi-valued fields (unnamed <Data>); SQL over one row per value
                    # cannot say "no value matches", which Sigma's NOT needs. The cluster's Lucene can.
                    conversion.skipped.append((str(rule.id or rule.name), "Windows rules are scheduled on "
                                               "Elasticsearch/OpenSearch only (SQL rows cannot express NOT over "
                                               "multi-valued event data)"))
                    continue
                rule_pipeline = "soc-winlog"  # Windows field names -> winlog.* in stored Winlogbeat documents
            backend = _backend(backend_name, build_pipeline(rule_pipeline, placeholders))
            try:
                queries = backend.convert_rule(rule)
            except (SigmaError, NotImplementedError, ValueError, TypeError) as exc:
                conversion.failed.append((str(rule.id), str(exc)))
                continue
            ls = rule.logsource
            for query in queries:
                conversion.rules.append(ScheduledRule(id=str(rule.id or rule.name), title=rule.title,
                                                      logsource={"category": ls.category, "product": ls.product,
                                                                 "service": ls.service}, query=query))
    return conversion


def _backend(name: str, pipeline):
    if name == "lucene":
        from sigma.backends.opensearch import OpensearchLuceneBackend

        return OpensearchLuceneBackend(processing_pipeline=pipeline)
    if name == "sqlite":
        from sigma.backends.sqlite import sqliteBackend

        return sqliteBackend(processing_pipeline=pipeline)
    raise ValueError(f"unknown backend {name!r}")


# --- OpenSearch / Elasticsearch --------------------------------------------------------------------------------------
def run_on_search_store(store, conversion: Conversion, start: str, end: str, page_size: int = 1000,
                        batch: int = 10, timeout: float = 300.0) -> set[tuple[str, str]]:
    """(rule id, event id) for every event in [start, end) that a rule matches, asked of the cluster.

    Rules go to the cluster ``batch`` at a time in one _msearch; a rule with more hits than a page is paged on its
    own with search_after. Rules with long lists of leading wildcards cost the cluster seconds each (Lucene builds an
    automaton per pattern), hence the generous per-request ``timeout``."""
    matches: set[tuple[str, str]] = set()
    bodies = []
    for rule in conversion.rules:
        keyword_fields = [f"{name}.raw" for name in KEYWORD_FIELDS]
        if rule.logsource.get("product") == "windows":
            keyword_fields += WINDOWS_KEYWORD_FIELDS
            scope = []
            for channel, ids in windows_scope(rule.logsource):
                clause: list[dict] = [{"term": {"winlog.channel": channel}}]
                if ids:
                    clause.append({"terms": {"winlog.event_id": ids}})
                scope.append({"bool": {"filter": clause}})
        else:
            datasets, programs = logsource_scope(rule.logsource)
            scope = [{"terms": {"event.dataset": datasets}}] if datasets else []
            scope += [{"terms": {"process.name": programs}}] if programs else []
        if not scope:
            continue  # nothing the collectors produce can match: the stream would never route an event to it
        bodies.append((rule, {
            "query": {"bool": {"filter": [
                {"range": {"@timestamp": {"gte": start, "lt": end}}},
                {"bool": {"should": scope, "minimum_should_match": 1}},
                # Field-less Sigma keywords search the whole text of message and event.original (streaming's
                # KEYWORD_FIELDS), not every field of the index; a Windows rule's also every value of the event.
                {"query_string": {"query": rule.query, "analyze_wildcard": False, "lenient": True,
                                  "fields": keyword_fields}},
            ]}},
            "_source": ["event.id"],
            "sort": [{"event.id": "asc"}],
            "size": page_size,
        }))
    for i in range(0, len(bodies), batch):
        chunk = bodies[i:i + batch]
        lines = []
        for _, body in chunk:
            lines += [{"index": store.events_pattern, "ignore_unavailable": True, "allow_no_indices": True}, body]
        result = store._call("scheduled search", store.client.msearch, body=lines,
                             params={"request_timeout": timeout})
        for (rule, body), response in zip(chunk, result["responses"]):
            if "error" in response:
                raise RuntimeError(f"rule {rule.id} ({rule.title}): the cluster refused its query: "
                                   f"{json.dumps(response['error'])[:500]}")
            hits = response["hits"]["hits"]
            matches.update((rule.id, hit["_source"]["event"]["id"]) for hit in hits)
            while len(hits) == page_size:  # more than a page: continue this rule alone
                body = dict(body, search_after=hits[-1]["sort"])
                page = store._call("scheduled search", store.client.search, index=store.events_pattern, body=body,
                                   params={"ignore_unavailable": "true", "allow_no_indices": "true",
                                           "request_timeout": timeout})
                hits = page["hits"]["hits"]
                matches.update((rule.id, hit["_source"]["event"]["id"]) for hit in hits)
    return matches


# --- SQLite ----------------------------------------------------------------------------------------------------------
def _rows(flat: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per combination of list values, so "any element matches" holds in plain SQL."""
    scalars = {k: v for k, v in flat.items() if not isinstance(v, list)}
    lists = {k: v for k, v in flat.items() if isinstance(v, list) and v}
    if not lists:
        return [scalars]
    keys = list(lists)
    combos = itertools.islice(itertools.product(*(lists[k] for k in keys)), 256)
    return [{**scalars, **dict(zip(keys, combo))} for combo in combos]


def run_on_events(events: list[dict], conversion: Conversion) -> set[tuple[str, str]]:
    """Run SQLite-backend rules over events (a window read from any store) in a temporary in-memory table."""
    rows, columns = [], {"_event_id": None}
    canonical: dict[str, str] = {"_event_id": "_event_id"}  # SQLite column names ignore case: one column per name
    for doc in events:
        flat = ecs.flatten(doc)
        # Keywords (bound to this column by the soc-sql pipeline) match the texts streaming searches.
        flat[KEYWORDS_FIELD] = [t for t in (flat.get(name) for name in KEYWORD_FIELDS) if isinstance(t, str)]
        for row in _rows(flat):
            row = {canonical.setdefault(key.lower(), key): value for key, value in row.items()}
            row["_event_id"] = ecs.get(doc, "event.id")
            rows.append(row)
            columns.update(dict.fromkeys(row))
    conn = sqlite3.connect(":memory:")
    conn.create_function("REGEXP", 2, _regexp, deterministic=True)
    names = list(columns)
    # Column names are the events' field names, which a sender chooses: quoted as SQL identifiers (a '"' doubled),
    # so no name can end the identifier. Values are always bound parameters.
    columns_sql = ", ".join(f'{_identifier(n)} COLLATE NOCASE' for n in names)
    conn.execute(f"CREATE TABLE logs ({columns_sql})")  # nosec B608 - identifiers quoted by _identifier
    conn.executemany(f"INSERT INTO logs VALUES ({', '.join('?' * len(names))})",  # nosec B608 - only "?" marks
                     [[_sql_value(row.get(n)) for n in names] for row in rows])
    matches: set[tuple[str, str]] = set()
    for rule in conversion.rules:
        datasets, programs = logsource_scope(rule.logsource)
        if not datasets and not programs:
            continue
        scope = []
        if datasets:
            scope.append(f'"event.dataset" IN ({", ".join(_quote(d) for d in datasets)})')
        if programs:
            scope.append(f'"process.name" IN ({", ".join(_quote(p) for p in programs)})')
        where = rule.query.split(" WHERE ", 1)[1] if " WHERE " in rule.query else "1"
        # The WHERE clause is the rule's own, compiled by pySigma's SQLite backend from a rule the SOC installed;
        # event values never enter it (they are in the table), and program names are quoted literals.
        sql = f"SELECT DISTINCT _event_id FROM logs WHERE ({' OR '.join(scope)}) AND ({where})"  # nosec B608
        try:
            found = conn.execute(sql).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such column" in str(exc):
                continue  # a field no event in the window has: nothing can match
            raise
        matches.update((rule.id, row[0]) for row in found)
    conn.close()
    return matches


@functools.lru_cache(maxsize=4096)
def _compiled(pattern: str) -> linear_re.Pattern | None:
    try:
        return linear_re.compile_runtime(pattern)
    except linear_re.error as exc:
        log.warning("a scheduled rule's |re is not run (RE2 cannot run it with re's meaning): %s", exc)
        return None


def _regexp(pattern: str | None, value: Any) -> bool | None:
    """SQLite's REGEXP operator, which the SQLite backend emits for |re (SQLite ships no implementation). Event text
    is untrusted: the match runs on RE2, in linear time (soc/linear_re.py), as streaming's |re does. A pattern RE2
    cannot run (streaming refuses its rule) is NULL, unknown, in SQL: neither it nor its negation selects a row."""
    if pattern is None or value is None:
        return False
    regex = _compiled(pattern)
    return None if regex is None else regex.search(str(value)) is not None


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sql_value(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return value


def run_on_store(store: Store, conversion: Conversion, start: str, end: str) -> set[tuple[str, str]]:
    """SQLite-backend rules over the window [start, end) of any store, read page by page."""
    events: list[dict] = []
    after = None
    while True:
        page = store.search_events(EventQuery(start=start, end=end, limit=5000, after=after))
        events.extend(page)
        if len(page) < 5000:
            break
        after = (page[-1]["@timestamp"], page[-1]["event"]["id"])
    return run_on_events(events, conversion)
