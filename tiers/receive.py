"""At an upstream tier: what a downstream suite sends, taken under the agency its key is bound to (its link).

Everything a downstream sends is checked against its link, never believed: an event or alert belongs to an agency of
the link's subtree (one with no agency is the link's own; one of any other agency is refused and kept as a dead
letter with the reason), ids are the sender's (so a batch sent twice is stored once, and the same alert is one alert
at both tiers), sizes are bounded. Alerts are merged with what analysts here did to them (tiers/merge.py); what
they change here is kept as a change for the link (``tier_changes``), which the downstream pulls.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

from detections.engine import DetectionEngine
from detections.sigma.loader import RuleSet
from inventory.tree import AgencyTree
from soc import ecs, metrics
from soc.storage.base import DeadLetter, DocumentQuery, Store
from tiers import merge
from tiers.agencies import DownstreamAgencies
from tiers.settings import ReceiveSettings

log = logging.getLogger(__name__)

LINKS = "tier_links"
CHANGES = "tier_changes"
RECORD_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$")
SETTLE_NS = 2_000_000_000  # a change is served once older than this: one written a moment earlier is visible by then

RECEIVED = metrics.Counter("soc_tier_received_total", "Records taken from downstream suites", ["link", "kind"])
REFUSED = metrics.Counter("soc_tier_refused_total", "Records from downstream suites refused (dead letters)",
                          ["link", "kind"])
LINK_LAG = metrics.Gauge("soc_tier_link_lag_seconds", "A downstream suite's forwarding lag, as it last reported it",
                         ["link"])
LINK_BACKLOG = metrics.Gauge("soc_tier_link_backlog_records", "Records a downstream suite has waiting to send, as it "
                             "last reported", ["link", "kind"])


@dataclass
class Outcome:
    stored: int = 0
    refused: list[dict] = field(default_factory=list)

    def answer(self) -> dict:
        return {"stored": self.stored, "refused": self.refused[:100], "refused_count": len(self.refused)}


def cross_tier_rules(ruleset: RuleSet, wanted: list[str]) -> RuleSet:
    """The rules (ids, names or titles) this tier runs over forwarded events, with the rules their correlations
    count (which alert on their own only when they would anyway)."""
    names = set(wanted)
    picked = lambda meta: bool({meta.id, meta.name, meta.title} & names)  # noqa: E731
    correlations = [c for c in ruleset.correlations if picked(c.meta)]
    referenced = {r for c in correlations for r in c.rules}
    rules = [r for r in ruleset.rules if picked(r.meta) or {r.meta.id, r.meta.name} & referenced]
    return RuleSet(rules=rules, correlations=correlations)


class TierReceiver:
    def __init__(self, store: Store, settings: ReceiveSettings, agencies: DownstreamAgencies,
                 tree: Callable[[], AgencyTree], alerts, ruleset_source: Callable[[], RuleSet],
                 province: Callable[[], str]):
        self.store = store
        self.settings = settings
        self.agencies = agencies
        self.tree = tree
        self.alerts = alerts  # the alert sink (detections/stage.py): edits under the alert manager's lock
        self.province = province
        self._engine: DetectionEngine | None = None
        self._engine_rules: RuleSet | None = None
        self._ruleset_source = ruleset_source
        self._links_lock = threading.Lock()
        self._link_docs: dict[str, dict] = {}
        # A suite in the middle (the province, between a city and the national centre) passes on what it took.
        self.relay_events: Callable[[list[dict]], None] | None = None
        self.relay_alerts: Callable[[list[dict]], None] | None = None

    # --- agencies ----------------------------------------------------------------------------------------------
    def take_agencies(self, link: str, offered: Any) -> dict:
        items = offered if isinstance(offered, list) else []
        accepted, refused = self.agencies.accept(self.tree(), link, items)
        self._touch(link, agencies=len(accepted))
        return {"accepted": accepted, "refused": [{"id": r.id, "reason": r.reason} for r in refused]}

    # --- events ------------------------------------------------------------------------------------------------
    def take_events(self, link: str, lines: list[bytes]) -> dict:
        subtree = self.tree().subtree(link)
        outcome, docs, letters = Outcome(), [], []
        received = ecs.now_iso()
        for number, line in enumerate(lines, 1):
            doc, reason = self._event(line, link, subtree)
            if doc is None:
                outcome.refused.append({"line": number, "reason": reason})
                letters.append(DeadLetter(received=received, source=f"tier:{link}", reason=f"tier_event: {reason}",
                                          raw=line[: self.settings.max_line_bytes]))
                continue
            docs.append(doc)
        if letters:
            self.store.write_dead_letters(letters)
            REFUSED.labels(link=link, kind="event").inc(len(letters))
        if docs:
            self.store.write_events(docs)  # idempotent by event.id: a batch sent again is stored once
            outcome.stored = len(docs)
            RECEIVED.labels(link=link, kind="event").inc(len(docs))
            if self.relay_events is not None:
                self.relay_events(docs)
            self._correlate(docs)
        self._touch(link, events=outcome.stored)
        return outcome.answer()

    def _event(self, line: bytes, link: str, subtree: frozenset[str]) -> tuple[dict | None, str]:
        if len(line) > self.settings.max_line_bytes:
            return None, f"an event of more than {self.settings.max_line_bytes} bytes"
        try:
            doc = json.loads(line)
        except (ValueError, RecursionError):
            return None, "not a JSON object"
        if not isinstance(doc, dict):
            return None, "not a JSON object"
        event_id = ecs.get(doc, "event.id")
        if not isinstance(event_id, str) or not RECORD_ID.match(event_id):
            return None, "no valid event.id"
        try:
            doc["@timestamp"] = ecs.utc_iso(ecs.parse_time(str(doc.get("@timestamp"))))
        except (ValueError, TypeError):
            return None, "no valid @timestamp"
        reason = self._own_agency(doc, link, subtree)
        if reason:
            return None, reason
        doc["tier"] = {"link": link}
        return doc, ""

    @staticmethod
    def _own_agency(doc: dict, link: str, subtree: frozenset[str]) -> str:
        organization = doc.get("organization")
        if organization is not None and not isinstance(organization, dict):
            return "organization is not an object"
        agency = (organization or {}).get("id")
        if agency is None:
            doc["organization"] = {**(organization or {}), "id": link}  # unattributed below: the link's own
            return ""
        if agency not in subtree:
            return f"agency {str(agency)[:64]!r} is not below {link}"
        return ""

    def _correlate(self, docs: list[dict]) -> None:
        """This tier's own rules across its downstream tiers: each forwarded event counted as the province's, so
        one address trying five passwords at two cities is seen here as one brute force of ten."""
        if not self.settings.rules:
            return
        ruleset = self._ruleset_source()
        if self._engine is None or self._engine_rules is not ruleset:
            self._engine = DetectionEngine(cross_tier_rules(ruleset, self.settings.rules))
            self._engine_rules = ruleset
        province = self.province()
        views = [{**d, "organization": {"id": province, "name": ecs.get(d, "organization.name")}} for d in docs]
        detections = self._engine.evaluate(views)
        if detections:
            self.alerts.raise_alerts(detections)

    # --- alerts ------------------------------------------------------------------------------------------------
    def take_alerts(self, link: str, alerts: Any) -> dict:
        subtree = self.tree().subtree(link)
        outcome = Outcome()
        for alert in alerts if isinstance(alerts, list) else []:
            reason = self._alert_problem(alert, link, subtree)
            if reason:
                outcome.refused.append({"id": str(alert.get("id"))[:64] if isinstance(alert, dict) else None,
                                        "reason": reason})
                self.store.write_dead_letters([DeadLetter(
                    received=ecs.now_iso(), source=f"tier:{link}", reason=f"tier_alert: {reason}",
                    raw=json.dumps(alert, default=str)[: self.settings.max_line_bytes].encode())])
                REFUSED.labels(link=link, kind="alert").inc()
                continue
            self._merge_alert(link, alert)
            outcome.stored += 1
        RECEIVED.labels(link=link, kind="alert").inc(outcome.stored)
        self._touch(link, alerts=outcome.stored)
        return outcome.answer()

    def _alert_problem(self, alert: Any, link: str, subtree: frozenset[str]) -> str:
        if not isinstance(alert, dict):
            return "not a JSON object"
        if not isinstance(alert.get("id"), str) or not RECORD_ID.match(alert["id"]):
            return "no valid id"
        for name in ("fingerprint", "status", "severity", "first_seen", "last_seen"):
            if not isinstance(alert.get(name), str):
                return f"no {name}"
        if not isinstance(alert.get("history", []), list) or not isinstance(alert.get("rule"), dict):
            return "history or rule of the wrong type"
        reason = self._own_agency(alert, link, subtree)
        if reason:
            return reason
        existing = self.store.get_alert(alert["id"])
        if existing is not None and (existing.get("tier") or {}).get("link") != link:
            return "an alert of this id exists here and is not this link's"
        return ""

    def _merge_alert(self, link: str, alert: dict) -> None:
        tier = {"link": link, "received": ecs.now_iso()}
        edited = self.alerts.edit(alert["id"], lambda local: _replace(local, merge.merged(
            local, alert, remote_owns_detection=True) | {"tier": tier}), notify=False)
        if edited is None:  # new here
            kept = merge.merged(None, alert, remote_owns_detection=True) | {"tier": tier}
            self.store.upsert_alerts([kept])
        else:
            kept = edited[0]
        if self.relay_alerts is not None:
            self.relay_alerts([kept])

    # --- changes made here, for the link to pull ---------------------------------------------------------------
    def record_changes(self, alerts: list[dict]) -> None:
        """An analyst here changed forwarded alerts (the alert sink's edit hook): the link is to hear of it."""
        docs = []
        for alert in alerts:
            link = (alert.get("tier") or {}).get("link")
            if not link:
                continue
            docs.append({"id": uuid.uuid4().hex, "seq": time.time_ns(), "at": ecs.now_iso(), "link": link,
                         "alert_id": alert["id"], "triage": merge.triage_of(alert)})
        if docs:
            self.store.put_documents(CHANGES, docs)

    def changes(self, link: str, after: tuple[int, str] | None, limit: int) -> dict:
        settled = time.time_ns() - SETTLE_NS
        docs = self.store.find_documents(CHANGES, DocumentQuery(terms={"link": link}, ranges={"seq": (None, settled)},
                                                                sort="seq", limit=limit, after=after))
        next_cursor = [docs[-1]["seq"], docs[-1]["id"]] if docs else (list(after) if after else None)
        return {"changes": [{"id": d["id"], "at": d["at"], "alert_id": d["alert_id"], "triage": d["triage"]}
                            for d in docs], "next": next_cursor}

    # --- the link's state --------------------------------------------------------------------------------------
    def take_status(self, link: str, status: Any) -> dict:
        status = status if isinstance(status, dict) else {}
        reported = {"lag_seconds": _number(status.get("lag_seconds")),
                    "backlog": {k: {"records": _number((v or {}).get("records")), "bytes": _number((v or {}).get("bytes"))}
                                for k, v in (status.get("backlog") or {}).items()
                                if k in ("event", "alert", "agencies") and isinstance(v, dict)},
                    "dropped": {k: _number(v) for k, v in (status.get("dropped") or {}).items()
                                if isinstance(k, str) and len(k) < 40},
                    "reported_at": ecs.now_iso()}
        if reported["lag_seconds"] is not None:
            LINK_LAG.labels(link=link).set(reported["lag_seconds"])
        for kind, figures in reported["backlog"].items():
            LINK_BACKLOG.labels(link=link, kind=kind).set(figures["records"] or 0)
        self._touch(link, reported=reported)
        return {"ok": True}

    def _touch(self, link: str, *, events: int = 0, alerts: int = 0, agencies: int = 0,
               reported: dict | None = None) -> None:
        with self._links_lock:
            doc = self._link_docs.get(link) or self.store.get_document(LINKS, link) or {
                "id": link, "received": {"events": 0, "alerts": 0, "agencies": 0}, "first_contact": ecs.now_iso()}
            doc["last_contact"] = ecs.now_iso()
            doc["received"]["events"] += events
            doc["received"]["alerts"] += alerts
            doc["received"]["agencies"] += agencies
            if reported is not None:
                doc["reported"] = reported
            self._link_docs[link] = doc
            self.store.put_documents(LINKS, [doc])

    def links(self, only: frozenset[str] | None = None) -> list[dict]:
        docs = self.store.find_documents(LINKS, DocumentQuery(limit=1000))
        return [d for d in docs if only is None or d["id"] in only]


def _replace(target: dict, source: dict) -> dict:
    """The edit works on the alert in place: make it ``source``."""
    target.clear()
    target.update(source)
    return target


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
