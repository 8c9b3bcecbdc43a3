"""A null route never replaces a route the device already has, so neither the null route nor its undo (rollback,
expiry) can leave a network unreachable.

*Attack demonstrated:* the namespace firewall routes 198.51.100.0/24 to a next hop inside; a null route for it
(approved) rendered ``ip route replace blackhole 198.51.100.0/24``, which replaced the real route, and its undo
``ip route del blackhole …`` left no route at all. Junos had the same shape: ``set … static route X discard`` onto
an existing static route, and the undo ``delete … static route X`` deleted the original with it.

*Defence (playbooks/drivers/nftables.py, junos.py):* the device is read first and a route for exactly that prefix
that is not the suite's own blackhole / discard route refuses the change, naming the route; nftables adds with
``ip route add`` (never ``replace``), which the kernel itself refuses over an existing route, and removes IPv6
blackholes with ``dev lo`` (IPv6 ``route del`` matches any type of route).

nftables on the real namespace firewall through the playbook runner; Junos on recorded answers (it cannot run here).
"""

from __future__ import annotations

import subprocess

import pytest

from playbooks.drivers import DriverError, Observed, Operation, get_driver
from playbooks.drivers.nftables import NftablesDriver
from playbooks.runner import Actor
from playbooks.transaction import DeviceTransaction, Mode, TransactionStatus
from tests.test_playbook_drivers import RecordedConnection, _runner as recorded_runner
from tests.test_playbook_netns import ANALYST, NETADMIN, _runner

pytestmark = pytest.mark.timeout(300)
ROUTED = "198.51.100.0/24"  # the firewall routes it to the inside server's network
FREE = "203.0.113.0/24"  # no route for it on the firewall


def _fw(lab, *args: str) -> str:
    result = subprocess.run(["ip", "netns", "exec", lab.fw_ns, "ip", *args], capture_output=True, text=True)
    return result.stdout if result.returncode == 0 else ""


def _null_route(lab, tmp_path, destination: str) -> tuple:
    runner = _runner(tmp_path, lab)
    run = runner.create("null_route_destination", actor=ANALYST,
                        overrides={"destination": destination, "router_role": "wan-edge", "ttl": "1h"})
    runner.approve(run["id"], NETADMIN)
    return runner, runner.execute(run["id"])


def test_a_null_route_refuses_to_replace_a_route_the_firewall_has(clean, tmp_path):
    lab = clean
    _fw(lab, "route", "add", ROUTED, "via", lab.server)
    try:
        assert f"via {lab.server}" in _fw(lab, "route", "show", "exact", ROUTED)
        runner, done = _null_route(lab, tmp_path, ROUTED)
        assert done["state"] == "failed", done["result"]
        [entry] = done["steps"][0]["devices"]
        assert entry["status"] == "failed"
        assert "already has a route" in entry["message"] and f"via {lab.server}" in entry["message"]
        assert entry["before"]["existing_routes"] and lab.server in entry["before"]["existing_routes"][0]
        assert not any(x["phase"] in ("apply", "rollback") for x in entry["exchanges"])  # nothing was sent
        # the route the firewall had is intact, and no blackhole shadows it
        assert f"{ROUTED} via {lab.server}" in _fw(lab, "route", "show", "exact", ROUTED)
        assert "blackhole" not in _fw(lab, "route", "show", "exact", ROUTED)
        # expiry finds nothing of the suite's to remove, and touches nothing
        assert runner.expire_due() == []
        assert f"{ROUTED} via {lab.server}" in _fw(lab, "route", "show", "exact", ROUTED)
    finally:
        _fw(lab, "route", "del", ROUTED, "via", lab.server)


class _Blind(NftablesDriver):
    """Reads only blackhole routes, as the driver did before: the route appears between reading and changing."""

    def show_commands(self, op):
        return [f"ip {'-6 ' if op.network.version == 6 else ''}-j route show type blackhole"]


def test_the_kernel_refusal_is_the_last_guard_and_the_undo_keeps_the_route(clean, tmp_path):
    """Should the route appear after the device was read, ``ip route add`` is refused by the kernel, the transaction
    says so, and the undo it sends at once removes no route but a blackhole (IPv4: by type; IPv6: ``dev lo``)."""
    lab = clean
    runner = _runner(tmp_path, lab)
    inside = f"ss{lab.suffix}f"  # the firewall's link to the protected server
    cases = [(ROUTED, ["route", "add", ROUTED, "via", lab.server]),
             ("2001:db8:77::/48", ["-6", "route", "add", "2001:db8:77::/48", "dev", inside])]
    for prefix, add in cases:
        family = ["-6"] if ":" in prefix else []
        subprocess.run(["ip", "netns", "exec", lab.fw_ns, "ip", *add], capture_output=True, check=True)
        try:
            op = Operation("null_route", prefix, comment="soc-test")
            result = DeviceTransaction(runner.inventory.devices["lab-fw-01"], op, locks=runner.locks,
                                       pool=runner.pool, driver=_Blind()).run(Mode.CHANGE)
            assert result.status is TransactionStatus.ROLLED_BACK and not result.in_force
            assert "File exists" in result.message
            shown = _fw(lab, *family, "route", "show", "exact", prefix)
            assert shown.strip() and "blackhole" not in shown, (prefix, shown)
        finally:
            subprocess.run(["ip", "netns", "exec", lab.fw_ns, "ip", *family, "route", "del", prefix],
                           capture_output=True)


def test_a_null_route_where_no_route_exists_works_and_is_removed_on_rollback(clean, tmp_path):
    lab = clean
    assert _fw(lab, "route", "show", "exact", FREE).strip() == ""
    runner, done = _null_route(lab, tmp_path, FREE)
    assert done["state"] == "succeeded", done["result"]
    [entry] = done["steps"][0]["devices"]
    assert entry["commands"] == [f"ip route add blackhole {FREE}"]
    assert entry["rollback"] == [f"ip route del blackhole {FREE}"]
    assert "blackhole" in _fw(lab, "route", "show", "exact", FREE)
    runner.rollback(done["id"], NETADMIN)
    assert _fw(lab, "route", "show", "exact", FREE).strip() == ""


# --- Junos, on recorded answers ------------------------------------------------------------------------------------
JUNOS_ROUTES = ("set routing-options router-id 192.0.2.1\n"
                "set routing-options static route 0.0.0.0/0 next-hop 192.0.2.254\n"
                "set routing-options static route 198.51.100.0/24 next-hop 10.0.0.2\n"
                "set routing-options rib inet6.0 static route 2001:db8:77::/48 next-hop 2001:db8::2\n")


def test_junos_refuses_a_null_route_over_a_static_route_it_did_not_make(tmp_path):
    junos = get_driver("junos")
    show = junos.show_commands(Operation("null_route", ROUTED))[0]
    connection = RecordedConnection({show: [JUNOS_ROUTES]})
    runner = recorded_runner(tmp_path, "junos", connection)
    run = runner.create("null_route_destination", actor=Actor("cli", "t"),
                        overrides={"destination": ROUTED, "router_role": "wan-edge"})
    runner.approve(run["id"], Actor("cli", "nguyen", "network_admin"))
    done = runner.execute(run["id"])
    assert done["state"] == "failed", done["result"]
    [entry] = done["steps"][0]["devices"]
    assert "already has a static route" in entry["message"] and "next-hop 10.0.0.2" in entry["message"]
    assert connection.configured == [] and connection.commits == []  # nothing was sent, nothing committed


@pytest.mark.parametrize("prefix", [ROUTED, "2001:db8:77::/48"])
def test_junos_reads_existing_static_routes_per_family(prefix):
    junos = get_driver("junos")
    op = Operation("null_route", prefix)
    seen = junos.read(op, [JUNOS_ROUTES])
    assert seen.in_force is False and seen.detail["existing_routes"]
    with pytest.raises(DriverError, match="already has a static route"):
        junos.render("r", op, seen)
    # the suite's own discard route is in force, and removing it removes nothing else
    own = junos.read(op, [JUNOS_ROUTES.replace(" next-hop 10.0.0.2", " discard")
                          .replace(" next-hop 2001:db8::2", " discard")])
    assert own.in_force is True and own.detail["existing_routes"] == []
    gone = junos.read(op.inverse(), [JUNOS_ROUTES.replace(" next-hop 10.0.0.2", " discard")
                                     .replace(" next-hop 2001:db8::2", " discard")])
    assert gone.in_force is False
    assert junos.render("r", op.inverse(), gone).commands[0].startswith("delete routing-options")
    # a prefix with no static route: the discard route is set as before
    free = Operation("null_route", "203.0.113.0/24" if ":" not in prefix else "2001:db8:99::/48")
    clear = junos.read(free, [JUNOS_ROUTES])
    assert clear.in_force is False and clear.detail["existing_routes"] == []
    assert junos.render("r", free, clear).commands[0].endswith(" discard")


def test_junos_will_not_delete_a_discard_route_someone_turned_into_more():
    """Removing the null route deletes the whole static route: refused when it carries statements of someone
    else's (a next hop added since), rather than deleting them."""
    junos = get_driver("junos")
    op = Operation("remove_null_route", ROUTED)
    mixed = junos.read(op, ["set routing-options static route 198.51.100.0/24 discard\n"
                            "set routing-options static route 198.51.100.0/24 tag 7\n"])
    assert mixed.in_force is False
    with pytest.raises(DriverError, match="tag 7"):
        junos.render("r", op, mixed)
    assert junos.render("r", op, Observed(False, {})).commands == [f"delete routing-options static route {ROUTED}"]
