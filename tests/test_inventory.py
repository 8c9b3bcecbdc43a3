"""The sample province inventory and the address/name lookups every event goes through."""

from __future__ import annotations

import pytest
import yaml

from inventory.lookup import Inventory, InventoryError
from inventory.model import AgencyKind, AssetKind
from inventory.settings import InventoryConfig

SAMPLE = InventoryConfig().path


@pytest.fixture(scope="module")
def inventory() -> Inventory:
    return Inventory.load(SAMPLE)


def test_sample_matches_the_data_centre(inventory):
    dc_assets = [a for a in inventory.assets.values() if a.agency == "dc"]
    firewalls = [a for a in dc_assets if a.kind is AssetKind.firewall and a.id != "lab-nft-01"]
    assert len(firewalls) == 4
    assert sum("Sophos XG 450" in f"{a.vendor} {a.model}" for a in firewalls) == 2
    assert sum("NSA 5600" in a.model for a in firewalls) == 1
    switches = [a for a in dc_assets if a.kind is AssetKind.switch]
    assert sorted(a.role for a in switches).count("core") == 3 and len(switches) == 8
    assert sum(a.kind is AssetKind.load_balancer for a in dc_assets) == 2
    servers = [a for a in inventory.assets.values() if a.kind in (AssetKind.server, AssetKind.waf,
                                                                  AssetKind.antivirus_console)]
    assert len(servers) == 33
    kinds = [a.kind for a in inventory.agencies.values()]
    assert kinds.count(AgencyKind.department) >= 18 and kinds.count(AgencyKind.district) == 10


def test_longest_prefix_wins(inventory):
    commune = next(a for a in inventory.agencies.values() if a.kind is AgencyKind.commune)
    district = inventory.agencies[commune.parent]
    inside_commune = commune.networks[0].cidr.split("/")[0].rsplit(".", 1)[0] + ".5"
    assert inventory.agency_of(inside_commune).id == commune.id
    district_net = district.networks[0].cidr.split("/")[0]
    first_host = district_net.rsplit(".", 1)[0] + ".5"
    assert inventory.agency_of(first_host).id == district.id
    assert inventory.agency_of("203.0.113.77") is None or inventory.agency_of("203.0.113.77").id == "dc"
    assert inventory.agency_of("8.8.8.8") is None
    assert inventory.agency_of("not an address") is None


def test_asset_by_address_and_name(inventory):
    asset = inventory.asset_by_ip("10.20.10.10")
    assert asset.id == "so-tttt-web-01" and asset.agency == "so-tttt"
    assert inventory.asset_by_name("SO-TTTT-WEB-01.example.gov.vn").id == "so-tttt-web-01"
    assert inventory.is_government("10.20.10.10") and not inventory.is_government("203.0.113.7")


def test_asset_by_certificate_name(inventory):
    asset = inventory.asset_by_certificate("SO-YT-APP-01.syslog.tinh.example")  # DNS names ignore case
    assert asset.id == "so-yt-app-01" and asset.agency == "so-yt"
    assert inventory.asset_by_certificate("so-yt-app-01") is None  # exact names only: a certificate is not a guess
    assert inventory.asset_by_certificate("") is None and inventory.asset_by_certificate(None) is None


def test_no_secret_in_the_sample(inventory):
    for device in inventory.devices.values():
        assert device.credentials.password_env or device.credentials.key_file


def _write(tmp_path, doc) -> str:
    path = tmp_path / "inv.yaml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def _minimal():
    return {
        "province": {"id": "p", "name_vi": "Tỉnh", "name_en": "Province", "kind": "province"},
        "agencies": [{"id": "a", "name_vi": "Sở A", "name_en": "Dept A", "kind": "department",
                      "networks": [{"cidr": "10.1.0.0/24"}]}],
        "assets": [{"id": "s1", "hostname": "s1", "kind": "server", "agency": "a", "addresses": ["10.1.0.5"]}],
    }


@pytest.mark.parametrize("change, message", [
    (lambda d: d["agencies"].append(dict(d["agencies"][0])), "defined twice"),
    (lambda d: d["assets"][0].update(agency="ghost"), "not an agency"),
    (lambda d: d["assets"][0].update(addresses=["10.1.0.999"]), "does not appear to be an IPv4 or IPv6"),
    (lambda d: d.update(devices=[{"id": "d", "asset": "s1", "management_address": "10.1.0.5",
                                  "device_type": "linux", "driver": "nftables",
                                  "credentials": {"username": "u"}}]), "reference, never the secret"),
    (lambda d: d["assets"][0].update(password="hunter2"), "Extra inputs are not permitted"),
    (lambda d: d["assets"][0].update(certificate_names=["*.syslog.test"]), "a wildcard cannot name one asset"),
    (lambda d: d["assets"][0].update(certificate_names=["  "]), "1 to 253 printable characters"),
    (lambda d: d["assets"].extend([{"id": "s2", "hostname": "s2", "kind": "server", "agency": "a",
                                    "certificate_names": ["S1.syslog.test"]}])
     or d["assets"][0].update(certificate_names=["s1.syslog.test"]), "is on assets 's1' and 's2'"),
])
def test_invalid_inventories_are_refused_with_the_reason(tmp_path, change, message):
    doc = _minimal()
    change(doc)
    with pytest.raises(InventoryError) as info:
        Inventory.load(_write(tmp_path, doc))
    assert message in str(info.value)


def test_the_holder_gives_the_current_inventory_and_reloads_a_changed_file(tmp_path):
    """One current inventory: listeners hear of a replacement, a changed file is read again, and a file that no
    longer validates is reported and not taken (the suite keeps the inventory it has)."""
    import os

    import yaml

    from inventory.holder import InventoryHolder
    from inventory.settings import InventoryConfig

    path = tmp_path / "province.yaml"
    doc = yaml.safe_load(open(InventoryConfig().path, encoding="utf-8"))
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    holder = InventoryHolder.load(path)
    heard = []
    holder.subscribe(heard.append)
    first = holder.current
    assert holder.reload_if_changed() is False  # unchanged
    doc["assets"].append({"id": "new-dns-01", "hostname": "new-dns-01", "kind": "server", "agency": doc["agencies"][0]["id"],
                          "addresses": ["10.0.1.53"], "services": ["dns"]})
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    os.utime(path, ns=(1, 1))  # a different mtime even on a coarse clock
    assert holder.reload_if_changed() is True
    assert "new-dns-01" in holder.current.assets and holder.current is not first and heard == [holder.current]
    good = holder.current
    path.write_text("agencies: [not, valid", encoding="utf-8")
    assert holder.reload_if_changed() is False and holder.current is good
