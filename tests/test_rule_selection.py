"""Which rules run is configuration (detections.rule_selection, detections/selection.py): a pack's rules by status,
level, log source, tags and id; the suite's own rules always, unless excluded by id; deprecated and unsupported never.
Rules left out are not evaluated and not counted as loaded, and `soc rules check` says why for each."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from detections import selection as selection_module
from detections.engine import DetectionEngine
from detections.settings import RuleSelectionConfig
from detections.selection import RuleSelection, select
from detections.sigma import loader
from detections.sigma.loader import load_rules
from tests.conftest import PROJECT

OWN_LINUX = PROJECT / "detections" / "rules" / "linux"


def _rule(folder: Path, name: str, *, status: str | None = "stable", level: str = "high", product: str = "linux",
          service: str = "sshd", tags: tuple[str, ...] = ("attack.t1110",), rule_id: str | None = None) -> str:
    rule_id = rule_id or f"00000000-0000-4000-8000-{abs(hash(name)) % 10**12:012d}"
    lines = [f"title: {name}", f"id: {rule_id}", f"name: {name}"]
    if status:
        lines.append(f"status: {status}")
    lines += ["tags:"] + [f"    - {t}" for t in tags] if tags else []
    lines += [f"logsource:\n    product: {product}\n    service: {service}",
              "detection:\n    selection:\n        event.action: ssh_login\n        event.outcome: failure\n"
              "    condition: selection", f"level: {level}"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.yml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return rule_id


def _pack(tmp_path) -> Path:
    pack = tmp_path / "pack"
    _rule(pack, "stable_high")
    _rule(pack, "test_medium", status="test", level="medium")
    _rule(pack, "experimental_high", status="experimental")
    _rule(pack, "stable_low", level="low")
    _rule(pack, "deprecated_critical", status="deprecated", level="critical")
    _rule(pack, "unsupported_high", status="unsupported")
    _rule(pack, "no_status_high", status=None)
    _rule(pack, "windows_high", product="windows", service="security", tags=("attack.t1059.001",))
    _rule(pack, "recon_high", tags=("attack.discovery", "attack.t1046"))
    return pack


def _decisions(ruleset, **config) -> dict[str, tuple[str, str]]:
    chosen = select(ruleset, RuleSelection(RuleSelectionConfig(**config), [ruleset_pack(ruleset)]))
    return {h.title: (h.status, h.selection) for h in chosen.health}


def ruleset_pack(ruleset) -> str:
    return str(Path(next(h.path for h in ruleset.health if "/pack/" in h.path)).parent)


def test_the_defaults_run_stable_and_test_rules_of_level_medium_or_worse(tmp_path):
    ruleset = load_rules([OWN_LINUX, _pack(tmp_path)])
    got = _decisions(ruleset)
    assert got["stable_high"] == ("loaded", "status stable, level high")
    assert got["test_medium"] == ("loaded", "status test, level medium")
    assert got["experimental_high"] == ("disabled", "status experimental not selected")
    assert got["stable_low"] == ("disabled", "level low below medium")
    assert got["deprecated_critical"] == ("disabled", "status deprecated never runs")
    assert got["unsupported_high"] == ("disabled", "status unsupported never runs")
    assert got["no_status_high"] == ("disabled", "no status (taken as experimental) not selected")
    # The suite's own rules run whatever their level (SSH Failed Login is low).
    assert got["SSH Failed Login"] == ("loaded", "own rule")


def test_statuses_levels_logsources_tags_and_ids(tmp_path):
    ruleset = load_rules([OWN_LINUX, _pack(tmp_path)])
    got = _decisions(ruleset, statuses=["stable", "test", "experimental"], min_level="low")
    assert got["experimental_high"][0] == got["stable_low"][0] == "loaded"
    got = _decisions(ruleset, logsources=[{"product": "windows"}])
    assert got["windows_high"][0] == "loaded"
    assert got["stable_high"] == ("disabled", "log source product=linux, service=sshd not selected")
    got = _decisions(ruleset, logsources_exclude=[{"product": "linux", "service": "sshd"}])
    assert got["stable_high"][1] == "log source product=linux, service=sshd excluded"
    got = _decisions(ruleset, tags_include=["attack.t1059*"])
    assert got["windows_high"][0] == "loaded" and got["stable_high"] == ("disabled", "no selected tag")
    got = _decisions(ruleset, tags_exclude=["ATTACK.DISCOVERY"])
    assert got["recon_high"] == ("disabled", "tag ATTACK.DISCOVERY excluded")
    got = _decisions(ruleset, ids_include=["experimental_high", "deprecated_critical"],
                     ids_exclude=["stable_high", "soc_ssh_failed_login"])
    assert got["experimental_high"] == ("loaded", "included by id")
    assert got["deprecated_critical"] == ("disabled", "status deprecated never runs")
    assert got["stable_high"] == ("disabled", "excluded by id")
    # The suite's own rules are excluded by id too (SSH Failed Login still runs for the brute-force correlation that
    # counts it, raising nothing of its own), or selected like a pack's when asked.
    assert got["Administrator Login From Outside the Government Network"] == ("loaded", "own rule")
    got_excluded = _decisions(ruleset, ids_exclude=["soc_admin_login_from_outside", "soc_ssh_failed_login"])
    assert got_excluded["Administrator Login From Outside the Government Network"] == ("disabled", "excluded by id")
    assert got_excluded["SSH Failed Login"][0] == "loaded"
    assert got_excluded["SSH Failed Login"][1].startswith("excluded by id; runs only for the correlation 'SSH ")
    got = _decisions(ruleset, own_rules="selected")
    assert got["SSH Brute Force"] == ("loaded", "status stable, level high")
    assert got["SSH Failed Login"][1].startswith("level low below medium; runs only for the correlation")


def test_rules_left_out_are_neither_evaluated_nor_counted(tmp_path):
    ruleset = load_rules([_pack(tmp_path)])
    chosen = select(ruleset, RuleSelection(RuleSelectionConfig(), [tmp_path / "pack"]))
    assert (ruleset.loaded, ruleset.disabled) == (9, 0)
    # stable_high, test_medium, recon_high, windows_high
    assert (chosen.loaded, chosen.disabled, chosen.failed) == (4, 5, 0)
    doc = {"@timestamp": "2026-11-22T10:00:00Z", "event": {"dataset": "system.auth", "action": "ssh_login",
                                                          "outcome": "failure"}, "process": {"name": "sshd"},
           "organization": {"id": "so-a"}}
    fired = {d.meta.name for d in DetectionEngine(chosen).evaluate([doc])}
    assert fired == {"stable_high", "test_medium", "recon_high"}


def test_a_selected_correlation_still_counts_a_rule_left_out_without_alerting_on_it(tmp_path):
    """The own SSH brute force counts SSH Failed Login (level low): selected like a pack's, the correlation runs and
    the low rule runs for it only."""
    ruleset = load_rules([OWN_LINUX])
    chosen = select(ruleset, RuleSelection(RuleSelectionConfig(own_rules="selected"), []))
    health = {h.title: h for h in chosen.health}
    assert health["SSH Failed Login"].status == "loaded"
    assert "runs only for the correlation" in health["SSH Failed Login"].selection
    failures = [{"@timestamp": f"2026-11-22T10:00:{n:02d}Z", "event": {"dataset": "system.auth",
                 "action": "ssh_login", "outcome": "failure", "id": f"e{n}"}, "process": {"name": "sshd"},
                 "source": {"ip": "198.51.100.9"}, "user": {"name": "root"}, "organization": {"id": "so-a"}}
                for n in range(12)]
    fired = {d.meta.name for d in DetectionEngine(chosen).evaluate(failures)}
    assert "soc_ssh_brute_force" in fired and "soc_ssh_failed_login" not in fired


def test_a_failure_counts_only_among_rules_that_would_run(tmp_path):
    pack = _pack(tmp_path)
    (pack / "broken_experimental.yml").write_text(
        "title: broken\nid: 6d1f0000-0000-4000-8000-000000000001\nstatus: experimental\nlevel: high\n"
        "logsource: {product: linux}\ndetection: {sel: {a|nosuchmodifier: x}, condition: sel}\n")
    (pack / "not_yaml.yml").write_text("title: [unclosed\n")
    chosen = select(load_rules([pack]), RuleSelection(RuleSelectionConfig(), [pack]))
    health = {h.title: h for h in chosen.health}
    assert health["broken"].status == "disabled"
    assert health["broken"].reason.startswith("status experimental not selected (and it does not load:")
    # Nothing is known of a file that does not parse: it stays a failure, whatever the selection.
    assert health["not_yaml.yml"].status == "failed"


def test_the_rule_cache_does_not_serve_entries_without_the_status(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = load_rules([OWN_LINUX], cache_dir=cache)
    assert first.parsed > 0 and {r.meta.status for r in first.rules} == {"stable"}
    assert load_rules([OWN_LINUX], cache_dir=cache).parsed == 0
    monkeypatch.setattr(loader, "LOADER_VERSION", loader.LOADER_VERSION + 1)
    assert load_rules([OWN_LINUX], cache_dir=cache).parsed == first.parsed


def test_soc_rules_check_says_what_runs_and_why(tmp_path):
    pack = _pack(tmp_path)
    config = tmp_path / "soc.yaml"
    config.write_text(json.dumps({"data_dir": str(tmp_path), "detections": {"sigma_rule_dirs": [str(OWN_LINUX)]}}))
    run = subprocess.run([sys.executable, "-m", "suite.cli", "rules", "check", "--rules", str(pack), "--json",
                          "--config", str(config)], capture_output=True, text=True, cwd=PROJECT, timeout=120)
    assert run.returncode == 0, run.stderr
    rules = {r["title"]: r for r in map(json.loads, run.stdout.splitlines())}
    assert rules["stable_low"]["enabled"] is False and rules["stable_low"]["why"] == "level low below medium"
    assert rules["stable_low"]["loaded"] is True and rules["stable_low"]["rule_status"] == "stable"
    assert rules["stable_high"]["enabled"] is True
    # The folder is checked beside the suite's own rules (6), as a pack is loaded: collisions would show.
    assert rules["SSH Failed Login"]["why"] == "own rule"
    assert "15 rules: 10 enabled (10 loaded, 0 failed), 5 disabled" in run.stderr
    missing = subprocess.run([sys.executable, "-m", "suite.cli", "rules", "check", "--rules", str(tmp_path / "nope"),
                              "--config", str(config)], capture_output=True, text=True, cwd=PROJECT, timeout=120)
    assert missing.returncode == 2 and "no such folder" in missing.stderr, missing.stderr
    text = subprocess.run([sys.executable, "-m", "suite.cli", "rules", "check", "--config", str(config)],
                          capture_output=True, text=True, cwd=PROJECT, timeout=120)
    assert text.returncode == 0 and "enabled  loaded detection   SSH Failed Login" in text.stdout, text.stdout
    assert "own rule" in text.stdout


@pytest.mark.parametrize("bad", [{"statuses": ["deprecated"]}, {"min_level": "severe"}, {"own_rules": "some"},
                                 {"logsources": [{"vendor": "x"}]}])
def test_a_bad_selection_is_a_configuration_error(tmp_path, bad):
    from soc.errors import ConfigError
    from tests.conftest import make_settings

    with pytest.raises(ConfigError) as caught:
        make_settings(tmp_path, sections={"detections": {"rule_selection": bad}})
    assert "rule_selection" in caught.value.key


def test_the_module_names_what_never_runs():
    assert selection_module.NEVER_FROM_A_PACK == ("deprecated", "unsupported")


# --- a pack cannot take over, redirect or silence the suite's own rules ------------------------------------------
OWN_BRUTE_FORCE = "3c1a9f0e-8e2d-4b6a-a7c5-9d0e1f2a3b03"  # soc_ssh_brute_force
OWN_FAILED_LOGIN = "6f4c3d8e-2b7a-4c1e-9f3a-1d2e5b7c9a01"  # soc_ssh_failed_login
OWN_ADMIN_LOGIN = "1b9c0d1e-2f3a-4b4c-9d5e-7f8a9b0c1d18"  # soc_admin_login_from_outside


def _failures(count: int, address: str = "198.51.100.9") -> list[dict]:
    return [{"@timestamp": f"2026-11-22T10:00:{n:02d}Z", "event": {"dataset": "system.auth", "action": "ssh_login",
             "outcome": "failure", "id": f"e{n}"}, "process": {"name": "sshd"}, "source": {"ip": address},
             "user": {"name": "root"}, "organization": {"id": "so-a"}} for n in range(count)]


def _correlation(folder: Path, name: str, rules: list[str], *, status: str = "test", generate: bool = False) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.yml").write_text(
        f"title: {name}\nid: 00000000-0000-4000-8000-{abs(hash(name)) % 10**12:012d}\nname: {name}\n"
        f"status: {status}\nlevel: high\ncorrelation:\n  type: event_count\n  rules: {json.dumps(rules)}\n"
        f"  group-by: [source.ip]\n  timespan: 1m\n  generate: {str(generate).lower()}\n"
        "  condition: {gte: 1000000}\n", encoding="utf-8")


def test_a_pack_rule_with_an_own_rules_id_or_name_does_not_load_and_the_own_rules_run(tmp_path):
    """Red team, HIGH 1 (a) and (b): a deprecated pack rule with the own brute force's id used to take the own
    correlation's selection ("status deprecated never runs"); one named soc_ssh_failed_login used to become what the
    own brute force counts (a rule that never matches: no brute-force alert ever again)."""
    pack = tmp_path / "pack"
    _rule(pack, "shadow", status="deprecated", rule_id=OWN_BRUTE_FORCE)
    _rule(pack, "shadow_upper_case", rule_id=OWN_ADMIN_LOGIN.upper())  # ids compare without regard to case
    _rule(pack, "hijack", rule_id="99999999-9999-4999-8999-999999999999")
    (pack / "hijack.yml").write_text((pack / "hijack.yml").read_text().replace("name: hijack",
                                                                               "name: soc_ssh_failed_login"))
    _rule(pack, "twin_a", rule_id="aaaaaaaa-0000-4000-8000-000000000001")
    _rule(pack, "twin_b", rule_id="aaaaaaaa-0000-4000-8000-000000000001")
    _rule(pack, "fine")
    raw = load_rules([OWN_LINUX], pack_dirs=[pack])
    chosen = select(raw, RuleSelection(RuleSelectionConfig(), [pack]))
    health = {h.title: h for h in chosen.health}
    assert health["SSH Brute Force"].status == "loaded" and health["SSH Brute Force"].selection == "own rule"
    assert "collides with the suite's own rule 'SSH Brute Force'" in health["shadow"].reason
    assert "collides with the suite's own rule 'Administrator Login" in health["shadow_upper_case"].reason
    assert health["hijack"].status == "failed"
    assert "collides with the suite's own rule 'SSH Failed Login'" in health["hijack"].reason
    assert "its name 'soc_ssh_failed_login'" in health["hijack"].reason
    for twin in ("twin_a", "twin_b"):  # inside the pack: neither is taken
        assert health[twin].status == "failed" and "another rule of the pack" in health[twin].reason
    assert health["fine"].status == "loaded"
    [brute_force] = [c for c in chosen.correlations if c.meta.id == OWN_BRUTE_FORCE]
    assert brute_force.rules == [OWN_FAILED_LOGIN]
    assert {r.meta.id for r in chosen.rules} >= {OWN_FAILED_LOGIN, OWN_ADMIN_LOGIN}
    assert not any(r.meta.path.startswith(str(pack)) and r.meta.id in (OWN_BRUTE_FORCE, OWN_ADMIN_LOGIN)
                   for r in chosen.rules)
    fired = {d.meta.name for d in DetectionEngine(chosen).evaluate(_failures(6))}
    assert "soc_ssh_brute_force" in fired


def test_the_selection_decides_each_rule_by_its_file_and_id(tmp_path):
    """Loaded without the pack marked (as `load_rules([own, pack])` does), a duplicate id still cannot pass one
    rule's decision to the other."""
    pack = tmp_path / "pack"
    _rule(pack, "shadow", status="deprecated", rule_id=OWN_ADMIN_LOGIN)
    chosen = select(load_rules([OWN_LINUX, pack]), RuleSelection(RuleSelectionConfig(), [pack]))
    health = {h.title: h for h in chosen.health}
    assert health["Administrator Login From Outside the Government Network"].status == "loaded"
    assert health["shadow"].status == "disabled" and health["shadow"].reason == "status deprecated never runs"


@pytest.mark.parametrize("status", ["deprecated", "test"])
def test_a_pack_correlation_never_silences_an_own_rule(tmp_path, status):
    """Red team, HIGH 1 (c): a pack correlation (even a deprecated one, which never runs) counting an own rule used
    to clear its "generate": the own rule stopped alerting."""
    pack = tmp_path / "pack"
    _correlation(pack, "silencer", ["soc_admin_login_from_outside", "soc_ssh_failed_login"], status=status)
    for raw in (load_rules([OWN_LINUX], pack_dirs=[pack]), load_rules([OWN_LINUX, pack])):
        chosen = select(raw, RuleSelection(RuleSelectionConfig(), [pack]))
        generate = {r.meta.id: r.generate for r in chosen.rules}
        assert generate[OWN_ADMIN_LOGIN] is True
        assert generate[OWN_FAILED_LOGIN] is False  # the own brute force still says so (Sigma's default)
        silencer = {h.title: h for h in chosen.health}["silencer"]
        assert silencer.status == ("disabled" if status == "deprecated" else "loaded")
    assert load_rules([OWN_LINUX], pack_dirs=[pack]).rules[0].generate is True  # the loader alone too


def test_only_correlations_that_run_decide_whether_the_rules_they_count_alert(tmp_path):
    """A pack rule counted by a pack correlation the selection leaves out alerts like any selected rule; counted by
    one that runs, it does not (Sigma's generate: false)."""
    pack = tmp_path / "pack"
    _rule(pack, "counted", rule_id="bbbbbbbb-0000-4000-8000-000000000001")
    _correlation(pack, "left_out", ["counted"], status="experimental")
    chosen = select(load_rules([OWN_LINUX], pack_dirs=[pack]), RuleSelection(RuleSelectionConfig(), [pack]))
    assert {r.meta.name: r.generate for r in chosen.rules}["counted"] is True
    _correlation(pack, "running", ["counted"], status="stable")
    chosen = select(load_rules([OWN_LINUX], pack_dirs=[pack]), RuleSelection(RuleSelectionConfig(), [pack]))
    assert {r.meta.name: r.generate for r in chosen.rules}["counted"] is False
