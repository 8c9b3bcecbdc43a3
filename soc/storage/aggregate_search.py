"""Aggregations (soc/storage/aggregations.py) as Elasticsearch/OpenSearch aggregations: one request for a top-N of one
field (a ``terms`` aggregation, with a ``missing`` count for the documents without the field), else a ``composite``
aggregation paged by its ``after_key`` (every group, each grouping field with a missing bucket, the time bucket a
``date_histogram`` source). Metrics are sub-aggregations: ``min``/``max``, ``cardinality``, and ``percentiles`` of a
painless duration under a filter that both dates exist.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any, Callable

from soc import ecs
from soc.storage.aggregations import (
    MAX_GROUPS,
    AggregateQuery,
    AggregateResult,
    AggregateRow,
    keep_top,
    time_field_of,
    validate,
)
from soc.storage.base import COLLECTION_NAME, StoreError, agency_values

PAGE = 10_000  # composite buckets per request (under the engines' default search.max_buckets of 65,535)
DURATION = ("(doc[params.until].value.toInstant().toEpochMilli() - "
            "doc[params.since].value.toInstant().toEpochMilli()) / 1000.0")


def index_for(prefix: str, collection: str, events_pattern: str, alerts_index: str) -> str:
    if collection == "events":
        return events_pattern
    if collection == "alerts":
        return alerts_index
    if not re.match(COLLECTION_NAME, collection):
        raise StoreError(f"invalid collection name {collection!r}")
    return f"{prefix}-doc-{collection}"


def time_range(field: str, start: str | None, end: str | None) -> list[dict]:
    """The range clause for [start, end) on a date field (none when neither is given)."""
    bounds = {**({"gte": start} if start else {}), **({"lt": end} if end else {})}
    return [{"range": {field: bounds}}] if bounds else []


def filters(query: AggregateQuery) -> dict:
    clauses: list[dict] = time_range(time_field_of(query), query.start, query.end)
    agencies = agency_values(query.agency)
    if agencies is not None:
        clauses.append({"terms": {"organization.id": agencies}})
    for name, wanted in query.terms.items():
        if isinstance(wanted, (list, tuple, set, frozenset)):
            clauses.append({"terms": {name: list(wanted)}})
        else:
            clauses.append({"term": {name: wanted}})
    must = [{"match_phrase": {"event.original": query.text}}] if query.text else []
    return {"bool": {"filter": clauses, "must": must}}


def _metric_aggs(query: AggregateQuery) -> dict:
    aggs: dict[str, Any] = {}
    for metric in query.metrics:
        if metric.kind in ("min", "max"):
            aggs[metric.name] = {metric.kind: {"field": metric.field}}
        elif metric.kind == "distinct":
            aggs[metric.name] = {"cardinality": {"field": metric.field, "precision_threshold": 40_000}}
        else:
            script = {"source": DURATION, "lang": "painless", "params": {"since": metric.field, "until": metric.until}}
            aggs[metric.name] = {
                "filter": {"bool": {"filter": [{"exists": {"field": metric.field}},
                                               {"exists": {"field": metric.until}}]}},
                "aggs": {"p": {"percentiles": {"script": script, "percents": list(metric.percents)}},
                         "m": {"avg": {"script": script}}},
            }
    return aggs


def _metric_values(query: AggregateQuery, bucket: dict) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for metric in query.metrics:
        answer = bucket.get(metric.name) or {}
        if metric.kind in ("min", "max"):
            value = answer.get("value")
            if value is not None and answer.get("value_as_string") is not None and not _numeric(answer):
                value = ecs.utc_iso(datetime.fromtimestamp(value / 1000.0, timezone.utc))
            elif isinstance(value, float) and value.is_integer():
                value = int(value)
            out[metric.name] = value
        elif metric.kind == "distinct":
            out[metric.name] = int(answer.get("value") or 0)
        else:
            found = ((answer.get("p") or {}).get("values")) or {}
            n = int(answer.get("doc_count") or 0)
            out[metric.name] = {"n": n, "mean": (answer.get("m") or {}).get("value") if n else None,
                                "percentiles": {p: _percent_value(found, p) if n else None for p in metric.percents}}
    return out


def _numeric(answer: dict) -> bool:
    text = str(answer.get("value_as_string"))
    return not re.match(r"^\d{4}-\d\d-\d\d", text)


def _percent_value(found: dict, percent: float) -> float | None:
    for key, value in found.items():
        if abs(float(key) - percent) < 1e-9:
            return value
    return None


def _key(query: AggregateQuery, name: str, value: Any) -> Any:
    if name == "@bucket" and value is not None:
        return ecs.utc_iso(datetime.fromtimestamp(value / 1000.0, timezone.utc))
    return value


def aggregate(search: Callable[[str, dict], dict], index: str, query: AggregateQuery) -> AggregateResult:
    """``search(index, body)`` sends one search request and returns the engine's answer."""
    validate(query)
    base = {"size": 0, "track_total_hits": True, "query": filters(query)}
    metrics = _metric_aggs(query)
    if not query.group_by and not query.interval_seconds:
        answer = search(index, {**base, "aggs": metrics} if metrics else base)
        total = _total(answer)
        values = _metric_values(query, answer.get("aggregations") or {})
        return AggregateResult(total=total, rows=[AggregateRow((), total, values)] if total else [])
    if len(query.group_by) == 1 and not query.interval_seconds and query.top:
        return _top(search, index, query, base, metrics)
    return _composite(search, index, query, base, metrics)


def _total(answer: dict) -> int:
    total = (answer.get("hits") or {}).get("total")
    return int(total.get("value", 0) if isinstance(total, dict) else total or 0)


def _top(search, index: str, query: AggregateQuery, base: dict, metrics: dict) -> AggregateResult:
    name = query.group_by[0]
    size = query.top + 1  # one more than wanted: the missing group may push one out
    terms = {"terms": {"field": name, "size": size, "shard_size": max(size * 10, 1000),
                       "order": [{"_count": "desc"}, {"_key": "asc"}]}}
    if metrics:
        terms["aggs"] = metrics
    missing = {"missing": {"field": name}}
    if metrics:
        missing["aggs"] = metrics
    answer = search(index, {**base, "aggs": {"g": terms, "none": missing}})
    aggs = answer.get("aggregations") or {}
    rows = [AggregateRow((b["key"],), b["doc_count"], _metric_values(query, b)) for b in aggs["g"]["buckets"]]
    absent = aggs.get("none") or {}
    if absent.get("doc_count"):
        rows.append(AggregateRow((None,), absent["doc_count"], _metric_values(query, absent)))
    kept, cut = keep_top(rows, query.top)
    return AggregateResult(total=_total(answer), rows=kept, other=cut + int(aggs["g"].get("sum_other_doc_count", 0)))


def _composite(search, index: str, query: AggregateQuery, base: dict, metrics: dict) -> AggregateResult:
    sources: list[dict] = [{f"g{i}": {"terms": {"field": name, "missing_bucket": True}}}
                           for i, name in enumerate(query.group_by)]
    names = list(query.group_by)
    if query.interval_seconds:
        iv = int(query.interval_seconds)
        histogram: dict[str, Any] = {"field": time_field_of(query), "fixed_interval": f"{iv}s"}
        off = int(query.offset_seconds) % iv
        if off:
            histogram["offset"] = f"+{off}s"
        sources.append({"t": {"date_histogram": histogram}})
        names.append("@bucket")
    labels = [next(iter(s)) for s in sources]
    rows: list[AggregateRow] = []
    after = None
    total = 0
    while True:
        composite: dict[str, Any] = {"size": PAGE, "sources": sources}
        if after is not None:
            composite["after"] = after
        agg: dict[str, Any] = {"composite": composite}
        if metrics:
            agg["aggs"] = metrics
        answer = search(index, {**base, "aggs": {"c": agg}})
        total = _total(answer)
        found = (answer.get("aggregations") or {}).get("c") or {}
        for bucket in found.get("buckets", ()):
            key = tuple(_key(query, name, bucket["key"][label]) for name, label in zip(names, labels))
            rows.append(AggregateRow(key, bucket["doc_count"], _metric_values(query, bucket)))
        if len(rows) > MAX_GROUPS:
            raise StoreError(f"more than {MAX_GROUPS:,} groups: ask for fewer fields, a coarser interval or a top-N")
        after = found.get("after_key")
        if not found.get("buckets") or after is None or len(found["buckets"]) < PAGE:
            break
    kept, other = keep_top(rows, query.top)
    return AggregateResult(total=total, rows=kept, other=other)
