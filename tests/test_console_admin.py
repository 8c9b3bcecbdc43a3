"""The console's administration pages over real HTTP (a running suite with the source-health monitor, users signed in
through the real form): admins only (an analyst, a network admin, an agency user get 403 on every page and every
change); the inventory lists what GET /api/v1/inventory/* lists, an asset edit writes what PUT
/api/v1/inventory/assets/{id} writes (read back through the API and from the inventory file) and an invalid value is
refused with the API's own error; users are created, disabled, enabled and given a console password as the API and
`soc users password` do; a new API key is shown once, works, and is revoked; dead letters are listed with their
preview escaped (a <script> in one is text); log-source health shows the monitor's states by agency. Every change is
a POST with the session's CSRF token and leaves an audit record."""

from __future__ import annotations

import html
import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from soc import ecs
from soc.storage.base import DeadLetter
from soc_api.console import admin
from tests.api_fixtures import AGENCY_A, AGENCY_B, call, keys_for, running_suite
from tests.console_fixtures import PASSWORD, ConsoleClient, add_user, console_api

EXTENSIONS = "[detections.indicators.extension, soc_api.extension, collectors.monitoring, tiers.extension]"
ASSET = "so-tttt-web-01"  # of AGENCY_A in the sample inventory: criticality high, log_sources [linux-auth]
NEW_KEY = re.compile(r'id="new-key-value" readonly value="([^"]+)"')


class Console:
    def __init__(self, suite, clients, keys):
        self.suite, self.clients, self.keys = suite, clients, keys

    def api(self, method: str, path: str, key: str = "admin", **kwargs):
        return call(self.clients["root"].http, method, f"/api/v1{path}", self.keys[key], **kwargs)

    def page(self, user: str, path: str, lang: str = "en"):
        client = self.clients[user]
        client.http.cookies.set("soc_lang", lang)
        client.http.cookies.set("soc_tz", "UTC")
        return client.get(path)

    def post(self, user: str, path: str, data: dict | None = None, *, token: bool = True):
        client = self.clients[user]
        client.http.cookies.set("soc_lang", "en")
        form = dict(data or {})
        if token:
            form["csrf_token"] = client.csrf()
        return client.post(path, data=form)

    def audit(self, user: str = "root") -> list[dict]:
        return self.api("GET", "/audit", params={"user": user, "limit": 200}).json()["records"]


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    with running_suite(tmp_path_factory.mktemp("console-admin"), api=console_api(), extensions=EXTENSIONS) as suite:
        keys = keys_for(suite.store)
        for user, role, agency in (("root", "admin", None), ("ana", "analyst", None), ("nam", "network_admin", None),
                                   ("tttt", "agency", AGENCY_A), ("nat", "national_centre", None)):
            add_user(suite, user, role, agency=agency)
        clients = {}
        for user in ("root", "ana", "nam", "tttt", "nat"):
            clients[user] = ConsoleClient(suite)
            assert clients[user].signin(user).status_code == 303
        yield Console(suite, clients, keys)
        for client in clients.values():
            client.close()


def _text(page) -> str:
    body = page.text if hasattr(page, "text") else page
    if "<main" in body:
        body = body[body.find("<main"):]
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", body)))


def _api_errors(page) -> list[str]:
    return [html.unescape(e) for e in re.findall(r'<li class="api-error">(.*?)</li>', page.text, re.S)]


def _rows(page, attribute: str) -> dict[str, str]:
    return {html.unescape(m.group(1)): m.group(0)
            for m in re.finditer(rf'<tr {attribute}="([^"]+)"(.*?)</tr>', page.text, re.S)}


PAGES = ("/console/admin/inventory", f"/console/admin/inventory/assets/{ASSET}", "/console/admin/users",
         "/console/admin/users/ana", "/console/admin/deadletters", "/console/admin/sources", "/console/admin/tiers")
CHANGES = ((f"/console/admin/inventory/assets/{ASSET}", {"criticality": "low", "log_sources": "nginx"}),
           (f"/console/admin/inventory/agencies/{AGENCY_A}/contact", {"contact": "someone else"}),
           ("/console/admin/users", {"id": "sneaky", "role": "admin"}),
           ("/console/admin/users/ana/disable", {}),
           ("/console/admin/users/root/password", {"password": "a new long passphrase", "password_again":
                                                   "a new long passphrase"}),
           ("/console/admin/users/ana/keys", {"name": "stolen"}))


# --- who may --------------------------------------------------------------------------------------------------------
def test_administration_is_for_admins_only(console):
    assert console.page("root", "/console/admin").headers["location"] == "/console/admin/inventory"
    for path in PAGES:
        assert console.page("root", path).status_code == 200, path
    assert 'href="/console/admin"' in console.page("root", "/console/home").text
    for user in ("ana", "nam", "tttt", "nat"):
        assert 'href="/console/admin"' not in console.page(user, "/console/home").text
        for path in PAGES + ("/console/admin",):
            refused = console.page(user, path)
            assert refused.status_code == 403, (user, path)
            assert "Administrator" in _text(refused) and "asset-form" not in refused.text
        for path, data in CHANGES:
            assert console.post(user, path, data).status_code == 403, (user, path)
    # nothing changed: the API shows the asset, the users and the keys as they were
    asset = console.api("GET", f"/inventory/assets/{ASSET}").json()
    assert asset["criticality"] == "high" and asset["log_sources"] == ["linux-auth"]
    assert console.api("GET", "/users/sneaky").status_code == 404
    assert console.api("GET", "/users/ana").json()["disabled"] is False
    assert not [k for k in console.api("GET", "/keys", params={"user": "ana"}).json() if k["name"] == "stolen"]
    refused = [r for r in console.audit("ana") if r["path"].startswith("/console/admin")]
    assert refused and all(r["outcome"] == "refused 403" for r in refused)
    # not signed in: to the sign-in page, and a form post without a session is refused the same way
    anonymous = ConsoleClient(console.suite)
    try:
        answer = anonymous.get("/console/admin/users")
        assert answer.status_code == 303 and answer.headers["location"].startswith("/console/signin")
        assert anonymous.post("/console/admin/users/ana/disable").status_code == 303
    finally:
        anonymous.close()
    assert console.api("GET", "/users/ana").json()["disabled"] is False


def test_every_change_needs_the_csrf_token(console):
    for path, data in CHANGES:
        assert console.post("root", path, data, token=False).status_code == 403, path
        assert console.post("root", path, dict(data, csrf_token="x" * 43), token=False).status_code == 403, path
    asset = console.api("GET", f"/inventory/assets/{ASSET}").json()
    assert asset["criticality"] == "high"
    assert console.api("GET", f"/inventory/agencies/{AGENCY_A}").json()["contact"] != "someone else"
    assert console.api("GET", "/users/sneaky").status_code == 404
    assert console.api("GET", "/users/ana").json()["disabled"] is False


# --- inventory ------------------------------------------------------------------------------------------------------
def test_the_inventory_lists_what_the_api_lists(console):
    page = console.page("root", "/console/admin/inventory")
    agencies = console.api("GET", "/inventory/agencies").json()
    assets = console.api("GET", "/inventory/assets").json()
    devices = console.api("GET", "/inventory/devices").json()
    assert set(_rows(page, "data-agency-id")) == {a["id"] for a in agencies}
    assert set(_rows(page, "data-asset-id")) == {a["id"] for a in assets}
    assert set(_rows(page, "data-device-id")) == {d["id"] for d in devices}
    row = _text(_rows(page, "data-asset-id")[ASSET])
    assert "High" in row and "10.20.10.10" in row and "linux-auth" in row
    only_a = console.page("root", f"/console/admin/inventory?agency={AGENCY_A}")
    assert set(_rows(only_a, "data-asset-id")) == {a["id"] for a in assets if a["agency"] == AGENCY_A}
    vi = console.page("root", "/console/admin/inventory", lang="vi")
    assert "Danh mục tài sản" in _text(vi) and "Thiết bị được quản lý" in _text(vi)


def test_an_asset_edit_writes_what_the_api_writes(console):
    before = console.api("GET", f"/inventory/assets/{ASSET}").json()
    form = console.page("root", f"/console/admin/inventory/assets/{ASSET}")
    assert '<option value="high" selected>' in form.text
    assert 'id="src-linux-auth" name="log_sources" value="linux-auth" checked' in form.text
    saved = console.post("root", f"/console/admin/inventory/assets/{ASSET}", {
        "criticality": "critical", "log_sources": ["linux-auth", "nginx"], "other_sources": "custom-app",
        "addresses": "10.20.10.10\n10.20.10.11"})
    assert saved.status_code == 303 and saved.headers["location"].endswith("?done=saved")
    after = console.api("GET", f"/inventory/assets/{ASSET}").json()
    assert after["criticality"] == "critical" and after["log_sources"] == ["linux-auth", "nginx", "custom-app"]
    assert after["addresses"] == ["10.20.10.10", "10.20.10.11"]
    assert {k: v for k, v in after.items() if k not in ("criticality", "log_sources", "addresses")} == \
        {k: v for k, v in before.items() if k not in ("criticality", "log_sources", "addresses")}
    # written to the inventory file, as the API's edit writes it (the previous version kept beside it)
    path = Path(console.suite.settings.inventory.path)
    written = next(a for a in yaml.safe_load(path.read_text())["assets"] if a["id"] == ASSET)
    assert written["criticality"] == "critical" and written["log_sources"] == ["linux-auth", "nginx", "custom-app"]
    assert path.with_suffix(path.suffix + ".bak").exists()
    # the running suite uses it: enrichment and log-source health see the new sources
    assert console.suite.inventory.assets[ASSET].criticality.value == "critical"
    health = console.suite.service("source_health")
    assert (ASSET, "nginx") in health.states
    notice = console.page("root", saved.headers["location"])
    assert f"Asset {ASSET} is saved." in _text(notice)
    [record] = [r for r in console.audit() if r["action"] == "console_admin_asset_save" and r["outcome"] == "ok"]
    assert record["target"] == {"asset_id": ASSET} and "criticality critical" in record["detail"]
    # and back as it was, through the same form
    assert console.post("root", f"/console/admin/inventory/assets/{ASSET}", {
        "criticality": before["criticality"], "log_sources": before["log_sources"],
        "addresses": ", ".join(before["addresses"])}).status_code == 303
    assert console.api("GET", f"/inventory/assets/{ASSET}").json() == before


def test_an_invalid_asset_edit_shows_the_apis_error(console):
    before = console.api("GET", f"/inventory/assets/{ASSET}").json()
    # The same change through the API: its 422 says what is wrong, in its words.
    for bad, field in (({"criticality": "extreme"}, "criticality"), ({"addresses": ["10.20.10.300"]}, "addresses")):
        api = console.api("PUT", f"/inventory/assets/{ASSET}", json=dict(before, **bad))
        assert api.status_code == 422
        [error] = api.json()["detail"]
        expected = f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}"
        form = {"criticality": before["criticality"], "log_sources": before["log_sources"],
                "addresses": "\n".join(before["addresses"])}
        form.update({k: (v if isinstance(v, str) else "\n".join(v)) for k, v in bad.items()})
        page = console.post("root", f"/console/admin/inventory/assets/{ASSET}", form)
        assert page.status_code == 422
        assert _api_errors(page) == [expected]
        assert "Not saved. The API refused it:" in _text(page) and 'role="alert"' in page.text
        # the form keeps what was typed, and marks the field
        assert re.search(rf'id="{field}"[^>]*aria-invalid="true"', page.text)
    assert console.api("GET", f"/inventory/assets/{ASSET}").json() == before
    refused = [r for r in console.audit() if r["action"] == "console_admin_asset_save" and
               r["detail"] and r["detail"].startswith("refused 422")]
    assert len(refused) >= 2


def test_the_responsible_person_is_the_agencys_contact(console):
    before = console.api("GET", f"/inventory/agencies/{AGENCY_A}").json()
    saved = console.post("root", f"/console/admin/inventory/agencies/{AGENCY_A}/contact",
                         {"contact": "Trần Văn Minh, 0912 345 678", "back": ASSET})
    assert saved.status_code == 303 and saved.headers["location"] == \
        f"/console/admin/inventory/assets/{ASSET}?done=contact"
    after = console.api("GET", f"/inventory/agencies/{AGENCY_A}").json()
    assert after["contact"] == "Trần Văn Minh, 0912 345 678"
    assert {k: v for k, v in after.items() if k != "contact"} == {k: v for k, v in before.items() if k != "contact"}
    assert "Trần Văn Minh, 0912 345 678" in _text(console.page("root", saved.headers["location"]))
    assert console.post("root", "/console/admin/inventory/agencies/no-such-agency/contact",
                        {"contact": "x"}).status_code == 404


# --- users and keys -------------------------------------------------------------------------------------------------
def test_create_a_user_with_a_password_who_then_signs_in(console):
    made = console.post("root", "/console/admin/users", {
        "id": "lan.nguyen", "name": "Nguyễn Thị Lan", "email": "lan@tinh.example", "role": "agency",
        "agency": AGENCY_B, "password": "mật khẩu đủ dài và khó", "password_again": "mật khẩu đủ dài và khó"})
    assert made.status_code == 303 and made.headers["location"] == "/console/admin/users/lan.nguyen?done=created"
    user = console.api("GET", "/users/lan.nguyen").json()
    assert (user["role"], user["agency"], user["name"], user["disabled"]) == ("agency", AGENCY_B, "Nguyễn Thị Lan",
                                                                             False)
    assert user["created_by"] == "root"
    person = ConsoleClient(console.suite)
    try:
        assert person.signin("lan.nguyen", "mật khẩu đủ dài và khó").status_code == 303
        assert person.get("/console/alerts").status_code == 200
        assert person.get("/console/admin/users").status_code == 403
    finally:
        person.close()
    page = console.page("root", "/console/admin/users")
    row = _text(_rows(page, "data-user-id")["lan.nguyen"])
    assert "Agency user" in row and "Department of Health" in row and "Active" in row and "Yes" in row
    [record] = [r for r in console.audit() if r["action"] == "console_admin_user_create" and r["outcome"] == "ok"
                and "lan.nguyen" in r["detail"]]
    assert "console password set" in record["detail"] and "mật khẩu" not in str(record)


@pytest.mark.parametrize("form, expected", [
    ({"id": "Bad Name", "role": "analyst"}, "body.id: String should match pattern"),
    ({"id": "no-agency", "role": "agency"}, "body: an agency key needs --agency ID"),
    ({"id": "bound", "role": "analyst", "agency": AGENCY_A}, "body: only agency and downstream keys are bound to an agency"),
    ({"id": "ana", "role": "analyst"}, "user 'ana' exists already"),
    ({"id": "mismatch", "role": "analyst", "password": "one long passphrase", "password_again": "another one"},
     "password: the two passwords are not the same"),
    ({"id": "weak", "role": "analyst", "password": "short", "password_again": "short"},
     "password: a password needs at least"),
])
def test_a_refused_user_shows_the_apis_reason(console, form, expected):
    page = console.post("root", "/console/admin/users", form)
    assert page.status_code == 422
    assert any(e.startswith(expected) for e in _api_errors(page)), _api_errors(page)
    assert f'value="{html.escape(form["id"])}"' in page.text  # the form keeps what was typed
    if form["id"] != "ana":
        assert console.api("GET", f"/users/{form['id'].lower().replace(' ', '-')}").status_code in (404, 422)
    # the API refuses the same user the same way
    if "password" not in form:
        body = {"id": form["id"], "role": form["role"], **({"agency": form["agency"]} if "agency" in form else {})}
        assert console.api("POST", "/users", json=body).status_code in (409, 422)


def test_disable_and_enable_a_user_as_the_api_does(console):
    add_user(console.suite, "hoa", "analyst")
    hoa = ConsoleClient(console.suite)
    key = console.post("root", "/console/admin/users/hoa/keys", {"name": "hoa's script", "lifetime": "30"})
    hoa_key = NEW_KEY.search(key.text).group(1)
    try:
        assert hoa.signin("hoa").status_code == 303
        assert call(hoa.http, "GET", "/api/v1/me", hoa_key).status_code == 200
        done = console.post("root", "/console/admin/users/hoa/disable")
        assert done.status_code == 303 and done.headers["location"] == "/console/admin/users/hoa?done=disabled"
        assert console.api("GET", "/users/hoa").json()["disabled"] is True
        assert call(hoa.http, "GET", "/api/v1/me", hoa_key).status_code == 401  # keys stop at once
        ended = hoa.get("/console/alerts")  # and the console session at the next page
        assert ended.status_code == 303 and "/console/signin" in ended.headers["location"]
        assert "Disabled" in _text(_rows(console.page("root", "/console/admin/users"), "data-user-id")["hoa"])
        assert console.post("root", "/console/admin/users/hoa/enable").status_code == 303
        assert console.api("GET", "/users/hoa").json()["disabled"] is False
        assert call(hoa.http, "GET", "/api/v1/me", hoa_key).status_code == 200
    finally:
        hoa.close()
    # an admin does not lock themselves out
    refused = console.post("root", "/console/admin/users/root/disable")
    assert refused.status_code == 409 and "You cannot disable your own account" in _text(refused)
    assert console.api("GET", "/users/root").json()["disabled"] is False
    assert console.post("root", "/console/admin/users/nobody-here/disable").status_code == 404


def test_setting_a_password_ends_the_users_sessions(console):
    add_user(console.suite, "binh", "analyst")
    binh = ConsoleClient(console.suite)
    try:
        assert binh.signin("binh").status_code == 303
        weak = console.post("root", "/console/admin/users/binh/password",
                            {"password": "binh", "password_again": "binh"})
        assert weak.status_code == 422 and _api_errors(weak)[0].startswith("a password needs at least")
        assert binh.get("/console/alerts").status_code == 200  # nothing changed
        done = console.post("root", "/console/admin/users/binh/password",
                            {"password": "một mật khẩu mới rất dài", "password_again": "một mật khẩu mới rất dài"})
        assert done.status_code == 303 and done.headers["location"] == "/console/admin/users/binh?done=password"
        assert binh.get("/console/alerts").status_code == 303  # signed out
        assert binh.signin("binh", PASSWORD).status_code != 303  # the old password no longer works
        assert binh.signin("binh", "một mật khẩu mới rất dài").status_code == 303
    finally:
        binh.close()
    records = [r for r in console.audit() if r["action"] == "console_admin_user_password"]
    assert records and not any("mật khẩu" in str(r) or "binh\"" in str(r.get("query")) for r in records)


def test_a_new_key_is_shown_once_works_and_is_revoked(console):
    made = console.post("root", "/console/admin/users/ana/keys", {"name": "ana's notebook", "lifetime": "90"})
    assert made.status_code == 201
    key = NEW_KEY.search(made.text).group(1)
    assert "it is shown this once" in _text(made)
    me = call(console.clients["root"].http, "GET", "/api/v1/me", key).json()
    assert me["user"] == "ana" and me["role"] == "analyst"
    record = next(k for k in console.api("GET", "/keys", params={"user": "ana"}).json() if k["id"] == me["key_id"])
    assert record["name"] == "ana's notebook" and not record["revoked"]
    # never again: not on the user's page, not in the users and keys page, not in the audit log
    for path in ("/console/admin/users/ana", "/console/admin/users", "/console/admin/users/ana?done=created"):
        page = console.page("root", path)
        assert key not in page.text and "new-key-value" not in page.text and me["key_id"] in page.text
    assert key not in str(console.audit())
    [audit] = [r for r in console.audit() if r["action"] == "console_admin_user_key" and me["key_id"] in r["detail"]]
    assert audit["outcome"] == "ok"
    # revoke: the API shows it revoked, and it no longer works
    done = console.post("root", f"/console/admin/keys/{me['key_id']}/revoke", {"back": "ana"})
    assert done.status_code == 303 and done.headers["location"].startswith("/console/admin/users/ana?done=revoked")
    assert next(k for k in console.api("GET", "/keys").json() if k["id"] == me["key_id"])["revoked"] is True
    assert call(console.clients["root"].http, "GET", "/api/v1/me", key).status_code == 401
    rows = _rows(console.page("root", "/console/admin/users"), "data-key-id")
    assert 'data-state="revoked"' in rows[me["key_id"]] and "revoke-form" not in rows[me["key_id"]]
    assert console.post("root", "/console/admin/keys/no-such-key/revoke").status_code == 404
    # a key for a disabled user is refused as the API refuses it
    add_user(console.suite, "gone", "analyst", password=None)
    assert console.post("root", "/console/admin/users/gone/disable").status_code == 303
    refused = console.post("root", "/console/admin/users/gone/keys", {"name": "x", "lifetime": "30"})
    assert refused.status_code == 409 and "user 'gone' is disabled" in _text(refused)
    assert NEW_KEY.search(refused.text) is None


# --- dead letters ---------------------------------------------------------------------------------------------------
def test_dead_letters_are_listed_with_an_escaped_preview(console):
    hostile = (b"<script>alert('dead')</script> \x1b[2J\xe2\x80\xae reversed <img src=x onerror=alert(1)> "
               + b"A" * 1000 + b"\xff\xfe end")
    now = ecs.utc_iso(datetime.now(timezone.utc))
    console.suite.store.write_dead_letters([
        DeadLetter(received=now, source="udp://10.20.10.99:514", reason="parse: no parser for <b>this</b>",
                   raw=hostile, truncated=True),
        DeadLetter(received=ecs.utc_iso(datetime.now(timezone.utc) - timedelta(minutes=5)),
                   source="tcp://10.20.10.98:601", reason="size: over the limit", raw=b"short one")])
    console.suite.store.refresh()
    page = console.page("root", "/console/admin/deadletters")
    assert page.status_code == 200
    api = console.api("GET", "/deadletters", params={"limit": 50}).json()
    assert f"{api['total']} dead letters in all" in _text(page)
    rows = _rows(page, "data-dead-letter-id")
    assert set(rows) == {d["id"] for d in api["dead_letters"]}
    [hostile_id] = [d["id"] for d in api["dead_letters"] if d["source"] == "udp://10.20.10.99:514"]
    row = rows[hostile_id]
    assert "<script>" not in page.text.replace('<script src="/console/static/console.js" defer></script>', "")
    assert "&lt;script&gt;alert(&#39;dead&#39;)&lt;/script&gt;" in row and "&lt;img src=x" in row
    assert "<b>this</b>" not in row and "&lt;b&gt;this&lt;/b&gt;" in row
    assert "\x1b" not in page.text and "\\x1b[2J" in row  # control characters written out
    assert "\u202e" not in page.text and "\\u202e" in row  # and the bidirectional override
    assert "First 240 characters." in _text(row) and "longer than what was kept" in _text(row)
    assert "The whole preview" in row and "A" * 1000 in row
    assert "udp://10.20.10.99:514" in row and "parse: no parser for" in _text(row)
    assert console.page("root", "/console/admin/deadletters?limit=7").status_code == 200
    assert "That number is not one of the list" in _text(console.page("root", "/console/admin/deadletters?limit=7"))


def test_visible_text_writes_out_what_a_terminal_or_a_page_would_act_on():
    assert admin.visible_text("a\tb\nc\x00d\x1b[0m\u200be\u2066f\U000e0041") == \
        "a\tb\nc\\x00d\\x1b[0m\\u200be\\u2066f\\U000e0041"
    assert admin.visible_text("Tiếng Việt <b>") == "Tiếng Việt <b>"  # the page's autoescape does the rest


# --- log-source health ----------------------------------------------------------------------------------------------
def test_log_source_health_by_agency_from_the_monitor(console):
    health = console.suite.service("source_health")
    assert health is not None
    now = datetime.now(timezone.utc).timestamp()
    silent = health.states[(ASSET, "linux-auth")]
    silent.status, silent.last_seen, silent.changed = "silent", now - 7200, now - 600
    reporting = health.states[("so-yt-app-01", "syslog")]
    reporting.status, reporting.last_seen, reporting.rate, reporting.baseline = "ok", now - 5, 0.5, 0.4
    try:
        page = console.page("root", "/console/admin/sources")
        assert page.status_code == 200 and "From the source-health monitor" in _text(page)
        rows = _rows(page, "data-asset")
        assert set(rows) == {s.asset for s in health.states.values() if s.status in ("silent", "never", "dropped")}
        assert 'data-status="silent"' in rows[ASSET] and "Silent" in _text(rows[ASSET])
        agencies = _rows(page, "data-agency-id")
        assert f'data-expected="{sum(1 for s in health.states.values() if s.agency == AGENCY_A)}"' in \
            agencies[AGENCY_A]
        assert f"{ASSET}/linux-auth (Silent)" in _text(agencies[AGENCY_A])
        assert 'data-reporting="1"' in agencies[AGENCY_B]
        everything = console.page("root", f"/console/admin/sources?agency={AGENCY_B}&all=1")
        rows = _rows(everything, "data-asset")
        assert "so-yt-app-01" in rows and "30.0" in _text(rows["so-yt-app-01"])  # 0.5 a second: 30 a minute
        assert all("Department of Health" in r for r in rows.values())
        vi = console.page("root", "/console/admin/sources", lang="vi")
        assert "Tình trạng nguồn nhật ký" in _text(vi) and "Im lặng" in _text(vi)
    finally:
        silent.status, reporting.status = "pending", "pending"


def test_without_the_monitor_sources_come_from_the_posture_tracker():
    asset = SimpleNamespace(id="web-1", agency="a", log_sources=["linux-auth", "nginx"], hostname="web-1",
                            criticality=SimpleNamespace(value="high"))
    quiet = SimpleNamespace(id="db-1", agency="a", log_sources=["syslog"], hostname="db-1",
                            criticality=SimpleNamespace(value="low"))
    inventory = SimpleNamespace(assets={"web-1": asset, "db-1": quiet, "x": SimpleNamespace(id="x", agency="a",
                                                                                            log_sources=[])},
                                agencies={"a": SimpleNamespace(name_vi="Sở A", name_en="Department A")})
    now = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)
    tracker = SimpleNamespace(last_seen={"web-1": {"id": "web-1", "organization": {"id": "a"},
                                                   "last_seen": "2026-11-22T11:50:00Z"}})
    stored = [{"id": "db-1", "organization": {"id": "a"}, "last_seen": "2026-11-22T09:00:00Z"}]
    suite = SimpleNamespace(service=lambda name: tracker if name == "source_tracker" else None,
                            store=SimpleNamespace(find_documents=lambda collection, query: stored))
    states = admin.tracker_states(suite, inventory, {"linux-auth": 900}, 3600, now=now)
    assert {(s["asset"], s["source"]): s["status"] for s in states} == {
        ("web-1", "linux-auth"): "ok", ("web-1", "nginx"): "ok", ("db-1", "syslog"): "silent"}
    view = admin.source_view("tracker", states, inventory, "en")
    [agency] = view.agencies
    assert (agency["expected"], agency["ok"], agency["silent"]) == (3, 2, 1) and agency["name"] == "Department A"
    assert view.sources[0]["asset"] == "db-1"  # what needs someone first


def test_every_admin_message_has_both_languages():
    from soc_api.console import messages_admin

    assert set(messages_admin.MESSAGES["en"]) == set(messages_admin.MESSAGES["vi"])
    english, vietnamese = messages_admin.MESSAGES["en"], messages_admin.MESSAGES["vi"]
    assert not [key for key in english if english[key] == vietnamese[key]]  # each one translated
    assert all(ch in " ".join(vietnamese.values()) for ch in "âđêôơưạảấầậắếềệịọốồộớờởợụủứừự")


def test_the_tiers_page_shows_the_links_as_the_api_does(console):
    """A city's suite sends a batch here with its downstream key; the page shows the link with what it received,
    and that this suite forwards to none — the figures of GET /api/v1/tier/links and /tier/upstream."""
    from soc_api.keys import create_key

    city = create_key(console.suite.store, "downstream", agency="h-an-binh", name="city")[0]
    lines = "\n".join(json.dumps({"@timestamp": ecs.now_iso(), "event": {"id": f"city-{i}"},
                                  "organization": {"id": "p-tan-an"}, "message": f"line {i}"}) for i in range(3))
    answer = call(console.clients["root"].http, "POST", "/api/v1/tier/events", city, content=lines,
                  headers={"Content-Type": "application/x-ndjson"})
    assert answer.status_code == 200 and answer.json()["stored"] == 3, answer.text
    links = console.api("GET", "/tier/links").json()
    for lang, name in (("en", "An Binh City"), ("vi", "Thành phố An Bình")):
        page = console.page("root", "/console/admin/tiers", lang=lang)
        assert page.status_code == 200
        rows = _rows(page, "data-link")
        assert set(rows) == {link["id"] for link in links} == {"h-an-binh"}
        assert 'data-events="3"' in rows["h-an-binh"] and name in rows["h-an-binh"]
        assert 'id="no-upstream"' in page.text  # this suite forwards to no other
    assert console.page("ana", "/console/admin/tiers").status_code == 403
