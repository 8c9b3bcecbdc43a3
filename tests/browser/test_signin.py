"""Sign-in, the frame of every page and the language switch, in Debian's Chromium: as a person would, through the
real form of a real `soc serve`. Screenshots of the sign-in and home pages in each language are kept under
tests/artifacts/screenshots/; axe-core checks both pages in both languages."""

from __future__ import annotations

import re

import pytest

from tests.browser.conftest import PASSWORD, check_accessibility, new_context, screenshot, sign_in


def _lang(page) -> str:
    return page.locator("html").get_attribute("lang")


def test_sign_in_through_the_form_then_the_home_page_and_the_nav(page, console_server):
    user = console_server.create_user("analyst", name="Nguyễn Thị Lan")
    page.goto(console_server.url + "/")
    page.wait_for_url("**/console/signin")
    assert page.title() == "Đăng nhập · Bảng điều khiển SOC" and _lang(page) == "vi"
    sign_in(page, console_server.url, user)
    assert page.url == console_server.url + "/console/home"
    assert page.locator("h1").inner_text() == "Xin chào, Nguyễn Thị Lan"
    assert page.locator("#me-role").inner_text() == "Chuyên viên phân tích"
    nav = page.get_by_role("navigation", name="Chính")
    assert [a.inner_text() for a in nav.get_by_role("link").all()] == [
        "Tổng quan", "Cảnh báo", "Sự cố", "Sự kiện", "Tình trạng an toàn", "Báo cáo", "Luật phát hiện",
        "Phát hiện đánh giá"]
    assert nav.get_by_role("link", name="Cảnh báo").get_attribute("href") == "/console/alerts"
    assert page.locator(".who").inner_text() == "Nguyễn Thị Lan"
    # The session cookie is out of the page's reach; the time zone is the browser's.
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert cookies["soc_session"]["httpOnly"] and cookies["soc_session"]["sameSite"] == "Strict"
    assert "soc_session" not in page.evaluate("document.cookie")
    assert re.search(r"Asia/(Ho_Chi_Minh|Saigon)\.", page.locator("footer").inner_text())  # Chromium's name


@pytest.mark.parametrize("role, agency, links", [
    ("agency", "so-tttt", ["Cảnh báo", "Tình trạng an toàn", "Báo cáo", "Phát hiện đánh giá"]),
    ("network_admin", None, ["Cảnh báo", "Phê duyệt", "Phát hiện đánh giá"]),
    ("admin", None, ["Tổng quan", "Cảnh báo", "Sự cố", "Sự kiện", "Phê duyệt", "Tình trạng an toàn", "Báo cáo",
                     "Luật phát hiện", "Phát hiện đánh giá", "Quản trị"]),
])
def test_the_nav_shows_what_the_role_may_open(signed_in_page, role, agency, links):
    page = signed_in_page(role, agency)
    nav = page.get_by_role("navigation", name="Chính")
    assert [a.inner_text() for a in nav.get_by_role("link").all()] == links
    if agency:
        assert page.locator("#me-agency").inner_text() == agency


def test_switching_the_language_changes_the_text_and_the_html_lang(signed_in_page, axe_source):
    page = signed_in_page("analyst")
    assert _lang(page) == "vi" and page.locator("h1").inner_text().startswith("Xin chào")
    check_accessibility(page)
    screenshot(page, "home-vi")
    page.get_by_role("link", name="English").click()
    page.wait_for_function("document.documentElement.lang === 'en'")
    assert page.url.endswith("/console/home")
    assert page.locator("h1").inner_text().startswith("Welcome")
    assert page.get_by_role("button", name="Sign out").is_visible()
    nav = page.get_by_role("navigation", name="Main")
    assert nav.get_by_role("link", name="Alerts").is_visible()
    check_accessibility(page)
    screenshot(page, "home-en")
    page.get_by_role("link", name="Tiếng Việt").click()
    page.wait_for_function("document.documentElement.lang === 'vi'")
    assert page.get_by_role("button", name="Đăng xuất").is_visible()


@pytest.mark.parametrize("lang, title, heading", [("vi", "Đăng nhập · Bảng điều khiển SOC", "Đăng nhập"),
                                                  ("en", "Sign in · SOC console", "Sign in")])
def test_the_sign_in_page_in_each_language_is_accessible(page, console_server, axe_source, lang, title, heading):
    page.goto(f"{console_server.url}/console/language/{lang}?next=/console/signin")
    page.wait_for_url("**/console/signin")
    assert _lang(page) == lang and page.title() == title
    assert page.get_by_role("heading", level=1).inner_text() == heading
    violations = check_accessibility(page)
    assert violations == [] or all(v["impact"] not in ("serious", "critical") for v in violations)
    screenshot(page, f"signin-{lang}")


def test_a_wrong_password_shows_the_error_and_keeps_the_user_name(page, console_server, axe_source):
    user = console_server.create_user("analyst")
    page.goto(console_server.url + "/console/signin")
    page.locator("#username").fill(user)
    page.locator("#password").fill("not the password at all")
    page.locator("form.stack button[type=submit]").click()
    error = page.get_by_role("alert")
    error.wait_for()
    assert error.inner_text() == "Tên người dùng hoặc mật khẩu không đúng."
    assert page.locator("#username").input_value() == user and page.locator("#password").input_value() == ""
    assert page.locator("#password").get_attribute("aria-invalid") == "true"
    check_accessibility(page)
    screenshot(page, "signin-error-vi")
    # Then the right one goes through.
    page.locator("#password").fill(PASSWORD)
    page.locator("form.stack button[type=submit]").click()
    page.wait_for_url(re.compile(r"^[^?]*/console/alerts$"))


def test_sign_out_from_the_top_bar_ends_the_session(signed_in_page, console_server):
    page = signed_in_page("analyst")
    page.get_by_role("button", name="Đăng xuất").click()
    page.wait_for_url("**/console/signin?signed_out=1")
    assert page.get_by_role("status").inner_text() == "Bạn đã đăng xuất."
    page.goto(console_server.url + "/console/home")
    page.wait_for_url("**/console/signin?next=%2Fconsole%2Fhome")


def test_the_keyboard_alone_signs_in_and_reaches_the_skip_link_first(page, console_server):
    user = console_server.create_user("analyst")
    page.goto(console_server.url + "/console/signin?next=/console/home")
    assert page.evaluate("document.activeElement.id") == "username"  # the form is ready to type in
    page.keyboard.type(user)
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"^[^?]*/console/home$"))
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip-link"
    assert page.locator(".skip-link").is_visible()  # shown when focused
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"


def test_times_follow_the_browsers_time_zone(browser, console_server):
    user = console_server.create_user("analyst")
    context = new_context(browser, timezone_id="Europe/Paris", locale="en-GB")
    try:
        page = context.new_page()
        sign_in(page, console_server.url, user)
        page.reload()  # console.js told the server the zone on the first page
        assert "Europe/Paris" in page.locator("footer").inner_text()
    finally:
        context.close()


# --- back-off, lockout and forged forms, in the browser --------------------------------------------------------------
@pytest.fixture(scope="module")
def quick_lock_server(tmp_path_factory):
    """A suite of its own whose back-off is short (1 s, then 2 s) and which locks at the 5th failure, so the whole
    sequence a person would meet takes seconds, not the minutes of the defaults."""
    from tests.browser.conftest import ConsoleServer

    server = ConsoleServer(tmp_path_factory.mktemp("quick-lock"), lockout={
        "free_failures": 3, "lock_failures": 5, "first_wait_seconds": 1, "max_wait_seconds": 2, "lock_seconds": 600})
    try:
        yield server
    finally:
        server.stop()


def _submit(page, user: str, password: str) -> str:
    page.locator("#username").fill(user)
    page.locator("#password").fill(password)
    with page.expect_navigation():
        page.locator("form.stack button[type=submit]").click()
    return page.get_by_role("alert").inner_text()


def test_repeated_wrong_passwords_are_slowed_then_locked(page, quick_lock_server):
    import time

    user = quick_lock_server.create_user("analyst")
    page.goto(quick_lock_server.url + "/console/signin")
    for _ in range(3):
        assert _submit(page, user, "not the password at all") == "Tên người dùng hoặc mật khẩu không đúng."
    # Slowed: even the right password is refused until the wait is over, and the page says how long.
    assert _submit(page, user, PASSWORD) == "Đăng nhập sai quá nhiều lần. Hãy thử lại sau 1 giây."
    assert "/console/signin" in page.url
    time.sleep(1.3)
    assert _submit(page, user, "not the password at all") == "Tên người dùng hoặc mật khẩu không đúng."
    assert _submit(page, user, PASSWORD) == "Đăng nhập sai quá nhiều lần. Hãy thử lại sau 2 giây."
    time.sleep(2.3)
    _submit(page, user, "not the password at all")  # the 5th failure locks the name
    # Locked: the right password is refused for the lock's time.
    assert _submit(page, user, PASSWORD) == "Đăng nhập tạm bị khóa do sai nhiều lần. Hãy thử lại sau 10 phút."
    time.sleep(2.3)
    assert _submit(page, user, PASSWORD) == "Đăng nhập tạm bị khóa do sai nhiều lần. Hãy thử lại sau 10 phút."
    page.goto(quick_lock_server.url + "/console/home")
    page.wait_for_url("**/console/signin**")  # never signed in
    screenshot(page, "signin-locked-vi")


def test_a_forged_form_without_the_token_is_refused(browser, quick_lock_server):
    user = quick_lock_server.create_user("analyst")
    context = new_context(browser)
    try:
        page = context.new_page()
        sign_in(page, quick_lock_server.url, user)
        # A form put into the console's own page by a script, posting without the session's token.
        with page.expect_navigation():
            page.evaluate("""() => { const f = document.createElement('form'); f.method = 'post';
                f.action = '/console/signout'; document.body.appendChild(f); f.submit(); }""")
        assert "Biểu mẫu này không còn hợp lệ" in page.content()
        # A page of another site posting a form to the console: the session cookie is SameSite, so the browser does
        # not send it and the console sees nobody (sign-in page); were it sent, the token would be wrong.
        evil = context.new_page()
        evil.set_content(f"""<form method="post" action="{quick_lock_server.url}/console/signout">
            <input name="csrf_token" value="guessed"></form>""")
        with evil.expect_navigation():
            evil.evaluate("() => document.forms[0].submit()")
        assert "/console/signin" in evil.url or "Biểu mẫu này không còn hợp lệ" in evil.content()
        # Nothing happened: still signed in.
        page.goto(quick_lock_server.url + "/console/home")
        assert page.url.endswith("/console/home")
    finally:
        context.close()
