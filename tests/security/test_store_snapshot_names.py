"""Snapshot names, repository names and locations come from the command line and the configuration, and end up in a
file path (the SQLite backup's) or an engine's URL path (``/_snapshot/<repository>/<name>``). A hostile one — a path
out of the snapshot folder, ``..``, an option, an engine wildcard such as ``_all`` — is refused with a clear error
(exit code 2, no traceback) before anything is written, read or sent, whichever of the command line, the
configuration file or the store's own methods it reaches.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml
from typer.testing import CliRunner

from soc.storage import StoreError, open_store, snapshots
from soc.storage.search import SearchStore
from soc.storage.snapshots import SnapshotTarget
from suite.cli import app
from tests.conftest import PROJECT, make_settings

HOSTILE_NAMES = ["../../outside", "..", "a/b", "/etc/passwd", "-rf", "UPPER", "x" * 101, "name\nnext-line",
                 "ｎａｍｅ", "%2e%2e%2foutside", "a..b", ".hidden", "_all", "snap shot", "c:\\outside", "*", "a,b"]
HOSTILE_LOCATIONS = ["../outside", "a/../../outside", "/tmp/x/../../etc", "a\\..\\b", "with\x01control", "a/./b",
                     "", "snap shots/x"]


def _tree(root) -> set[str]:
    return {os.path.relpath(os.path.join(d, f), root) for d, _, files in os.walk(root) for f in files}


@pytest.fixture
def site(tmp_path):
    """A suite's folder inside a parent folder that must stay untouched: (config file, the folder, the parent)."""
    home = tmp_path / "site"
    home.mkdir()
    settings = make_settings(home)
    open_store(settings).close()
    config = home / "soc.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(home), "store": {"url": settings.store.url}}), encoding="utf-8")
    return config, home, tmp_path


def _refused(result, *words: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert any(word in result.output for word in words), result.output


def test_hostile_snapshot_names_are_refused_before_anything_is_touched(site):
    config, home, parent = site
    before = _tree(parent)
    runner = CliRunner()
    for name in HOSTILE_NAMES + ["auto-mine"]:  # "auto-" names are the schedule's, pruned by it
        made = runner.invoke(app, ["store", "snapshot", "--name", name, "--config", str(config)])
        _refused(made, "is not valid", "the schedule's")
        if name != "auto-mine":  # restoring a scheduled snapshot by name is allowed; the rest is not
            restored = runner.invoke(app, ["store", "restore", name, "--config", str(config)])
            _refused(restored, "is not valid", "No such option")  # "-rf" as an argument: an option to click
    assert _tree(parent) == before


def test_hostile_locations_and_repositories_are_refused(site):
    config, home, parent = site
    before = _tree(parent)
    runner = CliRunner()
    for location in HOSTILE_LOCATIONS:
        for command in (["store", "snapshot", "--name", "ok"], ["store", "snapshots"], ["store", "restore", "ok"]):
            result = runner.invoke(app, [*command, "--location", location, "--config", str(config)])
            _refused(result, "snapshot location")
    for repository in ("../x", "_all", "a/b"):
        result = runner.invoke(app, ["store", "snapshot", "--repository", repository, "--config", str(config)])
        _refused(result, "repository name")
    assert _tree(parent) == before


def test_a_hostile_location_in_the_configuration_stops_the_command(site):
    config, home, parent = site
    config.write_text(yaml.safe_dump({"data_dir": str(home), "store": {
        "url": f"sqlite:///{home / 'soc.db'}", "snapshots": {"location": "../../outside"}}}), encoding="utf-8")
    result = CliRunner().invoke(app, ["store", "snapshot", "--config", str(config)])
    _refused(result, "store.snapshots.location")


def test_the_store_methods_check_the_name_themselves(site, tmp_path):
    """Whoever calls them (a future API, another command): SQLite never builds a path from a bad name, and the
    engine store never sends one (the node here does not exist: the refusal comes before any request)."""
    _, home, _ = site
    store = open_store(make_settings(home))
    where = SnapshotTarget("soc-backups", str(home / "snapshots"))
    try:
        for name in ("../soc", "../../etc/passwd", "_all"):
            for call in (lambda: store.snapshot(where, name), lambda: store.restore(where, name),
                         lambda: store.delete_snapshot(where, name)):
                with pytest.raises(StoreError, match="not valid"):
                    call()
    finally:
        store.close()
    engine = SearchStore("opensearch://127.0.0.1:9", index_prefix="soc", timeout=1)
    try:
        for call in (lambda: engine.snapshot(where, "../_all"), lambda: engine.restore(where, "_all"),
                     lambda: engine.delete_snapshot(where, "*")):
            with pytest.raises(StoreError, match="not valid"):
                call()
    finally:
        engine.close()
    with pytest.raises(StoreError, match="snapshot location"):
        snapshots.target(make_settings(home).store.snapshots, home, sqlite=True, location="../../x")


def test_the_real_command_answers_one_line_and_exit_code_2(site):
    config, _, parent = site
    before = _tree(parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOC__") and k != "SOC_CONFIG"}
    env["PYTHONPATH"] = str(PROJECT)
    done = subprocess.run([sys.executable, "-m", "suite.cli", "store", "snapshot", "--name", "../../../escape",
                           "--config", str(config)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().startswith("soc: snapshot name '../../../escape' is not valid"), done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert _tree(parent) == before
