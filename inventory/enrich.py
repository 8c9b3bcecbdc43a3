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


def _candidate_assets(doc: dict, inventory: Inventory, sender: str | None, certificate: str | None):
    """The assets an event may be about, best evidence first: the host it names, the verified certificate of the
    sender (names it better than an address: NAT, relays, DHCP), the socket address, the host address it gives."""
    hostname = ecs.get(doc, "host.hostname")
    if isinstance(hostname, str):
        yield inventory.asset_by_name(hostname)
    if certificate:
        yield inventory.asset_by_certificate(certificate)
    if sender:
        yield inventory.asset_by_ip(sender)
    host_ip = ecs.get(doc, "host.ip")
    if isinstance(host_ip, list):
        host_ip = host_ip[0] if host_ip else None
    if isinstance(host_ip, str):
        yield inventory.asset_by_ip(host_ip)


def enrich(doc: dict, inventory: Inventory, sender: str | None = None, certificate: str | None = None,
           agency: str | None = None) -> dict:
    """``sender`` is the socket address; ``certificate`` the name in the sender's verified TLS client certificate.
    ``agency``: the agency an authenticating source vouched for (the API key's). It is authoritative: the event is
    that agency's whatever the document or the sender address suggest, and only that agency's assets are matched
    (a document naming another agency's host does not get that host's asset, criticality or agency)."""
    if certificate:
        ecs.put(doc, "soc.sender.certificate", certificate)
    asset = None
    for found in _candidate_assets(doc, inventory, sender, certificate):
        if found is not None and (agency is None or found.agency == agency):
            asset = found
            break
    owner = None
    if agency is not None:
        owner = inventory.agencies.get(agency)
        if owner is None:  # a key bound to an agency the inventory no longer has: still that agency's event
            ecs.put(doc, "organization.id", agency)
            tags = doc.setdefault("tags", [])
            if isinstance(tags, list) and "unknown_agency" not in tags:
                tags.append("unknown_agency")
    if asset is not None:
        if owner is None and agency is None:
            owner = inventory.agencies.get(asset.agency)
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
    if owner is None and agency is None and sender:
        owner = inventory.agency_of(sender)
    if owner is not None:
        ecs.put(doc, "organization.id", owner.id)
        ecs.put(doc, "organization.name", owner.name_en)
        ecs.put(doc, "soc.agency.name_vi", owner.name_vi)
        ecs.put(doc, "soc.agency.kind", owner.kind.value)
    elif agency is None:
        tags = doc.setdefault("tags", [])
        if "unknown_sender" not in tags:
            tags.append("unknown_sender")
    for side in ("source", "destination"):
        address = ecs.get(doc, f"{side}.ip")
        if not address or not isinstance(address, str):
            continue
        ecs.put(doc, f"soc.{side}.zone", _zone(inventory, address))
        owner = inventory.agency_of(address)
        if owner is not None:
            ecs.put(doc, f"soc.{side}.agency", owner.id)
        side_asset = inventory.asset_by_ip(address)
        if side_asset is not None:
            ecs.put(doc, f"soc.{side}.asset", side_asset.id)
    return doc
