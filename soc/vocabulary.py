"""The suite's shared words for alerts, defined once: how bad an alert is (severity, with its order) and where it stands
(status: which statuses are open, which an analyst may set, why an alert was closed).

Detections, playbooks, reports and the API take these from here and spell none of them out. They are ``StrEnum``s
whose member names are their values: a member is the plain string stored in documents and shown in the API
(``Severity.high == "high"``, and the same dictionary key), so documents, queries and JSON need no conversion, and a
pydantic field typed with one accepts and shows the same strings (the OpenAPI document names the enum).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Iterable


class Severity(StrEnum):
    """How bad an alert is: Sigma's levels, least to worst (the members' order is the severity order)."""

    informational = "informational"
    low = "low"
    medium = "medium"
    high = "high"
    critical = "critical"


SEVERITIES: tuple[Severity, ...] = tuple(Severity)  # least to worst
DEFAULT_SEVERITY = Severity.medium  # what a rule without a (known) level, or an alert without a severity, counts as
# Syslog's own severity names (RFC 5424, by code 0..7): a different scale, for log lines, not alerts.
SYSLOG_SEVERITIES = ("emergency", "alert", "critical", "error", "warning", "notice", "informational", "debug")


def severity_rank(value: Any) -> int:
    """0 (informational) to 4 (critical); anything else ranks as :data:`DEFAULT_SEVERITY`."""
    return SEVERITIES.index(value) if value in SEVERITIES else SEVERITIES.index(DEFAULT_SEVERITY)


def known_severity(value: Any) -> Severity:
    """``value`` as a severity, or :data:`DEFAULT_SEVERITY` when it is none of them."""
    return Severity(value) if value in SEVERITIES else DEFAULT_SEVERITY


def severity_at_least(value: Any, minimum: str) -> bool:
    """Whether ``value`` is ``minimum`` or worse; an unknown severity is not."""
    return value in SEVERITIES and SEVERITIES.index(value) >= SEVERITIES.index(minimum)


def worst_severity(values: Iterable[Any]) -> Severity:
    """The worst of ``values`` (unknown ones count as the default); the default when there are none."""
    return SEVERITIES[max((severity_rank(v) for v in values), default=severity_rank(DEFAULT_SEVERITY))]


class AlertStatus(StrEnum):
    """Where an alert stands: "new" and "suppressed" are the pipeline's to set, the others an analyst's."""

    new = "new"  # raised, nobody has taken it up
    suppressed = "suppressed"  # raised while a silence or an inhibition mutes it: recorded, never presented as new
    acknowledged = "acknowledged"
    in_progress = "in_progress"
    closed = "closed"


ALERT_STATUSES: tuple[AlertStatus, ...] = tuple(AlertStatus)
# Open: not closed. A repeat of an open alert updates it instead of raising a new one; posture counts them.
OPEN_STATUSES: tuple[AlertStatus, ...] = (AlertStatus.new, AlertStatus.suppressed, AlertStatus.acknowledged,
                                          AlertStatus.in_progress)
# Open and not muted: what is presented, and what may inhibit other alerts.
PRESENTED_OPEN_STATUSES: tuple[AlertStatus, ...] = tuple(s for s in OPEN_STATUSES if s != AlertStatus.suppressed)
# What an analyst may set (each counts as taking the alert up).
ANALYST_STATUSES: tuple[AlertStatus, ...] = (AlertStatus.acknowledged, AlertStatus.in_progress, AlertStatus.closed)


class CloseReason(StrEnum):
    """Why an alert was closed (closing needs one)."""

    false_positive = "false_positive"
    true_positive = "true_positive"
    benign = "benign"
    duplicate = "duplicate"
    merged = "merged"
    other = "other"


CLOSE_REASONS: tuple[CloseReason, ...] = tuple(CloseReason)
