"""The TAXII 2.1 client: pull a remote collection (the national centre's) into the indicator store — and so into
detection — page by page, remembering where it stopped (the last ``X-TAXII-Date-Added-Last``), so the next pull asks
only for what was added since, and an interrupted pull resumes after its last complete page.

Uses the ``taxii2-client`` library. Objects that are not indicators, or whose pattern the suite cannot match on, are
counted as skipped with the reason (the first few reasons are kept in the pull state).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Callable

import requests
from requests.adapters import HTTPAdapter
from taxii2client.v21 import Collection, as_pages
from urllib3.util.retry import Retry

from detections.indicators.model import IndicatorError
from detections.indicators.stix import indicators_from_stix
from detections.indicators.store import IndicatorService
from soc import ecs
from soc.storage.base import Store
from soc_api.settings import TaxiiPullSource, api_settings

log = logging.getLogger(__name__)


@dataclass
class PullResult:
    source: str
    pages: int = 0
    objects: int = 0
    indicators: int = 0
    skipped: int = 0
    reasons: list[str] = field(default_factory=list)
    added_after: str | None = None


class ResponseTooLarge(requests.RequestException):
    pass


class _BoundedAdapter(HTTPAdapter):
    """Every request with a timeout and a deadline on the whole answer, retried on connection errors and 502/503/504
    (GET only), and every answer read raw and decompressed here (soc_api/feeds/fetch.py ``BoundedBody``: one gzip or
    deflate encoding, never more than the cap produced; a stacked or unknown encoding is refused): taxii2-client
    itself sets none of these, and urllib3 would decompress ``gzip, gzip`` without a limit."""

    def __init__(self, timeout: float, max_bytes: int, retries: int, deadline: float | None = None):
        super().__init__(max_retries=Retry(total=retries, connect=retries, read=retries, backoff_factor=0.5,
                                           status_forcelist=(502, 503, 504), allowed_methods=frozenset({"GET"}),
                                           raise_on_status=False))
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.deadline = deadline or 4 * timeout

    def send(self, request, **kwargs):
        from detections.indicators.feed_formats import FeedRefused
        from soc_api.feeds.fetch import BoundedBody

        started = time.monotonic()
        kwargs["timeout"] = kwargs.get("timeout") or self.timeout
        kwargs["stream"] = True
        response = super().send(request, **kwargs)
        try:
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > self.max_bytes:
                raise ResponseTooLarge(f"the answer declares {declared} bytes, over the cap of {self.max_bytes}")
            try:
                body = BoundedBody(response.headers.get("Content-Encoding"), self.max_bytes)
                while True:
                    chunk = response.raw.read1(65536, decode_content=False)  # what has come: a drip is seen
                    if not chunk:
                        break
                    body.add(chunk)
                    if time.monotonic() - started > self.deadline:
                        raise requests.Timeout(f"the answer took longer than the deadline of {self.deadline:g} s")
                content = body.finish()
            except FeedRefused as exc:
                if exc.reason == "too_large":
                    raise ResponseTooLarge(exc.detail) from None
                raise requests.exceptions.ContentDecodingError(str(exc)) from None
        except BaseException:
            response.close()
            raise
        response.headers.pop("Content-Encoding", None)  # decoded here
        response._content = content  # read here, under the cap; requests hands it out as usual
        response._content_consumed = True
        return response


def bounded(collection: Collection, *, timeout: float, max_bytes: int, retries: int = 2,
            deadline: float | None = None) -> Collection:
    """A taxii2-client Collection whose requests have a timeout, a deadline, retries and a size cap (redirects: at
    most 3; requests drops the Authorization header on one to another host)."""
    adapter = _BoundedAdapter(timeout, max_bytes, retries, deadline)
    collection._conn.session.mount("http://", adapter)
    collection._conn.session.mount("https://", adapter)
    collection._conn.session.max_redirects = 3
    return collection


def _state_id(source: TaxiiPullSource) -> str:
    return source.name


def pull(store: Store, service: IndicatorService, source: TaxiiPullSource, *, state_collection: str = "taxii_state",
         progress: Callable[[PullResult], None] | None = None, convert: Callable[[dict], dict] | None = None,
         retries: int = 2, deadline: float | None = None, conflicts: list[dict] | None = None) -> PullResult:
    """``convert``: one STIX object to an indicator document (IndicatorError: skipped), in place of the plain
    conversion; given (a feed's pull, soc_api/feeds/), indicators a person revoked here stay revoked. ``deadline``:
    seconds one answer may take in all (4 x the timeout by default). An indicator whose id is another source's is
    not stored (the store's ``id_conflict``): skipped, with the reason, and appended to ``conflicts``."""
    state = store.get_document(state_collection, _state_id(source)) or {"id": _state_id(source),
                                                                          "collection_url": source.collection_url}
    if state.get("collection_url") != source.collection_url:
        state = {"id": _state_id(source), "collection_url": source.collection_url}  # another collection: start over
    password = os.environ.get(source.password_env) if source.password_env else None
    if source.password_env and not password:
        raise RuntimeError(f"TAXII pull {source.name}: the variable {source.password_env} is not set")
    result = PullResult(source=source.name, added_after=state.get("added_after"))
    collection = bounded(Collection(source.collection_url, user=source.username or ("soc" if password else None),
                                    password=password, verify=source.verify_tls),
                         timeout=source.timeout_seconds, max_bytes=source.max_response_bytes, retries=retries,
                         deadline=deadline)
    seen_headers: dict[str, str] = {}

    def remember(response, *args, **kwargs):
        last = response.headers.get("X-TAXII-Date-Added-Last")
        if last:
            seen_headers["last"] = last
        return response

    collection._conn.session.hooks["response"].append(remember)
    kwargs = {"added_after": state["added_after"]} if state.get("added_after") else {}
    try:
        for envelope in as_pages(collection.get_objects, per_request=source.page_size, **kwargs):
            result.pages += 1
            docs = []
            for obj in envelope.get("objects", []):
                result.objects += 1
                try:
                    docs.append(convert(obj) if convert else indicators_from_stix(
                        obj, source=source.name, default_tlp=source.default_tlp,
                        created_by=f"taxii-pull:{source.name}"))
                except IndicatorError as exc:
                    result.skipped += 1
                    if len(result.reasons) < 20:
                        result.reasons.append(f"{obj.get('id', '?') if isinstance(obj, dict) else '?'}: {exc}")
            if docs:
                refused: list[dict] = []
                result.indicators += len(service.upsert(docs, keep_revoked=convert is not None, conflicts=refused))
                result.skipped += len(refused)
                for conflict in refused:
                    if len(result.reasons) < 20:
                        result.reasons.append(f"{conflict['id']}: id_conflict: the id is another source's")
                if conflicts is not None:
                    conflicts.extend(refused)
            if seen_headers.get("last"):
                # The page is stored: only now move the bookmark past it.
                state.update(added_after=seen_headers["last"], last_pull=ecs.now_iso())
                store.put_documents(state_collection, [state])
                result.added_after = state["added_after"]
            if progress:
                progress(result)
    finally:
        collection.close()
    state.update(last_pull=ecs.now_iso(), last_result={"objects": result.objects, "indicators": result.indicators,
                                                       "skipped": result.skipped, "reasons": result.reasons[:5]})
    store.put_documents(state_collection, [state])
    return result


def pull_task(suite, source: TaxiiPullSource):
    """A background task for the suite: pull now, then every interval_seconds."""

    async def run() -> None:
        from soc_api.data import indicator_service

        loop = asyncio.get_running_loop()
        collection = api_settings(suite).taxii.state_collection
        while True:
            try:
                result = await loop.run_in_executor(
                    None, lambda: pull(suite.store, indicator_service(suite), source, state_collection=collection))
                log.info("TAXII pull %s: %d objects, %d indicators, %d skipped", source.name, result.objects,
                         result.indicators, result.skipped)
            except Exception as exc:  # the remote may be down: try again next time
                log.warning("TAXII pull %s failed: %s", source.name, exc)
            await asyncio.sleep(source.interval_seconds)

    return run
