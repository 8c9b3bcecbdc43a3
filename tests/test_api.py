"""API keys, roles and tenancy on the alert endpoints, over real HTTP against a running suite."""

from __future__ import annotations

import time

import httpx
import pytest

from suite.runtime import Suite, SuiteThread
from soc_api.keys import KeyCreationError, create_key, revoke_key
from tests.conftest import make_settings


def _alert(i: int, agency: str) -> dict:
    ts = f"2026-11-22T10:{i:02d}:00.000Z"
    return {"id": f"a{i}", "fingerprint": f"f{i}", "status": "new", "severity": "high", "summary": "s",
            "organization": {"id": agency}, "rule": {"id": "r", "name": "r", "title": "R", "type": "rule"},
            "first_seen": ts, "last_seen": ts, "count": 1, "evidence": [f"e{i}"], "labels": {},
            "entities": {}, "threat": {"tactic": [], "technique": []}}


def _event(i: int, agency: str) -> dict:
    return {"@timestamp": f"2026-11-22T10:{i:02d}:00.000Z", "event": {"id": f"e{i}", "original": f"line {i}"},
            "organization": {"id": agency}}


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    runner = SuiteThread(Suite(make_settings(tmp_path_factory.mktemp("api")))).start()
    store = runner.suite.store
    store.write_events([_event(i, "so-a" if i < 3 else "so-b") for i in range(6)])
    store.upsert_alerts([_alert(i, "so-a" if i < 3 else "so-b") for i in range(6)])
    keys = {
        "analyst": create_key(store, "analyst")[0],
        "agency_a": create_key(store, "agency", agency="so-a")[0],
        "agency_b": create_key(store, "agency", agency="so-b")[0],
        "expired": create_key(store, "analyst", expires_in_days=1e-6)[0],
    }
    revoked, record = create_key(store, "analyst")
    revoke_key(store, record["id"])
    keys["revoked"] = revoked
    time.sleep(0.2)  # let the expired key expire
    yield httpx.Client(base_url=f"http://127.0.0.1:{runner.suite.bound['api']}"), keys
    runner.stop()


def _get(client, path, key=None, **params):
    return client.get(path, headers={"X-API-Key": key} if key else {}, params=params)


def test_health_and_openapi_need_no_key(api):
    client, keys = api
    # anyone may ask whether the suite is up; what it runs on and where is for the SOC's own keys
    assert client.get("/api/v1/health").json() == {"status": "ok"}
    health = _get(client, "/api/v1/health", keys["analyst"]).json()
    assert health["status"] == "ok" and health["store"]["backend"] == "sqlite" and health["rules_loaded"] >= 5
    assert "/api/v1/alerts" in client.get("/openapi.json").json()["paths"]
    assert client.get("/docs").status_code == 200


@pytest.mark.parametrize("key", [None, "garbage", "soc_0000_nope", "expired", "revoked"])
def test_bad_keys_are_refused(api, key):
    client, keys = api
    response = _get(client, "/api/v1/alerts", keys.get(key, key))
    assert response.status_code == 401
    assert response.json()["detail"]


def test_bearer_token_works_too(api):
    client, keys = api
    response = client.get("/api/v1/alerts", headers={"Authorization": f"Bearer {keys['analyst']}"})
    assert response.status_code == 200


def test_analyst_sees_every_agency_and_can_filter(api):
    client, keys = api
    alerts = _get(client, "/api/v1/alerts", keys["analyst"]).json()["alerts"]
    assert sorted(a["id"] for a in alerts) == [f"a{i}" for i in range(6)]
    only_b = _get(client, "/api/v1/alerts", keys["analyst"], agency="so-b").json()["alerts"]
    assert sorted(a["id"] for a in only_b) == ["a3", "a4", "a5"]


def test_agency_key_sees_only_its_own(api):
    client, keys = api
    own = _get(client, "/api/v1/alerts", keys["agency_a"]).json()["alerts"]
    assert sorted(a["id"] for a in own) == ["a0", "a1", "a2"]
    assert _get(client, "/api/v1/alerts", keys["agency_a"], agency="so-b").status_code == 403
    assert _get(client, "/api/v1/alerts/a4", keys["agency_a"]).status_code == 404
    one = _get(client, "/api/v1/alerts/a1", keys["agency_a"]).json()
    assert one["alert"]["id"] == "a1" and [e["event"]["id"] for e in one["events"]] == ["e1"]


def test_cursor_pagination_walks_all_alerts_once(api):
    client, keys = api
    seen, cursor = [], None
    while True:
        params = {"limit": 4, **({"cursor": cursor} if cursor else {})}
        page = _get(client, "/api/v1/alerts", keys["agency_b"], **params).json()
        seen += [a["id"] for a in page["alerts"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == ["a5", "a4", "a3"]
    assert _get(client, "/api/v1/alerts", keys["analyst"], cursor="!!notacursor").status_code == 400


def test_bad_parameters_get_a_4xx(api):
    client, keys = api
    assert _get(client, "/api/v1/alerts", keys["analyst"], severity="apocalyptic").status_code == 422
    assert _get(client, "/api/v1/alerts", keys["analyst"], limit=10**9).status_code == 422


def test_key_creation_rules(tmp_path):
    from soc.storage import open_store

    store = open_store(make_settings(tmp_path))
    with pytest.raises(KeyCreationError):
        create_key(store, "root")
    with pytest.raises(KeyCreationError):
        create_key(store, "agency")
    with pytest.raises(KeyCreationError):
        create_key(store, "analyst", agency="so-a")
    with pytest.raises(KeyCreationError):
        create_key(store, "agency", agency="ghost", known_agencies={"so-a"})
    key, record = create_key(store, "agency", agency="so-a", known_agencies={"so-a"})
    assert key.split("_")[2] not in str(store.get_api_key(record["id"]))  # only the hash is kept
    store.close()
