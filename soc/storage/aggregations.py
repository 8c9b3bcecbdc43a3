"""One aggregation interface for every store: counts by field, by time bucket, top-N, distinct counts, minimum and
maximum, and percentiles of durations — computed where the data is (OpenSearch aggregations, SQL on SQLite) instead of
reading documents page by page into Python.

An :class:`AggregateQuery` says which documents (a collection and filters, as the searches take them), how to group
them (by fields, and optionally by a time bucket as the last key) and what to compute per group. The answer is rows of
``(key, count, values)`` plus the number of matching documents. Reports, posture and the console's charts ask this.

Semantics both backends keep (tests/test_store_contract.py holds them to it):

- A grouping field holding a list counts the document once for each value (as a terms aggregation does). A document
  without the field falls in the group whose key is ``None``.
- Events' strings are indexed lowercased on the search engines (soc/storage/mappings.py, so that Sigma's
  case-insensitive matching is exact), so grouping keys of event string fields are lowercase on every backend
  (:data:`EVENT_EXACT_FIELDS` are kept as written); alerts' and documents' keys are kept as written.
- Time buckets are aligned to ``offset_seconds`` past the epoch (0: UTC midnight for day buckets); the key is the
  bucket's start, in ISO 8601 UTC. Only buckets with documents are returned.
- ``top`` keeps the groups with the most documents (ties: the smaller key first); ``other`` is the number of
  documents in the groups left out.
- Minimum and maximum of a date field come back in ISO 8601 UTC with milliseconds, of a number as a number.
- A distinct count is exact on SQLite and on the engines up to 40,000 distinct values (above that the engines'
  HyperLogLog estimate, within a few per cent).
- A duration metric (``percentiles``: seconds from one date field to another, of the documents having both) gives
  ``{"n": documents, "mean": seconds, "percentiles": {percent: seconds}}``: the mean exact everywhere, the
  percentiles exact on SQLite (linear interpolation) and the engines' t-digest estimate (exact for small groups,
  close for large ones); with no such document, ``n`` is 0 and the figures None.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from soc.storage.base import StoreError

FIELD_NAME = re.compile(r"@?[A-Za-z_][A-Za-z0-9_@]{0,63}(\.[A-Za-z0-9_@]{1,64}){0,12}")  # fullmatch
MAX_GROUP_FIELDS = 4
MAX_GROUPS = 200_000  # a query that would return more groups is refused: ask for a coarser grouping or a top-N
EVENT_EXACT_FIELDS = frozenset({"event.id", "organization.id"})

MetricKind = Literal["min", "max", "distinct", "percentiles"]


@dataclass(frozen=True)
class Metric:
    """One value computed for each group: ``min``/``max``/``distinct`` of ``field``, or ``percentiles`` of the
    seconds from ``field`` to ``until`` (both dates)."""

    name: str
    kind: MetricKind
    field: str
    until: str | None = None
    percents: tuple[float, ...] = (50.0, 90.0, 95.0)


@dataclass(frozen=True)
class AggregateQuery:
    collection: str = "events"  # "events", "alerts", or a document collection
    start: str | None = None  # on time_field, inclusive (ISO 8601)
    end: str | None = None  # on time_field, exclusive
    time_field: str | None = None  # default: @timestamp for events, last_seen for alerts (required for documents)
    agency: str | tuple[str, ...] | None = None  # organization.id or a subtree's ids; None: every agency (callers enforce tenancy)
    terms: dict[str, Any] = field(default_factory=dict)  # exact matches; a list value means any of them
    text: str | None = None  # events only: contained in event.original
    group_by: tuple[str, ...] = ()
    interval_seconds: int | None = None  # a time bucket of time_field as the last key
    offset_seconds: int = 0
    metrics: tuple[Metric, ...] = ()
    top: int | None = None


@dataclass
class AggregateRow:
    key: tuple[Any, ...]
    count: int
    values: dict[str, Any] = field(default_factory=dict)


@dataclass
class AggregateResult:
    total: int  # documents matching the filters
    rows: list[AggregateRow]
    other: int = 0  # documents in groups left out by ``top``

    def counts(self) -> dict[Any, int]:
        """{key: count} for a single grouping key ({(k1, k2): count} for several)."""
        return {(r.key[0] if len(r.key) == 1 else r.key): r.count for r in self.rows}


def time_field_of(query: AggregateQuery) -> str:
    if query.time_field:
        return query.time_field
    if query.collection == "events":
        return "@timestamp"
    if query.collection == "alerts":
        return "last_seen"
    raise StoreError(f"an aggregation of {query.collection!r} needs a time_field")


def validate(query: AggregateQuery) -> None:
    """Refuse what no backend should run: odd field names (they reach JSON paths and engine requests), too many
    grouping fields, a non-positive interval, a percentile outside (0, 100]."""
    names = list(query.group_by) + list(query.terms) + [m.field for m in query.metrics]
    names += [m.until for m in query.metrics if m.until] + ([query.time_field] if query.time_field else [])
    for name in names:
        if not isinstance(name, str) or len(name) > 200 or not FIELD_NAME.fullmatch(name):
            raise StoreError(f"not a field name: {name!r}")
    if len(query.group_by) > MAX_GROUP_FIELDS:
        raise StoreError(f"at most {MAX_GROUP_FIELDS} grouping fields")
    if query.interval_seconds is not None and not (1 <= query.interval_seconds <= 366 * 86400):
        raise StoreError("interval_seconds must be between 1 and a year")
    if query.top is not None and not (1 <= query.top <= 10_000):
        raise StoreError("top must be between 1 and 10,000")
    if query.text is not None and query.collection != "events":
        raise StoreError("free text is searched in events only")
    seen = set()
    for metric in query.metrics:
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,40}", metric.name) or metric.name in seen:
            raise StoreError(f"bad or repeated metric name {metric.name!r}")
        seen.add(metric.name)
        if metric.kind not in ("min", "max", "distinct", "percentiles"):
            raise StoreError(f"unknown metric {metric.kind!r}")
        if metric.kind == "percentiles" and (not metric.until or not metric.percents
                                             or any(not 0 < p <= 100 for p in metric.percents)):
            raise StoreError("percentiles need an until field and percents in (0, 100]")


def lowercased(query: AggregateQuery, name: str) -> bool:
    """Whether the engines index this field's strings lowercased: events' strings, except event.id and
    organization.id (addresses, numbers and dates are not strings there, and lowercasing leaves them alone)."""
    return query.collection == "events" and name not in EVENT_EXACT_FIELDS


def keep_top(rows: list[AggregateRow], top: int | None) -> tuple[list[AggregateRow], int]:
    """The ``top`` groups with the most documents (ties by key), and the documents of the others."""
    ordered = sorted(rows, key=lambda r: (-r.count, _sort_key(r.key)))
    if top is None:
        return sorted(rows, key=lambda r: _sort_key(r.key)), 0
    kept = ordered[:top]
    return kept, sum(r.count for r in ordered[top:])


def _sort_key(key: tuple) -> tuple:
    return tuple((0, "") if k is None else (1, k) if isinstance(k, (int, float)) else (2, str(k)) for k in key)


def percentile(sorted_values: list[float], percent: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default), on values already sorted."""
    if not sorted_values:
        return None
    rank = (len(sorted_values) - 1) * percent / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    if low == high:
        return float(sorted_values[low])
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (rank - low)
