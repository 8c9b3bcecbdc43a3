"""The project's script starts a real 3-node OpenSearch cluster, and the store works on it (replicated indices)."""

from __future__ import annotations

import os
import subprocess

import pytest

from soc.storage import EventQuery, store_from_url
from tests.conftest import PROJECT, need_java_and_maven

SCRIPT = PROJECT / "scripts" / "opensearch.sh"
PORT = int(os.environ.get("SOC_TEST_CLUSTER_PORT", "9290"))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    need_java_and_maven("the OpenSearch cluster test")
    data = tmp_path_factory.mktemp("cluster")
    started = subprocess.run([str(SCRIPT), "start", "--nodes", "3", "--port", str(PORT), "--dir", str(data)],
                             capture_output=True, text=True, timeout=400, env={**os.environ, "OPENSEARCH_HEAP": "768m"})
    assert started.returncode == 0, started.stdout + started.stderr
    yield f"opensearch://127.0.0.1:{PORT}"
    subprocess.run([str(SCRIPT), "stop", "--port", str(PORT)], capture_output=True, timeout=120)


def test_three_nodes_hold_the_store(cluster):
    status = subprocess.run([str(SCRIPT), "status", "--port", str(PORT)], capture_output=True, text=True, timeout=60)
    assert '"number_of_nodes":3' in status.stdout.replace(" ", "")
    store = store_from_url(cluster, index_prefix="clustertest")
    store.open()
    try:
        store.client.indices.put_settings(index="clustertest-*", body={"index": {"number_of_replicas": 1}})
        events = [{"@timestamp": f"2026-11-22T10:00:{i:02d}.000Z", "event": {"id": f"c{i}", "original": "x"},
                   "organization": {"id": "so-a"}} for i in range(30)]
        store.write_events(events)
        store.refresh()
        assert store.count_events() == 30
        # Every node answers with the same data.
        for port in (PORT, PORT + 1, PORT + 2):
            node = store_from_url(f"opensearch://127.0.0.1:{port}", index_prefix="clustertest")
            assert len(node.search_events(EventQuery(limit=100))) == 30
            node.close()
        assert store.health()["nodes"] == 3
    finally:
        store.client.indices.delete(index="clustertest-*")
        store.close()
