"""The console's rule pages over real HTTP (a running suite, users signed in through the real form): rule health shows
every rule as GET /api/v1/rules gives it (loaded, failed, disabled, with the reason), the rule pack in use and the
exceptions that name each rule, with filters by state and a search by title; the rule pack versions as GET
/api/v1/rules/packs gives them, and Rollback for admins only (POST with the CSRF token; the API then shows the
pointer moved back; refused with the API's reason when there is nothing to go back to). The ATT&CK matrix counts, for
a seeded set of rules and alerts, which techniques the loaded rules cover under which tactic and how many alerts of
the period named them, says when the alerts were sampled, and links each tactic to the alert queue filtered by it.
Only analysts and admins open these pages."""

from __future__ import annotations

import html
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from soc import ecs
from soc_api.console import attack_matrix
from tests.api_fixtures import AGENCY_A, AGENCY_B, call, keys_for, running_suite
from tests.conftest import wait_for
from tests.console_fixtures import ConsoleClient, add_user, console_api

# The suite's own rules in this test: three name ATT&CK techniques, one is broken, one is left out by the selection.
CREDENTIAL = "11111111-1111-4111-8111-000000000001"
EXECUTION = "11111111-1111-4111-8111-000000000002"
SCANNING = "11111111-1111-4111-8111-000000000003"
BROKEN = "11111111-1111-4111-8111-000000000004"
EXCLUDED = "11111111-1111-4111-8111-000000000005"
PACK_RULE = "22222222-2222-4222-8222-000000000001"
PACK_EXPERIMENTAL = "22222222-2222-4222-8222-000000000002"


def _rule(rule_id: str, title: str, tags: list[str], *, name: str | None = None, status: str = "stable",
          field: str = "process.name", broken: bool = False) -> str:
    doc = {"title": title, "id": rule_id, "status": status, "description": f"{title} (a test rule)",
           "author": "test", "date": "2026-11-22", "tags": tags, "logsource": {"product": "linux"},
           "detection": {"selection": {f"{field}|nosuchmodifier" if broken else field: f"marker-{rule_id[-4:]}"},
                         "condition": "selection"},
           "level": "high"}
    if name:
        doc["name"] = name
    return yaml.safe_dump(doc, sort_keys=False)


def _own_rules(folder: Path) -> Path:
    folder.mkdir(parents=True)
    rules = {
        "credential.yml": _rule(CREDENTIAL, "Password Guessing Against Servers",
                                ["attack.credential-access", "attack.t1110"]),
        "execution.yml": _rule(EXECUTION, "Unix Shell Launched By Web Server",
                               ["attack.execution", "attack.persistence", "attack.t1059.004"],
                               name="soc_test_web_shell"),
        "scanning.yml": _rule(SCANNING, "Network Service Scanning", ["attack.t1046"]),
        "broken.yml": _rule(BROKEN, "A Rule That Cannot Load", ["attack.t1003"], broken=True),
        "excluded.yml": _rule(EXCLUDED, "Excluded By The Selection", ["attack.t1005", "attack.collection"]),
    }
    for name, text in rules.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def _exceptions(path: Path) -> Path:
    path.write_text(yaml.safe_dump({"exceptions": [
        {"rule": CREDENTIAL, "reason": "the backup server retries its logins", "author": "lan.nguyen",
         "computers": ["backup-01"]},
        {"rule": CREDENTIAL, "reason": "an old exception", "author": "lan.nguyen", "expires": "2020-01-01",
         "agencies": [AGENCY_A]},
        {"rule": "soc_test_web_shell", "reason": "the deploy script runs a shell", "author": "minh.tran",
         "match": {"process.command_line|contains": "deploy.sh"}},
        {"rule": "no-such-rule-anywhere", "reason": "a typo in the rule id", "author": "minh.tran",
         "agencies": [AGENCY_B]},
    ]}), encoding="utf-8")
    return path


def _pack_source(folder: Path, version: int) -> Path:
    rules = folder / "rules" / "linux"
    rules.mkdir(parents=True)
    (rules / "pack_rule.yml").write_text(_rule(PACK_RULE, f"Pack Rule Version {version}", ["attack.discovery"]))
    (rules / "pack_experimental.yml").write_text(
        _rule(PACK_EXPERIMENTAL, "An Experimental Pack Rule", [], status="experimental"))
    (folder / "README.md").write_text(f"test pack {version}\n")
    return folder


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _alert(n: int, *, tactics: list[str], techniques: list[str], hours_ago: float = 1.0,
           agency: str = AGENCY_A) -> dict:
    at = ecs.utc_iso(_now() - timedelta(hours=hours_ago))
    return {"id": f"attack-{n}", "fingerprint": f"attack-f{n}", "status": "new", "severity": "high",
            "summary": f"seeded alert {n}", "organization": {"id": agency},
            "rule": {"id": f"seeded-{n}", "name": "seeded", "title": "Seeded", "type": "rule"},
            "first_seen": at, "last_seen": at, "created": at, "count": 1, "evidence": [], "labels": {},
            "entities": {"ip": ["198.51.100.7"]}, "threat": {"tactic": tactics, "technique": techniques},
            "history": [{"at": at, "by": "detections", "action": "raised"}]}


def _seeded_alerts() -> list[dict]:
    alerts = [_alert(n, tactics=["credential-access"], techniques=["T1110"]) for n in range(3)]
    alerts += [_alert(10 + n, tactics=["execution"], techniques=["T1059.004"]) for n in range(2)]
    alerts += [_alert(20 + n, tactics=["impact"], techniques=["T1486"]) for n in range(4)]
    alerts += [_alert(30, tactics=[], techniques=[])]  # names no technique: not in the matrix
    alerts += [_alert(40, tactics=["credential-access"], techniques=["T1110"], hours_ago=24 * 10)]  # 10 days ago
    return alerts


class Console:
    def __init__(self, suite, clients, keys):
        self.suite, self.clients, self.keys = suite, clients, keys

    def api(self, method: str, path: str, key: str = "analyst", **kwargs):
        return call(self.clients["ana"].http, method, f"/api/v1{path}", self.keys[key], **kwargs)

    def page(self, user: str, path: str, lang: str = "en"):
        client = self.clients[user]
        client.http.cookies.set("soc_lang", lang)
        client.http.cookies.set("soc_tz", "UTC")
        return client.get(path)

    def post(self, user: str, path: str, data: dict | None = None, *, token: bool = True):
        client = self.clients[user]
        form = dict(data or {})
        if token:
            form["csrf_token"] = client.csrf()
        return client.post(path, data=form)


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    folder = tmp_path_factory.mktemp("console-rules")
    own = _own_rules(folder / "own-rules")
    exceptions = _exceptions(folder / "exceptions.yaml")
    with running_suite(folder / "suite", api=console_api(), rule_dirs=[own],
                       SOC__DETECTIONS__RULE_EXCEPTIONS_FILE=str(exceptions),
                       SOC__DETECTIONS__RULES_RELOAD_INTERVAL_SECONDS="0.2",
                       SOC__DETECTIONS__RULE_SELECTION__IDS_EXCLUDE=f'["{EXCLUDED}"]') as suite:
        keys = keys_for(suite.store)
        for user, role, agency in (("ana", "analyst", None), ("root", "admin", None), ("nam", "network_admin", None),
                                   ("tttt", "agency", AGENCY_A), ("nat", "national_centre", None)):
            add_user(suite, user, role, agency=agency)
        clients = {}
        for user in ("ana", "root", "nam", "tttt", "nat"):
            clients[user] = ConsoleClient(suite)
            assert clients[user].signin(user).status_code == 303
        suite.store.upsert_alerts(_seeded_alerts())
        suite.store.refresh()
        yield Console(suite, clients, keys)
        for client in clients.values():
            client.close()


def _text(page) -> str:
    body = page.text if hasattr(page, "text") else page
    if "<main" in body:
        body = body[body.find("<main"):]
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", body)))


def _rows(page, attribute: str = "data-rule-id") -> dict[str, str]:
    """Each table row of the page by its id attribute: the row's HTML."""
    found = {}
    for match in re.finditer(rf'<tr {attribute}="([^"]+)"(.*?)</tr>', page.text, re.S):
        found[html.unescape(match.group(1))] = match.group(0)
    return found


# --- rule health ---------------------------------------------------------------------------------------------------
def test_rule_health_shows_every_rule_as_the_api_gives_it(console):
    api = console.api("GET", "/rules").json()
    page = console.page("ana", "/console/rules")
    assert page.status_code == 200
    rows = _rows(page)
    assert set(rows) == {r["id"] for r in api["rules"]}
    for rule in api["rules"]:
        assert f'data-state="{rule["status"]}"' in rows[rule["id"]]
        if rule["reason"]:
            assert rule["reason"][:60] in html.unescape(rows[rule["id"]])
    # the states of the seeded rules: loaded, failed (with the loader's reason), disabled (with the selection's)
    states = {r["id"]: r for r in api["rules"]}
    assert states[CREDENTIAL]["status"] == "loaded"
    assert states[BROKEN]["status"] == "failed" and "nosuchmodifier" in states[BROKEN]["reason"]
    assert states[EXCLUDED]["status"] == "disabled"
    assert "nosuchmodifier" in _text(rows[BROKEN])
    # the counts and the pack, as the API's
    for state in ("loaded", "failed", "disabled"):
        assert re.search(rf'data-count="{state}">{api[state]}<', page.text)
    assert "none (the suite's own rules only)" in _text(page) and api["pack"] is None
    # failed rules first
    order = [m.group(1) for m in re.finditer(r'<tr data-rule-id="([^"]+)" data-state="([^"]+)"', page.text)]
    assert order[0] == BROKEN


def test_rule_health_filters_by_state_and_searches_by_title(console):
    failed = _rows(console.page("ana", "/console/rules?state=failed"))
    assert set(failed) == {BROKEN}
    found = _rows(console.page("ana", "/console/rules?q=SHELL+launched"))
    assert set(found) == {EXECUTION}
    loaded_scan = _rows(console.page("ana", "/console/rules?state=loaded&q=scanning"))
    assert set(loaded_scan) == {SCANNING}
    assert _rows(console.page("ana", "/console/rules?state=disabled&q=scanning")) == {}
    with_exceptions = _rows(console.page("ana", "/console/rules?exceptions=1"))
    assert set(with_exceptions) == {CREDENTIAL, EXECUTION}
    wrong = console.page("ana", "/console/rules?state=exploded")
    assert wrong.status_code == 200 and "That state is not one of the list" in _text(wrong)
    # the filters stay in the form, so the view is a URL
    form = console.page("ana", "/console/rules?state=failed&q=cannot")
    assert '<option value="failed" selected>' in form.text and 'value="cannot"' in form.text


def test_each_rule_shows_its_exceptions_and_unknown_ones_are_listed(console):
    rows = _rows(console.page("ana", "/console/rules"))
    credential = _text(rows[CREDENTIAL])
    assert 'data-exceptions="2"' in rows[CREDENTIAL] and "2 exceptions (1 in force)" in credential
    assert "the backup server retries its logins" in credential and "Expired on 2020-01-01" in credential
    # named by its Sigma name, not its id
    assert 'data-exceptions="1"' in rows[EXECUTION] and "the deploy script runs a shell" in _text(rows[EXECUTION])
    assert "process.command_line|contains 'deploy.sh'" in _text(rows[EXECUTION])
    assert 'data-exceptions="0"' in rows[SCANNING]
    page = console.page("ana", "/console/rules")
    unknown = page.text[page.text.find('id="unknown-exceptions"'):]
    assert "no-such-rule-anywhere" in unknown[:2000] and "a typo in the rule id" in unknown[:2000]
    assert "4 entries, on 2 rules" in _text(page)


def test_rule_pages_are_for_analysts_and_admins_only(console):
    for user in ("ana", "root"):
        assert console.page(user, "/console/rules").status_code == 200
        assert console.page(user, "/console/rules/attack").status_code == 200
        assert 'href="/console/rules"' in console.page(user, "/console/home").text
    for user in ("tttt", "nam", "nat"):
        for path in ("/console/rules", "/console/rules/attack", "/console/rules?state=failed"):
            refused = console.page(user, path)
            assert refused.status_code == 403, (user, path)
            assert "data-rule-id" not in refused.text and "attack-matrix" not in refused.text
        assert 'href="/console/rules"' not in console.page(user, "/console/home").text
    # not signed in: to the sign-in page
    anonymous = ConsoleClient(console.suite)
    try:
        answer = anonymous.get("/console/rules/attack")
        assert answer.status_code == 303 and answer.headers["location"].startswith("/console/signin")
    finally:
        anonymous.close()


def _install(console, version: int, folder: Path) -> str:
    store = console.suite.ruleset.packs
    with store.locked():
        installed, _ = store.install(_pack_source(folder / f"pack-{version}", version))
        store.switch_to(installed.id)
    wait_for(lambda: console.suite.ruleset.version == installed.id, 15, f"the suite to run pack {version}")
    return installed.id


def test_packs_and_rollback_are_the_apis(console, tmp_path):
    first = _install(console, 1, tmp_path)
    second = _install(console, 2, tmp_path)
    packs = console.api("GET", "/rules/packs").json()
    assert packs["current"] == second and packs["previous"][-1] == first
    page = console.page("root", "/console/rules")
    versions = _rows(page, "data-version")
    assert set(versions) == {v["id"] for v in packs["versions"]}
    assert "in use" in _text(versions[second])
    assert second in _text(page.text[page.text.find('id="pack-in-use"'):][:300])
    # the pack's rules are in the list, an experimental one left out by the selection
    rows = _rows(page)
    assert 'data-state="loaded"' in rows[PACK_RULE] and 'data-state="disabled"' in rows[PACK_EXPERIMENTAL]
    assert 'id="rollback-form"' in page.text and f"Go back from {second} to {first}" in _text(page)
    # an analyst sees the versions but no Rollback, and may not post it
    analyst = console.page("ana", "/console/rules")
    assert 'id="rollback-form"' not in analyst.text and "Only an administrator can roll back" in _text(analyst)
    assert console.post("ana", "/console/rules/packs/rollback").status_code == 403
    # without the CSRF token: refused, nothing moved
    assert console.post("root", "/console/rules/packs/rollback", token=False).status_code == 403
    assert console.api("GET", "/rules/packs").json()["current"] == second
    # the admin's rollback: the pointer, as the API shows it, names the version before
    done = console.post("root", "/console/rules/packs/rollback")
    assert done.status_code == 303 and done.headers["location"].startswith("/console/rules?done=rollback")
    packs = console.api("GET", "/rules/packs").json()
    assert packs["current"] == first
    wait_for(lambda: console.api("GET", "/rules").json()["pack"] == first, 15, "the suite to switch back")
    notice = console.page("root", done.headers["location"])
    assert f"The rule pack was rolled back from {second} to {first}" in _text(notice)
    audit = console.api("GET", "/audit", "admin", params={"user": "root", "limit": 50}).json()["records"]
    [record] = [r for r in audit if r["action"] == "console_rules_rollback" and r["outcome"] == "ok"]
    assert f"from {second} to {first}" in record["detail"]
    # back to no pack, then nothing to go back to: the API's 409 and its reason
    assert console.post("root", "/console/rules/packs/rollback").status_code == 303
    assert console.api("GET", "/rules/packs").json()["current"] is None
    page = console.page("root", "/console/rules")
    assert 'id="rollback-form"' not in page.text and "There is no earlier version" in _text(page)
    api_refusal = console.api("POST", "/rules/packs/rollback", "admin")
    refused = console.post("root", "/console/rules/packs/rollback")
    assert refused.status_code == api_refusal.status_code == 409
    assert f"The rollback was refused: {api_refusal.json()['detail']}" in _text(refused)
    wait_for(lambda: console.suite.ruleset.version is None, 15, "the suite to run no pack")


# --- the ATT&CK matrix ---------------------------------------------------------------------------------------------
def _cells(page) -> dict[tuple[str, str], dict]:
    """Every drawn cell of the matrix: (tactic, technique) -> its counts and state."""
    out = {}
    for row in re.finditer(r'<tr data-technique="([^"]+)" data-state="[^"]*">(.*?)</tr>', page.text, re.S):
        for cell in re.finditer(r'<td data-tactic="([^"]+)" data-rules="(\d+)" data-alerts="(\d+)" '
                                r'data-state="([^"]+)"', row.group(2)):
            out[(cell.group(1), row.group(1))] = {"rules": int(cell.group(2)), "alerts": int(cell.group(3)),
                                                  "state": cell.group(4)}
    return out


def _totals(page) -> dict[str, tuple[int, int]]:
    out = {}
    for row in re.finditer(r'<tr data-technique="([^"]+)" data-state="[^"]*">(.*?)</tr>', page.text, re.S):
        rules = re.search(r'data-total="rules">(\d+)<', row.group(2)).group(1)
        alerts = re.search(r'data-total="alerts">(\d+)<', row.group(2)).group(1)
        out[row.group(1)] = (int(rules), int(alerts))
    return out


def test_the_attack_matrix_counts_seeded_rules_and_alerts(console):
    page = console.page("ana", "/console/rules/attack?range=7d")
    assert page.status_code == 200
    assert _cells(page) == {
        ("credential-access", "T1110"): {"rules": 1, "alerts": 3, "state": "both"},
        ("execution", "T1059.004"): {"rules": 1, "alerts": 2, "state": "both"},
        ("persistence", "T1059.004"): {"rules": 1, "alerts": 0, "state": "covered"},
        ("none", "T1046"): {"rules": 1, "alerts": 0, "state": "covered"},
        ("impact", "T1486"): {"rules": 0, "alerts": 4, "state": "gap"},
    }
    # the broken and the excluded rules cover nothing
    assert _totals(page) == {"T1046": (1, 0), "T1059.004": (1, 2), "T1110": (1, 3), "T1486": (0, 4)}
    text = _text(page)
    assert "Alerts last seen since" in text and ": 10 read." in text  # 3 + 2 + 4 + the one without a technique
    assert "A sample" not in text
    for count, value in (("covered", "3, by 3 rules"), ("seen", "3, in 9 alerts"), ("seen-covered", "2"),
                         ("gaps", "1: T1486"), ("not-seen", "1")):
        assert re.search(rf'data-count="{count}">{re.escape(value)}<', page.text), count
    # not colour alone: each drawn cell says what it is in words, and carries a mark
    assert "Covered by 1 rules; 3 alerts seen" in text and "Not covered here; 4 alerts seen" in text
    assert "✓1 ●3" in text and "!●4" in text
    # a column per tactic, in the matrix's order, each linking to the queue filtered by it over the same period
    tactics = re.findall(r'<th scope="col" data-tactic="([^"]+)"', page.text)
    assert tactics[:3] == ["reconnaissance", "resource-development", "initial-access"] and tactics[-1] == "none"
    assert 'href="/console/alerts?tactic=credential-access&amp;range=7d"' in page.text
    queue = console.page("ana", "/console/alerts?tactic=credential-access&range=7d")
    assert queue.status_code == 200
    assert {"attack-0", "attack-1", "attack-2"} <= set(re.findall(r'data-alert-id="([^"]+)"', queue.text))
    assert "attack-20" not in queue.text
    # Vietnamese
    vi = console.page("ana", "/console/rules/attack", lang="vi")
    assert "Ma trận ATT&amp;CK" in vi.text and "Truy cập thông tin xác thực" in _text(vi)


def test_the_period_of_the_attack_matrix(console):
    month = console.page("ana", "/console/rules/attack?range=30d")
    assert _cells(month)[("credential-access", "T1110")]["alerts"] == 4  # the alert of 10 days ago too
    day = console.page("ana", "/console/rules/attack?range=24h")
    assert _cells(day)[("credential-access", "T1110")]["alerts"] == 3
    wrong = console.page("ana", "/console/rules/attack?range=forever")
    assert wrong.status_code == 200 and "That period is not one of the list" in _text(wrong)
    assert _cells(wrong)[("credential-access", "T1110")]["alerts"] == 3  # the last 7 days


def test_the_attack_matrix_says_when_its_alerts_are_a_sample(console, monkeypatch):
    monkeypatch.setattr(attack_matrix, "ALERT_CAP", 4)
    page = console.page("ana", "/console/rules/attack?range=30d")
    assert "A sample: the period holds more alerts than the 4 newest that were counted" in _text(page)
    assert 'id="attack-sampled"' in page.text
    assert ": 4 read." in _text(page) and sum(c["alerts"] for c in _cells(page).values()) <= 4
    monkeypatch.setattr(attack_matrix, "ALERT_CAP", 11)  # exactly what the period holds: no sample
    assert "A sample" not in _text(console.page("ana", "/console/rules/attack?range=30d"))


def test_matrix_helpers_put_techniques_under_each_tactic_of_their_rule():
    class Meta:
        def __init__(self, rule_id, title, tags):
            self.id, self.title, self.tags = rule_id, title, tags

        @property
        def techniques(self):
            return [t[7:].upper() for t in self.tags if t.startswith("attack.t")]

        @property
        def tactics(self):
            return [t[7:] for t in self.tags if t.startswith("attack.") and not t.startswith("attack.t1")]

    class Rule:
        def __init__(self, *args):
            self.meta = Meta(*args)

    class RuleSet:
        rules = [Rule("a", "A", ["attack.execution", "attack.persistence", "attack.t1059"]),
                 Rule("b", "B", ["attack.execution", "attack.t1059"]),
                 Rule("c", "C", ["attack.t9999x", "attack.discovery"])]  # not a technique id: ignored
        correlations = [Rule("d", "D", ["attack.Credential_Access", "attack.t1110"])]

    cov = attack_matrix.coverage(RuleSet())
    assert {k: len(v) for k, v in cov.cells.items()} == {("execution", "T1059"): 2, ("persistence", "T1059"): 1,
                                                        ("credential-access", "T1110"): 1}
    assert cov.rules == 3
    seen = attack_matrix.seen_in([{"threat": {"tactic": ["execution"], "technique": ["t1059", "T1059"]}},
                                  {"threat": {"tactic": ["made-up"], "technique": ["T1110"]}}])
    assert seen.cells == {("execution", "T1059"): 1, ("", "T1110"): 1} and seen.techniques["T1059"] == 1
    grid = attack_matrix.matrix(cov, seen)
    assert [r["technique"] for r in grid["rows"]] == ["T1059", "T1110"] and grid["columns"][-1]["slug"] == ""
    assert grid["gaps"] == [] and grid["seen_covered"] == 2


def test_every_rule_message_has_both_languages():
    from soc_api.console import messages_rules

    english, vietnamese = messages_rules.MESSAGES["en"], messages_rules.MESSAGES["vi"]
    assert set(english) == set(vietnamese)
    same = {key for key in english if english[key] == vietnamese[key]}
    assert same == {"rules.engine.sigma", "rules.engine.yara", "rules.packs.checksum"}  # names, not words
    assert all(ch in " ".join(vietnamese.values()) for ch in "âđêôơưạảấầậắếềệịọốồộớờởợụủứừự")
