"""The suite's own rules for the province, each against its test event set (detections/rule_tests/*.yml)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from detections.engine import DetectionEngine
from detections.sigma.loader import load_rules
from soc import ecs
from detections.settings import DetectionsConfig

RULES = Path(DetectionsConfig().sigma_rule_dirs[0])
START = datetime(2026, 11, 22, 3, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def ruleset():
    ruleset = load_rules([RULES], pipeline="soc")
    assert ruleset.failed == 0, [(h.title, h.reason) for h in ruleset.health if h.status == "failed"]
    return ruleset


def _cases():
    for path in sorted((RULES.parent / "rule_tests").glob("*.yml")):
        for case in yaml.safe_load(path.read_text()):
            yield pytest.param(case, id=f"{path.stem}: {case['name']}")


def _render(value, i: int):
    if isinstance(value, str) and "{i}" in value:
        text = value.replace("{i}", str(i))
        return int(text) if text.isdigit() and value == "{i}" else text
    return value


def _events(case: dict) -> list[dict]:
    events = []
    for i in range(1, case.get("repeat", 1) + 1):
        doc: dict = {"@timestamp": ecs.utc_iso(START + timedelta(seconds=i * case.get("step_seconds", 1))),
                     "event": {"id": f"{case['name'][:20]}-{i}"}}
        for dotted, value in case["template"].items():
            ecs.put(doc, dotted, _render(value, i))
        events.append(doc)
    return events


def test_every_own_rule_has_a_case_that_fires_it(ruleset):
    cased = set()
    for param in _cases():
        cased.update(param.values[0].get("fires", []))
    alerting = {r.meta.name for r in ruleset.rules if r.generate} | {c.meta.name for c in ruleset.correlations
                                                                      if c.generate}
    building_blocks = {"soc_ssh_successful_login"}  # alerts only inside the login-after-brute-force sequence
    missing = alerting - cased - building_blocks - {"soc_ssh_brute_force", "soc_ssh_login_after_brute_force"}
    assert not missing, f"rules without a firing test case: {sorted(missing)}"


@pytest.mark.parametrize("case", list(_cases()))
def test_rule_case(ruleset, case):
    engine = DetectionEngine(ruleset)
    fired = {d.meta.name for d in engine.evaluate(_events(case))}
    for name in case.get("fires", []):
        assert name in fired, f"{name} should fire on '{case['name']}'; fired: {sorted(fired)}"
    for name in case.get("quiet", []):
        assert name not in fired, f"{name} should stay quiet on '{case['name']}'"
