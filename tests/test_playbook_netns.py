"""Playbooks on a real Linux firewall: network namespaces, veth pairs, nftables, Debian's sshd, netmiko over SSH.

The topology (tests/netns_firewall.py): an attacker namespace with two sources (the attacker and an innocent
neighbour), the firewall namespace (ip forwarding, nftables, sshd on its management address) and a protected server
namespace with a TCP listener. Every claim is checked on the traffic itself: the attacker's TCP connections to the
server time out after the block, the neighbour's still open, and both open again after the time to live.
"""

from __future__ import annotations

import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from inventory.lookup import Inventory
from inventory.model import InventoryDocument
from playbooks.actions.indicator import indicator_id
from playbooks.connections import ConnectionPool, HostKeyNotTrusted
from playbooks.drivers import Operation
from playbooks.loader import load_library
from playbooks.locks import DeviceLocks, LockTimeout
from playbooks.records import BLOCKS, RunFilter, block_id
from playbooks.runner import Actor, Runner, RunError
from playbooks.safety import SafetyRefusal
from playbooks.settings import PlaybookSettings
from playbooks.transaction import DeviceTransaction, Mode, TransactionStatus
from soc.storage import store_from_url
from soc.storage.base import DocumentQuery
from tests.netns_firewall import NamespaceFirewall
from tests.conftest import wait_for

pytestmark = pytest.mark.timeout(300)
LIBRARY = Path(__file__).resolve().parent.parent / "playbooks" / "library"
ANALYST = Actor("cli", "ana", "analyst")
NETADMIN = Actor("cli", "nguyen", "network_admin")


def _runner(tmp_path: Path, lab: NamespaceFirewall, *, library: Path = LIBRARY, core: bool = False,
            **settings) -> Runner:
    inventory = Inventory.load(lab.inventory(tmp_path / "inventory.yaml", core=core))
    store = store_from_url(f"sqlite:///{tmp_path / 'soc.db'}")
    store.open()
    settings.setdefault("known_hosts_file", str(lab.known_hosts))  # the lab's host key, pinned
    pb = PlaybookSettings(lock_dir=str(tmp_path / "locks"), library_dirs=[str(library)],
                          soc_addresses=[f"{lab.soc_address}/32"], **settings)
    return Runner(store, inventory, load_library(pb.library_dirs), pb)


def _short_ttl_library(tmp_path: Path, seconds: int) -> Path:
    """The shipped library with the brute-force playbook's default time to live shortened for the test."""
    folder = tmp_path / "library"
    folder.mkdir()
    for path in LIBRARY.glob("*.yml"):
        doc = yaml.safe_load(path.read_text())
        if doc["name"] == "block_ssh_brute_force":
            doc["inputs"]["ttl"]["default"] = f"{seconds}s"
        (folder / path.name).write_text(yaml.safe_dump(doc, sort_keys=False))
    return folder


class _Webhook:
    """A webhook receiver on loopback; `delay` makes it slow (to catch a run mid-step)."""

    def __init__(self, delay: float = 0.0):
        self.received: list[bytes] = []
        self.release = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.received.append(body)
                if delay:
                    outer.release.wait(delay)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


_wait = wait_for  # waits for a condition, failing with what it waited for


# --- the whole path: syslog → Sigma → alert → playbook → netmiko → nftables → traffic ----------------------------
def test_brute_force_alert_blocks_the_attacker_until_the_ttl_expires(clean, tmp_path, monkeypatch):
    from suite.demo import scenario_lines, send_tcp
    from suite.runtime import Suite, SuiteThread
    from tests.conftest import make_settings

    lab = clean
    hook = _Webhook()
    pb_config = tmp_path / "playbooks.yaml"
    pb_config.write_text(yaml.safe_dump({
        "library_dirs": [str(_short_ttl_library(tmp_path, 4))], "lock_dir": str(tmp_path / "locks"),
        "expiry_interval_seconds": 0.3, "soc_addresses": [f"{lab.soc_address}/32"], "webhook": {"url": hook.url},
        "known_hosts_file": str(lab.known_hosts)}))
    settings = make_settings(tmp_path, sections={"playbooks": yaml.safe_load(pb_config.read_text())}, SOC__INVENTORY__PATH=str(lab.inventory(tmp_path / "inventory.yaml")),
                             SOC__EXTENSIONS="[playbooks.service]")
    runner = SuiteThread(Suite(settings)).start()
    try:
        store = runner.suite.store
        send_tcp("127.0.0.1", runner.suite.bound["syslog_tcp"], scenario_lines(lab.attacker, "lab-srv-01",
                                                                                settings.tz))
        blocked = _wait(lambda: lab.connect(lab.attacker, timeout=0.5) == "timeout", 30, "the attacker blocked")
        assert blocked and lab.connect(lab.bystander) == "open"
        service = runner.suite.service("playbooks")
        runs = _wait(lambda: [r for r in service.runner.records.find_runs(
            RunFilter(playbook="block_ssh_brute_force"))
            if r["state"] in ("succeeded", "reverted")], 15, "the run to finish")
        run = runs[0]
        alert = store.get_alert(run["alert_id"])
        assert alert["rule"]["name"] == "soc_ssh_brute_force" and alert["labels"]["source.ip"] == lab.attacker
        assert run["started_by"]["kind"] == "alert" and run["agency"] == "lab"
        assert run["approval"]["policy"] == "automatic"
        block_step = run["steps"][0]
        [entry] = block_step["devices"]
        assert entry["device"] == "lab-fw-01" and entry["status"] == "changed"
        phases = [x["phase"] for x in entry["exchanges"]]
        assert "apply" in phases and "verify" in phases
        assert any(lab.attacker in x["command"] for x in entry["exchanges"] if x["phase"] == "apply")
        # the other steps: indicator shared, case note opened, webhook told
        assert store.get_document("indicators", indicator_id("ipv4-addr", lab.attacker))["values"] == [lab.attacker]
        assert store.get_document("case_notes", run["alert_id"])["entries"][0]["run_id"] == run["id"]
        assert any(lab.attacker.encode() in body for body in hook.received)
        # the same alert keeps being updated while the attack goes on: still one run
        assert len(service.runner.records.find_runs(
            RunFilter(alert_id=run["alert_id"]))) == 1
        # after the time to live the suite removes the block by itself and traffic passes again
        _wait(lambda: lab.connect(lab.attacker, timeout=0.5) == "open", 20, "the block to expire")
        assert lab.attacker not in lab.blocked_elements()
        _wait(lambda: service.runner.records.get_run(run["id"])["state"] == "reverted", 10, "run reverted")
        assert store.get_document(BLOCKS, block_id("lab-fw-01", f"{lab.attacker}/32", "block"))["removed_by"] == \
            "expired"
    finally:
        runner.stop()
        hook.close()


def test_failed_verification_rolls_back_and_fails_the_run(clean, tmp_path):
    """lab-fw-faulty is the same firewall behind an sshd whose `nft` says yes to changes and makes none."""
    lab = clean
    runner = _runner(tmp_path, lab)
    run = runner.create("block_address", actor=ANALYST,
                        overrides={"address": lab.attacker, "firewall_role": "test-faulty"})
    run = runner.execute(run["id"])
    assert run["state"] == "failed"
    [entry] = run["steps"][0]["devices"]
    assert "verification failed" in entry["message"] and "rolled back" in entry["message"]
    assert [x["phase"] for x in entry["exchanges"]][-2:] == ["rollback", "rollback"]
    block = runner.store.get_document(BLOCKS, block_id("lab-fw-faulty", f"{lab.attacker}/32", "block"))
    assert block["state"] == "removed" and block["removed_by"] == "rollback"
    assert lab.attacker not in lab.blocked_elements()
    assert lab.connect(lab.attacker) == "open"


# --- the device transaction itself (playbooks/transaction.py) -----------------------------------------------------
def test_transaction_rolls_back_at_once_when_verify_fails_and_reports_it(clean, tmp_path):
    """On lab-fw-faulty (an nft that acknowledges changes and makes none) the transaction commits, reads the block
    back, finds it not in force, sends the undo at once and reads the previous state back; its typed result says
    all of it. before_commit runs before any command that changes the device; settle once the outcome is known."""
    lab = clean
    runner = _runner(tmp_path, lab)
    op = Operation("block", f"{lab.attacker}/32", comment="soc-test")
    tx = DeviceTransaction(runner.inventory.devices["lab-fw-faulty"], op, locks=runner.locks, pool=runner.pool)
    seen: list[tuple] = []
    result = tx.run(Mode.CHANGE, comment="soc test",
                    before_commit=lambda change: seen.append(("before_commit",
                                                              [x.phase for x in tx.session.transcript])),
                    settle=lambda outcome: seen.append(("settle", outcome.status)))
    assert result.status is TransactionStatus.ROLLED_BACK and not result.in_force
    assert result.before.in_force is False and result.after.in_force is False
    assert result.restored is True and result.error is None
    assert result.change.commands and result.change.rollback
    assert result.message == ("lab-fw-faulty: verification failed: the change is not in force after apply; "
                              "rolled back")
    phases = [x["phase"] for x in result.exchanges]
    assert list(dict.fromkeys(phases)) == ["prepare", "check", "apply", "verify", "rollback"]
    assert {x["device"] for x in result.exchanges} == {"lab-fw-faulty"}
    assert seen[0][0] == "before_commit" and "check" in seen[0][1] and "apply" not in seen[0][1]
    assert seen[1:] == [("settle", TransactionStatus.ROLLED_BACK)]
    assert lab.attacker not in lab.blocked_elements() and lab.connect(lab.attacker) == "open"


def test_transaction_modes_on_the_real_firewall(clean, tmp_path):
    """CHANGE puts a block in force and reads it back; again, it sends nothing; READ only reads; RESTORE (expiry,
    undo) puts the previous state back with neither prepare nor rollback, and on the faulty sshd leaves an
    unverified change as it is; a device that is not pinned is a FAILED result, never an exception."""
    lab = clean
    runner = _runner(tmp_path, lab)
    block = Operation("block", f"{lab.attacker}/32")

    def run(op: Operation, mode: Mode, device: str = "lab-fw-01", on: Runner = runner, **kw):
        return DeviceTransaction(on.inventory.devices[device], op, locks=on.locks, pool=on.pool).run(mode, **kw)

    def phases(result) -> set[str]:
        return {x["phase"] for x in result.exchanges}

    changed = run(block, Mode.CHANGE)
    assert changed.status is TransactionStatus.CHANGED and changed.in_force and changed.after.in_force
    assert changed.lock_wait_ms is not None and changed.message == f"lab-fw-01: {changed.change.description}"
    assert lab.connect(lab.attacker, timeout=0.5) == "timeout"
    again = run(block, Mode.CHANGE)
    assert again.status is TransactionStatus.UNCHANGED and again.change is None and "apply" not in phases(again)
    assert again.message.endswith("is already in force on lab-fw-01; nothing changed")
    read = run(block, Mode.READ)
    assert read.status is TransactionStatus.UNCHANGED and phases(read) == {"check"}
    removed = run(block.inverse(), Mode.RESTORE, phase="revert")
    assert removed.status is TransactionStatus.CHANGED and removed.message.endswith("done and verified")
    assert phases(removed) == {"check", "revert", "verify"}
    assert run(block, Mode.READ).status is TransactionStatus.NOT_IN_FORCE
    assert lab.connect(lab.attacker) == "open"
    unverified = run(block, Mode.RESTORE, device="lab-fw-faulty", phase="revert")
    assert unverified.status is TransactionStatus.UNVERIFIED and not unverified.in_force
    assert "rollback" not in phases(unverified) and unverified.restored is None
    (tmp_path / "unpinned").mkdir()
    (tmp_path / "empty_known_hosts").write_text("")
    unpinned = _runner(tmp_path / "unpinned", lab, known_hosts_file=str(tmp_path / "empty_known_hosts"))
    failed = run(block, Mode.CHANGE, on=unpinned)
    assert failed.status is TransactionStatus.FAILED and isinstance(failed.error, HostKeyNotTrusted)
    assert failed.exchanges == [] and failed.before is None and "soc devices trust lab-fw-01" in failed.message
    assert lab.connect(lab.attacker) == "open"


def test_failure_on_a_later_device_rolls_back_the_earlier_one(clean, tmp_path):
    """One step over two devices: the firewall takes the block, the second device cannot be reached (its key file
    is gone), so the run fails and the first device's block is rolled back."""
    lab = clean
    library = tmp_path / "lib"
    library.mkdir()
    (library / "both.yml").write_text(yaml.safe_dump({
        "name": "block_on_both", "title": "both", "inputs": {"address": {"type": "ip"}},
        "steps": [{"id": "block", "action": "block",
                   "params": {"address": "{{ address }}", "devices": ["lab-fw-01", "lab-fw-lost"]}}],
        "approval": {"auto_low_impact": True}}))
    runner = _runner(tmp_path, lab, library=library)
    doc = yaml.safe_load((tmp_path / "inventory.yaml").read_text())
    lost = dict(doc["devices"][0], id="lab-fw-lost",
                credentials={"username": "root", "key_file": str(tmp_path / "no-such-key")})
    doc["devices"].append(lost)
    runner = Runner(runner.store, Inventory(InventoryDocument.model_validate(doc)), runner.library, runner.settings)
    run = runner.execute(runner.create("block_on_both", actor=ANALYST, overrides={"address": lab.attacker})["id"])
    assert run["state"] == "failed" and run["result"]["rolled_back"] is True
    assert [d["status"] for d in run["steps"][0]["devices"]] == ["changed", "failed"]
    assert "key file" in run["steps"][0]["devices"][1]["message"]
    assert run["result"]["rollback"][0]["ok"] is True
    assert lab.attacker not in lab.blocked_elements()
    assert lab.connect(lab.attacker) == "open"


def test_never_block_list_refuses_and_nothing_is_sent(clean, tmp_path):
    lab = clean
    runner = _runner(tmp_path, lab)
    for address, why in ((lab.soc_address, "the SOC itself"), (lab.management_address, "management address"),
                         (lab.server, "inventory never_block"), (f"{lab.server}/28", "inventory never_block"),
                         (f"{lab.attacker}/16", "wider than")):
        with pytest.raises(SafetyRefusal, match=why) as refused:
            runner.create("block_address", actor=NETADMIN, overrides={"address": address})
        run = runner.records.get_run(refused.value.run_id)
        assert run["state"] == "failed" and run["result"]["refused"] is True
    assert runner.pool.opened == {}  # not even a login
    assert "elements" not in lab.blocked_elements()


def test_approval_holds_the_run_until_a_network_admin_approves(clean, tmp_path):
    lab = clean
    runner = _runner(tmp_path, lab, core=True)  # the firewall is a core device: any change needs approval
    run = runner.create("block_address", actor=ANALYST, overrides={"address": lab.attacker})
    assert run["state"] == "pending_approval"
    assert any("core device lab-fw-01" in r for r in run["impact"]["reasons"])
    with pytest.raises(RunError, match="pending_approval"):
        runner.execute(run["id"])
    with pytest.raises(PermissionError):
        runner.approve(run["id"], ANALYST)
    time.sleep(0.3)
    assert lab.connect(lab.attacker) == "open" and runner.pool.opened == {}
    approved = runner.approve(run["id"], NETADMIN)
    assert approved["approval"]["approved_by"]["name"] == "nguyen"
    done = runner.execute(run["id"])
    assert done["state"] == "succeeded"
    assert lab.connect(lab.attacker, timeout=0.5) == "timeout" and lab.connect(lab.bystander) == "open"
    # an operator rolls it back
    rolled = runner.rollback(run["id"], NETADMIN)
    assert rolled["state"] == "rolled_back" and lab.connect(lab.attacker) == "open"


def test_blocking_twice_changes_nothing_and_a_burst_uses_one_session(clean, tmp_path):
    lab = clean
    runner = _runner(tmp_path, lab)
    first = runner.execute(runner.create("block_address", actor=ANALYST, overrides={"address": lab.attacker})["id"])
    second = runner.execute(runner.create("block_address", actor=ANALYST, overrides={"address": lab.attacker})["id"])
    assert first["steps"][0]["devices"][0]["status"] == "changed"
    entry = second["steps"][0]["devices"][0]
    assert entry["status"] == "unchanged" and "already in force" in entry["message"]
    assert not any(x["phase"] == "apply" for x in entry["exchanges"])
    assert lab.blocked_elements().count(lab.attacker) == 1
    # a burst of blocks on the one firewall from parallel threads: serialised by the lock, one SSH session
    base = lab.attacker.rsplit(".", 1)[0]
    targets = [f"{base}.{n}" for n in range(80, 100)]
    results: list[dict] = []

    def block(address: str) -> None:
        results.append(runner.execute(runner.create("block_address", actor=ANALYST,
                                                    overrides={"address": address})["id"]))

    threads = [threading.Thread(target=block, args=(t,)) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(r["state"] for r in results) == ["succeeded"] * len(targets)
    assert runner.pool.opened == {"lab-fw-01": 1}
    listed = lab.blocked_elements()
    assert all(t in listed for t in targets)


def test_restart_reads_half_made_blocks_back_and_expires_them(clean, tmp_path):
    """A block recorded as 'applying' (the suite died between sending it and recording it in force) is read back
    from the device after a restart: in force, so recorded active with its expiry, then removed at expiry."""
    lab = clean
    runner = _runner(tmp_path, lab)
    runner.execute(runner.create("block_address", actor=ANALYST, overrides={"address": lab.bystander,
                                                                           "ttl": "2s"})["id"])
    record = runner.store.get_document(BLOCKS, block_id("lab-fw-01", f"{lab.bystander}/32", "block"))
    record["state"] = "applying"
    runner.store.put_documents(BLOCKS, [record])
    fresh = _runner(tmp_path, lab)  # as after a restart: a new pool, a new process state
    recovered = fresh.recover()
    assert {"block": record["id"], "state": "active"} in recovered["reconciled"]
    assert fresh.store.get_document(BLOCKS, record["id"])["expires_at"] == record["expires_at"]
    assert lab.connect(lab.bystander, timeout=0.5) == "timeout"
    time.sleep(2.1)
    assert [r["ok"] for r in fresh.expire_due()] == [True]
    assert lab.connect(lab.bystander) == "open"


def test_null_route_cuts_the_way_back_to_the_attacker_until_it_expires(clean, tmp_path):
    """A blackhole route on the firewall for the attacker: the server's answers to it are dropped there."""
    lab = clean
    runner = _runner(tmp_path, lab)
    run = runner.create("null_route_destination", actor=ANALYST,
                        overrides={"destination": lab.attacker, "router_role": "wan-edge", "ttl": "2s"})
    assert run["state"] == "pending_approval"  # a null route always waits for a network admin
    runner.approve(run["id"], NETADMIN)
    done = runner.execute(run["id"])
    assert done["state"] == "succeeded", done["result"]
    assert lab.connect(lab.attacker, timeout=0.5) == "timeout" and lab.connect(lab.bystander) == "open"
    assert "blackhole" in subprocess.run(["ip", "netns", "exec", lab.fw_ns, "ip", "route", "show", "type",
                                          "blackhole"], capture_output=True, text=True).stdout
    time.sleep(2.1)
    assert [r["ok"] for r in runner.expire_due()] == [True]
    assert lab.connect(lab.attacker) == "open"
    assert runner.records.get_run(run["id"])["state"] == "reverted"


def test_device_lock_times_out_while_another_change_holds_it(tmp_path):
    locks = DeviceLocks(tmp_path, timeout=0.3)
    other = DeviceLocks(tmp_path, timeout=0.3)  # another process's view of the same lock files
    with locks.hold("fw-1"):
        with pytest.raises(LockTimeout):
            with other.hold("fw-1"):
                pass
        with other.hold("fw-2"):
            pass
    with other.hold("fw-1"):
        pass


def test_iptables_driver_blocks_on_the_real_firewall(clean, tmp_path):
    import shutil

    if shutil.which("iptables") is None:
        pytest.skip("!!! iptables is not installed (Debian: iptables): the iptables driver is tested on its "
                    "rendered commands only !!!")
    lab = clean
    inventory_path = lab.inventory(tmp_path / "inventory.yaml")
    doc = yaml.safe_load(inventory_path.read_text())
    doc["devices"][0]["driver"] = "iptables"
    inventory_path.write_text(yaml.safe_dump(doc))
    inventory = Inventory(InventoryDocument.model_validate(doc))
    store = store_from_url(f"sqlite:///{tmp_path / 'soc.db'}")
    store.open()
    pb = PlaybookSettings(lock_dir=str(tmp_path / "locks"), soc_addresses=[f"{lab.soc_address}/32"],
                          known_hosts_file=str(lab.known_hosts))
    runner = Runner(store, inventory, load_library(pb.library_dirs), pb, pool=ConnectionPool(pb))
    try:
        run = runner.execute(runner.create("block_address", actor=ANALYST,
                                           overrides={"address": lab.attacker, "ttl": "1s"})["id"])
        assert run["state"] == "succeeded", run["result"]
        assert lab.connect(lab.attacker, timeout=0.5) == "timeout" and lab.connect(lab.bystander) == "open"
        time.sleep(1.1)
        assert [r["ok"] for r in runner.expire_due()] == [True]
        assert lab.connect(lab.attacker) == "open"
    finally:
        cleanup = ["iptables -F SOC-BLOCK", "iptables -D INPUT -j SOC-BLOCK",
                              "iptables -D FORWARD -j SOC-BLOCK", "iptables -X SOC-BLOCK",
                              "ip6tables -D INPUT -j SOC-BLOCK", "ip6tables -D FORWARD -j SOC-BLOCK",
                              "ip6tables -X SOC-BLOCK"]
        for command in cleanup:
            subprocess.run(["ip", "netns", "exec", lab.fw_ns, *command.split()], capture_output=True)
        runner.pool.close_all()


# --- the API, with approval ----------------------------------------------------------------------------------------
def test_api_start_approve_search_and_roll_back(clean, tmp_path, monkeypatch):
    import httpx

    from suite.runtime import Suite, SuiteThread
    from soc_api.keys import create_key
    from tests.conftest import make_settings

    lab = clean
    pb_config = tmp_path / "playbooks.yaml"
    pb_config.write_text(yaml.safe_dump({"lock_dir": str(tmp_path / "locks"),
                                         "soc_addresses": [f"{lab.soc_address}/32"],
                                         "known_hosts_file": str(lab.known_hosts)}))
    settings = make_settings(tmp_path, sections={"playbooks": yaml.safe_load(pb_config.read_text())}, SOC__INVENTORY__PATH=str(lab.inventory(tmp_path / "inv.yaml", core=True)),
                             SOC__EXTENSIONS="[playbooks.service]")
    suite = SuiteThread(Suite(settings)).start()
    try:
        store = suite.suite.store
        keys = {role: create_key(store, role)[0] for role in ("analyst", "network_admin")}
        keys["other_agency"] = create_key(store, "agency", agency="elsewhere")[0]
        api = httpx.Client(base_url=f"http://127.0.0.1:{suite.suite.bound['api']}/api/v1", timeout=30)
        as_ = lambda who: {"X-API-Key": keys[who]}  # noqa: E731
        plan = api.post("/playbooks/block_address/runs", headers=as_("analyst"),
                        json={"inputs": {"address": lab.attacker}, "dry_run": True}).json()
        assert plan["steps"][0]["plan"][0]["commands"] == \
            [f"nft add element inet soc block4 '{{ {lab.attacker} comment \"soc-{plan['id'][:16]}\" }}'"]
        response = api.post("/playbooks/block_address/runs", headers=as_("analyst"),
                            json={"inputs": {"address": lab.attacker, "agency": "lab"}})
        assert response.status_code == 201, response.text
        run = response.json()
        assert run["state"] == "pending_approval"
        assert api.post(f"/playbooks/runs/{run['id']}/approve", headers=as_("analyst")).status_code == 403
        assert lab.connect(lab.attacker) == "open"
        approved = api.post(f"/playbooks/runs/{run['id']}/approve", headers=as_("network_admin"))
        assert approved.status_code == 200 and approved.json()["state"] == "running"
        _wait(lambda: api.get(f"/playbooks/runs/{run['id']}", headers=as_("analyst")).json()["state"]
              == "succeeded", 20, "the approved run")
        assert lab.connect(lab.attacker, timeout=0.5) == "timeout"
        found = api.get("/playbooks/runs", headers=as_("analyst"),
                        params={"state": "succeeded", "device": "lab-fw-01", "playbook": "block_address",
                                "agency": "lab"}).json()["runs"]
        assert [r["id"] for r in found] == [run["id"]]
        assert api.get("/playbooks/runs", headers=as_("other_agency")).json()["runs"] == []
        assert api.get(f"/playbooks/runs/{run['id']}", headers=as_("other_agency")).status_code == 404
        blocks = api.get("/playbooks/blocks", headers=as_("analyst")).json()["blocks"]
        assert [(b["target"], b["state"]) for b in blocks] == [(f"{lab.attacker}/32", "active")]
        refused = api.post("/playbooks/block_address/runs", headers=as_("analyst"),
                           json={"inputs": {"address": lab.soc_address}})
        assert refused.status_code == 422 and "never-block" in refused.json()["detail"]["refused"]
        rolled = api.post(f"/playbooks/runs/{run['id']}/rollback", headers=as_("network_admin"))
        assert rolled.status_code == 200 and rolled.json()["state"] == "rolled_back"
        assert lab.connect(lab.attacker) == "open"
    finally:
        suite.stop()


# --- kill the suite during a run, restart it ----------------------------------------------------------------------
def test_killed_during_a_run_then_restarted(clean, tmp_path):
    """`soc serve` (a real process) runs a playbook that blocks, then waits on a slow webhook; it is killed with
    SIGKILL there. After the restart the run is marked failed (interrupted), the block it left has a recorded expiry,
    and the restarted suite removes it when that expiry comes."""
    import os
    import signal
    import sys

    import httpx

    from soc.storage import open_store
    from suite.settings import load_settings
    from soc_api.keys import create_key
    from tests.conftest import free_port

    lab = clean
    hook = _Webhook(delay=60)
    library = tmp_path / "lib"
    library.mkdir()
    (library / "slow.yml").write_text(yaml.safe_dump({
        "name": "block_then_tell", "title": "block, then tell a slow webhook",
        "inputs": {"address": {"type": "ip"}},
        "steps": [{"id": "block", "action": "block",
                   "params": {"address": "{{ address }}", "ttl": "8s", "devices": {"roles": ["wan-edge"]}}},
                  {"id": "tell", "action": "notify", "params": {"message": "blocked {{ address }}"}}],
        "approval": {"auto_low_impact": True}}))
    (tmp_path / "playbooks.yaml").write_text(yaml.safe_dump({
        "library_dirs": [str(library)], "lock_dir": str(tmp_path / "locks"), "expiry_interval_seconds": 0.3,
        "webhook": {"url": hook.url, "timeout_seconds": 60}, "known_hosts_file": str(lab.known_hosts)}))
    api_port = free_port()
    config = tmp_path / "soc.yaml"
    config.write_text(yaml.safe_dump({
        "data_dir": str(tmp_path), "store": {"url": f"sqlite:///{tmp_path / 'soc.db'}"},
        "syslog": {"host": "127.0.0.1", "udp_port": free_port(), "tcp_port": free_port()},
        "api": {"host": "127.0.0.1", "port": api_port},
        "inventory": {"path": str(lab.inventory(tmp_path / "inv.yaml"))}, "extensions": ["playbooks.service"],
        "playbooks": yaml.safe_load((tmp_path / "playbooks.yaml").read_text())}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOC__")}
    log = open(tmp_path / "serve.log", "ab")

    def serve() -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-m", "suite.cli", "serve", "--config", str(config)], stdout=log,
                                stderr=log, env=env)
        _wait(lambda: _answers(f"http://127.0.0.1:{api_port}/api/v1/health") or proc.poll() is not None, 60,
              "soc serve")
        assert proc.poll() is None, (tmp_path / "serve.log").read_text()
        return proc

    store = open_store(load_settings(config, environ={}))
    key = create_key(store, "analyst")[0]
    first = serve()
    second = None
    try:
        response = httpx.post(f"http://127.0.0.1:{api_port}/api/v1/playbooks/block_then_tell/runs",
                              headers={"X-API-Key": key}, json={"inputs": {"address": lab.attacker}}, timeout=30)
        assert response.status_code == 201, response.text
        run_id = response.json()["id"]
        _wait(lambda: hook.received, 20, "the run to reach its slow webhook")
        assert lab.connect(lab.attacker, timeout=0.5) == "timeout"
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        assert store.get_document("playbook_runs", run_id)["state"] == "running"
        block = store.get_document(BLOCKS, block_id("lab-fw-01", f"{lab.attacker}/32", "block"))
        assert block["state"] == "active" and block["expires_at"]
        second = serve()
        run = _wait(lambda: (lambda r: r if r["state"] == "failed" else None)(
            store.get_document("playbook_runs", run_id)), 20, "the interrupted run to be marked")
        assert run["interrupted"] is True and "interrupted" in run["result"]["message"]
        every_block = store.find_documents(BLOCKS, DocumentQuery())
        assert every_block and all(b["expires_at"] for b in every_block)
        _wait(lambda: lab.connect(lab.attacker, timeout=0.5) == "open", 30, "the block to expire after restart")
        _wait(lambda: store.get_document(BLOCKS, block["id"]).get("removed_by") == "expired", 10, "block record")
        assert lab.attacker not in lab.blocked_elements()
    finally:
        hook.close()
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
        store.close()
        log.close()


def _answers(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_cli_run_show_blocks_and_expire(clean, tmp_path, monkeypatch):
    """`soc playbook run` from the command line blocks for real; show prints the transcript; expire removes it."""
    from typer.testing import CliRunner

    from suite.cli import app
    from soc_api.keys import create_key

    lab = clean
    (tmp_path / "playbooks.yaml").write_text(yaml.safe_dump({"lock_dir": str(tmp_path / "locks"),
                                                             "soc_addresses": [f"{lab.soc_address}/32"],
                                                             "known_hosts_file": str(lab.known_hosts)}))
    (tmp_path / "soc.yaml").write_text(yaml.safe_dump({"playbooks": yaml.safe_load(
        (tmp_path / "playbooks.yaml").read_text())}))
    monkeypatch.setenv("SOC_CONFIG", str(tmp_path / "soc.yaml"))
    monkeypatch.setenv("SOC__STORE__URL", f"sqlite:///{tmp_path / 'soc.db'}")
    monkeypatch.setenv("SOC__DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SOC__INVENTORY__PATH", str(lab.inventory(tmp_path / "inv.yaml", core=True)))
    cli = CliRunner()
    started = cli.invoke(app, ["playbook", "run", "block_address", "--set", f"address={lab.attacker}",
                               "--set", "ttl=2s"])
    assert started.exit_code == 0, started.output
    assert "waits for a network admin's approval" in started.output and lab.connect(lab.attacker) == "open"
    run_id = started.output.split("run ", 1)[1].split()[0]
    store = store_from_url(f"sqlite:///{tmp_path / 'soc.db'}")
    store.open()
    analyst, admin = create_key(store, "analyst")[0], create_key(store, "network_admin")[0]
    store.close()
    denied = cli.invoke(app, ["playbook", "approve", run_id, "--key", analyst])
    assert denied.exit_code == 3 and "network_admin" in denied.output
    approved = cli.invoke(app, ["playbook", "approve", run_id, "--key", admin])
    assert approved.exit_code == 0, approved.output
    assert lab.connect(lab.attacker, timeout=0.5) == "timeout"
    shown = cli.invoke(app, ["playbook", "show", run_id])
    assert "[apply] nft add element inet soc block4" in shown.output and "approved by network_admin key" in \
        shown.output
    listed = cli.invoke(app, ["playbook", "runs", "--state", "succeeded", "--device", "lab-fw-01"])
    assert run_id in listed.output
    assert f"{lab.attacker}/32" in cli.invoke(app, ["playbook", "blocks"]).output
    time.sleep(2.1)
    expired = cli.invoke(app, ["playbook", "expire"])
    assert expired.exit_code == 0 and "done and verified" in expired.output
    assert lab.connect(lab.attacker) == "open"
