"""The one storage interface. Every backend passes the same contract tests (tests/test_store_contract.py).

Documents are ECS dicts. Events are written in bulk with idempotent ids (``event.id``); alerts are upserted by
``id``; dead letters keep the raw bytes and the reason; API keys keep only a hash.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, Sequence

from soc import codec, ecs

if TYPE_CHECKING:
    from soc.storage.aggregations import AggregateQuery, AggregateResult
if TYPE_CHECKING:  # retention and backups (soc/storage/retention.py, soc/storage/snapshots.py)
    from datetime import timedelta

    from soc.storage.retention import Progress
    from soc.storage.snapshots import SnapshotTarget


def agency_values(agency: "str | tuple[str, ...] | list[str] | None") -> list[str] | None:
    """The organization.id values a tenancy filter (one agency's id, or the ids of an agency's subtree: a city sees
    its communes, inventory/tree.py) allows; None when it allows every agency. An empty tuple allows
    none (a tenant whose subtree is empty sees nothing, never everything)."""
    if agency is None or agency == "":
        return None
    if isinstance(agency, str):
        return [agency]
    return sorted(set(agency)) or [""]


def in_scope(scope: "str | tuple[str, ...] | None", agency: str | None) -> bool:
    """Whether a tenancy filter allows ``agency``."""
    allowed = agency_values(scope)
    return allowed is None or agency in allowed


@dataclass
class EventQuery:
    start: str | None = None  # ISO 8601, inclusive
    end: str | None = None  # ISO 8601, exclusive
    # organization.id, or a subtree's ids (any of them); None means every agency (callers enforce tenancy)
    agency: str | tuple[str, ...] | None = None
    terms: dict[str, Any] = field(default_factory=dict)  # exact ECS field matches, e.g. {"source.ip": "..."}
    text: str | None = None  # free text, matched against event.original
    limit: int = 100
    after: tuple[str, str] | None = None  # cursor: (@timestamp, id) of the last event of the previous page


@dataclass
class AlertQuery:
    agency: str | tuple[str, ...] | None = None  # as EventQuery.agency
    status: str | None = None
    severity: str | None = None
    rule_id: str | None = None
    fingerprint: str | None = None
    since: str | None = None  # last_seen >= since
    entity: str | None = None  # one of the alert's entity values (address, user, host, hash), exactly
    tactics: tuple[str, ...] = ()  # any of these threat.tactic values, exactly (the spellings of one tactic)
    limit: int = 100
    after: tuple[str, str] | None = None  # cursor: (last_seen, id), newest first


@dataclass
class DocumentQuery:
    """Exact matches on dotted fields (a list value means any of them), ranges, a sort field, cursor paging."""

    terms: dict[str, Any] = field(default_factory=dict)
    ranges: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # field -> (gte or None, lt or None)
    sort: str = "id"
    descending: bool = False
    limit: int = 100
    after: tuple[Any, str] | None = None  # (sort value, id) of the last document of the previous page


COLLECTION_NAME = r"^[a-z][a-z0-9_]{0,40}$"


@dataclass
class DeadLetter:
    received: str  # ISO 8601
    source: str  # who sent it: "udp://10.20.10.10:514"
    reason: str
    raw: bytes
    truncated: bool = False
    id: str | None = None


class EncodedEvent(NamedTuple):
    """An event already serialised, with what the stores file it under. Parse workers hand these over, so the
    writing process neither pickles nor re-encodes documents."""

    id: str
    timestamp: str  # @timestamp, ISO 8601 UTC
    agency: str | None  # organization.id
    source: bytes  # the document as compact JSON (UTF-8): what both stores take, with no conversion on the way


def encode_event(doc: dict) -> EncodedEvent:
    event_id = ecs.get(doc, "event.id")
    if not event_id:
        raise StoreError("an event without event.id cannot be stored idempotently")
    return EncodedEvent(event_id, doc["@timestamp"], ecs.get(doc, "organization.id"),
                        codec.dumps_bytes(doc))


class StoreError(Exception):
    """The store could not do what was asked; the message says why.

    ``transient`` errors (store down, timeout, overloaded) are worth retrying; others (a rejected document, a bad
    query) will fail the same way again. ``rejected`` lists (document, reason) pairs the store refused for good.
    """

    def __init__(self, message: str, *, transient: bool = False, rejected: list[tuple[dict, str]] | None = None):
        super().__init__(message)
        self.transient = transient
        self.rejected = rejected or []


class Store(ABC):
    """What the suite needs from a store. Reads of tenant data take an agency filter; routers must pass it."""

    name: str = "store"

    # --- lifecycle -------------------------------------------------------------------------------------------
    @abstractmethod
    def open(self) -> None:
        """Create tables / index templates if needed. Safe to call on an existing store."""

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def refresh(self) -> None:
        """Make everything written so far visible to searches (a no-op where writes are visible at once)."""

    @abstractmethod
    def health(self) -> dict[str, Any]:
        """{"status": "green"|"yellow"|"red", "backend": ..., ...}"""

    # --- events ----------------------------------------------------------------------------------------------
    @abstractmethod
    def write_events(self, events: Sequence[dict]) -> int:
        """Write events (each with event.id); rewriting an id replaces it. Returns how many were written."""

    def write_encoded(self, events: Sequence[EncodedEvent]) -> int:
        """Write events serialised beforehand (encode_event); stores that can take the JSON as it is override this."""
        return self.write_events([codec.loads(e.source) for e in events])

    @abstractmethod
    def get_events(self, ids: Sequence[str]) -> list[dict]: ...

    @abstractmethod
    def search_events(self, query: EventQuery) -> list[dict]:
        """Events in (@timestamp, id) ascending order, at most query.limit."""

    @abstractmethod
    def count_events(self, agency: str | tuple[str, ...] | None = None) -> int: ...

    # --- aggregations: counts and figures computed where the data is (soc/storage/aggregations.py) ------------
    @abstractmethod
    def aggregate(self, query: "AggregateQuery") -> "AggregateResult":
        """Group the documents of a collection and count them (and compute the query's metrics) per group."""

    # --- alerts ----------------------------------------------------------------------------------------------
    @abstractmethod
    def upsert_alerts(self, alerts: Sequence[dict]) -> None: ...

    @abstractmethod
    def get_alert(self, alert_id: str) -> dict | None: ...

    @abstractmethod
    def list_alerts(self, query: AlertQuery) -> list[dict]:
        """Alerts newest first by (last_seen, id), at most query.limit."""

    # --- dead letters ----------------------------------------------------------------------------------------
    @abstractmethod
    def write_dead_letters(self, letters: Sequence[DeadLetter]) -> None: ...

    @abstractmethod
    def list_dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """Newest first."""

    @abstractmethod
    def count_dead_letters(self) -> int: ...

    # --- API keys --------------------------------------------------------------------------------------------
    @abstractmethod
    def put_api_key(self, record: dict) -> None:
        """record: id, hash, role, agency, name, created, expires, revoked."""

    @abstractmethod
    def get_api_key(self, key_id: str) -> dict | None: ...

    @abstractmethod
    def list_api_keys(self) -> list[dict]: ...

    # --- documents: what else the suite keeps (playbook runs, audit records, silences, indicators, reports) ---
    @abstractmethod
    def put_documents(self, collection: str, docs: Sequence[dict]) -> None:
        """Insert or replace documents (each with an "id") in a named collection; visible to reads at once."""

    @abstractmethod
    def get_document(self, collection: str, doc_id: str) -> dict | None: ...

    @abstractmethod
    def find_documents(self, collection: str, query: "DocumentQuery") -> list[dict]: ...

    @abstractmethod
    def delete_document(self, collection: str, doc_id: str) -> bool: ...

    def __enter__(self) -> "Store":
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- retention and backups: the work is in soc/storage/retention*.py and snapshots*.py ----------------------
    @abstractmethod
    def expire(self, data_class: str, cutoff: str, *, dry_run: bool = False,
               progress: "Progress | None" = None) -> int:
        """Delete what of ``data_class`` (retention.DATA_CLASSES) is dated before ``cutoff`` (ISO 8601 UTC), or
        with ``dry_run`` only count it; how many documents (rows) that is."""

    @abstractmethod
    def data_status(self) -> dict[str, dict]:
        """Per data class: ``count``, ``oldest``, ``newest`` and ``where`` it is kept."""

    @abstractmethod
    def lifecycle(self, events_period: "timedelta | None", *, install: bool = False) -> dict:
        """The engine's own lifecycle policy for the event indices (OpenSearch ISM, Elasticsearch ILM): installed or
        updated to ``events_period`` when ``install``, and described; ``available`` False where there is none."""

    @abstractmethod
    def snapshot(self, where: "SnapshotTarget", name: str, *, kind: str = "manual",
                 progress: "Progress | None" = None) -> dict:
        """A backup of the whole store named ``name``: {"name", "state", "started", "kind", ...}."""

    @abstractmethod
    def list_snapshots(self, where: "SnapshotTarget") -> list[dict]:
        """This store's snapshots at ``where``, by name."""

    @abstractmethod
    def restore(self, where: "SnapshotTarget", name: str, *, replace: bool = False,
                progress: "Progress | None" = None) -> dict:
        """Bring back what the snapshot holds and the store lacks (``replace``: make the store the snapshot)."""

    @abstractmethod
    def delete_snapshot(self, where: "SnapshotTarget", name: str) -> None: ...
