"""Managed devices are pinned: the suite talks SSH only to a device whose host key it has recorded.

On the real namespace firewall (tests/netns_firewall.py: nftables, Debian's sshd, netmiko over SSH): a device whose
key is not recorded is refused and nothing reaches it; `soc devices trust` (the real command, in a subprocess) shows
the fingerprint `ssh-keygen -lf` gives for the sshd's key and records it, after which a block works; a wrong
`--fingerprint` is refused; and when the firewall presents another key (a new key, as an impostor would have), the
next connection is refused, the firewall is left as it was, and a critical alert names the device and both keys.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from inventory.lookup import Inventory
from playbooks.loader import load_library
from playbooks.runner import Actor, Runner
from playbooks.settings import load_playbook_settings
from suite.settings import load_settings
from soc.storage import store_from_url
from soc.storage.base import AlertQuery
from tests.netns_firewall import NamespaceFirewall

pytestmark = pytest.mark.timeout(300)
PROJECT = Path(__file__).resolve().parent.parent.parent
ANALYST = Actor("cli", "ana", "analyst")
NETADMIN = Actor("cli", "nguyen", "network_admin")
FINGERPRINT = re.compile(r"SHA256:[A-Za-z0-9+/]{43}")


def _config(tmp_path: Path, lab: NamespaceFirewall) -> Path:
    """The suite's configuration: its data folder is tmp_path, so its known-hosts file is tmp_path/known_hosts
    (the default: `known_hosts_file` is not set)."""
    config = tmp_path / "soc.yaml"
    config.write_text(yaml.safe_dump({
        "data_dir": str(tmp_path), "store": {"url": f"sqlite:///{tmp_path / 'soc.db'}"},
        "inventory": {"path": str(lab.inventory(tmp_path / "inventory.yaml"))},
        "extensions": ["playbooks.service"],
        "reports": {"schedule_enabled": False},
        "playbooks": {"lock_dir": str(tmp_path / "locks"), "soc_addresses": [f"{lab.soc_address}/32"]}}))
    return config


def _runner(tmp_path: Path, config: Path) -> Runner:
    settings = load_settings(config, environ={})
    pb = load_playbook_settings(settings)
    assert pb.known_hosts_file == str(tmp_path / "known_hosts")  # the data folder's, by default
    store = store_from_url(settings.store.url)
    store.open()
    return Runner(store, Inventory.load(settings.inventory.path), load_library(pb.library_dirs), pb,
                  data_dir=settings.data_dir)


def soc(config: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """The real `soc` command line, in its own process, with this test's configuration only."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SOC__") and k not in ("SOC_CONFIG", "SOC_API_KEY")}
    return subprocess.run([sys.executable, "-m", "suite.cli", "devices", *args, "--config", str(config)],
                          input=stdin if stdin is not None else "", capture_output=True, text=True, env=env,
                          cwd=PROJECT, timeout=120)


def _block(runner: Runner, address: str, **overrides) -> dict:
    run = runner.create("block_address", actor=ANALYST, overrides={"address": address, **overrides})
    return runner.execute(run["id"])


def test_an_unpinned_device_is_refused_and_nothing_changes(clean, tmp_path):
    lab = clean
    config = _config(tmp_path, lab)
    runner = _runner(tmp_path, config)
    try:
        before = lab.nft("list", "ruleset")
        run = _block(runner, lab.attacker)
        assert run["state"] == "failed"
        [entry] = run["steps"][0]["devices"]
        assert entry["device"] == "lab-fw-01" and entry["status"] == "failed"
        assert "host key is not recorded" in entry["message"] and str(tmp_path / "known_hosts") in entry["message"]
        assert "soc devices trust lab-fw-01" in entry["message"]
        assert entry["exchanges"] == [] and runner.pool.opened == {}  # no session, not a command sent
        assert lab.nft("list", "ruleset") == before and lab.blocked_elements() == ""
        assert lab.connect(lab.attacker) == "open"
        listed = soc(config, "list")
        assert listed.returncode == 0, listed.stderr
        assert re.search(r"lab-fw-01\s.*not pinned", listed.stdout)
    finally:
        runner.pool.close_all()
        runner.store.close()


def test_trust_shows_the_sshd_fingerprint_records_it_and_then_a_block_works(clean, tmp_path):
    lab = clean
    config = _config(tmp_path, lab)
    known_hosts = tmp_path / "known_hosts"
    expected = lab.host_key_fingerprint()  # what `ssh-keygen -lf` prints for the sshd's own key
    trusted = soc(config, "trust", "lab-fw-01", "--yes")
    assert trusted.returncode == 0, trusted.stderr
    assert FINGERPRINT.findall(trusted.stdout)[0] == expected
    assert f"256 {expected} (ED25519)" in trusted.stdout
    lines = known_hosts.read_text().splitlines()
    assert lines == [f"{lab.management_address} ssh-ed25519 "
                     f"{Path(f'{lab.host_key}.pub').read_text().split()[1]}"]
    # the same address on another port is another SSH server: [host]:port, not pinned by the line above
    listed = soc(config, "list")
    assert re.search(rf"lab-fw-01\s+{re.escape(lab.management_address)}:22\s.*{re.escape(expected)}", listed.stdout)
    assert re.search(r"lab-fw-faulty\s.*not pinned", listed.stdout)
    again = soc(config, "trust", "lab-fw-01", "--yes")
    assert again.returncode == 0 and "already pinned" in again.stdout
    assert known_hosts.read_text().splitlines() == lines
    # asked, not --yes: a "no" records nothing, a "yes" does; a non-22 port is written [host]:port
    declined = soc(config, "trust", "lab-fw-faulty", stdin="n\n")
    assert declined.returncode == 1 and "Record this key for lab-fw-faulty?" in declined.stdout
    assert known_hosts.read_text().splitlines() == lines
    accepted = soc(config, "trust", "lab-fw-faulty", stdin="y\n")
    assert accepted.returncode == 0, accepted.stderr
    assert known_hosts.read_text().splitlines()[1].startswith(f"[{lab.management_address}]:{lab.faulty_port} "
                                                               f"ssh-ed25519 ")
    runner = _runner(tmp_path, config)
    try:
        run = _block(runner, lab.attacker)
        assert run["state"] == "succeeded", run["result"]
        assert lab.connect(lab.attacker, timeout=0.5) == "timeout" and lab.connect(lab.bystander) == "open"
        assert runner.pool.opened == {"lab-fw-01": 1}
        # and the device on port 2222 is reached too (its nft lies, so the run fails at verification, not before)
        faulty = _block(runner, lab.bystander, firewall_role="test-faulty")
        assert "verification failed" in faulty["steps"][0]["devices"][0]["message"]
        rolled = runner.rollback(run["id"], NETADMIN)
        assert rolled["state"] == "rolled_back" and lab.connect(lab.attacker) == "open"
    finally:
        runner.pool.close_all()
        runner.store.close()


def test_a_wrong_fingerprint_is_refused_and_nothing_is_recorded(clean, tmp_path):
    lab = clean
    config = _config(tmp_path, lab)
    known_hosts = tmp_path / "known_hosts"
    wrong = "SHA256:" + "A" * 43
    refused = soc(config, "trust", "lab-fw-01", "--fingerprint", wrong)
    assert refused.returncode == 1
    assert "REFUSED" in refused.stderr and wrong in refused.stderr and lab.host_key_fingerprint() in refused.stderr
    assert not known_hosts.exists()
    with_yes = soc(config, "trust", "lab-fw-01", "--yes", "--fingerprint", wrong)  # --yes does not overrule it
    assert with_yes.returncode == 1 and not known_hosts.exists()
    # the right one (as read on the device, padding or not) records the key without a question
    right = soc(config, "trust", "lab-fw-01", "--fingerprint", lab.host_key_fingerprint() + "=")
    assert right.returncode == 0, right.stderr
    assert "matches the expected fingerprint" in right.stdout and known_hosts.exists()


def test_a_changed_host_key_is_refused_leaves_the_firewall_alone_and_raises_an_alert(clean, tmp_path):
    """The last test on the lab in this module: it gives the firewall a new host key."""
    from suite.runtime import Suite

    lab = clean
    config = _config(tmp_path, lab)
    lab.write_known_hosts(tmp_path / "known_hosts")  # pinned, as `soc devices trust` would
    old = lab.host_key_fingerprint()
    suite = Suite(load_settings(config, environ={}))  # the suite with its playbook service (extension)
    try:
        service = suite.service("playbooks")
        first = _block(service.runner, lab.attacker)
        assert first["state"] == "succeeded", first["result"]
        assert lab.connect(lab.attacker, timeout=0.5) == "timeout"
        service.runner.pool.close_all()  # the next change opens a new SSH session

        new = lab.rotate_host_key()
        assert new != old
        before = lab.nft("list", "ruleset")
        opened = dict(service.runner.pool.opened)
        run = _block(service.runner, lab.bystander)
        assert run["state"] == "failed"
        [entry] = run["steps"][0]["devices"]
        assert "SSH host key CHANGED" in entry["message"] and old in entry["message"] and new in entry["message"]
        assert entry["exchanges"] == [] and service.runner.pool.opened == opened
        assert lab.nft("list", "ruleset") == before
        assert lab.connect(lab.bystander) == "open" and lab.connect(lab.attacker, timeout=0.5) == "timeout"

        [alert] = suite.store.list_alerts(AlertQuery(rule_id="soc_device_host_key_changed"))
        assert alert["severity"] == "critical" and alert["status"] == "new"
        assert alert["labels"]["soc.device.id"] == "lab-fw-01" and alert["organization"]["id"] == "lab"
        assert alert["labels"]["ssh.host_key.expected"] == old and alert["labels"]["ssh.host_key.presented"] == new
        [evidence] = suite.store.get_events(alert["evidence"])  # the event behind it, for the analyst
        assert evidence["event"]["action"] == "ssh_host_key_mismatch" and evidence["soc"]["device"]["id"] == "lab-fw-01"
        assert evidence["soc"]["ssh_host_key"]["expected"]["fingerprint"] == old
        assert evidence["soc"]["ssh_host_key"]["presented"]["fingerprint"] == new
        assert evidence["destination"]["ip"] == lab.management_address

        # `soc devices` sees it too, and trust does not replace a pinned key without being told to
        listed = soc(config, "list", "--check")
        assert re.search(rf"lab-fw-01\s.*{re.escape(old)}.*CHANGED: presents 256 {re.escape(new)}", listed.stdout)
        kept = (tmp_path / "known_hosts").read_text()
        refused = soc(config, "trust", "lab-fw-01", "--yes")
        assert refused.returncode == 1 and "--replace" in refused.stderr
        assert (tmp_path / "known_hosts").read_text() == kept
        # the admin checks the new key on the device and replaces the pin: the suite reaches the firewall again
        replaced = soc(config, "trust", "lab-fw-01", "--replace", "--fingerprint", new)
        assert replaced.returncode == 0, replaced.stderr
        rolled = service.runner.rollback(first["id"], NETADMIN)
        assert rolled["state"] == "rolled_back" and lab.connect(lab.attacker) == "open"
    finally:
        suite.close()


def test_known_hosts_fingerprints_ports_hashed_names_and_other_lines(tmp_path):
    """No device needed: fingerprints as ssh-keygen prints them for each key type, [host]:port names, names hashed
    by `ssh-keygen -H`, and a trust that keeps every other line of the file as it was."""
    import base64
    import shutil

    import paramiko

    from playbooks.connections import HostKeyInfo, KnownHosts, KnownHostsError

    # ssh-keygen comes with openssh-server, which scripts/install-system-deps.sh installs: never skipped.
    assert shutil.which("ssh-keygen"), "ssh-keygen is missing: run scripts/install-system-deps.sh"
    keys = {}
    for kind, bits in (("ed25519", "256"), ("ecdsa", "256"), ("rsa", "3072")):
        path = tmp_path / f"key_{kind}"
        subprocess.run(["ssh-keygen", "-q", "-t", kind, "-b", bits, "-N", "", "-f", str(path)], check=True)
        listed = subprocess.run(["ssh-keygen", "-lf", f"{path}.pub"], capture_output=True, text=True).stdout.split()
        kind_name, blob = Path(f"{path}.pub").read_text().split()[:2]
        key = paramiko.PKey.from_type_string(kind_name, base64.b64decode(blob))
        info = HostKeyInfo.of(key)
        # ssh-keygen -lf: "<bits> SHA256:<b64> <comment> (<TYPE>)"
        assert (str(info.bits), info.fingerprint, f"({info.kind})") == (listed[0], listed[1], listed[-1])
        assert info.matches(listed[1]) and info.matches(listed[1][7:] + "=") and not info.matches("SHA256:")
        md5 = subprocess.run(["ssh-keygen", "-lf", f"{path}.pub", "-E", "md5"], capture_output=True,
                             text=True).stdout.split()[1]
        assert info.md5 == md5 and info.matches(md5)
        keys[kind] = key
    known = KnownHosts(tmp_path / "data" / "known_hosts")
    assert known.keys_for("192.0.2.1", 22) == {}  # no file yet: nothing pinned
    known.path.parent.mkdir()
    known.path.write_text("# kept\nother.example ssh-ed25519 " + keys["ed25519"].get_base64() + "\n")
    known.record("192.0.2.1", 2222, keys["ecdsa"])
    assert known.path.read_text().splitlines()[-1].startswith("[192.0.2.1]:2222 ecdsa-sha2-nistp256 ")
    assert list(known.keys_for("192.0.2.1", 2222)) == ["ecdsa-sha2-nistp256"]
    assert known.keys_for("192.0.2.1", 22) == {}  # another port, another server
    # names hashed by ssh-keygen -H are found, and replaced
    subprocess.run(["ssh-keygen", "-q", "-H", "-f", str(known.path)], check=True, capture_output=True)
    assert "192.0.2.1" not in known.path.read_text()
    assert known.keys_for("192.0.2.1", 2222)["ecdsa-sha2-nistp256"] == keys["ecdsa"]
    known.record("192.0.2.1", 2222, keys["rsa"], replace=True)
    assert list(known.keys_for("192.0.2.1", 2222)) == ["ssh-rsa"]
    assert known.keys_for("other.example", 22)["ssh-ed25519"] == keys["ed25519"]
    # a damaged line is named, not skipped
    with open(known.path, "a") as f:
        f.write("192.0.2.9 ssh-ed25519 not*base64\n")
    with pytest.raises(KnownHostsError, match=r"known_hosts:\d+: "):
        known.keys_for("192.0.2.1", 2222)
