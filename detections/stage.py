"""Detection as a stage: the collector's writer hands it each batch of stored events.

The Sigma rules and the registered matchers (indicators, YARA, the API's source tracker) evaluate the batch; what
they detect becomes alerts through the AlertManager (deduplicated, stored); the alert hooks (playbooks, malware
findings) hear of them. Extensions that raise alerts of their own (source health, a changed device host key) use
the same door, ``raise_alerts``, so every alert reaches the same hooks.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Callable

from detections.alerts import AlertManager
from detections.engine import Detection, DetectionEngine
from soc import ecs, metrics
from soc.plugins import Hook, run_hooks
from soc.storage.base import DeadLetter, Store, StoreError

log = logging.getLogger(__name__)

# ``retry(what, fn, *args)``: the caller's policy for store writes (the collector retries transient failures).
Retry = Callable[..., Any]


def _once(what: str, fn: Callable[..., Any], *args: Any) -> Any:
    return fn(*args)


class DetectionStage:
    def __init__(self, engine: DetectionEngine, alerts: AlertManager, store: Store, alert_hooks: list[Hook],
                 edit_hooks: list[Hook] | None = None):
        self.engine = engine
        self.alerts = alerts
        self.store = store
        self.alert_hooks = alert_hooks
        self.edit_hooks = edit_hooks if edit_hooks is not None else []

    @property
    def idle(self) -> bool:
        """No rule and no hook would look at events: the writer need not even decode them."""
        return self.engine.idle

    def process(self, events: list[dict], retry: Retry = _once) -> list[dict]:
        """Detect on a stored batch; the alerts raised or updated. Alerts the store refuses for good are kept as
        dead letters with the reason."""
        started = time.perf_counter()
        detections = self.engine.evaluate(events)
        metrics.RULE_EVAL_SECONDS.observe(time.perf_counter() - started)
        if not detections:
            return []
        try:
            return self.raise_alerts(detections, retry)
        except StoreError as exc:
            log.error("alerts could not be stored: %s", exc)
            letters = [DeadLetter(received=ecs.now_iso(), source="detections", reason=f"alert_rejected: {exc}",
                                  raw=json.dumps(d.meta.__dict__, default=str).encode()) for d in detections]
            retry("dead letters", self.store.write_dead_letters, letters)
            return []

    def raise_alerts(self, detections: list[Detection], retry: Retry = _once) -> list[dict]:
        """Detections → alerts, stored, then every alert hook."""
        raised = retry("alerts", self.alerts.handle, detections)
        run_hooks(self.alert_hooks, raised)
        return raised

    def edit(self, alert_id: str, change: Callable[[dict], Any], *, notify: bool = True) -> Any:
        """An analyst's change (or another tier's, with ``notify`` False: it is not echoed back to the edit hooks)."""
        result = self.alerts.edit(alert_id, change)
        if result is not None and notify:
            run_hooks(self.edit_hooks, [result[0]])
        return result
