"""`soc field forward`: a sealed case sent to the provincial SOC once there is a link, where it becomes an incident
of its agency with its evidence and timeline (the receiving end: soc_api/routers/field_cases.py; the protocol is in
docs/field-kit.md, "Forwarding a case to the province").

1. announce: the manifest's exact bytes and its signature. The province answers with the case's id (derived from the
   manifest: the same sealed case is always the same case) and what it already holds of each file;
2. every file of the manifest it does not hold as this laptop has it: PUT by name, the raw body streamed from disk,
   with the SHA-256 of what is sent (a file is read twice, once to hash it, once to send it, never held in memory);
3. complete: the province verifies the case and makes or updates its incident; its verdict is printed.

At least once, resumable: a network error, a 5xx or a 429 is tried again with a growing pause (Retry-After
honoured) until ``retry_seconds`` pass without progress — so the command can be started before the link is up. What
the province acknowledged is kept beside the case, never in it (the sealed case does not change):
``$XDG_STATE_HOME/soc-suite/field/forward/<case id>.json``; on a new run the province's own answer to the announce
decides what is sent again. The API key is read from an environment variable or a 0600 file, never written
anywhere and never printed.
"""

from __future__ import annotations

import hashlib
import json
import os
import ssl
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import quote, urlsplit

import httpx

from field.case import MANIFEST, SIGNATURE, now_iso, open_case
from field.errors import FieldError
from field.keys import _inside as inside
from field.manifest import MAX_MANIFEST, file_hash, parse_manifest, read_small

API = "/api/v1/field-cases"
DEFAULT_RETRY_SECONDS = 3600.0
FIRST = ("case.json", "collection.jsonl", "notes.jsonl", "timeline.jsonl", "timeline.csv")  # small, and what the
# province's incident is made of: sent before the evidence
CHUNK = 256 * 1024
MAX_PAUSE = 30.0
HASH_MISMATCH_TRIES = 3  # a file that changes while it is sent is hashed again this many times


class ForwardRefused(FieldError):
    """The province refused something (4xx other than 429), or answered what this client cannot use."""


class GaveUp(FieldError):
    """The province could not be reached, or kept failing, for ``retry_seconds`` in a row."""


@dataclass
class Link:
    url: str  # https://province:8000
    api_key: str = field(repr=False)
    verify: ssl.SSLContext | bool = True
    retry_seconds: float = DEFAULT_RETRY_SECONDS
    limit_rate: float | None = None  # bytes a second
    client_cert: bool = False  # a TLS client certificate is in ``verify``
    timeout: float = 120.0


@dataclass
class Outcome:
    case_id: str
    agency: str
    answer: dict = field(default_factory=dict)  # the province's case after complete
    sent: list[str] = field(default_factory=list)
    sent_bytes: int = 0
    already: int = 0  # files the province held already
    changed_here: list[str] = field(default_factory=list)  # differ from the manifest on this laptop
    missing_here: list[str] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (file, why) the province refused

    @property
    def verification(self) -> dict:
        return self.answer.get("verification") or {}

    @property
    def ok(self) -> bool:
        return bool(self.verification.get("ok")) and bool(self.verification.get("key_trusted"))


# --- what is kept beside the case --------------------------------------------------------------------------------
def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "soc-suite" / "field" / "forward"


class State:
    """Which files the province acknowledged (name → SHA-256), for one case and one province."""

    def __init__(self, path: Path, case_id: str, url: str):
        self.path, self.case_id, self.url = path, case_id, url
        self.acknowledged: dict[str, str] = {}
        self.completed: str | None = None
        try:
            kept = json.loads(path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            kept = None
        if isinstance(kept, dict) and kept.get("case_id") == case_id and kept.get("url") == url:
            self.acknowledged = {k: v for k, v in (kept.get("acknowledged") or {}).items() if isinstance(v, str)}
            self.completed = kept.get("completed")

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"case_id": self.case_id, "url": self.url, "acknowledged": self.acknowledged,
                       "completed": self.completed, "updated": now_iso()}, fh, ensure_ascii=False)
        os.replace(tmp, self.path)


# --- the key and TLS ---------------------------------------------------------------------------------------------
def api_key(env: str | None, key_file: Path | None, case_dir: Path) -> str:
    """The API key from a 0600 file (never one inside the case) or an environment variable."""
    if key_file is not None:
        if inside(key_file.absolute(), case_dir.absolute()):
            raise FieldError(f"key file {key_file}: an API key is never kept inside the case folder")
        try:
            fd = os.open(key_file, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError as exc:
            raise FieldError(f"key file {key_file}: cannot read: {exc.strerror}") from exc
        with os.fdopen(fd, "r", encoding="utf-8") as fh:
            st = os.fstat(fh.fileno())
            if not stat.S_ISREG(st.st_mode) or st.st_mode & 0o077:
                raise FieldError(f"key file {key_file}: must be a regular file only its owner can read (chmod 600)")
            key = fh.read(4096).strip()
    else:
        key = (os.environ.get(env or "SOC_API_KEY") or "").strip()
        if not key:
            raise FieldError(f"no API key: set {env or 'SOC_API_KEY'} or give --key-file")
    if not key.isascii() or not key.isprintable() or " " in key:
        raise FieldError("the API key holds characters a key cannot have")
    return key


def tls(ca_file: Path | None, client_cert: Path | None, client_key: Path | None) -> ssl.SSLContext | bool:
    if (client_cert is None) != (client_key is None):
        raise FieldError("--client-cert and --client-key go together")
    if ca_file is None and client_cert is None:
        return True  # the system's trusted authorities
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    if client_cert is not None:
        context.load_cert_chain(str(client_cert), str(client_key))
    return context


# --- talking to the province -------------------------------------------------------------------------------------
class _Province:
    """Requests to the province, each tried again on a network error, a 5xx or a 429 until ``retry_seconds`` pass."""

    def __init__(self, link: Link, say: Callable[[str], None]):
        self.link, self.say = link, say
        self.client = httpx.Client(base_url=link.url.rstrip("/"), verify=link.verify,
                                   timeout=httpx.Timeout(link.timeout, connect=10.0),
                                   headers={"X-API-Key": link.api_key, "User-Agent": "soc-field-forward/1"})
        # A province that asks for a client certificate closes a connection without one, with no answer: from here
        # that looks like a cut link (and is tried again), so say what else it may be.
        self.hint = "" if link.client_cert or not link.url.startswith("https") else \
            "does the province ask for a client certificate? give --client-cert and --client-key"

    def close(self) -> None:
        self.client.close()

    def call(self, method: str, path: str, what: str, body: Callable[[], object] | None = None,
             headers: dict | None = None, on_retry: Callable[[], None] | None = None,
             refusals: tuple[int, ...] = ()) -> httpx.Response:
        """The answer (2xx, or one of ``refusals``); ForwardRefused on another 4xx; GaveUp when time runs out."""
        deadline = time.monotonic() + self.link.retry_seconds
        pause = 0.5
        while True:
            wait = pause
            try:
                response = self.client.request(method, path, content=body() if body else None, headers=headers)
            except httpx.TransportError as exc:  # refused, reset, timed out, cut off: the link is not there (yet)
                refused = _tls_refusal(exc)
                if refused:  # a certificate refused (theirs or ours) is not a link problem: trying again won't help
                    raise ForwardRefused(f"{what}: TLS refused: {refused}") from exc
                problem = f"{type(exc).__name__}: {str(exc)[:200] or 'no answer'}"
                if isinstance(exc, httpx.RemoteProtocolError) and self.hint:
                    problem += f" ({self.hint})"
            else:
                if response.status_code < 400 or response.status_code in refusals:
                    return response
                if response.status_code != 429 and response.status_code < 500:
                    raise ForwardRefused(f"the province refused {what}: {response.status_code} {_detail(response)}")
                problem = f"{response.status_code} {_detail(response)}"
                after = response.headers.get("retry-after", "")
                if after.isdigit():
                    wait = max(wait, min(float(after), MAX_PAUSE * 4))
            if on_retry is not None:
                on_retry()
            if time.monotonic() + wait > deadline:
                raise GaveUp(f"{what}: gave up after {self.link.retry_seconds:g} s without progress; last: {problem}")
            self.say(f"{what}: {problem}; trying again in {wait:.1f} s")
            time.sleep(wait)
            pause = min(pause * 2, MAX_PAUSE)


def _tls_refusal(exc: BaseException) -> str | None:
    """Why TLS refused the connection when a certificate was refused — the province's (not signed by the CA given)
    or this laptop's (an alert from the province) — else None (a cut link fails the handshake too, and is retried)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, ssl.SSLCertVerificationError):
            return f"the province's certificate: {exc.verify_message or exc.reason}"
        if isinstance(exc, ssl.SSLError) and "ALERT" in str(exc.reason or "").upper():
            return f"the province refused this laptop's certificate ({exc.reason})"
        exc = exc.__cause__ or exc.__context__
    return None


def _json(response: httpx.Response) -> dict:
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise ForwardRefused(f"the province's answer ({response.status_code}) is not the suite's JSON: is "
                             f"{response.url.scheme}://{response.url.netloc.decode()} the suite's API?")
    return answer


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = response.text
    return str(detail)[:500]


class _Body:
    """A file's bytes streamed from disk for one attempt, counted (for the progress bar) and, when asked, paced."""

    def __init__(self, path: Path, rate: float | None, advance: Callable[[int], None]):
        self.path, self.rate, self.advance = path, rate, advance
        self.sent = 0

    def __iter__(self) -> Iterator[bytes]:
        started = time.monotonic()
        chunk = CHUNK if not self.rate else max(4096, min(CHUNK, int(self.rate / 4)))
        fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as fh:
            while data := fh.read(chunk):
                yield data
                self.sent += len(data)
                self.advance(len(data))
                if self.rate:
                    ahead = self.sent / self.rate - (time.monotonic() - started)
                    if ahead > 0:
                        time.sleep(ahead)

    def rewind(self) -> None:
        """A failed attempt's bytes are not sent: taken back from the progress bar."""
        self.advance(-self.sent)
        self.sent = 0


def _file_url(case_id: str, name: str) -> str:
    return f"{API}/{case_id}/files/{quote(name, safe='/')}"


def _order(names) -> list[str]:
    return sorted(names, key=lambda n: (FIRST.index(n) if n in FIRST else len(FIRST), n))


# --- forwarding ----------------------------------------------------------------------------------------------------
def forward(case_dir: Path, link: Link, *, state_file: Path | None = None, progress=None,
            say: Callable[[str], None] = lambda message: None) -> Outcome:
    """Send a sealed case to the province and have it verified there. ``progress``: a rich Progress (or None)."""
    info = open_case(case_dir)
    if not (case_dir / MANIFEST).exists() or not (case_dir / SIGNATURE).exists():
        raise FieldError(f"case {case_dir} is not sealed (`soc field seal` first): only a sealed case is forwarded")
    data = read_small(case_dir / MANIFEST, MAX_MANIFEST)
    signature = read_small(case_dir / SIGNATURE, 4096).strip()
    manifest, expected = parse_manifest(data)
    case_id = hashlib.sha256(data).hexdigest()[:32]
    address = urlsplit(link.url)
    if address.scheme not in ("http", "https") or not address.hostname:
        raise FieldError(f"--to {link.url}: give the province's address as https://host:port")
    state_path = state_file or default_state_dir() / f"{case_id}.json"
    if inside(state_path.absolute(), case_dir.absolute()):
        raise FieldError(f"state file {state_path}: kept beside the case, never inside it (the case is sealed)")
    state = State(state_path, case_id, link.url.rstrip("/"))
    outcome = Outcome(case_id=case_id, agency=str(manifest.get("agency") or info.get("agency")))

    # 1. What this laptop has of each file (one read of each), before anything is sent.
    local: dict[str, tuple[int, str]] = {}
    checking = _task(progress, "checking the case", sum(e["size"] for e in expected.values()))
    for name in _order(expected):
        hashed = file_hash(case_dir / name)
        _advance(progress, checking, expected[name]["size"])
        if hashed is None:
            outcome.missing_here.append(name)
            continue
        local[name] = hashed
        if hashed != (expected[name]["size"], expected[name]["sha256"]):
            outcome.changed_here.append(name)
    for name in outcome.changed_here:
        say(f"CHANGED since the case was sealed: {name} (sent as it is: the province will report it)")
    for name in outcome.missing_here:
        say(f"MISSING from the case folder: {name} (the province will report it)")

    province = _Province(link, say)
    try:
        # 2. Announce; the answer says what the province holds already.
        answer = _json(province.call("POST", API, "announcing the case", body=lambda: data,
                                     headers={"Content-Type": "application/octet-stream",
                                              "X-Field-Signature": signature.decode("ascii", "replace")}))
        if answer.get("id") != case_id:
            raise ForwardRefused(f"the province named the case {str(answer.get('id'))[:80]!r}, not {case_id} "
                                 "(the SHA-256 of its manifest): is this the suite's API?")
        held = {f["name"]: {f.get("received_sha256"), *(f.get("offered_sha256") or [])}
                for f in answer.get("files") or []}
        to_send = []
        for name in _order(local):
            if local[name][1] in held.get(name, set()):
                outcome.already += 1
                state.acknowledged[name] = local[name][1]
            else:
                if state.acknowledged.get(name) == local[name][1]:
                    say(f"{name}: acknowledged before, but the province does not hold it now: sending again")
                state.acknowledged.pop(name, None)
                to_send.append(name)
        state.save()

        # 3. Each file the province does not hold as this laptop has it.
        sending = _task(progress, "sending to the province", sum(local[n][0] for n in to_send))
        for name in to_send:
            _send(province, case_dir, case_id, name, local, link, outcome, state,
                  lambda n: _advance(progress, sending, n))

        # 4. Complete: verified there, the incident made or updated.
        outcome.answer = _json(province.call("POST", f"{API}/{case_id}/complete", "completing the case"))
        state.completed = now_iso()
        state.save()
    finally:
        province.close()
    return outcome


def _send(province: _Province, case_dir: Path, case_id: str, name: str, local: dict, link: Link, outcome: Outcome,
          state: State, advance: Callable[[int], None]) -> None:
    for _ in range(HASH_MISMATCH_TRIES):
        size, sha = local[name]
        body = _Body(case_dir / name, link.limit_rate, advance)
        answer = province.call("PUT", _file_url(case_id, name), f"sending {name}", body=lambda: body,
                               headers={"Content-Type": "application/octet-stream", "Content-Length": str(size),
                                        "X-Content-SHA256": sha},
                               on_retry=body.rewind, refusals=(400, 413))
        if answer.status_code == 400:
            # The body did not hash to what was declared: damaged on the way, or the file changed since it was
            # hashed. Hash it again and send it again.
            body.rewind()
            hashed = file_hash(case_dir / name)
            if hashed is None:
                outcome.refused.append((name, "vanished while it was sent"))
                return
            local[name] = hashed
            continue
        if answer.status_code == 413:
            outcome.refused.append((name, _detail(answer)))
            return
        outcome.sent.append(name)
        outcome.sent_bytes += size
        state.acknowledged[name] = sha
        state.save()
        return
    outcome.refused.append((name, "its bytes kept changing while it was sent"))


def _task(progress, description: str, total: int):
    return progress.add_task(description, total=total or 1) if progress is not None else None


def _advance(progress, task, n: int) -> None:
    if progress is not None and task is not None:
        progress.advance(task, n)
