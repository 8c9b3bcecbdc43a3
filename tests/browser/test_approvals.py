"""The network admin's console in Debian's Chromium against a real `soc serve` that manages the namespace firewall
(tests/netns_firewall.py) as its only edge firewall, a core device, so every block waits for a network admin.

The acceptance path of issue 15: an SSH brute force sent to the suite's syslog listener raises an alert, whose
playbook plans a block of the attacker on the firewall and waits; the attacker still gets through. A network admin,
signed in through the form, approves the run from the approvals queue; the suite blocks the attacker on the firewall
and its TCP connections to the protected server are then refused (dropped), while an innocent neighbour's pass. On
the blocks page the network admin unblocks it, and the attacker's traffic passes again. The API shows the same run.
Screenshots of the queue, the run page and the blocks page in Vietnamese and English; axe-core on each.

Like tests/test_playbook_netns.py, this needs root and `ip netns` (the `lab` and `clean` fixtures of
tests/conftest.py): without them it is skipped with the reason, and fails in CI (CI=true)."""

from __future__ import annotations

import itertools
import subprocess
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
import yaml

from soc_api.keys import create_key
from tests.browser.conftest import switch_language as _switch_language, SOC, ConsoleServer, check_accessibility, new_context, screenshot, sign_in
from tests.conftest import PROJECT, free_port, wait_for

pytestmark = pytest.mark.timeout(600)
ZONE = ZoneInfo("Asia/Ho_Chi_Minh")  # the suite's configured zone: year-less syslog times are read in it
LIBRARY = PROJECT / "playbooks" / "library"


class FirewallConsoleServer(ConsoleServer):
    """The browser tests' `soc serve` (tests/browser/conftest.py's ConsoleServer: its CLI, users and store), with the
    configuration the namespace-firewall tests give a suite: the lab's inventory (the firewall a managed device, a
    core one), its host key pinned, the suite's own management address never blocked, and the shipped playbooks."""

    def __init__(self, folder: Path, lab):  # not ConsoleServer.__init__: it starts a suite of its own configuration
        self.folder = folder
        inventory = lab.inventory(folder / "inventory.yaml", core=True)
        self.config = folder / "soc.yaml"
        self.config.write_text(yaml.safe_dump({
            "data_dir": str(folder),
            "store": {"url": f"sqlite:///{folder / 'soc.db'}"},
            "syslog": {"host": "127.0.0.1", "udp_port": free_port(), "tcp_port": free_port()},
            "api": {"host": "127.0.0.1", "port": free_port()},
            "inventory": {"path": str(inventory)},
            "detections": {"sigma_rule_dirs": [str(PROJECT / "detections" / "rules" / "linux")]},
            "pipeline": {"flush_interval_seconds": 0.05},
            "reports": {"schedule_enabled": False},
            "extensions": ["playbooks.service", "detections.indicators.extension", "soc_api.extension"],
            "soc_api": {"console": {"lockout": {"address_free_failures": 10000, "address_lock_failures": 20000}}},
            "playbooks": {"library_dirs": [str(LIBRARY)], "lock_dir": str(folder / "locks"),
                          "expiry_interval_seconds": 0.5, "soc_addresses": [f"{lab.soc_address}/32"],
                          "known_hosts_file": str(lab.known_hosts)},
        }, allow_unicode=True))
        self.settings_data = yaml.safe_load(self.config.read_text())
        self.port = self.settings_data["api"]["port"]
        self.url = f"http://127.0.0.1:{self.port}"
        self.syslog_tcp = self.settings_data["syslog"]["tcp_port"]
        self.syslog_udp = self.settings_data["syslog"]["udp_port"]
        self.log_path = folder / "serve.log"
        self._log = self.log_path.open("ab")
        self._names = itertools.count(1)
        self.users: dict[str, dict] = {}
        self._start()

    def _start(self) -> None:
        """As ConsoleServer starts its suite: `soc serve` in a process of its own, until /api/v1/health answers."""
        self.proc = subprocess.Popen(SOC + ["serve", "--config", str(self.config)], stdout=self._log,
                                     stderr=self._log, env=self.env(), cwd=PROJECT)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("soc serve stopped: " + self.log_path.read_text())
            try:
                if httpx.get(f"{self.url}/api/v1/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise AssertionError("soc serve did not come up: " + self.log_path.read_text())


@pytest.fixture(scope="module")
def firewall_server(lab, tmp_path_factory):
    server = FirewallConsoleServer(tmp_path_factory.mktemp("console-firewall"), lab)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def api(firewall_server):
    """The API beside the console, with a network admin's key (to read runs and blocks as the API shows them)."""
    with firewall_server.store() as store:
        key = create_key(store, "network_admin", name="browser test key")[0]
    with httpx.Client(base_url=firewall_server.url, headers={"X-API-Key": key}, timeout=30) as client:
        yield client


def _both_languages(page, name: str) -> None:
    """A screenshot and an accessibility check of the page in Vietnamese, then in English (the language left on)."""
    if page.locator("html").get_attribute("lang") != "vi":
        _switch_language(page, "vi", "Tiếng Việt")
    screenshot(page, f"{name}-vi")
    check_accessibility(page)
    _switch_language(page, "en", "English")
    screenshot(page, f"{name}-en")
    check_accessibility(page)


def _pending_run(api, address: str) -> dict:
    def found():
        runs = api.get("/api/v1/playbooks/runs", params={"playbook": "block_ssh_brute_force"}).json()["runs"]
        return next((r for r in runs if r["inputs"].get("address") == address), None)

    return wait_for(found, 60, "the brute-force alert's run")


def test_a_network_admin_approves_a_block_in_the_console_then_unblocks_it(browser, axe_source, clean, firewall_server,
                                                                          api):
    from suite.demo import scenario_lines, send_tcp

    lab = clean
    send_tcp("127.0.0.1", firewall_server.syslog_tcp, scenario_lines(lab.attacker, "lab-srv-01", ZONE))
    run = _pending_run(api, lab.attacker)
    # the firewall is a core device: the run waits, and the attacker still gets through
    assert run["state"] == "pending_approval", run
    assert any("core device lab-fw-01" in r for r in run["approval"]["reasons"])
    time.sleep(0.5)
    assert lab.connect(lab.attacker) == "open"

    user = firewall_server.create_user("network_admin", name="Trần Văn Nam")
    context = new_context(browser)
    try:
        page = context.new_page()
        sign_in(page, firewall_server.url, user, next_path="/console/approvals")
        card = page.locator(f"#run-{run['id']}")
        card.wait_for()
        assert page.locator("h1").inner_text() == "Chờ phê duyệt"
        # the exact commands for the firewall, the impact, why, the expiry, and the alert that started it
        [change] = [c for step in run["steps"] for c in step.get("plan") or []]
        assert change["device"] == "lab-fw-01" and lab.attacker in change["target"]
        assert card.locator(".device-id").inner_text() == "lab-fw-01"
        shown = card.locator("pre.commands").first.inner_text()
        assert shown.strip() == "\n".join(change["commands"]).strip() and lab.attacker in shown
        assert "core device lab-fw-01" in card.locator("ul.why").inner_text()
        assert "1 giờ sau khi có hiệu lực" in card.inner_text()
        assert card.locator(f'a[href="/console/alerts/{run["alert_id"]}"]').count() == 1
        _both_languages(page, "approvals-queue")

        # approve from the queue, with a reason
        card.locator(f"#approve-reason-{run['id']}").fill("Brute force confirmed on lab-srv-01")
        card.get_by_role("button", name="Approve").click()
        page.wait_for_url("**/console/approvals?done=approved**")
        assert "is approved and now running" in page.locator("#notice").inner_text()
        assert page.locator(f"#run-{run['id']}").count() == 0
        assert page.locator("#no-pending").inner_text() == "No run is waiting for approval."
        done = wait_for(lambda: (lambda r: r if r["state"] in ("succeeded", "failed") else None)(
            api.get(f"/api/v1/playbooks/runs/{run['id']}").json()), 60, "the approved run to finish")
        assert done["state"] == "succeeded", done["result"]
        assert done["approval"]["approved_by"]["name"] == "Trần Văn Nam"
        assert done["approval"]["approved_by"]["kind"] == "console"
        # the namespace firewall now refuses the attacker's traffic; the neighbour's still passes
        assert lab.connect(lab.attacker, timeout=0.5) == "timeout"
        assert lab.connect(lab.bystander) == "open"
        assert lab.attacker in lab.blocked_elements()

        # the run page: its state, who approved it, what was sent to the firewall, the transcript, the trail
        page.locator("#notice a").click()
        page.wait_for_url(f"**/console/runs/{run['id']}")
        assert page.locator("#run-state").inner_text() == "Succeeded"
        assert "Trần Văn Nam" in page.locator("#approved-by").inner_text()
        entry = page.locator('.device-entry[data-device="lab-fw-01"]')
        assert "changed and read back in force" in entry.inner_text()
        entry.locator("details.transcript summary").click()
        assert lab.attacker in entry.locator("details.transcript").inner_text()
        assert page.locator('#run-trail tr[data-event="run_approved"]').count() == 1
        assert "Brute force confirmed on lab-srv-01" in page.locator("#run-trail").inner_text()
        _both_languages(page, "run-page")

        # the blocks page: the block in force, its expiry, its run; Unblock
        page.goto(f"{firewall_server.url}/console/blocks")
        row = page.locator(f'tr[data-target="{lab.attacker}/32"]')
        assert "lab-fw-01" in row.inner_text() and row.locator(f'a[href="/console/runs/{run["id"]}"]').count() == 1
        assert row.locator("td.expires time").count() == 1
        _both_languages(page, "blocks")
        row.get_by_role("button", name="Unblock").click()
        page.wait_for_url("**/console/blocks?done=unblocked**")
        assert f"{lab.attacker}/32 is unblocked on lab-fw-01" in page.locator("#notice").inner_text()
        assert page.locator(f'tr[data-target="{lab.attacker}/32"]').count() == 0
    finally:
        context.close()
    # the attacker's traffic passes again; the API shows the run rolled back and the block removed
    assert lab.connect(lab.attacker) == "open"
    assert lab.attacker not in lab.blocked_elements()
    rolled = api.get(f"/api/v1/playbooks/runs/{run['id']}").json()
    assert rolled["state"] == "rolled_back" and rolled["rolled_back"]["by"]["name"] == "Trần Văn Nam"
    live = api.get("/api/v1/playbooks/blocks").json()["blocks"]
    assert not [b for b in live if b["target"] == f"{lab.attacker}/32"]
