"""Shared fixtures: settings in a temporary folder, stores on both backends, a running suite.

OpenSearch tests use the real node that scripts/run-tests.sh starts (SOC_TEST_OPENSEARCH). Without one they are
skipped with a loud message locally, and fail in CI (CI=true), where they must run.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
import uuid
from pathlib import Path

import pytest

from suite.settings import Settings, load_settings
from soc.storage import store_from_url

PROJECT = Path(__file__).resolve().parent.parent
CORPUS = PROJECT.parent / "shared" / "corpus"
OPENSEARCH_URL = os.environ.get("SOC_TEST_OPENSEARCH")


def pytest_report_header(config):
    if OPENSEARCH_URL:
        return f"OpenSearch store tests: on {OPENSEARCH_URL}"
    return "!!! OpenSearch store tests: NO NODE (SOC_TEST_OPENSEARCH unset) - they will be SKIPPED !!!"


def cannot_run(here: str, in_ci: str) -> None:
    """A real part a test needs is missing: skip with the reason on a developer's machine, fail in CI (CI=true),
    where `make test` has installed every part and each test must run."""
    if os.environ.get("CI") == "true":
        pytest.fail(in_ci)
    pytest.skip(here)


def need_opensearch() -> str:
    if OPENSEARCH_URL:
        return OPENSEARCH_URL
    cannot_run("no OpenSearch node (run `make test`, which starts one; needs Java 17 and Maven)",
               "SOC_TEST_OPENSEARCH is not set: in CI the OpenSearch tests must run (scripts/run-tests.sh)")


def need_java_and_maven(what: str) -> None:
    """Tests that start OpenSearch nodes of their own (scripts/opensearch.sh) need Java and Maven."""
    if shutil.which("java") is None or shutil.which("mvn") is None:
        cannot_run("no Java/Maven: `make test` installs them", f"Java and Maven are needed for {what} in CI")


def wait_for(condition, timeout: float, what: str):
    """``wait_until``, failing the test with what it waited for when time runs out."""
    value = wait_until(condition, timeout, 0.1)
    if not value:
        raise AssertionError(f"timed out waiting for {what}")
    return value


def wait_until(condition, timeout: float = 20.0, interval: float = 0.05):
    """Poll ``condition`` until it gives something true: that value, or None when ``timeout`` runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_settings(tmp_path: Path, store_url: str | None = None, index_prefix: str | None = None,
                  sections: dict | None = None, **env) -> Settings:
    """Settings for a test: the suite's data in ``tmp_path``, ports chosen by the system; ``sections`` are written to
    a configuration file (as a deployment's soc.yaml), ``env`` are SOC__ overrides."""
    environ = {
        "SOC__DATA_DIR": str(tmp_path),
        "SOC__STORE__URL": store_url or f"sqlite:///{tmp_path / 'soc.db'}",
        "SOC__SYSLOG__HOST": "127.0.0.1",
        "SOC__SYSLOG__UDP_PORT": "0",
        "SOC__SYSLOG__TCP_PORT": "0",
        "SOC__API__PORT": "0",
        "SOC__PIPELINE__FLUSH_INTERVAL_SECONDS": "0.05",
        # A served suite would build last month's PDF reports for every agency in the background: tests of the
        # schedule call reports.service.run_due themselves.
        "SOC__REPORTS__SCHEDULE_ENABLED": "false",
    }
    if index_prefix:
        environ["SOC__STORE__INDEX_PREFIX"] = index_prefix
    environ.update({k: str(v) for k, v in env.items()})
    path = None
    if sections:
        import yaml

        path = tmp_path / "soc.yaml"
        path.write_text(yaml.safe_dump(sections, allow_unicode=True), encoding="utf-8")
    return load_settings(path=path, environ=environ)


def _drop_indices(url: str, prefix: str) -> None:
    store = store_from_url(url, index_prefix=prefix)
    try:
        store.client.indices.delete(index=f"{prefix}-*", params={"ignore_unavailable": "true"})
        for name in ("events", "alerts", "deadletters", "apikeys", "documents", "indicators"):
            try:
                store.client.indices.delete_index_template(name=f"{prefix}-{name}")
            except Exception:
                pass
    finally:
        store.close()


@pytest.fixture
def opensearch_prefix():
    """A fresh index prefix on the real node, removed afterwards: (url, prefix)."""
    url = need_opensearch()
    prefix = f"soctest-{uuid.uuid4().hex[:10]}"
    yield url, prefix
    _drop_indices(url, prefix)


@pytest.fixture(params=["sqlite", "opensearch"])
def backend_settings(request, tmp_path):
    """Settings for each backend in turn (the contract every backend must pass)."""
    if request.param == "sqlite":
        yield make_settings(tmp_path)
        return
    url = need_opensearch()
    prefix = f"soctest-{uuid.uuid4().hex[:10]}"
    try:
        yield make_settings(tmp_path, store_url=url, index_prefix=prefix)
    finally:
        _drop_indices(url, prefix)


@pytest.fixture
def sqlite_settings(tmp_path):
    return make_settings(tmp_path)


# --- the namespace firewall (tests/netns_firewall.py), one per test module that asks for it -----------------------
@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    from tests.netns_firewall import NamespaceFirewall, need_lab

    need_lab()
    firewall = NamespaceFirewall(tmp_path_factory.mktemp("netns")).start()
    try:
        yield firewall
    finally:
        firewall.close()


@pytest.fixture
def clean(lab):
    """Every test starts with no block and no blackhole route on the firewall: the attacker gets through."""
    import subprocess

    lab.nft("flush", "ruleset")
    subprocess.run(["ip", "netns", "exec", lab.fw_ns, "ip", "route", "flush", "type", "blackhole"],
                   capture_output=True)
    lab.nft("add table inet filter; add chain inet filter forward { type filter hook forward priority 0; "
            "policy accept; }")
    assert lab.connect(lab.attacker) == "open"
    return lab


# --- a real 3-node OpenSearch cluster (tests/opensearch_cluster.py), shared by the tests that ask for it -------------
CLUSTER_PORT = int(os.environ.get("SOC_TEST_CLUSTER_PORT", "9290"))
_cluster = None


@pytest.fixture
def opensearch_cluster(tmp_path_factory):
    """Three nodes, each its own JVM on loopback (HTTP 9290-9292 unless SOC_TEST_CLUSTER_PORT says otherwise). Started
    by the first test that asks for it and stopped after the last of a run of such tests (pytest_runtest_teardown
    below), so one cluster serves them all and its JVMs do not stay up beside the rest of the tests."""
    from tests.opensearch_cluster import Cluster

    global _cluster
    need_java_and_maven("the OpenSearch cluster tests")
    if _cluster is None:
        _cluster = Cluster(CLUSTER_PORT, 3, tmp_path_factory.mktemp("cluster"))
    if not _cluster.running:
        _cluster.start()
    return _cluster


@pytest.hookimpl(trylast=True)  # after the test's own fixtures are torn down (they may still use the cluster)
def pytest_runtest_teardown(item, nextitem):
    if _cluster is not None and _cluster.running and "opensearch_cluster" in item.fixturenames and \
            (nextitem is None or "opensearch_cluster" not in nextitem.fixturenames):
        _cluster.stop()


def pytest_sessionfinish(session, exitstatus):
    if _cluster is not None and _cluster.running:
        _cluster.stop()
