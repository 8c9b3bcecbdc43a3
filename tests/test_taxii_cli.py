"""The command line: `soc users` (create, key shown once, disable), `soc taxii pull` against a running suite's TAXII
server (real HTTP on loopback), resuming where it stopped, and `soc indicators import` of a STIX bundle."""

from __future__ import annotations

import json

import stix2
import yaml
from typer.testing import CliRunner

from detections.indicators.model import build
from suite.cli import app
from soc.storage import store_from_url
from soc_api.keys import verify_key
from soc_api.taxii.server import collection_uuid
from tests.api_fixtures import keys_for, running_suite


def test_users_pull_and_import(tmp_path, monkeypatch):
    runner = CliRunner()
    db = tmp_path / "cli.db"
    monkeypatch.setenv("SOC__STORE__URL", f"sqlite:///{db}")
    with running_suite(tmp_path / "publisher") as publisher:
        keys = keys_for(publisher.store, agencies=())
        publisher.service("indicators").upsert([build([{"type": "ipv4", "value": f"198.51.100.{i}"}], source="soc",
                                           tlp="green") for i in range(5)])
        base = f"http://127.0.0.1:{publisher.bound['api']}/taxii2/soc/collections/{collection_uuid('indicators')}/"
        config = tmp_path / "soc.yaml"
        config.write_text(yaml.safe_dump({"soc_api": {"taxii": {"pull": [
            {"name": "national", "collection_url": base, "password_env": "NC_KEY", "page_size": 2}]}}}))
        monkeypatch.setenv("SOC_CONFIG", str(config))
        monkeypatch.setenv("NC_KEY", keys["national_centre"])

        made = runner.invoke(app, ["users", "create", "minh.tran", "--role", "analyst"])
        assert made.exit_code == 0, made.output
        key_run = runner.invoke(app, ["users", "key", "minh.tran", "--expires-in-days", "7"])
        key = key_run.stdout.strip().splitlines()[0]
        store = store_from_url(f"sqlite:///{db}")
        assert verify_key(store, key).user == "minh.tran"
        assert runner.invoke(app, ["users", "disable", "minh.tran"]).exit_code == 0
        assert verify_key(store, key) is None
        assert runner.invoke(app, ["users", "create", "x", "--role", "agency"]).exit_code == 2

        first = runner.invoke(app, ["taxii", "pull"])
        assert first.exit_code == 0, first.output
        assert store.get_document("taxii_state", "national")["last_result"]["indicators"] == 5
        publisher.service("indicators").upsert([build([{"type": "domain", "value": "new.bad.example"}], source="soc",
                                           tlp="clear")])
        second = runner.invoke(app, ["taxii", "pull", "--source", "national"])
        assert second.exit_code == 0
        state = store.get_document("taxii_state", "national")
        assert state["last_result"]["indicators"] == 1  # only what was added since the first pull
        assert runner.invoke(app, ["taxii", "pull", "--source", "nope"]).exit_code == 2

        bundle = tmp_path / "bundle.json"
        objects = [json.loads(stix2.v21.Indicator(pattern=p, pattern_type="stix",
                                                  valid_from="2026-01-01T00:00:00Z").serialize())
                   for p in ("[url:value = 'http://x.example/a']", "[process:name = 'evil.exe']")]
        bundle.write_text(json.dumps({"type": "bundle", "id": "bundle--6b8f7a52-3c1e-4d2f-9a0b-1c2d3e4f5a6b",
                                      "objects": objects}))
        imported = runner.invoke(app, ["indicators", "import", str(bundle), "--source", "mail"])
        assert imported.exit_code == 0 and "1 indicators imported, 1 skipped" in imported.stdout
        store.close()
