"""The store's aggregations are a new path from a person's typed search to the store (the console's event histogram
counts with ``Store.aggregate``; reports, posture and the overview too). Hostile input through the real console page:
field filters and free text built to break out of SQL or a JSON path, another agency named in the URL by an agency
user. The answer is a page (never a 500), the counts are only the caller's agency's, and nothing else is counted."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest

from soc import ecs
from soc.storage import StoreError
from soc.storage.aggregations import AggregateQuery
from tests.api_fixtures import AGENCY_A, AGENCY_B, running_suite
from tests.console_fixtures import ConsoleClient, add_user, console_api

START = datetime(2026, 11, 20, 10, 0, tzinfo=timezone.utc)
HOSTILE = [
    "') OR 1=1 --", "\" OR \"\"=\"", "'; DROP TABLE events; --", "$.organization", "*", "%", "\\", "\u0000x",
    "x' UNION SELECT doc FROM events --", "a" * 250,
]


def _event(i: int, agency: str) -> dict:
    return {"@timestamp": ecs.utc_iso(START + timedelta(minutes=i)),
            "event": {"id": f"agg-{agency}-{i}", "dataset": "agg.test", "original": f"line {i} of {agency}"},
            "organization": {"id": agency}, "user": {"name": "root"}, "source": {"ip": "198.51.100.7"}}


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    with running_suite(tmp_path_factory.mktemp("aggregation-input"), api=console_api()) as suite:
        suite.store.write_events([_event(i, AGENCY_A) for i in range(30)] + [_event(i, AGENCY_B) for i in range(50)])
        suite.store.refresh()
        add_user(suite, "ana", "analyst")
        add_user(suite, "tttt", "agency", agency=AGENCY_A)
        clients = {}
        for name in ("ana", "tttt"):
            client = ConsoleClient(suite)
            assert client.signin(name).status_code == 303
            client.http.cookies.set("soc_lang", "en")
            client.http.cookies.set("soc_tz", "UTC")
            clients[name] = client
        yield suite, clients
        for client in clients.values():
            client.close()


def _counts(page: str) -> list[int]:
    return [int(c) for c in re.findall(r'<tr data-start="[^"]+" data-count="(\d+)"', page)]


RANGE = {"since": "2026-11-20T10:00:00.000Z", "until": "2026-11-20T11:00:00.000Z"}


def test_an_agency_user_counts_its_own_events_whatever_the_url_says(console):
    _, clients = console
    for params in ({}, {"agency": AGENCY_B}, {"q": f"organization.id:{AGENCY_B}"},
                   {"q": f"organization.id:{AGENCY_B} OR organization.id:{AGENCY_A}"}):
        page = clients["tttt"].get("/console/events", params={**RANGE, "event.dataset": "agg.test", **params})
        assert page.status_code in (200, 422), params
        assert sum(_counts(page.text)) in (0, 30), params  # its own 30, or nothing: never agency B's 50
        assert AGENCY_B not in re.sub(r"<(select|option)[^>]*>", "", page.text).split("<table")[-1], params
    assert sum(_counts(clients["ana"].get("/console/events", params={**RANGE, "event.dataset": "agg.test"}).text)) == 80


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_filters_and_text_count_nothing_and_break_nothing(console, value):
    _, clients = console
    for params in ({"event.dataset": value}, {"user.name": value}, {"q": value}, {"q": f'user.name:"{value}"'},
                   {"source.ip": value}):
        page = clients["ana"].get("/console/events", params={**RANGE, **params})
        assert page.status_code in (200, 422), (params, page.status_code)
        if "A value was too long and was ignored." in page.text:
            continue  # an unprintable value is dropped, and the page says so: the person sees what was searched
        assert sum(_counts(page.text)) == 0, params  # no event has such a value: a filter never widened
    # The store still answers, and still holds everything.
    assert sum(_counts(clients["ana"].get("/console/events", params={**RANGE, "event.dataset": "agg.test"}).text)) == 80


@pytest.mark.parametrize("name", ["a') OR 1=1 --", "x\"]", "$.a", "a..b", "event.id\n", "a" * 300, "doc[0]"])
def test_the_store_refuses_a_hostile_field_name_itself(console, name):
    suite, _ = console
    for query in (AggregateQuery(group_by=(name,)), AggregateQuery(terms={name: "x"}),
                  AggregateQuery(time_field=name, start="2026-11-20T10:00:00.000Z")):
        with pytest.raises(StoreError):
            suite.store.aggregate(query)
    assert suite.store.aggregate(AggregateQuery(terms={"event.dataset": "agg.test"})).total == 80
