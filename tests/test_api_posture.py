"""Posture per agency and for the province (real events through the pipeline, real alerts, analysts' actions), what
an agency key may see of it, and the scheduled push to a national-centre endpoint on loopback: signed, retried until
accepted."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from collectors.message import RawMessage
from soc_api.posture_push import push_once, verify
from soc_api.settings import ApiSettings, PostureConfig
from tests.api_fixtures import AGENCY_A, AGENCY_B, call, client_for, keys_for, running_suite

SIGNING_KEY = "test-shared-secret-with-the-national-centre"


class Receiver:
    """The national centre's endpoint, played on loopback: refuses the first ``fail`` pushes with 503."""

    def __init__(self, fail: int = 0):
        self.fail = fail
        self.received: list[tuple[dict, bytes, bool]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                valid = verify(body, SIGNING_KEY.encode(), self.headers["X-SOC-Timestamp"],
                               self.headers["X-SOC-Signature"])
                outer.received.append((dict(self.headers), body, valid))
                status = 503 if len(outer.received) <= outer.fail else (200 if valid else 401)
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"ok" if status == 200 else b"try later")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/posture"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def _ssh_lines(suite, host: str, attacker: str, failures: int) -> list[bytes]:
    now = datetime.now(timezone.utc).astimezone(suite.settings.tz)
    lines = []
    for i in range(failures):
        at = now - timedelta(seconds=failures + 1 - i)
        lines.append(f"<38>{at:%b} {at.day:2d} {at:%H:%M:%S} {host} sshd[{5000 + i}]: Failed password for root from "
                     f"{attacker} port {40000 + i} ssh2".encode())
    return lines


@pytest.fixture(scope="module")
def posture_suite(tmp_path_factory, monkeypatch_module):
    monkeypatch_module.setenv("TEST_POSTURE_KEY", SIGNING_KEY)
    with Receiver() as receiver:
        settings = ApiSettings(posture=PostureConfig(push_url=receiver.url, signing_key_env="TEST_POSTURE_KEY",
                                                     push_interval_seconds=3600, retry_initial_seconds=0.05,
                                                     source_intervals={"linux-auth": 600}))
        with running_suite(tmp_path_factory.mktemp("posture"), api=settings) as suite:
            suite.process([RawMessage(data=line, transport="tcp", peer="10.20.10.10")
                           for line in _ssh_lines(suite, "so-tttt-web-01", "203.0.113.66", 6)])
            suite.store.put_documents("playbook_runs", [
                {"id": "run-1", "agency": AGENCY_A, "state": "succeeded", "created": datetime.now(
                    timezone.utc).isoformat()},
                {"id": "run-2", "agency": AGENCY_B, "state": "rejected", "created": datetime.now(
                    timezone.utc).isoformat()}])
            suite.store.refresh()
            with client_for(suite) as client:
                yield suite, client, keys_for(suite.store), receiver


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_posture_counts_sources_alerts_times_techniques_and_runs(posture_suite):
    suite, client, keys, _ = posture_suite
    alerts = call(client, "GET", "/api/v1/alerts", keys["analyst"], params={"agency": AGENCY_A}).json()["alerts"]
    brute = next(a for a in alerts if a["rule"]["title"] == "SSH Brute Force")
    call(client, "POST", f"/api/v1/alerts/{brute['id']}/acknowledge", keys["analyst"])
    call(client, "POST", f"/api/v1/alerts/{brute['id']}/status", keys["analyst"],
         json={"status": "closed", "reason": "true_positive"})
    doc = call(client, "GET", "/api/v1/posture", keys["national_centre"]).json()
    by_id = {a["id"]: a for a in doc["agencies"]}
    a = by_id[AGENCY_A]
    assert a["log_sources"] == {"expected": 1, "reporting": 1, "silent": []}
    b = by_id[AGENCY_B]
    assert b["log_sources"]["expected"] >= 1 and b["log_sources"]["reporting"] == 0
    assert b["log_sources"]["silent"][0]["last_seen"] is None
    assert a["events_total"] == 6 and a["events_per_second"] > 0
    open_now = sum(a["open_alerts"].values())
    assert open_now == len([x for x in alerts if x["status"] == "new"]) - 1  # the brute force is closed
    assert a["mean_time_to_acknowledge_seconds"] is not None and a["mean_time_to_resolve_seconds"] is not None
    assert a["mean_time_to_resolve_seconds"] >= a["mean_time_to_acknowledge_seconds"]
    assert "T1110.001" in a["attack"]["seen"] and "T1110.001" in doc["attack_covered"]
    assert a["playbook_runs"] == {"succeeded": 1} and b["playbook_runs"] == {"rejected": 1}
    province = doc["province"]
    assert province["log_sources"]["reporting"] == 1 and province["log_sources"]["expected"] >= 40
    assert province["playbook_runs"] == {"succeeded": 1, "rejected": 1}
    assert doc["rule_health"]["sigma_loaded"] >= 5


def test_an_agency_sees_only_its_own_posture(posture_suite):
    _, client, keys, _ = posture_suite
    own = call(client, "GET", "/api/v1/posture", keys[AGENCY_B]).json()
    assert [a["id"] for a in own["agencies"]] == [AGENCY_B] and "province" not in own
    assert call(client, "GET", "/api/v1/posture", keys[AGENCY_B], params={"agency": AGENCY_A}).status_code == 403


def test_scheduled_push_runs_at_start_and_is_signed(posture_suite):
    suite, client, keys, receiver = posture_suite
    deadline = time.monotonic() + 30
    while not receiver.received and time.monotonic() < deadline:
        time.sleep(0.1)
    headers, body, valid = receiver.received[0]
    assert valid and json.loads(body)["province"]["agencies"] >= 20
    pushes = call(client, "GET", "/api/v1/posture/pushes", keys["national_centre"]).json()
    assert pushes and pushes[0]["status"] == "accepted" and pushes[0]["attempts"] == 1


def test_push_is_retried_until_accepted_and_tampering_is_detected(posture_suite):
    suite, _, _, _ = posture_suite
    with Receiver(fail=2) as flaky:
        original = suite.settings.soc_api
        suite.settings.soc_api = original.model_copy(update={"posture": original.posture.model_copy(
            update={"push_url": flaky.url})})
        try:
            async def go():
                async with httpx.AsyncClient() as http:
                    return await push_once(suite, http)

            record = asyncio.run(go())
        finally:
            suite.settings.soc_api = original
    assert record["status"] == "accepted" and record["attempts"] == 3
    assert [r[2] for r in flaky.received] == [True, True, True]
    ids = {r[0]["X-SOC-Document-Id"] for r in flaky.received}
    assert ids == {record["id"]}  # the same document, retried
    headers, body, _ = flaky.received[-1]
    tampered = body.replace(b'"events_total":6', b'"events_total":0')
    assert tampered != body
    assert not verify(tampered, SIGNING_KEY.encode(), headers["X-SOC-Timestamp"], headers["X-SOC-Signature"])
