"""What the API keeps for each suite it serves: the key that signs pagination cursors, the short-lived alert-list
cache and, when the playbook extension is not running, a playbook service of the API's own. Kept here, keyed by the
suite (weakly, so it goes with it), never set as attributes on the suite."""

from __future__ import annotations

import os
import secrets
import threading
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable

_STATES: "weakref.WeakKeyDictionary[Any, ApiState]" = weakref.WeakKeyDictionary()
_GUARD = threading.Lock()


@dataclass
class ApiState:
    cursor_key: bytes
    list_cache: Any
    own: dict[str, Any] = field(default_factory=dict)  # services of the API's own (see service())
    lock: threading.Lock = field(default_factory=threading.Lock)


def service(suite: Any, name: str, build: Callable[[], Any]) -> Any:
    """The suite's service ``name`` (an extension provides it); without that extension, one of the API's own,
    built once by ``build``."""
    found = suite.service(name)
    if found is not None:
        return found
    state = api_state(suite)
    with state.lock:
        if name not in state.own:
            state.own[name] = build()
        return state.own[name]


def api_state(suite: Any) -> ApiState:
    with _GUARD:
        state = _STATES.get(suite)
        if state is None:
            from soc_api.cache import ListCache

            settings = suite.settings.soc_api
            key = (os.environ.get(settings.cursor_key_env) or "").encode() if settings.cursor_key_env else b""
            state = _STATES[suite] = ApiState(cursor_key=key or secrets.token_bytes(32),
                                              list_cache=ListCache(settings.alert_list_cache_seconds))
        return state
