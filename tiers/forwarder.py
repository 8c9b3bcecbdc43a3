"""The sender: drains the outbox (tiers/outbox.py) to the upstream suite and pulls the upstream's changes back.

One loop in the suite's event loop; the outbox's disk work runs in worker threads. Each pass sends, in this order,
the agency list, alerts, then events, in batches; a batch leaves the outbox only when the upstream answered 200
(stored, or refused for good with the reason, which is counted and logged: sending it again would be refused
again). Anything else — the link down, the upstream killed, a 5xx, a 429 — keeps the batch and tries again after a
wait that doubles up to ``retry_max_seconds``. A 413 halves the batch. The upstream keeps each id once, so sending
again what it stored before it could answer duplicates nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import time
from pathlib import Path
from typing import Callable

import httpx

from soc import ecs, metrics
from tiers import merge
from tiers.outbox import AGENCIES, ALERT, EVENT, Outbox
from tiers.settings import UpstreamLink

log = logging.getLogger(__name__)

BACKLOG = metrics.Gauge("soc_tier_backlog_records", "Records waiting to go to the upstream suite", ["kind"])
BACKLOG_BYTES = metrics.Gauge("soc_tier_backlog_bytes", "Bytes waiting to go to the upstream suite", ["kind"])
LAG = metrics.Gauge("soc_tier_lag_seconds", "Age of the oldest record waiting to go to the upstream suite")
SENT = metrics.Counter("soc_tier_sent_total", "Records the upstream suite confirmed", ["kind"])
DROPPED = metrics.Gauge("soc_tier_dropped_records", "Events dropped from the full outbox since it was made",
                        ["kind"])
FAILURES = metrics.Counter("soc_tier_send_failures_total", "Tries to reach the upstream suite that failed")
CHANGES_APPLIED = metrics.Counter("soc_tier_changes_applied_total", "Upstream changes applied to alerts here")

_PATHS = {AGENCIES: "/api/v1/tier/agencies", ALERT: "/api/v1/tier/alerts", EVENT: "/api/v1/tier/events"}


class UpstreamError(Exception):
    pass


def read_key(link: UpstreamLink) -> str:
    if link.key_env:
        key = os.environ.get(link.key_env, "").strip()
        if not key:
            raise UpstreamError(f"the environment variable {link.key_env} (tiers.upstream.key_env) is empty")
        return key
    path = Path(link.key_file or "")
    if path.stat().st_mode & 0o077:
        raise UpstreamError(f"{path} (tiers.upstream.key_file) can be read by others: chmod 600 it")
    return path.read_text(encoding="utf-8").strip()


def tls_context(link: UpstreamLink) -> ssl.SSLContext:
    """Verify the upstream's certificate (against ``ca_file``, else the system's CAs); show ours when set."""
    context = ssl.create_default_context(cafile=link.ca_file) if link.ca_file else ssl.create_default_context()
    if link.client_cert_file:
        context.load_cert_chain(link.client_cert_file, link.client_key_file)
    return context


class Forwarder:
    def __init__(self, link: UpstreamLink, outbox: Outbox, apply_change: Callable[[str, dict], bool]):
        self.link = link
        self.outbox = outbox
        self.apply_change = apply_change  # (alert id, the upstream's triage) -> applied
        self.batch_events = link.batch_max_events
        self.last_success: str | None = None
        self.last_error: str | None = None
        self.failures = 0
        self._status_sent = 0.0
        self._pulled = self._gauged = float("-inf")
        self._client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(base_url=self.link.url or "", verify=tls_context(self.link),
                                             timeout=self.link.timeout_seconds, follow_redirects=False,
                                             headers={"X-API-Key": read_key(self.link)})
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    # --- the loop ----------------------------------------------------------------------------------------------
    async def run(self) -> None:
        wait = self.link.interval_seconds
        while True:
            try:
                busy = await self.cycle()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the link down, the upstream gone: keep everything, try again later
                self.failures += 1
                FAILURES.inc()
                self.last_error = f"{ecs.now_iso()} {type(exc).__name__}: {str(exc)[:300]}"
                log.warning("forwarding to %s failed (will retry in %.1f s): %s", self.link.url, wait, exc)
                await asyncio.to_thread(self._gauges)  # the backlog and the lag grow while the link is down
                await asyncio.sleep(wait)
                wait = min(wait * 2, self.link.retry_max_seconds)
                continue
            wait = self.link.interval_seconds
            if not busy:
                await asyncio.sleep(self.link.interval_seconds)

    async def cycle(self) -> bool:
        """One pass: send what waits (a batch of each kind), pull changes, report the state. True if it sent."""
        busy = False
        for kind in (AGENCIES, ALERT, EVENT):
            busy |= await self._send(kind)
        now = time.monotonic()
        if now - self._pulled >= self.link.interval_seconds:  # not after every batch of a long drain
            await self._pull_changes()
            self._pulled = now
        await self._report()
        if now - self._gauged >= 1.0:
            await asyncio.to_thread(self._gauges)
            self._gauged = now
        self.last_success = ecs.now_iso()
        self.last_error = None  # the link works again (``failures`` keeps the count)
        return busy

    async def _send(self, kind: str) -> bool:
        limit = self.batch_events if kind == EVENT else 500
        batch = await asyncio.to_thread(self.outbox.next_batch, kind, limit, self.link.batch_max_bytes)
        if not batch:
            return False
        if kind == EVENT:
            body, content_type = b"\n".join(p.body for p in batch), "application/x-ndjson"
        elif kind == ALERT:
            body, content_type = b'{"alerts":[' + b",".join(p.body for p in batch) + b"]}", "application/json"
        else:
            body, content_type = b'{"agencies":' + batch[-1].body + b"}", "application/json"
        answer = await self._http().post(_PATHS[kind], content=body, headers={"Content-Type": content_type})
        if answer.status_code == 413 and kind == EVENT and self.batch_events > 1:
            self.batch_events = max(1, self.batch_events // 2)
            raise UpstreamError(f"the upstream found a batch too large: now {self.batch_events} events a batch")
        if answer.status_code != 200:
            raise UpstreamError(f"{_PATHS[kind]} answered {answer.status_code}: {answer.text[:200]}")
        refused = answer.json().get("refused_count", 0) if kind != AGENCIES else len(answer.json().get("refused", []))
        if refused:
            log.warning("the upstream refused %d %s record(s) for good: %s", refused, kind,
                        str(answer.json().get("refused"))[:500])
            await asyncio.to_thread(self.outbox.count, f"refused_{kind}", refused)
        await asyncio.to_thread(self.outbox.confirm, kind, batch)
        SENT.labels(kind=kind).inc(len(batch))
        return True

    async def _pull_changes(self) -> None:
        while True:
            after = await asyncio.to_thread(self.outbox.get_state, "changes_after")
            params = {"limit": "500", **({"after": after} if after else {})}
            answer = await self._http().get("/api/v1/tier/changes", params=params)
            if answer.status_code != 200:
                raise UpstreamError(f"/api/v1/tier/changes answered {answer.status_code}: {answer.text[:200]}")
            page = answer.json()
            for change in page.get("changes") or []:
                if await asyncio.to_thread(self.apply_change, str(change.get("alert_id")), change.get("triage") or {}):
                    CHANGES_APPLIED.inc()
            if page.get("next") and page["next"] != after:
                await asyncio.to_thread(self.outbox.set_state, "changes_after", page["next"])
            if len(page.get("changes") or []) < 500:
                return

    async def _report(self) -> None:
        if time.monotonic() - self._status_sent < self.link.status_every_seconds:
            return
        state = await asyncio.to_thread(self.state)
        body = {"backlog": state["backlog"], "lag_seconds": state["lag_seconds"], "dropped": state["dropped"]}
        answer = await self._http().post("/api/v1/tier/status", json=body)
        if answer.status_code == 200:
            self._status_sent = time.monotonic()

    def _gauges(self) -> None:
        state = self.state()
        for kind, figures in state["backlog"].items():
            BACKLOG.labels(kind=kind).set(figures["records"])
            BACKLOG_BYTES.labels(kind=kind).set(figures["bytes"])
        LAG.set(state["lag_seconds"])
        for kind, n in state["dropped"].items():
            DROPPED.labels(kind=kind).set(n)

    def state(self) -> dict:
        backlog = self.outbox.backlog()
        oldest = min((b["oldest"] for b in backlog.values() if b["oldest"] is not None), default=None)
        counters = self.outbox.counters()
        return {"configured": True, "upstream": self.link.url,
                "backlog": {k: {"records": v["records"], "bytes": v["bytes"]} for k, v in backlog.items()},
                "lag_seconds": round(time.time() - oldest, 3) if oldest is not None else 0.0,
                "sent": {k[5:]: v for k, v in counters.items() if k.startswith("sent_")},
                "dropped": {k[8:]: v for k, v in counters.items() if k.startswith("dropped_")},
                "refused": {k[8:]: v for k, v in counters.items() if k.startswith("refused_")},
                "last_success": self.last_success, "last_error": self.last_error, "failures": self.failures,
                "changes_after": self.outbox.get_state("changes_after")}


def apply_upstream_change(alerts) -> Callable[[str, dict], bool]:
    """How a change made upstream lands here: merged into the alert under the alert manager's lock (not echoed to
    the edit hooks, so it does not go back up as a change of ours)."""

    def apply(alert_id: str, triage: dict) -> bool:
        if not isinstance(triage, dict) or triage.get("id") != alert_id:
            return False
        try:
            result = alerts.edit(alert_id, lambda local: _merge_in(local, triage), notify=False)
        except (ValueError, TypeError) as exc:  # it would make an alert this suite cannot show: nothing is written
            log.warning("a change from the upstream to alert %s was refused: %s", alert_id[:64], exc)
            return False
        return result is not None

    return apply


def _merge_in(local: dict, triage: dict) -> dict:
    from tiers.receive import held

    after = held(merge.merged(local, triage, remote_owns_detection=False))
    local.clear()
    local.update(after)
    return local
