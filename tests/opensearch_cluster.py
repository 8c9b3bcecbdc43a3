"""A real OpenSearch cluster of several nodes for tests: scripts/opensearch.sh starts each node as its own JVM on
127.0.0.1 (node i: HTTP port PORT+i-1, transport PORT+100+i-1, data in DIR/node_i), and kills or restarts one node
(kill-node: SIGKILL; start-node: on its data). The fixture that shares one cluster between tests is
``opensearch_cluster`` in tests/conftest.py."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
SCRIPT = PROJECT / "scripts" / "opensearch.sh"
CACHE = PROJECT / ".cache" / "opensearch"


class Cluster:
    def __init__(self, port: int, nodes: int, data: Path, heap: str | None = None):
        self.port, self.nodes, self.data, self.heap = port, nodes, data, heap
        self.running = False

    # --- addresses ------------------------------------------------------------------------------------------------
    def http_port(self, node: int) -> int:
        return self.port + node - 1

    @property
    def url(self) -> str:
        """The store URL naming node 1."""
        return f"opensearch://127.0.0.1:{self.port}"

    @property
    def hosts(self) -> list[str]:
        """The other nodes, as store.hosts takes them."""
        return [f"127.0.0.1:{self.http_port(i)}" for i in range(2, self.nodes + 1)]

    # --- the script ---------------------------------------------------------------------------------------------
    def _script(self, *args: str, timeout: float = 400) -> str:
        env = dict(os.environ)
        if self.heap:
            env["OPENSEARCH_HEAP"] = self.heap
        done = subprocess.run([str(SCRIPT), *args, "--port", str(self.port)], capture_output=True, text=True,
                              timeout=timeout, env=env)
        assert done.returncode == 0, f"opensearch.sh {' '.join(args)}: {done.stdout}\n{done.stderr}"
        return done.stdout

    def start(self) -> None:
        self._script("start", "--nodes", str(self.nodes), "--dir", str(self.data))
        self.running = True

    def stop(self) -> None:
        self.running = False
        subprocess.run([str(SCRIPT), "stop", "--port", str(self.port)], capture_output=True, timeout=120)

    def kill_node(self, node: int) -> None:
        """SIGKILL: no shutdown of any kind, as when a machine loses power."""
        self._script("kill-node", "--node", str(node), timeout=60)

    def start_node(self, node: int) -> None:
        """Node ``node`` again on its data; returns once it has joined the cluster."""
        self._script("start-node", "--node", str(node))

    def status(self) -> str:
        return self._script("status", timeout=60)

    # --- what the engine and the machine say --------------------------------------------------------------------
    def health(self, node: int, query: str = "", timeout: float = 5.0) -> dict | None:
        """``_cluster/health`` as node ``node`` answers it, None when it does not answer."""
        url = f"http://127.0.0.1:{self.http_port(node)}/_cluster/health{query}"
        try:
            # no proxy: the cluster is on loopback, and only there
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            with opener.open(url, timeout=timeout) as answer:
                return json.load(answer)
        except (OSError, urllib.error.URLError, ValueError):
            return None

    def pid(self, node: int) -> int | None:
        try:
            return int((CACHE / f"opensearch-{self.http_port(node)}.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def rss_bytes(self) -> dict[int, int]:
        """Resident memory of each running node's JVM."""
        sizes = {}
        for node in range(1, self.nodes + 1):
            pid = self.pid(node)
            try:
                status = Path(f"/proc/{pid}/status").read_text() if pid else ""
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("VmRSS:"):
                    sizes[node] = int(line.split()[1]) * 1024
        return sizes
