"""A real `soc serve` for the tests that attack it: in a process of its own (so a runaway match that holds the GIL
fails the test instead of hanging it), with the API keys the test needs, and required to stop on SIGTERM in time."""

from __future__ import annotations

import contextlib
from pathlib import Path

from soc.storage import open_store
from soc_api.keys import create_key
from tests.security.test_parser_redos_e2e import STOP_SECONDS, Served


@contextlib.contextmanager
def suite_process(tmp_path: Path, keys: list[tuple[str, str | None]], env: dict | None = None):
    """Yields the served suite and one key per (role, agency) asked for. When the test's body is done the suite must
    exit 0 on SIGTERM within STOP_SECONDS; when it failed, the suite is killed."""
    served = Served(tmp_path, env=env)
    try:
        store = open_store(served.settings)
        try:
            made = [create_key(store, role, agency=agency, name="red team")[0] for role, agency in keys]
        finally:
            store.close()
        yield served, made
    except BaseException:
        served.proc.kill()
        served.proc.wait()
        raise
    code, took = served.sigterm()
    assert code == 0 and took < STOP_SECONDS, (code, took)
