"""The analyst's alert queue and alert page, as data for the console's templates (soc_api/routers/console_alerts.py
serves them). Everything is read and changed through the caller's :class:`soc_api.data.Data`, with the same
methods the API's alert routes use, so tenancy (an agency user sees its own agency only; another agency's alert is
a 404), cursors and the alert's history are exactly the API's.

The queue is fast whatever the store holds: one page of :data:`PAGE_SIZE` alerts per request, never a count of all
alerts, every store query limited:

- newest first with the store's own filters (status, severity, agency, rule, ATT&CK tactic, entity, time): one
  store query, the API's own cursor;
- by severity: one "lane" per severity, worst first, each newest first with the store's severity filter — at most
  five store queries a page, each limited to what the page still needs.

Cursors are the API's (``Data.list_alerts``), wrapped in one signed by the same data layer and bound to the
caller's scope and the queue's filters: (lane, the API's cursor in that lane, the start of the time range as it was
on the first page, so a relative range such as "last 24 hours" does not shift between pages).
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any, Iterable, Mapping

from fastapi import HTTPException

from soc import ecs
from soc.vocabulary import (
    ALERT_STATUSES, ANALYST_STATUSES, CLOSE_REASONS, SEVERITIES, worst_severity,
)
from soc_api.data import AlertFilter, Data, Page

PAGE_SIZE = 50
EVIDENCE_SHOWN = 20
RELATED_SHOWN = 10
RELATED_ENTITIES = 3  # entity values asked about for related alerts (one store query each)
RELATED_DAYS = 3  # related alerts: last seen from this many days before the alert on (a bounded store range)
ENTITIES_SHOWN = 20  # per kind, on the alert page
STREAM_POLL_SECONDS = 2.0
STREAM_BATCH = 50  # new alerts sent at most per poll
CURSOR_KIND = "console-alerts"

# ATT&CK Enterprise tactics (Sigma tags spell them attack.<slug>), in the matrix's order.
TACTICS: tuple[tuple[str, str], ...] = (
    ("reconnaissance", "TA0043"), ("resource-development", "TA0042"), ("initial-access", "TA0001"),
    ("execution", "TA0002"), ("persistence", "TA0003"), ("privilege-escalation", "TA0004"),
    ("defense-evasion", "TA0005"), ("credential-access", "TA0006"), ("discovery", "TA0007"),
    ("lateral-movement", "TA0008"), ("collection", "TA0009"), ("command-and-control", "TA0011"),
    ("exfiltration", "TA0010"), ("impact", "TA0040"),
)
TACTIC_IDS = dict(TACTICS)
RANGES = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}
SORTS = ("newest", "severity")
GROUPINGS = ("rule", "entity")
ENTITY_KINDS = ("ip", "user", "host", "hash")  # the order an alert's "primary" entity is chosen in
MAX_TEXT = {"rule": 200, "entity": 256, "since": 40, "until": 40, "cursor": 2048, "agency": 64}


def tactic_slug(value: Any) -> str:
    return str(value or "").strip().lower().replace("_", "-").replace(" ", "-")


def tactics_of(alert: Mapping) -> list[str]:
    return [tactic_slug(t) for t in ((alert.get("threat") or {}).get("tactic") or [])]


def techniques_of(alert: Mapping) -> list[str]:
    return [str(t).upper() for t in ((alert.get("threat") or {}).get("technique") or [])]


def technique_url(technique: str) -> str:
    """attack.mitre.org's page of a technique (T1110) or sub-technique (T1110.001)."""
    return "https://attack.mitre.org/techniques/" + technique.upper().replace(".", "/") + "/"


def tactic_url(slug: str) -> str | None:
    found = TACTIC_IDS.get(tactic_slug(slug))
    return f"https://attack.mitre.org/tactics/{found}/" if found else None


# --- the queue's query -------------------------------------------------------------------------------------------
@dataclass
class QueueQuery:
    """The queue's filters as the GET form and its links carry them (so a URL is a shareable view)."""

    status: str = ""
    severity: str = ""
    agency: str = ""
    rule: str = ""
    tactic: str = ""
    entity: str = ""
    range: str = ""
    since: str = ""  # as typed (ISO 8601, or a browser's datetime-local in the user's time zone)
    until: str = ""
    sort: str = "newest"
    group: str = ""
    cursor: str = ""
    problems: list[str] = field(default_factory=list)  # message keys of values that were dropped

    FILTERS = ("status", "severity", "agency", "rule", "tactic", "entity", "range", "since", "until")

    @classmethod
    def from_params(cls, params: Mapping[str, str], *, tenant: bool, agencies: Iterable[str]) -> "QueueQuery":
        q = cls()
        for name in ("status", "severity", "agency", "rule", "tactic", "entity", "range", "since", "until", "sort",
                     "group", "cursor"):
            value = (params.get(name) or "").strip()
            if len(value) > MAX_TEXT.get(name, 64):
                q.problems.append("alerts.problem.too_long")
                value = ""
            setattr(q, name, value)
        choices = {"status": ALERT_STATUSES, "severity": SEVERITIES, "tactic": TACTIC_IDS, "range": RANGES,
                   "sort": SORTS, "group": GROUPINGS}
        for name, allowed in choices.items():
            value = getattr(q, name)
            if value and value not in allowed:
                q.problems.append(f"alerts.problem.{name}")
                setattr(q, name, "" if name != "sort" else "newest")
        q.sort = q.sort or "newest"
        if tenant:
            q.agency = ""  # an agency user's queue is its own agency's, whatever the URL says
        elif q.agency and q.agency not in set(agencies):
            q.problems.append("alerts.problem.agency")
            q.agency = ""
        return q

    def absolute_times(self, tz: tzinfo) -> None:
        """``since`` and ``until`` as UTC ISO 8601 (a browser sends them in the user's zone, without one): the view's
        links then mean the same moment to whoever opens them."""
        for name in ("since", "until"):
            value = getattr(self, name)
            if value:
                setattr(self, name, parse_when(value, tz, name, self.problems) or "")

    def params(self, **changes: str) -> dict[str, str]:
        """The non-empty query parameters of this view (without the cursor unless given), ``changes`` applied."""
        values = {name: getattr(self, name) for name in self.FILTERS + ("sort", "group")}
        values.update(changes)
        if values.get("sort") == "newest":
            values.pop("sort")
        return {k: v for k, v in values.items() if v}

    def binding(self) -> dict[str, str]:
        """What a page cursor is bound to: the filters and the sort (grouping only changes how a page is shown)."""
        return {name: getattr(self, name) for name in self.FILTERS + ("sort",)}

    @property
    def filtered(self) -> bool:
        return any(getattr(self, name) for name in self.FILTERS)


def parse_when(value: str, tz: tzinfo, name: str, problems: list[str]) -> str | None:
    """An ISO 8601 time, or a browser's ``datetime-local`` value (no zone: read in the user's time zone)."""
    if not value:
        return None
    try:
        text = value.replace("Z", "+00:00")
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=tz)
        return ecs.utc_iso(moment.astimezone(timezone.utc))
    except ValueError:
        problems.append(f"alerts.problem.{name}")
        return None


def base_filter(q: QueueQuery, tz: tzinfo, now: datetime | None = None) -> AlertFilter:
    """The queue's filters as the API's AlertFilter (the store filters every one of them)."""
    since = parse_when(q.since, tz, "since", q.problems)
    until = parse_when(q.until, tz, "until", q.problems)
    if q.range:
        start = ecs.utc_iso((now or datetime.now(timezone.utc)) - RANGES[q.range])
        since = max(since, start) if since else start
    return AlertFilter(status=q.status or None, severity=q.severity or None, agency=q.agency or None,
                       rule_id=q.rule or None, since=since, until=until, entity=q.entity or None,
                       tactic=q.tactic or None)


# --- one page of the queue ---------------------------------------------------------------------------------------
@dataclass
class QueuePage:
    alerts: list[dict]
    next_cursor: str | None
    newest: str = ""  # the newest last_seen on this page (where the live stream starts)


def api_cursor_after(data: Data, f: AlertFilter, alert: Mapping) -> str:
    """The cursor ``Data.list_alerts`` issues for a listing with filter ``f`` whose last alert is ``alert``: for a
    listing cut in the middle of a batch (tests check it equals the one list_alerts gives)."""
    return data.encode_cursor("alerts", f.__dict__, [alert["last_seen"], alert["id"]])


def queue_page(data: Data, q: QueueQuery, tz: tzinfo, *, limit: int | None = None,
               now: datetime | None = None) -> QueuePage:
    """One page of the queue: at most ``limit`` (PAGE_SIZE) alerts, in the queue's order, through the caller's Data."""
    limit = limit or PAGE_SIZE
    binding = q.binding()
    position = data.decode_cursor(CURSOR_KIND, binding, q.cursor) if q.cursor else None  # 400 if not ours
    base = base_filter(q, tz, now)
    if position:
        base.since = position.get("s")  # the range as it was on the first page
    lanes: list[str | None] = [None]
    if q.sort == "severity" and not q.severity:
        lanes = [s.value for s in reversed(SEVERITIES)]  # worst first, each lane newest first
    lane = int(position["l"]) if position else 0
    inner = position.get("c") if position else None
    out: list[dict] = []
    while lane < len(lanes) and len(out) < limit:
        f = replace(base, severity=lanes[lane]) if lanes[lane] else base
        page: Page = data.list_alerts(f, limit - len(out), inner)
        out.extend(page.items)
        if page.next_cursor:
            inner = page.next_cursor
        else:
            lane, inner = lane + 1, None
    next_cursor = None
    if lane < len(lanes) and len(out) == limit:
        next_cursor = data.encode_cursor(CURSOR_KIND, binding, {"l": lane, "c": inner, "s": base.since})
    newest = max((a.get("last_seen", "") for a in out), default="")
    return QueuePage(out, next_cursor, newest)


def new_since(data: Data, q: QueueQuery, tz: tzinfo, after: str, sent: dict[str, str],
              now: datetime | None = None) -> tuple[list[dict], str, bool]:
    """Alerts of the queue's filters last seen at or after ``after`` that were not sent yet (``sent``: id → the
    last_seen it was sent with; an alert seen again since is sent again), newest first, at most STREAM_BATCH. One
    store query. Returns them, the new ``after`` and whether there may have been more than one batch (an alert
    storm: the page should offer a reload rather than rows); ``sent`` is updated and kept small (only ids at
    ``after``)."""
    f = base_filter(q, tz, now)
    if after and (f.since is None or after > f.since):
        f.since = after
    fresh = []
    found = data.list_alerts(f, STREAM_BATCH, None).items
    for alert in found:
        if sent.get(alert["id"]) == alert.get("last_seen"):
            continue
        fresh.append(alert)
    if fresh:
        after = max(after or "", max(a.get("last_seen", "") for a in fresh))
        for alert in fresh:
            sent[alert["id"]] = alert.get("last_seen", "")
        for alert_id in [i for i, seen in sent.items() if seen < after]:
            del sent[alert_id]  # only ties with ``after`` can come back from the next query
    return fresh, after, len(found) == STREAM_BATCH


# --- grouping ----------------------------------------------------------------------------------------------------
@dataclass
class Group:
    key: str
    label: str
    kind: str  # "rule", or the entity kind (ip, user, host, hash), or "" for alerts without entities
    alerts: list[dict] = field(default_factory=list)

    @property
    def worst(self) -> str:
        return worst_severity(a.get("severity") for a in self.alerts).value


def primary_entity(alert: Mapping) -> tuple[str, str] | None:
    entities = alert.get("entities") or {}
    for kind in ENTITY_KINDS:
        values = entities.get(kind) or []
        if values:
            return kind, str(values[0])
    return None


def group_alerts(alerts: list[dict], by: str) -> list[Group]:
    """The page's alerts under one heading per rule, or per primary entity (an address first, then a user, a host, a
    hash), headings in the order their first alert comes in the page's sort."""
    groups: dict[str, Group] = {}
    for alert in alerts:
        if by == "rule":
            rule = alert.get("rule") or {}
            key, label, kind = f"rule:{rule.get('id')}", rule.get("title") or rule.get("id") or "?", "rule"
        else:
            entity = primary_entity(alert)
            key, label, kind = (f"{entity[0]}:{entity[1]}", entity[1], entity[0]) if entity else ("-", "", "")
        groups.setdefault(key, Group(key, label, kind)).alerts.append(alert)
    return list(groups.values())


# --- the alert page ----------------------------------------------------------------------------------------------
def name_key(name: str) -> str:
    """A sort key that puts Vietnamese names in dictionary order (Đ with D, accents after the plain letter)."""
    plain = unicodedata.normalize("NFD", name.replace("Đ", "D").replace("đ", "d"))
    return "".join(c for c in plain if not unicodedata.combining(c)).lower() + "\0" + name


def agency_name(inventory, agency_id: str | None, lang: str) -> str:
    agency = inventory.agencies.get(agency_id) if agency_id else None
    if agency is None:
        return agency_id or ""
    return agency.name_vi if lang == "vi" else agency.name_en


def entity_context(data: Data, alert: Mapping, lang: str) -> list[dict]:
    """Each entity of the alert (addresses, users, hosts, hashes; at most ENTITIES_SHOWN of a kind) with what the
    inventory says of it: its agency, asset (name, kind, criticality) and network zone. An agency user is told
    nothing of another agency's assets or networks (the inventory API does not show them either)."""
    inventory = data.suite.inventory
    principal = data.principal
    out = []
    for kind in ENTITY_KINDS:
        values = ((alert.get("entities") or {}).get(kind) or [])
        for value in values[:ENTITIES_SHOWN]:
            value = str(value)
            item: dict[str, Any] = {"kind": kind, "value": value, "asset": None, "agency": None, "zone": None,
                                    "hidden": False, "more": 0}
            asset = owner = None
            if kind == "ip":
                asset = inventory.asset_by_ip(value)
                owner = inventory.network_of(value)
                if owner is not None and owner.zone not in ("internal", "management"):
                    item["zone"] = owner.zone
                else:
                    item["zone"] = "government" if inventory.is_government(value) else "outside"
            elif kind == "host":
                asset = inventory.asset_by_name(value)
            agency = asset.agency if asset is not None else (owner.agency.id if owner is not None else None)
            if principal.is_tenant and agency is not None and not principal.may_see(agency):
                item.update(hidden=True, zone=None)
            else:
                item["agency"] = agency
                item["agency_name"] = agency_name(inventory, agency, lang) if agency else ""
                if asset is not None:
                    item["asset"] = {"id": asset.id, "hostname": asset.hostname, "kind": asset.kind.value,
                                     "criticality": asset.criticality.value, "role": asset.role, "os": asset.os}
            out.append(item)
        if len(values) > ENTITIES_SHOWN:
            out[-1]["more"] = len(values) - ENTITIES_SHOWN
    return out


def event_line(event: Mapping) -> str:
    for name in ("event.original", "message", "event.action"):
        value = ecs.get(event, name)
        if isinstance(value, str) and value:
            return value if len(value) <= 300 else value[:300] + "…"
    return ""


def event_json(event: Mapping) -> str:
    """The stored document, pretty-printed (the template escapes it)."""
    return json.dumps(event, indent=2, ensure_ascii=False, sort_keys=True, default=str)


def evidence(data: Data, alert: Mapping) -> tuple[list[dict], int]:
    """The first EVIDENCE_SHOWN evidence events (through Data.evidence: the alert's agency's only), oldest first,
    and how many the alert has in all."""
    ids = list(alert.get("evidence") or [])
    events = data.evidence({**alert, "evidence": ids[:EVIDENCE_SHOWN]})
    order = {event_id: i for i, event_id in enumerate(ids)}
    events.sort(key=lambda e: (ecs.get(e, "@timestamp") or "", order.get(ecs.get(e, "event.id"), 0)))
    return ([{"id": ecs.get(e, "event.id"), "at": ecs.get(e, "@timestamp"), "line": event_line(e),
              "host": ecs.get(e, "host.name"), "source": ecs.get(e, "source.ip"), "user": ecs.get(e, "user.name"),
              "action": ecs.get(e, "event.action"), "outcome": ecs.get(e, "event.outcome"),
              "json": event_json(e)} for e in events], len(ids))


def related_since(alert: Mapping) -> str | None:
    """Related alerts are those last seen from RELATED_DAYS before this alert on. A lower bound only: with an upper
    one too, SQLite's planner reads the whole range instead of walking its index newest first to the limit."""
    try:
        moment = ecs.parse_time(str(alert.get("last_seen") or ""))
    except ValueError:
        return None
    return ecs.utc_iso(moment - timedelta(days=RELATED_DAYS))


def related_alerts(data: Data, alert: Mapping) -> list[dict]:
    """Alerts of the same rule or about the same entity (the first RELATED_ENTITIES entity values) last seen from
    RELATED_DAYS before this one on, newest first, through the caller's scope; at most RELATED_SHOWN, each with why
    it is related. 1 + RELATED_ENTITIES store queries, each limited in count and in time (a store that cannot index
    entities, SQLite, reads no further back than that)."""
    found: dict[str, dict] = {}
    why: dict[str, list[str]] = {}
    rule_id = (alert.get("rule") or {}).get("id")
    since = related_since(alert)
    asks: list[tuple[AlertFilter, str]] = []
    if rule_id:
        asks.append((AlertFilter(rule_id=rule_id, since=since), "rule"))
    values = [v for kind in ENTITY_KINDS for v in ((alert.get("entities") or {}).get(kind) or [])]
    for value in list(dict.fromkeys(str(v) for v in values))[:RELATED_ENTITIES]:
        asks.append((AlertFilter(entity=value, since=since), value))
    for f, reason in asks:
        for other in data.list_alerts(f, RELATED_SHOWN + 1, None).items:
            if other["id"] == alert["id"]:
                continue
            found.setdefault(other["id"], other)
            why.setdefault(other["id"], []).append(reason)
    ordered = sorted(found.values(), key=lambda a: (a.get("last_seen", ""), a["id"]), reverse=True)[:RELATED_SHOWN]
    return [{"alert": a, "why": why[a["id"]]} for a in ordered]


def history(alert: Mapping) -> list[dict]:
    """The alert's history, oldest first, each entry with the note's text where it added one."""
    notes = {n.get("id"): n.get("text", "") for n in alert.get("notes") or []}
    out = []
    for entry in alert.get("history") or []:
        item = dict(entry)
        if entry.get("action") == "note":
            item["text"] = notes.get(entry.get("note"), "")
        out.append(item)
    return out


def allowed_statuses(alert: Mapping) -> list[str]:
    """The statuses an analyst may move this alert to (detections/lifecycle.py TRANSITIONS)."""
    from detections.lifecycle import TRANSITIONS

    current = alert.get("status")
    return [s.value for s in ANALYST_STATUSES if s in TRANSITIONS.get(current, set()) and s != current]


def alert_view(data: Data, alert_id: str, lang: str) -> dict:
    """Everything the alert page shows. 404 (HTTPException) for a missing alert or another agency's."""
    alert = data.get_alert(alert_id)
    events, evidence_total = evidence(data, alert)
    return {
        "alert": alert,
        "agency_name": agency_name(data.suite.inventory, ecs.get(alert, "organization.id"), lang),
        "tactics": [{"slug": t, "id": TACTIC_IDS.get(t), "url": tactic_url(t)} for t in tactics_of(alert)],
        "techniques": [{"id": t, "url": technique_url(t)} for t in techniques_of(alert)],
        "entities": entity_context(data, alert, lang),
        "events": events,
        "evidence_total": evidence_total,
        "related": related_alerts(data, alert),
        "related_days": RELATED_DAYS,
        "history": history(alert),
        "statuses": allowed_statuses(alert),
        "close_reasons": [r.value for r in CLOSE_REASONS],
    }


def triage_users(data: Data, limit: int = 200) -> list[dict]:
    """Users an alert may be assigned to (those who triage), for the assign form's suggestions."""
    try:
        users = data.users(limit)
    except HTTPException:
        return []
    return [u for u in users if u.get("role") in ("admin", "analyst", "network_admin") and not u.get("disabled")]


_RULE_CHOICES: dict[str, Any] = {"of": None, "choices": []}


def rule_choices(suite, limit: int = 300) -> list[tuple[str, str]]:
    """(id, title) of the rules in use, by title (at most ``limit``): suggestions for the rule filter. Worked out once
    per rule set (a reload or a new rule pack makes a new one)."""
    current = suite.ruleset.current
    if _RULE_CHOICES["of"] is not current:
        seen: dict[str, str] = {}
        for rule in list(current.rules) + list(current.correlations):
            meta = getattr(rule, "meta", None)
            if meta is not None and meta.id not in seen:
                seen[meta.id] = meta.title
        _RULE_CHOICES.update(of=current, choices=sorted(seen.items(), key=lambda item: item[1].lower()))
    return _RULE_CHOICES["choices"][:limit]

