"""Console passwords, sign-in back-off and lockout, and the audit records of sign-in.

Passwords are hashed with argon2id (argon2-cffi; RFC 9106's low-memory profile by default, ``console.passwords``)
and kept in their own collection (``console_credentials``), which no API route reads. A hash made with other
parameters than the configured ones is made again at the next successful sign-in. A sign-in for a user that does
not exist, has no password or is disabled is verified against a dummy hash, so it costs the same time and gets the
same answer as a wrong password: the page never tells whether a user exists. At most
``console.passwords.max_concurrent`` hashes are computed at once (each takes its memory), so a flood of sign-ins
waits instead of exhausting the server's memory.

Failed sign-ins are counted per user name (whether the user exists or not) and per client address
(``console.lockout``, collection ``console_signin_throttle``): past ``free_failures`` each further attempt must wait
``first_wait_seconds * 2^(failures - free_failures)`` after the last failure (at most ``max_wait_seconds``); at
``lock_failures`` the name (or address) is refused for ``lock_seconds``; failures are forgotten ``lock_seconds``
after the last one. An attempt is counted before its password is checked, so parallel guesses cannot slip past the
count; a success takes its own count back (and clears the user name's). An attempt refused by the back-off is not
checked at all, whatever its password.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import unicodedata
import uuid
from dataclasses import dataclass

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from fastapi import Request

from soc import ecs
from soc.storage.base import Store
from soc_api.console import sessions
from soc_api.deps import write_audit
from soc_api.keys import USER_ID, USERS, Principal
from soc_api.settings import ConsoleLockoutConfig, ConsolePasswordConfig

log = logging.getLogger(__name__)
CREDENTIALS = "console_credentials"
THROTTLE = "console_signin_throttle"
MAX_PASSWORD_CHARS = 1024


class PasswordError(ValueError):
    pass


# --- passwords -----------------------------------------------------------------------------------------------------
_HASHERS: dict[tuple, tuple[PasswordHasher, str]] = {}
_SEMAPHORES: dict[int, threading.BoundedSemaphore] = {}
_GUARD = threading.Lock()


def _hasher(config: ConsolePasswordConfig) -> tuple[PasswordHasher, str]:
    """The hasher for these parameters, and a dummy hash made with it (what unknown users are checked against)."""
    params = (config.time_cost, config.memory_kib, config.parallelism)
    with _GUARD:
        found = _HASHERS.get(params)
        if found is None:
            hasher = PasswordHasher(time_cost=config.time_cost, memory_cost=config.memory_kib,
                                    parallelism=config.parallelism, hash_len=32, salt_len=16, type=Type.ID)
            found = _HASHERS[params] = (hasher, hasher.hash(uuid.uuid4().hex))
        return found


def _slot(config: ConsolePasswordConfig) -> threading.BoundedSemaphore:
    with _GUARD:
        return _SEMAPHORES.setdefault(config.max_concurrent, threading.BoundedSemaphore(config.max_concurrent))


def _normal(password: str) -> str:
    # The same Vietnamese text typed on two keyboards may come composed or decomposed: one form for both.
    return unicodedata.normalize("NFC", password)


def check_password_rules(user_id: str, password: str, config: ConsolePasswordConfig) -> None:
    password = _normal(password)
    if len(password) < config.min_length:
        raise PasswordError(f"a password needs at least {config.min_length} characters")
    if len(password) > MAX_PASSWORD_CHARS:
        raise PasswordError(f"a password may have at most {MAX_PASSWORD_CHARS} characters")
    if password.strip().lower() == user_id.lower() or len(set(password)) < 4:
        raise PasswordError("this password is too easy to guess")


def set_password(store: Store, user_id: str, password: str, config: ConsolePasswordConfig, *,
                 by: str | None = None) -> dict:
    """Give a user a (new) console password; every session the user had ends. Returns the user record."""
    account = store.get_document(USERS, user_id)
    if account is None:
        raise PasswordError(f"no user {user_id!r}")
    check_password_rules(user_id, password, config)
    hasher, _ = _hasher(config)
    with _slot(config):
        hashed = hasher.hash(_normal(password))
    store.put_documents(CREDENTIALS, [{"id": user_id, "hash": hashed, "updated": ecs.now_iso(), "updated_by": by}])
    sessions.end_all_for(store, user_id)
    return account


def has_password(store: Store, user_id: str) -> bool:
    return store.get_document(CREDENTIALS, user_id) is not None


def verify_user(store: Store, user_id: str, password: str, config: ConsolePasswordConfig) -> dict | None:
    """The user's record when ``password`` is theirs and the user may sign in; None otherwise, after the same work
    whatever the reason."""
    account = store.get_document(USERS, user_id) if USER_ID.match(user_id or "") else None
    credential = store.get_document(CREDENTIALS, user_id) if account is not None else None
    hasher, dummy = _hasher(config)
    password = _normal(password)[:MAX_PASSWORD_CHARS]
    with _slot(config):
        stored = credential.get("hash") if credential else None
        try:
            hasher.verify(stored or dummy, password)
            matched = stored is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            matched = False
        rehash = matched and hasher.check_needs_rehash(stored)
        if rehash:
            credential = dict(credential, hash=hasher.hash(password), updated=ecs.now_iso(), updated_by="rehash")
    if not matched or account is None or account.get("disabled"):
        return None
    if rehash:
        store.put_documents(CREDENTIALS, [credential])
    return account


# --- back-off and lockout ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Refusal:
    seconds: float
    locked: bool
    by: str  # "user" or "address"


_THROTTLE_LOCK = threading.Lock()


def _throttle_id(kind: str, value: str) -> str:
    return f"{kind}-{hashlib.sha256(value.encode()).hexdigest()[:40]}"


class Throttle:
    """Counts of failed sign-ins per user name and per client address (see the module's text)."""

    def __init__(self, store: Store, config: ConsoleLockoutConfig):
        self.store = store
        self.config = config

    def _entries(self, user_name: str, address: str | None) -> list[tuple[str, str, dict, int, int]]:
        c = self.config
        wanted = [("user", user_name, c.free_failures, c.lock_failures)]
        if address:
            wanted.append(("address", address, c.address_free_failures, c.address_lock_failures))
        out = []
        moment = sessions.now()
        for kind, value, free, lock in wanted:
            doc_id = _throttle_id(kind, value)
            record = self.store.get_document(THROTTLE, doc_id)
            if record is None or (moment - float(record.get("last_failure_ts", 0)) >= c.lock_seconds
                                  and float(record.get("locked_until_ts", 0)) <= moment):
                record = {"id": doc_id, "kind": kind, "failures": 0, "last_failure_ts": 0.0, "locked_until_ts": 0.0}
            # Names only as typed into a valid user-name field (a password typed there is never kept).
            if kind == "user":
                record["name"] = value if USER_ID.match(value) else None
            else:
                record["address"] = value
            out.append((kind, value, record, free, lock))
        return out

    def wait(self, failures: int, free: int) -> float:
        if failures < free:
            return 0.0
        return min(self.config.max_wait_seconds, self.config.first_wait_seconds * 2 ** (failures - free))

    def begin(self, user_name: str, address: str | None) -> Refusal | None:
        """Before a password is checked: a refusal (how long to wait, and whether it is a lock), or None, and the
        attempt is counted as failed until :meth:`succeeded` says otherwise."""
        with _THROTTLE_LOCK:
            moment = sessions.now()
            entries = self._entries(user_name, address)
            refusal = None
            for kind, _, record, free, _lock in entries:
                locked_until = float(record.get("locked_until_ts", 0))
                if locked_until > moment:
                    found = Refusal(locked_until - moment, True, kind)
                elif int(record["failures"]) >= free:
                    last = min(float(record["last_failure_ts"]), moment)  # a clock set back waits no longer
                    allowed_at = last + self.wait(int(record["failures"]), free)
                    found = Refusal(allowed_at - moment, False, kind) if allowed_at > moment else None
                else:
                    found = None
                if found and (refusal is None or found.locked > refusal.locked or
                              (found.locked == refusal.locked and found.seconds > refusal.seconds)):
                    refusal = found
            if refusal is not None:
                return refusal
            for kind, _, record, _free, lock in entries:
                record["failures"] = int(record["failures"]) + 1
                record["last_failure_ts"] = moment
                record["last_failure"] = ecs.now_iso()
                if record["failures"] >= lock:
                    record["locked_until_ts"] = moment + self.config.lock_seconds
            self.store.put_documents(THROTTLE, [e[2] for e in entries])
            return None

    def succeeded(self, user_name: str, address: str | None) -> None:
        """The password was right: the user name's count is cleared, the address's count takes this attempt back."""
        with _THROTTLE_LOCK:
            self.store.delete_document(THROTTLE, _throttle_id("user", user_name))
            if address:
                for kind, _, record, _free, lock in self._entries(user_name, address):
                    if kind != "address":
                        continue
                    record["failures"] = max(0, int(record["failures"]) - 1)
                    if record["failures"] < lock:
                        record["locked_until_ts"] = 0.0
                    self.store.put_documents(THROTTLE, [record])

    def locked_now(self, user_name: str, address: str | None) -> bool:
        """Whether the last failure (already counted) locked the name or the address."""
        moment = sessions.now()
        return any(float(e[2].get("locked_until_ts", 0)) > moment for e in self._entries(user_name, address))


def unlock(store: Store, user_name: str) -> bool:
    """Clear the failed sign-ins of a user name (an administrator, after checking with the person)."""
    return store.delete_document(THROTTLE, _throttle_id("user", user_name))


# --- audit ---------------------------------------------------------------------------------------------------------
def actor_of(principal: Principal | None, user_name: str | None = None) -> dict:
    if principal is None:
        name = user_name if user_name and USER_ID.match(user_name) else None
        return {"key_id": None, "user": name, "name": name, "role": None, "agency": None}
    return {"key_id": principal.key_id, "user": principal.user, "name": principal.name, "role": principal.role,
            "agency": principal.agency}


def audit(request: Request, actor: dict, outcome: str, detail: str | None = None, *, action: str | None = None
          ) -> None:
    """An audit record in the shape the API writes for its changes (soc_api/deps.py ``write_audit``)."""
    write_audit(request, actor, outcome, detail, action=action)
