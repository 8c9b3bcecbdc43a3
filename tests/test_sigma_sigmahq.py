"""The SigmaHQ pack: it loads (every failure says why), and on SigmaHQ's regression data every expected rule fires.

The full pack is parsed once per test session (in parallel) and cached under .cache/ so re-runs are quick.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from detections.engine import DetectionEngine
from detections.hunt import hunt
from detections.sigma.loader import load_rules
from detections.sigma.placeholders import placeholder_values
from inventory.lookup import Inventory
from inventory.settings import InventoryConfig
from tests.conftest import CORPUS, PROJECT

SIGMAHQ = CORPUS / "sigmahq"
CACHE = PROJECT / ".cache" / "test-sigma"


@pytest.fixture(scope="module")
def ruleset():
    inventory = Inventory.load(InventoryConfig().path)
    return load_rules([SIGMAHQ / "rules", SIGMAHQ / "rules-emerging-threats", SIGMAHQ / "rules-threat-hunting"],
                      cache_dir=CACHE, placeholders=placeholder_values(inventory, {}))


def test_at_least_98_percent_of_rules_load_and_failures_say_why(ruleset):
    in_rules = [h for h in ruleset.health if "/sigmahq/rules/" in h.path]
    loaded = sum(h.status == "loaded" for h in in_rules)
    assert len(in_rules) >= 3141
    assert loaded / len(in_rules) >= 0.98, f"{loaded}/{len(in_rules)}"
    for h in ruleset.health:
        if h.status == "failed":
            assert h.reason, h
    # The inventory fills %known_cdcs% (the domain controllers), so the Certighost rules load.
    certighost = [h for h in ruleset.health if "certighost" in h.path]
    assert certighost and all(h.status == "loaded" for h in certighost), [h.reason for h in certighost]


def _cases():
    for info in sorted((SIGMAHQ / "regression_data").rglob("info.yml")):
        evtx = sorted(info.parent.glob("*.evtx"))
        if evtx:
            meta = yaml.safe_load(info.read_text())
            yield pytest.param(meta["rule_metadata"][0]["id"], evtx,
                               meta["regression_tests_info"][0].get("match_count", 1),
                               id=info.parent.name)


@pytest.fixture(scope="module")
def engine(ruleset):
    return DetectionEngine(ruleset)


@pytest.mark.parametrize("rule_id, evtx, match_count", list(_cases()))
def test_regression_case_fires_its_rule(engine, ruleset, rule_id, evtx, match_count):
    loaded = {r.meta.id for r in ruleset.rules}
    if rule_id not in loaded:
        reason = next((h.reason for h in ruleset.health if h.id == rule_id), "not in the pack")
        pytest.fail(f"expected rule {rule_id} did not load: {reason}")
    errors = []
    hits = [e for r, e in hunt(engine, evtx, errors) if r.meta.id == rule_id]
    assert not errors
    # match_count is a floor: in a few files several events satisfy the rule (the dtrace case holds two
    # `dtrace.exe ... lkd(0)` commands, both matching "Image|endswith dtrace.exe and CommandLine|contains lkd(0)").
    assert len(hits) >= match_count
