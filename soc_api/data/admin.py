"""Running the suite: users and their API keys, dead letters, the audit log, and the store's health."""

from __future__ import annotations

from typing import Any

from soc.storage.base import DeadLetter, DocumentQuery
from soc_api.data.core import DataCore, Page
from soc_api.deps import AUDIT
from soc_api.keys import (
    USERS, create_user, create_user_key, list_users, public_key_record, revoke_key, set_user_disabled,
)
from soc_api.tenancy import known_agencies


def store_health(suite) -> dict[str, Any]:
    """The store's own account of itself (status green, yellow or red, and details): for the health route, which
    any caller may ask without a key."""
    return suite.store.health()


class AdminData(DataCore):
    # --- users and keys ------------------------------------------------------------------------------------------
    def users(self, limit: int) -> list[dict]:
        return list_users(self.store, limit)

    def user(self, user_id: str) -> dict:
        return self.get(USERS, user_id, what="user")

    def create_user(self, user_id: str, *, role: str, agency: str | None, name: str, email: str) -> dict:
        """A new user (KeyCreationError: it exists, or the role and agency do not fit)."""
        return create_user(self.store, user_id, role=role, agency=agency, name=name, email=email,
                           known_agencies=known_agencies(self.suite), created_by=self.actor)

    def set_user_disabled(self, user_id: str, disabled: bool) -> dict | None:
        """The user after the change; None when there is no such user."""
        return set_user_disabled(self.store, user_id, disabled)

    def create_user_key(self, user_id: str, *, name: str, expires_in_days: float | None) -> tuple[str, dict]:
        """(the key, shown this once; its public record). KeyCreationError when there is no such user."""
        key, record = create_user_key(self.store, user_id, name=name, expires_in_days=expires_in_days)
        return key, public_key_record(record)

    def api_keys(self, user: str | None = None) -> list[dict]:
        """The public records of every key (of ``user`` only, when given)."""
        return [public_key_record(r) for r in self.store.list_api_keys() if user is None or r.get("user") == user]

    def revoke_key(self, key_id: str) -> dict | None:
        """The key's public record once revoked; None when there is no such key."""
        if not revoke_key(self.store, key_id):
            return None
        return public_key_record(self.store.get_api_key(key_id))

    # --- dead letters and the audit log --------------------------------------------------------------------------
    def dead_letters(self, limit: int) -> tuple[list[DeadLetter], int]:
        """The newest ``limit`` dead letters first, and how many there are in all."""
        return self.store.list_dead_letters(limit), self.store.count_dead_letters()

    def audit_records(self, *, key_id: str | None, user: str | None, since: str | None, agency: str | None,
                      limit: int, cursor: str | None) -> Page:
        """Audit records, newest first: an agency key reads its own agency's only."""
        terms = {k: v for k, v in (("actor.key_id", key_id), ("actor.user", user)) if v}
        ranges = {"@timestamp": (since, None)} if since else {}
        return self.find(AUDIT, DocumentQuery(terms=terms, ranges=ranges, sort="@timestamp", descending=True,
                                              limit=limit), agency=agency, cursor=cursor)
