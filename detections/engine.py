"""Streaming detection: every stored event is tested against the Sigma rules that apply to its log source, and rule
matches feed the Sigma correlations (event_count, value_count, temporal, temporal_ordered) in event time.

Correlations group by the agency first and then by the rule's ``group-by`` fields: the SOC serves many agencies,
and an alert must belong to exactly one of them (tenancy), so a brute force is counted per agency.

A running suite changes its rules without a restart (a rule pack installed or rolled back): ``use_rules`` swaps in a
new rule set between two batches, and the correlations that still exist, defined the same, keep their windows. Rule
exceptions (detections/exceptions.py) turn away matches of known-benign events before they alert or count towards a
correlation; ``use_exceptions`` swaps them.
"""

from __future__ import annotations

import operator
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any, Protocol

from detections.exceptions import NO_EXCEPTIONS, RuleExceptions
from detections.sigma.loader import CompiledCorrelation, CompiledRule, RuleMeta, RuleSet
from detections.sigma.compiler import AUTOMATON_MAX_VALUE, event_text, ir_fields
from detections.sigma.logsource import applies, descriptors_for, ecs_routing_key, view_of
from soc import codec, ecs

_OPS = {"gte": operator.ge, "gt": operator.gt, "lte": operator.le, "lt": operator.lt, "eq": operator.eq,
        "neq": operator.ne}
MAX_EVIDENCE_KEPT = 1000  # per correlation group: hits remembered in a window
MAX_PENDING = 200  # per correlation group: events kept as evidence for the next firing (an alert keeps at most 200)
# Over all groups: hits still holding their events as evidence. Beyond it the oldest give them up (down to half,
# so the bookkeeping stays O(1) a hit); their counts and times stay, so correlations still fire and count right. A
# flood that matches rules without firing them would otherwise hold MAX_PENDING events in each of MAX_GROUPS groups.
MAX_EVIDENCE_TOTAL = 10_000
# Groups whose window has passed are swept every SWEEP_EVERY hits; beyond MAX_GROUPS live groups the least recently
# hit are dropped (a scan from thousands of addresses must not grow the collector's memory without bound).
SWEEP_EVERY = 5000
MAX_GROUPS = 20_000


@dataclass
class Detection:
    meta: RuleMeta
    kind: str  # "rule" for a single-event match, else the correlation type
    agency: str | None
    labels: dict[str, Any]  # the group-by values of a correlation
    events: list[dict]  # the evidence this detection adds (nested ECS documents)
    count: int  # how many events it adds to its alert
    first_seen: str
    last_seen: str
    # How many of the events it stands for came from senders the suite cannot vouch for (soc.sender.trusted is not
    # true: an unknown sender, one of another agency, a UDP datagram). Counted through the evidence budget, so a
    # correlation that dropped events still knows. -1: count it from ``events``.
    untrusted: int = -1

    def __post_init__(self) -> None:
        if self.untrusted < 0:
            self.untrusted = untrusted_count(self.events)


def untrusted_count(events: list[dict]) -> int:
    """Events that may not serve as evidence for automatic containment (see inventory/enrich.py)."""
    return sum(1 for doc in events if ecs.get(doc, "soc.sender.trusted") is not True)


@dataclass
class _Hit:
    rule_id: str
    ts: float
    events: list  # the evidence, each event serialised (a third of the memory of the nested dict) until reported
    value: Any = None  # value_count: the field's value
    count: int = 0  # the events it stands for (kept when the events themselves are not)
    first: str = ""  # the earliest and latest @timestamp of those events (kept when the events are not)
    last: str = ""
    untrusted: int = 0  # how many of those events came from senders not trusted (kept when the events are not)

    def __post_init__(self) -> None:
        self.count = self.count or len(self.events) or 1

    def unpack(self) -> list[dict]:
        return [codec.loads(e) for e in self.events]


@dataclass
class _Group:
    """One correlation group's window, with running figures so each new hit costs O(1), not a walk of the window."""

    hits: deque = field(default_factory=deque)
    total: int = 0  # events in the window (event_count)
    values: dict = field(default_factory=dict)  # value -> hits in the window (value_count)
    pending: deque = field(default_factory=deque)  # hits whose events no detection has reported yet

    def add(self, hit: "_Hit", keep_events: bool = True) -> None:
        """``keep_events``: a sequence (temporal) reports the events of its whole window, so they stay on the
        window's hits; a counting correlation reports only what is pending since it last fired, and its window
        keeps times, counts and values (holding every event of it would make memory grow with the traffic)."""
        if not keep_events:
            self.pending.append(hit)
            hit = _Hit(hit.rule_id, hit.ts, [], hit.value, hit.count, hit.first, hit.last, hit.untrusted)
        self.hits.append(hit)
        self.total += hit.count
        if hit.value is not None:
            self.values[hit.value] = self.values.get(hit.value, 0) + 1

    def expire(self, horizon: float) -> None:
        while self.hits and (self.hits[0].ts < horizon or len(self.hits) > MAX_EVIDENCE_KEPT):
            old = self.hits.popleft()
            old.events = []
            self.total -= old.count
            if old.value is not None:
                left = self.values[old.value] - 1
                if left:
                    self.values[old.value] = left
                else:
                    del self.values[old.value]
        while self.pending and (self.pending[0].ts < horizon or len(self.pending) > MAX_PENDING):
            self.pending.popleft().events = []

    def take_pending(self) -> tuple[list[_Hit], list[dict]]:
        """The hits not reported yet, and their evidence (fewer events than they stand for when the evidence budget
        took some)."""
        hits = list(self.pending)
        events = [e for hit in hits for e in hit.unpack()]
        for hit in hits:
            hit.events = []
        self.pending.clear()
        return hits, events

    def take_window(self) -> tuple[list[_Hit], list[dict]]:
        """A completed sequence: every hit of the window and its evidence; the window starts again empty."""
        hits = list(self.hits)
        events = [e for hit in hits for e in hit.unpack()]
        self.clear()
        return hits, events

    def clear(self) -> None:
        for hit in self.hits:
            hit.events = []
        for hit in self.pending:
            hit.events = []
        self.hits.clear()
        self.pending.clear()
        self.values.clear()
        self.total = 0


def _definition(corr: CompiledCorrelation) -> tuple:
    """What decides a correlation's windows: two with the same may share them."""
    return (corr.type, tuple(corr.rules), tuple(corr.group_by), corr.timespan, corr.op, corr.count, corr.fieldref,
            tuple(sorted((alias, tuple(sorted(m.items()))) for alias, m in corr.aliases.items())))


def _epoch(doc: dict) -> float:
    return ecs.parse_time(doc["@timestamp"]).timestamp()


class CorrelationEngine:
    def __init__(self, correlations: list[CompiledCorrelation], evidence_limit: int = MAX_EVIDENCE_TOTAL):
        self.correlations = correlations
        self.by_source: dict[str, list[CompiledCorrelation]] = defaultdict(list)
        for corr in correlations:
            for ref in corr.rules:
                self.by_source[ref].append(corr)
        self.state: dict[tuple, _Group] = {}
        self.timespans = {corr.meta.id: corr.timespan for corr in correlations}
        self.latest = 0.0  # the newest event time seen: windows end relative to it
        self._fed = 0
        self._evidence: deque[_Hit] = deque()  # hits holding events, oldest first (at most evidence_limit)
        self.evidence_limit = evidence_limit

    def carry_over(self, previous: "CorrelationEngine") -> int:
        """Take the windows of ``previous`` (the engine of the rule set being replaced) for every correlation that
        this one has with the same definition; the others' windows are dropped. The number of groups kept."""
        same = {corr.meta.id for corr in self.correlations
                if _definition(corr) == previous.definitions.get(corr.meta.id)}
        for key, group in previous.state.items():
            if key[0] in same:
                self.state[key] = group
            else:
                group.clear()  # gives up its evidence, which the evidence budget stops counting
        self.latest = max(self.latest, previous.latest)
        self._fed = previous._fed
        self._evidence = deque(hit for hit in previous._evidence if hit.events)
        return len(self.state)

    @property
    def definitions(self) -> dict[str, tuple]:
        return {corr.meta.id: _definition(corr) for corr in self.correlations}

    def sweep(self) -> int:
        """Drop the groups whose newest hit is outside their window, then the oldest beyond MAX_GROUPS."""
        before = len(self.state)
        for key, group in list(self.state.items()):
            if not group.hits or group.hits[-1].ts < self.latest - self.timespans.get(key[0], 0):
                del self.state[key]
        if len(self.state) > MAX_GROUPS:
            by_age = sorted(self.state.items(), key=lambda item: item[1].hits[-1].ts)
            for key, _ in by_age[: len(self.state) - MAX_GROUPS]:
                del self.state[key]
        return before - len(self.state)

    def _group_values(self, corr: CompiledCorrelation, rule_id: str, flat: dict[str, Any]) -> tuple | None:
        values = []
        for name in corr.group_by:
            source_field = corr.aliases.get(name, {}).get(rule_id, name)
            value = flat.get(source_field)
            if isinstance(value, list):
                value = value[0] if value else None
            if value is None:
                return None
            values.append(value)
        return tuple(values)

    def feed(self, rule_id: str, agency: str | None, flat: dict[str, Any], ts: float,
             events: list[dict], count: int = 0, untrusted: int = -1) -> list[Detection]:
        """``count``: the events the match stands for, when more than ``events`` (a chained correlation's);
        ``untrusted`` likewise for how many of them came from untrusted senders (-1: count ``events``)."""
        if untrusted < 0:
            untrusted = untrusted_count(events)
        out: list[Detection] = []
        correlations = self.by_source.get(rule_id, ())
        if correlations:
            self.latest = max(self.latest, ts)
            self._fed += 1
            if self._fed % SWEEP_EVERY == 0:
                self.sweep()
        for corr in correlations:
            group_values = self._group_values(corr, rule_id, flat)
            if group_values is None:
                continue
            value = None
            if corr.type == "value_count" and corr.fieldref:
                value = flat.get(corr.aliases.get(corr.fieldref, {}).get(rule_id, corr.fieldref))
                if isinstance(value, list):
                    value = tuple(value)
                if value is None:
                    continue
            key = (corr.meta.id, agency, group_values)
            group = self.state.get(key)
            if group is None:
                group = self.state[key] = _Group()
            stamps = [e["@timestamp"] for e in events]
            hit = _Hit(rule_id, ts, [codec.dumps_bytes(e) for e in events], value, count,
                       min(stamps, default=""), max(stamps, default=""), untrusted)
            group.add(hit, keep_events=corr.type in ("temporal", "temporal_ordered"))
            self._keep_evidence(hit)
            group.expire(max(ts, group.hits[-1].ts) - corr.timespan)
            detection = self._check(corr, group, agency, dict(zip(corr.group_by, group_values)))
            if detection is None:
                continue
            out.append(detection)
            # A firing correlation is itself a "match" for correlations that reference it (chaining).
            chained_flat = dict(flat)
            chained_flat.update(detection.labels)
            out.extend(self.feed(corr.meta.id, agency, chained_flat, ts, detection.events, detection.count,
                                 detection.untrusted))
        return out

    def _keep_evidence(self, hit: _Hit) -> None:
        self._evidence.append(hit)
        if len(self._evidence) <= self.evidence_limit:
            return
        # Hits reported, expired or swept have given up their events already: only the others count.
        live = deque(h for h in self._evidence if h.events)
        while len(live) > self.evidence_limit // 2:
            live.popleft().events = []
        self._evidence = live

    def _check(self, corr: CompiledCorrelation, group: _Group, agency: str | None,
               labels: dict[str, Any]) -> Detection | None:
        if corr.type == "event_count":
            fired = _OPS[corr.op](group.total, corr.count)
        elif corr.type == "value_count":
            fired = _OPS[corr.op](len(group.values), corr.count)
        elif corr.type == "temporal":
            seen = {h.rule_id for h in group.hits}
            fired = _OPS[corr.op](len(seen), len(corr.rules)) if corr.op in ("gte", "eq") else set(corr.rules) <= seen
        else:  # temporal_ordered: the referenced rules hit in this order within the window
            fired = False
            hits = group.hits
            if hits and hits[-1].rule_id == corr.rules[-1]:
                position = 0
                for hit in hits:
                    if hit.rule_id == corr.rules[position]:
                        position += 1
                        if position == len(corr.rules):
                            fired = True
                            break
        if not fired:
            return None
        # Every hit that made it fire counts for trust: the window's (counting) as well as those reported now.
        window_untrusted = sum(h.untrusted for h in group.hits)
        if corr.type in ("temporal", "temporal_ordered"):
            # A sequence reports every event that made it, then fires again only when complete again.
            hits, new_events = group.take_window()
        else:
            hits, new_events = group.take_pending()
        if not new_events:
            return None
        times = [h.first for h in hits if h.first] + [h.last for h in hits if h.last]
        times = times or [e["@timestamp"] for e in new_events]
        return Detection(meta=corr.meta, kind=corr.type, agency=agency, labels=labels, events=new_events,
                         count=max(sum(h.count for h in hits), len(new_events)), first_seen=min(times),
                         last_seen=max(times), untrusted=max(window_untrusted, sum(h.untrusted for h in hits)))


class Matcher(Protocol):
    """Anything else that finds detections in stored events (indicator matching, YARA on payloads...)."""

    def evaluate(self, events: list[dict]) -> list[Detection]: ...


@dataclass
class _Route:
    """The rules that apply to one routing key, with the prefilter over their literals."""

    rules: list[CompiledRule]
    always: list[int]  # rules with no literal requirement: evaluated for every event of this route
    automaton: Any = None  # Aho-Corasick over the literals; each literal maps to the rules needing it
    fields: tuple[str, ...] = ()  # the fields whose text the prefilter searches (those the literals come from)


def _build_route(rules: list[CompiledRule]) -> _Route:
    import ahocorasick

    always, by_literal, fields = [], defaultdict(list), set()
    for index, rule in enumerate(rules):
        if rule.requirement is None:
            always.append(index)
        else:
            fields |= ir_fields(rule.ir)
            for literal in rule.requirement:
                # A literal's first AUTOMATON_MAX_VALUE characters occur wherever it does: the prefilter stays a
                # necessary condition, and the automaton's time stays linear in the event (compiler.py says why).
                by_literal[literal[:AUTOMATON_MAX_VALUE]].append(index)
    automaton = None
    if by_literal:
        automaton = ahocorasick.Automaton()
        for literal, indices in by_literal.items():
            automaton.add_word(literal, tuple(indices))
        automaton.make_automaton()
    return _Route(rules=rules, always=always, automaton=automaton, fields=tuple(sorted(fields)))


class _Plan:
    """Everything the engine derives from one rule set: routes (built on first use), log-source groups, the
    streaming correlations and which of them alert. Replaced whole when the rules change."""

    def __init__(self, ruleset: RuleSet, prefilter: bool):
        self.ruleset = ruleset
        self.prefilter = prefilter
        self.routes: dict[tuple, _Route] = {}
        # Rules grouped by their logsource: a route checks each distinct logsource once, not each rule.
        self.by_logsource: dict[tuple, list[CompiledRule]] = defaultdict(list)
        for rule in ruleset.rules:
            ls = rule.logsource
            self.by_logsource[(ls.get("category"), ls.get("product"), ls.get("service"))].append(rule)
        streaming = []
        for corr in ruleset.correlations:
            if corr.op in ("lt", "lte") and corr.type in ("event_count", "value_count"):
                # "fewer than N in a window" is only known when the window closes: scheduled evaluation's job.
                warning = "lt/lte correlations run only in scheduled evaluation"
                for h in ruleset.health:
                    if h.id == corr.meta.id and warning not in h.warnings:
                        h.warnings.append(warning)
                continue
            streaming.append(corr)
        self.correlations = CorrelationEngine(streaming)
        # Correlations referenced only by other correlations do not alert on their own unless "generate" says so.
        self.generate = {c.meta.id: c.generate for c in ruleset.correlations}

    def route(self, key: tuple) -> _Route:
        route = self.routes.get(key)
        if route is None:
            descriptors = descriptors_for(key)
            rules = [rule for (category, product, service), group in self.by_logsource.items()
                     if applies({"category": category, "product": product, "service": service}, descriptors)
                     for rule in group]
            if self.prefilter:
                route = _build_route(rules)
            else:
                route = _Route(rules=rules, always=list(range(len(rules))))
            self.routes[key] = route
        return route


class DetectionEngine:
    def __init__(self, ruleset: RuleSet, matchers: list[Matcher] | None = None, prefilter: bool = True,
                 exceptions: RuleExceptions | None = None):
        """``exceptions``: rule exceptions (detections/exceptions.py ``load_exceptions``) applied to every match."""
        self.matchers: list[Matcher] = list(matchers or [])
        self.prefilter = prefilter
        self.evaluated = 0  # predicate evaluations, to see what the prefilter saves
        self.suppressed = 0  # matches rule exceptions turned away
        self._plan = _Plan(ruleset, prefilter)
        self._exceptions = exceptions or NO_EXCEPTIONS
        # Held for a batch by evaluate() and for the moment of a swap by use_rules(): a batch runs on one rule set.
        self._swap = threading.Lock()

    @property
    def ruleset(self) -> RuleSet:
        """The rule set in use now."""
        return self._plan.ruleset

    @property
    def exceptions(self) -> RuleExceptions:
        return self._exceptions

    @property
    def idle(self) -> bool:
        """No rule to run: events need not even be looked at."""
        return not self._plan.by_logsource

    def use_rules(self, ruleset: RuleSet) -> int:
        """Run ``ruleset`` from the next batch on. Correlations that still exist with the same definition keep
        their windows (a brute force half counted is not forgotten); the number of correlation groups kept."""
        plan = _Plan(ruleset, self.prefilter)  # built before the lock: a batch in progress is not held up
        with self._swap:
            kept = plan.correlations.carry_over(self._plan.correlations)
            self._plan = plan
        return kept

    def use_exceptions(self, exceptions: RuleExceptions | None) -> None:
        """Apply ``exceptions`` from the next match on (one reference replaced: no lock needed)."""
        self._exceptions = exceptions or NO_EXCEPTIONS

    def match(self, view: dict[str, Any], key: tuple, agency: str | None = None) -> list[CompiledRule]:
        """The rules matching one event, given the fields the rules see and its routing key, less those a rule
        exception turns away. ``agency``: the event's, for exceptions limited to agencies (default: the view's
        ``organization.id``, which a flattened ECS event has)."""
        return self._match(self._plan, view, key, agency)

    def _match(self, plan: _Plan, view: dict[str, Any], key: tuple, agency: str | None) -> list[CompiledRule]:
        route = plan.route(key)
        if not route.rules:
            return []
        candidates = route.always
        if route.automaton is not None:
            found: set[int] = set(route.always)
            for _, indices in route.automaton.iter(event_text(view, route.fields)):
                found.update(indices)
            candidates = sorted(found)
        self.evaluated += len(candidates)
        rules = route.rules
        matched = [rules[i] for i in candidates if rules[i].predicate(view)]
        exceptions = self._exceptions
        if matched and exceptions:
            if agency is None:
                agency = view.get("organization.id")
            kept = [rule for rule in matched
                    if exceptions.covering(rule.meta.id, rule.meta.name, view, agency) is None]
            self.suppressed += len(matched) - len(kept)
            matched = kept
        return matched

    def evaluate(self, events: list[dict]) -> list[Detection]:
        with self._swap:
            detections = self._evaluate(self._plan, events)
        for matcher in self.matchers:
            detections.extend(matcher.evaluate(events))
        return detections

    def _evaluate(self, plan: _Plan, events: list[dict]) -> list[Detection]:
        detections: list[Detection] = []
        correlations = plan.correlations
        now = None  # the clock, read once per batch (when a correlation needs it)
        for doc in events:
            if "winlog" in doc:
                view, key = view_of(doc)
            else:
                # The routing key needs two fields: an event no rule is routed to is not flattened at all.
                key = ecs_routing_key(doc)
                if not plan.route(key).rules:
                    continue
                view = ecs.flatten(doc)
            agency = ecs.get(doc, "organization.id")
            ts = untrusted = None
            for rule in self._match(plan, view, key, agency):
                if untrusted is None:
                    untrusted = untrusted_count([doc])  # once per event, for every rule that matches it
                if rule.generate:
                    detections.append(Detection(meta=rule.meta, kind="rule", agency=agency, labels={},
                                                events=[doc], count=1, first_seen=doc["@timestamp"],
                                                last_seen=doc["@timestamp"], untrusted=untrusted))
                if rule.meta.id in correlations.by_source:
                    # Never ahead of now (plus a clock's error): a future time would end every window early.
                    if ts is None:
                        now = time.time() if now is None else now
                        ts = min(_epoch(doc), now + ecs.FUTURE_TOLERANCE_SECONDS)
                    detections.extend(correlations.feed(rule.meta.id, agency, view, ts, [doc], 0, untrusted))
        generate = plan.generate
        detections = [d for d in detections if d.kind == "rule" or generate.get(d.meta.id, True)]
        exceptions = self._exceptions
        if exceptions:  # a correlation's exception is checked against its group-by values and its agency
            kept = [d for d in detections if d.kind == "rule"
                    or exceptions.covering(d.meta.id, d.meta.name, d.labels, d.agency) is None]
            self.suppressed += len(detections) - len(kept)
            detections = kept
        return detections
