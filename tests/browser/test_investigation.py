"""An analyst's investigation in Debian's Chromium, against a real `soc serve`: syslog lines sent to the suite's own
listener raise two alerts; the analyst searches the events (a field filter, the histogram, the results), opens one
event's document, opens an entity page from an alert page, and merges the two alerts into an incident, which the API
then shows. axe-core on every page in both languages; screenshots of each (events, event, entity, incidents,
incident, in Vietnamese and English)."""

from __future__ import annotations

import random

import pytest

from tests.browser.conftest import (api_client, brute_force, check_accessibility,
                                    screenshot, switch_language as _switch_language, wait_for_alert as _wait_for_alert)


def _brute_force(server, address: str, host: str = "so-tttt-web-01") -> None:
    brute_force(server, address, host, first_port=5550)


@pytest.fixture(scope="module")
def api(console_server):
    with api_client(console_server, "analyst", "investigation test key") as client:
        yield client

def _both_languages(page, name: str, check) -> None:
    """The page in Vietnamese then English: ``check(lang)``, axe-core and a screenshot of each; back in Vietnamese."""
    assert page.locator("html").get_attribute("lang") == "vi"
    check("vi")
    check_accessibility(page)
    screenshot(page, f"{name}-vi")
    _switch_language(page, "en", "English")
    check("en")
    check_accessibility(page)
    screenshot(page, f"{name}-en")
    _switch_language(page, "vi", "Tiếng Việt")


def test_an_analyst_searches_events_opens_one_and_an_entity_then_merges_alerts_into_an_incident(
        signed_in_page, console_server, api, axe_source):
    first, second = (f"192.0.2.{n}" for n in random.sample(range(10, 250), 2))
    _brute_force(console_server, first)
    _brute_force(console_server, second)
    alert = _wait_for_alert(api, first)
    other = _wait_for_alert(api, second)

    # --- the event search: a field filter, the histogram, the results -------------------------------------------
    page = signed_in_page("analyst", next_path="/console/events")
    assert page.get_by_role("heading", level=1).inner_text() == "Tìm kiếm sự kiện"
    page.get_by_label("Địa chỉ nguồn").fill(first)
    page.get_by_role("button", name="Tìm", exact=True).click()
    page.wait_for_url(f"**/console/events?*source.ip={first}*")
    rows = page.locator("#event-results tr[data-event-id]")
    assert rows.count() == 5
    assert all(first in rows.nth(i).inner_text() for i in range(5))
    bars = page.locator(".events-histogram rect.bar")
    assert sum(int(bars.nth(i).get_attribute("data-count")) for i in range(bars.count())) == 5

    def search_words(lang):
        caption = page.locator("#histogram-caption").inner_text()
        assert caption == ("Số sự kiện khớp theo thời gian: 5" if lang == "vi" else "Matching events over time: 5")

    _both_languages(page, "events", search_words)

    # --- one event's document ---------------------------------------------------------------------------------------
    rows.first.locator("a.event-link").click()
    page.wait_for_url("**/console/events/*")
    assert page.locator('#ecs-fields tr[data-field="source.ip"] td').inner_text() == first
    assert "Failed password for root" in page.locator("#event-document").inner_text()

    def event_words(lang):
        assert page.get_by_role("heading", level=1).inner_text() == ("Sự kiện" if lang == "vi" else "Event")
        heading = "Các trường (ECS)" if lang == "vi" else "Fields (ECS)"
        assert page.get_by_role("heading", name=heading).is_visible()

    _both_languages(page, "event", event_words)

    # --- an entity page, from the alert page ------------------------------------------------------------------------
    page.goto(f"{console_server.url}/console/alerts/{alert['id']}")
    check_accessibility(page)  # the alert page with its responses (merge, silence, playbook)
    page.locator("#merge").scroll_into_view_if_needed()
    screenshot(page, "alert-responses-vi")
    page.locator(f"a.entity-link:text-is('{first}')").click()
    page.wait_for_url(f"**/console/entities/ip/{first}")
    timeline = page.locator("#entity-timeline tr[data-kind]")
    kinds = [timeline.nth(i).get_attribute("data-kind") for i in range(timeline.count())]
    assert kinds.count("event") == 5 and kinds.count("alert") == 1
    ats = [timeline.nth(i).get_attribute("data-at") for i in range(timeline.count())]
    assert ats == sorted(ats, reverse=True)  # newest first

    def entity_words(lang):
        title = f"Địa chỉ {first}" if lang == "vi" else f"Address {first}"
        assert page.get_by_role("heading", level=1).inner_text() == title
        assert page.locator("#entity-agency").inner_text() == (
            "Không thuộc mạng hay tài sản của đơn vị nào" if lang == "vi" else "Not in any agency's networks or assets")

    _both_languages(page, "entity", entity_words)
    # The web server the attacker went for is an asset, with its agency and criticality.
    page.goto(f"{console_server.url}/console/entities/host/so-tttt-web-01")
    assert page.locator("#entity-criticality").inner_text() == "Cao"
    assert page.locator("#entity-agency").inner_text() == "Sở Thông tin và Truyền thông"

    # --- merge the two alerts into an incident ----------------------------------------------------------------------
    page.goto(f"{console_server.url}/console/alerts/{alert['id']}")
    page.locator(f"input[name='merge_with'][value='{other['id']}']").check()
    page.get_by_label("Tên sự cố").fill("Dò mật khẩu SSH từ hai địa chỉ")
    page.get_by_role("button", name="Gộp thành sự cố mới").click()
    page.wait_for_url("**/console/incidents/*?done=merged")
    incident_id = page.url.split("/console/incidents/")[1].split("?")[0]
    assert page.get_by_role("status").first.inner_text() == "Đã tạo sự cố từ 2 cảnh báo."
    shown = page.locator("#incident-alerts tr[data-alert-id]")
    assert sorted(shown.nth(i).get_attribute("data-alert-id") for i in range(shown.count())) == \
        sorted([alert["id"], other["id"]])

    def incident_words(lang):
        assert page.get_by_role("heading", level=1).inner_text() == "Dò mật khẩu SSH từ hai địa chỉ"
        heading = "Các cảnh báo của sự cố" if lang == "vi" else "Its alerts"
        assert page.get_by_role("heading", name=heading).is_visible()

    _both_languages(page, "incident", incident_words)
    got = api.get(f"/api/v1/incidents/{incident_id}").json()
    assert sorted(got["incident"]["alerts"]) == sorted([alert["id"], other["id"]])
    assert got["incident"]["created_by"] == page.soc_user
    assert all(a["incident"] == incident_id for a in got["alerts"])

    # The list of incidents, with this one at the top.
    page.get_by_role("link", name="Tất cả sự cố").click()
    page.wait_for_url("**/console/incidents")
    assert page.locator("#incident-list tr[data-incident-id]").first.get_attribute("data-incident-id") == incident_id

    def list_words(lang):
        assert page.get_by_role("heading", level=1).inner_text() == ("Sự cố" if lang == "vi" else "Incidents")

    _both_languages(page, "incidents", list_words)


def test_an_analyst_sees_a_playbooks_dry_run_before_starting_it(signed_in_page, console_server, api, axe_source):
    address = f"192.0.2.{random.randrange(10, 250)}"
    _brute_force(console_server, address)
    alert = _wait_for_alert(api, address)
    page = signed_in_page("analyst", next_path=f"/console/alerts/{alert['id']}")
    page.locator("#playbook-name").select_option("block_ssh_brute_force")
    page.get_by_role("button", name="Xem bản chạy thử").click()
    page.wait_for_url("**/playbook?name=block_ssh_brute_force")
    assert "Chờ quản trị mạng phê duyệt".lower() in page.locator("#dry-run").inner_text().lower()
    assert page.locator(".device-plan").count() >= 1

    def dry_run_words(lang):
        assert page.get_by_role("button", name="Chạy kịch bản" if lang == "vi" else "Start the playbook").is_visible()

    _both_languages(page, "playbook-dry-run", dry_run_words)
    page.get_by_role("button", name="Chạy kịch bản").click()
    page.wait_for_url("**/console/runs/*")
    run_id = page.url.rsplit("/", 1)[1]
    run = api.get(f"/api/v1/playbooks/runs/{run_id}").json()
    assert run["state"] == "pending_approval" and run["alert_id"] == alert["id"]
    assert run["started_by"]["kind"] == "console" and run["started_by"]["role"] == "analyst"


def test_an_agency_user_cannot_open_another_agencys_event_or_entity_by_url(signed_in_page, console_server, api):
    address = f"192.0.2.{random.randrange(10, 250)}"
    _brute_force(console_server, address)  # events and an alert of so-tttt
    _wait_for_alert(api, address)
    event_id = api.get("/api/v1/events", params={"q": f"source.ip:{address}", "limit": 1}).json()["events"][0][
        "event"]["id"]
    page = signed_in_page("agency", "so-yt", next_path="/console/events")
    for path in (f"/console/events/{event_id}", "/console/entities/host/so-tttt-web-01",
                 "/console/entities/ip/10.20.10.10"):
        answer = page.goto(f"{console_server.url}{path}")
        assert answer.status == 404, path
        assert address not in page.content() and "Sở Thông tin và Truyền thông" not in page.content()
    # Its own search and the attacker's page show nothing of so-tttt's.
    page.goto(f"{console_server.url}/console/events?source.ip={address}")
    assert page.locator("#event-results tr[data-event-id]").count() == 0
    page.goto(f"{console_server.url}/console/entities/ip/{address}")
    assert page.locator("#entity-timeline tr[data-kind]").count() == 0
    own = signed_in_page("agency", "so-tttt", next_path=f"/console/events/{event_id}")
    assert address in own.locator("#ecs-fields").inner_text()
