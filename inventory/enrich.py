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


def _candidate_assets(inventory: Inventory, hostname: str | None, certificate: str | None, sender: str | None,
                      host_ip: str | None):
    """The assets an event may be about, best evidence first: the host it names, the verified certificate of the
    sender (names it better than an address: NAT, relays, DHCP), the socket address, the host address it gives."""
    if hostname:
        yield inventory.asset_by_name(hostname)
    if certificate:
        yield inventory.asset_by_certificate(certificate)
    if sender:
        yield inventory.asset_by_ip(sender)
    if host_ip:
        yield inventory.asset_by_ip(host_ip)


def _sender_plan(inventory: Inventory, hostname: str | None, certificate: str | None, sender: str | None,
                 host_ip: str | None, agency: str | None) -> tuple[tuple[tuple[str, object], ...], tuple[str, ...]]:
    """The fields (and tags) an event gets from who sent it and which host it names. They depend on those few
    values alone, which repeat for every event of a sender: computed once, applied to each event."""
    fields: list[tuple[str, object]] = []
    tags: list[str] = []
    if certificate:
        fields.append(("soc.sender.certificate", certificate))
    asset = None
    for found in _candidate_assets(inventory, hostname, certificate, sender, host_ip):
        if found is not None and (agency is None or found.agency == agency):
            asset = found
            break
    owner = None
    if agency is not None:
        owner = inventory.agencies.get(agency)
        if owner is None:  # a key bound to an agency the inventory no longer has: still that agency's event
            fields.append(("organization.id", agency))
            tags.append("unknown_agency")
    if asset is not None:
        if owner is None and agency is None:
            owner = inventory.agencies.get(asset.agency)
        fields.append(("host.name", asset.hostname))
        if asset.addresses:
            fields.append(("host.ip", tuple(asset.addresses)))
        if asset.os:
            fields.append(("host.os.name", asset.os))
        fields += [("soc.asset.id", asset.id), ("soc.asset.kind", asset.kind.value),
                   ("soc.asset.criticality", asset.criticality.value)]
        if asset.role:
            fields.append(("soc.asset.role", asset.role))
    if owner is None and agency is None and sender:
        owner = inventory.agency_of(sender)
    if owner is not None:
        fields += [("organization.id", owner.id), ("organization.name", owner.name_en),
                   ("soc.agency.name_vi", owner.name_vi), ("soc.agency.kind", owner.kind.value)]
    elif agency is None:
        tags.append("unknown_sender")
    return tuple(fields), tuple(tags)


def _address_plan(inventory: Inventory, side: str, address: str) -> tuple[tuple[str, object], ...]:
    """What the inventory says about a source or destination address: its zone, owning agency and asset."""
    fields: list[tuple[str, object]] = [(f"soc.{side}.zone", _zone(inventory, address))]
    owner = inventory.agency_of(address)
    if owner is not None:
        fields.append((f"soc.{side}.agency", owner.id))
    side_asset = inventory.asset_by_ip(address)
    if side_asset is not None:
        fields.append((f"soc.{side}.asset", side_asset.id))
    return tuple(fields)


def enrich(doc: dict, inventory: Inventory, sender: str | None = None, certificate: str | None = None,
           agency: str | None = None) -> dict:
    """``sender`` is the socket address; ``certificate`` the name in the sender's verified TLS client certificate.
    ``agency``: the agency an authenticating source vouched for (the API key's). It is authoritative: the event is
    that agency's whatever the document or the sender address suggest, and only that agency's assets are matched
    (a document naming another agency's host does not get that host's asset, criticality or agency)."""
    hostname = ecs.get(doc, "host.hostname")
    if not isinstance(hostname, str):
        hostname = None
    host_ip = ecs.get(doc, "host.ip")
    if isinstance(host_ip, list):
        host_ip = host_ip[0] if host_ip else None
    if not isinstance(host_ip, str):
        host_ip = None
    key = ("sender", hostname, certificate, sender, host_ip, agency)
    fields, tags = inventory.memo(key, lambda: _sender_plan(inventory, hostname, certificate, sender, host_ip,
                                                            agency))
    for dotted, value in fields:
        ecs.put(doc, dotted, list(value) if type(value) is tuple else value)  # each event gets its own list
    for tag in tags:
        current = doc.setdefault("tags", [])
        if isinstance(current, list) and tag not in current:
            current.append(tag)
    for side in ("source", "destination"):
        address = ecs.get(doc, f"{side}.ip")
        if not address or not isinstance(address, str):
            continue
        for dotted, value in inventory.memo((side, address), lambda: _address_plan(inventory, side, address)):
            ecs.put(doc, dotted, value)
    return doc
