"""The project's script starts a real 3-node OpenSearch cluster (each node its own process), and the store works on
it: replicated indices by default, the same data from every node."""

from __future__ import annotations

from soc.storage import EventQuery, store_from_url


def test_three_nodes_hold_the_store(opensearch_cluster):
    cluster = opensearch_cluster
    assert '"number_of_nodes":3' in cluster.status().replace(" ", "")
    pids = {cluster.pid(node) for node in (1, 2, 3)}
    assert None not in pids and len(pids) == 3, "each node is a process of its own"
    store = store_from_url(cluster.url, index_prefix="clustertest", hosts=cluster.hosts)
    store.open()
    try:
        events = [{"@timestamp": f"2026-11-22T10:00:{i:02d}.000Z", "event": {"id": f"c{i}", "original": "x"},
                   "organization": {"id": "so-a"}} for i in range(30)]
        store.write_events(events)
        store.refresh()
        assert store.count_events() == 30
        # "auto" replicas: one copy of every index on a cluster of more than one data node, and the cluster green.
        settings = store.client.indices.get_settings(index="clustertest-*", name="index.number_of_replicas")
        assert {s["settings"]["index"]["number_of_replicas"] for s in settings.values()} == {"1"}
        assert cluster.health(1, "?wait_for_status=green&timeout=60s", timeout=70)["status"] == "green"
        # Every node answers with the same data.
        for port in (cluster.port, cluster.port + 1, cluster.port + 2):
            node = store_from_url(f"opensearch://127.0.0.1:{port}", index_prefix="clustertest")
            assert len(node.search_events(EventQuery(limit=100))) == 30
            node.close()
        assert store.health()["nodes"] == 3
        # Given one node and sniff, the client finds the other two and reads through them.
        sniffing = store_from_url(cluster.url, index_prefix="clustertest", sniff=True)
        sniffing.open()
        found = {c.host for c in sniffing.client.transport.connection_pool.connections}
        assert found == {f"http://127.0.0.1:{p}" for p in (cluster.port, cluster.port + 1, cluster.port + 2)}
        assert sniffing.count_events() == 30
        sniffing.close()
        # A store opened with other counts changes the existing indices of that class, and only those.
        two = store_from_url(cluster.url, index_prefix="clustertest", hosts=cluster.hosts, replicas={"events": 2})
        two.open()
        replicas = {name: s["settings"]["index"]["number_of_replicas"] for name, s in two.client.indices.get_settings(
            index="clustertest-*", name="index.number_of_replicas").items()}
        assert replicas.pop("clustertest-events-2026.11.22") == "2" and set(replicas.values()) == {"1"}, replicas
        two.close()
    finally:
        store.client.indices.delete(index="clustertest-*")
        store.close()
