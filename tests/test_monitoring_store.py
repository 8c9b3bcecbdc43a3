"""The store health gauges against a real OpenSearch node and an address where no store answers. Kept apart from
test_monitoring_metrics.py, whose running suite refreshes the same gauges in the background."""

from __future__ import annotations

import socket

from collectors import monitoring


def test_store_cluster_status_from_a_real_opensearch_node(opensearch_prefix):
    from types import SimpleNamespace

    from soc.storage import store_from_url

    url, prefix = opensearch_prefix
    store = store_from_url(url, index_prefix=prefix)
    store.open()
    try:
        monitoring.SelfMonitor(SimpleNamespace(store=store), monitoring.SelfMonitorConfig()).refresh()
        reported = store.health()["status"]
        assert reported in ("green", "yellow")
        for status in ("green", "yellow", "red"):
            assert monitoring.STORE_STATUS.labels(status)._value.get() == (1.0 if status == reported else 0.0)
        assert monitoring.STORE_UP._value.get() == 1.0
    finally:
        store.close()


def test_an_unreachable_store_is_reported_down():
    from types import SimpleNamespace

    from soc.storage import store_from_url

    port = socket.socket()
    port.bind(("127.0.0.1", 0))
    dead = f"opensearch://127.0.0.1:{port.getsockname()[1]}"
    port.close()
    store = store_from_url(dead, index_prefix="nothing", timeout=1)
    try:
        monitoring.SelfMonitor(SimpleNamespace(store=store), monitoring.SelfMonitorConfig()).refresh()
        assert monitoring.STORE_UP._value.get() == 0.0
        assert monitoring.STORE_STATUS.labels("red")._value.get() == 1.0
    finally:
        store.close()
