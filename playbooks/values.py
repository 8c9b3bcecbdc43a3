"""The values that may reach a network device, as types built by strict parsing, never as pasted text.

Every value a driver renders into a command (an address, a network, a port, an interface name, an object name, a
comment, a VLAN) is one of these types. Each is built only by its ``parse`` and holds text that matches a small
grammar every vendor's CLI reads as one token: no whitespace where a token is expected, no quote, no separator a
shell or a CLI would read (``; | & $ ` ' " \\ < > { } ( ) #``), no control character (newline, carriage return,
NUL...). Anything else is refused with :class:`ValueRefused`, which says what was wrong.

Why not ``ipaddress`` alone: it accepts an IPv6 scope id (any text after ``%``) and prints it back, so
``2001:db8::1%';id;'`` passes ``ip_address`` and reaches the device as text. It also accepts IPv4-mapped IPv6
(``::ffff:10.0.1.10``), the same host as ``10.0.1.10`` written so a never-block list of IPv4 ranges does not see it.
Here the grammar is checked first (only hex digits, dots, colons and one ``/prefix``), scope ids are refused, and
mapped or IPv4-compatible addresses are refused by the device types; :func:`normalise_address` turns them into the
IPv4 address they are for the layers that read alerts (so the never-block check sees the real host).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any, Union

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


class ValueRefused(ValueError):
    """A value that must not reach a device: the message says which value and why."""


# Only the characters an address or a CIDR is made of; length bounds the work and the message.
_ADDRESS_CHARS = re.compile(r"[0-9A-Fa-f.:]{2,45}")
_NETWORK_CHARS = re.compile(r"[0-9A-Fa-f.:]{2,45}(?:/[0-9]{1,3})?")
# Interface names of the vendors we drive: GigabitEthernet1/0/1, Gi1/0/1.100, ge-0/0/1, xe-0/0/0:1, Port-channel1,
# eth0, Ethernet1/49/1. A letter first (so it can never read as an option or a number), then letters, digits and
# / . : _ - only.
_INTERFACE = re.compile(r"[A-Za-z][A-Za-z0-9/._:-]{0,63}")
# VLAN names (Junos, and switches that name VLANs): a letter first, so a name never reads as a number.
_VLAN_NAME = re.compile(r"[A-Za-z][A-Za-z0-9._-]{0,31}")
# Object names the suite creates on devices (soc-203.0.113.5_32, SOC-BLOCKLIST).
_OBJECT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
# A comment or description kept beside a change (the run's tag): words, digits and a few separators, no quote.
_COMMENT = re.compile(r"[A-Za-z0-9 ._:/-]{0,64}")
_MAPPED_V6 = ipaddress.ip_network("::ffff:0:0/96")
_NAT64_V6 = ipaddress.ip_network("64:ff9b::/96")  # the NAT64 well-known prefix: the IPv4 host behind a translator
_EMBEDS_V4 = (_MAPPED_V6, _NAT64_V6)
_COMPATIBLE_V6 = ipaddress.ip_network("::/96")  # deprecated IPv4-compatible form (::10.0.1.10)


def _text(value: Any, what: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, ipaddress.IPv4Address, ipaddress.IPv6Address,
                                                         ipaddress.IPv4Network, ipaddress.IPv6Network)):
        raise ValueRefused(f"{what}: {type(value).__name__} is not text")
    return str(value)


def _shown(text: str) -> str:
    return repr(text[:80] + ("…" if len(text) > 80 else ""))


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv4-mapped (::ffff:a.b.c.d), NAT64 (64:ff9b::a.b.c.d) or IPv4-compatible (::a.b.c.d) IPv6
    address stands for."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address in _NAT64_V6:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if address in _COMPATIBLE_V6 and int(address) > 1:  # not :: or ::1
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _strict_address(value: Any, what: str) -> IPAddress:
    text = _text(value, what).strip()
    if "%" in text:
        raise ValueRefused(f"{what}: {_shown(text)} has a scope id (after '%'); a device address never does")
    if not _ADDRESS_CHARS.fullmatch(text):
        raise ValueRefused(f"{what}: {_shown(text)} is not an IP address (only digits, hex letters, '.' and ':')")
    try:
        return ipaddress.ip_address(text)
    except ValueError as exc:
        raise ValueRefused(f"{what}: {_shown(text)} is not an IP address") from exc


def normalise_address(value: Any, what: str = "address") -> IPAddress:
    """An address read from an alert or typed by a person: strict grammar, no scope id, and an IPv4-mapped or
    IPv4-compatible IPv6 address becomes the IPv4 address it is."""
    address = _strict_address(value, what)
    return embedded_ipv4(address) or address


def _strict_network(value: Any, what: str) -> IPNetwork:
    text = _text(value, what).strip()
    if "%" in text:
        raise ValueRefused(f"{what}: {_shown(text)} has a scope id (after '%'); a device address never does")
    if not _NETWORK_CHARS.fullmatch(text):
        raise ValueRefused(f"{what}: {_shown(text)} is not an address or a CIDR range")
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError as exc:
        raise ValueRefused(f"{what}: {_shown(text)} is not an address or a CIDR range: {exc}") from exc


def normalise_network(value: Any, what: str = "network") -> IPNetwork:
    """A network read from an alert or typed by a person; a range of IPv4 space written as IPv6 (mapped, or the
    NAT64 well-known prefix) becomes the IPv4 range it covers."""
    network = _strict_network(value, what)
    if network.version == 6 and network.prefixlen >= 96:
        for embedding in _EMBEDS_V4:
            if network.subnet_of(embedding):
                v4 = ipaddress.IPv4Address(int(network.network_address) & 0xFFFFFFFF)
                return ipaddress.ip_network(f"{v4}/{network.prefixlen - 96}", strict=False)
    if network.version == 6 and network.prefixlen == 128 and embedded_ipv4(network.network_address):
        return ipaddress.ip_network(f"{embedded_ipv4(network.network_address)}/32")
    return network


@dataclass(frozen=True)
class Address:
    """One host address a device may be told about."""

    ip: IPAddress

    @classmethod
    def parse(cls, value: Any, what: str = "address") -> "Address":
        if isinstance(value, Address):
            return value
        address = _strict_address(value, what)
        if embedded_ipv4(address) is not None:
            raise ValueRefused(f"{what}: {address} is an IPv4 address written as IPv6 "
                               f"({embedded_ipv4(address)}); give the IPv4 address")
        return cls(address)

    @property
    def version(self) -> int:
        return self.ip.version

    def __str__(self) -> str:
        return str(self.ip)


@dataclass(frozen=True)
class Network:
    """An address or a CIDR range a device may block or route to nowhere. Host bits are cleared."""

    net: IPNetwork

    @classmethod
    def parse(cls, value: Any, what: str = "network") -> "Network":
        if isinstance(value, Network):
            return value
        if isinstance(value, Address):
            value = str(value)
        network = _strict_network(value, what)
        if network.version == 6 and (any(network.overlaps(e) for e in _EMBEDS_V4) or
                                     (network.subnet_of(_COMPATIBLE_V6) and network.prefixlen >= 96
                                      and int(network.network_address) > 1)):
            raise ValueRefused(f"{what}: {network} is IPv4 space written as IPv6; give the IPv4 address or range")
        return cls(network)

    # What drivers read: each property is text of the strict grammar above, or a number.
    @property
    def version(self) -> int:
        return self.net.version

    @property
    def prefixlen(self) -> int:
        return self.net.prefixlen

    @property
    def is_host(self) -> bool:
        return self.net.prefixlen == self.net.max_prefixlen

    @property
    def address(self) -> str:
        return str(self.net.network_address)

    @property
    def netmask(self) -> str:
        return str(self.net.netmask)

    @property
    def cidr(self) -> str:
        return str(self.net)

    @property
    def text(self) -> str:
        """203.0.113.5 for a host, 198.51.100.0/24 for a range."""
        return self.address if self.is_host else self.cidr

    def __str__(self) -> str:
        return self.cidr


@dataclass(frozen=True)
class _Number:
    """A whole number within bounds, given as a number or as its decimal digits (no sign, no spaces inside)."""

    number: int
    kind = "number"
    low, high = 0, 0

    @classmethod
    def parse(cls, value: Any, what: str | None = None):
        if isinstance(value, cls):
            return value
        text = _text(value, what or cls.kind).strip()
        if not text.isdigit() or not text.isascii() or not cls.low <= int(text) <= cls.high:
            raise ValueRefused(f"{what or cls.kind}: {_shown(text)} is not {cls.described} ({cls.low}-{cls.high})")
        return cls(int(text))

    def __str__(self) -> str:
        return str(self.number)


class Port(_Number):
    kind, described, low, high = "port", "a port", 1, 65535


@dataclass(frozen=True)
class VlanId:
    """A VLAN by number (1-4094), or by name where the vendor names VLANs (Junos: ``vlan members default``)."""

    value: str

    @classmethod
    def parse(cls, value: Any, what: str = "vlan") -> "VlanId":
        if isinstance(value, VlanId):
            return value
        text = _text(value, what).strip()
        if text.isascii() and text.isdigit() and 1 <= int(text) <= 4094:
            return cls(str(int(text)))
        if _VLAN_NAME.fullmatch(text) and not text.isdigit():
            return cls(text)
        raise ValueRefused(f"{what}: {_shown(text)} is not a VLAN (a number 1-4094, or a name: a letter, then "
                           f"letters, digits and . _ - only)")

    @property
    def number(self) -> int | None:
        """The VLAN's number, or None for a VLAN given by name."""
        return int(self.value) if self.value.isdigit() else None

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class _Token:
    value: str
    grammar = _OBJECT_NAME
    kind = "token"

    @classmethod
    def parse(cls, value: Any, what: str | None = None):
        if isinstance(value, cls):
            return value
        text = _text(value, what or cls.kind)
        if not cls.grammar.fullmatch(text):
            raise ValueRefused(f"{what or cls.kind}: {_shown(text)} is not {cls.described}")
        return cls(text)

    def __str__(self) -> str:
        return self.value


class InterfaceName(_Token):
    grammar = _INTERFACE
    kind = "interface"
    described = "an interface name (a letter, then letters, digits and / . : _ - only, at most 64)"


class ObjectName(_Token):
    grammar = _OBJECT_NAME
    kind = "object name"
    described = "an object name (letters, digits and . _ - only, at most 63)"


class Comment(_Token):
    grammar = _COMMENT
    kind = "comment"
    described = "a comment (letters, digits, spaces and . _ : / - only, at most 64)"


def object_name(network: Network) -> ObjectName:
    """The device object the suite keeps for a network: soc-203.0.113.5_32 (soc-2001-db8--1_128 for IPv6)."""
    return ObjectName.parse(f"soc-{network.address.replace(':', '-')}_{network.prefixlen}")


# Characters no rendered command may contain, whatever the vendor: line breaks and other controls end or split a
# command on every CLI and shell.
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029]")


def check_rendered(commands: list[str]) -> list[str]:
    """The last guard: a rendered command with a control character is a driver bug, refused before it is sent."""
    for command in commands:
        if _CONTROL.search(command):
            raise ValueRefused(f"rendered command {_shown(command)} contains a control character")
    return commands
