"""Fetching a feed's content: an http(s) URL with httpx, or a file (a path or a file:// URL) read up to the same cap.

Over HTTP(S), everything a hostile server (or whoever sits on its path) could use is bounded here, not left to httpx:

- **size**: the raw bytes are read (``iter_raw``) and decompressed here, gzip or deflate, one encoding only (a stacked
  ``gzip, gzip`` or an unknown encoding refuses the feed), by a bounded ``zlib`` loop that never produces more than
  the cap: over ``max_bytes`` (on the wire or decompressed) the whole feed is refused (``too_large``), nothing of it
  loads;
- **time**: a timeout on every step (``timeout_seconds``) and a deadline on the whole fetch (``deadline_seconds``,
  4 x the timeout by default: redirects, retries and every read together), so a server that drips a byte at a time
  is cut off;
- **where**: redirects are followed here, at most 3, only to the location's own host or a host in
  ``redirect_hosts``, with the same scheme or http -> https; the auth header (and nothing else secret) goes only to
  the location's own origin; loopback, private, link-local (169.254/16: cloud metadata) and reserved addresses are
  refused as a target (the location or a redirect, by every address its name resolves to) unless inside one of the
  feed's ``allow_networks``;
- **secrets**: a query parameter may be filled from an environment variable (``query_env``); ``redacted`` drops
  user, password and every query value from a location before it is shown anywhere (state, API, errors, logs).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import time
import zlib
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlencode, urljoin, urlsplit

import httpx

from detections.indicators.feed_formats import FeedRefused
from soc_api.feeds.settings import FeedConfig

ACCEPT = {"stix": "application/stix+json, application/json;q=0.9", "misp": "application/json",
          "plain": "text/plain, */*;q=0.5"}
RETRY_STATUS = (502, 503, 504)
REDIRECT_STATUS = (301, 302, 303, 307, 308)
MAX_REDIRECTS = 3
ACCEPT_ENCODING = "gzip, deflate"  # what the bounded decoder below reads; never br or zstd
_GZIP = ("gzip", "x-gzip")


class FetchError(Exception):
    """The feed could not be fetched now (unreachable, an error answer): reported, tried again later."""


def deadline_of(feed: FeedConfig) -> float:
    """Seconds the whole fetch may take."""
    return feed.deadline_seconds or 4 * feed.timeout_seconds


def redacted(location: str) -> str:
    """A location fit for status and logs: no user or password in a URL, and no query value (an API key in
    ``?apikey=`` is as secret as a password): each becomes ``***``."""
    try:
        parts = urlsplit(location)
    except ValueError:
        return "(a location that is not a URL)"
    if parts.scheme.lower() not in ("http", "https"):
        return location
    netloc = parts.netloc
    if parts.username is not None or parts.password is not None:
        netloc = parts.netloc.rsplit("@", 1)[-1]
    query = parts.query
    if query:
        query = "&".join(f"{pair.split('=', 1)[0]}=***" if pair else pair for pair in query.split("&"))
    return parts._replace(netloc=netloc, query=query, fragment="").geturl()


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


# --- bounded decompression (shared with the TAXII client's transport) ---------------------------------------------
class BoundedBody:
    """The body of one answer, from its raw bytes: decompressed here (one ``gzip`` or ``deflate`` encoding, or
    none) with never more than ``cap`` bytes produced, and ``cap`` on the raw bytes too. FeedRefused
    (``too_large``, ``unsupported``, ``malformed``) says why not."""

    def __init__(self, content_encoding: str | None, cap: int):
        codings = [c.strip().lower() for c in (content_encoding or "").split(",") if c.strip()]
        codings = [c for c in codings if c != "identity"]
        if len(codings) > 1:
            raise FeedRefused("unsupported", f"stacked content encodings ({(content_encoding or '')[:80]!r}) are "
                                             f"not accepted: one gzip or deflate at most")
        self.coding = codings[0] if codings else None
        if self.coding not in (None, "deflate", *_GZIP):
            raise FeedRefused("unsupported", f"content encoding {self.coding[:40]!r} is not accepted (gzip or "
                                             f"deflate)")
        self.cap = cap
        self.raw = 0
        self.body = bytearray()
        self._decoder = self._new()
        self._started = False

    def _new(self):
        if self.coding in _GZIP:
            return zlib.decompressobj(16 + zlib.MAX_WBITS)
        if self.coding == "deflate":
            return zlib.decompressobj(zlib.MAX_WBITS)  # zlib-wrapped; a raw deflate stream is tried on the first error
        return None

    def _over(self) -> FeedRefused:
        return FeedRefused("too_large", f"the answer is over the feed's cap of {self.cap} bytes")

    def add(self, data: bytes) -> None:
        self.raw += len(data)
        if self.raw > self.cap:
            raise FeedRefused("too_large", f"the answer is over the feed's cap of {self.cap} bytes (on the wire)")
        if self._decoder is None:
            self.body += data
            if len(self.body) > self.cap:
                raise self._over()
            return
        try:
            self._inflate(data)
        except zlib.error as exc:
            if self.coding == "deflate" and not self._started:  # some servers send raw deflate
                self._decoder = zlib.decompressobj(-zlib.MAX_WBITS)
                self._started = True
                try:
                    self._inflate(data)
                    return
                except zlib.error:
                    pass
            raise FeedRefused("malformed", f"the {self.coding} body does not decompress: {exc}") from exc

    def _inflate(self, data: bytes) -> None:
        while data:
            if self._decoder.eof:
                if self.coding not in _GZIP:
                    return  # after a deflate stream's end: nothing more is read
                self._decoder = self._new()  # the next member of a multi-member gzip
            # Never more than what is left under the cap (+1 to see it passed): a bomb stops here, at the cap.
            out = self._decoder.decompress(data, self.cap - len(self.body) + 1)
            self._started = True
            self.body += out
            if len(self.body) > self.cap:
                raise self._over()
            data = self._decoder.unconsumed_tail or (self._decoder.unused_data if self._decoder.eof else b"")
            if not out and not data:
                return

    def finish(self) -> bytes:
        if self._decoder is not None:
            try:
                self.body += self._decoder.flush(self.cap - len(self.body) + 1)
            except zlib.error as exc:
                raise FeedRefused("malformed", f"the {self.coding} body does not decompress: {exc}") from exc
            if len(self.body) > self.cap:
                raise self._over()
            if self.raw and not self._decoder.eof:
                raise FeedRefused("malformed", f"the {self.coding} body ends before its end")
        return bytes(self.body)


# --- targets and redirects ---------------------------------------------------------------------------------------
def _origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or (443 if scheme == "https" else 80)


def _not_public(address: str) -> str | None:
    """Why an address may not be fetched from (None: a public address)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for test, what in ((ip.is_loopback, "loopback"), (ip.is_link_local, "link-local"),
                       (ip.is_multicast, "multicast"), (ip.is_unspecified, "unspecified"),
                       (ip.is_private, "private"), (ip.is_reserved, "reserved")):
        if test:
            return what
    if not ip.is_global:
        return "not a public"
    return None


def check_target(feed: FeedConfig, url: str) -> None:
    """FetchError unless ``url`` is http(s) and every address its host resolves to is public or inside one of the
    feed's ``allow_networks``. (httpx resolves the name again to connect: a name whose answer changes in between
    is not caught here.)"""
    scheme, host, port = _origin(url)
    if scheme not in ("http", "https") or not host:
        raise FetchError(f"refused target {redacted(url)}: only http and https URLs with a host")
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)}
    except (OSError, UnicodeError) as exc:
        raise FetchError(f"cannot resolve {host}: {exc}") from exc
    allowed = [ipaddress.ip_network(cidr, strict=False) for cidr in feed.allow_networks]
    for address in sorted(addresses):
        why = _not_public(str(address))
        if why and not any(_inside(str(address), net) for net in allowed):
            raise FetchError(f"refused target {redacted(url)}: {host} is {address}, a {why} address outside the "
                             f"feed's allow_networks")


def _inside(address: str, network) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.version == network.version and ip in network


def _redirect_target(feed: FeedConfig, current: str, location: str | None) -> str:
    if not location:
        raise FetchError(f"a redirect without a Location from {redacted(current)}")
    target = urljoin(current, location.strip())
    now, then = urlsplit(current), urlsplit(target)
    scheme = then.scheme.lower()
    if scheme != now.scheme.lower() and not (now.scheme.lower() == "http" and scheme == "https"):
        raise FetchError(f"refused redirect from {redacted(current)} to {redacted(target)}: another scheme (only "
                         f"the same, or http to https)")
    own = (urlsplit(feed.location).hostname or "").lower()
    allowed = {own} | {h.strip().lower().rstrip(".") for h in feed.redirect_hosts}
    if (then.hostname or "").lower().rstrip(".") not in allowed:
        raise FetchError(f"refused redirect from {redacted(current)} to {redacted(target)}: the host is neither "
                         f"the feed's nor in its redirect_hosts")
    return target


# --- the request ---------------------------------------------------------------------------------------------------
def location_of(feed: FeedConfig) -> str:
    """The feed's URL with the query parameters filled from the environment (``query_env``)."""
    if not feed.query_env:
        return feed.location
    parts = urlsplit(feed.location)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in feed.query_env]
    for name, variable in feed.query_env.items():
        value = os.environ.get(variable)
        if not value:
            raise FetchError(f"the variable {variable} (the feed's query parameter {name}) is not set")
        query.append((name, value))
    return parts._replace(query=urlencode(query)).geturl()


def _auth(feed: FeedConfig) -> dict[str, str]:
    if feed.auth_header and feed.auth_env:
        value = os.environ.get(feed.auth_env)
        if not value:
            raise FetchError(f"the variable {feed.auth_env} (the feed's {feed.auth_header}) is not set")
        return {feed.auth_header: value}
    return {}


def _secrets(feed: FeedConfig, url: str) -> list[str]:
    values = [v for _, v in parse_qsl(urlsplit(url).query) if len(v) >= 4]
    values += [v for v in _auth(feed).values() if v]
    parts = urlsplit(url)
    if parts.password:
        values.append(parts.password)
    return sorted(set(values), key=len, reverse=True)


def _scrub(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def _fetch_url(feed: FeedConfig) -> bytes:
    deadline = time.monotonic() + deadline_of(feed)
    url = location_of(feed)
    secrets = _secrets(feed, url)
    try:
        return _follow(feed, url, deadline)
    except FetchError as exc:
        raise FetchError(_scrub(str(exc), secrets)) from None
    except httpx.HTTPError as exc:
        raise FetchError(_scrub(f"{type(exc).__name__} fetching {redacted(feed.location)}: {exc}", secrets)) \
            from None


def _follow(feed: FeedConfig, url: str, deadline: float) -> bytes:
    origin = _origin(url)
    auth = _auth(feed)
    transport = httpx.HTTPTransport(retries=feed.retries, verify=feed.verify_tls)  # connection failures
    headers = {"Accept": ACCEPT.get(feed.kind, "*/*"), "User-Agent": "soc-suite-feeds/1",
               "Accept-Encoding": ACCEPT_ENCODING}
    with httpx.Client(transport=transport, timeout=httpx.Timeout(feed.timeout_seconds), follow_redirects=False,
                      headers=headers) as client:
        for _hop in range(MAX_REDIRECTS + 1):
            check_target(feed, url)
            # The auth header only to the location's own origin (scheme, host, port), never to a redirect's.
            answer = _get(client, feed, url, auth if _origin(url) == origin else {}, deadline)
            if isinstance(answer, bytes):
                return answer
            url = _redirect_target(feed, url, answer[1])
    raise FetchError(f"more than {MAX_REDIRECTS} redirects from {redacted(feed.location)}")


def _left(deadline: float, feed: FeedConfig) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise FetchError(f"the fetch of {redacted(feed.location)} took longer than its deadline of "
                         f"{deadline_of(feed):g} s")
    return left


def _get(client: httpx.Client, feed: FeedConfig, url: str, headers: dict, deadline: float) -> bytes | tuple:
    """The body, or ("redirect", Location)."""
    for attempt in range(feed.retries + 1):
        _left(deadline, feed)
        try:
            with client.stream("GET", url, headers=headers) as response:
                if response.status_code in REDIRECT_STATUS:
                    return ("redirect", response.headers.get("location"))
                if response.status_code in RETRY_STATUS and attempt < feed.retries:
                    _pause(attempt, deadline, feed)
                    continue
                if response.status_code >= 400:
                    raise FetchError(f"HTTP {response.status_code} from {redacted(url)}")
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > feed.max_bytes:
                    raise FeedRefused("too_large", f"the answer declares {declared} bytes, over the feed's "
                                                   f"cap of {feed.max_bytes}")
                body = BoundedBody(response.headers.get("content-encoding"), feed.max_bytes)
                for chunk in response.iter_raw():  # raw, as it comes: decompressed by BoundedBody, never by httpx
                    body.add(chunk)
                    _left(deadline, feed)
                return body.finish()
        except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError):
            if attempt >= feed.retries:
                raise
            _pause(attempt, deadline, feed)
    raise FetchError(f"no answer from {redacted(url)}")


def _pause(attempt: int, deadline: float, feed: FeedConfig) -> None:
    wait = min(2.0 ** attempt, 10.0)
    if wait >= _left(deadline, feed):
        raise FetchError(f"the fetch of {redacted(feed.location)} would pass its deadline of {deadline_of(feed):g} s "
                         f"before the next try")
    time.sleep(wait)
