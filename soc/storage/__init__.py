"""Storage: one interface (base.Store), an embedded SQLite backend and an Elasticsearch/OpenSearch backend."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from soc.storage.base import AlertQuery, DeadLetter, DocumentQuery, EventQuery, Store, StoreError

__all__ = ["AlertQuery", "DeadLetter", "DocumentQuery", "EventQuery", "Store", "StoreError", "open_store", "store_from_url"]


def store_from_url(url: str, *, index_prefix: str = "soc", username: str | None = None,
                   password_env: str | None = None, ca_file: str | None = None, verify_certs: bool = True,
                   timeout: float = 30.0, compress: bool = False, hosts: Sequence[str] = (), sniff: bool = False,
                   replicas: dict[str, int | str] | None = None) -> Store:
    """sqlite:///relative/path.db, sqlite:////absolute/path.db, opensearch://host:port, elasticsearch://host:port.
    ``hosts`` (more nodes of the engine's cluster, "host:port"), ``sniff`` and ``replicas`` (per data class) are for
    the engines; the embedded store has one file and no copies."""
    scheme = url.split("://", 1)[0]
    if scheme == "sqlite":
        path = url[len("sqlite:///"):] if url.startswith("sqlite:///") else url[len("sqlite://"):]
        from soc.storage.sqlite import SqliteStore

        return SqliteStore(Path(path) if path != ":memory:" else path)
    if scheme.split("+")[0] in {"opensearch", "elasticsearch"}:
        from soc.storage.search import SearchStore

        return SearchStore(url, index_prefix=index_prefix, username=username, password_env=password_env,
                           ca_file=ca_file, verify_certs=verify_certs, timeout=timeout, compress=compress,
                           hosts=hosts, sniff=sniff, replicas=replicas)
    raise StoreError(f"unknown store URL {url!r}: use sqlite://, opensearch:// or elasticsearch://")


def open_store(settings) -> Store:
    """The store the configuration names, opened (tables and index templates in place)."""
    cfg = settings.store
    store = store_from_url(cfg.url, index_prefix=cfg.index_prefix, username=cfg.username,
                           password_env=cfg.password_env, ca_file=cfg.ca_file, verify_certs=cfg.verify_certs,
                           timeout=cfg.timeout_seconds, compress=cfg.compress, hosts=cfg.hosts, sniff=cfg.sniff,
                           replicas=cfg.replicas.model_dump())
    store.open()
    return store
