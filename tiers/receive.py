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
import math
import re
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from dataclasses import dataclass, field
from typing import Any, Callable

import orjson
from pydantic import ValidationError

from detections.engine import DetectionEngine
from detections.sigma.loader import RuleSet
from inventory.tree import AgencyTree
from soc import codec, ecs, metrics
from soc.storage.base import DeadLetter, DocumentQuery, Store
from soc.vocabulary import ALERT_STATUSES, SEVERITIES
from tiers import merge
from tiers.agencies import DownstreamAgencies
from tiers.settings import ReceiveSettings

log = logging.getLogger(__name__)

LINKS = "tier_links"
CHANGES = "tier_changes"
RECORD_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$")
SETTLE_NS = 2_000_000_000  # a change is served once older than this: one written a moment earlier is visible by then
MAX_DEPTH = 32  # as the pipeline's json_max_depth: deeper is an attack, not a log
MAX_FIGURE = 1e12  # a reported backlog or lag beyond this is nonsense
DROPPED_KINDS = ("events", "evidence")

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
        docs = self._not_others(link, docs, outcome, letters, received)
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
        doc, reason = _clean(doc)
        if doc is None:
            return None, reason
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

    def _not_others(self, link: str, docs: list[dict], outcome: Outcome, letters: list[DeadLetter],
                    received: str) -> list[dict]:
        """Only this link's own events may be written again (a batch sent twice): an event id the province holds from
        elsewhere (its own senders, another link) is refused, so a link cannot overwrite another's evidence."""
        held = {ecs.get(e, "event.id"): e for e in self.store.get_events([ecs.get(d, "event.id") for d in docs])}
        kept = []
        for doc in docs:
            before = held.get(ecs.get(doc, "event.id"))
            if before is not None and (before.get("tier") or {}).get("link") != link:
                reason = "an event of this id is here and is not this link's"
                outcome.refused.append({"id": ecs.get(doc, "event.id"), "reason": reason})
                letters.append(DeadLetter(received=received, source=f"tier:{link}", reason=f"tier_event: {reason}",
                                          raw=codec.dumps_bytes(doc)[: self.settings.max_line_bytes]))
            else:
                kept.append(doc)
        return kept

    @staticmethod
    def _own_agency(doc: dict, link: str, subtree: frozenset[str]) -> str:
        organization = doc.get("organization")
        if organization is not None and not isinstance(organization, dict):
            return "organization is not an object"
        agency = (organization or {}).get("id")
        if agency is not None and not isinstance(agency, str):
            return f"agency {str(agency)[:64]!r} is not an agency id"
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
        views = [_as_province(d, province) for d in docs]
        detections = self._engine.evaluate(views)
        if detections:
            self.alerts.raise_alerts(detections)

    # --- alerts ------------------------------------------------------------------------------------------------
    def take_alerts(self, link: str, alerts: Any) -> dict:
        subtree = self.tree().subtree(link)
        outcome = Outcome()
        for alert in alerts if isinstance(alerts, list) else []:
            reason = self._alert_problem(alert, link, subtree)
            if not reason:
                try:
                    self._merge_alert(link, alert)
                except ValueError as exc:  # merged with what is here, it would not be an alert the API can show
                    reason = f"merged, not an alert: {str(exc)[:200]}"
            if reason:
                outcome.refused.append({"id": str(alert.get("id"))[:64] if isinstance(alert, dict) else None,
                                        "reason": reason})
                self.store.write_dead_letters([DeadLetter(
                    received=ecs.now_iso(), source=f"tier:{link}", reason=f"tier_alert: {reason}",
                    raw=_raw(alert)[: self.settings.max_line_bytes])])
                REFUSED.labels(link=link, kind="alert").inc()
                continue
            outcome.stored += 1
        RECEIVED.labels(link=link, kind="alert").inc(outcome.stored)
        self._touch(link, alerts=outcome.stored)
        return outcome.answer()

    def _alert_problem(self, alert: Any, link: str, subtree: frozenset[str]) -> str:
        if not isinstance(alert, dict):
            return "not a JSON object"
        if not _depth(alert, MAX_DEPTH):
            return f"nested deeper than {MAX_DEPTH}"
        # An alert's labels are keyed by dotted field names (source.ip) on purpose; its own fields never are: a
        # top-level "organization.id" would be a second agency to a search engine.
        organization = alert.get("organization")
        if any("." in str(k) for k in alert) or (isinstance(organization, dict) and any("." in str(k)
                                                                                           for k in organization)):
            return "dotted field names in an alert's own fields"
        if not isinstance(alert.get("id"), str) or not RECORD_ID.match(alert["id"]):
            return "no valid id"
        reason = self._own_agency(alert, link, subtree) or _alert_shape(alert)
        if reason:
            return reason
        existing = self.store.get_alert(alert["id"])
        if existing is not None and (existing.get("tier") or {}).get("link") != link:
            return "an alert of this id exists here and is not this link's"
        return ""

    def _merge_alert(self, link: str, alert: dict) -> None:
        tier = {"link": link, "received": ecs.now_iso()}
        edited = self.alerts.edit(alert["id"], lambda local: _replace(local, held(merge.merged(
            local, alert, remote_owns_detection=True) | {"tier": tier})), notify=False)
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
        backlog = status.get("backlog") if isinstance(status.get("backlog"), dict) else {}
        dropped = status.get("dropped") if isinstance(status.get("dropped"), dict) else {}
        reported = {"lag_seconds": _number(status.get("lag_seconds")),
                    "backlog": {k: {"records": _number(v.get("records")), "bytes": _number(v.get("bytes"))}
                                for k, v in backlog.items() if k in ("event", "alert", "agencies") and isinstance(v, dict)},
                    "dropped": {k: _number(dropped.get(k)) for k in DROPPED_KINDS if k in dropped},
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


def _as_province(doc: dict, province: str) -> dict:
    """A forwarded event as this tier's own rules see it: the province's, and never evidence for automatic
    containment here (the city vouched for its sender; this suite cannot), whatever the city's copy says."""
    soc = doc.get("soc") if isinstance(doc.get("soc"), dict) else {}
    sender = soc.get("sender") if isinstance(soc.get("sender"), dict) else {}
    return {**doc, "organization": {"id": province, "name": ecs.get(doc, "organization.name")},
            "soc": {**soc, "sender": {**sender, "trusted": False}}}


def _replace(target: dict, source: dict) -> dict:
    """The edit works on the alert in place: make it ``source``."""
    target.clear()
    target.update(source)
    return target


def _raw(value: Any) -> bytes:
    """What was sent, for the dead letter, whatever it holds (a lone surrogate, a depth json cannot write)."""
    try:
        return json.dumps(value, default=str).encode("utf-8", "replace")
    except (ValueError, RecursionError):
        return repr(value)[:10_000].encode("utf-8", "replace")


def _number(value: Any) -> float | None:
    """A figure a downstream reported: a finite number from 0 to MAX_FIGURE, else unknown (None)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    value = float(value)
    return value if math.isfinite(value) and 0 <= value <= MAX_FIGURE else None


def _shape(value: Any, limit: int) -> tuple[bool, bool]:
    """(nests no deeper than ``limit``, has a dotted key somewhere), in one pass, iteratively (a deep document
    cannot exhaust the stack)."""
    todo, dotted = [(value, 0)], False
    while todo:
        node, depth = todo.pop()
        if depth > limit:
            return False, dotted
        if isinstance(node, dict):
            dotted = dotted or any("." in k for k in node if type(k) is str)
            todo.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            todo.extend((v, depth + 1) for v in node)
    return True, dotted


def _depth(value: Any, limit: int) -> bool:
    return _shape(value, limit)[0]


def _clean(doc: dict) -> tuple[dict | None, str]:
    """A forwarded document as every reader sees it: dotted names made nested (a dotted ``organization.id`` beside
    the nested one must not be a second value), no deeper than MAX_DEPTH, and encodable (no lone surrogates)."""
    shallow, dotted = _shape(doc, MAX_DEPTH)
    if not shallow:
        return None, f"nested deeper than {MAX_DEPTH}"
    try:
        nested = ecs.nest(doc) if dotted else doc  # a forwarded event was nested at its own tier: mostly no work
    except ecs.FieldNameError as exc:
        return None, f"{exc.kind}: {str(exc)[:200]}"
    try:
        orjson.dumps(nested)
    except TypeError:  # a lone surrogate (not UTF-8: no answer could carry it), or merely a big integer
        try:
            json.dumps(nested, ensure_ascii=False, default=str).encode("utf-8")
        except (ValueError, RecursionError) as exc:
            return None, f"not encodable as UTF-8 JSON: {str(exc)[:120]}"
    return nested, ""


def _alert_shape(alert: dict) -> str:
    """An alert this suite can hold and show: its vocabulary, times that parse and are not ahead of now, and the
    API's own model of an alert (an alert the queue cannot show would break the queue for everyone)."""
    if alert.get("status") not in ALERT_STATUSES:
        return "an unknown status"
    if alert.get("severity") not in SEVERITIES:
        return "an unknown severity"
    latest = datetime.now(timezone.utc) + timedelta(seconds=ecs.FUTURE_TOLERANCE_SECONDS)
    for name in ("first_seen", "last_seen"):
        try:
            if ecs.parse_time(str(alert.get(name))) > latest:
                return f"{name} is ahead of now"
        except (ValueError, TypeError, OverflowError):
            return f"no valid {name}"
    try:
        shown(alert)
    except ValueError as exc:
        return f"not an alert: {str(exc)[:200]}"
    return ""


def held(alert: dict) -> dict:
    """``alert`` if this suite can hold and show it (the checks of ``_alert_shape``), else ValueError: what a merge
    of two tiers' versions must still be, on either side."""
    problem = _alert_shape(alert)
    if problem:
        raise ValueError(problem)
    return alert


def shown(alert: dict) -> dict:
    """``alert`` if the API can show it (soc_api.models.Alert), else ValueError."""
    from soc_api.models import Alert

    try:
        Alert.model_validate(alert)
    except ValidationError as exc:
        raise ValueError(f"{exc.error_count()} problems, first: {exc.errors()[0]['loc']} {exc.errors()[0]['msg']}") \
            from exc
    return alert
