"""Aggregations (soc/storage/aggregations.py) in SQL on the embedded SQLite store.

Field names reach SQL only as bound JSON paths (``json_extract(doc, ?)``) or as one of the fixed column names below;
values are bound parameters. A grouping field is joined through ``json_each`` so that a list counts once per value
and a missing field is one NULL key, as on the engines.
"""

from __future__ import annotations

import re
import sqlite3
from collections import defaultdict
from datetime import datetime, timezone
from typing import Any

from soc import ecs
from soc.storage.aggregations import (
    MAX_GROUPS,
    AggregateQuery,
    AggregateResult,
    AggregateRow,
    keep_top,
    lowercased,
    percentile,
    time_field_of,
    validate,
)
from soc.storage.base import COLLECTION_NAME, StoreError, agency_values

# Columns kept beside each table's JSON: what the store's own indexes serve.
COLUMNS = {
    "events": {"@timestamp": "ts", "organization.id": "agency", "event.id": "id"},
    "alerts": {"id": "id", "fingerprint": "fingerprint", "status": "status", "severity": "severity",
               "organization.id": "agency", "rule.id": "rule_id", "first_seen": "first_seen",
               "last_seen": "last_seen"},
}


def _path(name: str) -> str:
    return "$." + ".".join(f'"{p}"' for p in name.split("."))


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def install_functions(conn: sqlite3.Connection) -> None:
    """soc_lower: Unicode lowercase (SQLite's own lower() folds ASCII only; the engines' normaliser folds all)."""
    conn.create_function("soc_lower", 1, _lower, deterministic=True)


class _Sql:
    def __init__(self, query: AggregateQuery):
        self.query = query
        collection = query.collection
        if collection in COLUMNS:
            self.table, self.columns = collection, COLUMNS[collection]
            self.where, self.args = [], []
        else:
            if not re.match(COLLECTION_NAME, collection):
                raise StoreError(f"invalid collection name {collection!r}")
            self.table, self.columns = "documents", {"id": "id"}
            self.where, self.args = ["t.collection = ?"], [collection]

    def value(self, name: str) -> tuple[str, list]:
        column = self.columns.get(name)
        if column:
            return f"t.{column}", []
        return "json_extract(t.doc, ?)", [_path(name)]

    def filters(self) -> None:
        q = self.query
        time_sql, time_args = self.value(time_field_of(q))
        if q.start:
            self.where.append(f"{time_sql} >= ?")
            self.args += time_args + [q.start]
        if q.end:
            self.where.append(f"{time_sql} < ?")
            self.args += time_args + [q.end]
        agencies = agency_values(q.agency)
        if agencies is not None:
            sql, args = self.value("organization.id")
            self.where.append(f"{sql} IN ({','.join('?' * len(agencies))})")
            self.args += args + agencies
        for name, wanted in q.terms.items():
            values = list(wanted) if isinstance(wanted, (list, tuple, set, frozenset)) else [wanted]
            marks = ",".join("?" * len(values))
            column = self.columns.get(name)
            if column:
                self.where.append(f"t.{column} IN ({marks})")
                self.args += values
            else:  # a field holding a list matches when any element is wanted
                clause = (f"(json_extract(t.doc, ?) IN ({marks}) OR EXISTS "  # nosec B608 - fixed SQL, "?" marks
                          f"(SELECT 1 FROM json_each(t.doc, ?) WHERE json_each.value IN ({marks})))")
                self.where.append(clause)
                self.args += [_path(name), *values, _path(name), *values]
        if q.text:
            self.where.append("instr(lower(json_extract(t.doc, '$.event.original')), lower(?)) > 0")
            self.args.append(q.text)

    def where_sql(self) -> str:
        return (" WHERE " + " AND ".join(self.where)) if self.where else ""


def aggregate(conn: sqlite3.Connection, query: AggregateQuery) -> AggregateResult:
    validate(query)
    sql = _Sql(query)
    sql.filters()
    where = sql.where_sql()
    # Every fragment below is a fixed text with "?" marks, a column name from COLUMNS, or a number we computed.
    counting = f"SELECT count(*) FROM {sql.table} AS t{where}"  # nosec B608 - fixed SQL, "?" marks
    total = conn.execute(counting, sql.args).fetchone()[0]
    joins, join_args, keys, key_args = [], [], [], []
    for i, name in enumerate(query.group_by):
        column = sql.columns.get(name)
        if column:
            expr = f"t.{column}"
        else:
            joins.append(f"LEFT JOIN json_each(t.doc, ?) AS g{i}")
            join_args.append(_path(name))
            expr = f"g{i}.value"
        keys.append(f"soc_lower({expr})" if lowercased(query, name) and name not in sql.columns else expr)
    if query.interval_seconds:
        iv, off = int(query.interval_seconds), int(query.offset_seconds) % int(query.interval_seconds)
        time_sql, time_args = sql.value(time_field_of(query))
        keys.append(f"(((CAST(strftime('%s', {time_sql}) AS INTEGER) - {off}) / {iv}) * {iv} + {off})")
        key_args += time_args
    metric_sql, metric_args, later = [], [], []
    for metric in query.metrics:
        expr, args = sql.value(metric.field)
        if metric.kind == "distinct" and lowercased(query, metric.field) and metric.field not in sql.columns:
            expr = f"soc_lower({expr})"
        if metric.kind in ("min", "max"):
            metric_sql.append(f"{metric.kind}({expr})")
            metric_args += args
        elif metric.kind == "distinct":
            metric_sql.append(f"count(DISTINCT {expr})")
            metric_args += args
        else:
            later.append(metric)
    select = keys + ["count(*)"] + metric_sql
    group = f" GROUP BY {', '.join(str(i + 1) for i in range(len(keys)))}" if keys else ""
    body = f"{sql.table} AS t {' '.join(joins)}{where}"
    statement = (f"SELECT {', '.join(select)} FROM {body}{group}"  # nosec B608 - fixed SQL, "?" marks
                 f" LIMIT {MAX_GROUPS + 1}")
    args = key_args + metric_args + join_args + sql.args
    found = conn.execute(statement, args).fetchall()
    if len(found) > MAX_GROUPS:
        raise StoreError(f"more than {MAX_GROUPS:,} groups: ask for fewer fields, a coarser interval or a top-N")
    rows = []
    n = len(keys)
    for record in found:
        key = tuple(_bucket_key(query, i, record[i]) for i in range(n))
        count = record[n]
        if not keys and count == 0:
            continue  # no documents: no row (as the engines answer)
        values = {m.name: _metric_value(m.kind, record[n + 1 + j])
                  for j, m in enumerate(x for x in query.metrics if x.kind != "percentiles")}
        rows.append(AggregateRow(key, count, values))
    for metric in later:
        _percentiles(conn, sql, query, joins, join_args, keys, key_args, metric, rows)
    rows, other = keep_top(rows, query.top)
    return AggregateResult(total=total, rows=rows, other=other)


def _bucket_key(query: AggregateQuery, i: int, value: Any) -> Any:
    if query.interval_seconds and i == len(query.group_by):
        return ecs.utc_iso(datetime.fromtimestamp(value, timezone.utc)) if value is not None else None
    return value


def _metric_value(kind: str, value: Any) -> Any:
    if kind in ("min", "max") and isinstance(value, str):
        try:
            return ecs.utc_iso(ecs.parse_time(value))
        except (ValueError, TypeError):
            return value
    return value


def _percentiles(conn, sql: _Sql, query: AggregateQuery, joins, join_args, keys, key_args, metric, rows) -> None:
    """The seconds from metric.field to metric.until of each group's documents having both, as percentiles."""
    start_sql, start_args = sql.value(metric.field)
    end_sql, end_args = sql.value(metric.until)
    duration = f"(julianday({end_sql}) - julianday({start_sql})) * 86400.0"
    where = sql.where_sql()
    both = f"{start_sql} IS NOT NULL AND {end_sql} IS NOT NULL"
    where = f"{where} AND {both}" if where else f" WHERE {both}"
    body = f"{sql.table} AS t {' '.join(joins)}{where}"
    statement = (f"SELECT {', '.join(keys + [duration])} FROM {body}"  # nosec B608 - fixed SQL, "?" marks
                 f" LIMIT 5000001")
    args = key_args + end_args + start_args + join_args + sql.args + start_args + end_args
    by_key: dict[tuple, list[float]] = defaultdict(list)
    for record in conn.execute(statement, args):
        key = tuple(_bucket_key(query, i, record[i]) for i in range(len(keys)))
        if record[-1] is not None:
            by_key[key].append(float(record[-1]))
    for row in rows:
        values = sorted(by_key.get(row.key, ()))
        row.values[metric.name] = {"n": len(values), "mean": sum(values) / len(values) if values else None,
                                   "percentiles": {p: percentile(values, p) for p in metric.percents}}
