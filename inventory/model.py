"""The inventory model: agencies, their networks, assets and the devices the suite may manage.

The inventory is data (YAML), validated here when it is loaded. Secrets never live in it: a managed device names
where its credentials are (an environment variable or a key file), and the playbook runner resolves them at the
moment of use.
"""

from __future__ import annotations

import ipaddress
from enum import Enum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class AgencyKind(str, Enum):
    province = "province"  # the provincial people's committee and its offices
    department = "department"  # Sở / Ban ngành
    district = "district"  # Huyện / Thị xã / Thành phố thuộc tỉnh
    commune = "commune"  # Xã / Phường / Thị trấn
    datacentre = "datacentre"  # the provincial data centre that hosts the SOC


class AssetKind(str, Enum):
    server = "server"
    firewall = "firewall"
    switch = "switch"
    load_balancer = "load_balancer"
    router = "router"
    waf = "waf"
    workstation = "workstation"
    antivirus_console = "antivirus_console"


class Criticality(str, Enum):
    low = "low"
    medium = "medium"
    high = "high"
    critical = "critical"


_Strict = ConfigDict(extra="forbid", frozen=True)


class Network(BaseModel):
    model_config = _Strict
    cidr: str
    description: str = ""
    zone: str = "internal"  # internal | dmz | wan | management | internet-line (an agency's own Internet line)

    @field_validator("cidr")
    @classmethod
    def _valid_cidr(cls, value: str) -> str:
        return str(ipaddress.ip_network(value, strict=False))


def _plain(value: str, what: str, longest: int) -> str:
    """One line of plain text: stripped, printable (no control characters, no line breaks), bounded."""
    value = value.strip()
    if len(value) > longest or not value.isprintable() or any(c in value for c in "<>"):
        raise ValueError(f"{what} must be one line of at most {longest} printable characters, without < or >")
    return value


class SecurityOfficer(BaseModel):
    """The person an agency names as responsible for its information security (layer 1 of the province's four
    layers of protection, docs/four-layers.md): a name and at least one way to reach them."""

    model_config = _Strict
    name: Annotated[str, Field(min_length=1, max_length=120)]
    title: Annotated[str, Field(max_length=120)] = ""  # position, e.g. "Phó Giám đốc"
    phone: Annotated[str, Field(max_length=24, pattern=r"^(\+?[0-9][0-9 ().-]{5,22})?$")] = ""
    email: Annotated[str, Field(max_length=254,
                                pattern=r"^([A-Za-z0-9._%+'-]{1,64}@[A-Za-z0-9.-]{1,189}\.[A-Za-z]{2,63})?$")] = ""

    @field_validator("name", "title")
    @classmethod
    def _one_line(cls, value: str, info) -> str:
        value = _plain(value, info.field_name, 120)
        if info.field_name == "name" and not value:
            raise ValueError("a security officer needs a name")
        return value

    @model_validator(mode="after")
    def _reachable(self) -> "SecurityOfficer":
        if not (self.phone or self.email):
            raise ValueError("a security officer needs a phone number or an email address")
        return self


class Agency(BaseModel):
    model_config = _Strict
    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")]
    name_vi: str
    name_en: str
    kind: AgencyKind
    parent: str | None = None  # communes belong to a district
    networks: list[Network] = []
    contact: str = ""
    security_officer: SecurityOfficer | None = None  # named person responsible for information security


class Asset(BaseModel):
    model_config = _Strict
    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")]
    hostname: str
    kind: AssetKind
    agency: str
    addresses: list[str] = []
    criticality: Criticality = Criticality.medium
    vendor: str = ""
    model: str = ""
    os: str = ""
    role: str = ""  # e.g. core / access for switches, wan-edge / internal for firewalls
    services: list[str] = []  # e.g. ssh, https, rdp, dns, ad
    # Log sources this asset is expected to send (used by the source-health monitoring).
    log_sources: list[str] = []
    # Names in the client certificates it sends syslog over TLS with (first DNS subjectAltName, else subject CN):
    # a verified certificate names the asset, and so its agency, wherever the connection comes from.
    certificate_names: list[str] = []

    @field_validator("addresses")
    @classmethod
    def _valid_addresses(cls, values: list[str]) -> list[str]:
        return [str(ipaddress.ip_address(v)) for v in values]

    @field_validator("certificate_names")
    @classmethod
    def _valid_certificate_names(cls, values: list[str]) -> list[str]:
        names = []
        for value in values:
            name = value.strip().lower()  # DNS names compare without case; the lookup lowercases too
            if not name or len(name) > 253 or not name.isprintable():
                raise ValueError(f"certificate name {value!r} must be 1 to 253 printable characters")
            if "*" in name:
                raise ValueError(f"certificate name {value!r}: a wildcard cannot name one asset")
            names.append(name)
        return names


class Credentials(BaseModel):
    """Where to find a device's secret. Exactly one of the references is set; the secret itself never is."""

    model_config = _Strict
    username: str
    password_env: str | None = None
    key_file: str | None = None
    secret_env: str | None = None  # enable secret for Cisco-like devices

    @model_validator(mode="after")
    def _one_reference(self) -> "Credentials":
        if not (self.password_env or self.key_file):
            raise ValueError("credentials need password_env or key_file (a reference, never the secret)")
        return self


class ManagedDevice(BaseModel):
    model_config = _Strict
    id: str
    asset: str
    management_address: str
    port: int = 22
    device_type: str  # a netmiko device_type: linux, cisco_asa, cisco_ios, fortinet, sophos_sfos, ...
    driver: str  # the suite's driver for it: nftables, iptables, cisco_asa, cisco_ios, fortigate, sophos_xg, ...
    credentials: Credentials
    core: bool = False  # a core device: any change on it needs approval

    @field_validator("management_address")
    @classmethod
    def _valid_address(cls, value: str) -> str:
        if "%" in value:  # ipaddress keeps any text after '%' (a scope id): it would reach SSH and known_hosts
            raise ValueError(f"{value[:60]!r}: a scope id (after '%') is not allowed in a management address")
        return str(ipaddress.ip_address(value))


class InventoryDocument(BaseModel):
    model_config = ConfigDict(extra="forbid")
    province: Agency
    agencies: list[Agency]
    assets: list[Asset] = []
    devices: list[ManagedDevice] = []
    # Address ranges that are the government network (WAN); anything else is "outside".
    government_networks: list[str] = []
    # Addresses and ranges no playbook may ever block.
    never_block: list[str] = []

    @model_validator(mode="after")
    def _references_resolve(self) -> "InventoryDocument":
        agency_ids = {self.province.id} | {a.id for a in self.agencies}
        seen: set[str] = set()
        for agency in self.agencies:
            if agency.id in seen:
                raise ValueError(f"agency id {agency.id!r} is defined twice")
            seen.add(agency.id)
            if agency.parent and agency.parent not in agency_ids:
                raise ValueError(f"agency {agency.id!r}: parent {agency.parent!r} is not an agency")
        asset_ids: set[str] = set()
        certificate_owner: dict[str, str] = {}
        for asset in self.assets:
            if asset.id in asset_ids:
                raise ValueError(f"asset id {asset.id!r} is defined twice")
            asset_ids.add(asset.id)
            if asset.agency not in agency_ids:
                raise ValueError(f"asset {asset.id!r}: agency {asset.agency!r} is not an agency")
            for name in asset.certificate_names:
                if name in certificate_owner and certificate_owner[name] != asset.id:
                    raise ValueError(f"certificate name {name!r} is on assets {certificate_owner[name]!r} and "
                                     f"{asset.id!r}: it must name one")
                certificate_owner[name] = asset.id
        for device in self.devices:
            if device.asset not in asset_ids:
                raise ValueError(f"device {device.id!r}: asset {device.asset!r} is not an asset")
        for cidr in self.government_networks + self.never_block:
            ipaddress.ip_network(cidr, strict=False)
        return self
