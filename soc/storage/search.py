"""Elasticsearch 8/9 and OpenSearch 2/3 through one adapter.

The official clients (``elasticsearch`` and ``opensearch-py``) differ in their constructor and their bulk helper but
agree on ``search(index=, body=)``, ``indices.put_index_template(name=, body=)`` and friends, so the store is written
once against that common surface and :func:`connect` picks the client by the URL scheme.

Layout: events go to daily indices ``<prefix>-events-YYYY.MM.DD`` (by the event's @timestamp, so a replay lands in the
same index and the same ``_id`` overwrites instead of duplicating); alerts, dead letters and API keys each have one
index. Index templates carry the ECS mappings (soc/storage/mappings.py).
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import uuid
from typing import Any, Sequence
from urllib.parse import urlsplit

from soc import codec, ecs
import re

from soc.storage import aggregate_search
from soc.storage.aggregations import AggregateQuery, AggregateResult

from soc.storage.base import (
    agency_values,
    COLLECTION_NAME,
    AlertQuery,
    DeadLetter,
    DocumentQuery,
    EncodedEvent,
    EventQuery,
    Store,
    StoreError,
    encode_event,
)
from soc.storage.mappings import alert_template, dead_letter_template, document_template, event_template, key_template


class _Engine:
    """The two clients' differences, and nothing else."""

    def __init__(self, flavour: str, client: Any, helpers: Any, errors: tuple[type[BaseException], ...]):
        self.flavour, self.client, self.helpers, self.errors = flavour, client, helpers, errors

    def bulk(self, actions: list[dict]) -> tuple[int, list]:
        return self.helpers.bulk(self.client, actions, raise_on_error=False, stats_only=False, refresh=False)

    def bulk_body(self, body: bytes, filter_path: str) -> dict:
        """A _bulk request with a body already in NDJSON; the answer trimmed to ``filter_path``."""
        if self.flavour == "opensearch":
            return self.client.bulk(body=body, params={"filter_path": filter_path})
        return self.client.bulk(operations=body, filter_path=filter_path.split(",")).body


def _node_urls(http_scheme: str, host: str, port: int, hosts: Sequence[str]) -> list[str]:
    """The URL's node first, then each other configured node once ("host:port", checked as the configuration
    checks it: a bad address is refused here, not sent to the client library)."""
    from soc.config import check_host

    first = f"[{host}]" if ":" in host else host  # an IPv6 address, as urlsplit gives it without brackets
    nodes = [f"{http_scheme}://{first}:{port}"]
    for extra in hosts:
        try:
            node = f"{http_scheme}://{check_host(extra)}"
        except ValueError as exc:
            raise StoreError(f"store hosts: {exc}") from exc
        if node not in nodes:
            nodes.append(node)
    return nodes


# Sniffing (store.sniff): the nodes the cluster announces join the configured ones, asked again after a node fails
# and every SNIFF_INTERVAL seconds; one sniff waits at most SNIFF_TIMEOUT (the client's default, 0.1 s, fails on a
# busy node, and a failed sniff only leaves the pool as it was).
SNIFF_INTERVAL = 60.0
SNIFF_TIMEOUT = 2.0


def connect(url: str, *, hosts: Sequence[str] = (), sniff: bool = False, username: str | None = None,
            password: str | None = None, ca_file: str | None = None, verify_certs: bool = True, timeout: float = 30.0,
            compress: bool = False) -> _Engine:
    """The client for ``url``'s engine, over the URL's node and ``hosts`` (more nodes of the same cluster): a request
    that cannot reach a node (refused, reset, timed out) or gets 502/503/504 is sent again to the next node, and the
    failed node is left out for a while, so one node lost does not fail the suite's writes and reads."""
    parts = urlsplit(url)
    scheme, _, transport = parts.scheme.partition("+")
    http_scheme = "https" if transport == "https" else "http"
    host = parts.hostname or "127.0.0.1"
    port = parts.port or 9200
    username = username or parts.username
    password = password if password is not None else parts.password
    nodes = _node_urls(http_scheme, host, port, hosts)
    node = nodes[0]
    # every node gets a try before a request fails (at least 3, as for one node: a node restarting answers 503)
    retries = max(3, len(nodes))
    if scheme == "opensearch":
        import opensearchpy
        from opensearchpy import helpers

        # The first sniff is not made here (it raises when the cluster is down, and a suite must start with its
        # store down: the spool holds what arrives): SearchStore.open() asks, and a failure there is only logged.
        sniffing = {"sniff_on_connection_fail": True, "sniffer_timeout": SNIFF_INTERVAL,
                    "sniff_timeout": SNIFF_TIMEOUT} if sniff else {}
        client = opensearchpy.OpenSearch(
            hosts=nodes, http_auth=(username, password) if username else None, use_ssl=http_scheme == "https",
            verify_certs=verify_certs, ca_certs=ca_file, timeout=timeout, http_compress=compress,
            # pool_maxsize: the API serves many clients at once (40 threads)
            max_retries=retries, retry_on_timeout=True, pool_maxsize=64,
            **sniffing,
        )
        errors = (opensearchpy.exceptions.OpenSearchException,)
        return _Engine("opensearch", client, helpers, errors)
    if scheme == "elasticsearch":
        import elastic_transport
        import elasticsearch
        from elasticsearch import helpers

        sniffing = {"sniff_on_node_failure": True, "sniff_before_requests": True,
                    "min_delay_between_sniffing": SNIFF_INTERVAL, "sniff_timeout": SNIFF_TIMEOUT} if sniff else {}
        client = elasticsearch.Elasticsearch(
            nodes if len(nodes) > 1 else node, basic_auth=(username, password) if username else None,
            verify_certs=verify_certs, ca_certs=ca_file, request_timeout=timeout, http_compress=compress,
            max_retries=retries, retry_on_timeout=True, connections_per_node=64, **sniffing,
        )
        errors = (elasticsearch.ApiError, elastic_transport.TransportError)
        return _Engine("elasticsearch", client, helpers, errors)
    raise StoreError(f"unknown search engine scheme {parts.scheme!r}")


def _transient(exc: BaseException) -> bool:
    """Connection trouble, timeouts, 429 and 5xx are worth retrying; a 4xx answer will not change."""
    status = getattr(exc, "status_code", None) or getattr(exc, "status", None)
    if isinstance(status, int):
        return status == 429 or status >= 500
    meta = getattr(exc, "meta", None)
    if meta is not None and isinstance(getattr(meta, "status", None), int):
        return meta.status == 429 or meta.status >= 500
    return True  # no HTTP status: the request never got an answer (connection refused, timeout)


def _entity_terms(value: str) -> list[dict]:
    """Exact matches of one value on every entity kind; addresses are typed ``ip``, so only an address is asked
    there (any other text would be a query error, not a miss)."""
    terms: list[dict] = [{"term": {f"entities.{kind}": value}} for kind in ("user", "host", "hash")]
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return terms
    return terms + [{"term": {"entities.ip": value}}]


# The data classes of the configuration (store.replicas, store.retention) and the indices that hold them:
#   events        <prefix>-events-YYYY.MM.DD          template <prefix>-events
#   alerts        <prefix>-alerts                     template <prefix>-alerts
#   dead_letters  <prefix>-deadletters                template <prefix>-deadletters
#   indicators    <prefix>-doc-indicators, -sightings template <prefix>-indicators (above <prefix>-documents)
#   audit         every other <prefix>-doc-<collection> (the audit trail, incidents, playbook runs, users, sessions,
#                 silences ...: the suite's state) and <prefix>-apikeys
#                                                     templates <prefix>-documents and <prefix>-apikeys
DATA_CLASSES = ("events", "alerts", "dead_letters", "audit", "indicators")
INDICATOR_COLLECTIONS = ("indicators", "sightings")


class SearchStore(Store):
    def __init__(self, url: str, *, index_prefix: str = "soc", username: str | None = None,
                 password_env: str | None = None, ca_file: str | None = None, verify_certs: bool = True,
                 timeout: float = 30.0, compress: bool = False, hosts: Sequence[str] = (), sniff: bool = False,
                 replicas: dict[str, int | str] | None = None):
        password = os.environ.get(password_env) if password_env else None
        self.url = url
        self.prefix = index_prefix
        self.sniff = sniff
        self.engine = connect(url, hosts=hosts, sniff=sniff, username=username, password=password, ca_file=ca_file,
                              verify_certs=verify_certs, timeout=timeout, compress=compress)
        self.name = self.engine.flavour
        self.client = self.engine.client
        self.events_pattern = f"{self.prefix}-events-*"
        self.alerts_index = f"{self.prefix}-alerts"
        self.dead_letter_index = f"{self.prefix}-deadletters"
        self.keys_index = f"{self.prefix}-apikeys"
        # Replica copies per data class; "auto" unless configured (one copy on a cluster, none on a single node).
        unknown = set(replicas or {}) - set(DATA_CLASSES)
        if unknown:
            raise StoreError(f"replicas for unknown data classes {sorted(unknown)}: the classes are {DATA_CLASSES}")
        self.replicas: dict[str, int | str] = {c: "auto" for c in DATA_CLASSES} | dict(replicas or {})

    # --- lifecycle -------------------------------------------------------------------------------------------
    def _call(self, what: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except self.engine.errors as exc:
            raise StoreError(f"{self.name} {what} failed: {exc}", transient=_transient(exc)) from exc

    def open(self) -> None:
        if self.sniff:
            self._first_sniff()
        r = self.replicas
        try:
            templates = {
                f"{self.prefix}-events": event_template(self.events_pattern, self.engine.flavour, r["events"]),
                f"{self.prefix}-alerts": alert_template(self.alerts_index, r["alerts"]),
                f"{self.prefix}-deadletters": dead_letter_template(self.dead_letter_index, r["dead_letters"]),
                f"{self.prefix}-apikeys": key_template(self.keys_index, r["audit"]),
                f"{self.prefix}-documents": document_template(f"{self.prefix}-doc-*", r["audit"]),
                f"{self.prefix}-indicators": document_template(
                    [f"{self.prefix}-doc-{c}" for c in INDICATOR_COLLECTIONS], r["indicators"], priority=201),
            }
        except ValueError as exc:  # a replica count that is neither "auto" nor a number of copies
            raise StoreError(f"store replicas: {exc}") from exc
        for name, body in templates.items():
            self._call("index template", self.client.indices.put_index_template, name=name, body=body)
        for index in (self.alerts_index, self.dead_letter_index, self.keys_index):
            if not self._call("index check", self.client.indices.exists, index=index):
                try:
                    self.client.indices.create(index=index)
                except self.engine.errors as exc:  # created meanwhile by another process: fine
                    if "resource_already_exists" not in str(exc):
                        raise StoreError(f"{self.name} cannot create {index}: {exc}") from exc
        self._apply_replicas()

    def _first_sniff(self) -> None:
        """The cluster's nodes join the configured ones now rather than at the first failure. The cluster may be
        down or still forming while the suite starts: then the configured nodes are used, and sniffing happens
        later (after a failure, and every SNIFF_INTERVAL seconds)."""
        import logging

        transport = self.client.transport
        try:
            if self.engine.flavour == "opensearch":
                transport.sniff_hosts(True)
            else:
                transport.sniff(True)
        except Exception as exc:  # any failure of the sniff only leaves the configured nodes in use
            logging.getLogger(__name__).warning("%s: sniffing the cluster's nodes failed, using the configured "
                                                "ones: %s", self.name, exc)

    def _data_class(self, index: str) -> str | None:
        """The data class an index of this store holds (DATA_CLASSES above), None for an index that is not ours."""
        p = self.prefix
        if index.startswith(f"{p}-events-"):
            return "events"
        if index == self.alerts_index:
            return "alerts"
        if index == self.dead_letter_index:
            return "dead_letters"
        if index in {f"{p}-doc-{c}" for c in INDICATOR_COLLECTIONS}:
            return "indicators"
        if index.startswith(f"{p}-doc-") or index == self.keys_index:
            return "audit"
        return None

    def _apply_replicas(self) -> None:
        """Existing indices take the configured replica counts (new ones get them from the templates). Only an index
        whose settings differ is changed: a changed count adds or drops a full copy of the index."""
        from soc.storage.mappings import replica_settings

        names = "index.number_of_replicas,index.auto_expand_replicas"
        found = self._call("index settings", self.client.indices.get_settings, index=f"{self.prefix}-*", name=names)
        stale: dict[str, list[str]] = {}
        for index, body in (getattr(found, "body", found) or {}).items():
            data_class = self._data_class(index)
            if data_class is None:
                continue
            current = (body or {}).get("settings", {}).get("index", {})
            have = {"number_of_replicas": str(current.get("number_of_replicas", "")),
                    "auto_expand_replicas": str(current.get("auto_expand_replicas", "false")).lower()}
            want = replica_settings(self.replicas[data_class])
            if any(have[key] != str(value).lower() for key, value in want.items()):
                stale.setdefault(data_class, []).append(index)
        for data_class, indices in stale.items():
            body = {"index": replica_settings(self.replicas[data_class])}
            # a few dozen names per request: hundreds of daily indices would not fit in one request line
            for start in range(0, len(indices), 40):
                batch = ",".join(indices[start:start + 40])
                # ignore_unavailable: an index deleted meanwhile (retention) has nothing to change
                self._call(f"replica settings of {data_class} indices", self.client.indices.put_settings,
                           index=batch, body=body, ignore_unavailable=True)

    def close(self) -> None:
        self.client.close()

    def refresh(self) -> None:
        self._call("refresh", self.client.indices.refresh, index=f"{self.prefix}-*")

    def health(self) -> dict[str, Any]:
        try:
            health = self.client.cluster.health()
        except self.engine.errors as exc:
            return {"status": "red", "backend": self.name, "error": str(exc)}
        return {"status": health["status"], "backend": self.name, "cluster": health.get("cluster_name"),
                "nodes": health.get("number_of_nodes")}

    def _bulk(self, actions: list[dict]) -> int:
        if not actions:
            return 0
        try:
            ok, errors = self.engine.bulk(actions)
        except self.engine.errors as exc:
            raise StoreError(f"{self.name} bulk write failed: {exc}", transient=_transient(exc)) from exc
        if errors:
            by_id = {a["_id"]: a["_source"] for a in actions}
            raise self._refused(errors, by_id.get, len(actions))
        return ok

    def _refused(self, failed: list[dict], document_of, total: int) -> StoreError:
        """The error for the failed items of a _bulk answer: transient when any was 429 or 5xx (the whole write is
        retried), else carrying each refused document and the reason, for the dead-letter store."""
        transient, rejected = False, []
        for item in failed:
            detail = next(iter(item.values()))
            status = detail.get("status", 0)
            if status == 429 or status >= 500:
                transient = True
            rejected.append((document_of(detail.get("_id")), json.dumps(detail.get("error"), default=str)[:2000]))
        return StoreError(f"{self.name} rejected {len(failed)} of {total} documents; first: {rejected[0][1]}",
                          transient=transient, rejected=[] if transient else rejected)

    def _search(self, index: str, body: dict) -> list[dict]:
        # Only the documents come back: no total-hit count to compute, no metadata to send and decode.
        result = self._call("search", self.client.search, index=index, body={**body, "track_total_hits": False},
                            params={"ignore_unavailable": "true", "allow_no_indices": "true",
                                    "filter_path": "hits.hits._source"})
        return [hit["_source"] for hit in result.get("hits", {}).get("hits", ())]

    # --- events ----------------------------------------------------------------------------------------------
    def event_index(self, timestamp: str) -> str:
        # "2026-11-22T09:10:11.000Z" -> soc-events-2026.11.22 (UTC day)
        return f"{self.prefix}-events-{timestamp[0:4]}.{timestamp[5:7]}.{timestamp[8:10]}"

    def write_events(self, events: Sequence[dict]) -> int:
        return self.write_encoded([encode_event(doc) for doc in events])

    def write_encoded(self, events: Sequence[EncodedEvent]) -> int:
        """One _bulk request whose body is the documents' JSON as it came (no client-side re-encoding), asking only
        for what is needed back: whether anything failed, and which items."""
        if not events:
            return 0
        lines = []
        for e in events:
            lines.append(codec.dumps_bytes({"index": {"_index": self.event_index(e.timestamp), "_id": e.id}}))
            lines.append(e.source)
        lines.append(b"")
        body = b"\n".join(lines)
        try:
            result = self.engine.bulk_body(body, "errors,items.*.error,items.*._id,items.*.status")
        except self.engine.errors as exc:
            raise StoreError(f"{self.name} bulk write failed: {exc}", transient=_transient(exc)) from exc
        if not result.get("errors"):
            return len(events)
        failed = [item for item in result.get("items", ()) if next(iter(item.values())).get("error")]
        by_id = {e.id: e for e in events}
        raise self._refused(failed, lambda i: codec.loads(by_id[i].source) if i in by_id else None, len(events))

    def get_events(self, ids: Sequence[str]) -> list[dict]:
        if not ids:
            return []
        found = self._search(self.events_pattern, {"query": {"ids": {"values": list(ids)}}, "size": len(ids)})
        by_id = {d["event"]["id"]: d for d in found}
        return [by_id[i] for i in ids if i in by_id]

    def _event_filters(self, agency: str | tuple[str, ...] | None) -> list[dict]:
        agencies = agency_values(agency)
        return [] if agencies is None else [{"terms": {"organization.id": agencies}}]

    def search_events(self, query: EventQuery) -> list[dict]:
        filters = self._event_filters(query.agency) + aggregate_search.time_range("@timestamp", query.start,
                                                                                  query.end)
        for field, value in query.terms.items():
            filters.append({"term": {field: value}})
        must = []
        if query.text:
            must.append({"match_phrase": {"event.original": query.text}})
        body: dict[str, Any] = {
            "query": {"bool": {"filter": filters, "must": must}},
            "sort": [{"@timestamp": {"order": "asc", "unmapped_type": "date"}},
                     {"event.id": {"order": "asc", "unmapped_type": "keyword"}}],
            "size": query.limit,
        }
        if query.after:
            body["search_after"] = list(query.after)
        return self._search(self.events_pattern, body)

    # --- aggregations ----------------------------------------------------------------------------------------
    def aggregate(self, query: AggregateQuery) -> AggregateResult:
        index = aggregate_search.index_for(self.prefix, query.collection, self.events_pattern, self.alerts_index)

        def search(target: str, body: dict) -> dict:
            return self._call("aggregation", self.client.search, index=target, body=body,
                              params={"ignore_unavailable": "true", "allow_no_indices": "true",
                                      "filter_path": "hits.total,aggregations"})

        return aggregate_search.aggregate(search, index, query)

    def count_events(self, agency: str | tuple[str, ...] | None = None) -> int:
        body = {"query": {"bool": {"filter": self._event_filters(agency)}}}
        result = self._call("count", self.client.count, index=self.events_pattern, body=body,
                            params={"ignore_unavailable": "true", "allow_no_indices": "true"})
        return int(result["count"])

    # --- alerts ----------------------------------------------------------------------------------------------
    def upsert_alerts(self, alerts: Sequence[dict]) -> None:
        self._bulk([{"_op_type": "index", "_index": self.alerts_index, "_id": a["id"], "_source": a} for a in alerts])

    def get_alert(self, alert_id: str) -> dict | None:
        found = self._search(self.alerts_index, {"query": {"ids": {"values": [alert_id]}}, "size": 1})
        return found[0] if found else None

    def list_alerts(self, query: AlertQuery) -> list[dict]:
        filters: list[dict] = []
        filters += self._event_filters(query.agency)
        for field, value in (
            ("status", query.status),
            ("severity", query.severity),
            ("rule.id", query.rule_id),
            ("fingerprint", query.fingerprint),
        ):
            if value is not None:
                filters.append({"term": {field: value}})
        if query.since:
            filters.append({"range": {"last_seen": {"gte": query.since}}})
        if query.entity is not None:
            filters.append({"bool": {"should": _entity_terms(query.entity), "minimum_should_match": 1}})
        if query.tactics:
            filters.append({"terms": {"threat.tactic": list(query.tactics)}})
        body: dict[str, Any] = {
            "query": {"bool": {"filter": filters}},
            "sort": [{"last_seen": {"order": "desc", "unmapped_type": "date"}},
                     {"id": {"order": "desc", "unmapped_type": "keyword"}}],
            "size": query.limit,
        }
        if query.after:
            body["search_after"] = list(query.after)
        return self._search(self.alerts_index, body)

    # --- dead letters ----------------------------------------------------------------------------------------
    def write_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        actions = []
        for letter in letters:
            letter_id = letter.id or uuid.uuid4().hex
            actions.append({"_op_type": "index", "_index": self.dead_letter_index, "_id": letter_id, "_source": {
                "id": letter_id, "received": letter.received, "source": letter.source, "reason": letter.reason,
                "raw": base64.b64encode(bytes(letter.raw)).decode("ascii"), "raw_size": len(letter.raw),
                "truncated": letter.truncated,
            }})
        self._bulk(actions)

    def list_dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        found = self._search(self.dead_letter_index, {"sort": [{"received": {"order": "desc", "unmapped_type": "date"}},
                                                          {"id": {"order": "desc", "unmapped_type": "keyword"}}],
                                                 "size": limit})
        return [DeadLetter(id=d["id"], received=d["received"], source=d["source"], reason=d["reason"],
                           raw=base64.b64decode(d["raw"]), truncated=d.get("truncated", False)) for d in found]

    def count_dead_letters(self) -> int:
        result = self._call("count", self.client.count, index=self.dead_letter_index,
                            params={"ignore_unavailable": "true", "allow_no_indices": "true"})
        return int(result["count"])

    # --- API keys --------------------------------------------------------------------------------------------
    def put_api_key(self, record: dict) -> None:
        self._bulk([{"_op_type": "index", "_index": self.keys_index, "_id": record["id"], "_source": record}])
        # A key must work the moment it is printed, so make it searchable now.
        self._call("refresh", self.client.indices.refresh, index=self.keys_index)

    def get_api_key(self, key_id: str) -> dict | None:
        found = self._search(self.keys_index, {"query": {"ids": {"values": [key_id]}}, "size": 1})
        return found[0] if found else None

    def list_api_keys(self) -> list[dict]:
        return self._search(self.keys_index, {"sort": [{"id": {"order": "asc", "unmapped_type": "keyword"}}],
                                              "size": 10_000})

    # --- documents ------------------------------------------------------------------------------------------
    def _collection_index(self, collection: str) -> str:
        if not re.match(COLLECTION_NAME, collection):
            raise StoreError(f"invalid collection name {collection!r}")
        return f"{self.prefix}-doc-{collection}"

    def put_documents(self, collection: str, docs: Sequence[dict]) -> None:
        index = self._collection_index(collection)
        actions = [{"_op_type": "index", "_index": index, "_id": str(d["id"]), "_source": d} for d in docs]
        self._bulk(actions)
        # Documents are state (a playbook run, a silence): the next read must see the write.
        self._call("refresh", self.client.indices.refresh, index=index)

    def get_document(self, collection: str, doc_id: str) -> dict | None:
        found = self._search(self._collection_index(collection),
                             {"query": {"ids": {"values": [doc_id]}}, "size": 1})
        return found[0] if found else None

    def find_documents(self, collection: str, query: DocumentQuery) -> list[dict]:
        filters: list[dict] = []
        for field, value in query.terms.items():
            if isinstance(value, (list, tuple, set)):
                filters.append({"terms": {field: list(value)}})
            else:
                filters.append({"term": {field: value}})
        for field, (low, high) in query.ranges.items():
            bounds = {}
            if low is not None:
                bounds["gte"] = low
            if high is not None:
                bounds["lt"] = high
            filters.append({"range": {field: bounds}})
        order = "desc" if query.descending else "asc"
        body: dict[str, Any] = {
            "query": {"bool": {"filter": filters}},
            "sort": [{query.sort: {"order": order, "unmapped_type": "keyword"}},
                     {"id": {"order": order, "unmapped_type": "keyword"}}],
            "size": query.limit,
        }
        if query.after is not None:
            body["search_after"] = list(query.after)
        return self._search(self._collection_index(collection), body)

    def delete_document(self, collection: str, doc_id: str) -> bool:
        index = self._collection_index(collection)
        try:
            self.client.delete(index=index, id=doc_id, params={"refresh": "true"})
            return True
        except self.engine.errors as exc:
            if getattr(exc, "status_code", None) == 404 or "not_found" in str(exc) or "404" in str(exc):
                return False
            raise StoreError(f"{self.name} delete failed: {exc}", transient=_transient(exc)) from exc

    # --- retention and backups (soc/storage/retention_search.py, soc/storage/snapshots_search.py) --------------
    def expire(self, data_class, cutoff, *, dry_run=False, progress=None) -> int:
        from soc.storage import retention_search

        return retention_search.expire(self, data_class, cutoff, dry_run=dry_run, progress=progress)

    def data_status(self) -> dict[str, dict]:
        from soc.storage import retention_search

        return retention_search.status(self)

    def lifecycle(self, events_period, *, install=False) -> dict:
        from soc.storage import retention_search

        return retention_search.lifecycle(self, events_period, install=install)

    def snapshot(self, where, name, *, kind="manual", progress=None) -> dict:
        from soc.storage import snapshots_search

        return snapshots_search.snapshot(self, where, name, kind=kind, progress=progress)

    def list_snapshots(self, where) -> list[dict]:
        from soc.storage import snapshots_search

        return snapshots_search.list_snapshots(self, where)

    def restore(self, where, name, *, replace=False, progress=None) -> dict:
        from soc.storage import snapshots_search

        return snapshots_search.restore(self, where, name, replace=replace, progress=progress)

    def delete_snapshot(self, where, name) -> None:
        from soc.storage import snapshots_search

        snapshots_search.delete_snapshot(self, where, name)
