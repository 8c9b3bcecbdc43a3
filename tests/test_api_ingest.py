"""POST /api/v1/ingest on a running suite (real HTTP on loopback, SQLite): the agency comes from the key, bad lines
become dead letters with reasons, limits answer 413, other roles 403, a full suite 503 with Retry-After, and a real
EVTX file shipped as Winlogbeat JSON raises the same alerts as the same file ingested from disk."""

from __future__ import annotations

import json
import threading
import uuid

import httpx
import pytest

from collectors.ingest import ingest as ingest_files
from soc.storage.base import AlertQuery, EventQuery
from soc_api.keys import create_key
from soc_api.settings import ApiSettings, IngestApiConfig, RateLimitConfig
from tests.api_fixtures import AGENCY_A, AGENCY_B, call, client_for, keys_for, running_suite
from tests.conftest import CORPUS, PROJECT, make_settings, wait_until
from tests.ingest_samples import (NXLOG_4688, OSQUERY_EVENT, OSQUERY_SNAPSHOT, WINLOGBEAT_4688, ecs_doc, line,
                                  nxlog_4625, winlogbeat7_from_evtx)

NDJSON = {"Content-Type": "application/x-ndjson"}
WINDOWS_RULES = PROJECT / "detections" / "rules" / "windows"
LINUX_RULES = PROJECT / "detections" / "rules" / "linux"


def ndjson(*docs) -> bytes:
    return b"\n".join(d if isinstance(d, bytes) else line(d) for d in docs) + b"\n"


def wait_for(predicate, timeout: float = 30.0, what: str = "condition"):
    value = wait_until(predicate, timeout)
    if not value:
        raise AssertionError(f"timed out waiting for {what}")
    return value


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    api = ApiSettings(rate_limit=RateLimitConfig(requests_per_second=1000, burst=1000),
                      ingest=IngestApiConfig(max_body_bytes=64 * 1024, max_lines=50))
    with running_suite(tmp_path_factory.mktemp("ingest-api"), api=api,
                       rule_dirs=[LINUX_RULES, WINDOWS_RULES]) as running:
        running.test_keys = keys_for(running.store)
        yield running


def post(client, key, body: bytes, headers=NDJSON, **params):
    return call(client, "POST", "/api/v1/ingest", key, content=body, headers=dict(headers), params=params)


def test_the_agency_comes_from_the_key_and_others_cannot_see_it(suite):
    keys = suite.test_keys
    marker = uuid.uuid4().hex[:10]
    batch_a = ndjson(WINLOGBEAT_4688, NXLOG_4688, OSQUERY_EVENT, OSQUERY_SNAPSHOT, ecs_doc(marker, claim=AGENCY_B),
                     *[nxlog_4625(n) for n in range(10)])
    with client_for(suite) as client:
        answer = post(client, keys[AGENCY_A], batch_a)
        assert answer.status_code == 202, answer.text
        assert answer.json() == {"accepted": 15, "bytes": len(batch_a), "agency": AGENCY_A, "status": "queued"}
        # B's key sends a document that claims to be A's.
        other = post(client, keys[AGENCY_B], ndjson(ecs_doc(marker + "-b", claim=AGENCY_A)))
        assert other.status_code == 202 and other.json()["agency"] == AGENCY_B
        assert suite.drain(30)
        suite.store.refresh()

        def events(key, q):
            response = call(client, "GET", "/api/v1/events", key, params={"q": q, "limit": 100})
            assert response.status_code == 200, response.text
            return response.json()["events"]

        mine = events(keys[AGENCY_A], f'"{marker}"')
        assert len(mine) == 1 and mine[0]["organization"]["id"] == AGENCY_A
        assert mine[0]["soc"]["claimed_agency"] == AGENCY_B
        assert json.loads(mine[0]["event"]["original"]) == ecs_doc(marker, claim=AGENCY_B)
        everything_a = suite.store.search_events(EventQuery(agency=AGENCY_A, limit=1000))
        datasets = sorted(e["event"]["dataset"] for e in everything_a
                          if e["log"]["source"]["address"].startswith("http://"))
        assert datasets.count("system.security") == 12 and datasets.count("osquery.result") == 2
        # B's key sees neither A's events nor the one B sent claiming to be A's as A's.
        seen_by_b = events(keys[AGENCY_B], f'"{marker}"')
        assert [(e["message"], e["organization"]["id"], e["soc"]["claimed_agency"]) for e in seen_by_b] == [
            (f"custom app event {marker}-b", AGENCY_B, AGENCY_A)]
        assert call(client, "GET", f"/api/v1/events/{mine[0]['event']['id']}", keys[AGENCY_B]).status_code == 404
        assert events(keys[AGENCY_B], "event.dataset:osquery.result") == []
        # Ten failed NXLog network logons from one address: the suite's RDP brute-force rule, for agency A.
        alerts = wait_for(lambda: [a for a in suite.store.list_alerts(AlertQuery(agency=AGENCY_A, limit=100))
                                   if a["rule"]["name"] == "soc_rdp_brute_force"], what="the RDP brute-force alert")
        assert alerts[0]["organization"]["id"] == AGENCY_A
        # The audit log has who sent how many lines, not what they said.
        audit = call(client, "GET", "/api/v1/audit", keys[AGENCY_A], params={"limit": 50}).json()["records"]
        sent = [r for r in audit if r["path"] == "/api/v1/ingest" and r["outcome"] == "ok"]
        assert sent and sent[0]["detail"] == f"ingest: 15 lines, {len(batch_a)} bytes for agency {AGENCY_A}"
        assert sent[0]["actor"]["role"] == "agency" and marker not in json.dumps(audit)


def test_bad_lines_are_dead_letters_with_reasons(suite):
    keys = suite.test_keys
    tag = uuid.uuid4().hex[:8]
    bad = [f'{{"broken-{tag}": '.encode(), f'["list-{tag}"]'.encode(), f'{{"unknown-{tag}": 1}}'.encode(),
           b'{"deep": ' * 40 + f'"{tag}"'.encode() + b"}" * 40, b'{"bad-utf8": "\xff' + tag.encode() + b'"}']
    with client_for(suite) as client:
        answer = post(client, keys[AGENCY_A], ndjson(*bad, OSQUERY_EVENT))
        assert answer.status_code == 202 and answer.json()["accepted"] == 6  # not rejected synchronously
    assert suite.drain(30)
    letters = [d for d in suite.store.list_dead_letters(500) if tag.encode() in d.raw]
    found = {d.raw: d for d in letters}
    assert set(found) == set(bad)
    reasons = [found[raw].reason.split(":")[0] for raw in bad]
    assert reasons == ["bad_json", "not_an_object", "unknown_shape", "too_deep", "invalid_utf8"]
    assert all(d.source.startswith(f"http://{AGENCY_A}@127.0.0.1:") for d in letters)


def test_limits_answer_413_with_the_limit(suite):
    key = suite.test_keys[AGENCY_A]
    with client_for(suite) as client:
        too_big = post(client, key, b'{"a": "' + b"x" * (65 * 1024) + b'"}\n')
        assert too_big.status_code == 413 and "65536 bytes" in too_big.json()["detail"]
        too_many = post(client, key, ndjson(*[OSQUERY_EVENT] * 51))
        assert too_many.status_code == 413 and "50 lines" in too_many.json()["detail"]

        def chunks():  # no Content-Length: the limit holds while the body streams in
            for _ in range(80):
                yield b"x" * 1024

        streamed = post(client, key, chunks())
        assert streamed.status_code == 413 and "65536" in streamed.json()["detail"]
        wrong_type = post(client, key, ndjson(OSQUERY_EVENT), headers={"Content-Type": "text/csv"})
        assert wrong_type.status_code == 415


def test_roles(suite):
    keys = suite.test_keys
    body = ndjson(OSQUERY_EVENT)
    with client_for(suite) as client:
        for role in ("analyst", "network_admin", "national_centre"):
            assert post(client, keys[role], body).status_code == 403, role
        assert post(client, None, body).status_code == 401
        # An agency key cannot name another agency.
        assert post(client, keys[AGENCY_A], body, agency=AGENCY_B).status_code == 403
        assert post(client, keys[AGENCY_A], body, agency=AGENCY_A).status_code == 202
        # An admin must name the agency explicitly, and it must exist; the audit record says on whose behalf.
        assert post(client, keys["admin"], body).status_code == 400
        assert post(client, keys["admin"], body, agency="no-such-agency").status_code == 422
        on_behalf = post(client, keys["admin"], body, agency=AGENCY_B)
        assert on_behalf.status_code == 202 and on_behalf.json()["agency"] == AGENCY_B
        audit = call(client, "GET", "/api/v1/audit", keys[AGENCY_B], params={"limit": 100}).json()["records"]
        assert any(r["actor"]["role"] == "admin" and r["detail"].endswith(f"on behalf of {AGENCY_B}")
                   and r["organization"]["id"] == AGENCY_B for r in audit if r["path"] == "/api/v1/ingest")
        # application/json is read as lines too, or as one array of documents.
        as_json = post(client, keys[AGENCY_A], json.dumps([OSQUERY_EVENT, OSQUERY_SNAPSHOT]).encode(),
                       headers={"Content-Type": "application/json"})
        assert as_json.status_code == 202 and as_json.json()["accepted"] == 2


def test_a_full_suite_answers_503_with_retry_after(tmp_path):
    """A suite whose worker is not started, with the smallest spool: the second batch does not fit."""
    import uvicorn

    from suite.runtime import Suite
    from soc_api.app import create_app

    settings = make_settings(tmp_path, SOC__PIPELINE__SPOOL_MAX_BYTES=65536, SOC__EXTENSIONS="[]",
                             SOC__DETECTIONS__SIGMA_RULE_DIRS=json.dumps([str(LINUX_RULES)]))
    suite = Suite(settings)
    server = uvicorn.Server(uvicorn.Config(create_app(suite), host="127.0.0.1", port=0, log_level="warning",
                                           access_log=False, lifespan="off"))
    server.install_signal_handlers = lambda: None
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, what="the API to start")
        port = server.servers[0].sockets[0].getsockname()[1]
        key = create_key(suite.store, "agency", agency=AGENCY_A)[0]
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            # Distinct process events filling the spool (64 KiB) so far that the next batch has no room.
            second = ndjson(WINLOGBEAT_4688, NXLOG_4688)
            per_line = len(line({**OSQUERY_EVENT, "unixTime": 1714617000, "counter": 100})) + 64
            count = (65536 - len(second) // 2) // per_line
            filler = [{**OSQUERY_EVENT, "unixTime": OSQUERY_EVENT["unixTime"] + i, "counter": 100 + i}
                      for i in range(count)]
            first = post(client, key, ndjson(*filler))
            assert first.status_code == 202
            full = post(client, key, ndjson(WINLOGBEAT_4688, NXLOG_4688))
            assert full.status_code == 503 and full.headers["Retry-After"] == "5"
            assert "retry" in full.json()["detail"]
            assert suite.intake.spool.depth() == count  # nothing of the refused batch was kept
            suite.intake.start()
            assert suite.drain(30)
            again = post(client, key, ndjson(WINLOGBEAT_4688, NXLOG_4688))
            assert again.status_code == 202
            assert suite.drain(30)
        assert suite.store.count_events(AGENCY_A) == count + 2
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        if suite.intake._worker is not None:
            suite.intake._stopping.set()
            suite.intake._worker.join(timeout=30)
        suite.close()
        suite.close()


EVTX = [CORPUS / "evtx-attack-samples" / "Execution" / "exec_persist_rundll32_mshta_scheduledtask_sysmon_1_3_11.evtx",
        CORPUS / "evtx-attack-samples" / "Defense Evasion" / "DE_1102_security_log_cleared.evtx"]
SIGMAHQ_WINDOWS = [CORPUS / "sigmahq" / "rules" / "windows" / d for d in ("builtin", "process_creation")]


def _alerts(store) -> list[tuple[str, int, tuple]]:
    alerts = store.list_alerts(AlertQuery(limit=1000))
    return sorted((a["rule"]["title"], a["count"], a["organization"]["id"]) for a in alerts)


def _by_record(store) -> dict[str, dict]:
    return {e["winlog"]["record_id"] + e["winlog"]["channel"]: e
            for e in store.search_events(EventQuery(limit=10_000)) if "winlog" in e}


def test_evtx_as_winlogbeat_over_http_raises_the_same_alerts_as_the_file(tmp_path):
    import evtx

    # The EVTX path: the files ingested from disk, as `soc ingest --agency` does.
    with running_suite(tmp_path / "file", rule_dirs=SIGMAHQ_WINDOWS, extensions="[]") as from_file:
        summary = ingest_files(from_file, EVTX, fmt=None, agency=AGENCY_A, batch_size=100)
        assert not summary.failed and summary.events > 20
        file_alerts, file_events = _alerts(from_file.store), _by_record(from_file.store)
    # The same records as Winlogbeat 7 ships them, over HTTP with agency A's key.
    docs = [winlogbeat7_from_evtx(json.loads(r["data"])) for path in EVTX
            for r in evtx.PyEvtxParser(str(path), number_of_threads=1).records_json()]
    assert len(docs) == summary.events
    with running_suite(tmp_path / "http", rule_dirs=SIGMAHQ_WINDOWS, extensions="[]") as over_http:
        key = create_key(over_http.store, "agency", agency=AGENCY_A)[0]
        with client_for(over_http) as client:
            answer = post(client, key, ndjson(*docs))
            assert answer.status_code == 202 and answer.json()["accepted"] == len(docs)
        assert over_http.drain(60)
        assert over_http.store.count_dead_letters() == 0
        http_alerts, http_events = _alerts(over_http.store), _by_record(over_http.store)
    assert len({title for title, _, _ in file_alerts}) >= 5, file_alerts
    assert http_alerts == file_alerts
    # Each event in the same shape: the winlog object and the ECS fields the parsers derive.
    assert set(http_events) == set(file_events)
    for record, event in file_events.items():
        other = http_events[record]
        # Everything the EVTX path has, equal (Winlogbeat adds metadata of its own, such as winlog.api).
        assert {k: other["winlog"].get(k) for k in event["winlog"]} == event["winlog"], record
        for field in ("@timestamp", "event", "process", "user", "host", "organization", "file"):
            if field == "event":
                keep = ("code", "category", "type", "action", "outcome", "dataset", "provider")
                assert {k: other["event"].get(k) for k in keep} == {k: event["event"].get(k) for k in keep}
            elif field == "host":
                assert other["host"]["name"].lower() == event["host"]["name"].lower()
            else:
                assert other.get(field) == event.get(field), (record, field)
