"""Values that reach a device are typed, never text: a property test over every driver and every playbook input.

Whatever an attacker puts where an address, a network, an interface name, a VLAN or a comment is expected (a scope
id carrying shell text, a newline carrying a configuration line, a carriage return, quotes, braces, IPv4-mapped
IPv6), it is either refused with a clear error or rendered into commands that match the vendor's grammar exactly:
each command line one of the shapes below, every variable part one token of its type. The grammars are written
here, apart from the drivers, from each vendor's command reference: a driver that renders anything else fails.
"""

from __future__ import annotations

import re
from xml.etree import ElementTree

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from playbooks.context import InputError, coerce
from playbooks.drivers import DRIVERS, DriverError, Operation, UnsupportedOperation, get_driver
from playbooks.model import InputSpec
from playbooks.values import (Address, Comment, InterfaceName, Network, ValueRefused, VlanId, check_rendered,
                              normalise_address)

# --- the vendors' grammars ------------------------------------------------------------------------------------
V4 = r"(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
V6 = r"[0-9a-f:]*:[0-9a-f:.]*"  # ipaddress prints IPv6 compressed and lower case (a dotted tail when it embeds v4)
ADDR = rf"(?:{V4}|{V6})"
PREFIX = r"(?:[0-9]|[1-9][0-9]|1[01][0-9]|12[0-8])"
CIDR = rf"{ADDR}/{PREFIX}"
MASK = V4
IFNAME = r"[A-Za-z][A-Za-z0-9/._:-]{0,63}"
VLAN = r"[0-9]{1,4}"
VLAN_OR_NAME = r"(?:[0-9]{1,4}|[A-Za-z][A-Za-z0-9._-]{0,31})"  # Junos names VLANs too
COMMENT = r"[A-Za-z0-9 ._:/-]{0,64}"
OBJECT = r"soc-[0-9a-f.-]+_[0-9]{1,3}"

GRAMMAR: dict[str, list[str]] = {
    "nftables": [rf"nft (?:add|delete) element inet soc block[46] '\{{ (?:{ADDR}|{CIDR})(?: comment \"{COMMENT}\")? \}}'",
                 rf"ip route (?:add|del) blackhole {CIDR}", rf"ip -6 route add blackhole {CIDR}",
                 rf"ip -6 route del blackhole {CIDR} dev lo"],
    "iptables": [rf"ip6?tables -w -[ID] SOC-BLOCK -[sd] {CIDR} -j DROP"],
    "cisco_ios": ["object-group network SOC-BLOCKLIST", "object-group v6-network SOC-BLOCKLIST6",
                  rf" (?:no )?host {ADDR}", rf" (?:no )?{V4} {MASK}", rf" (?:no )?{CIDR}",
                  rf"(?:no )?ip route {V4} {MASK} Null0 tag 666", rf"(?:no )?ipv6 route {CIDR} Null0 tag 666", rf"interface {IFNAME}", " shutdown",
                  " no shutdown", rf" switchport access vlan {VLAN}"],
    "cisco_asa": ["object-group network SOC-BLOCKLIST", rf" (?:no )?network-object host {ADDR}",
                  rf" (?:no )?network-object {ADDR} {MASK}", rf" (?:no )?network-object {CIDR}",
                  rf"(?:no )?route Null0 {V4} {MASK}"],
    "fortigate": ["config firewall address6?", rf'edit "{OBJECT}"', rf"set ip6 {CIDR}", rf"set subnet {ADDR} {MASK}",
                  rf'set comment "{COMMENT}"', "next", "end", "config firewall addrgrp6?", 'edit "SOC-BLOCKLIST"',
                  rf'append member "{OBJECT}"', rf'unselect member "{OBJECT}"', rf'delete "{OBJECT}"'],
    "sonicwall": [rf'address-object ipv[46] "{OBJECT}" (?:host {ADDR}|network {ADDR} {MASK}|network {ADDR} '
                  rf'/{PREFIX}) zone WAN', 'address-group ipv[46] "SOC-BLOCKLIST"',
                  rf'(?:no )?address-object ipv[46] "{OBJECT}"', "exit", "commit"],
    "junos": [rf"(?:set|delete) policy-options prefix-list SOC-BLOCKLIST {CIDR}",
              rf"(?:set|delete) routing-options (?:rib inet6\.0 )?static route {CIDR}(?: discard)?",
              rf"(?:set|delete) interfaces {IFNAME} disable",
              rf"delete interfaces {IFNAME} unit 0 family ethernet-switching vlan members",
              rf"set interfaces {IFNAME} unit 0 family ethernet-switching vlan members {VLAN_OR_NAME}"],
}
COMPILED = {name: [re.compile(g) for g in grammars] for name, grammars in GRAMMAR.items()}


def _sophos_ok(command: str) -> bool:
    """The Sophos XML API: one element of the suite's three shapes, each text value a token of its type."""
    try:
        root = ElementTree.fromstring(command)
    except ElementTree.ParseError:
        return False
    texts = {el.tag: (el.text or "") for el in root.iter()}
    if root.tag == "Set":
        allowed = {"Set", "IPHost", "Name", "IPFamily", "HostType", "IPAddress", "Subnet", "HostGroupList",
                   "HostGroup"}
        return set(texts) <= allowed and re.fullmatch(OBJECT, texts["Name"]) is not None and \
            re.fullmatch(ADDR, texts["IPAddress"]) is not None and \
            re.fullmatch(rf"{MASK}|{PREFIX}", texts.get("Subnet", "0")) is not None and \
            texts["HostGroup"] == "SOC-BLOCKLIST" and texts["IPFamily"] in ("IPv4", "IPv6")
    if root.tag in ("Remove", "Get"):
        name = root.find(".//Name")
        key = root.find(".//key")
        value = (name.text if name is not None else key.text if key is not None else "") or ""
        return set(texts) <= {"Remove", "Get", "IPHost", "Name", "Filter", "key"} and \
            re.fullmatch(OBJECT, value) is not None
    return False


def assert_grammar(driver: str, commands: list[str]) -> None:
    for command in commands:
        if driver == "sophos_xg":
            assert _sophos_ok(command), f"sophos_xg rendered {command!r}"
            continue
        assert any(g.fullmatch(command) for g in COMPILED[driver]), f"{driver} rendered {command!r}"


# --- what an attacker sends ---------------------------------------------------------------------------------------
INJECTIONS = ["';id>PWNED;echo '", "\nusername evil privilege 15 password 0 evil", "\r\nreload", "\x00", "$(id)",
              "`id`", " } ; flush ruleset ; {", '" ; rm -rf / ; "', "\u2028set system root", "|id", "&& id", "#",
              "</Name><Name>x", "\\\nid"]
ADDRESSES = ["203.0.113.5", "198.51.100.64/26", "2001:db8::1", "2001:db8::/64", "::ffff:10.0.1.10",
             "::ffff:203.0.113.5", "::10.0.1.10", "fe80::1", "10.0.0.1/8", "0.0.0.0/0"]
hostile_text = st.one_of(
    st.builds(lambda a, i: f"{a}%{i}", st.sampled_from(ADDRESSES), st.sampled_from(INJECTIONS)),  # scope ids
    st.builds(lambda a, i: a + i, st.sampled_from(ADDRESSES), st.sampled_from(INJECTIONS)),
    st.builds(lambda i, a: i + a, st.sampled_from(INJECTIONS), st.sampled_from(ADDRESSES)),
    st.sampled_from(ADDRESSES),
    st.ip_addresses().map(str),
    st.builds(lambda ip, n: f"{ip}/{n}", st.ip_addresses(), st.integers(0, 130)),
    st.text(max_size=80),
    st.text(alphabet="0123456789abcdefABCDEF:./%\n\r'\"; {}$`|&\\", max_size=60),
)
interface_text = st.one_of(
    st.sampled_from(["GigabitEthernet1/0/1", "ge-0/0/1", "Gi1/0/1.100", "xe-0/0/0:1", "Port-channel1", "eth0"]),
    st.builds(lambda n, i: n + i, st.sampled_from(["GigabitEthernet1/0/1", "ge-0/0/1"]),
              st.sampled_from(INJECTIONS)),
    st.text(max_size=70),
)
PROPERTY = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("driver", sorted(DRIVERS))
@PROPERTY
@given(target=hostile_text, comment=st.one_of(st.just("soc-0123456789abcdef"), st.text(max_size=40),
                                               st.sampled_from(INJECTIONS)),
       kind=st.sampled_from(["block", "unblock", "null_route", "remove_null_route"]))
def test_any_network_input_is_refused_or_renders_the_vendor_grammar(driver, target, comment, kind):
    d = get_driver(driver)
    if not d.supports(kind):
        return
    try:
        op = Operation(kind, target, comment=comment)
        change = d.render("fw", op)
    except (ValueRefused, UnsupportedOperation):
        return
    assert_grammar(driver, change.commands)
    assert_grammar(driver, change.rollback)
    # and the address a device is told about is the one typed in, nothing more
    assert "%" not in str(op.target) and str(op.target) == str(Network.parse(str(op.target)))


@pytest.mark.parametrize("driver", sorted(d for d in DRIVERS if DRIVERS[d]().supports("shutdown_port")))
@PROPERTY
@given(interface=interface_text, vlan=st.one_of(st.integers(-5, 5000), st.text(max_size=8),
                                                 st.sampled_from(INJECTIONS)),
       kind=st.sampled_from(["shutdown_port", "enable_port", "set_vlan"]))
def test_any_interface_input_is_refused_or_renders_the_vendor_grammar(driver, interface, vlan, kind):
    d = get_driver(driver)
    try:
        op = Operation(kind, interface, vlan=vlan if kind == "set_vlan" else None)
        change = d.render("sw", op)
    except (ValueRefused, UnsupportedOperation):
        return
    assert_grammar(driver, change.commands)
    assert_grammar(driver, change.rollback)


@pytest.mark.parametrize("injection", INJECTIONS)
def test_the_demonstrated_injections_are_refused_with_a_clear_error(injection):
    with pytest.raises(ValueRefused, match="scope id"):
        Operation("block", f"2001:db8::1%{injection}")
    with pytest.raises(ValueRefused):
        Operation("block", f"203.0.113.5{injection}")
    with pytest.raises(ValueRefused, match="interface"):
        Operation("shutdown_port", f"GigabitEthernet1/0/1{injection}")
    with pytest.raises(ValueRefused, match="comment"):
        Operation("block", "203.0.113.5", comment=f"soc{injection}")


def test_mapped_ipv6_is_refused_on_a_device_and_read_as_ipv4_from_an_alert():
    with pytest.raises(ValueRefused, match="IPv4 space written as IPv6"):
        Network.parse("::ffff:10.0.1.10")
    with pytest.raises(ValueRefused, match="IPv4 space written as IPv6"):
        Network.parse("::ffff:0:0/96")
    with pytest.raises(ValueRefused, match="IPv4 address written as IPv6"):
        Address.parse("::ffff:203.0.113.5")
    assert str(normalise_address("::ffff:10.0.1.10")) == "10.0.1.10"
    assert coerce("address", InputSpec(type="ip"), "::ffff:203.0.113.5") == "203.0.113.5"


@PROPERTY
@given(value=st.one_of(hostile_text, interface_text, st.sampled_from(INJECTIONS)),
       kind=st.sampled_from(["ip", "network", "interface", "host", "user", "string", "email", "url", "int",
                             "duration"]))
def test_every_playbook_input_type_is_one_clean_token_or_refused(value, kind):
    try:
        coerced = coerce("x", InputSpec(type=kind), value)
    except InputError:
        return
    text = str(coerced)
    assert not re.search(r"[\x00-\x1f\x7f\u0085\u2028\u2029]", text), f"{kind} let a control character through"
    if kind in ("ip", "network"):
        assert "%" not in text and not text.startswith("::ffff:")
    if kind == "interface":
        assert re.fullmatch(IFNAME, text)
    if kind in ("host", "user"):
        assert not re.search(r"[\s'\";|&$`<>{}()#]", text)


def test_the_last_guard_refuses_a_control_character_a_driver_might_render():
    with pytest.raises(ValueRefused, match="control character"):
        check_rendered(["object-group network SOC-BLOCKLIST", " host 203.0.113.5\nusername evil"])
    assert InterfaceName.parse("Gi1/0/1").value == "Gi1/0/1" and VlanId.parse("999").number == 999
    assert VlanId.parse("default").number is None  # a Junos VLAN name
    for bad in ("0", "4095", "default;reload", "1 2", "-1"):
        with pytest.raises(ValueRefused):
            VlanId.parse(bad)
    with pytest.raises(ValueRefused):
        Comment.parse('soc" ; reboot')


def test_device_answers_that_are_not_addresses_do_not_confuse_a_driver():
    # a compromised device answering with hostile text is read as data: no exception escapes but DriverError
    nft = get_driver("nftables")
    op = Operation("block", "203.0.113.5")
    for answer in ['{"nftables": [{"set": {"elem": ["203.0.113.5%\';id;\'"]}}]}', "{not json}",
                   '{"nftables": [{"set": {"elem": [{"prefix": {"addr": "x"}}]}}]}']:
        with pytest.raises(DriverError, match="nft"):
            nft.read(op, [answer])
    for name in sorted(DRIVERS):
        d = get_driver(name)
        for answer in ["%';id;'\nnetwork-object host 1.2.3.4%x\n", "<Response><Status code='500'/></Response>",
                       "set policy-options prefix-list SOC-BLOCKLIST 1.2.3.4%x"]:
            try:
                d.read(op, [answer])
            except DriverError:
                pass  # refused as unreadable: fine; anything else escaping would be a crash
    # an XML answer with entity expansion (a "billion laughs") is refused, not expanded
    bomb = ('<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
            '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]><Response><IPHost><Name>&c;</Name></IPHost></Response>')
    sophos = get_driver("sophos_xg")
    assert sophos.refusal(bomb).startswith("not an XML API answer")
    with pytest.raises(DriverError):
        sophos.read(op, [bomb])
