"""The administration pages and the rule pages in Debian's Chromium against a real `soc serve`: an admin opens each
tab of the administration (inventory, users and keys, dead letters, log-source health), edits an asset through its
form and creates a user, and the API shows both; an analyst opens rule health and the ATT&CK matrix (alerts seeded
in the store, one of them a technique no rule covers) and cannot open the administration. Screenshots of each page in
Vietnamese and English (admin-inventory-vi, admin-asset-en, rules-en, attack-vi, …); axe-core on each."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from soc import ecs
from soc.storage.base import DeadLetter
from soc_api.keys import create_key
from tests.browser.conftest import switch_language as _switch_language, check_accessibility, new_context, screenshot, sign_in

pytestmark = pytest.mark.timeout(600)
ASSET = "so-yt-app-01"  # of so-yt in the sample inventory: criticality medium, log_sources [linux-auth, syslog]
_names = itertools.count(1)


@pytest.fixture(scope="module")
def api(console_server):
    """An HTTP client and an admin's API key for the served suite (the API beside the console)."""
    with console_server.store() as store:
        key = create_key(store, "admin", name="browser admin test key")[0]
    with httpx.Client(base_url=console_server.url, headers={"X-API-Key": key}, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def seeded(console_server):
    """Alerts naming ATT&CK techniques (one no loaded rule covers) and a hostile dead letter, put in the store."""
    now = datetime.now(timezone.utc)

    def alert(n: int, tactic: str, technique: str) -> dict:
        at = ecs.utc_iso(now - timedelta(minutes=n))
        return {"id": f"browser-attack-{n}", "fingerprint": f"browser-attack-f{n}", "status": "new",
                "severity": "medium", "summary": f"seeded alert {n}", "organization": {"id": "so-yt"},
                "rule": {"id": "seeded", "name": "seeded", "title": "Seeded", "type": "rule"},
                "first_seen": at, "last_seen": at, "created": at, "count": 1, "evidence": [], "labels": {},
                "entities": {"ip": ["203.0.113.9"]}, "threat": {"tactic": [tactic], "technique": [technique]},
                "history": [{"at": at, "by": "detections", "action": "raised"}]}

    with console_server.store() as store:
        store.upsert_alerts([alert(n, "credential-access", "T1110") for n in range(3)]
                            + [alert(10 + n, "impact", "T1486") for n in range(2)])
        store.write_dead_letters([DeadLetter(received=ecs.utc_iso(now), source="udp://10.20.17.10:514",
                                             reason="parse: no parser for this program",
                                             raw=b"<script>alert('x')</script> \x1b[31m" + b"B" * 400)])
        store.refresh()
    return True


def _both_languages(page, name: str) -> None:
    """A screenshot and an accessibility check of the page in Vietnamese, then in English (the language left on)."""
    if page.locator("html").get_attribute("lang") != "vi":
        _switch_language(page, "vi", "Tiếng Việt")
    screenshot(page, f"{name}-vi")
    check_accessibility(page)
    _switch_language(page, "en", "English")
    screenshot(page, f"{name}-en")
    check_accessibility(page)


def test_an_admin_opens_each_tab_edits_an_asset_and_creates_a_user(request, browser, signed_in_page, console_server,
                                                                    api, seeded):
    original = api.get(f"/api/v1/inventory/assets/{ASSET}").json()
    page = signed_in_page("admin", next_path="/console/admin/inventory")
    assert page.get_by_role("heading", level=1).inner_text() == "Danh mục tài sản"
    _both_languages(page, "admin-inventory")

    # Edit an asset through its form: criticality, one more expected log source.
    page.locator(f'#asset-list a[href="/console/admin/inventory/assets/{ASSET}"]').click()
    page.wait_for_url(f"**/console/admin/inventory/assets/{ASSET}")
    page.get_by_label("Criticality").select_option("critical")
    page.get_by_label("nginx", exact=True).check()
    page.get_by_role("button", name="Save the asset").click()
    page.wait_for_url(f"**/console/admin/inventory/assets/{ASSET}?done=saved")
    assert page.locator("#notice").inner_text() == f"Asset {ASSET} is saved."
    asset = api.get(f"/api/v1/inventory/assets/{ASSET}").json()
    assert asset["criticality"] == "critical" and asset["log_sources"] == ["linux-auth", "syslog", "nginx"]
    request.addfinalizer(lambda: api.put(f"/api/v1/inventory/assets/{ASSET}", json=original))  # for the other tests
    # An address that is not one: the API's words, the field marked, nothing saved.
    page.get_by_label("Addresses").fill("10.20.17.10\n10.20.17.999")
    page.get_by_role("button", name="Save the asset").click()
    page.wait_for_load_state()
    assert "does not appear to be an IPv4 or IPv6 address" in page.locator("#asset-errors").inner_text()
    assert page.get_by_label("Addresses").get_attribute("aria-invalid") == "true"
    assert api.get(f"/api/v1/inventory/assets/{ASSET}").json()["addresses"] == ["10.20.17.10"]
    _both_languages(page, "admin-asset")

    # Create a user with a console password.
    user_id = f"browser-user-{next(_names)}"
    page.get_by_role("link", name="Users and keys").click()
    page.wait_for_url("**/console/admin/users")
    page.get_by_label("User name", exact=True).fill(user_id)
    page.get_by_label("Full name").fill("Phạm Thu Hà")
    page.get_by_label("Role").select_option("agency")
    page.locator("#new-agency").select_option("so-yt")
    page.get_by_label("New password").fill("một mật khẩu thật dài")
    page.get_by_label("The password again").fill("một mật khẩu thật dài")
    page.get_by_role("button", name="Create the user").click()
    page.wait_for_url(f"**/console/admin/users/{user_id}?done=created")
    made = api.get(f"/api/v1/users/{user_id}").json()
    assert (made["role"], made["agency"], made["name"]) == ("agency", "so-yt", "Phạm Thu Hà")
    # A key for the user: shown once, on this page only.
    page.get_by_label("Name of the key").fill("the agency's uploader")
    page.get_by_role("button", name="Make a key").click()
    page.wait_for_load_state()
    key = page.locator("#new-key-value").input_value()
    assert httpx.get(f"{console_server.url}/api/v1/me", headers={"X-API-Key": key}).json()["user"] == user_id
    page.goto(f"{console_server.url}/console/admin/users/{user_id}")
    assert page.locator("#new-key-value").count() == 0 and key not in page.content()
    _both_languages(page, "admin-user")
    page.goto(f"{console_server.url}/console/admin/users")
    _both_languages(page, "admin-users")

    # The new user signs in with that password.
    context = new_context(browser)
    try:
        other = context.new_page()
        sign_in(other, console_server.url, user_id, "một mật khẩu thật dài", next_path="/console/alerts")
        assert other.locator("html").get_attribute("lang") == "vi"
    finally:
        context.close()

    # Dead letters: the <script> is text.
    page.get_by_role("link", name="Dead letters").click()
    page.wait_for_url("**/console/admin/deadletters")
    preview = page.locator("#dead-letters pre.preview").first.inner_text()
    assert "<script>alert('x')</script>" in preview and "\\x1b[31m" in preview
    assert page.evaluate("document.querySelectorAll('main script').length") == 0
    _both_languages(page, "admin-deadletters")

    # Log-source health.
    page.get_by_role("link", name="Log-source health").click()
    page.wait_for_url("**/console/admin/sources")
    assert page.locator("#sources-by-agency").is_visible()
    _both_languages(page, "admin-sources")

    # Tiers: this suite forwards to none, and (here) no suite forwards to it.
    page.get_by_role("link", name="Tiers").click()
    page.wait_for_url("**/console/admin/tiers")
    assert page.locator("#no-upstream").is_visible() and page.locator("#upstream-heading").is_visible()
    _both_languages(page, "admin-tiers")


def test_an_analyst_opens_rule_health_and_the_attack_matrix(signed_in_page, console_server, seeded):
    page = signed_in_page("analyst", next_path="/console/rules")
    assert page.get_by_role("heading", level=1).inner_text() == "Tình trạng luật phát hiện"
    rows = page.locator("#rules tr[data-rule-id]")
    assert rows.count() >= 6 and page.locator('#rules tr[data-state="loaded"]').count() >= 6
    assert page.locator("#rollback-form").count() == 0
    _both_languages(page, "rules")
    # a search by title, from the form
    page.get_by_label("Search by title").fill("brute force")
    page.get_by_role("button", name="Apply").click()
    page.wait_for_url("**/console/rules?*q=brute+force*")
    titles = [t.lower() for t in page.locator("#rules .rule-title").all_inner_texts()]
    assert titles and all("brute force" in t for t in titles)

    page.get_by_role("link", name="ATT&CK matrix").click()
    page.wait_for_url("**/console/rules/attack")
    gap = page.locator('#attack-matrix td[data-state="gap"]')
    assert gap.count() == 1 and gap.get_attribute("data-tactic") == "impact"
    assert "Not covered here; 2 alerts seen" in gap.inner_text()
    both = page.locator('#attack-matrix tr[data-technique="T1110"] td[data-tactic="credential-access"]')
    assert both.get_attribute("data-state") == "both" and int(both.get_attribute("data-alerts")) >= 3
    _switch_language(page, "vi", "Tiếng Việt")
    _both_languages(page, "attack")
    # a tactic's heading opens the queue filtered by it
    page.locator('#attack-matrix th[data-tactic="credential-access"] a').click()
    page.wait_for_url("**/console/alerts?tactic=credential-access&range=7d")
    assert page.locator('#alert-queue tr[data-alert-id="browser-attack-0"]').count() == 1

    # and the administration is not theirs
    answer = page.goto(f"{console_server.url}/console/admin/users")
    assert answer.status == 403
    assert page.locator("nav.mainnav a[href='/console/admin']").count() == 0


def test_an_analyst_opens_the_findings_and_one_finding(signed_in_page, console_server):
    """The periodic assessment's findings: the list and one finding, in both languages, checked by axe-core."""
    now = datetime.now(timezone.utc)
    with console_server.store() as store:
        store.put_documents("findings", [{
            "id": "browser-finding-1", "check": "tls", "detail": "TLS 1.0 accepted", "severity": "high",
            "status": "open", "first_seen": ecs.utc_iso(now - timedelta(days=40)), "last_seen": ecs.utc_iso(now),
            "due": ecs.utc_iso(now - timedelta(days=10)), "organization": {"id": "so-tttt"},
            "asset": {"id": "so-tttt-web-01", "address": "10.20.17.10"},
            "evidence": {"tool": "sslyze", "text": "<script>alert('x')</script> TLSv1.0 accepted"}}])
        store.refresh()
    page = signed_in_page("analyst", next_path="/console/findings")
    assert page.locator('#finding-list tr[data-finding-id="browser-finding-1"]').count() == 1
    _both_languages(page, "findings")
    page.locator('#finding-list tr[data-finding-id="browser-finding-1"] a').first.click()
    page.wait_for_url("**/console/findings/browser-finding-1**")
    assert "<script>alert('x')</script>" in page.locator("main").inner_text()  # shown as text, never run
    _both_languages(page, "finding")
