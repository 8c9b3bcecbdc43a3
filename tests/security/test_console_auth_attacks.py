"""Attacks on the console's sign-in, through a running suite (real HTTP on loopback), as docs/security.md section 11
describes: session fixation, a forged form without the CSRF token (and a sign-in form posted from another site),
an open redirect through ``next=``, brute force (one user, many users from one address, many guesses at once), and
a cookie stolen and replayed after sign-out."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import pytest

from soc.storage.base import DocumentQuery
from soc_api.console import sessions
from soc_api.settings import ConsoleLockoutConfig
from tests.api_fixtures import running_suite
from tests.console_fixtures import CSRF, PASSWORD, ConsoleClient, add_user, console_api, use_clock

EVIL_NEXT = ["https://evil.example/", "//evil.example/", "/\\evil.example", "\\\\evil.example", "/\t/evil.example",
             "/%09/evil.example", "http:evil.example", "javascript:alert(1)", "/console/..//evil.example",
             "/console/../../evil", " /console/home", "/console/home\r\nSet-Cookie: x=1", "evil.example",
             "/api/v1/keys", "/console/static/../../x", "//", "/ /evil.example", "\u3000/console"]


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    lockout = ConsoleLockoutConfig(address_free_failures=10_000, address_lock_failures=20_000)
    with running_suite(tmp_path_factory.mktemp("console-attacks"), api=console_api(lockout=lockout),
                       extensions="[]") as running:
        add_user(running, "victim", "analyst")
        add_user(running, "attacker", "agency", agency="so-tttt")
        yield running


@pytest.fixture
def client(suite):
    made = []

    def make(**headers) -> ConsoleClient:
        made.append(ConsoleClient(suite, headers=headers))
        return made[-1]

    yield make
    for c in made:
        c.close()


def test_session_fixation_a_planted_session_id_is_never_the_one_signed_in(suite, client):
    # The attacker gets a real session of their own, and an invented id, and plants each in the victim's browser.
    attacker = client()
    attacker.signin("attacker")
    for planted in (attacker.session, "A" * 43):
        victim = client()
        victim.form_token()
        victim.plant(planted)
        signed_in = victim.signin("victim")
        assert signed_in.status_code == 303
        assert victim.session != planted
        # The planted id does not carry the victim: it is gone (or never was).
        assert suite.store.get_document(sessions.SESSIONS, sessions.digest(planted)) is None
        replay = client()
        replay.plant(planted)
        assert replay.get("/console/home").status_code == 303
        assert "victim" in victim.get("/console/home").text


def test_a_forged_form_without_the_csrf_token_is_refused(suite, client):
    victim = client()
    victim.signin("victim")
    # A page elsewhere posts to sign the victim out (the browser adds the cookie, no token).
    for data, headers in (({}, {}), ({"csrf_token": ""}, {}), ({"csrf_token": "guess" * 9}, {}),
                          ({"csrf_token": victim.csrf()}, {"Sec-Fetch-Site": "cross-site"})):
        forged = victim.post("/console/signout", data=data, headers=headers)
        assert forged.status_code == 403, (data, headers)
    assert victim.get("/console/home").status_code == 200  # nothing happened
    # Login CSRF: a sign-in form posted from another site carries no form cookie (SameSite=Strict): refused, and
    # the browser is not signed in to the attacker's account.
    fresh = client()
    token = CSRF.search(client().get("/console/signin").text).group(1)  # a token from another browser
    answer = fresh.post("/console/signin", data={"username": "attacker", "password": PASSWORD, "csrf_token": token})
    assert answer.status_code == 403 and "soc_session" not in answer.headers.get("set-cookie", "")
    assert fresh.get("/console/home").status_code == 303


@pytest.mark.parametrize("evil", EVIL_NEXT)
def test_an_open_redirect_through_next_is_refused(suite, client, evil):
    browser = client()
    # Sign-in with next: back to the user's first page instead.
    answer = browser.signin("victim", next_path=evil)
    assert answer.status_code == 303 and answer.headers["location"] == "/console/alerts", evil
    # Already signed in, the sign-in page's next is not followed either.
    again = browser.get(f"/console/signin?next={quote(evil, safe='')}")
    assert again.headers["location"] == "/console/alerts"
    # The language switch goes back only to a page of this site.
    switched = browser.get(f"/console/language/en?next={quote(evil, safe='')}")
    assert switched.status_code == 303 and switched.headers["location"] == "/console/home", evil
    # Signed out, the form does not carry it.
    page = client().get(f"/console/signin?next={quote(evil, safe='')}")
    assert page.status_code == 200 and 'name="next" value=""' in page.text


def test_a_same_site_next_is_followed(suite, client):
    browser = client()
    answer = browser.signin("victim", next_path="/console/home?tab=me")
    assert answer.headers["location"] == "/console/home?tab=me"


def test_brute_force_on_one_user_is_slowed_then_locked(suite, client, monkeypatch):
    clock = use_clock(monkeypatch)
    add_user(suite, "target", "admin")
    attacker = client()
    guesses = [f"guess number {i:04d}" for i in range(40)] + [PASSWORD]
    checked, refused = 0, 0
    for guess in guesses:  # as fast as it can, two seconds of the attacker's time between tries
        answer = attacker.signin("target", guess)
        if answer.status_code == 401:
            checked += 1
        elif answer.status_code == 429:
            refused += 1
        else:
            raise AssertionError(f"{guess}: {answer.status_code}")
        clock.advance(2)
    # 80 s of guessing: five free, then one after each growing wait, then locked: the right password was refused.
    assert checked <= 10 and refused >= 30, (checked, refused)
    assert attacker.signin("target", PASSWORD).status_code == 429
    assert suite.store.find_documents("audit", DocumentQuery(terms={"actor.user": "target", "outcome": "ok"},
                                                             limit=5)) == []


def test_many_guesses_at_once_are_counted_before_any_is_checked(suite, client):
    add_user(suite, "parallel", "analyst")
    attackers = [client() for _ in range(8)]
    for a in attackers:
        a.form_token()

    def guess(i: int) -> int:
        return attackers[i % len(attackers)].signin("parallel", f"parallel guess {i:03d}").status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(guess, range(24)))
    assert statuses.count(401) <= 5 and statuses.count(429) >= 19, statuses


def test_password_spraying_from_one_address_is_slowed_then_locked(tmp_path, monkeypatch):
    clock = use_clock(monkeypatch)
    lockout = ConsoleLockoutConfig(address_free_failures=10, address_lock_failures=30)
    with running_suite(tmp_path, api=console_api(lockout=lockout), extensions="[]") as suite:
        add_user(suite, "sprayed", "analyst")
        # Many user names, one guess each, from one address (behind a proxy on this host that says which).
        sprayer = ConsoleClient(suite, headers={"X-Forwarded-For": "203.0.113.50"})
        bystander = ConsoleClient(suite, headers={"X-Forwarded-For": "198.51.100.20"})
        try:
            statuses = []
            for i in range(60):
                statuses.append(sprayer.signin(f"user{i:02d}", "Summer2026!!!").status_code)
                clock.advance(1)
            assert statuses[:10] == [401] * 10 and statuses.count(401) <= 30 and 429 in statuses
            assert sprayer.signin("sprayed", PASSWORD).status_code == 429  # the address is refused, right or not
            assert bystander.signin("sprayed", PASSWORD).status_code == 303  # others are not
        finally:
            sprayer.close()
            bystander.close()


def test_a_stolen_cookie_is_useless_after_sign_out(suite, client):
    victim = client()
    victim.signin("victim")
    stolen_cookie, stolen_token = victim.session, victim.csrf()
    assert victim.signout(stolen_token).status_code == 303
    thief = client()
    thief.plant(stolen_cookie)
    assert thief.get("/console/home").status_code == 303
    assert thief.get("/console/home", headers={"Accept": "application/json"}).status_code == 401
    replayed = thief.post("/console/signout", data={"csrf_token": stolen_token})
    assert replayed.status_code == 303 and replayed.headers["location"].startswith("/console/signin")
    assert suite.store.get_document(sessions.SESSIONS, sessions.digest(stolen_cookie)) is None


def test_a_refused_form_is_audited_without_what_was_typed(suite, client):
    """A form refused by its validation is audited with where and why, never the submitted value: a console form
    may hold a password or a key, and the audit log is read by more people than the user."""
    analyst = client()
    analyst.signin("victim")
    secret = "S3CRET-" + "x" * 60  # longer than the field allows: refused 422
    answer = analyst.post("/console/alerts/no-such-alert/status",
                          data={"csrf_token": analyst.csrf(), "status": secret, "reason": "r"})
    assert answer.status_code == 422
    records = suite.store.find_documents("audit", DocumentQuery(terms={"actor.user": "victim",
                                                                      "outcome": "refused 422"}, limit=100))
    assert records and all("status" in (r.get("detail") or "") for r in records)
    assert not any("S3CRET" in str(r) for r in records)
