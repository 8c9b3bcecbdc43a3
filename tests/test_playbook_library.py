"""The playbook library and what runs without a device: schema errors with file, line and reason, triggers, inputs
from real alert documents, conditions, the never-block list on the sample province, impact and approval, dry runs
from the command line, and the notify / indicator / case-note actions against real local servers."""

from __future__ import annotations

import socketserver
import threading
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from inventory.lookup import Inventory
from playbooks.context import alert_value
from playbooks.loader import load_library
from playbooks.runner import Actor, ConditionNotMet, Runner
from playbooks.safety import Safety, SafetyRefusal
from playbooks.settings import PlaybookSettings, load_playbook_settings
from inventory.settings import InventoryConfig
from soc.storage import store_from_url
from soc.storage.base import DocumentQuery

SAMPLE = Inventory.load(InventoryConfig().path)
LIBRARY = Path(__file__).resolve().parent.parent / "playbooks" / "library"


def _alert(ip: str = "203.0.113.50", rule: str = "soc_ssh_brute_force", severity: str = "high") -> dict:
    """Shaped like detections/alerts.py _new_alert for the brute-force correlation."""
    return {"id": "a" * 32, "fingerprint": "f", "labels": {"rule.id": "3c1a9f0e", "organization.id": "so-tttt",
                                                          "source.ip": ip},
            "rule": {"id": "3c1a9f0e-8e2d-4b6a-a7c5-9d0e1f2a3b03", "name": rule, "title": "SSH Brute Force",
                     "type": "correlation", "tags": ["attack.credential-access"]},
            "severity": severity, "status": "new", "organization": {"id": "so-tttt", "name": "DIC"},
            "entities": {"ip": [ip], "host": ["so-tttt-web-01"]}, "count": 8,
            "first_seen": "2026-11-22T10:00:00.000Z", "last_seen": "2026-11-22T10:00:09.000Z",
            "trust": {"untrusted_events": 0, "trusted": True}}


def test_the_shipped_library_loads_clean():
    library = load_library([str(LIBRARY)])
    assert library.errors == []
    assert {"block_ssh_brute_force", "block_address", "unblock_address", "quarantine_host",
            "null_route_destination"} <= set(library.playbooks)
    assert [p.name for p in library.matching(_alert())] == ["block_ssh_brute_force"]
    assert library.matching(_alert(rule="soc_ssh_successful_login")) == []


BAD = {
    "unknown key": ("name: x\ntitle: t\nsteps:\n  - id: a\n    action: block\n    params: {address: 192.0.2.1}\n"
                    "    colour: red\n", 7, "steps.0.colour: unknown key"),
    "unknown action": ("name: x\ntitle: t\nsteps:\n  - id: a\n    action: launch_missiles\n", 5,
                       "unknown action 'launch_missiles'"),
    "bad parameter": ("name: x\ntitle: t\nsteps:\n  - id: a\n    action: block\n    params:\n"
                      "      address: 192.0.2.1\n      ttl_seconds: 5\n", 8, "steps.0.params.ttl_seconds: unknown"),
    "unknown placeholder": ("name: x\ntitle: t\nsteps:\n  - id: a\n    action: block\n"
                            "    params: {address: '{{ attacker }}'}\n", 1, "{{ attacker }} is not an input"),
    "yaml syntax": ("name: x\ntitle: t\nsteps:\n  - id: a\n    action: [block\n", 6, "not valid YAML"),
    "bad trigger": ("name: x\ntitle: t\ntriggers:\n  - {}\nsteps:\n  - {id: a, action: notify, params: {message: m}}\n",
                    4, "a trigger needs at least one"),
    "bad severity": ("name: x\ntitle: t\ntriggers:\n  - min_severity: huge\nsteps:\n"
                     "  - {id: a, action: notify, params: {message: m}}\n", 4, "triggers.0.min_severity"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_schema_errors_name_file_line_and_reason(tmp_path, case):
    text, line, reason = BAD[case]
    path = tmp_path / "bad.yml"
    path.write_text(text)
    library = load_library([str(tmp_path)])
    assert library.playbooks == {}
    [error] = library.errors
    assert error.path == str(path) and error.line == line and reason in error.reason, str(error)
    assert str(error).startswith(f"{path}:{line}: ")


def test_inputs_come_from_the_alert_and_from_set(tmp_path):
    assert alert_value(_alert(), "labels.source.ip") == "203.0.113.50"
    assert alert_value(_alert(), "entities.ip") == "203.0.113.50"
    assert alert_value(_alert(), "organization.id") == "so-tttt"
    runner = _runner(tmp_path)
    plan = runner.plan("block_ssh_brute_force", alert=_alert())
    assert plan["inputs"] == {"address": "203.0.113.50", "ttl": "3600"}
    assert plan["agency"] == "so-tttt" and plan["alert_id"] == "a" * 32
    assert runner.plan("block_ssh_brute_force", alert=_alert(),
                       overrides={"ttl": "30m"})["inputs"]["ttl"] == "1800"
    with pytest.raises(ValueError, match="not an IP address"):
        runner.plan("block_ssh_brute_force", alert=_alert(ip="not-an-ip"))
    with pytest.raises(ValueError, match="input address is required"):
        runner.plan("block_address")
    with pytest.raises(ValueError, match="colour: not inputs"):
        runner.plan("block_address", overrides={"address": "203.0.113.99", "colour": "red"})


def test_conditions_keep_the_playbook_off_government_addresses(tmp_path):
    runner = _runner(tmp_path)
    with pytest.raises(ConditionNotMet, match="not in \\['government'\\]"):
        runner.plan("block_ssh_brute_force", alert=_alert(ip="10.20.10.99"))


def test_never_block_list_of_the_sample_province():
    safety = Safety(SAMPLE, PlaybookSettings(never_block=["192.0.2.0/25"], soc_addresses=["10.0.200.5/32"]))
    refused = {
        "10.0.1.10": "inventory never_block",  # DNS
        "10.0.1.20": "inventory never_block",  # domain controller
        "10.0.200.7": "inventory never_block",  # the SOC subnet
        "198.51.100.3": "inventory never_block",  # the national centre (placeholder range)
        "10.99.0.1": "management address",  # lab-nft-01, a managed device outside the never_block ranges
        "192.0.2.77": "playbook settings never_block",
        "127.0.0.1": "reserved",
        "203.0.113.0/16": "wider than",
        "10.0.1.0/24": "never-block",  # a range that contains the DNS servers
    }
    for target, why in refused.items():
        with pytest.raises(SafetyRefusal, match=why):
            safety.check_block(target)
    core = next(a for a in SAMPLE.assets.values() if a.role == "core" and a.addresses)
    with pytest.raises(SafetyRefusal, match="never-block"):
        safety.check_block(core.addresses[0])
    assert str(safety.check_block("203.0.113.200")) == "203.0.113.200/32"
    assert str(safety.check_block("203.0.113.128/25")) == "203.0.113.128/25"
    # the edge firewalls' own public addresses (203.0.113.2-4) are theirs: a range that holds one is refused
    with pytest.raises(SafetyRefusal, match="managed device dc-fw-sophos-01"):
        safety.check_block("203.0.113.0/24")
    # the same hosts written another way are the same hosts
    with pytest.raises(SafetyRefusal, match="inventory never_block"):
        safety.check_block("::ffff:10.0.1.10")
    with pytest.raises(SafetyRefusal, match="scope id"):
        safety.check_block("2001:db8::1%';id;'")


def test_evidence_that_cannot_be_trusted_waits_for_a_network_admin(tmp_path, monkeypatch):
    """On a non-core firewall the brute-force block would run at once; not when the alert's evidence came from an
    untrusted sender, when its trust is unknown, or when it rests on an outside indicator feed."""
    runner = _runner(tmp_path, library=_auto_library(tmp_path))
    own = dict(_alert(), organization={"id": "dc", "name": "Data centre"})  # the SonicWall's own agency
    trusted = runner.plan("block_ssh_brute_force", alert=own)
    assert not trusted["approval"]["required"], trusted["approval"]
    cases = {"evidence not trusted": dict(own, trust={"untrusted_events": 2, "trusted": False}),
             "no record of its evidence": {k: v for k, v in own.items() if k != "trust"},
             "indicator from an outside feed": dict(own, rule=dict(own["rule"], type="indicator")),
             # an alert of another agency (its key, its senders) does not steer the data centre's firewall
             "device dc-fw-sonicwall-01 is agency dc's, the alert agency so-tttt's": _alert()}
    for why, alert in cases.items():
        plan = runner.plan("block_ssh_brute_force", alert=alert)
        assert plan["approval"]["required"] and any(why in r for r in plan["approval"]["reasons"]), plan["approval"]


def _auto_library(tmp_path: Path) -> Path:
    """The shipped brute-force playbook aimed at the sample's non-core SonicWall (role internal)."""
    folder = tmp_path / "library"
    folder.mkdir()
    doc = yaml.safe_load((LIBRARY / "block_ssh_brute_force.yml").read_text())
    doc["steps"][0]["params"]["devices"] = {"ids": ["dc-fw-sonicwall-01"]}
    (folder / "block_ssh_brute_force.yml").write_text(yaml.safe_dump(doc))
    return folder


def test_a_block_of_a_known_host_or_for_an_unknown_agency_is_refused_or_waits(tmp_path):
    from inventory.model import InventoryDocument

    # an agency's public server outside every listed network is still a known host: a person decides
    doc = SAMPLE.document.model_dump(mode="json")
    doc["assets"].append({"id": "so-tttt-portal-01", "hostname": "so-tttt-portal-01", "kind": "server",
                          "agency": "so-tttt", "addresses": ["198.18.7.7"]})
    runner = _runner(tmp_path)
    runner = Runner(runner.store, Inventory(InventoryDocument.model_validate(doc)), runner.library, runner.settings)
    plan = runner.plan("block_address", overrides={"address": "198.18.7.7", "firewall_role": "internal"})
    assert plan["approval"]["required"] and any("so-tttt-portal-01" in r for r in plan["impact"]["reasons"])
    with pytest.raises(ValueError, match="not an agency of the inventory"):
        runner.plan("block_address", overrides={"address": "203.0.113.99", "agency": "nobody\r\nX-Injected: 1"})


def test_impact_decides_approval(tmp_path):
    runner = _runner(tmp_path)
    # on the sample province the edge firewalls are core devices: even one outside address waits for approval
    plan = runner.plan("block_ssh_brute_force", alert=_alert())
    assert plan["approval"]["required"] and any("core device dc-fw-sophos-01" in r for r in plan["impact"]["reasons"])
    # a non-core firewall (the SonicWall, role internal) and one outside address: runs at once
    low = runner.plan("block_address", overrides={"address": "203.0.113.99", "firewall_role": "internal"})
    assert low["impact"]["level"] == "low" and not low["approval"]["required"]
    wide = runner.plan("block_address", overrides={"address": "203.0.113.192/26", "firewall_role": "internal"})
    assert wide["approval"]["required"] and "whole range" in wide["impact"]["reasons"][0]
    inside = runner.plan("block_address", overrides={"address": "10.20.10.10", "firewall_role": "internal"})
    assert inside["approval"]["required"] and "province's own networks" in inside["impact"]["reasons"][0]
    quarantine = runner.plan("quarantine_host", overrides={"host": "so-tttt-web-01", "switch": "dc-sw-core-01",
                                                           "interface": "GigabitEthernet1/0/7"})
    assert quarantine["approval"]["required"]
    assert quarantine["steps"][0]["plan"][0]["commands"] == ["interface GigabitEthernet1/0/7",
                                                             " switchport access vlan 999"]


def test_cli_dry_run_prints_the_commands_per_device(tmp_path, monkeypatch):
    from suite.cli import app

    monkeypatch.setenv("SOC__STORE__URL", f"sqlite:///{tmp_path / 'soc.db'}")
    result = CliRunner().invoke(app, ["playbook", "run", "block_address", "--set", "address=203.0.113.99",
                                      "--set", "firewall_role=internal", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "DRY RUN" in result.output
    assert "device dc-fw-sonicwall-01 (sonicwall)" in result.output
    assert '> address-object ipv4 "soc-203.0.113.99_32" host 203.0.113.99 zone WAN' in result.output
    assert '< no address-object ipv4 "soc-203.0.113.99_32"' in result.output
    refused = CliRunner().invoke(app, ["playbook", "run", "block_address", "--set", "address=10.0.1.10",
                                       "--dry-run"])
    assert refused.exit_code != 0 and "never-block" in refused.output


def test_cli_check_reports_bad_files(tmp_path):
    from suite.cli import app

    (tmp_path / "bad.yml").write_text(BAD["unknown action"][0])
    result = CliRunner().invoke(app, ["playbook", "check", str(tmp_path)])
    assert result.exit_code == 1 and f"{tmp_path / 'bad.yml'}:5:" in result.output
    assert CliRunner().invoke(app, ["playbook", "check", str(LIBRARY)]).exit_code == 0


def test_settings_file_errors_name_file_and_key(tmp_path):
    """The playbooks section is read and checked with the one configuration: a bad value names the file and the
    key, and the section reaches the playbook settings as written."""
    from soc.config import ConfigError
    from suite.settings import load_settings

    path = tmp_path / "soc.yaml"
    path.write_text("playbooks:\n  max_block_prefix_v4: 4\n")
    with pytest.raises(ConfigError, match=r"soc.yaml.*playbooks.max_block_prefix_v4"):
        load_settings(path, environ={})
    path.write_text("playbooks:\n  smtp: {hots: mail}\n")
    with pytest.raises(ConfigError, match="playbooks.smtp.hots: unknown key"):
        load_settings(path, environ={})
    path.write_text("playbooks:\n  lock_timeout_seconds: 7\n  smtp: {host: 127.0.0.1, port: 2525}\n")
    settings = load_playbook_settings(load_settings(path, environ={}))
    assert settings.lock_timeout_seconds == 7 and settings.smtp.port == 2525
    assert load_playbook_settings() == PlaybookSettings()


# --- notify, indicator, case note ------------------------------------------------------------------------------
class _Smtp(socketserver.ThreadingTCPServer):
    """Just enough SMTP on loopback to receive one message (what a relay would get)."""

    allow_reuse_address = True
    daemon_threads = True

    def __init__(self):
        self.messages: list[str] = []
        outer = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                self.wfile.write(b"220 test ESMTP\r\n")
                data = None
                while True:
                    line = self.rfile.readline()
                    if not line:
                        return
                    if data is not None:
                        if line == b".\r\n":
                            outer.messages.append(b"".join(data).decode())
                            data = None
                            self.wfile.write(b"250 queued\r\n")
                        else:
                            data.append(line)
                        continue
                    verb = line[:4].upper()
                    if verb == b"EHLO" or verb == b"HELO":
                        self.wfile.write(b"250 test\r\n")
                    elif verb == b"DATA":
                        data = []
                        self.wfile.write(b"354 go\r\n")
                    elif verb == b"QUIT":
                        self.wfile.write(b"221 bye\r\n")
                        return
                    else:
                        self.wfile.write(b"250 ok\r\n")

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()


def test_notify_indicator_and_case_note(tmp_path):
    smtp = _Smtp()
    try:
        library = tmp_path / "lib"
        library.mkdir()
        (library / "tell.yml").write_text(yaml.safe_dump({
            "name": "tell", "title": "tell", "triggers": [{"rules": ["soc_ssh_brute_force"]}],
            "inputs": {"address": {"type": "ip", "from": "labels.source.ip"}},
            "steps": [
                {"id": "mail", "action": "notify", "params": {"channel": "email", "to": ["duty@soc.example"],
                                                             "subject": "blocked {{ address }}",
                                                             "message": "seen {{ address }}"}},
                {"id": "hook", "action": "notify", "params": {"message": "seen {{ address }}"}},
                {"id": "ioc", "action": "indicator", "params": {"value": "{{ address }}"}},
                {"id": "note", "action": "case_note", "params": {"text": "checked {{ address }}"}}],
            "approval": {"auto_low_impact": True}}))
        runner = _runner(tmp_path, library=library,
                         smtp={"host": "127.0.0.1", "port": smtp.server_address[1]})
        runner.store.upsert_alerts([_alert()])
        run = runner.execute(runner.create("tell", actor=Actor("alert", "a"), alert=_alert())["id"])
        assert run["state"] == "succeeded", run["result"]
        statuses = {s["id"]: (s["status"], s["message"]) for s in run["steps"]}
        assert statuses["mail"][0] == "done" and "duty@soc.example" in statuses["mail"][1]
        assert statuses["hook"] == ("skipped", "no webhook URL configured (playbooks.webhook.url)")
        [message] = smtp.messages
        assert "Subject: blocked 203.0.113.50" in message and run["id"] in message
        [indicator] = runner.store.find_documents("indicators", DocumentQuery())
        assert indicator["values"] == ["203.0.113.50"] and indicator["run_id"] == run["id"]
        note = runner.store.get_document("case_notes", "a" * 32)
        assert note["entries"][0]["text"] == "checked 203.0.113.50"
        # a second run for the same alert updates the note and the indicator, never duplicates them
        again = runner.execute(runner.create("tell", actor=Actor("alert", "a"), alert=_alert())["id"])
        assert again["state"] == "succeeded"
        assert len(runner.store.get_document("case_notes", "a" * 32)["entries"]) == 2
        assert len(runner.store.find_documents("indicators", DocumentQuery())) == 1
    finally:
        smtp.shutdown()
        smtp.server_close()


def _runner(tmp_path: Path, library: Path = LIBRARY, **settings) -> Runner:
    store = store_from_url(f"sqlite:///{tmp_path / 'soc.db'}")
    store.open()
    pb = PlaybookSettings(lock_dir=str(tmp_path / "locks"), library_dirs=[str(library)], **settings)
    return Runner(store, SAMPLE, load_library(pb.library_dirs), pb)


def test_an_invalid_block_record_is_set_aside_and_expiry_goes_on(tmp_path):
    """A block record with a target no device may be sent (written by an older version, or tampered with) never
    reaches a device and never stops the expiry of the others."""
    from playbooks.records import BLOCKS

    runner = _runner(tmp_path)
    device = next(iter(SAMPLE.devices))
    bad = {"id": "bad-1", "kind": "block", "device": device, "target": "2001:db8::1%';id;'", "state": "active",
           "run_id": "r1", "run_ids": ["r1"], "created": "2026-01-01T00:00:00.000Z",
           "expires_at": "2026-01-01T01:00:00.000Z", "history": []}
    broken = {"id": "bad-2", "kind": "no-such-kind", "state": "active", "expires_at": "2026-01-01T01:00:00.000Z"}
    runner.store.put_documents(BLOCKS, [bad, broken])
    results = runner.expire_due()
    assert [r["ok"] for r in results] == [False] and "not a valid target" in results[0]["message"]
    assert runner.store.get_document(BLOCKS, "bad-1")["state"] == "orphaned"
    assert runner.store.get_document(BLOCKS, "bad-2")["state"] == "orphaned"
    assert runner.expire_due() == []  # set aside for good


def test_a_run_for_an_alert_is_that_alerts_agency(tmp_path):
    """Naming another agency for an alert's run would move it past the other-agency check and into that agency's
    view: refused."""
    runner = _runner(tmp_path)
    with pytest.raises(ValueError, match="a run for an alert is that alert's agency's"):
        runner.plan("block_ssh_brute_force", alert=_alert(), overrides={"agency": "dc"})
    assert runner.plan("block_ssh_brute_force", alert=_alert(), overrides={"agency": "so-tttt"})["agency"] == "so-tttt"
