"""YARA on ingested payloads as a detection-engine matcher: events that carry stored payloads (``soc.payloads[]``
of `network.http` / `network.ftp` records) have them scanned, and each matching rule becomes a Detection, which
the alert manager folds into alerts like any Sigma hit (one alert per rule, agency and file hash, repeats counted).

The scan runs on the pipeline worker, in the batch that carried the payload: a large body holds the batch for its
scan time (bounded by ``yara.max_file_bytes`` and ``yara.timeout_seconds``). Events without payloads cost a dict
lookup.
"""

from __future__ import annotations

import logging
from typing import Callable

from detections.engine import Detection
from detections.sigma.loader import RuleMeta
from detections.yara.ecs import severity
from detections.yara.model import YaraMatch
from detections.yara.payloads import scan_event_payloads
from soc import ecs

log = logging.getLogger(__name__)


def rule_meta(match: YaraMatch) -> RuleMeta:
    description = str(match.meta.get("description") or "")
    return RuleMeta(id=f"yara:{match.namespace}:{match.rule}", name=match.rule,
                    title=f"YARA {match.rule}" + (f": {description}" if description else ""),
                    level=severity(match.meta.get("score")), tags=[f"yara.{t}" for t in match.tags],
                    description=description or f"YARA rule {match.rule} ({match.namespace}) matched a payload",
                    path=match.namespace)


class YaraPayloadMatcher:
    """``engine()`` gives the YaraEngine (built on first need, from the cache when there is one)."""

    def __init__(self, engine: Callable[[], object]):
        self._engine = engine

    def evaluate(self, events: list[dict]) -> list[Detection]:
        carriers = [e for e in events if ecs.get(e, "soc.payloads")]
        if not carriers:
            return []
        scanner = self._engine().scanner
        detections = []
        for event in carriers:
            _, results = scan_event_payloads(scanner, [event])
            ts = event.get("@timestamp") or ecs.now_iso()
            for result in results:
                for match in result.matches:
                    detections.append(Detection(
                        meta=rule_meta(match), kind="yara", agency=ecs.get(event, "organization.id"),
                        labels={"file.hash.sha256": result.target.sha256, "file.name": result.target.name},
                        events=[event], count=1, first_seen=ts, last_seen=ts))
        return detections

