"""API keys: shown once, stored only as a hash, each with a role (and an agency for agency keys).

A key reads ``soc_<id>_<secret>``. The id finds the record; the secret is checked against its SHA-256 hash in
constant time. Keys are 32 random bytes, so a fast hash is enough (no password-stretching needed: nothing to guess).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from soc import ecs
from soc.storage.base import Store

ROLES = ("admin", "analyst", "network_admin", "agency", "national_centre")


class KeyCreationError(ValueError):
    pass


@dataclass(frozen=True)
class Principal:
    key_id: str
    role: str
    agency: str | None
    name: str

    @property
    def is_tenant(self) -> bool:
        """An agency key sees only its own agency's data."""
        return self.role == "agency"


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(store: Store, role: str, *, agency: str | None = None, name: str = "",
               expires_in_days: float | None = None, known_agencies: set[str] | None = None) -> tuple[str, dict]:
    if role not in ROLES:
        raise KeyCreationError(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
    if role == "agency" and not agency:
        raise KeyCreationError("an agency key needs --agency ID")
    if role != "agency" and agency:
        raise KeyCreationError("only agency keys are bound to an agency")
    if agency and known_agencies is not None and agency not in known_agencies:
        raise KeyCreationError(f"agency {agency!r} is not in the inventory")
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    now = datetime.now(timezone.utc)
    record = {
        "id": key_id,
        "hash": _hash(secret),
        "role": role,
        "agency": agency,
        "name": name or f"{role} key",
        "created": ecs.utc_iso(now),
        "expires": ecs.utc_iso(now + timedelta(days=expires_in_days)) if expires_in_days else None,
        "revoked": False,
    }
    store.put_api_key(record)
    return f"soc_{key_id}_{secret}", record


def verify_key(store: Store, presented: str) -> Principal | None:
    parts = presented.split("_", 2)
    if len(parts) != 3 or parts[0] != "soc":
        return None
    record = store.get_api_key(parts[1])
    if record is None or record.get("revoked"):
        return None
    if not hmac.compare_digest(record["hash"], _hash(parts[2])):
        return None
    if record.get("expires") and ecs.parse_time(record["expires"]) <= datetime.now(timezone.utc):
        return None
    return Principal(key_id=record["id"], role=record["role"], agency=record.get("agency"), name=record["name"])


def revoke_key(store: Store, key_id: str) -> bool:
    record = store.get_api_key(key_id)
    if record is None:
        return False
    record["revoked"] = True
    store.put_api_key(record)
    return True
