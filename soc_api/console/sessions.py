"""Server-side console sessions.

The cookie carries a random token (32 bytes); the store keeps only its SHA-256 (the session's document id in
``console_sessions``), so whoever reads the store cannot take over a session. A session ends
``console.session_seconds`` after sign-in whatever happens (absolute expiry), after ``console.idle_seconds`` without
a request (idle timeout; the last use is written back at most every ``console.touch_seconds``), at sign-out, when its
user is disabled or removed (checked at every request), and when its user's password changes. Each session has its
own CSRF token (``csrf``), which every state-changing console request must present.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import threading
import time
from datetime import datetime, timezone

from soc import ecs
from soc.storage.base import DocumentQuery, Store
from soc_api.keys import USERS
from soc_api.settings import ConsoleConfig

log = logging.getLogger(__name__)
SESSIONS = "console_sessions"
TOKEN_BYTES = 32
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{20,100}$")


def now() -> float:
    """The clock sessions are measured by (tests move it)."""
    return time.time()


def _iso(moment: float) -> str:
    return ecs.utc_iso(datetime.fromtimestamp(moment, timezone.utc))


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class _Ended:
    """Sessions ended by this process, remembered until they would have expired anyway: a request that read the
    session just before its sign-out and writes its last use back just after must not bring it back."""

    def __init__(self) -> None:
        self._until: dict[str, float] = {}
        self._lock = threading.Lock()

    def add(self, session_id: str, until: float) -> None:
        with self._lock:
            moment = now()
            if len(self._until) > 10_000:
                self._until = {k: v for k, v in self._until.items() if v > moment}
            self._until[session_id] = until

    def __contains__(self, session_id: str) -> bool:
        until = self._until.get(session_id)
        return until is not None and until > now()


ENDED = _Ended()


def create(store: Store, account: dict, config: ConsoleConfig, *, address: str | None = None,
           user_agent: str = "") -> tuple[str, dict]:
    """A new session for ``account``: (the token for the cookie, the stored record). Always a new token: a session id
    an attacker planted before sign-in is never the one signed in."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    moment = now()
    record = {
        "id": digest(token),
        "sid": secrets.token_hex(8),  # names the session in audit records and logs (the id is the token's hash)
        "user": account["id"],
        "csrf": secrets.token_urlsafe(32),
        "created": _iso(moment),
        "created_ts": moment,
        "expires_ts": moment + config.session_seconds,
        "last_seen_ts": moment,
        "client": {"ip": address, "user_agent": (user_agent or "")[:300]},
    }
    store.put_documents(SESSIONS, [record])
    return token, record


def lookup(store: Store, token: str | None, config: ConsoleConfig) -> tuple[dict, dict] | None:
    """(session record, user record) for a cookie's token, or None: unknown, ended, expired, idle too long, or its
    user disabled or gone (the session is then removed)."""
    if not token or not _TOKEN.match(token):
        return None
    session_id = digest(token)
    if session_id in ENDED:
        return None
    record = store.get_document(SESSIONS, session_id)
    if record is None:
        return None
    moment = now()
    reason = None
    if moment >= float(record.get("expires_ts", 0)):
        reason = "expired"
    elif moment - float(record.get("last_seen_ts", 0)) >= config.idle_seconds:
        reason = "idle"
    account = None
    if reason is None:
        account = store.get_document(USERS, record.get("user", ""))
        if account is None:
            reason = "user removed"
        elif account.get("disabled"):
            reason = "user disabled"
    if reason is not None:
        log.info("console session %s of %s ended: %s", record.get("sid"), record.get("user"), reason)
        end_record(store, record)
        return None
    if moment - float(record["last_seen_ts"]) >= config.touch_seconds:
        record["last_seen_ts"] = moment
        if session_id not in ENDED:
            store.put_documents(SESSIONS, [record])
    return record, account


def end_record(store: Store, record: dict) -> None:
    ENDED.add(record["id"], float(record.get("expires_ts", now())) + 60)
    store.delete_document(SESSIONS, record["id"])


def end(store: Store, token: str | None) -> dict | None:
    """Sign-out: the session of ``token`` is removed (its record, or None if there was none)."""
    if not token or not _TOKEN.match(token):
        return None
    record = store.get_document(SESSIONS, digest(token))
    if record is None:
        return None
    end_record(store, record)
    return record


def of_user(store: Store, user_id: str, limit: int = 1000) -> list[dict]:
    return store.find_documents(SESSIONS, DocumentQuery(terms={"user": user_id}, limit=limit))


def end_all_for(store: Store, user_id: str) -> int:
    """Every session of a user ends (a new password, an administrator's decision)."""
    ended = 0
    while True:
        found = of_user(store, user_id, limit=500)
        for record in found:
            end_record(store, record)
        ended += len(found)
        if len(found) < 500:
            return ended


def purge(store: Store, config: ConsoleConfig, limit: int = 200) -> int:
    """Remove sessions that expired or sat idle (called at sign-in, so the collection does not grow)."""
    moment = now()
    stale = store.find_documents(SESSIONS, DocumentQuery(ranges={"expires_ts": (None, moment)}, limit=limit))
    stale += store.find_documents(SESSIONS, DocumentQuery(
        ranges={"last_seen_ts": (None, moment - config.idle_seconds)}, limit=limit))
    seen = set()
    for record in stale:
        if record["id"] not in seen:
            seen.add(record["id"])
            store.delete_document(SESSIONS, record["id"])
    return len(seen)
