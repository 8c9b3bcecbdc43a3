"""Feeds on a schedule: each enabled feed is pulled now and then every ``interval_seconds``; a feed that fails is
reported (its state document, ``GET /api/v1/feeds``, the metrics) and tried again after a backoff, and never stops
the suite or another feed. Beside them, the sweep takes expired and decayed indicators out of matching, and, per
TAXII feed with ``sightings``, the province's sightings go back to the source (soc_api/feeds/sightings.py).

State, one document per feed in ``soc_api.feeds.state_collection``: status (ok, error, refused), the last attempt and
success, consecutive failures, the next attempt, the last error, what the last pull loaded and refused by reason,
and what the last sightings run sent.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from prometheus_client import Counter, Gauge

from detections.indicators.feed_formats import PARSERS, FeedDefaults, FeedRefused, Parsed, reason_of, stix_indicator
from detections.indicators.model import IndicatorError
from detections.indicators.store import IndicatorService
from soc import ecs
from soc.storage.base import Store
from soc_api.feeds.fetch import FetchError, deadline_of, fetch, redacted
from soc_api.feeds.settings import FeedConfig, FeedsConfig
from soc_api.feeds.sightings import share
from soc_api.settings import TaxiiPullSource

log = logging.getLogger(__name__)

# Label values: configured feed names and closed sets of results and reasons (bounded series).
FEED_PULLS = Counter("soc_feed_pulls", "Feed pulls, by feed and result (ok, error, refused)", ["feed", "result"])
FEED_LOADED = Counter("soc_feed_indicators_loaded", "Indicators loaded (new or refreshed) from a feed", ["feed"])
FEED_REFUSED = Counter("soc_feed_items_refused", "Feed items (or whole feeds) refused, by reason", ["feed", "reason"])
FEED_FAILING = Gauge("soc_feed_consecutive_failures", "Consecutive failed pulls of a feed (0: the last one worked)",
                     ["feed"])
SIGHTINGS_SHARED = Counter("soc_feed_sightings_shared", "Sightings posted back to a feed's source, by result "
                                                        "(sent, withheld_tlp, error)", ["feed", "result"])
FEED_TASK_ERRORS = Counter("soc_feed_task_errors", "Passes of a feed's task that failed outside the pull itself (the "
                           "store), by task (pull, sightings, sweep); the task backs off and goes on",
                           ["feed", "task"])
INDICATORS_SWEPT = Counter("soc_indicators_swept", "Indicators taken out of matching by the sweep, by reason "
                                                   "(expired, decayed) and expired records deleted (deleted)",
                           ["reason"])


def defaults_of(feed: FeedConfig) -> FeedDefaults:
    decay = {"model": feed.decay.model, "floor": feed.decay.floor,
             "lifetime_seconds": feed.decay.lifetime_seconds or feed.expire_after_seconds,
             "half_life_seconds": feed.decay.half_life_seconds}
    return FeedDefaults(name=feed.name, kind=feed.kind, tlp=feed.default_tlp, confidence=feed.default_confidence,
                        lifetime_seconds=feed.expire_after_seconds, decay=decay, max_indicators=feed.max_indicators,
                        value_type=feed.value_type)


def _taxii_source(feed: FeedConfig) -> TaxiiPullSource:
    return TaxiiPullSource(name=feed.name, collection_url=feed.location, username=feed.username,
                           password_env=feed.password_env, interval_seconds=feed.interval_seconds,
                           page_size=feed.page_size, default_tlp=feed.default_tlp, verify_tls=feed.verify_tls,
                           timeout_seconds=feed.timeout_seconds, max_response_bytes=feed.max_bytes)


Protected = Callable[[str], str | None]  # a normalised address or range -> why it is never blocked (None: it is not)


def baseline_protected(value: str) -> str | None:
    """The part of the never-block list that needs no inventory (playbooks/safety.py ``ALWAYS``: loopback,
    unspecified, link-local, multicast)."""
    from playbooks.safety import ALWAYS

    net = ipaddress.ip_network(value, strict=False)
    for cidr in ALWAYS:
        space = ipaddress.ip_network(cidr)
        if space.version == net.version and space.overlaps(net):
            return f"{space}: reserved address space"
    return None


def never_block_of(services) -> Protected:
    """The suite's never-block list (playbooks/safety.py: the inventory's never_block, DNS, directory and gateway
    servers, managed devices, the SOC's own addresses, reserved space) as a check, built from the inventory current
    at the call; the baseline alone when there is no inventory."""
    try:
        from playbooks.safety import Safety
        from playbooks.settings import load_playbook_settings

        playbooks = services.service("playbooks") if hasattr(services, "service") else None
        runner = getattr(playbooks, "runner", None)
        safety = runner.safety if runner is not None else None
        if safety is None and getattr(services, "inventory_holder", None) is not None:
            safety = Safety(services.inventory, load_playbook_settings(getattr(services, "settings", None)))
    except Exception:  # an inventory that cannot be read now: the baseline, and say so
        log.warning("feeds: the never-block list could not be built; only reserved space is refused", exc_info=True)
        safety = None
    if safety is None:
        return baseline_protected

    def protected(value: str) -> str | None:
        hit = safety.protected(value)
        return f"{hit.network}: {hit.why}" if hit is not None else None

    return protected


def _check_never_block(doc: dict, protected: Protected) -> None:
    """IndicatorError ``never_block`` when an address or range of the indicator is on the never-block list: a feed
    naming the national centre, a DNS server or the SOC would turn their traffic into alerts (and a playbook's
    block would be refused anyway)."""
    for o in doc.get("observables", []):
        if o["type"] in ("ipv4", "ipv6"):
            why = protected(o["value"])
            if why:
                raise IndicatorError(f"never_block: {o['value']} is on the never-block list ({why})")


def _pull_taxii(store: Store, service: IndicatorService, feed: FeedConfig, cfg: FeedsConfig,
                protected: Protected) -> tuple[Parsed, int]:
    from soc_api.taxii.client import pull

    defaults, parsed, now = defaults_of(feed), Parsed(), ecs.now_iso()

    def convert(obj: Any) -> dict:
        parsed.items += 1
        try:
            doc = stix_indicator(obj, defaults, now)
            _check_never_block(doc, protected)
        except IndicatorError as exc:
            parsed.refuse(reason_of(exc), f"{str(obj.get('id', '?'))[:100] if isinstance(obj, dict) else '?'}: "
                                          f"{exc}")
            raise
        if parsed.refused.get("too_many") or len(parsed.docs) >= feed.max_indicators:
            parsed.refuse("too_many", f"over the feed's limit of {feed.max_indicators} indicators")
            raise IndicatorError("too_many: over the feed's limit")
        parsed.docs.append({"id": doc["id"]})  # counted only; the pull stores it
        return doc

    conflicts: list[dict] = []
    # The TAXII bookmark is kept under the feed's name, beside soc taxii pull's.
    result = pull(store, service, _taxii_source(feed), state_collection=f"{cfg.state_collection}_taxii",
                  convert=convert, retries=feed.retries, deadline=deadline_of(feed), conflicts=conflicts)
    for conflict in conflicts:
        parsed.refuse("id_conflict", f"{conflict['id']}: the id is another source's ({conflict['owner'][0]})")
    return parsed, result.indicators


def _load(service: IndicatorService, parsed: Parsed, protected: Protected) -> int:
    docs = []
    for doc in parsed.docs:
        try:
            _check_never_block(doc, protected)
        except IndicatorError as exc:
            parsed.refuse("never_block", f"{doc.get('stix_id') or doc['id']}: {exc}")
            continue
        docs.append(doc)
    conflicts: list[dict] = []
    kept = service.upsert(docs, keep_revoked=True, conflicts=conflicts)
    for conflict in conflicts:
        parsed.refuse("id_conflict", f"{conflict['id']}: the id is another source's ({conflict['owner'][0]})")
    return len(kept)


def pull_feed(store: Store, service: IndicatorService, feed: FeedConfig, cfg: FeedsConfig, *,
              protected: Protected | None = None) -> dict:
    """Pull one feed once; its state document, stored. Never raises for the feed's own failures (a store error
    reading or writing the state does raise: the task catches it, ``feed_task``). ``protected``: the never-block
    check (``never_block_of``; the baseline without it)."""
    protected = protected or baseline_protected
    state = store.get_document(cfg.state_collection, feed.name) or {"id": feed.name, "consecutive_failures": 0}
    state.update(kind=feed.kind, location=redacted(feed.location), interval_seconds=feed.interval_seconds,
                 last_attempt=ecs.now_iso())
    try:
        if feed.kind == "taxii":
            parsed, loaded = _pull_taxii(store, service, feed, cfg, protected)
        else:
            parsed = PARSERS[feed.kind](fetch(feed), defaults_of(feed))
            loaded = _load(service, parsed, protected)
        state.update(status="ok", last_success=ecs.now_iso(), consecutive_failures=0, error=None,
                     last_result={"items": parsed.items, "loaded": loaded, "refused": dict(parsed.refused),
                                  "reasons": parsed.reasons[:10]})
        FEED_PULLS.labels(feed.name, "ok").inc()
        FEED_LOADED.labels(feed.name).inc(loaded)
        for reason, n in parsed.refused.items():
            FEED_REFUSED.labels(feed.name, reason).inc(n)
    except FeedRefused as exc:  # the whole content: hostile or broken; nothing loaded
        state.update(status="refused", error=str(exc)[:500],
                     consecutive_failures=int(state.get("consecutive_failures", 0)) + 1,
                     last_result={"items": 0, "loaded": 0, "refused": {exc.reason: 1}, "reasons": [str(exc)[:300]]})
        FEED_PULLS.labels(feed.name, "refused").inc()
        FEED_REFUSED.labels(feed.name, exc.reason).inc()
    except Exception as exc:  # unreachable, an error answer, a store error: reported, tried again later
        if not isinstance(exc, FetchError):
            log.warning("feed %s: pull failed", feed.name, exc_info=True)
        state.update(status="error", error=f"{type(exc).__name__}: {str(exc)[:500]}",
                     consecutive_failures=int(state.get("consecutive_failures", 0)) + 1)
        FEED_PULLS.labels(feed.name, "error").inc()
    FEED_FAILING.labels(feed.name).set(state["consecutive_failures"])
    state["next_attempt"] = ecs.utc_iso(ecs.parse_time(ecs.now_iso()) + _delay(feed, state))
    store.put_documents(cfg.state_collection, [state])
    log.info("feed %s: %s %s", feed.name, state["status"], state.get("last_result") if state["status"] == "ok"
             else state.get("error"))
    return state


def _delay(feed: FeedConfig, state: dict):
    from datetime import timedelta

    failures = int(state.get("consecutive_failures", 0))
    if not failures:
        return timedelta(seconds=feed.interval_seconds)
    backoff = feed.retry_initial_seconds * 2 ** min(failures - 1, 30)
    return timedelta(seconds=min(backoff, feed.retry_max_seconds, feed.interval_seconds))


def share_sightings(store: Store, service: IndicatorService, feed: FeedConfig, cfg: FeedsConfig) -> dict:
    """One sightings run of a feed; the ``sightings`` part of its state document, stored."""
    state = store.get_document(cfg.state_collection, feed.name) or {"id": feed.name, "consecutive_failures": 0}
    record = dict(state.get("sightings") or {}, last_attempt=ecs.now_iso())
    try:
        result = share(store, service, feed, state)
        record.update(status="ok" if not result.errors else "partial", error="; ".join(result.errors[:5]) or None,
                      last_sent=result.sent, withheld_tlp=result.withheld_tlp, pending=result.pending,
                      total_sent=int(record.get("total_sent", 0)) + result.sent)
        if result.sent:
            record["last_success"] = ecs.now_iso()
        SIGHTINGS_SHARED.labels(feed.name, "sent").inc(result.sent)
        SIGHTINGS_SHARED.labels(feed.name, "withheld_tlp").inc(result.withheld_tlp)
        SIGHTINGS_SHARED.labels(feed.name, "error").inc(len(result.errors))
    except Exception as exc:  # the source may be down: the same sightings go next time
        log.warning("feed %s: sightings not sent: %s", feed.name, exc)
        record.update(status="error", error=f"{type(exc).__name__}: {str(exc)[:500]}")
        SIGHTINGS_SHARED.labels(feed.name, "error").inc()
    current = store.get_document(cfg.state_collection, feed.name) or state  # the pull may have written meanwhile
    current.update(sightings=record, sightings_sent_to=state.get("sightings_sent_to"))
    store.put_documents(cfg.state_collection, [current])
    return record


def sweep(service: IndicatorService, cfg: FeedsConfig) -> dict[str, int]:
    retention = cfg.expired_retention_days * 86400.0 if cfg.expired_retention_days else None
    counts = service.expire(retention_seconds=retention)
    for reason, n in counts.items():
        if n:
            INDICATORS_SWEPT.labels(reason).inc(n)
    return counts


# --- background tasks --------------------------------------------------------------------------------------------
# The feeds' blocking work (fetches, parsing, the store) runs on its own small pool, never on the event loop's
# default executor that the collectors and the API share: a feed that hangs until its deadline holds one of these.
FEED_WORKERS = 4
_shared: ThreadPoolExecutor | None = None


def executor() -> ThreadPoolExecutor:
    """The pool of tasks started without one of their own (``register`` gives each suite its own)."""
    global _shared
    if _shared is None:
        _shared = ThreadPoolExecutor(max_workers=FEED_WORKERS, thread_name_prefix="soc-feeds")
    return _shared


def _task_backoff(feed: FeedConfig, failures: int) -> float:
    return min(feed.retry_initial_seconds * 2 ** min(failures - 1, 30), feed.retry_max_seconds, feed.interval_seconds)


def _task_failed(feed_name: str, task: str) -> None:
    log.warning("feed %s: %s pass failed (the store?); backing off, going on", feed_name, task, exc_info=True)
    FEED_TASK_ERRORS.labels(feed_name, task).inc()


def feed_task(services, feed: FeedConfig, cfg: FeedsConfig, service: IndicatorService,
              pool: ThreadPoolExecutor | None = None):
    async def run() -> None:
        loop, workers = asyncio.get_running_loop(), pool or executor()
        failures = 0
        while True:
            try:  # one pass: a store error (reading or writing the state) is logged, counted, backed off
                protected = await loop.run_in_executor(workers, never_block_of, services)
                state = await loop.run_in_executor(
                    workers, lambda: pull_feed(services.store, service, feed, cfg, protected=protected))
                failures = 0
                delay = _delay(feed, state).total_seconds()
            except asyncio.CancelledError:
                raise
            except Exception:
                failures += 1
                _task_failed(feed.name, "pull")
                delay = _task_backoff(feed, failures)
            await asyncio.sleep(delay)

    return run


def sightings_task(services, feed: FeedConfig, cfg: FeedsConfig, service: IndicatorService,
                   pool: ThreadPoolExecutor | None = None):
    async def run() -> None:
        loop, workers = asyncio.get_running_loop(), pool or executor()
        failures = 0
        delay = feed.sightings.interval_seconds
        while True:
            await asyncio.sleep(delay)
            try:
                await loop.run_in_executor(workers, share_sightings, services.store, service, feed, cfg)
                failures, delay = 0, feed.sightings.interval_seconds
            except asyncio.CancelledError:
                raise
            except Exception:
                failures += 1
                _task_failed(feed.name, "sightings")
                delay = max(feed.sightings.interval_seconds, _task_backoff(feed, failures))

    return run


def sweep_task(services, cfg: FeedsConfig, service: IndicatorService, pool: ThreadPoolExecutor | None = None):
    async def run() -> None:
        loop, workers = asyncio.get_running_loop(), pool or executor()
        while True:
            await asyncio.sleep(cfg.sweep_interval_seconds)
            try:
                await loop.run_in_executor(workers, sweep, service, cfg)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the store may be down: next time
                log.warning("indicator sweep failed, retrying later: %s", exc)
                FEED_TASK_ERRORS.labels("-", "sweep").inc()

    return run


def register(services, registry, cfg: FeedsConfig) -> None:
    """The feeds' background tasks (called by soc_api/extension.py)."""
    service = services.service("indicators") or IndicatorService(services.store)
    pool = ThreadPoolExecutor(max_workers=FEED_WORKERS, thread_name_prefix="soc-feeds")
    registry.on_close(lambda: pool.shutdown(wait=False, cancel_futures=True))
    registry.run_in_background(sweep_task(services, cfg, service, pool))
    for feed in cfg.feeds:
        if not feed.enabled:
            continue
        registry.run_in_background(feed_task(services, feed, cfg, service, pool))
        if feed.sightings is not None:
            if feed.kind != "taxii":
                log.warning("feed %s: sightings go back only to TAXII sources; kept here (GET "
                            "/api/v1/indicators/sightings?source=%s)", feed.name, feed.name)
                continue
            registry.run_in_background(sightings_task(services, feed, cfg, service, pool))
