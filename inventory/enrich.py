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


# Transports whose sender address can be forged by anyone on the path (a UDP datagram names any source it likes).
SPOOFABLE_TRANSPORTS = frozenset({"udp"})


# An asset with this role forwards other hosts' logs (a central rsyslog): the host names in its lines may name any
# agency's hosts. Any other known sender speaks only for its own agency's hosts.
RELAY_ROLE = "syslog-relay"


def _sender_asset(inventory: Inventory, certificate: str | None, sender: str | None):
    asset = inventory.asset_by_certificate(certificate) if certificate else None
    if asset is None and sender:
        asset = inventory.asset_by_ip(sender)
    return asset


def sender_agency(inventory: Inventory, certificate: str | None, sender: str | None) -> str | None:
    """The agency of whoever really sent the event: its verified certificate's asset, else the asset or network of
    the socket address. Unlike the event's agency, nothing in the message itself (a host name) can change it."""
    asset = _sender_asset(inventory, certificate, sender)
    if asset is not None:
        return asset.agency
    owner = inventory.agency_of(sender) if sender else None
    return owner.id if owner is not None else None


def _sender_plan(inventory: Inventory, hostname: str | None, certificate: str | None, sender: str | None,
                 host_ip: str | None, agency: str | None, transport: str | None = None
                 ) -> tuple[tuple[tuple[str, object], ...], tuple[str, ...]]:
    """The fields (and tags) an event gets from who sent it and which host it names. They depend on those few
    values alone, which repeat for every event of a sender: computed once, applied to each event.

    ``soc.sender.trusted`` says whether the event may serve as evidence for automatic containment: true when an
    authenticated source vouched for its agency (an API key), or when the event is about its real sender itself —
    the inventory asset its certificate or socket address names, over a transport whose address cannot be forged.
    An unknown sender, a sender of another agency, a relay forwarding other hosts' lines (it cannot vouch for where
    they came from: anyone may have sent them to it over UDP), or a UDP datagram is not trusted.
    ``soc.sender.asset`` is that asset, when the sender is one."""
    fields: list[tuple[str, object]] = []
    tags: list[str] = []
    from_agency = None if agency is not None else sender_agency(inventory, certificate, sender)
    if from_agency is not None:
        fields.append(("soc.sender.agency", from_agency))
    sender_asset = _sender_asset(inventory, certificate, sender) if agency is None else None
    if sender_asset is not None:
        fields.append(("soc.sender.asset", sender_asset.id))
    if certificate:
        fields.append(("soc.sender.certificate", certificate))
    # Whose hosts the message may name: the vouched-for agency's; else, for a known sender that is not a relay, its
    # own agency's (a compromised server of one agency must not write as another by naming that agency's host).
    speaks_for = agency
    if speaks_for is None and from_agency is not None and (sender_asset is None or sender_asset.role != RELAY_ROLE):
        speaks_for = from_agency
    asset = None
    for found in _candidate_assets(inventory, hostname, certificate, sender, host_ip):
        if found is None:
            continue
        if speaks_for is None or found.agency == speaks_for:
            asset = found
            break
        if "host_claim_refused" not in tags:
            tags.append("host_claim_refused")
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
    if agency is not None:
        trusted = True
    else:
        trusted = (sender_asset is not None and asset is sender_asset
                   and (transport or "").lower() not in SPOOFABLE_TRANSPORTS)
    fields.append(("soc.sender.trusted", trusted))
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
           agency: str | None = None, transport: str | None = None) -> dict:
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
    key = ("sender", hostname, certificate, sender, host_ip, agency, transport)
    fields, tags = inventory.memo(key, lambda: _sender_plan(inventory, hostname, certificate, sender, host_ip,
                                                            agency, transport))
    for dotted, value in fields:
        ecs.put(doc, dotted, list(value) if type(value) is tuple else value)  # each event gets its own list
    for tag in tags:  # the suite's own tags (the claims step removed any the body wrote): a body cannot hide them
        current = doc.get("tags")
        if not isinstance(current, list):
            current = doc["tags"] = [] if current is None else [current]
        if tag not in current:
            current.append(tag)
    for side in ("source", "destination"):
        address = ecs.get(doc, f"{side}.ip")
        if not address or not isinstance(address, str):
            continue
        for dotted, value in inventory.memo((side, address), lambda: _address_plan(inventory, side, address)):
            ecs.put(doc, dotted, value)
    return doc
