"""Confidence decay of feed indicators, and whether an indicator still matches.

An indicator a feed delivered carries ``feed.last_seen`` (when that feed last contained it) and the feed's decay
settings ``feed.decay`` (``model``, ``lifetime_seconds``, ``half_life_seconds``, ``floor``). With ``c0`` the
confidence the feed gave and ``t`` the seconds since ``last_seen``:

* ``linear``:      c(t) = c0 * max(0, 1 - t / lifetime_seconds)   (zero when the lifetime has passed)
* ``exponential``: c(t) = c0 * 2 ** (-t / half_life_seconds)       (half of it every half-life)
* ``none``:        c(t) = c0

An indicator matches while it is live (not revoked, started, not past ``valid_until``), not marked expired, and its
decayed confidence is at least ``floor``. Indicators of no feed (added by hand, the API, a playbook) never decay.
"""

from __future__ import annotations

from datetime import datetime

from detections.indicators.model import is_live
from soc import ecs

MODELS = ("none", "linear", "exponential")


def _seconds_since(value: str | None, now: datetime) -> float:
    if not value:
        return 0.0
    try:
        return max(0.0, (now - ecs.parse_time(value)).total_seconds())
    except ValueError:
        return 0.0


def effective_confidence(doc: dict, now: datetime | None = None) -> float:
    """The indicator's confidence after decay (``confidence`` itself when it comes from no feed or does not decay)."""
    c0 = float(doc.get("confidence", 50))
    feed = doc.get("feed")
    if not isinstance(feed, dict):
        return c0
    decay = feed.get("decay") or {}
    model = decay.get("model", "none")
    t = _seconds_since(feed.get("last_seen"), now or ecs.parse_time(ecs.now_iso()))
    if model == "linear":
        lifetime = float(decay.get("lifetime_seconds") or 0)
        return c0 * max(0.0, 1.0 - t / lifetime) if lifetime > 0 else c0
    if model == "exponential":
        half_life = float(decay.get("half_life_seconds") or 0)
        return c0 * 2.0 ** (-t / half_life) if half_life > 0 else c0
    return c0


def floor_of(doc: dict) -> float:
    feed = doc.get("feed")
    if not isinstance(feed, dict):
        return 0.0
    return float((feed.get("decay") or {}).get("floor") or 0)


def why_not_matching(doc: dict, now_iso: str | None = None) -> str | None:
    """None while the indicator matches; else ``revoked``, ``not_yet_valid``, ``expired`` or ``decayed``."""
    now_iso = now_iso or ecs.now_iso()
    if doc.get("revoked"):
        return "revoked"
    if doc.get("expired"):
        return "expired"
    if not is_live(doc, now_iso):
        return "not_yet_valid" if doc.get("valid_from") and doc["valid_from"] > now_iso else "expired"
    floor = floor_of(doc)
    if floor and effective_confidence(doc, ecs.parse_time(now_iso)) < floor:
        return "decayed"
    return None


def matching(doc: dict, now_iso: str | None = None) -> bool:
    return why_not_matching(doc, now_iso) is None
