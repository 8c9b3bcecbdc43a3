"""Fetching a feed's content: an http(s) URL with httpx (a timeout on every step, retries of failed connections and
of 502/503/504 answers, a size cap counted on the decompressed body, at most 3 redirects), or a file (a path or a
file:// URL) read up to the same cap. Over the cap the whole feed is refused (``too_large``); nothing of it loads."""

from __future__ import annotations

import os
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpx

from detections.indicators.feed_formats import FeedRefused
from soc_api.feeds.settings import FeedConfig

ACCEPT = {"stix": "application/stix+json, application/json;q=0.9", "misp": "application/json",
          "plain": "text/plain, */*;q=0.5"}
RETRY_STATUS = (502, 503, 504)


class FetchError(Exception):
    """The feed could not be fetched now (unreachable, an error answer): reported, tried again later."""


def redacted(location: str) -> str:
    """A location fit for status and logs: no user or password in a URL."""
    parts = urlsplit(location)
    if parts.username or parts.password:
        host = parts.hostname or ""
        if parts.port:
            host += f":{parts.port}"
        return parts._replace(netloc=host).geturl()
    return location


def fetch(feed: FeedConfig) -> bytes:
    scheme = urlsplit(feed.location).scheme.lower()
    if scheme in ("http", "https"):
        return _fetch_url(feed)
    if scheme == "file":
        return _read_file(Path(unquote(urlsplit(feed.location).path)), feed.max_bytes)
    if scheme and len(scheme) > 1:  # "c:" on Windows is a drive, any other scheme is not ours
        raise FetchError(f"unsupported location scheme {scheme!r}: http, https, file or a path")
    return _read_file(Path(feed.location), feed.max_bytes)


def _read_file(path: Path, cap: int) -> bytes:
    try:
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > cap:
                raise FeedRefused("too_large", f"{path.name} is {size} bytes, over the feed's cap of {cap}")
            data = f.read(cap + 1)
    except OSError as exc:
        raise FetchError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if len(data) > cap:
        raise FeedRefused("too_large", f"{path.name} is over the feed's cap of {cap} bytes")
    return data


def _headers(feed: FeedConfig) -> dict[str, str]:
    headers = {"Accept": ACCEPT.get(feed.kind, "*/*"), "User-Agent": "soc-suite-feeds/1"}
    if feed.auth_header and feed.auth_env:
        value = os.environ.get(feed.auth_env)
        if not value:
            raise FetchError(f"the variable {feed.auth_env} (the feed's {feed.auth_header}) is not set")
        headers[feed.auth_header] = value
    return headers


def _fetch_url(feed: FeedConfig) -> bytes:
    transport = httpx.HTTPTransport(retries=feed.retries, verify=feed.verify_tls)  # connection failures
    timeout = httpx.Timeout(feed.timeout_seconds)
    with httpx.Client(transport=transport, timeout=timeout, follow_redirects=True, max_redirects=3,
                      headers=_headers(feed)) as client:
        for attempt in range(feed.retries + 1):
            try:
                with client.stream("GET", feed.location) as response:
                    if response.status_code in RETRY_STATUS and attempt < feed.retries:
                        time.sleep(min(2.0 ** attempt, 10.0))
                        continue
                    if response.status_code >= 400:
                        raise FetchError(f"HTTP {response.status_code} from {redacted(feed.location)}")
                    declared = response.headers.get("content-length", "")
                    if declared.isdigit() and int(declared) > feed.max_bytes:
                        raise FeedRefused("too_large", f"the answer declares {declared} bytes, over the feed's "
                                                       f"cap of {feed.max_bytes}")
                    body = bytearray()
                    for chunk in response.iter_bytes():  # decompressed: a small gzip bomb is stopped here too
                        body += chunk
                        if len(body) > feed.max_bytes:
                            raise FeedRefused("too_large", f"the answer is over the feed's cap of {feed.max_bytes} "
                                                           f"bytes")
                    return bytes(body)
            except httpx.HTTPError as exc:
                if attempt >= feed.retries:
                    raise FetchError(f"{type(exc).__name__} fetching {redacted(feed.location)}: {exc}") from exc
                time.sleep(min(2.0 ** attempt, 10.0))
    raise FetchError(f"no answer from {redacted(feed.location)}")
