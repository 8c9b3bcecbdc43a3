"""Event search through the API on both store backends (SQLite and the real OpenSearch node): time range, agency,
ECS field filters and free text, cursor pagination, and an agency key pinned to its own events."""

from __future__ import annotations

import pytest

from tests.api_fixtures import AGENCY_A, AGENCY_B, call, client_for, event_doc, keys_for, running_suite


@pytest.fixture(params=["sqlite", "opensearch"])
def api(request, tmp_path):
    if request.param == "sqlite":
        context = running_suite(tmp_path)
    else:
        url, prefix = request.getfixturevalue("opensearch_prefix")
        context = running_suite(tmp_path, store_url=url, index_prefix=prefix)
    with context as suite:
        suite.store.write_events([event_doc(i, AGENCY_A if i % 2 else AGENCY_B, marker=f"m{i % 3}")
                                  for i in range(30)])
        suite.store.refresh()
        with client_for(suite) as client:
            yield client, keys_for(suite.store)


def _all(client, key, **params) -> list[str]:
    ids, cursor = [], None
    while True:
        page = call(client, "GET", "/api/v1/events", key, params={**params, **({"cursor": cursor} if cursor else {})})
        assert page.status_code == 200, page.text
        body = page.json()
        ids += [e["event"]["id"] for e in body["events"]]
        cursor = body["next_cursor"]
        if not cursor:
            return ids


def test_search_filters_and_pages(api):
    client, keys = api
    everything = _all(client, keys["analyst"], limit=7)
    assert len(everything) == 30 == len(set(everything))
    window = _all(client, keys["analyst"], start="2026-11-22T10:10:00Z", end="2026-11-22T10:20:00Z", limit=4)
    assert window == [f"{AGENCY_A if i % 2 else AGENCY_B}-e{i}" for i in range(10, 20)]
    assert _all(client, keys["analyst"], q="source.ip:198.51.100.7") == [f"{AGENCY_A}-e7"]
    assert _all(client, keys["analyst"], q="source.port:40008 user.name:root") == [f"{AGENCY_B}-e8"]
    marked = _all(client, keys["analyst"], q="m2", agency=AGENCY_A)
    assert marked == [f"{AGENCY_A}-e{i}" for i in range(30) if i % 2 and i % 3 == 2]
    own = _all(client, keys[AGENCY_B], limit=5)
    assert own == [f"{AGENCY_B}-e{i}" for i in range(0, 30, 2)]
    assert _all(client, keys[AGENCY_B], q=f"organization.id:{AGENCY_A}") == []
    assert call(client, "GET", "/api/v1/events", keys[AGENCY_B], params={"agency": AGENCY_A}).status_code == 403
    assert call(client, "GET", f"/api/v1/events/{AGENCY_A}-e1", keys[AGENCY_B]).status_code == 404
    assert call(client, "GET", f"/api/v1/events/{AGENCY_A}-e1", keys[AGENCY_A]).json()["event"]["id"] == \
        f"{AGENCY_A}-e1"
