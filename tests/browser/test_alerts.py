"""The alert queue and the alert page in Debian's Chromium, against a real `soc serve`: alerts raised by syslog lines
sent to the suite's own listener; an analyst finds a fresh one in the queue (keyboard: j, Enter), acknowledges it,
assigns it, adds a note and closes it with a reason, and the API shows the same history; a new alert appears in an
open queue without a reload; an agency user's URL edit to another agency's alert is a 404. Screenshots of the queue
and the alert page in Vietnamese and English; axe-core on both pages in both languages."""

from __future__ import annotations

import itertools
import time

import pytest

from tests.browser.conftest import (api_client, brute_force, check_accessibility,
                                    screenshot, switch_language as _switch_language, wait_for_alert as _wait_for_alert)


def _brute_force(server, address: str, host: str = "so-tttt-web-01") -> None:
    brute_force(server, address, host, first_port=4440)


@pytest.fixture(scope="module")
def api(console_server):
    with api_client(console_server, "analyst", "browser test key") as client:
        yield client


_addresses = itertools.count(11)


def test_find_a_fresh_alert_and_triage_it_then_the_api_shows_the_same_history(signed_in_page, console_server, api,
                                                                             axe_source):
    address = f"198.51.100.{next(_addresses)}"
    _brute_force(console_server, address)
    alert = _wait_for_alert(api, address)
    page = signed_in_page("analyst", next_path="/console/alerts")
    user = page.soc_user
    assert page.locator("html").get_attribute("lang") == "vi"
    assert page.get_by_role("heading", level=1).inner_text() == "Hàng đợi cảnh báo"
    check_accessibility(page)
    screenshot(page, "alerts-queue-vi")

    # Find it: the entity filter (a GET form: the URL is the view), then the keyboard: j to the first row, Enter.
    page.get_by_label("Thực thể").fill(address)
    page.get_by_role("button", name="Áp dụng").click()
    page.wait_for_url(f"**/console/alerts?*entity={address}*")
    rows = page.locator("#alert-queue tr[data-alert-id]")
    assert rows.count() == 1 and rows.first.get_attribute("data-alert-id") == alert["id"]
    page.locator("main h1").click()  # focus outside the form: j and k are for the list
    page.keyboard.press("j")
    focused = page.evaluate("document.activeElement.closest('tr') && document.activeElement.closest('tr')"
                            ".getAttribute('data-alert-id')")
    assert focused == alert["id"]
    assert "is-current" in rows.first.get_attribute("class")
    outline = page.evaluate("getComputedStyle(document.querySelector('#alert-queue tr.is-current')).outlineStyle")
    assert outline == "solid"  # the focus is visible
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/console/alerts/{alert['id']}")
    assert page.get_by_role("heading", level=1).inner_text() == "SSH Brute Force"
    assert "Sở Thông tin và Truyền thông" in page.locator("#alert-what").inner_text()
    assert page.get_by_role("link", name="T1110.001").get_attribute("href") == \
        "https://attack.mitre.org/techniques/T1110/001/"
    screenshot(page, "alert-page-vi")
    evidence = page.locator(".evidence-list > li")
    assert evidence.count() == 5
    evidence.first.locator("summary").click()  # an event's stored document, opened
    assert '"source"' in evidence.first.locator("pre").inner_text()
    check_accessibility(page)

    # Triage: acknowledge, assign, a note, close with a reason. Each comes back to the page and says so.
    page.get_by_role("button", name="Xác nhận", exact=True).click()
    page.wait_for_url("**done=acknowledge*")
    assert page.get_by_role("status").first.inner_text() == "Đã xác nhận cảnh báo."
    page.get_by_label("Mã người dùng").fill(user)
    page.get_by_role("button", name="Giao cho", exact=True).click()
    page.wait_for_url("**done=assign*")
    assert page.locator("#alert-assignee").inner_text() == user
    page.locator("#note-text").fill("Đã kiểm tra máy chủ: địa chỉ này dò mật khẩu SSH.")
    page.get_by_role("button", name="Thêm ghi chú").click()
    page.wait_for_url("**done=note*")
    page.locator("#new-status").select_option("closed")
    page.locator("#close-reason").select_option("true_positive")
    page.locator("#status-comment").fill("Đã chặn địa chỉ trên tường lửa.")
    page.get_by_role("button", name="Đổi trạng thái").click()
    page.wait_for_url("**done=status*")
    assert page.locator(".alert-head .badge.st-closed").inner_text() == "Đã đóng"
    shown = page.locator("#history li[data-action]")
    assert [shown.nth(i).get_attribute("data-action") for i in range(shown.count())] == \
        ["raised", "status", "assign", "note", "status"]
    assert "Tấn công thật" in page.locator("#history").inner_text()

    # The API shows the same history, each change by the signed-in user.
    got = api.get(f"/api/v1/alerts/{alert['id']}").json()["alert"]
    history = got["history"]
    assert [h["action"] for h in history] == ["raised", "status", "assign", "note", "status"]
    assert [h["by"] for h in history[1:]] == [user] * 4
    assert history[1]["to"] == "acknowledged" and history[2]["to"] == user
    assert history[4]["to"] == "closed" and history[4]["reason"] == "true_positive"
    assert history[4]["comment"] == "Đã chặn địa chỉ trên tường lửa."
    assert got["notes"][0]["text"] == "Đã kiểm tra máy chủ: địa chỉ này dò mật khẩu SSH."
    assert got["status"] == "closed" and got["assignee"] == user

    # The same two pages in English.
    _switch_language(page, "en", "English")
    assert page.get_by_role("heading", name="History").is_visible()
    assert "changed the status from Acknowledged to Closed" in page.locator("#history").inner_text()
    check_accessibility(page)
    screenshot(page, "alert-page-en")
    page.get_by_role("link", name="Back to the queue").click()
    page.wait_for_url("**/console/alerts")
    assert page.get_by_role("heading", level=1).inner_text() == "Alert queue"
    check_accessibility(page)
    screenshot(page, "alerts-queue-en")


def test_an_alert_raised_by_syslog_appears_in_the_open_queue_without_a_reload(signed_in_page, console_server, api):
    page = signed_in_page("analyst", next_path="/console/alerts")
    page.wait_for_selector("#alert-queue[data-live='on']")
    page.evaluate("window.__sameDocument = true")  # gone if the page reloads
    page.wait_for_timeout(1500)  # the stream's first look at the store: what the page shows is not "new"
    assert page.locator("#alert-queue tr.is-new").count() == 0
    assert page.locator("#alerts-live").inner_text() == ""
    before = page.locator("#alert-queue tr[data-alert-id]").count()
    address = f"198.51.100.{next(_addresses)}"
    began = time.monotonic()
    _brute_force(console_server, address)
    row = page.locator(f"#alert-queue tbody.alert-rows tr[data-alert-id]:has-text('{address}')")
    row.wait_for(timeout=20_000)
    arrived = time.monotonic() - began
    assert page.evaluate("window.__sameDocument === true")
    assert page.locator("#alert-queue tbody.alert-rows tr[data-alert-id]").first.inner_text() == row.inner_text()
    assert "is-new" in row.get_attribute("class")
    assert page.locator("#alert-queue tr[data-alert-id]").count() == before + 1
    page.wait_for_function("document.getElementById('alerts-live').textContent.includes('cảnh báo mới')")
    assert page.locator("#alerts-live").get_attribute("aria-live") == "polite"
    alert = _wait_for_alert(api, address)
    assert row.get_attribute("data-alert-id") == alert["id"]
    # The new row is a row like the others: it opens its alert.
    row.get_by_role("link").click()
    page.wait_for_url(f"**/console/alerts/{alert['id']}")
    assert arrived < 20


def test_an_agency_user_cannot_open_another_agencys_alert_by_url(signed_in_page, console_server, api):
    address = f"198.51.100.{next(_addresses)}"
    _brute_force(console_server, address)  # an alert of so-tttt
    alert = _wait_for_alert(api, address)
    page = signed_in_page("agency", "so-yt", next_path="/console/alerts")
    assert address not in page.content()
    answer = page.goto(f"{console_server.url}/console/alerts/{alert['id']}")
    assert answer.status == 404
    assert address not in page.content() and "SSH Brute Force" not in page.content()
    own = signed_in_page("agency", "so-tttt", next_path="/console/alerts")
    assert own.locator(f"#alert-queue tr[data-alert-id='{alert['id']}']").count() == 1
