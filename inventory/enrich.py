"""Enrichment from the inventory: which agency an event belongs to, which asset it is about, where its addresses sit.

Sets ECS ``organization.id/name`` (the agency that owns the observed host), ``host.*`` for a known asset, and the
suite's own ``soc.*`` fields (asset id, kind and criticality; the zone and agency of source and destination).
"""

from __future__ import annotations

from soc import ecs
from inventory.lookup import Inventory


def _zone(inventory: Inventory, address: str) -> str:
    """government (inside the WAN), outside, or the zone of the inventory network that holds it when that network is
    not internal — an agency's own Internet line ("internet-line") must never pass as the government network."""
    owner = inventory.network_of(address)
    if owner is not None and owner.zone not in ("internal", "management"):
        return owner.zone
    return "government" if inventory.is_government(address) else "outside"


def enrich(doc: dict, inventory: Inventory, sender: str | None = None, certificate: str | None = None) -> dict:
    """``sender`` is the socket address; ``certificate`` the name in the sender's verified TLS client certificate,
    which names it better than an address (NAT, relays, DHCP) and so is preferred to it."""
    if certificate:
        ecs.put(doc, "soc.sender.certificate", certificate)
    asset = (inventory.asset_by_name(ecs.get(doc, "host.hostname")) or inventory.asset_by_certificate(certificate)
             or inventory.asset_by_ip(sender))
    if asset is None and ecs.get(doc, "host.ip"):
        host_ip = ecs.get(doc, "host.ip")
        asset = inventory.asset_by_ip(host_ip[0] if isinstance(host_ip, list) else host_ip)
    agency = None
    if asset is not None:
        agency = inventory.agencies.get(asset.agency)
        ecs.put(doc, "host.name", asset.hostname)
        if asset.addresses:
            ecs.put(doc, "host.ip", list(asset.addresses))
        if asset.os:
            ecs.put(doc, "host.os.name", asset.os)
        ecs.put(doc, "soc.asset.id", asset.id)
        ecs.put(doc, "soc.asset.kind", asset.kind.value)
        ecs.put(doc, "soc.asset.criticality", asset.criticality.value)
        if asset.role:
            ecs.put(doc, "soc.asset.role", asset.role)
    if agency is None and sender:
        agency = inventory.agency_of(sender)
    if agency is not None:
        ecs.put(doc, "organization.id", agency.id)
        ecs.put(doc, "organization.name", agency.name_en)
        ecs.put(doc, "soc.agency.name_vi", agency.name_vi)
        ecs.put(doc, "soc.agency.kind", agency.kind.value)
    else:
        tags = doc.setdefault("tags", [])
        if "unknown_sender" not in tags:
            tags.append("unknown_sender")
    for side in ("source", "destination"):
        address = ecs.get(doc, f"{side}.ip")
        if not address:
            continue
        ecs.put(doc, f"soc.{side}.zone", _zone(inventory, address))
        owner = inventory.agency_of(address)
        if owner is not None:
            ecs.put(doc, f"soc.{side}.agency", owner.id)
        side_asset = inventory.asset_by_ip(address)
        if side_asset is not None:
            ecs.put(doc, f"soc.{side}.asset", side_asset.id)
    return doc
