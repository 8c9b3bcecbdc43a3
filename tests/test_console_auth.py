"""The console's sign-in, sessions and CSRF, through a running suite (real HTTP on loopback): passwords (argon2id,
kept apart, never shown), back-off and lockout, session expiry and idle timeout, a disabled user signed out, cookie
flags, CSRF, no user enumeration, sign-out, audit records, the CLI, the tenancy of ``console_data``, and the
messages of both languages."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
import unicodedata
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import anyio
import httpx
import pytest
import yaml
from fastapi import Depends, Request

from soc.storage import open_store
from soc.storage.base import DocumentQuery
from soc_api.console import auth, i18n, sessions
from soc_api.console.web import console_data, format_time
from soc_api.data import Data
from soc_api.keys import create_key, create_user, set_user_disabled
from soc_api.settings import ConsoleLockoutConfig, ConsolePasswordConfig
from tests.api_fixtures import AGENCY_A, AGENCY_B, running_suite
from tests.conftest import PROJECT, make_settings
from tests.console_fixtures import CSRF, PASSWORD, ConsoleClient, add_user, alert_text, console_api, use_clock

SOC = [sys.executable, "-m", "suite.cli"]


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    with running_suite(tmp_path_factory.mktemp("console"), api=console_api(),
                       extensions="[soc_api.extension]") as running:
        yield running


@pytest.fixture
def browser(suite):
    client = ConsoleClient(suite)
    yield client
    client.close()


def _new(suite, prefix: str, role: str = "analyst", agency: str | None = None, password: str | None = PASSWORD):
    user_id = f"{prefix}-{time.monotonic_ns() % 10**9}"
    add_user(suite, user_id, role, agency, password)
    return user_id


# --- passwords -----------------------------------------------------------------------------------------------------
def test_a_password_is_kept_as_argon2id_apart_from_the_user_and_never_shown(suite):
    user = _new(suite, "pw")
    stored = suite.store.get_document(auth.CREDENTIALS, user)
    assert stored["hash"].startswith("$argon2id$v=19$m=8192,t=1,p=1$") and PASSWORD not in str(stored)
    assert "hash" not in suite.store.get_document("users", user)
    config = suite.settings.soc_api.console.passwords
    assert auth.verify_user(suite.store, user, PASSWORD, config)["id"] == user
    assert auth.verify_user(suite.store, user, PASSWORD + "x", config) is None
    assert auth.verify_user(suite.store, "no-such-user", PASSWORD, config) is None
    # No API answer carries it: the user through the admin API, the audit log.
    admin = create_key(suite.store, "admin", name="reader")[0]
    with httpx.Client(base_url=f"http://127.0.0.1:{suite.bound['api']}", timeout=30) as api:
        for path in ("/api/v1/users", f"/api/v1/users/{user}", "/api/v1/audit"):
            answer = api.get(path, headers={"X-API-Key": admin})
            assert answer.status_code == 200, (path, answer.text)
            assert "$argon2" not in answer.text and PASSWORD not in answer.text, path


def test_password_rules_are_checked():
    rules = ConsolePasswordConfig()
    for bad in ("short", "lan.nguyen", "aaaaaaaaaaaaaaaa", "x" * 2000):
        with pytest.raises(auth.PasswordError):
            auth.check_password_rules("lan.nguyen", bad, rules)
    auth.check_password_rules("lan.nguyen", "mười hai ký tự trở lên", rules)


def test_a_hash_of_other_parameters_is_made_again_at_the_next_sign_in(tmp_path):
    store = open_store(make_settings(tmp_path))
    try:
        old = ConsolePasswordConfig(time_cost=1, memory_kib=8192, parallelism=1)
        new = ConsolePasswordConfig(time_cost=2, memory_kib=16384, parallelism=1)
        create_user(store, "lan", role="analyst")
        auth.set_password(store, "lan", PASSWORD, old)
        assert auth.verify_user(store, "lan", "wrong password here", new) is None
        assert "m=8192,t=1" in store.get_document(auth.CREDENTIALS, "lan")["hash"]  # a failure changes nothing
        assert auth.verify_user(store, "lan", PASSWORD, new) is not None
        assert "m=16384,t=2" in store.get_document(auth.CREDENTIALS, "lan")["hash"]
        assert auth.verify_user(store, "lan", PASSWORD, new) is not None
        # Vietnamese typed composed or decomposed is one password.
        auth.set_password(store, "lan", "mật khẩu rất dài nhé", new)
        assert auth.verify_user(store, "lan", unicodedata.normalize("NFD", "mật khẩu rất dài nhé"), new)
    finally:
        store.close()


# --- sign-in and the cookie ----------------------------------------------------------------------------------------
def test_sign_in_through_the_form_gives_a_session_cookie_with_the_right_flags(suite, browser):
    user = _new(suite, "in")
    assert browser.get("/").headers["location"] == "/console/signin"
    answer = browser.signin(user, next_path="/console/home")
    assert answer.status_code == 303 and answer.headers["location"] == "/console/home"
    cookie = answer.headers["set-cookie"]
    flags = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "path=/", "samesite=strict"} <= flags and "secure" not in flags, cookie
    assert "max-age" not in cookie.lower() and "expires" not in cookie.lower()  # gone with the browser
    token = browser.session
    stored = suite.store.get_document(sessions.SESSIONS, sessions.digest(token))
    assert stored["user"] == user and token not in str(stored)  # only the token's hash is kept
    home = browser.get("/console/home")
    assert home.status_code == 200 and user in home.text and 'lang="vi"' in home.text
    assert "default-src 'self'" in home.headers["content-security-policy"]
    assert home.headers["cache-control"] == "no-store" and home.headers["x-frame-options"] == "DENY"
    assert browser.get("/").headers["location"] == "/console/alerts"  # an analyst starts at the alerts


def test_the_cookie_is_secure_when_the_request_came_over_https(suite):
    user = _new(suite, "tls")
    # Behind a TLS-terminating proxy on the same host (uvicorn believes X-Forwarded-Proto from 127.0.0.1).
    client = ConsoleClient(suite, headers={"X-Forwarded-Proto": "https"})
    try:
        form = client.get("/console/signin")
        assert "secure" in form.headers["set-cookie"].lower()
        token = CSRF.search(form.text).group(1)
        answer = client.post("/console/signin", data={"username": user, "password": PASSWORD, "csrf_token": token},
                             headers={"Cookie": f"soc_form={token}"})
        assert answer.status_code == 303, answer.text
        flags = {part.strip().lower() for part in answer.headers["set-cookie"].split(";")[1:]}
        assert {"secure", "httponly", "samesite=strict", "path=/"} <= flags
    finally:
        client.close()


def test_each_sign_in_is_a_new_session(suite, browser):
    user = _new(suite, "new")
    browser.signin(user)
    first = browser.session
    browser.signin(user)
    assert browser.session != first
    assert suite.store.get_document(sessions.SESSIONS, sessions.digest(first)) is None


def test_a_fetch_without_a_session_gets_401_and_a_page_gets_a_redirect(browser):
    page = browser.get("/console/home?x=1")
    assert page.status_code == 303 and page.headers["location"] == "/console/signin?next=%2Fconsole%2Fhome%3Fx%3D1"
    for headers in ({"Accept": "application/json"}, {"X-Requested-With": "fetch"}):
        answer = browser.get("/console/home", headers=headers)
        assert answer.status_code == 401 and answer.json() == {"detail": "sign in first"}


# --- no enumeration ------------------------------------------------------------------------------------------------
def test_unknown_user_wrong_password_and_disabled_user_get_the_same_answer_in_similar_time(suite, browser):
    known = _new(suite, "known")
    disabled = _new(suite, "off")
    set_user_disabled(suite.store, disabled, True)
    no_password = _new(suite, "nopw", password=None)

    def attempt(user: str, password: str) -> tuple[int, str, float]:
        started = time.perf_counter()
        answer = browser.signin(user, password)
        took = time.perf_counter() - started
        return answer.status_code, answer.text.replace(user, "USER"), took

    answers = {"wrong password": attempt(known, "not the password at all"),
               "unknown user": attempt(f"ghost-{known}", "not the password at all"),
               "disabled user": attempt(disabled, PASSWORD),
               "no password": attempt(no_password, PASSWORD)}
    statuses = {status for status, _, _ in answers.values()}
    bodies = {body for _, body, _ in answers.values()}
    assert statuses == {401} and len(bodies) == 1, answers.keys()
    assert alert_text(next(iter(bodies))) == "Tên người dùng hoặc mật khẩu không đúng."
    # Similar time: an unknown user costs a hash too (interleaved, one try per name: no back-off in the way).
    known_times, unknown_times = [], []
    for i in range(5):
        known_times.append(attempt(_new(suite, f"timed{i}"), "wrong password!!")[2])
        unknown_times.append(attempt(f"ghost{i}-{known}", "wrong password!!")[2])
    ratio = statistics.median(unknown_times) / statistics.median(known_times)
    assert 0.33 < ratio < 3, (known_times, unknown_times)


# --- back-off and lockout ------------------------------------------------------------------------------------------
def test_failures_are_slowed_then_locked_and_the_lock_expires(suite, browser, monkeypatch):
    clock = use_clock(monkeypatch)
    real = _new(suite, "locked")
    answers = {}
    for user in (real, "nobody-at-all"):  # a user that does not exist is treated the same
        seen = answers[user] = []
        for _ in range(5):
            assert browser.signin(user, "wrong password!!").status_code == 401
        # Past 5 failures: each attempt waits 2, 4, 8, 16 s after the last failure, refused unchecked meanwhile.
        for wait in (2, 4, 8, 16):
            refused = browser.signin(user, PASSWORD)
            assert refused.status_code == 429 and int(refused.headers["retry-after"]) == wait
            seen.append(alert_text(refused.text))
            clock.advance(wait)
            assert browser.signin(user, "wrong password!!").status_code == 401
        clock.advance(32)
        assert browser.signin(user, "wrong password!!").status_code == 401  # the 10th failure locks
        locked = browser.signin(user, PASSWORD)
        assert locked.status_code == 429 and 890 <= int(locked.headers["retry-after"]) <= 900
        seen.append(alert_text(locked.text))
        clock.advance(600)
        assert browser.signin(user, PASSWORD).status_code == 429  # still locked, even with the right password
        clock.advance(301)
    assert answers[real] == answers["nobody-at-all"]
    assert answers[real][0] == "Đăng nhập sai quá nhiều lần. Hãy thử lại sau 2 giây."
    assert answers[real][-1] == "Đăng nhập tạm bị khóa do sai nhiều lần. Hãy thử lại sau 15 phút."
    # The lock is over: the right password signs in.
    assert browser.signin(real, PASSWORD).status_code == 303


def test_a_lock_expires_and_the_right_password_then_signs_in(suite, browser, monkeypatch):
    clock = use_clock(monkeypatch)
    user = _new(suite, "expiry")
    for _ in range(10):
        assert browser.signin(user, "wrong password!!").status_code in (401, 429)
        clock.advance(120)
    assert browser.signin(user, PASSWORD).status_code == 429
    clock.advance(901)
    assert browser.signin(user, PASSWORD).status_code == 303
    record = suite.store.get_document(auth.THROTTLE, auth._throttle_id("user", user))
    assert record is None  # a success clears the count


def test_the_lockout_parameters_come_from_the_configuration(tmp_path, monkeypatch):
    lockout = ConsoleLockoutConfig(free_failures=2, lock_failures=3, lock_seconds=60, first_wait_seconds=1,
                                   address_free_failures=100, address_lock_failures=200)
    clock = use_clock(monkeypatch)
    with running_suite(tmp_path, api=console_api(lockout=lockout), extensions="[]") as suite:
        user = _new(suite, "cfg")
        client = ConsoleClient(suite)
        try:
            assert [client.signin(user, "wrong password!!").status_code for _ in range(3)] == [401, 401, 429]
            clock.advance(1)
            assert client.signin(user, "wrong password!!").status_code == 401  # third failure: locked for 60 s
            assert int(client.signin(user, PASSWORD).headers["retry-after"]) == 60
            clock.advance(61)
            assert client.signin(user, PASSWORD).status_code == 303
        finally:
            client.close()


# --- sessions ------------------------------------------------------------------------------------------------------
def test_a_session_ends_at_its_absolute_expiry_even_when_in_use(suite, browser, monkeypatch):
    clock = use_clock(monkeypatch)
    assert browser.signin(_new(suite, "abs")).status_code == 303
    for _ in range(24):  # 24 x 29 min = 11 h 36 min, a request each time
        clock.advance(29 * 60)
        assert browser.get("/console/home").status_code == 200
    clock.advance(25 * 60)  # 12 h 1 min after sign-in
    answer = browser.get("/console/home")
    assert answer.status_code == 303 and "ended=1" in answer.headers["location"]
    assert "soc_session=" in answer.headers.get("set-cookie", "")  # the browser is told to forget it
    page = browser.get(answer.headers["location"])
    assert "Phiên làm việc đã kết thúc" in page.text


def test_a_session_ends_after_the_idle_timeout(suite, browser, monkeypatch):
    clock = use_clock(monkeypatch)
    browser.signin(_new(suite, "idle"))
    token = browser.session
    clock.advance(29 * 60)
    assert browser.get("/console/home").status_code == 200  # its last use is now
    clock.advance(29 * 60)
    assert browser.get("/console/home").status_code == 200
    clock.advance(30 * 60 + 1)
    assert browser.get("/console/home").status_code == 303
    assert suite.store.get_document(sessions.SESSIONS, sessions.digest(token)) is None


def test_a_disabled_user_is_signed_out_at_the_next_request(suite, browser):
    user = _new(suite, "dis")
    browser.signin(user)
    token = browser.session
    assert browser.get("/console/home").status_code == 200
    set_user_disabled(suite.store, user, True)
    assert browser.get("/console/home").status_code == 303
    set_user_disabled(suite.store, user, False)
    browser.plant(token)
    assert browser.get("/console/home").status_code == 303  # enabling again does not bring the session back


def test_a_new_password_ends_the_users_sessions(suite, browser):
    user = _new(suite, "newpw")
    browser.signin(user)
    assert browser.get("/console/home").status_code == 200
    auth.set_password(suite.store, user, "another long passphrase", suite.settings.soc_api.console.passwords)
    assert browser.get("/console/home").status_code == 303


def test_sign_out_ends_the_session_and_the_cookie_is_useless_after(suite, browser):
    user = _new(suite, "out")
    browser.signin(user)
    token, csrf = browser.session, browser.csrf()
    answer = browser.signout(csrf)
    assert answer.status_code == 303 and answer.headers["location"] == "/console/signin?signed_out=1"
    assert 'soc_session=""' in answer.headers["set-cookie"] or "Max-Age=0" in answer.headers["set-cookie"]
    assert suite.store.get_document(sessions.SESSIONS, sessions.digest(token)) is None
    again = ConsoleClient(suite)
    try:
        again.plant(token)
        assert again.get("/console/home").status_code == 303
    finally:
        again.close()


# --- CSRF ----------------------------------------------------------------------------------------------------------
def test_a_forged_post_is_refused_without_the_sessions_token(suite, browser):
    user = _new(suite, "csrf")
    browser.signin(user)
    other = ConsoleClient(suite)
    try:
        other.signin(_new(suite, "csrf-other"))
        foreign = other.csrf()
    finally:
        other.close()
    for token in (None, "", "x" * 43, foreign):
        answer = browser.signout(token)
        assert answer.status_code == 403, token
        assert "Biểu mẫu này không còn hợp lệ" in answer.text
    assert browser.get("/console/home").status_code == 200  # still signed in: nothing happened
    assert browser.post("/console/signout", headers={"X-CSRF-Token": foreign}).status_code == 403
    # A JSON caller gets JSON.
    refused = browser.post("/console/signout", headers={"Accept": "application/json"})
    assert refused.status_code == 403 and "detail" in refused.json()
    # The right token, in the form or in the header, is taken.
    assert browser.post("/console/signout", headers={"X-CSRF-Token": browser.csrf()}).status_code == 303
    refusals = suite.store.find_documents("audit", DocumentQuery(terms={"actor.user": user, "outcome": "refused 403"},
                                                                 limit=100))
    assert len(refusals) >= 5 and {r["action"] for r in refusals} == {"console_signout"}


# --- audit ---------------------------------------------------------------------------------------------------------
def test_sign_in_and_sign_out_are_audited(suite, browser):
    user = _new(suite, "audited")
    browser.signin(user, "wrong password!!")
    browser.signin(user)
    browser.signout(browser.csrf())
    records = suite.store.find_documents("audit", DocumentQuery(terms={"actor.user": user}, limit=100))
    seen = sorted((r["action"], r["outcome"]) for r in records)
    assert seen == [("console_signin", "ok"), ("console_signin", "refused 401"), ("console_signout", "ok")], seen
    signed_in = next(r for r in records if r["action"] == "console_signin" and r["outcome"] == "ok")
    assert signed_in["actor"]["role"] == "analyst" and signed_in["actor"]["key_id"].startswith("console-")
    assert signed_in["client"]["ip"] == "127.0.0.1"
    assert PASSWORD not in str(records)


# --- the CLI -------------------------------------------------------------------------------------------------------
def test_the_cli_creates_a_user_with_a_password_that_signs_in(suite, browser, tmp_path):
    config = tmp_path / "soc.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(suite.settings.data_dir),
                                      "store": {"url": suite.settings.store.url},
                                      "inventory": {"path": suite.settings.inventory.path},
                                      "soc_api": {"console": {"passwords": {"time_cost": 1, "memory_kib": 8192,
                                                                            "parallelism": 1}}}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOC__")}

    def soc(*args, stdin: str = "") -> subprocess.CompletedProcess:
        return subprocess.run(SOC + list(args) + ["--config", str(config)], input=stdin, capture_output=True,
                              text=True, env=env, cwd=PROJECT, timeout=60)

    made = soc("users", "create", "cli.admin", "--role", "admin", "--password-stdin", stdin="first long password\n")
    assert made.returncode == 0, made.stderr
    assert "console password set" in made.stdout
    assert browser.signin("cli.admin", "first long password").status_code == 303
    assert browser.get("/console/home").status_code == 200
    short = soc("users", "password", "cli.admin", "--password-stdin", stdin="short\n")
    assert short.returncode == 2 and "at least 12 characters" in short.stderr
    changed = soc("users", "password", "cli.admin", "--password-stdin", stdin="second long password\n")
    assert changed.returncode == 0, changed.stderr
    assert browser.get("/console/home").status_code == 303  # the new password ended the session
    assert browser.signin("cli.admin", "first long password").status_code == 401
    assert browser.signin("cli.admin", "second long password").status_code == 303
    assert soc("users", "create", "cli.admin", "--role", "admin", "--password-stdin", stdin="x\n").returncode == 2
    assert soc("users", "password", "nobody", "--password-stdin", stdin="third long password\n").returncode == 1
    agency = soc("users", "create", "cli.agency", "--role", "agency", "--agency", AGENCY_A, "--password-stdin",
                 stdin="agency long password\n")
    assert agency.returncode == 0, agency.stderr
    assert browser.signin("cli.agency", "agency long password").headers["location"] == "/console/alerts"


# --- console_data: tenancy and roles -------------------------------------------------------------------------------
class _Suite:
    def __init__(self, settings):
        from inventory.lookup import Inventory

        self.settings = settings
        self.store = open_store(settings)
        self.inventory = Inventory.load(settings.inventory.path)  # tenancy reads the agency tree from it

    def service(self, name):
        return None


def test_console_data_gives_the_users_data_with_the_apis_tenancy(tmp_path):
    from soc_api.app import create_app

    settings = make_settings(tmp_path, sections={"soc_api": console_api().model_dump(mode="json")})
    suite = _Suite(settings)
    for agency in (AGENCY_A, AGENCY_B):
        suite.store.put_documents("incidents", [{"id": f"inc-{agency}", "organization": {"id": agency}}])
    add_user(suite, "ag.a", "agency", AGENCY_A)
    add_user(suite, "an", "analyst")
    add_user(suite, "net", "network_admin")
    app = create_app(suite)

    @app.get("/console/test/incidents/{doc_id}")
    def one(doc_id: str, data: Data = Depends(console_data("analyst", "agency"))):
        return data.get("incidents", doc_id, what="incident")

    @app.get("/console/test/scope")
    def scope(request: Request, data: Data = Depends(console_data("analyst", "agency"))):
        return {"scope": data.scope(request.query_params.get("agency")), "actor": data.actor}

    async def run():
        answers = {}
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        for user in ("ag.a", "an", "net"):
            async with httpx.AsyncClient(transport=transport, base_url="http://console.test") as http:
                form = await http.get("/console/signin")
                token = form.cookies["soc_form"]
                signed = await http.post("/console/signin", data={"username": user, "password": PASSWORD,
                                                                  "csrf_token": token})
                assert signed.status_code == 303, signed.text
                for path in (f"/console/test/incidents/inc-{AGENCY_A}", f"/console/test/incidents/inc-{AGENCY_B}",
                             "/console/test/scope", f"/console/test/scope?agency={AGENCY_B}"):
                    answer = await http.get(path)
                    answers[(user, path)] = (answer.status_code, answer.text)
        return answers

    try:
        answers = anyio.run(run)
    finally:
        suite.store.close()
    a_doc, b_doc = f"/console/test/incidents/inc-{AGENCY_A}", f"/console/test/incidents/inc-{AGENCY_B}"
    assert answers[("ag.a", a_doc)][0] == 200
    assert answers[("ag.a", b_doc)][0] == 404  # another agency's record answers like a missing one
    assert f'"scope":"{AGENCY_A}"' in answers[("ag.a", "/console/test/scope")][1]
    assert answers[("ag.a", f"/console/test/scope?agency={AGENCY_B}")][0] == 403
    assert answers[("an", a_doc)][0] == 200 and answers[("an", b_doc)][0] == 200
    assert '"actor":"an"' in answers[("an", "/console/test/scope")][1]
    status, page = answers[("net", a_doc)]
    assert status == 403 and "Trang này cần một trong các vai trò" in page and "<html" in page


# --- languages and times -------------------------------------------------------------------------------------------
def test_every_message_has_both_languages():
    assert i18n.incomplete() == {}
    assert set(i18n.catalogue()) == {"vi", "en"}


def test_translation_falls_back_and_fills_placeholders(monkeypatch):
    catalogue = {"en": {"a": "A {name}", "only.en": "English only"}, "vi": {"a": "Á {name}"}}
    monkeypatch.setattr(i18n, "catalogue", lambda: catalogue)
    assert i18n.translate("vi", "a", name="Lan") == "Á Lan"
    assert i18n.translate("vi", "only.en") == "English only"
    assert i18n.translate("vi", "missing.key") == "missing.key"
    assert i18n.translate("en", "a") == "A {name}" and i18n.translate("en", "a", other=1) == "A {name}"


def test_the_language_follows_the_cookie_then_the_browser_then_the_configuration(suite, browser):
    assert 'lang="vi"' in browser.get("/console/signin").text
    assert 'lang="en"' in browser.get("/console/signin", headers={"Accept-Language": "en-GB,en;q=0.9"}).text
    switched = browser.get("/console/language/en?next=/console/signin")
    assert switched.status_code == 303 and switched.headers["location"] == "/console/signin"
    page = browser.get("/console/signin")
    assert '<html lang="en">' in page.text and "Sign in" in page.text


def test_times_are_shown_in_the_users_zone_the_languages_way():
    zone = ZoneInfo("Asia/Ho_Chi_Minh")
    assert format_time("2026-11-22T10:00:00.000Z", zone, "vi") == "22/11/2026 17:00:00"
    assert format_time("2026-11-22T10:00:00Z", zone, "en") == "2026-11-22 17:00:00"
    assert format_time(datetime(2026, 1, 1, 23, 30, tzinfo=timezone.utc), zone, "vi", "date") == "02/01/2026"
    assert format_time("2026-11-22T10:00:00+01:00", ZoneInfo("UTC"), "en", "minute") == "2026-11-22 09:00"
    assert format_time("not a time", zone, "vi") == "not a time" and format_time(None, zone, "vi") == ""
