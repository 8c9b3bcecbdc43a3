"""The console's event search, event page and entity pages over real HTTP (a running suite, users signed in through
the real form): the search with field filters, free text and a time range finds what the API finds, page by page
with the API's cursor; the histogram's numbers are the store's; an event's document is escaped; an entity's inventory
context and its timeline of events and alerts (newest first, every item exactly once across pages, also when many
events share a millisecond); tenancy (an agency user's search is its own agency's, and another agency's event or
entity is a 404 by URL edit); the alert page links its entities to their pages."""

from __future__ import annotations

import html
import re
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import httpx
import pytest

from soc import ecs
from soc_api.console import entities, events
from soc_api.console import histogram as hist
from soc_api.data import Data
from soc_api.keys import Principal
from tests.api_fixtures import AGENCY_A, AGENCY_B, alert_doc, call, keys_for, running_suite
from tests.console_fixtures import ConsoleClient, add_user, console_api

UTC = ZoneInfo("UTC")
BASE = datetime(2026, 11, 20, 10, 0, tzinfo=timezone.utc)  # the histogram's events: 10:00 to 16:00 UTC
HOURS = 6
MARKER_B = "secret-of-health"  # in every agency B event: must never reach an agency A page
ATTACKER = "198.51.100.77"  # the entity of the timeline tests
WEB = "10.20.10.10"  # agency A's web server (so-tttt-web-01 in the sample inventory)
# The timeline's events and alerts: the two days before the test runs (entity pages look back from now).
TIMELINE_START = (datetime.now(timezone.utc) - timedelta(days=2, hours=2)).replace(minute=0, second=0, microsecond=0)
DENSE = TIMELINE_START + timedelta(hours=32, milliseconds=123)
DENSE_AT = ecs.utc_iso(DENSE)  # many events of the attacker in one millisecond
NOW = TIMELINE_START + timedelta(days=2, hours=1)


def _iso(moment: datetime) -> str:
    return ecs.utc_iso(moment)


def _event(event_id: str, at: str, agency: str, text: str, **fields) -> dict:
    doc = {"@timestamp": at, "event": {"id": event_id, "original": text, "dataset": fields.pop("dataset", "test.log")},
           "organization": {"id": agency}, "host": {"name": fields.pop("host", f"{agency}-host")}}
    for name, value in fields.items():
        ecs.put(doc, name.replace("__", "."), value)
    return doc


def _histogram_events() -> list[dict]:
    """Hour h of the six holds 3 × (h + 1) events of agency A (data set hist.test), every two minutes."""
    out = []
    for h in range(HOURS):
        for k in range(3 * (h + 1)):
            at = BASE + timedelta(hours=h, minutes=2 * k + 1)
            out.append(_event(f"h-{h}-{k}", _iso(at), AGENCY_A, f"hist line {h}.{k}", dataset="hist.test"))
    return out


def _timeline_events() -> list[dict]:
    """The attacker's events over two days: as source (agency A and B), as destination (agency A), and 30 in one
    millisecond; plus events of other addresses that must not be in its timeline."""
    out = []
    start = TIMELINE_START
    for i in range(40):
        at = start + timedelta(minutes=37 * i, seconds=i % 5)
        out.append(_event(f"t-a-src-{i}", _iso(at), AGENCY_A, f"sshd: Failed password for root from {ATTACKER}",
                          source__ip=ATTACKER, destination__ip=WEB, user__name="root"))
    for i in range(10):
        at = start + timedelta(minutes=91 * i, seconds=7)
        out.append(_event(f"t-a-dst-{i}", _iso(at), AGENCY_A, f"outbound to {ATTACKER}", source__ip=WEB,
                          destination__ip=ATTACKER))
    for i in range(15):
        at = start + timedelta(minutes=53 * i, seconds=3)
        out.append(_event(f"t-b-src-{i}", _iso(at), AGENCY_B, f"from {ATTACKER} {MARKER_B}", source__ip=ATTACKER))
    for i in range(30):
        out.append(_event(f"t-a-dense-{i:02d}", DENSE_AT, AGENCY_A, f"scan {i} from {ATTACKER}", source__ip=ATTACKER))
    for i in range(20):
        at = start + timedelta(minutes=41 * i)
        out.append(_event(f"t-a-other-{i}", _iso(at), AGENCY_A, "from someone else", source__ip="198.51.100.5"))
    return out


def _search_events() -> list[dict]:
    out = []
    start = datetime(2026, 11, 19, 12, 0, tzinfo=timezone.utc)
    for i in range(120):
        verdict = "Failed" if i % 3 else "Accepted"
        out.append(_event(f"s-a-{i:03d}", _iso(start + timedelta(seconds=20 * i)), AGENCY_A,
                          f"sshd[1]: {verdict} password for user{i % 4} from 203.0.113.{i % 9}", dataset="system.auth",
                          source__ip=f"203.0.113.{i % 9}", user__name=f"user{i % 4}", host=f"web-{i % 2}"))
    for i in range(30):
        out.append(_event(f"s-b-{i:03d}", _iso(start + timedelta(seconds=20 * i + 5)), AGENCY_B,
                          f"sshd[1]: Failed password for user{i % 4} {MARKER_B}", dataset="system.auth",
                          source__ip=f"203.0.113.{i % 9}", user__name=f"user{i % 4}", host=f"web-{i % 2}"))
    out.append(_event("x-script", "2026-11-19T11:00:00.000Z", AGENCY_A, 'GET /<script>alert("x")</script>',
                      url__path='/<script>alert("x")</script>', source__ip="203.0.113.200",
                      user__name="<b>eve</b>"))
    out.append(_event("x-b-only", "2026-11-19T11:00:01.000Z", AGENCY_B, f"only b {MARKER_B}",
                      source__ip="10.20.17.10", host="so-yt-app-01"))
    out.append(_event("x-b-to-a", "2026-11-19T11:00:02.000Z", AGENCY_B, f"b to a {MARKER_B}",
                      source__ip="10.20.17.10", destination__ip=WEB, host="so-yt-app-01"))
    return out


def _alerts() -> list[dict]:
    out = []
    start = TIMELINE_START
    for i in range(12):
        agency = AGENCY_A if i < 9 else AGENCY_B
        doc = alert_doc(100 + i, agency, rule="soc_ssh_brute_force", entities={"ip": [ATTACKER, WEB]},
                        marker=MARKER_B if agency == AGENCY_B else "")
        doc["last_seen"] = _iso(start + timedelta(minutes=173 * i, seconds=11))
        doc["first_seen"] = doc["last_seen"]
        out.append(doc)
    return out


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    with running_suite(tmp_path_factory.mktemp("console-events"), api=console_api()) as suite:
        store = suite.store
        store.write_events(_histogram_events() + _timeline_events() + _search_events())
        store.upsert_alerts(_alerts())
        store.refresh()
        add_user(suite, "ana", "analyst")
        add_user(suite, "tttt", "agency", agency=AGENCY_A)
        add_user(suite, "yte", "agency", agency=AGENCY_B)
        clients = {}
        for name in ("ana", "tttt", "yte"):
            client = ConsoleClient(suite)
            assert client.signin(name).status_code == 303
            client.http.cookies.set("soc_lang", "en")
            client.http.cookies.set("soc_tz", "UTC")
            clients[name] = client
        yield suite, clients, keys_for(store)
        for client in clients.values():
            client.close()


def _data(suite, role: str = "analyst", agency: str | None = None) -> Data:
    return Data(None, Principal(key_id="t", role=role, agency=agency, name="t", user="t"), suite)


def _ids(page: str) -> list[str]:
    return re.findall(r'<tr data-event-id="([^"]+)"', page)


def _next(page: str) -> str | None:
    found = re.search(r'<a href="([^"]+)" rel="next">', page)
    return html.unescape(found.group(1)) if found else None


def _walk_pages(client: ConsoleClient, path: str, params: dict | None = None) -> tuple[list[str], list[str]]:
    """Every result id over every page of a search, and each page's HTML."""
    page = client.get(path, params=params)
    assert page.status_code == 200, page.text[:500]
    ids, pages = [], []
    for _ in range(100):
        ids += _ids(page.text)
        pages.append(page.text)
        following = _next(page.text)
        if not following:
            return ids, pages
        page = client.get(following)
        assert page.status_code == 200
    raise AssertionError("the pages did not end")


def _api_ids(client: ConsoleClient, key: str, **params) -> list[str]:
    ids, cursor = [], None
    while True:
        got = call(client.http, "GET", "/api/v1/events", key, params={**params, "limit": 1000,
                                                                       **({"cursor": cursor} if cursor else {})})
        assert got.status_code == 200, got.text
        ids += [e["event"]["id"] for e in got.json()["events"]]
        cursor = got.json()["next_cursor"]
        if not cursor:
            return ids


SEARCH_RANGE = {"since": "2026-11-19T11:00:00Z", "until": "2026-11-19T13:00:00Z"}


# --- the search -------------------------------------------------------------------------------------------------------
def test_search_with_field_filters_free_text_and_a_time_range_finds_what_the_api_finds(console):
    suite, clients, keys = console
    client = clients["ana"]
    first = client.get("/console/events", params=SEARCH_RANGE)
    assert first.status_code == 200 and "text/html" in first.headers["content-type"]
    assert "default-src 'self'" in first.headers["content-security-policy"]
    assert "<script" not in first.text.split("</head>")[1].replace('<script src="/console/static', "")
    for params, query in (
        ({"q": "Failed"}, {"q": "Failed"}),
        ({"q": "event.dataset:system.auth Accepted"}, {"q": "event.dataset:system.auth Accepted"}),
        ({"user.name": "user1", "q": "password"}, {"q": "user.name:user1 password"}),
        ({"source.ip": "203.0.113.4", "host.name": "web-0"}, {"q": "source.ip:203.0.113.4 host.name:web-0"}),
        ({"agency": AGENCY_B, "q": '"Failed password"'}, {"agency": AGENCY_B, "q": '"Failed password"'}),
    ):
        ids, _ = _walk_pages(client, "/console/events", {**SEARCH_RANGE, **params})
        expected = _api_ids(client, keys["analyst"], start=SEARCH_RANGE["since"], end=SEARCH_RANGE["until"], **query)
        assert ids == expected and ids, params
    # The time range: ten minutes of the two hours.
    narrow, _ = _walk_pages(client, "/console/events", {"since": "2026-11-19T12:00:00Z",
                                                        "until": "2026-11-19T12:10:00Z", "q": "sshd"})
    assert narrow == _api_ids(client, keys["analyst"], start="2026-11-19T12:00:00Z", end="2026-11-19T12:10:00Z",
                              q="sshd")
    assert len(narrow) == 30 + 30  # 20-second steps: 30 of agency A and 30 of agency B in ten minutes
    # A datetime-local from the browser is read in the user's time zone (here UTC+7).
    client.http.cookies.set("soc_tz", "Asia/Ho_Chi_Minh")
    local = client.get("/console/events", params={"since": "2026-11-19T19:00", "until": "2026-11-19T19:10",
                                                  "q": "sshd"})
    client.http.cookies.set("soc_tz", "UTC")
    assert _ids(local.text) == narrow[:events.PAGE_SIZE]
    assert 'value="2026-11-19T19:00"' in local.text  # shown back as it was typed


def test_results_are_paged_with_the_apis_cursor_and_a_cursor_of_another_search_starts_again(console):
    suite, clients, keys = console
    client = clients["ana"]
    ids, pages = _walk_pages(client, "/console/events", {**SEARCH_RANGE, "q": "sshd"})
    assert len(pages) == 4 and len(ids) == 151 - 1  # 120 + 30 sshd lines (the script one is not sshd)
    assert len(ids) == len(set(ids))
    assert ids == _api_ids(client, keys["analyst"], start=SEARCH_RANGE["since"], end=SEARCH_RANGE["until"], q="sshd")
    # The next link carries the range as absolute times and the API's cursor.
    following = _next(pages[0])
    assert "since=2026-11-19T11%3A00%3A00.000Z" in following and "cursor=" in following
    cursor = re.search(r"cursor=([^&]+)", following).group(1)
    other = client.get("/console/events", params={**SEARCH_RANGE, "q": "Failed", "cursor": cursor})
    assert other.status_code == 200 and "this is the first page" in other.text
    # A preset range: the first page's links carry the absolute times of that moment.
    preset = client.get("/console/events", params={"range": "7d"})
    assert preset.status_code == 200 and 'selected>Last 7 days' in preset.text


def test_a_query_the_api_refuses_is_refused_with_the_reason(console):
    _, clients, _ = console
    client = clients["ana"]
    bad = client.get("/console/events", params={**SEARCH_RANGE, "q": "source.port:abc"})
    assert bad.status_code == 422 and "source.port takes a whole number" in html.unescape(bad.text)
    many = client.get("/console/events", params={**SEARCH_RANGE,
                                                 "q": " ".join(f"a{i}.b:c" for i in range(21))})
    assert many.status_code == 422 and "at most 20 field filters" in many.text
    address = client.get("/console/events", params={**SEARCH_RANGE, "source.ip": "not-an-address"})
    assert address.status_code == 422 and "takes an address" in address.text
    # Problems that only drop a value: the page still answers.
    dropped = client.get("/console/events", params={"range": "5y", "since": "yesterday", "agency": "nowhere"})
    assert dropped.status_code == 200
    for text in ("unknown time range", "start time could not be read", "unknown agency"):
        assert text in dropped.text


def test_a_hostile_query_runs_in_linear_time(console):
    _, clients, _ = console
    client = clients["ana"]
    import time

    began = time.monotonic()
    answer = client.get("/console/events", params={**SEARCH_RANGE, "q": 'a:"' * 600 + "x" * 190})
    assert answer.status_code in (200, 422)
    assert time.monotonic() - began < 5


# --- the histogram ----------------------------------------------------------------------------------------------------
def _table(page: str) -> list[tuple[str, int, bool]]:
    return [(start, int(count), bool(capped)) for start, count, capped in
            re.findall(r'<tr data-start="([^"]+)" data-count="(\d+)"( data-capped="1")?>', page)]


def test_the_histogram_counts_are_the_stores(console):
    suite, clients, _ = console
    client = clients["ana"]
    seeded = _histogram_events()
    params = {"since": _iso(BASE), "until": _iso(BASE + timedelta(hours=HOURS)), "event.dataset": "hist.test"}
    page = client.get("/console/events", params=params)
    assert page.status_code == 200
    rows = _table(page.text)
    width = hist.bucket_width(BASE, BASE + timedelta(hours=HOURS), UTC)
    assert width == timedelta(minutes=15) and len(rows) == HOURS * 4
    for start, count, capped in rows:
        lo = ecs.parse_time(start)
        expected = sum(1 for e in seeded if lo <= ecs.parse_time(e["@timestamp"]) < lo + width)
        assert count == expected and not capped, start
    assert sum(count for _, count, _ in rows) == len(seeded) == 63
    # The SVG has one bar per bucket with the same numbers, and a caption with the total.
    bars = re.findall(r'<rect class="bar[^"]*"[^>]* data-count="(\d+)"', page.text)
    assert [int(b) for b in bars] == [count for _, count, _ in rows]
    assert "Matching events over time: 63" in page.text
    # Each period links to the search of that period alone.
    zoom = re.search(r'<th scope="row" style="font-weight:400"><a href="([^"]+)">', page.text).group(1)
    narrowed = client.get(html.unescape(zoom))
    assert len(_ids(narrowed.text)) == rows[0][1]
    # In the user's zone: buckets of a day start at local midnight.
    zone = ZoneInfo("Asia/Ho_Chi_Minh")
    days, width = hist.edges(datetime(2026, 11, 1, tzinfo=timezone.utc), datetime(2026, 11, 20, tzinfo=timezone.utc),
                             zone)
    assert width == timedelta(days=1) and all(start.astimezone(zone).hour == 0 for start, _ in days[1:])


def test_a_bucket_at_the_cap_is_marked_as_at_least(console):
    """Counted by searching (when the store cannot aggregate a query), a bar at the cap says "at least"."""
    suite, clients, _ = console
    s = events.EventSearch.from_params({"since": _iso(BASE), "until": _iso(BASE + timedelta(hours=HOURS)),
                                        "event.dataset": "hist.test"}, tenant=False, agencies=[])
    s.resolve(UTC)
    exact = events.histogram(_data(suite), s, UTC, cap=4, max_buckets=6)
    assert exact.exact and not exact.capped and exact.total == 63
    h = events.histogram(_data(suite), s, UTC, cap=4, max_buckets=6, exact=False)
    assert [b.count for b in h.buckets] == [3, 4, 4, 4, 4, 4]
    assert [b.capped for b in h.buckets] == [False, True, True, True, True, True]
    assert h.capped and h.total == 23
    # An agency user's histogram counts its own agency's events only.
    s = events.EventSearch.from_params({**SEARCH_RANGE, "q": "sshd"}, tenant=True, agencies=[])
    s.resolve(UTC)
    for exact in (True, False):
        mine = events.histogram(_data(suite, "agency", AGENCY_B), s, UTC, exact=exact)
        everyone = events.histogram(_data(suite), s, UTC, exact=exact)
        assert mine.total == 30 and everyone.total == 150


# --- one event --------------------------------------------------------------------------------------------------------
def test_the_event_page_shows_the_document_escaped_and_its_ecs_fields(console):
    _, clients, _ = console
    page = clients["ana"].get("/console/events/x-script")
    assert page.status_code == 200
    body = page.text
    assert '<script>alert("x")' not in body and "<b>eve</b>" not in body
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in body and "&lt;b&gt;eve&lt;/b&gt;" in body
    fields = dict(re.findall(r'<tr data-field="([^"]+)">\s*<th[^>]*>[^<]*</th>\s*<td[^>]*>(.*?)</td>', body, re.S))
    assert set(fields) >= {"@timestamp", "event.id", "event.original", "source.ip", "url.path", "user.name",
                           "organization.id", "host.name"}
    # Addresses, users and hosts link to their entity pages.
    assert fields["source.ip"] == '<a href="/console/entities/ip/203.0.113.200">203.0.113.200</a>'
    assert fields["user.name"].startswith('<a href="/console/entities/user/%3Cb%3Eeve%3C%2Fb%3E">')
    assert '<pre id="event-document"' in body and "&#34;url&#34;: {" in body
    assert "Department of Information and Communications" in body
    assert clients["ana"].get("/console/events/no-such-event").status_code == 404


def test_an_agency_user_searches_its_own_agency_and_gets_404_for_another_agencys_event(console):
    suite, clients, keys = console
    client = clients["tttt"]
    ids, pages = _walk_pages(client, "/console/events", {**SEARCH_RANGE, "agency": AGENCY_B, "q": "sshd"})
    assert ids and all(i.startswith("s-a-") for i in ids) and len(ids) == 120
    assert all(MARKER_B not in p and 'name="agency"' not in p for p in pages)
    assert ids == _api_ids(client, keys[AGENCY_A], start=SEARCH_RANGE["since"], end=SEARCH_RANGE["until"], q="sshd")
    for path in ("/console/events/s-b-001", "/console/events/x-b-only"):
        answer = client.get(path)
        assert answer.status_code == 404 and MARKER_B not in answer.text
    assert client.get("/console/events/s-a-001").status_code == 200
    # Agency B's own event naming agency A's server: the address is shown, but not linked to a page B cannot open.
    b_event = clients["yte"].get("/console/events/x-b-to-a").text
    assert WEB in b_event and f'href="/console/entities/ip/{WEB}"' not in b_event
    assert 'href="/console/entities/ip/10.20.17.10"' in b_event
    assert f'href="/console/entities/ip/{WEB}"' in clients["ana"].get("/console/events/x-b-to-a").text
    # A cursor of the analyst's listing is not followed for the agency user.
    analyst_next = _next(clients["ana"].get("/console/events", params={**SEARCH_RANGE, "q": "sshd"}).text)
    replay = client.get(analyst_next)
    assert replay.status_code == 200 and MARKER_B not in replay.text and "first page" in replay.text


# --- entity pages -----------------------------------------------------------------------------------------------------
def _expected_timeline(suite, agency: str | None) -> list[tuple[str, str]]:
    """(time, id) of every event and alert about the attacker in the fixture, newest first."""
    items = []
    for e in _timeline_events():
        if ATTACKER in (ecs.get(e, "source.ip"), ecs.get(e, "destination.ip")):
            if agency is None or ecs.get(e, "organization.id") == agency:
                items.append((e["@timestamp"], e["event"]["id"]))
    for a in _alerts():
        if agency is None or a["organization"]["id"] == agency:
            items.append((a["last_seen"], a["id"]))
    return sorted(items, reverse=True)



def _walk_timeline(data: Data, limit: int, budget: int = entities.WINDOW_BUDGET) -> list[tuple[str, str]]:
    seen, cursor = [], None
    for _ in range(500):
        line = entities.timeline(data, "ip", ATTACKER, "7d", cursor, limit=limit, now=NOW, budget=budget)
        assert len(line.items) <= limit and not line.problems
        seen += [(i["at"], (i.get("event") and i["event"]["event"]["id"]) or i["alert"]["id"]) for i in line.items]
        if not line.next_cursor:
            return seen
        cursor = line.next_cursor
    raise AssertionError("the timeline did not end")


@pytest.mark.parametrize("limit,budget", [(50, entities.WINDOW_BUDGET), (7, entities.WINDOW_BUDGET), (3, 2)])
def test_the_timeline_has_every_event_and_alert_once_newest_first_across_pages(console, limit, budget):
    suite, _, _ = console
    for agency in (None, AGENCY_A, AGENCY_B):
        data = _data(suite, "agency", agency) if agency else _data(suite)
        seen = _walk_timeline(data, limit, budget)
        expected = _expected_timeline(suite, agency)
        assert len(seen) == len(set(seen)) and sorted(seen, reverse=True) == expected
        assert [at for at, _ in seen] == sorted((at for at, _ in seen), reverse=True)  # newest first


def test_many_events_in_one_millisecond_are_paged_without_loss(console):
    suite, _, _ = console

    def search(start, end, limit):
        return entities.field_search(_data(suite), "ip", ATTACKER)(start, end, limit)

    position = {"h": ecs.utc_iso(DENSE + timedelta(milliseconds=1)), "c": None}
    taken = []
    for _ in range(20):
        walk = entities.newest_events(search, position=position, floor=ecs.utc_iso(DENSE - timedelta(minutes=1)),
                                      want=8)
        taken += [e["event"]["id"] for e in walk.events]
        if walk.position is None:
            break
        if walk.events:
            position = entities.position_after(walk.events[-1]) if len(walk.events) == 8 else walk.position
        else:
            position = walk.position
    assert taken == [f"t-a-dense-{i:02d}" for i in reversed(range(30))]


def test_the_entity_page_shows_inventory_context_and_its_timeline(console):
    suite, clients, _ = console
    client = clients["ana"]
    page = client.get(f"/console/entities/ip/{WEB}", params={"range": "90d"})
    assert page.status_code == 200
    text = html.unescape(page.text)
    assert "Address 10.20.10.10" in text and "so-tttt-web-01" in text
    assert "Department of Information and Communications" in text and "High" in text
    # The attacker's page, newest first, its agency B events and alerts too (an analyst sees every agency).
    page = client.get(f"/console/entities/ip/{ATTACKER}", params={"range": "90d"})
    rows = re.findall(r'<tr data-kind="(event|alert)" data-id="([^"]+)" data-at="([^"]+)">', page.text)
    assert len(rows) == entities.PAGE_SIZE
    assert [at for _, _, at in rows] == sorted((at for _, _, at in rows), reverse=True)
    assert {kind for kind, _, _ in rows} == {"event", "alert"}
    assert "Outside (Internet)" in page.text
    assert 'href="/console/alerts?entity=198.51.100.77"' in page.text
    ids = [i for _, i, _ in rows]
    following = _next(page.text)
    while following:
        more = client.get(following)
        ids += [i for _, i, _ in re.findall(r'<tr data-kind="(event|alert)" data-id="([^"]+)" data-at="([^"]+)">',
                                            more.text)]
        following = _next(more.text)
    assert len(ids) == len(set(ids)) == len(_expected_timeline(suite, None))
    # A user and a host have pages too; the host is an asset of the inventory.
    assert client.get("/console/entities/user/root").status_code == 200
    host = client.get("/console/entities/host/so-tttt-web-01")
    assert host.status_code == 200 and "Criticality" in host.text
    # Kinds without pages and values that cannot be of the kind: 404.
    for path in ("/console/entities/hash/abc", "/console/entities/ip/not-an-address", "/console/entities/ip/"):
        assert client.get(path).status_code == 404
    client.http.cookies.set("soc_lang", "vi")
    vi = client.get(f"/console/entities/ip/{ATTACKER}")
    client.http.cookies.set("soc_lang", "en")
    assert "Dòng thời gian" in vi.text


def test_an_agency_user_sees_its_own_part_of_an_entity_and_nothing_of_another_agencys(console):
    suite, clients, _ = console
    tttt, yte = clients["tttt"], clients["yte"]
    # The outside attacker: each agency sees its own events and alerts about it.
    mine = tttt.get(f"/console/entities/ip/{ATTACKER}", params={"range": "90d"})
    assert mine.status_code == 200 and MARKER_B not in mine.text
    ids = re.findall(r'data-id="([^"]+)"', mine.text)
    assert ids and all(i.startswith(("t-a-", AGENCY_A)) for i in ids)
    theirs = yte.get(f"/console/entities/ip/{ATTACKER}", params={"range": "90d"})
    assert all(i.startswith(("t-b-", AGENCY_B)) for i in re.findall(r'data-id="([^"]+)"', theirs.text))
    # Agency A's web server and agency B's application server: another agency's entity is a 404, nothing of it shown.
    for client, path, secret in ((yte, f"/console/entities/ip/{WEB}", "so-tttt-web-01"),
                                 (yte, "/console/entities/host/so-tttt-web-01", "Information and Communications"),
                                 (tttt, "/console/entities/ip/10.20.17.10", MARKER_B),
                                 (tttt, "/console/entities/host/so-yt-app-01", "health-app")):
        answer = client.get(path, params={"range": "90d"})
        assert answer.status_code == 404 and secret not in answer.text, path
    assert tttt.get(f"/console/entities/ip/{WEB}").status_code == 200
    # A timeline cursor of the analyst's is not followed for an agency user: the first page, said so.
    analyst = clients["ana"].get(f"/console/entities/ip/{ATTACKER}", params={"range": "90d"})
    replay = tttt.get(_next(analyst.text))
    assert replay.status_code == 200 and MARKER_B not in replay.text and "newest items" in replay.text


def test_the_alert_page_links_its_entities_to_their_pages(console):
    suite, clients, _ = console
    aid = f"{AGENCY_A}-a100"
    page = clients["ana"].get(f"/console/alerts/{aid}").text
    assert f'href="/console/entities/ip/{ATTACKER}"' in page and f'href="/console/entities/ip/{WEB}"' in page
    opened = clients["ana"].get(f"/console/entities/ip/{ATTACKER}")
    assert opened.status_code == 200
    # An agency B user reading its alert sees agency A's server as a value, not as a link to a page it cannot open.
    b_page = clients["yte"].get(f"/console/alerts/{AGENCY_B}-a110").text
    assert f'href="/console/entities/ip/{ATTACKER}"' in b_page
    assert f'href="/console/entities/ip/{WEB}"' not in b_page


def test_pages_need_a_session(console):
    suite, _, _ = console
    anonymous = httpx.Client(base_url=f"http://127.0.0.1:{suite.bound['api']}", follow_redirects=False)
    for path in ("/console/events", "/console/events/s-a-001", f"/console/entities/ip/{ATTACKER}"):
        assert anonymous.get(path).status_code == 303
    anonymous.close()
