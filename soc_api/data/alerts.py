"""Alerts (listing, evidence, analysts' changes), the events they rest on, and incidents, through the caller's scope."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from fastapi import HTTPException

from detections.lifecycle import INCIDENTS, LifecycleError, join_incident, new_incident
from soc import ecs
from soc.storage.base import AlertQuery, DocumentQuery, EventQuery
from soc.vocabulary import severity_rank

from soc_api.data.core import DataCore, Page, invalid
from soc_api.state import api_state

# One incident document is read, grown and written back; this process's API serialises that.
_INCIDENT_EDITS = threading.Lock()

SCAN_PAGE = 1000
SCAN_CAP = 20_000  # alerts looked at for a filter or sort the store cannot do itself


def tactic_spellings(slug: str | None) -> tuple[str, ...]:
    """The ways a rule's tag may spell one tactic (``attack.credential-access``, the older
    ``attack.credential_access``, ``Credential Access``): the store matches threat.tactic exactly."""
    if not slug:
        return ()
    words = slug.strip().lower().replace("_", "-").replace(" ", "-").split("-")
    out = []
    for joiner in ("-", "_", " "):
        for word in (words, [w.capitalize() for w in words]):
            out.append(joiner.join(word))
    return tuple(dict.fromkeys(out))


@dataclass
class AlertFilter:
    status: str | None = None
    severity: str | None = None
    agency: str | None = None
    rule_id: str | None = None
    since: str | None = None  # last_seen >= since
    until: str | None = None  # last_seen < until
    entity: str | None = None  # any entity value (address, user, host, hash)
    tactic: str | None = None  # an ATT&CK tactic, as its slug ("credential-access"), in any usual spelling
    incident: str | None = None
    sort: str = "-last_seen"

    @property
    def native(self) -> bool:
        """Whether the store can do all of it itself (else: a bounded scan here)."""
        return self.incident is None and self.sort == "-last_seen"


SORTS = {
    "-last_seen": (lambda a: a.get("last_seen", ""), True),
    "last_seen": (lambda a: a.get("last_seen", ""), False),
    "-first_seen": (lambda a: a.get("first_seen", ""), True),
    "first_seen": (lambda a: a.get("first_seen", ""), False),
    "-severity": (lambda a: severity_rank(a.get("severity")), True),
    "severity": (lambda a: severity_rank(a.get("severity")), False),
    "-count": (lambda a: a.get("count", 0), True),
    "count": (lambda a: a.get("count", 0), False),
}


class AlertData(DataCore):
    # --- alerts --------------------------------------------------------------------------------------------------
    def _alert_query(self, f: AlertFilter, limit: int, after: tuple[str, str] | None) -> AlertQuery:
        if after is None and f.until:
            after = (f.until, "")  # (last_seen < until) is exactly "after (until, '')" in newest-first order
        return AlertQuery(agency=self.scope(f.agency), status=f.status, severity=f.severity, rule_id=f.rule_id,
                          since=f.since, entity=f.entity, tactics=tactic_spellings(f.tactic), limit=limit,
                          after=after)

    def list_alerts(self, f: AlertFilter, limit: int, cursor: str | None) -> Page:
        filters = f.__dict__
        position = self.decode_cursor("alerts", filters, cursor)
        if f.native:
            after = tuple(position) if position else None
            alerts = self.store.list_alerts(self._alert_query(f, limit, after))
            alerts = [a for a in alerts if self.visible(a)]  # defence in depth: the store already filtered
            next_cursor = (self.encode_cursor("alerts", filters, [alerts[-1]["last_seen"], alerts[-1]["id"]])
                           if len(alerts) == limit else None)
            return Page(alerts, next_cursor)
        # Filters and sorts the store cannot do: look at up to SCAN_CAP alerts, newest first, and page in memory.
        matched, complete = self._scan_alerts(f)
        key, descending = SORTS[f.sort]
        matched.sort(key=lambda a: (key(a), a.get("last_seen", ""), a["id"]), reverse=descending)
        offset = int(position or 0)
        page = matched[offset:offset + limit]
        more = offset + limit < len(matched)
        return Page(page, self.encode_cursor("alerts", filters, offset + limit) if more else None, complete)

    def _scan_alerts(self, f: AlertFilter) -> tuple[list[dict], bool]:
        matched: list[dict] = []
        looked = 0
        after = None
        while looked < SCAN_CAP:
            batch = self.store.list_alerts(self._alert_query(f, SCAN_PAGE, after))
            looked += len(batch)
            for alert in batch:
                if not self.visible(alert):
                    continue
                if f.entity and not any(f.entity in values for values in (alert.get("entities") or {}).values()):
                    continue
                if f.incident and alert.get("incident") != f.incident:
                    continue
                matched.append(alert)
            if len(batch) < SCAN_PAGE:
                return matched, True
            after = (batch[-1]["last_seen"], batch[-1]["id"])
        return matched, False

    def iter_alerts(self, f: AlertFilter, cap: int = SCAN_CAP) -> Iterator[dict]:
        """Every visible alert matching the store-side filters, newest first, at most ``cap``."""
        after, seen = None, 0
        while seen < cap:
            size = min(SCAN_PAGE, cap - seen)
            batch = self.store.list_alerts(self._alert_query(f, size, after))
            for alert in batch:
                if self.visible(alert):
                    yield alert
            seen += len(batch)
            if len(batch) < size:
                return
            after = (batch[-1]["last_seen"], batch[-1]["id"])

    def get_alert(self, alert_id: str) -> dict:
        alert = self.store.get_alert(alert_id)
        if not self.visible(alert):
            raise HTTPException(404, "no such alert")  # another agency's alert reads as a missing one
        return alert

    def visible_alerts(self, alert_ids: list[str]) -> list[dict]:
        """The alerts of ``alert_ids`` this caller may see, in that order; missing and hidden ones are left out."""
        alerts = (self.store.get_alert(alert_id) for alert_id in alert_ids)
        return [alert for alert in alerts if self.visible(alert)]

    def evidence(self, alert: dict) -> list[dict]:
        agency = ecs.get(alert, "organization.id")
        events = self.store.get_events(list(alert.get("evidence") or []))
        # Evidence belongs to the alert's agency; anything else is not shown to a tenant.
        return [e for e in events if not self.principal.is_tenant or ecs.get(e, "organization.id") == agency
                and self.principal.may_see(agency)]

    def edit_alert(self, alert_id: str, change: Callable[[dict], Any], refresh: bool = True) -> dict:
        """Apply an analyst's change to a visible alert, under the alert manager's lock; 404 / 409 / 422 on refusal."""
        self.get_alert(alert_id)
        try:
            result = self.suite.detection.edit(alert_id, change)  # the edit hooks hear of it (tiers)
        except LifecycleError as exc:
            raise _refusal(exc, "body") from exc
        if result is None:
            raise HTTPException(404, "no such alert")
        if refresh:
            self.refresh()  # the analyst's next listing must show the change
        api_state(self.suite).list_cache.invalidate()
        return result[0]

    # --- events --------------------------------------------------------------------------------------------------
    def search_events(self, *, start: str | None, end: str | None, agency: str | None, terms: dict[str, Any],
                      text: str | None, limit: int, cursor: str | None) -> Page:
        filters = {"start": start, "end": end, "agency": agency, "terms": terms, "text": text}
        position = self.decode_cursor("events", filters, cursor)
        query = EventQuery(start=start, end=end, agency=self.scope(agency), terms=terms, text=text, limit=limit,
                           after=tuple(position) if position else None)
        events = [e for e in self.store.search_events(query) if self.visible(e)]
        next_cursor = (self.encode_cursor("events", filters, [events[-1]["@timestamp"], ecs.get(events[-1], "event.id")])
                       if len(events) == limit else None)
        return Page(events, next_cursor)

    def get_event(self, event_id: str) -> dict:
        found = self.store.get_events([event_id])
        if not found or not self.visible(found[0]):
            raise HTTPException(404, "no such event")
        return found[0]

    # --- incidents -----------------------------------------------------------------------------------------------
    def merge_alerts(self, alert_ids: list[str], title: str | None) -> dict:
        """Merge visible alerts (all of one agency, none already in an incident) into a new, stored incident."""
        ids = list(dict.fromkeys(alert_ids))
        alerts = [self.get_alert(i) for i in ids]
        try:
            incident = new_incident(alerts, by=self.actor, title=title, source=self.source)
        except LifecycleError as exc:
            raise _refusal(exc, "body.ids") from exc
        self.store.put_documents(INCIDENTS, [incident])
        return self._point_to(incident, ids)

    def join_incident(self, incident_id: str, alert_ids: list[str]) -> dict:
        """Visible alerts (of the incident's agency, none in an incident yet) join a visible, existing incident."""
        ids = list(dict.fromkeys(alert_ids))
        with _INCIDENT_EDITS:  # two analysts adding to one incident at once both land
            incident = self.get(INCIDENTS, incident_id, what="incident")
            alerts = [self.get_alert(i) for i in ids]
            try:
                join_incident(incident, alerts, by=self.actor, source=self.source)
            except LifecycleError as exc:
                raise _refusal(exc, "body.ids") from exc
            self.store.put_documents(INCIDENTS, [incident])
        return self._point_to(incident, ids)

    def _point_to(self, incident: dict, alert_ids: list[str]) -> dict:
        """Each alert (under the alert manager's lock) points to the stored incident; its history says so."""
        for alert_id in alert_ids:
            self.edit_alert(alert_id, lambda a: self._join(a, incident), refresh=False)
        self.refresh()
        return incident

    def _join(self, alert: dict, incident: dict) -> dict:
        if alert.get("incident") and alert["incident"] != incident["id"]:
            raise LifecycleError(f"alert {alert['id']} joined another incident meanwhile", conflict=True)
        alert["incident"] = incident["id"]
        alert.setdefault("history", []).append({"at": incident["created_at"], "by": self.actor, "action": "merge",
                                                "incident": incident["id"], "from_address": self.source})
        return alert

    def incidents(self, *, agency: str | None, limit: int, cursor: str | None) -> Page:
        return self.find(INCIDENTS, DocumentQuery(sort="created_at", descending=True, limit=limit), agency=agency,
                         cursor=cursor)

    def incident(self, incident_id: str) -> tuple[dict, list[dict]]:
        """An incident and those of its alerts this caller may see."""
        incident = self.get(INCIDENTS, incident_id, what="incident")
        return incident, self.visible_alerts(incident["alerts"])


def _refusal(exc: LifecycleError, where: str) -> Exception:
    """A change the alert lifecycle refused: 409 when it conflicts with the alert's state, else 422 at ``where``."""
    return HTTPException(409, str(exc)) if exc.conflict else invalid(where, str(exc))
