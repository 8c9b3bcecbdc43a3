"""Tiers as an extension of the suite (soc/plugins.py): both sides, each on when it is needed.

Upstream side, always: the ``tier_receiver`` (what ``downstream`` keys send, soc_api/routers/tiers.py) and the
``tier_agencies`` the tenancy tree reads (soc_api/tenancy.py); an analyst's change to a forwarded alert becomes a
change its link pulls. Downstream side, when ``tiers.upstream.url`` is set: the outbox takes every stored event the
filter lets through, every alert raised or changed, and the inventory's agencies, and the forwarder drains it.
"""

from __future__ import annotations

import logging
from pathlib import Path

from soc import codec, ecs
from soc.plugins import Registry, Services
from tiers.agencies import DownstreamAgencies
from tiers.forwarder import Forwarder, apply_upstream_change
from tiers.outbox import AGENCIES, ALERT, EVIDENCE, LOW, Outbox
from tiers.receive import TierReceiver
from tiers.settings import EventFilter, TiersSettings

log = logging.getLogger(__name__)

_EVIDENCE_MEMORY = 200_000  # evidence ids already queued (bounded; forgetting one only sends it again)


def register(services: Services, registry: Registry) -> None:
    settings: TiersSettings = services.settings.tiers
    agencies = DownstreamAgencies(services.store)
    registry.provide("tier_agencies", agencies)

    def tree():
        from soc_api.tenancy import agency_tree

        return agency_tree(_SuiteView(services))

    receiver = TierReceiver(services.store, settings.receive, agencies, tree, services.alerts,
                            ruleset_source=lambda: services.ruleset.current,
                            province=lambda: services.inventory.document.province.id)
    registry.provide("tier_receiver", receiver)
    registry.on_alert_edits(receiver.record_changes)

    link = settings.upstream
    if not link.url:
        return
    outbox = Outbox(Path(services.settings.data_dir) / link.spool_dir, max_bytes=link.spool_max_bytes)
    apply = apply_upstream_change(services.alerts)

    def apply_and_pass_down(alert_id: str, triage: dict) -> bool:
        """An upstream change lands here, and goes on down when the alert came from a suite below this one."""
        applied = apply(alert_id, triage)
        if applied:
            alert = services.store.get_alert(alert_id)
            if alert is not None:
                receiver.record_changes([alert])
        return applied

    forwarder = Forwarder(link, outbox, apply_and_pass_down)
    registry.provide("tier_forwarder", forwarder)
    queued_evidence: dict[str, None] = {}

    def on_events(events: list[dict]) -> None:
        if link.events == "none":
            return
        chosen = events if link.events == "all" else [e for e in events if _wanted(e, link.event_filter)]
        if chosen:
            outbox.add_events((codec.dumps_bytes(e), LOW) for e in chosen)

    def on_alerts(alerts: list[dict]) -> None:
        outbox.put_latest(ALERT, [(a["id"], codec.dumps_bytes(a)) for a in alerts])
        if link.events == "all" or not link.event_filter.evidence:
            return  # every event goes up anyway, or evidence is not wanted
        ids = [i for a in alerts for i in a.get("evidence") or [] if i not in queued_evidence]
        if ids:
            outbox.add_events((codec.dumps_bytes(e), EVIDENCE) for e in services.store.get_events(ids))
            queued_evidence.update(dict.fromkeys(ids))
            while len(queued_evidence) > _EVIDENCE_MEMORY:
                queued_evidence.pop(next(iter(queued_evidence)))

    def send_agencies(_inventory=None) -> None:
        """The inventory's agencies and those the suites below forwarded (the whole tree below this suite)."""
        listed = [{"id": a.id, "parent": a.parent, "kind": a.kind, "name_vi": a.name_vi, "name_en": a.name_en}
                  for a in tree().nodes.values()]
        outbox.put_latest(AGENCIES, [("all", codec.dumps_bytes(listed))])

    registry.on_events(on_events)
    registry.on_alerts(on_alerts)
    registry.on_alert_edits(on_alerts)
    services.inventory_holder.subscribe(send_agencies)
    agencies.subscribe(send_agencies)
    receiver.relay_events = on_events
    receiver.relay_alerts = on_alerts
    send_agencies()
    registry.run_in_background(forwarder.run)
    registry.on_close(outbox.close)


def _wanted(event: dict, wanted: EventFilter) -> bool:
    if wanted.min_severity is not None:
        severity = ecs.get(event, "event.severity")
        if isinstance(severity, (int, float)) and severity >= wanted.min_severity:
            return True
    if wanted.categories:
        category = ecs.get(event, "event.category")
        values = category if isinstance(category, list) else [category]
        if any(v in wanted.categories for v in values):
            return True
    if wanted.outcomes and ecs.get(event, "event.outcome") in wanted.outcomes:
        return True
    return False


class _SuiteView:
    """What soc_api.tenancy.agency_tree reads of a suite, from the extension's services."""

    def __init__(self, services: Services):
        self._services = services

    @property
    def inventory(self):
        return self._services.inventory

    def service(self, name: str):
        return self._services.service(name)
