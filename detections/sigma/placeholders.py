"""Values for Sigma ``%placeholder%`` names (``|expand`` modifier), taken from the inventory and the configuration.

SigmaHQ rules leave environment-specific lists as placeholders ("%known_cdcs%": the domain controllers a certificate
request may name). The inventory knows them; the configuration can add or override any list.
"""

from __future__ import annotations

from inventory.lookup import Inventory


def inventory_placeholders(inventory: Inventory | None) -> dict[str, list[str]]:
    if inventory is None:
        return {}
    dcs, dns, soc_hosts = [], [], []
    for asset in inventory.assets.values():
        names = [asset.hostname, asset.hostname.split(".")[0]] + list(asset.addresses)
        if asset.role == "domain-controller" or "ad" in asset.services:
            dcs.extend(names)
        if "dns" in asset.services:
            dns.extend(names)
        if asset.role.startswith("soc"):
            soc_hosts.extend(names)
    unique = lambda values: sorted(set(values))  # noqa: E731
    return {
        "known_cdcs": unique(dcs),
        "domain_controllers": unique(dcs),
        "dns_servers": unique(dns),
        "soc_servers": unique(soc_hosts),
    }


def placeholder_values(inventory: Inventory | None, configured: dict[str, list[str]] | None) -> dict[str, list[str]]:
    values = {k: v for k, v in inventory_placeholders(inventory).items() if v}
    values.update(configured or {})
    return values
