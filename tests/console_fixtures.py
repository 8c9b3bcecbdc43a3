"""Shared by the console's tests (not the browser ones): a running suite (real HTTP on loopback) whose console hashes
passwords quickly, users with passwords, a console client that signs in through the real form, and a clock the
sessions and the sign-in back-off can be moved by."""

from __future__ import annotations

import html
import re
import time

import httpx

from soc_api.console import auth, sessions
from soc_api.keys import create_user
from soc_api.settings import (ApiSettings, ConsoleConfig, ConsoleLockoutConfig, ConsolePasswordConfig)

PASSWORD = "correct horse battery staple"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
ALERT = re.compile(r'role="alert"[^>]*>(.*?)</p>', re.S)
# Quick hashes for tests (the defaults take about 0.1 s each); the parameters are checked apart.
FAST_PASSWORDS = ConsolePasswordConfig(time_cost=1, memory_kib=8192, parallelism=1)


def console_api(*, lockout: ConsoleLockoutConfig | None = None, passwords: ConsolePasswordConfig | None = None,
                **console) -> ApiSettings:
    """API settings for a test suite: every test signs in from 127.0.0.1, so the per-address limits are out of the
    way unless a test sets them."""
    lockout = lockout or ConsoleLockoutConfig(address_free_failures=10_000, address_lock_failures=20_000)
    return ApiSettings(console=ConsoleConfig(lockout=lockout, passwords=passwords or FAST_PASSWORDS, **console))


def add_user(suite, user_id: str, role: str, agency: str | None = None, password: str | None = PASSWORD) -> dict:
    record = create_user(suite.store, user_id, role=role, agency=agency, name=f"{user_id.title()} Tester")
    if password is not None:
        auth.set_password(suite.store, user_id, password, suite.settings.soc_api.console.passwords)
    return record


class Clock:
    """Stands in for soc_api.console.sessions.now (sessions and the back-off read it)."""

    def __init__(self) -> None:
        self.moment = time.time()

    def __call__(self) -> float:
        return self.moment

    def advance(self, seconds: float) -> None:
        self.moment += seconds


def use_clock(monkeypatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(sessions, "now", clock)
    return clock


def alert_text(page: str) -> str | None:
    found = ALERT.search(page)
    return html.unescape(found.group(1)).strip() if found else None


class ConsoleClient:
    """A browser's part, over HTTP: cookies kept, redirects not followed (the tests read them)."""

    def __init__(self, suite, headers: dict | None = None):
        self.suite = suite
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{suite.bound['api']}", follow_redirects=False,
                                 timeout=30, headers=headers or {})

    def close(self) -> None:
        self.http.close()

    def get(self, path: str, **kwargs) -> httpx.Response:
        return self.http.get(path, **kwargs)

    def post(self, path: str, **kwargs) -> httpx.Response:
        return self.http.post(path, **kwargs)

    def form_token(self, path: str = "/console/signin") -> str:
        answer = self.get(path)
        assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
        return CSRF.search(answer.text).group(1)

    def signin(self, user: str, password: str = PASSWORD, next_path: str = "", **kwargs) -> httpx.Response:
        # The form's token is its cookie's value (a signed-in browser is not shown the form again).
        token = self.http.cookies.get("soc_form") or self.form_token()
        return self.post("/console/signin", data={"username": user, "password": password, "csrf_token": token,
                                                  "next": next_path}, **kwargs)

    @property
    def session(self) -> str | None:
        return self.http.cookies.get("soc_session")

    def plant(self, session_token: str) -> None:
        """Put a session cookie in this browser (as the server would have set it)."""
        self.http.cookies.set("soc_session", session_token, domain="127.0.0.1", path="/")

    def csrf(self) -> str:
        """The session's CSRF token, as a page carries it."""
        return self.form_token("/console/home")

    def signout(self, token: str | None = None) -> httpx.Response:
        data = {"csrf_token": token} if token is not None else {}
        return self.post("/console/signout", data=data)
