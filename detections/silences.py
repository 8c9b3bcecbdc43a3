"""Silences, the Alertmanager way: label matchers with a start, an end, an author and a comment, kept as data.

A matcher is ``{"name": "source.ip", "op": "=", "value": "203.0.113.7"}`` with op one of ``=``, ``!=``, ``=~``,
``!~``. Regular expressions are anchored (the whole label value must match), and a missing label reads as the empty
string, as in Alertmanager. A silence matches an alert when every one of its matchers does.

Label values come from events (a host name, a user name: whatever a sender wrote), and matchers run under the alert
manager's lock, so a regular expression must cost time linear in the value, whatever the pattern: matchers run on
RE2 (soc/linear_re.py, Python's ``re`` syntax and meaning; Alertmanager's own matchers are RE2 too). What RE2 cannot
run with ``re``'s meaning (backreferences, lookarounds, ``\b``) is refused when the matcher is made, with the reason
(a 422 from the API). Matchers see at most MAX_LABEL_VALUE characters of a label value.

What a silenced detection becomes (the choice this suite makes): the alert is still raised or updated and stored,
with its count and evidence, but its status is ``suppressed`` (with ``suppressed_by`` naming the silences), so it is
never presented as new: not in the "new" queue, not in open-alert counts by severity, not handed to alert hooks
(playbooks). When a later repeat arrives and no silence matches any more, the alert goes back to ``new``.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Iterable

from soc import ecs, linear_re
from soc.storage.base import DocumentQuery, Store

log = logging.getLogger(__name__)

COLLECTION = "silences"
OPS = ("=", "!=", "=~", "!~")
MAX_REGEX_LENGTH = 512
# What matchers see of a label value. Labels are names and addresses (a DNS name ends at 253 characters); the cap
# bounds the cost of every matcher of every silence on every alert, whatever a sender put in a field.
MAX_LABEL_VALUE = 1024


class MatcherError(ValueError):
    pass


@dataclass(frozen=True)
class LabelMatcher:
    name: str
    op: str
    value: str

    @classmethod
    def parse(cls, raw: dict) -> "LabelMatcher":
        try:
            name, op, value = str(raw["name"]), str(raw.get("op", "=")), str(raw["value"])
        except (KeyError, TypeError) as exc:
            raise MatcherError("a matcher needs name, op and value") from exc
        if op not in OPS:
            raise MatcherError(f"matcher op {op!r} is not one of {', '.join(OPS)}")
        if not name:
            raise MatcherError("a matcher needs a label name")
        if op in ("=~", "!~"):
            if len(value) > MAX_REGEX_LENGTH:
                raise MatcherError(f"a matcher regex may be at most {MAX_REGEX_LENGTH} characters")
            try:
                _regex(value)
            except linear_re.error as exc:
                raise MatcherError(f"matcher {name}{op}{value!r}: not a regular expression the suite can run in "
                                   f"linear time (RE2, with Python's re syntax): {exc}") from exc
        return cls(name, op, value)

    def matches(self, labels: dict[str, str]) -> bool:
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        hit = _regex(self.value).fullmatch(actual) is not None
        return hit if self.op == "=~" else not hit

    def as_dict(self) -> dict:
        return {"name": self.name, "op": self.op, "value": self.value}


def _regex(pattern: str) -> linear_re.Pattern:
    return linear_re.compile_runtime(pattern)  # compiled once per pattern (cached there)


def parse_matchers(raw: Iterable[dict]) -> list[LabelMatcher]:
    return [LabelMatcher.parse(m) for m in raw]


_REFUSED_STORED: set[tuple[str, str]] = set()  # (what, id) already logged: documents are read again every few seconds


def stored_matchers(doc: dict, key: str, what: str) -> list[LabelMatcher] | None:
    """The matchers of a stored silence or inhibition rule, or None (logged once) when one of them is refused now (a
    regular expression stored before matchers ran on RE2): such a document matches nothing, and one bad document
    never stops the alert manager."""
    try:
        return parse_matchers(doc.get(key) or [])
    except MatcherError as exc:
        if (what, str(doc.get("id"))) not in _REFUSED_STORED:
            _REFUSED_STORED.add((what, str(doc.get("id"))))
            log.warning("%s %s is ignored: %s", what, doc.get("id"), exc)
        return None


def all_match(matchers: Iterable[LabelMatcher], labels: dict[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)


def match_labels(alert: dict) -> dict[str, str]:
    """The label set silences and inhibition rules see: the alert's labels plus what every alert has."""
    labels = {str(k): _text(v) for k, v in (alert.get("labels") or {}).items()}
    rule = alert.get("rule") or {}
    labels.setdefault("rule.id", _text(rule.get("id")))
    labels["rule.name"] = _text(rule.get("name"))
    labels["rule.type"] = _text(rule.get("type"))
    labels["alertname"] = _text(rule.get("title"))
    labels["severity"] = _text(alert.get("severity"))
    labels.setdefault("organization.id", _text(ecs.get(alert, "organization.id")))
    return labels


def _text(value: Any) -> str:
    """A label value as matchers see it: text, at most MAX_LABEL_VALUE characters."""
    if value is None:
        return ""
    if not isinstance(value, list):
        return str(value)[:MAX_LABEL_VALUE]
    parts, size = [], 0
    for item in value:
        parts.append(str(item))
        size += len(parts[-1]) + 1
        if size > MAX_LABEL_VALUE:
            break
    return ",".join(parts)[:MAX_LABEL_VALUE]


def new_silence(matchers: list[dict], *, starts_at: str | None, ends_at: str, created_by: str, comment: str) -> dict:
    parsed = parse_matchers(matchers)
    if not parsed:
        raise MatcherError("a silence needs at least one matcher")
    start = starts_at or ecs.now_iso()
    try:
        start_t, end_t = ecs.parse_time(start), ecs.parse_time(ends_at)
    except ValueError as exc:
        raise MatcherError(f"starts_at / ends_at must be ISO 8601 times: {exc}") from exc
    if end_t <= start_t:
        raise MatcherError("ends_at must be after starts_at")
    return {
        "id": uuid.uuid4().hex,
        "matchers": [m.as_dict() for m in parsed],
        "starts_at": ecs.utc_iso(start_t),
        "ends_at": ecs.utc_iso(end_t),
        "created_by": created_by,
        "comment": comment,
        "created_at": ecs.now_iso(),
        "expired_at": None,
    }


def silence_state(silence: dict, now: str | None = None) -> str:
    now = now or ecs.now_iso()
    if silence["ends_at"] <= now:
        return "expired"
    if silence["starts_at"] > now:
        return "pending"
    return "active"


class Silences:
    """The active silences, read from the store and cached briefly (the pipeline asks on every alert)."""

    def __init__(self, store: Store, ttl_seconds: float = 2.0):
        self.store = store
        self.ttl = ttl_seconds
        self._cached: list[tuple[dict, list[LabelMatcher]]] = []
        self._loaded_at = 0.0
        self._lock = threading.Lock()

    def invalidate(self) -> None:
        self._loaded_at = 0.0

    def _current(self) -> list[tuple[dict, list[LabelMatcher]]]:
        with self._lock:
            if time.monotonic() - self._loaded_at > self.ttl:
                now = ecs.now_iso()
                docs = self.store.find_documents(COLLECTION, DocumentQuery(ranges={"ends_at": (now, None)},
                                                                           sort="ends_at", limit=10_000))
                self._cached = [(d, matchers) for d in docs
                                if (matchers := stored_matchers(d, "matchers", "silence")) is not None]
                self._loaded_at = time.monotonic()
            return self._cached

    def matching(self, alert: dict, labels: dict[str, str] | None = None) -> list[str]:
        """Ids of the silences active now that match the alert."""
        labels = labels if labels is not None else match_labels(alert)
        now = ecs.now_iso()
        return [doc["id"] for doc, matchers in self._current()
                if doc["starts_at"] <= now < doc["ends_at"] and all_match(matchers, labels)]

    def create(self, silence: dict) -> dict:
        self.store.put_documents(COLLECTION, [silence])
        self.invalidate()
        return silence

    def expire(self, silence: dict, by: str) -> dict:
        now = ecs.now_iso()
        if silence["ends_at"] > now:
            silence["ends_at"] = now
            silence["expired_at"] = now
            silence["expired_by"] = by
            self.store.put_documents(COLLECTION, [silence])
        self.invalidate()
        return silence
