"""Real `soc serve` processes for the tier tests: a province and a city forwarding to it, each with its own data,
ports kept across restarts (the city reconnects to the same address), killed with SIGKILL or stopped with SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import yaml

from soc.storage import open_store
from soc_api.keys import create_key
from suite.settings import load_settings
from tests.conftest import PROJECT, free_port

SOC = [sys.executable, "-m", "suite.cli", "serve", "--config"]

# The city's own inventory: An Binh City (h-an-binh in the province's inventory) and two of its communes, one the
# province knows (p-tan-an) and one it does not (x-moi). Each commune's senders come from a loopback address of its
# own, so the city attributes their lines by network as it would on the WAN.
CITY_INVENTORY = {
    "province": {"id": "h-an-binh", "name_vi": "Thành phố An Bình", "name_en": "An Binh City", "kind": "district"},
    "agencies": [
        {"id": "p-tan-an", "name_vi": "Phường Tân An", "name_en": "Tan An Ward", "kind": "commune",
         "parent": "h-an-binh", "networks": [{"cidr": "127.0.0.2/32"}]},
        {"id": "x-moi", "name_vi": "Xã Mới", "name_en": "Moi Commune", "kind": "commune", "parent": "h-an-binh",
         "networks": [{"cidr": "127.0.0.3/32"}]},
    ],
    "assets": [],
    "government_networks": ["10.0.0.0/8"],
}


class TierSuite:
    def __init__(self, directory: Path, name: str, *, store_url: str | None, index_prefix: str,
                 inventory: str | dict, tiers: dict | None = None, api: dict | None = None):
        self.directory = directory
        self.name = name
        directory.mkdir(parents=True, exist_ok=True)
        if isinstance(inventory, dict):
            path = directory / "inventory.yaml"
            path.write_text(yaml.safe_dump(inventory, allow_unicode=True), encoding="utf-8")
            inventory = str(path)
        store = {"url": store_url or f"sqlite:///{directory / 'soc.db'}", "index_prefix": index_prefix}
        self.config = directory / "soc.yaml"
        self.config.write_text(yaml.safe_dump({
            "data_dir": str(directory),
            "store": store,
            "syslog": {"host": "0.0.0.0", "udp_port": free_port(), "tcp_port": free_port()},  # nosec B104 - the
            # senders are 127.0.0.2 and 127.0.0.3; the test's own machine only (loopback).
            "api": {"host": "127.0.0.1", "port": free_port(), **(api or {})},
            "inventory": {"path": inventory},
            "pipeline": {"flush_interval_seconds": 0.05, "parse_workers": 0},
            "reports": {"schedule_enabled": False},
            "tiers": tiers or {},
        }, allow_unicode=True), encoding="utf-8")
        self.settings = load_settings(self.config, environ={})
        scheme = "https" if (api or {}).get("tls_cert_file") else "http"
        self.api = f"{scheme}://127.0.0.1:{self.settings.api.port}"
        self.proc: subprocess.Popen | None = None
        self.env: dict[str, str] = {}
        self.verify: str | bool = True  # the CA of an HTTPS suite
        self.cert: tuple[str, str] | None = None  # a client certificate, for a suite that requires one

    def _tls(self):
        """httpx's verify: the CA, with the client certificate when the suite requires one."""
        if self.cert is None:
            return self.verify
        import ssl

        context = ssl.create_default_context(cafile=self.verify if isinstance(self.verify, str) else None)
        context.load_cert_chain(*self.cert)
        return context

    def key(self, role: str, agency: str | None = None) -> str:
        store = open_store(self.settings)
        try:
            return create_key(store, role, agency=agency, name=f"tier test {role}")[0]
        finally:
            store.close()

    def start(self, timeout: float = 90.0) -> "TierSuite":
        log = (self.directory / "serve.log").open("ab")
        environ = {k: v for k, v in os.environ.items() if not k.startswith("SOC__")} | self.env
        self.proc = subprocess.Popen(SOC + [str(self.config)], stdout=log, stderr=log, env=environ, cwd=PROJECT)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log_text()
            try:
                if httpx.get(f"{self.api}/api/v1/health", timeout=1, verify=self._tls()).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"{self.name} did not come up: {self.log_text()}")

    def kill(self) -> None:
        """SIGKILL: no flush, no goodbye."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=90)

    def log_text(self) -> str:
        path = self.directory / "serve.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    # --- reading through the API ---------------------------------------------------------------------------------
    def get(self, key: str, path: str, **params) -> httpx.Response:
        return httpx.get(f"{self.api}{path}", params=params, headers={"X-API-Key": key}, timeout=30,
                         verify=self._tls())

    def post(self, key: str, path: str, body: dict) -> httpx.Response:
        return httpx.post(f"{self.api}{path}", json=body, headers={"X-API-Key": key}, timeout=30, verify=self._tls())

    def all_alerts(self, key: str, **params) -> list[dict]:
        out, cursor = [], None
        while True:
            page = self.get(key, "/api/v1/alerts", limit=500, **params, **({"cursor": cursor} if cursor else {}))
            assert page.status_code == 200, page.text
            body = page.json()
            out.extend(body["alerts"])
            cursor = body.get("next_cursor")
            if not cursor:
                return out

    def event_ids(self, key: str, **params) -> list[str]:
        out, cursor = [], None
        while True:
            page = self.get(key, "/api/v1/events", limit=1000, start="2000-01-01T00:00:00Z", **params,
                            **({"cursor": cursor} if cursor else {}))
            assert page.status_code == 200, page.text
            body = page.json()
            out.extend(e["event"]["id"] for e in body["events"])
            cursor = body.get("next_cursor")
            if not cursor:
                return out


def send_syslog(port: int, source: str, lines: list[str]) -> None:
    """Syslog over TCP from a loopback address of the sender's own (its commune's network)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((source, 0))
        sock.connect(("127.0.0.1", port))
        sock.sendall("".join(line + "\n" for line in lines).encode())


def sshd_failures(host: str, attacker: str, n: int, start: int = 0) -> list[str]:
    stamp = time.strftime("%b %d %H:%M:%S", time.localtime())
    return [f"<38>{stamp} {host} sshd[{4000 + start + i}]: Failed password for root from {attacker} port "
            f"{40000 + start + i} ssh2" for i in range(n)]


def ordinary_lines(host: str, n: int, start: int = 0) -> list[str]:
    stamp = time.strftime("%b %d %H:%M:%S", time.localtime())
    return [f"<30>{stamp} {host} cron[{100 + (start + i) % 50}]: (root) CMD (run-parts /etc/cron.hourly #{start + i})"
            for i in range(n)]


class LinkProxy:
    """The WAN link between two suites, as a TCP relay on loopback the test can cut (every connection dropped, new
    ones refused) and restore, while both suites keep running."""

    def __init__(self, target_port: int):
        import threading

        self.target_port = target_port
        self.port = free_port()
        self._threading = threading
        self._server: socket.socket | None = None
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()

    def up(self) -> "LinkProxy":
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(64)
        self._server = server
        self._threading.Thread(target=self._accept, args=(server,), daemon=True).start()
        return self

    def cut(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            try:  # wakes the thread blocked in accept(): a bare close() would leave it accepting on the socket
                server.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            server.close()
        with self._lock:
            for sock in self._open:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()
            self._open.clear()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            if self._server is not server:  # cut meanwhile: this link is down
                client.close()
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                self._threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
