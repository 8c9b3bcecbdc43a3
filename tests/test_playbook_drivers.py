"""Vendor drivers that cannot run here (Cisco IOS and ASA, FortiGate, Sophos XG, SonicWall, Junos).

These appliances cannot run on this machine, so - and only for them - the tests check the exact commands each
driver renders, and read device answers recorded in each vendor's documented output format (written for these
tests, not captured from a live appliance). A stand-in for netmiko replays those answers so the whole runner path
(check, apply, verify, roll back, audit transcript, masking) is exercised per vendor. The Linux drivers are tested
on a real firewall in tests/test_playbook_netns.py.
"""

from __future__ import annotations

import pytest

from inventory.lookup import Inventory
from inventory.model import InventoryDocument
from playbooks.connections import ConnectionPool, CredentialError, Masker, resolve_credentials
from playbooks.drivers import DriverError, Operation, get_driver
from playbooks.drivers.sophos_xg import login_xml
from playbooks.loader import load_library
from playbooks.runner import Actor, Runner
from playbooks.settings import PlaybookSettings
from soc.storage import store_from_url

BLOCK = Operation("block", "203.0.113.5/32", comment="soc-run1")
RANGE = Operation("block", "198.51.100.64/26", comment="soc-run1")
UNBLOCK = Operation("unblock", "203.0.113.5/32")

# --- what each driver renders ---------------------------------------------------------------------------------
RENDERED = {
    "cisco_ios": (["object-group network SOC-BLOCKLIST", " host 203.0.113.5"],
                  ["object-group network SOC-BLOCKLIST", " 198.51.100.64 255.255.255.192"],
                  ["object-group network SOC-BLOCKLIST", " no host 203.0.113.5"]),
    "cisco_asa": (["object-group network SOC-BLOCKLIST", " network-object host 203.0.113.5"],
                  ["object-group network SOC-BLOCKLIST", " network-object 198.51.100.64 255.255.255.192"],
                  ["object-group network SOC-BLOCKLIST", " no network-object host 203.0.113.5"]),
    "fortigate": (['config firewall address', 'edit "soc-203.0.113.5_32"', 'set subnet 203.0.113.5 255.255.255.255',
                   'set comment "soc-run1"', 'next', 'end', 'config firewall addrgrp', 'edit "SOC-BLOCKLIST"',
                   'append member "soc-203.0.113.5_32"', 'next', 'end'],
                  ['config firewall address', 'edit "soc-198.51.100.64_26"',
                   'set subnet 198.51.100.64 255.255.255.192', 'set comment "soc-run1"', 'next', 'end',
                   'config firewall addrgrp', 'edit "SOC-BLOCKLIST"', 'append member "soc-198.51.100.64_26"', 'next',
                   'end'],
                  ['config firewall addrgrp', 'edit "SOC-BLOCKLIST"', 'unselect member "soc-203.0.113.5_32"', 'next',
                   'end', 'config firewall address', 'delete "soc-203.0.113.5_32"', 'end']),
    "sonicwall": (['address-object ipv4 "soc-203.0.113.5_32" host 203.0.113.5 zone WAN',
                   'address-group ipv4 "SOC-BLOCKLIST"', 'address-object ipv4 "soc-203.0.113.5_32"', 'exit',
                   'commit'],
                  ['address-object ipv4 "soc-198.51.100.64_26" network 198.51.100.64 255.255.255.192 zone WAN',
                   'address-group ipv4 "SOC-BLOCKLIST"', 'address-object ipv4 "soc-198.51.100.64_26"', 'exit',
                   'commit'],
                  ['address-group ipv4 "SOC-BLOCKLIST"', 'no address-object ipv4 "soc-203.0.113.5_32"', 'exit',
                   'no address-object ipv4 "soc-203.0.113.5_32"', 'commit']),
    "junos": (["set policy-options prefix-list SOC-BLOCKLIST 203.0.113.5/32"],
              ["set policy-options prefix-list SOC-BLOCKLIST 198.51.100.64/26"],
              ["delete policy-options prefix-list SOC-BLOCKLIST 203.0.113.5/32"]),
    "sophos_xg": (['<Set operation="add"><IPHost><Name>soc-203.0.113.5_32</Name><IPFamily>IPv4</IPFamily>'
                   '<HostType>IP</HostType><IPAddress>203.0.113.5</IPAddress><HostGroupList><HostGroup>SOC-BLOCKLIST'
                   '</HostGroup></HostGroupList></IPHost></Set>'],
                  ['<Set operation="add"><IPHost><Name>soc-198.51.100.64_26</Name><IPFamily>IPv4</IPFamily>'
                   '<HostType>Network</HostType><IPAddress>198.51.100.64</IPAddress><Subnet>255.255.255.192</Subnet>'
                   '<HostGroupList><HostGroup>SOC-BLOCKLIST</HostGroup></HostGroupList></IPHost></Set>'],
                  ['<Remove><IPHost><Name>soc-203.0.113.5_32</Name></IPHost></Remove>']),
}


@pytest.mark.parametrize("driver", sorted(RENDERED))
def test_rendered_commands(driver):
    block, block_range, unblock = RENDERED[driver]
    d = get_driver(driver)
    change = d.render("fw", BLOCK)
    assert change.commands == block
    assert change.rollback == unblock  # the undo of a block is exactly the unblock
    assert d.render("fw", RANGE).commands == block_range
    assert d.render("fw", UNBLOCK).commands == unblock


def test_null_route_and_quarantine_rendering():
    ios, junos, asa = get_driver("cisco_ios"), get_driver("junos"), get_driver("cisco_asa")
    null = Operation("null_route", "203.0.113.0/28")
    assert ios.render("r", null).commands == ["ip route 203.0.113.0 255.255.255.240 Null0 tag 666"]
    assert ios.render("r", null).rollback == ["no ip route 203.0.113.0 255.255.255.240 Null0 tag 666"]
    assert junos.render("r", null).commands == ["set routing-options static route 203.0.113.0/28 discard"]
    assert asa.render("r", null).commands == ["route Null0 203.0.113.0 255.255.255.240"]
    shut = ios.render("sw", Operation("shutdown_port", "GigabitEthernet1/0/7"))
    assert shut.commands == ["interface GigabitEthernet1/0/7", " shutdown"]
    assert shut.rollback == ["interface GigabitEthernet1/0/7", " no shutdown"]
    assert junos.render("sw", Operation("shutdown_port", "ge-0/0/7")).commands == ["set interfaces ge-0/0/7 disable"]
    # moving to the quarantine VLAN is undone by moving back to the VLAN read from the switch before the change
    show_run = "Building configuration...\n!\ninterface GigabitEthernet1/0/7\n switchport access vlan 20\n" \
               " switchport mode access\nend\n"
    op = Operation("set_vlan", "GigabitEthernet1/0/7", vlan=999)
    before = ios.parse(op, [show_run])
    assert before.in_force is False and before.detail["vlan"] == 20
    change = ios.render("sw", op, before)
    assert change.commands == ["interface GigabitEthernet1/0/7", " switchport access vlan 999"]
    assert change.rollback == ["interface GigabitEthernet1/0/7", " switchport access vlan 20"]
    with pytest.raises(DriverError, match="cannot"):
        get_driver("fortigate").render("fw", null)


# --- reading recorded answers ---------------------------------------------------------------------------------
IOS_GROUP = "Network object group SOC-BLOCKLIST\n host 192.0.2.255\n host 203.0.113.5\n 198.51.100.0 255.255.255.0\n"
ASA_GROUP = "object-group network SOC-BLOCKLIST\n network-object host 192.0.2.255\n network-object host 203.0.113.5\n"
FORTI_GROUP = ('config firewall addrgrp\n    edit "SOC-BLOCKLIST"\n        set uuid 7f3a1c52-8a2e-51ee-4d1c-3c0b3e9d2f10\n'
               '        set member "soc-placeholder" "soc-203.0.113.5_32"\n    next\nend\n')
SONIC_GROUP = 'address-group ipv4 "SOC-BLOCKLIST"\n    address-object ipv4 "soc-203.0.113.5_32"\n    exit\n'
JUNOS_LIST = ("set policy-options prefix-list SOC-BLOCKLIST 192.0.2.255/32\n"
              "set policy-options prefix-list SOC-BLOCKLIST 203.0.113.5/32\n")
SOPHOS_HOST = ('<?xml version="1.0" encoding="UTF-8"?>\n<Response APIVersion="2000.1" IPS_CAT_VER="1"><Login><status>'
               'Authentication Successful</status></Login><IPHost transactionid=""><Name>soc-203.0.113.5_32</Name>'
               '<IPFamily>IPv4</IPFamily><HostType>IP</HostType><IPAddress>203.0.113.5</IPAddress><HostGroupList>'
               '<HostGroup>SOC-BLOCKLIST</HostGroup></HostGroupList></IPHost></Response>')
SOPHOS_NONE = ('<?xml version="1.0" encoding="UTF-8"?>\n<Response APIVersion="2000.1"><Login><status>Authentication '
               'Successful</status></Login><IPHost transactionid=""><Status>No. of records Zero.</Status></IPHost>'
               '</Response>')
PRESENT = {"cisco_ios": IOS_GROUP, "cisco_asa": ASA_GROUP, "fortigate": FORTI_GROUP, "sonicwall": SONIC_GROUP,
           "junos": JUNOS_LIST, "sophos_xg": SOPHOS_HOST}
ABSENT = {"cisco_ios": "Network object group SOC-BLOCKLIST\n host 192.0.2.255\n",
          "cisco_asa": "object-group network SOC-BLOCKLIST\n network-object host 192.0.2.255\n",
          "fortigate": FORTI_GROUP.replace(' "soc-203.0.113.5_32"', ""),
          "sonicwall": 'address-group ipv4 "SOC-BLOCKLIST"\n    exit\n',
          "junos": "set policy-options prefix-list SOC-BLOCKLIST 192.0.2.255/32\n", "sophos_xg": SOPHOS_NONE}


@pytest.mark.parametrize("driver", sorted(PRESENT))
def test_recorded_answers_are_read(driver):
    d = get_driver(driver)
    assert d.parse(BLOCK, [PRESENT[driver]]).in_force is True
    assert d.parse(BLOCK, [ABSENT[driver]]).in_force is False
    assert d.parse(UNBLOCK, [PRESENT[driver]]).in_force is False
    assert d.parse(UNBLOCK, [ABSENT[driver]]).in_force is True


def test_a_block_inside_a_blocked_range_is_already_in_force():
    inside = Operation("block", "198.51.100.77/32")
    observed = get_driver("cisco_ios").parse(inside, [IOS_GROUP])
    assert observed.in_force and observed.detail["covered_by"] == "198.51.100.0/24"


REFUSALS = {
    "cisco_ios": "object-group network SOC-BLOCKLIST\n hots 203.0.113.5\n             ^\n"
                 "% Invalid input detected at '^' marker.\n",
    "cisco_asa": "ERROR: % Invalid input detected at '^' marker.\n",
    "fortigate": 'edit "soc-203.0.113.5_32"\ncommand parse error before \'subnt\'\nCommand fail. Return code -61\n',
    "sonicwall": "% Error: Address object name already in use.\n",
    "junos": "set policy-options prefix-list SOC-BLOCKLIST 203.0.113.5/33\n"
             "error: invalid prefix length: 33\n",
    "sophos_xg": '<Response><Login><status>Authentication Successful</status></Login><IPHost transactionid="">'
                 '<Status code="502">Operation failed. Entity having same name already exists.</Status></IPHost>'
                 '</Response>',
}


@pytest.mark.parametrize("driver", sorted(REFUSALS))
def test_device_refusals_are_recognised(driver):
    d = get_driver(driver)
    assert d.refusal(REFUSALS[driver])
    assert d.refusal(PRESENT[driver]) is None


# --- the whole runner path on recorded answers -----------------------------------------------------------------
class RecordedConnection:
    """Stands in for netmiko on an appliance that cannot run here: show commands get recorded answers in order
    (the last one repeats), other lines an empty answer, configuration mode `config_answer`."""

    def __init__(self, answers: dict[str, list[str]], config_answer: str = ""):
        self.answers = {k: list(v) for k, v in answers.items()}
        self.config_answer = config_answer
        self.sent: list[str] = []
        self.configured: list[list[str]] = []
        self.commits: list[str] = []

    def send_command(self, command, read_timeout=None, **kwargs):
        self.sent.append(command)
        queue = self.answers.get(command, [""])  # a configuration line answers with just the prompt
        return queue.pop(0) if len(queue) > 1 else queue[0]

    def send_config_set(self, commands, read_timeout=None, exit_config_mode=True):
        self.configured.append(list(commands))
        return self.config_answer

    def commit(self, comment=""):
        self.commits.append(comment)
        return "commit complete"

    def exit_config_mode(self):
        return ""

    def is_alive(self):
        return True

    def disconnect(self):
        pass


NETMIKO_TYPES = {"cisco_ios": "cisco_ios", "cisco_asa": "cisco_asa", "fortigate": "fortinet",
                 "sonicwall": "sonicwall_sshv2", "junos": "juniper_junos"}


def _inventory(driver: str) -> Inventory:
    return Inventory(InventoryDocument.model_validate({
        "province": {"id": "p", "name_vi": "p", "name_en": "p", "kind": "province"},
        "agencies": [],
        "assets": [{"id": "fw", "hostname": "fw", "kind": "firewall", "agency": "p", "role": "wan-edge"}],
        "devices": [{"id": "fw", "asset": "fw", "management_address": "192.0.2.1", "device_type":
                     NETMIKO_TYPES[driver], "driver": driver,
                     "credentials": {"username": "soc", "password_env": "SOC_TEST_FW_PASSWORD"}}],
    }))


def _runner(tmp_path, driver: str, connection: RecordedConnection) -> Runner:
    store = store_from_url(f"sqlite:///{tmp_path / 'soc.db'}")
    store.open()
    settings = PlaybookSettings(lock_dir=str(tmp_path / "locks"))
    pool = ConnectionPool(settings, opener=lambda device, creds, s: connection,
                          environ={"SOC_TEST_FW_PASSWORD": "Tr0ub4dor&3"})
    return Runner(store, _inventory(driver), load_library(settings.library_dirs), settings, pool=pool)


@pytest.mark.parametrize("driver", sorted(NETMIKO_TYPES))
def test_block_through_the_runner_on_recorded_answers(tmp_path, driver):
    d = get_driver(driver)
    show = d.show_commands(BLOCK)[0]
    connection = RecordedConnection({show: [ABSENT[driver], PRESENT[driver]]},
                                    config_answer="config term\nEnter configuration commands, one per line.\n")
    runner = _runner(tmp_path, driver, connection)
    run = runner.execute(runner.create("block_address", actor=Actor("cli", "t"),
                                       overrides={"address": "203.0.113.5"})["id"])
    assert run["state"] == "succeeded", run["result"]
    sent = connection.configured[0] if d.config_mode else [c for c in connection.sent if c != show]
    assert sent == [c.replace("soc-run1", f"soc-{run['id'][:16]}") for c in RENDERED[driver][0]]
    assert connection.commits == (["soc run " + run["id"]] if driver == "junos" else [])
    phases = [x["phase"] for x in run["steps"][0]["devices"][0]["exchanges"]]
    assert phases[0] == "check" and "apply" in phases and phases[-1] == "verify"


@pytest.mark.parametrize("driver", sorted(NETMIKO_TYPES))
def test_refused_change_fails_the_run_and_is_rolled_back(tmp_path, driver):
    d = get_driver(driver)
    show = d.show_commands(BLOCK)[0]
    connection = RecordedConnection({show: [ABSENT[driver]]}, config_answer=REFUSALS[driver])
    if not d.config_mode:  # sent line by line: every command gets the refusal as its answer
        for command in RENDERED[driver][0] + RENDERED[driver][2]:
            connection.answers[command] = [REFUSALS[driver]]
    runner = _runner(tmp_path, driver, connection)
    run = runner.execute(runner.create("block_address", actor=Actor("cli", "t"),
                                       overrides={"address": "203.0.113.5"})["id"])
    assert run["state"] == "failed"
    assert "refused" in run["steps"][0]["devices"][0]["message"]
    phases = [x["phase"] for x in run["steps"][0]["devices"][0]["exchanges"]]
    assert "rollback" in phases


def test_secrets_never_reach_a_transcript(tmp_path):
    masker = Masker(["Tr0ub4dor&3"])
    text = ("username soc password 0 Tr0ub4dor&3\nenable secret 5 $1$abcd$xyz\nthe password is Tr0ub4dor&3\n" +
            login_xml("admin", "Tr0ub4dor&3"))
    masked = masker(text)
    assert "Tr0ub4dor&3" not in masked and "$1$abcd$xyz" not in masked
    assert "username soc password 0 ********" in masked and "<Password>********</Password>" in masked
    # a device that echoes the password back: the stored run has it masked
    connection = RecordedConnection({"show running-config object-group id SOC-BLOCKLIST":
                                     [ABSENT["cisco_asa"], PRESENT["cisco_asa"]]},
                                    config_answer="echo: Tr0ub4dor&3\n")
    runner = _runner(tmp_path, "cisco_asa", connection)
    run = runner.execute(runner.create("block_address", actor=Actor("cli", "t"),
                                       overrides={"address": "203.0.113.5"})["id"])
    stored = str(runner.store.get_document("playbook_runs", run["id"]))
    assert "Tr0ub4dor&3" not in stored and "echo: ********" in stored


def test_credentials_are_references_and_errors_name_only_the_reference(tmp_path):
    device = _inventory("cisco_ios").devices["fw"]
    with pytest.raises(CredentialError, match="SOC_TEST_FW_PASSWORD is not set"):
        resolve_credentials(device, environ={})
    assert resolve_credentials(device, environ={"SOC_TEST_FW_PASSWORD": "x1y2z3"}).password == "x1y2z3"


@pytest.mark.opensearch
def test_run_records_on_the_real_opensearch_node(opensearch_prefix, tmp_path):
    """The same runner path with the records in OpenSearch: runs of different playbooks (a TTL given as text here,
    as a number there; a VLAN read back from a switch) share one index, and stay searchable."""
    url, prefix = opensearch_prefix
    store = store_from_url(url, index_prefix=prefix)
    store.open()
    try:
        show = get_driver("junos").show_commands(BLOCK)[0]
        connection = RecordedConnection({
            show: [ABSENT["junos"], PRESENT["junos"]],
            "show configuration interfaces ge-0/0/7 | display set":
                ["set interfaces ge-0/0/7 unit 0 family ethernet-switching vlan members default\n",
                 "set interfaces ge-0/0/7 unit 0 family ethernet-switching vlan members 999\n"]})
        settings = PlaybookSettings(lock_dir=str(tmp_path / "locks"))
        pool = ConnectionPool(settings, opener=lambda device, creds, s: connection,
                              environ={"SOC_TEST_FW_PASSWORD": "Tr0ub4dor&3"})
        runner = Runner(store, _inventory("junos"), load_library(settings.library_dirs), settings, pool=pool)
        blocked = runner.execute(runner.create("block_address", actor=Actor("cli", "t"),
                                               overrides={"address": "203.0.113.5", "ttl": "2h"})["id"])
        assert blocked["state"] == "succeeded", blocked["result"]
        quarantine = runner.create("quarantine_host", actor=Actor("cli", "t"),
                                   overrides={"host": "203.0.113.44", "switch": "fw", "interface": "ge-0/0/7"})
        runner.approve(quarantine["id"], Actor("cli", "n", "network_admin"))
        done = runner.execute(quarantine["id"])
        assert done["state"] == "succeeded", done["result"]
        assert done["steps"][0]["devices"][0]["before"]["vlan"] == "default"
        from playbooks.records import RunFilter

        found = runner.records.find_runs(RunFilter(state="succeeded", device="fw"))
        assert {r["id"] for r in found} == {blocked["id"], quarantine["id"]}
        assert [b["target"] for b in runner.records.find_blocks(state="active")] == ["203.0.113.5/32"]
        assert {e["event"] for e in runner.records.find_audit(run_id=quarantine["id"])} >= {"run_created",
                                                                                         "run_approved",
                                                                                         "run_finished"}
    finally:
        store.close()
