"""Users and API keys: a key is shown once, stored only as a hash, and carries its user's role (and agency for
agency users), an expiry and a revocation flag.

A key reads ``soc_<id>_<secret>``. The id finds the record; the secret is checked against its SHA-256 hash in
constant time. Keys are 32 random bytes, so a fast hash is enough (no password-stretching needed: nothing to guess).
Users are documents (collection ``users``); a disabled user's keys stop working. Keys made without a user (the CLI's
``soc keys create``) stand alone, as before.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from soc import ecs
from soc.storage.base import DocumentQuery, Store

# "downstream": a suite of a lower tier (a city's) forwarding to this one; bound, like an agency key, to the agency
# its data belongs under here (tiers/, docs/tiers.md), and a tenant of that agency's subtree.
ROLES = ("admin", "analyst", "network_admin", "agency", "national_centre", "downstream")
TENANT_ROLES = ("agency", "downstream")
USERS = "users"
USER_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


class KeyCreationError(ValueError):
    pass


@dataclass(frozen=True)
class Principal:
    key_id: str
    role: str
    agency: str | None
    name: str
    user: str | None = None
    # A tenant's agency and every agency below it in the agency tree (soc_api/tenancy.py sets it for each request);
    # empty: only its own agency.
    sees: frozenset[str] = frozenset()

    @property
    def is_tenant(self) -> bool:
        """An agency key (or a downstream suite's) sees only its own agency's data and its subtree's."""
        return self.role in TENANT_ROLES

    @property
    def agencies(self) -> frozenset[str]:
        """The agencies a tenant may see (meaningless for other roles, which see all)."""
        return self.sees or frozenset({self.agency} if self.agency else ())

    def may_see(self, agency: str | None) -> bool:
        return not self.is_tenant or (agency is not None and agency in self.agencies)

    @property
    def label(self) -> str:
        return f"{self.user or self.name} (key {self.key_id})"


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _check_role(role: str, agency: str | None, known_agencies: set[str] | None) -> None:
    if role not in ROLES:
        raise KeyCreationError(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
    if role in TENANT_ROLES and not agency:
        raise KeyCreationError(f"a{'n' if role == 'agency' else ''} {role} key needs --agency ID")
    if role not in TENANT_ROLES and agency:
        raise KeyCreationError("only agency and downstream keys are bound to an agency")
    if agency and known_agencies is not None and agency not in known_agencies:
        raise KeyCreationError(f"agency {agency!r} is not in the inventory")


def create_key(store: Store, role: str, *, agency: str | None = None, name: str = "",
               expires_in_days: float | None = None, known_agencies: set[str] | None = None,
               user: str | None = None) -> tuple[str, dict]:
    _check_role(role, agency, known_agencies)
    if expires_in_days is not None and expires_in_days <= 0:
        raise KeyCreationError("expires_in_days must be positive")
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    now = datetime.now(timezone.utc)
    record = {
        "id": key_id,
        "hash": _hash(secret),
        "role": role,
        "agency": agency,
        "name": name or f"{role} key",
        "user": user,
        "created": ecs.utc_iso(now),
        "expires": ecs.utc_iso(now + timedelta(days=expires_in_days)) if expires_in_days else None,
        "revoked": False,
    }
    store.put_api_key(record)
    return f"soc_{key_id}_{secret}", record


class _VerifiedCache:
    """Recently verified keys, so a busy client does not cost a store round trip per request."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, Principal]] = {}
        self._lock = threading.Lock()

    def get(self, digest: str, ttl: float) -> Principal | None:
        entry = self._entries.get(digest)
        if entry is None or time.monotonic() - entry[0] > ttl:
            return None
        return entry[1]

    def put(self, digest: str, principal: Principal) -> None:
        with self._lock:
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[digest] = (time.monotonic(), principal)

    def forget(self, key_id: str | None = None, user: str | None = None) -> None:
        with self._lock:
            for digest, (_, p) in list(self._entries.items()):
                if (key_id and p.key_id == key_id) or (user and p.user == user):
                    del self._entries[digest]


VERIFIED = _VerifiedCache()


def cached_principal(presented: str, cache_seconds: float) -> Principal | None:
    """The principal of a key verified less than ``cache_seconds`` ago, without asking the store."""
    if cache_seconds <= 0 or len(presented) > 200:
        return None
    return VERIFIED.get(_hash(presented), cache_seconds)


def verify_key(store: Store, presented: str, cache_seconds: float = 0.0) -> Principal | None:
    parts = presented.split("_", 2)
    if len(parts) != 3 or parts[0] != "soc" or not parts[1] or len(presented) > 200:
        return None
    digest = _hash(presented)
    if cache_seconds > 0:
        cached = VERIFIED.get(digest, cache_seconds)
        if cached is not None:
            return cached
    record = store.get_api_key(parts[1])
    if record is None or record.get("revoked"):
        return None
    if not hmac.compare_digest(record["hash"], _hash(parts[2])):
        return None
    if record.get("expires") and ecs.parse_time(record["expires"]) <= datetime.now(timezone.utc):
        return None
    user = record.get("user")
    if user:
        account = store.get_document(USERS, user)
        if account is None or account.get("disabled"):
            return None
    principal = Principal(key_id=record["id"], role=record["role"], agency=record.get("agency"),
                          name=record["name"], user=user)
    if cache_seconds > 0 and not record.get("expires"):
        VERIFIED.put(digest, principal)
    elif cache_seconds > 0:
        # Never trust a cached key past its expiry.
        remaining = (ecs.parse_time(record["expires"]) - datetime.now(timezone.utc)).total_seconds()
        if remaining > cache_seconds:
            VERIFIED.put(digest, principal)
    return principal


def revoke_key(store: Store, key_id: str) -> bool:
    record = store.get_api_key(key_id)
    if record is None:
        return False
    record["revoked"] = True
    record["revoked_at"] = ecs.now_iso()
    store.put_api_key(record)
    VERIFIED.forget(key_id=key_id)
    return True


def public_key_record(record: dict) -> dict:
    """A key record without its hash."""
    return {k: v for k, v in record.items() if k != "hash"}


# --- users ---------------------------------------------------------------------------------------------------------
def create_user(store: Store, user_id: str, *, role: str, agency: str | None = None, name: str = "",
                email: str = "", known_agencies: set[str] | None = None, created_by: str | None = None) -> dict:
    if not USER_ID.match(user_id or ""):
        raise KeyCreationError("a user id is 1-64 characters: lower-case letters, digits, '.', '_' or '-'")
    _check_role(role, agency, known_agencies)
    if store.get_document(USERS, user_id) is not None:
        raise KeyCreationError(f"user {user_id!r} exists already")
    record = {"id": user_id, "name": name or user_id, "email": email, "role": role, "agency": agency,
              "disabled": False, "created": ecs.now_iso(), "created_by": created_by}
    store.put_documents(USERS, [record])
    return record


def set_user_disabled(store: Store, user_id: str, disabled: bool) -> dict | None:
    record = store.get_document(USERS, user_id)
    if record is None:
        return None
    record["disabled"] = disabled
    record["updated"] = ecs.now_iso()
    store.put_documents(USERS, [record])
    VERIFIED.forget(user=user_id)
    return record


def list_users(store: Store, limit: int = 1000) -> list[dict]:
    return store.find_documents(USERS, DocumentQuery(limit=limit))


def create_user_key(store: Store, user_id: str, *, name: str = "", expires_in_days: float | None = None
                    ) -> tuple[str, dict]:
    account = store.get_document(USERS, user_id)
    if account is None:
        raise KeyCreationError(f"no user {user_id!r}")
    if account.get("disabled"):
        raise KeyCreationError(f"user {user_id!r} is disabled")
    return create_key(store, account["role"], agency=account.get("agency"), name=name or f"{user_id} key",
                      expires_in_days=expires_in_days, user=user_id)
