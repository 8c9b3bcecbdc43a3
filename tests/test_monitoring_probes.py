"""Probes against servers this test starts on 127.0.0.1: an HTTP server, a TLS server with a self-signed certificate
the test makes, an SSH-banner server and a closed port. The inventory is the test's own; the sample inventory's
addresses are never probed."""

from __future__ import annotations

import asyncio
import http.server
import os
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client import generate_latest

from collectors import monitoring
from collectors.sources import probes
from inventory.lookup import Inventory
from inventory.model import InventoryDocument
from suite.runtime import Suite, SuiteThread
from soc.storage.base import EventQuery
from tests.conftest import make_settings

BANNER = "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3"


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (the stdlib's name)
        code = 503 if self.server.server_port == getattr(self.server, "failing_port", -1) else 200
        body = b"ok" if code == 200 else b"down for maintenance"
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def _run(target_list, timeout):
    return asyncio.run(probes.run_probes(target_list, timeout=timeout))


def _serve(server) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return thread


def _self_signed(folder: Path, days: int) -> tuple[Path, Path]:
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", str(days), "-subj", "/CN=lo-web.test/O=SOC test"], check=True,
                   capture_output=True, timeout=60)
    return cert, key


class _BannerServer:
    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while self.running:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"Welcome to the bastion\r\n" + BANNER.encode() + b"\r\n")
                time.sleep(0.05)

    def close(self):
        self.running = False
        self.sock.close()


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    folder = tmp_path_factory.mktemp("probes")
    web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    failing = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    failing.failing_port = failing.server_port
    tls = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    cert, key = _self_signed(folder, days=10)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    tls.socket = context.wrap_socket(tls.socket, server_side=True)
    for server in (web, failing, tls):
        _serve(server)
    banner = _BannerServer()
    with socket.socket() as s:  # a port that was free a moment ago and has nobody listening
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    yield {"http": web.server_port, "failing": failing.server_port, "tls": tls.server_port, "ssh": banner.port,
           "closed": closed}
    for server in (web, failing, tls):
        server.shutdown()
        server.server_close()
    banner.close()


def loopback_inventory(ports: dict) -> Inventory:
    document = {
        "province": {"id": "province", "name_vi": "Tỉnh thử", "name_en": "Test province", "kind": "province"},
        "agencies": [{"id": "t-a", "name_vi": "Sở thử", "name_en": "Test department", "kind": "department",
                      "networks": [{"cidr": "127.0.0.0/8"}]}],
        "assets": [
            {"id": "lo-web", "hostname": "lo-web.test", "kind": "server", "agency": "t-a",
             "addresses": ["127.0.0.1"], "services": [f"http:{ports['http']}", f"https:{ports['tls']}",
                                                       f"ssh:{ports['ssh']}", "snmp"]},
            {"id": "lo-broken", "hostname": "lo-broken", "kind": "server", "agency": "t-a",
             "addresses": ["127.0.0.2"], "services": [f"http:{ports['failing']}", f"tcp:{ports['closed']}",
                                                       f"ssh:{ports['closed']}"]},
        ],
    }
    # lo-broken's servers listen on 127.0.0.1 only, so 127.0.0.2 (still loopback) refuses every connection;
    # its failing HTTP server is probed through lo-web's address below.
    return Inventory(InventoryDocument.model_validate(document))


def test_targets_come_from_services_and_ignore_unknown_ones(servers):
    inventory = loopback_inventory(servers)
    found = {(t.asset, t.check, t.port) for t in probes.targets(inventory)}
    assert ("lo-web", "http", servers["tls"]) in found and ("lo-web", "tls", servers["tls"]) in found
    assert ("lo-web", "ssh_banner", servers["ssh"]) in found and ("lo-web", "icmp", 0) in found
    assert not any(check == "snmp" for _, check, _ in found)
    assert {(t.asset, t.check) for t in probes.targets(inventory, icmp=False)} >= {("lo-broken", "tcp")}
    assert not any(t.check == "icmp" for t in probes.targets(inventory, icmp=False))


def test_probes_report_what_the_servers_do(servers):
    inventory = loopback_inventory(servers)
    results = {(r.target.asset, r.target.check, r.target.port): r
               for r in _run(probes.targets(inventory), 3)}
    web = results[("lo-web", "http", servers["http"])]
    assert web.up and web.status_code == 200 and 0 < web.latency < 3
    https = results[("lo-web", "http", servers["tls"])]
    assert https.up and https.status_code == 200  # self-signed: the service still answers
    cert = results[("lo-web", "tls", servers["tls"])]
    assert cert.up and 9.9 < cert.days_left <= 10.0 and "CN=lo-web.test" in cert.subject
    assert cert.issuer == cert.subject  # self-signed
    ssh = results[("lo-web", "ssh_banner", servers["ssh"])]
    assert ssh.up and ssh.banner == BANNER
    for check in ("tcp", "ssh_banner"):
        down = results[("lo-broken", check, servers["closed"])]
        assert not down.up and "ConnectionRefused" in down.error
    icmp = results[("lo-web", "icmp", 0)]
    if os.geteuid() == 0:
        assert icmp.up and icmp.latency < 1  # root may open a raw ICMP socket: loopback answers
    else:
        assert icmp.up or icmp.error.startswith("not_permitted")


def test_http_server_errors_count_as_down(servers):
    target = probes.Target("lo-web", "t-a", "lo-web", "127.0.0.1", "http", servers["failing"], "http")
    result = (_run([target], 3))[0]
    assert not result.up and result.status_code == 503 and result.error == "HTTP 503"
    metrics = generate_latest().decode()
    assert f'soc_probe_http_status{{agency="t-a",asset="lo-web",port="{servers["failing"]}"}} 503.0' in metrics
    assert f'soc_probe_up{{agency="t-a",asset="lo-web",check="http",port="{servers["failing"]}"}} 0.0' in metrics


def test_a_server_that_never_answers_times_out(servers):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)  # accepts the connection, never says anything
    try:
        target = probes.Target("lo-web", "t-a", "lo-web", "127.0.0.1", "ssh_banner", silent.getsockname()[1])
        started = time.monotonic()
        result = (_run([target], 0.5))[0]
        assert not result.up and result.error == "timeout" and time.monotonic() - started < 3
    finally:
        silent.close()


def test_the_suite_probes_on_schedule_stores_ecs_events_and_exports_metrics(servers, tmp_path):
    settings = make_settings(tmp_path, SOC__EXTENSIONS="[]")
    suite = Suite(settings)
    suite.inventory_holder.replace(loopback_inventory(servers))  # the test's own inventory: only loopback is probed
    config = monitoring.MonitoringConfig(probes=monitoring.ProbesConfig(enabled=True, interval_seconds=0.5,
                                                                        timeout_seconds=2))
    suite.add_extension(monitoring.register, config)
    runner = SuiteThread(suite).start()
    try:
        deadline = time.monotonic() + 20
        events = []
        while time.monotonic() < deadline:
            events = suite.store.search_events(EventQuery(terms={"event.dataset": "soc.probe"}, limit=1000))
            if len({e["soc"]["probe"]["check"] for e in events}) >= 5:
                break
            time.sleep(0.2)
        by_check = {(e["soc"]["asset"]["id"], e["soc"]["probe"]["check"]): e for e in events}
        tls = by_check[("lo-web", "tls")]
        assert tls["event"]["outcome"] == "success" and tls["organization"]["id"] == "t-a"
        assert tls["tls"]["server"]["not_after"] > tls["@timestamp"] and tls["destination"]["port"] == servers["tls"]
        assert by_check[("lo-web", "ssh_banner")]["soc"]["probe"]["banner"] == BANNER
        refused = by_check[("lo-broken", "tcp")]
        assert refused["event"]["outcome"] == "failure" and "ConnectionRefused" in refused["soc"]["probe"]["error"]
        text = httpx.get(f"http://127.0.0.1:{suite.bound['api']}/metrics", timeout=10).text
        assert f'soc_probe_up{{agency="t-a",asset="lo-web",check="ssh_banner",port="{servers["ssh"]}"}} 1.0' in text
        expiry = next(line for line in text.splitlines() if line.startswith("soc_tls_cert_expiry_timestamp_seconds{")
                      and f'port="{servers["tls"]}"' in line)
        assert 9.9 * 86400 < float(expiry.split()[-1]) - time.time() <= 10 * 86400
    finally:
        runner.stop()


def test_probes_are_off_unless_enabled(tmp_path):
    suite = Suite(make_settings(tmp_path, SOC__EXTENSIONS="[]"))  # the sample inventory: data only, never probed
    before = len(suite.registry.background)
    suite.add_extension(monitoring.register, monitoring.MonitoringConfig())
    assert monitoring.ProbesConfig().enabled is False
    assert len(suite.registry.background) - before == 2  # self-monitoring and source health, no probe loop
    suite.close()
