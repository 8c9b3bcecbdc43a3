"""The findings API: listing with filters and a cursor, tenancy (an agency key sees its own agency's findings only,
another agency's answers as missing), an analyst's status change with a reason (audited), and the lifecycle rules."""

from __future__ import annotations

import datetime as dt

from assessment.findings import FINDINGS, Observation, record
from assessment.scope import Target
from assessment.settings import AssessmentSettings
from soc.storage.base import DocumentQuery
from tests.api_fixtures import AGENCY_A, AGENCY_B, call, client_for, keys_for, running_suite


def seed(store) -> dict[str, list[str]]:
    settings = AssessmentSettings()
    now = dt.datetime(2026, 11, 2, tzinfo=dt.timezone.utc)
    ids = {}
    for agency in (AGENCY_A, AGENCY_B):
        target = Target("10.1.1.1", f"{agency}-srv", f"{agency}-srv", agency, ("https",))
        obs = [Observation("headers", f"443/h{i}", f"header {i} missing", "low", 443, {"tool": "httpx"})
               for i in range(3)] + [Observation("headers", "443/x", "x", "high", 443, {"tool": "httpx"})]
        record(store, settings, target, "headers", obs, {443}, now, "run-1")
        ids[agency] = [d["id"] for d in store.find_documents(FINDINGS, DocumentQuery(
            terms={"organization.id": agency}, limit=100))]
    return ids


def test_findings_api_tenancy_cursor_and_status(tmp_path):
    with running_suite(tmp_path, extensions="[soc_api.extension, assessment.service]") as suite:
        keys = keys_for(suite.store)
        ids = seed(suite.store)
        with client_for(suite) as client:
            page = call(client, "GET", "/api/v1/findings", keys["analyst"], params={"limit": 3}).json()
            assert len(page["findings"]) == 3 and page["next_cursor"]
            rest = call(client, "GET", "/api/v1/findings", keys["analyst"],
                        params={"limit": 3, "cursor": page["next_cursor"]}).json()
            assert len(rest["findings"]) == 3
            high = call(client, "GET", "/api/v1/findings", keys["analyst"], params={"severity": "high"}).json()
            assert {f["organization"]["id"] for f in high["findings"]} == {AGENCY_A, AGENCY_B}
            own = call(client, "GET", "/api/v1/findings", keys[AGENCY_A], params={"limit": 100}).json()
            assert {f["id"] for f in own["findings"]} == set(ids[AGENCY_A])
            assert call(client, "GET", "/api/v1/findings", keys[AGENCY_A],
                        params={"agency": AGENCY_B}).status_code == 403
            assert call(client, "GET", f"/api/v1/findings/{ids[AGENCY_B][0]}", keys[AGENCY_A]).status_code == 404
            assert call(client, "GET", f"/api/v1/findings/{ids[AGENCY_A][0]}", keys[AGENCY_A]).status_code == 200

            target = ids[AGENCY_A][0]
            assert call(client, "POST", f"/api/v1/findings/{target}/status", keys["analyst"],
                        json={"status": "accepted"}).status_code == 422  # a reason is required
            assert call(client, "POST", f"/api/v1/findings/{target}/status", keys[AGENCY_A],
                        json={"status": "accepted", "reason": "ours"}).status_code == 403
            done = call(client, "POST", f"/api/v1/findings/{target}/status", keys["analyst"],
                        json={"status": "false_positive", "reason": "the header is set by the WAF in front"})
            assert done.status_code == 200, done.text
            assert done.json()["status"] == "false_positive" and done.json()["status_reason"].startswith("the header")
            audit = suite.store.find_documents("audit", DocumentQuery(limit=100))
            assert any(a["outcome"] == "ok" and a["path"].endswith(f"{target}/status")
                       and "false_positive" in (a["detail"] or "") and a["organization"]["id"] == AGENCY_A
                       for a in audit)


def test_lifecycle_fixed_regression_and_false_positive(tmp_path):
    from soc.storage import store_from_url

    store = store_from_url(f"sqlite:///{tmp_path / 'soc.db'}")
    store.open()
    try:
        settings = AssessmentSettings()
        target = Target("10.1.1.1", "srv", "srv", "lab", ("ssh",))
        day = lambda n: dt.datetime(2026, 11, n, tzinfo=dt.timezone.utc)  # noqa: E731
        a = Observation("ssh", "22/mac/hmac-sha1", "weak mac", "medium", 22)
        b = Observation("ssh", "22/enc/aes128-cbc", "weak cipher", "low", 22)
        assert record(store, settings, target, "ssh", [a, b], {22}, day(1), "r1")["new"] == 2
        docs = {d["detail"]: d for d in store.find_documents(FINDINGS, DocumentQuery(limit=10))}
        assert docs[a.detail]["due"] == "2027-01-30" and docs[b.detail]["due"] == "2027-04-30"
        from assessment.findings import set_status

        store.put_documents(FINDINGS, [set_status(docs[b.detail], "false_positive", "banner only", "me", day(1))])
        # A check that did not cover port 22 (it failed) leaves everything as it is.
        assert record(store, settings, target, "ssh", [], set(), day(2), "r2")["fixed"] == 0
        counts = record(store, settings, target, "ssh", [], {22}, day(3), "r3")
        assert counts["fixed"] == 1
        docs = {d["detail"]: d for d in store.find_documents(FINDINGS, DocumentQuery(limit=10))}
        assert docs[a.detail]["status"] == "fixed" and docs[b.detail]["status"] == "false_positive"
        assert record(store, settings, target, "ssh", [a, b], {22}, day(4), "r4")["reopened"] == 1
        docs = {d["detail"]: d for d in store.find_documents(FINDINGS, DocumentQuery(limit=10))}
        assert docs[a.detail]["status"] == "open" and docs[a.detail]["regression"] is True
        assert docs[a.detail]["first_seen"].startswith("2026-11-01") and docs[a.detail]["due"] == "2027-02-02"
        assert docs[b.detail]["status"] == "false_positive"
    finally:
        store.close()
