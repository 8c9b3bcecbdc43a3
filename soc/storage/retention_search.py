"""Retention on Elasticsearch / OpenSearch: what the suite deletes itself, and the engine's lifecycle policy.

Why the layout decides what can roll over:

- **Events** live in daily indices named by the event's own @timestamp (``<prefix>-events-YYYY.MM.DD``), so a replay
  writes the same ``_id`` into the same index and overwrites instead of duplicating. The day is already the rollover
  by age. Rolling over by size (a write alias moving to a new index) would break that: a replayed event would land in
  the newest index beside its first copy. So expired days are deleted whole, and inside the one index that straddles
  the cutoff the expired events are deleted by query.
- **Alerts** are updated in place by id (count, last_seen, status): after a rollover an update would go to the new
  index while the old version stayed in the old one, two versions of one alert. Dead letters, audit records,
  indicators and sightings are read and some updated by id too. These keep one index each; retention deletes their
  expired documents by query.
- **The engine's policy** (OpenSearch ISM, Elasticsearch ILM), where the engine has that plugin, deletes a daily
  event index once the period plus its day has passed, so the disk stays bounded even while the suite is down. Only
  whole indices can be deleted by a policy, so the other classes are the suite's to expire.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from soc.storage.base import StoreError
from soc.storage.engine_requests import request, wait_task
from soc.storage.retention import DOCUMENT_CLASSES, engine_index_age

if TYPE_CHECKING:
    from soc.storage.retention import Progress
    from soc.storage.search import SearchStore

_DAY = re.compile(r"-events-(\d{4})\.(\d{2})\.(\d{2})$")
_IGNORE = {"ignore_unavailable": "true", "allow_no_indices": "true"}


def dated_targets(store: "SearchStore", data_class: str) -> list[tuple[str, str]]:
    """(index, date field) for a data class that is not events."""
    if data_class == "alerts":
        return [(store.alerts_index, "last_seen")]
    if data_class == "dead_letters":
        return [(store.dead_letter_index, "received")]
    if data_class in DOCUMENT_CLASSES:
        return [(f"{store.prefix}-doc-{collection}", field) for collection, field in DOCUMENT_CLASSES[data_class]]
    raise StoreError(f"unknown data class {data_class!r}")


def event_indices(store: "SearchStore") -> list[dict]:
    """The daily event indices with their day (UTC midnight), documents and bytes, oldest first."""
    rows = request(store, "GET", f"/_cat/indices/{store.prefix}-events-*", what="index list",
                   params={"format": "json", "h": "index,docs.count,store.size,status", "bytes": "b",
                           "expand_wildcards": "open,closed"}, missing=[]) or []
    found = []
    for row in rows:
        name = row.get("index", "")
        match = _DAY.search(name)
        if not match or name != f"{store.prefix}-events-{'.'.join(match.groups())}":
            continue  # not one of ours (another prefix's, or a name of someone else's)
        try:
            day = datetime(*(int(g) for g in match.groups()), tzinfo=timezone.utc)
        except ValueError:
            continue
        found.append({"index": name, "day": day, "docs": int(row.get("docs.count") or 0),
                      "bytes": int(row.get("store.size") or 0), "status": row.get("status")})
    return sorted(found, key=lambda r: r["day"])


def _count_older(store: "SearchStore", index: str, field: str, cutoff: str) -> int:
    answer = request(store, "POST", f"/{index}/_count", params=_IGNORE, what="count",
                     body={"query": {"range": {field: {"lt": cutoff}}}}, missing={"count": 0})
    return int(answer.get("count", 0))


def _delete_older(store: "SearchStore", index: str, field: str, cutoff: str, progress: "Progress | None") -> int:
    if _count_older(store, index, field, cutoff) == 0:
        return 0  # nothing to do, and no task left behind in .tasks
    started = request(store, "POST", f"/{index}/_delete_by_query", what=f"expiry of {index}",
                      params={**_IGNORE, "conflicts": "proceed", "wait_for_completion": "false", "refresh": "true"},
                      body={"query": {"range": {field: {"lt": cutoff}}}})
    response = wait_task(store, started["task"], progress=progress, what=f"deleting from {index}", done_key="deleted")
    return int(response.get("deleted", 0))


def expire(store: "SearchStore", data_class: str, cutoff: str, *, dry_run: bool = False,
           progress: "Progress | None" = None) -> int:
    """Delete (or count) a data class's documents dated before ``cutoff``; how many."""
    if data_class != "events":
        return sum(_count_older(store, index, field, cutoff) if dry_run
                   else _delete_older(store, index, field, cutoff, progress)
                   for index, field in dated_targets(store, data_class))
    limit = datetime.fromisoformat(cutoff.replace("Z", "+00:00"))
    gone = 0
    for row in event_indices(store):
        if row["day"] + timedelta(days=1) <= limit:  # the whole day is past the period: the index goes at once
            if progress is not None:
                progress(f"deleting {row['index']}", 0.0, None)
            if not dry_run:
                request(store, "DELETE", f"/{row['index']}", what=f"deletion of {row['index']}", missing=None)
            gone += row["docs"]
        elif row["day"] < limit:  # the day the cutoff falls in: only its older events go
            gone += (_count_older(store, row["index"], "@timestamp", cutoff) if dry_run
                     else _delete_older(store, row["index"], "@timestamp", cutoff, progress))
    return gone


def _range(store: "SearchStore", index: str, field: str) -> dict:
    body = {"size": 0, "track_total_hits": True,
            "aggs": {"oldest": {"min": {"field": field}}, "newest": {"max": {"field": field}}}}
    try:
        answer = request(store, "POST", f"/{index}/_search", params=_IGNORE, body=body, what="status")
    except StoreError:  # the field is not a date in this index (mapped from an odd first document): count only
        answer = request(store, "POST", f"/{index}/_count", params=_IGNORE, what="status", missing={"count": 0})
        return {"count": int(answer.get("count", 0))}
    aggs = answer.get("aggregations", {})
    return {"count": int(answer.get("hits", {}).get("total", {}).get("value", 0)),
            "oldest": aggs.get("oldest", {}).get("value_as_string"),
            "newest": aggs.get("newest", {}).get("value_as_string")}


def status(store: "SearchStore") -> dict[str, dict]:
    """Per data class: how many documents, the oldest and newest date, and where they live."""
    days = event_indices(store)
    events = _range(store, store.events_pattern, "@timestamp")
    events.update(where=f"{len(days)} daily indices {store.events_pattern}", indices=len(days),
                  bytes=sum(d["bytes"] for d in days))
    out = {"events": events}
    for name in ("alerts", "dead_letters", "audit", "indicators"):
        parts = [dict(_range(store, index, field), where=f"{index} ({field})")
                 for index, field in dated_targets(store, name)]
        merged: dict[str, Any] = {"count": sum(p["count"] for p in parts),
                                  "where": ", ".join(p["where"] for p in parts)}
        olds = [p["oldest"] for p in parts if p.get("oldest")]
        news = [p["newest"] for p in parts if p.get("newest")]
        merged["oldest"] = min(olds) if olds else None
        merged["newest"] = max(news) if news else None
        out[name] = merged
    return out


# --- the engine's lifecycle policy ---------------------------------------------------------------------------------
def policy_id(store: "SearchStore") -> str:
    return f"{store.prefix}-events"


def ism_policy(prefix: str, period: timedelta) -> dict:
    """The OpenSearch ISM policy for the daily event indices: kept, then deleted at period + 1 day of index age."""
    return {"policy": {
        "description": f"SOC suite: {prefix} daily event indices deleted once their day is older than the "
                       f"retention period (managed by the suite: soc store status)",
        "default_state": "hot",
        "states": [
            {"name": "hot", "actions": [],
             "transitions": [{"state_name": "delete", "conditions": {"min_index_age": engine_index_age(period)}}]},
            {"name": "delete", "actions": [{"delete": {}}], "transitions": []},
        ],
        # New daily indices get the policy as they are created; existing ones are added by install_lifecycle.
        "ism_template": [{"index_patterns": [f"{prefix}-events-*"], "priority": 100}],
    }}


def ilm_policy(period: timedelta) -> dict:
    """The Elasticsearch ILM policy: the same, with the index's age counted from the day in its name
    (index.lifecycle.parse_origination_date), so a day replayed late is not kept a day longer than it should be."""
    return {"policy": {
        "_meta": {"managed_by": "soc suite (soc store status)"},
        "phases": {"hot": {"min_age": "0ms", "actions": {}},
                   "delete": {"min_age": engine_index_age(period), "actions": {"delete": {}}}},
    }}


def _ism_available(store: "SearchStore") -> tuple[bool, dict | None, str]:
    """(the ISM plugin is on the nodes, our policy as stored or None, why not when it is not)."""
    nodes = request(store, "GET", "/_nodes/plugins", what="plugin list",
                    params={"filter_path": "nodes.*.plugins.name"}) or {}
    names = {p.get("name") for node in nodes.get("nodes", {}).values() for p in node.get("plugins", [])}
    if "opensearch-index-management" not in names:
        return False, None, ("the cluster has no ISM plugin (opensearch-index-management): the suite deletes "
                             "expired event indices itself, on its schedule")
    found = request(store, "GET", f"/_plugins/_ism/policies/{policy_id(store)}", what="ISM policy", missing=None)
    return True, found, ""


def _ism_delete_age(stored: dict | None) -> str | None:
    """The min_index_age of a stored policy's transition to deletion (ISM adds its own defaults to what was put, such
    as each action's retry, so the policy is compared by what matters rather than as a whole)."""
    for state in (stored or {}).get("policy", {}).get("states", []):
        for transition in state.get("transitions", []):
            if transition.get("state_name") == "delete":
                return transition.get("conditions", {}).get("min_index_age")
    return None


def lifecycle(store: "SearchStore", period: timedelta | None, *, install: bool) -> dict:
    """Install (when ``install``) and describe the engine's policy for the daily event indices."""
    pattern = f"{store.prefix}-events-*"
    if store.engine.flavour == "opensearch":
        available, stored, why = _ism_available(store)
        out: dict[str, Any] = {"engine": "OpenSearch ISM", "available": available, "policy": policy_id(store)}
        if not available:
            return dict(out, note=why)
        if install and period is not None:
            wanted = ism_policy(store.prefix, period)
            if stored is None:
                request(store, "PUT", f"/_plugins/_ism/policies/{policy_id(store)}", body=wanted, what="ISM policy")
            elif _ism_delete_age(stored) != engine_index_age(period):
                request(store, "PUT", f"/_plugins/_ism/policies/{policy_id(store)}", body=wanted, what="ISM policy",
                        params={"if_seq_no": str(stored["_seq_no"]), "if_primary_term": str(stored["_primary_term"])})
                # Indices already managed keep the version they started with until told to change.
                request(store, "POST", f"/_plugins/_ism/change_policy/{pattern}", what="ISM policy change",
                        body={"policy_id": policy_id(store)}, missing=None)
            # Indices made before the policy existed (ism_template only catches new ones); managed ones say so
            # in the answer's failures, which is not an error here.
            request(store, "POST", f"/_plugins/_ism/add/{pattern}", body={"policy_id": policy_id(store)},
                    what="ISM policy attachment", missing=None)
            stored = request(store, "GET", f"/_plugins/_ism/policies/{policy_id(store)}", what="ISM policy",
                             missing=None)
        elif install and period is None and stored is not None:  # events kept forever now: the policy must go
            request(store, "POST", f"/_plugins/_ism/remove/{pattern}", what="ISM policy removal", missing=None)
            request(store, "DELETE", f"/_plugins/_ism/policies/{policy_id(store)}", what="ISM policy", missing=None)
            stored = None
        explain = request(store, "GET", f"/_plugins/_ism/explain/{pattern}", what="ISM explain", missing={}) or {}
        managed = sum(1 for k, v in explain.items()
                      if isinstance(v, dict) and (v.get("index.plugins.index_state_management.policy_id")
                                                  or v.get("policy_id")) == policy_id(store))
        return dict(out, installed=stored is not None, delete_index_after=_ism_delete_age(stored),
                    managed_indices=managed)
    # Elasticsearch ILM (not run against a real Elasticsearch here: the test nodes are OpenSearch).
    stored = request(store, "GET", f"/_ilm/policy/{policy_id(store)}", what="ILM policy", missing=None)
    out = {"engine": "Elasticsearch ILM", "available": True, "policy": policy_id(store)}
    if install and period is not None:
        request(store, "PUT", f"/_ilm/policy/{policy_id(store)}", body=ilm_policy(period), what="ILM policy")
        if event_indices(store):
            request(store, "PUT", f"/{pattern}/_settings", what="ILM attachment", params={"allow_no_indices": "true"},
                    body={"index.lifecycle.name": policy_id(store), "index.lifecycle.parse_origination_date": True})
        stored = request(store, "GET", f"/_ilm/policy/{policy_id(store)}", what="ILM policy", missing=None)
    elif install and period is None and stored is not None:
        request(store, "POST", f"/{pattern}/_ilm/remove", what="ILM removal", missing=None)
        request(store, "DELETE", f"/_ilm/policy/{policy_id(store)}", what="ILM policy", missing=None)
        stored = None
    delete_after = None
    if stored:
        delete_after = (stored.get(policy_id(store), {}).get("policy", {}).get("phases", {}).get("delete", {})
                        .get("min_age"))
    return dict(out, installed=stored is not None, delete_index_after=delete_after)
