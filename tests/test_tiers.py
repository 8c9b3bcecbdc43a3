"""A city suite forwarding to a province suite: two real `soc serve` processes on loopback (issue 16, "Tiers").

The city takes syslog from two communes (each from a loopback address of its own network), detects, stores, and
forwards events, alerts and its agencies; the province keeps them under the city's agency. The test cuts the link
(the province killed with SIGKILL mid-stream, then restarted), kills the city with a backlog and restarts it, and
checks that nothing was lost or duplicated (the same event ids and alert ids on both sides), that a status change
at either tier reaches the other, that a commune's key at the province sees its commune only, and that the
province's own correlation across the city's communes raises what neither commune's count reached.

On the embedded store (SQLite) and on the real OpenSearch node (both suites on it, each its own index prefix).
"""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import need_opensearch, wait_for
from tests.tier_suites import CITY_INVENTORY, LinkProxy, TierSuite, ordinary_lines, send_syslog, sshd_failures

CITY = "h-an-binh"


def _stores(request, tmp_path):
    if request.param == "sqlite":
        return None, None
    url = need_opensearch()
    return url, url


@pytest.fixture(params=["sqlite", "opensearch"])
def tiers(request, tmp_path):
    province_url, city_url = _stores(request, tmp_path)
    run = uuid.uuid4().hex[:8]
    province = TierSuite(tmp_path / "province", "province", store_url=province_url, index_prefix=f"tp{run}",
                         inventory="inventory/sample/province.yaml",
                         tiers={"receive": {"rules": ["soc_ssh_brute_force"]}})
    downstream_key = province.key("downstream", CITY)
    link = LinkProxy(province.settings.api.port).up()  # the WAN between them, which a test may cut
    city = TierSuite(tmp_path / "city", "city", store_url=city_url, index_prefix=f"tc{run}",
                     inventory=CITY_INVENTORY,
                     tiers={"upstream": {"url": f"http://127.0.0.1:{link.port}", "key_env": "SOC_UPSTREAM_KEY",
                                         "interval_seconds": 0.2,
                                         "retry_max_seconds": 1.0, "status_every_seconds": 0.5,
                                         "batch_max_events": 300}})
    city.env = {"SOC_UPSTREAM_KEY": downstream_key}
    city.link = link
    suites = [province.start(), city.start()]
    try:
        yield province, city
    finally:
        link.cut()
        for suite in suites:
            if suite.proc is not None and suite.proc.poll() is None:
                suite.proc.kill()
                suite.proc.wait()
        if province_url:
            from tests.conftest import _drop_indices

            _drop_indices(province_url, f"tp{run}")
            _drop_indices(city_url, f"tc{run}")


def _drained(city: TierSuite, key: str):
    state = city.get(key, "/api/v1/tier/upstream").json()
    waiting = sum(b["records"] for b in state["backlog"].values())
    return state if waiting == 0 and state["last_error"] is None else None


def test_a_city_forwards_to_the_province_through_outages_losing_and_duplicating_nothing(tiers):
    province, city = tiers
    p_analyst, c_analyst = province.key("analyst"), city.key("analyst")
    port = city.settings.syslog.tcp_port

    # 1. Ordinary traffic and a brute force at one commune: the city alerts, the province gets it all.
    send_syslog(port, "127.0.0.2", ordinary_lines("tan-an-srv", 40))
    send_syslog(port, "127.0.0.3", ordinary_lines("moi-srv", 40, start=40))
    send_syslog(port, "127.0.0.2", sshd_failures("tan-an-srv", "203.0.113.50", 8))
    city_alert = wait_for(lambda: [a for a in city.all_alerts(c_analyst) if a["rule"]["name"] == "soc_ssh_brute_force"],
                          60, "the city's brute-force alert")[0]
    assert city_alert["organization"]["id"] == "p-tan-an"
    at_province = wait_for(lambda: province.get(p_analyst, f"/api/v1/alerts/{city_alert['id']}").status_code == 200
                           and province.get(p_analyst, f"/api/v1/alerts/{city_alert['id']}").json()["alert"], 60,
                           "the same alert, same id, at the province")
    assert at_province["organization"]["id"] == "p-tan-an" and at_province["tier"]["link"] == CITY
    wait_for(lambda: _drained(city, c_analyst), 60, "the city's outbox drained")

    # 2. The link cut while both run: the city queues, and sends when the link is back.
    city.link.cut()
    send_syslog(port, "127.0.0.3", ordinary_lines("moi-srv", 100, start=8000))
    wait_for(lambda: city.get(c_analyst, "/api/v1/tier/upstream").json()["backlog"]["event"]["records"] >= 100, 30,
             "the city's backlog while the link is cut")
    city.link.up()
    wait_for(lambda: _drained(city, c_analyst), 60, "the backlog sent once the link is back")

    # 3. The province killed with SIGKILL mid-stream while the city keeps taking lines.
    send_syslog(port, "127.0.0.3", ordinary_lines("moi-srv", 200, start=100))
    province.kill()
    for round_ in range(5):
        send_syslog(port, "127.0.0.2", ordinary_lines("tan-an-srv", 100, start=1000 + 100 * round_))
    state = wait_for(lambda: (s := city.get(c_analyst, "/api/v1/tier/upstream").json())["backlog"]["event"]["records"]
                     > 0 and s["last_error"] and s, 30, "a backlog and the error while the province is down")
    assert state["lag_seconds"] > 0
    metrics = city.get(c_analyst, "/metrics").text
    assert "soc_tier_backlog_records{kind=\"event\"}" in metrics

    # 4. The city killed too, with its backlog on disk; then both back.
    city.kill()
    province.start()
    city.start()
    send_syslog(port, "127.0.0.3", ordinary_lines("moi-srv", 50, start=5000))
    sent = 40 + 40 + 8 + 100 + 200 + 500 + 50
    wait_for(lambda: len(city.event_ids(c_analyst)) == sent, 60, "every line stored at the city")
    wait_for(lambda: _drained(city, c_analyst), 90, "the backlog drained after the restarts")

    # Nothing lost, nothing duplicated: the city's events are all at the province, each once.
    def all_there():
        city_events = city.event_ids(c_analyst)
        province_events = province.event_ids(p_analyst)
        mine = [e for e in province_events if e in set(city_events)]
        return (city_events, province_events, mine) if len(mine) == len(city_events) else None

    city_events, province_events, mine = wait_for(all_there, 60, "every city event at the province")
    assert len(city_events) == sent
    assert len(mine) == len(set(mine)) == len(city_events)
    city_alerts = {a["id"] for a in city.all_alerts(c_analyst)}
    province_alerts = [a["id"] for a in province.all_alerts(p_analyst) if (a.get("tier") or {}).get("link") == CITY]
    assert set(province_alerts) == city_alerts and len(province_alerts) == len(city_alerts)

    # The province's view of the link: last contact, counts, the city's reported backlog.
    links = province.get(p_analyst, "/api/v1/tier/links").json()
    assert [link["id"] for link in links] == [CITY]
    assert links[0]["received"]["events"] >= len(city_events)
    reported = wait_for(lambda: province.get(p_analyst, "/api/v1/tier/links").json()[0].get("reported"), 30,
                        "the city's reported state at the province")
    assert set(reported["backlog"]) == {"event", "alert", "agencies"} and reported["lag_seconds"] is not None

    # 5. A status change at the province reaches the city; one at the city reaches the province.
    answer = province.post(p_analyst, f"/api/v1/alerts/{city_alert['id']}/acknowledge", {})
    assert answer.status_code == 200, answer.text
    wait_for(lambda: city.get(c_analyst, f"/api/v1/alerts/{city_alert['id']}").json()["alert"]["status"] == "acknowledged",
             30, "the province's acknowledgement at the city")
    answer = city.post(c_analyst, f"/api/v1/alerts/{city_alert['id']}/status",
                       {"status": "closed", "reason": "true_positive", "comment": "blocked at the city"})
    assert answer.status_code == 200, answer.text
    closed = wait_for(lambda: (a := province.get(p_analyst, f"/api/v1/alerts/{city_alert['id']}").json()["alert"])["status"]
                      == "closed" and a, 30, "the city's closing at the province")
    # Both tiers' steps are in the one history, each once, in time order.
    steps = [(h.get("to"), h["at"]) for h in closed["history"] if h["action"] == "status"]
    assert [to for to, _ in steps] == ["acknowledged", "closed"] and steps == sorted(steps, key=lambda s: s[1])
    at_city = city.get(c_analyst, f"/api/v1/alerts/{city_alert['id']}").json()["alert"]
    assert at_city["history"] == closed["history"]


def test_tenancy_of_the_agency_tree_and_correlation_across_the_city(tiers):
    province, city = tiers
    p_analyst, c_analyst = province.key("analyst"), city.key("analyst")
    port = city.settings.syslog.tcp_port
    # Four failed logins from one address at each commune: under five, the city raises nothing for either.
    send_syslog(port, "127.0.0.2", sshd_failures("tan-an-srv", "198.51.100.77", 3))
    send_syslog(port, "127.0.0.3", sshd_failures("moi-srv", "198.51.100.77", 3, start=10))
    send_syslog(port, "127.0.0.3", sshd_failures("moi-srv", "203.0.113.9", 6, start=20))  # a brute force at x-moi
    wait_for(lambda: [a for a in city.all_alerts(c_analyst) if a["organization"]["id"] == "x-moi"], 60,
             "the city's alert at x-moi")
    # The province counts the city's communes together: six from 198.51.100.77 is a brute force of the province.
    across = wait_for(lambda: [a for a in province.all_alerts(p_analyst)
                               if "198.51.100.77" in (a.get("entities") or {}).get("ip", [])
                               and not a.get("tier")], 60, "the province's own correlation across communes")
    assert across[0]["organization"]["id"] == "province" and across[0]["rule"]["name"] == "soc_ssh_brute_force"
    # Counted here from what the city vouched for: never evidence for automatic containment at the province.
    assert across[0]["trust"]["trusted"] is False and across[0]["trust"]["untrusted_events"] >= 6
    assert not [a for a in city.all_alerts(c_analyst) if "198.51.100.77" in (a.get("entities") or {}).get("ip", [])]

    # The agencies the city sent are in the province's tree: a key can be made for the commune it did not know.
    wait_for(lambda: _drained(city, c_analyst), 60, "the city's outbox drained")
    moi_key, tan_an_key, city_key = province.key("agency", "x-moi"), province.key("agency", "p-tan-an"), \
        province.key("agency", CITY)
    sibling_key = province.key("agency", "h-phu-thinh")
    moi_alerts = province.all_alerts(moi_key)
    assert moi_alerts and {a["organization"]["id"] for a in moi_alerts} == {"x-moi"}
    assert province.all_alerts(tan_an_key) == []  # p-tan-an had no alert in this test
    city_view = province.all_alerts(city_key)
    assert {a["organization"]["id"] for a in city_view} == {"x-moi"}  # its commune's, not the province's own
    assert province.all_alerts(sibling_key) == []
    assert province.get(tan_an_key, f"/api/v1/alerts/{moi_alerts[0]['id']}").status_code == 404
    assert province.get(moi_key, "/api/v1/alerts", agency="p-tan-an").status_code == 403
    moi_events = province.event_ids(moi_key)
    tan_an_events = province.event_ids(tan_an_key)
    city_events = province.event_ids(city_key)
    assert moi_events and tan_an_events and set(moi_events).isdisjoint(tan_an_events)
    assert set(city_events) == set(moi_events) | set(tan_an_events)
    assert province.event_ids(sibling_key) == []


def test_forwarding_over_mutual_tls_and_a_client_without_a_certificate_is_refused(tmp_path):
    """The province's API over HTTPS requiring client certificates from its CA; the city shows its own."""
    import ssl

    import httpx

    from tests.test_syslog_tls import _ca, _leaf

    pki = tmp_path / "pki"
    pki.mkdir()
    ca, rogue = _ca(pki, "tier-ca"), _ca(pki, "rogue-ca")
    server = _leaf(pki, "province", ca, cn="localhost", dns=["localhost"], ips=["127.0.0.1"], server=True)
    city_cert = _leaf(pki, "city", ca, cn="h-an-binh.city", dns=["h-an-binh.city"], server=False)
    rogue_cert = _leaf(pki, "rogue", rogue, cn="h-an-binh.city", dns=["h-an-binh.city"], server=False)
    ca_file = str(pki / "tier-ca.pem")
    province = TierSuite(tmp_path / "province", "province", store_url=None, index_prefix="tp",
                         inventory="inventory/sample/province.yaml",
                         api={"tls_cert_file": server[0], "tls_key_file": server[1], "tls_ca_file": ca_file,
                              "tls_client_certificates": "required"})
    province.verify, province.cert = ca_file, city_cert
    city = TierSuite(tmp_path / "city", "city", store_url=None, index_prefix="tc", inventory=CITY_INVENTORY,
                     tiers={"upstream": {"url": province.api, "key_env": "SOC_UPSTREAM_KEY", "ca_file": ca_file,
                                         "client_cert_file": city_cert[0], "client_key_file": city_cert[1],
                                         "interval_seconds": 0.2, "retry_max_seconds": 1.0}})
    city.env = {"SOC_UPSTREAM_KEY": province.key("downstream", CITY)}
    try:
        province.start()
        city.start()
        p_analyst, c_analyst = province.key("analyst"), city.key("analyst")
        send_syslog(city.settings.syslog.tcp_port, "127.0.0.2", sshd_failures("tan-an-srv", "203.0.113.60", 8))
        alert = wait_for(lambda: city.all_alerts(c_analyst), 60, "the city's alert")[0]
        wait_for(lambda: province.get(p_analyst, f"/api/v1/alerts/{alert['id']}").status_code == 200, 60,
                 "the alert at the province, over mutual TLS")
        assert province.api.startswith("https://")
        for cert in (None, rogue_cert):  # no certificate, or one from a CA the province does not trust
            context = ssl.create_default_context(cafile=ca_file)
            if cert:
                context.load_cert_chain(*cert)
            with pytest.raises(httpx.HTTPError):
                httpx.get(f"{province.api}/api/v1/health", verify=context, timeout=5)
    finally:
        for suite in (city, province):
            if suite.proc is not None and suite.proc.poll() is None:
                suite.proc.kill()
                suite.proc.wait()


NATIONAL_INVENTORY = {
    "province": {"id": "vn-ncsc", "name_vi": "Trung tâm Giám sát an toàn không gian mạng quốc gia",
                 "name_en": "National Cyberspace Security Monitoring Centre", "kind": "province"},
    "agencies": [{"id": "province", "name_vi": "Tỉnh", "name_en": "The province", "kind": "province",
                  "parent": "vn-ncsc"},
                 {"id": "other-province", "name_vi": "Tỉnh khác", "name_en": "Another province", "kind": "province",
                  "parent": "vn-ncsc"}],
    "assets": [],
}


def test_three_tiers_city_province_national_one_alert_everywhere_and_changes_all_the_way_down(tmp_path):
    """City → province → national: the city's alert and events reach the national centre through the province,
    under the same ids and the right agencies; the national centre's acknowledgement comes back to the city."""
    national = TierSuite(tmp_path / "national", "national", store_url=None, index_prefix="tn",
                         inventory=NATIONAL_INVENTORY)
    fast = {"key_env": "SOC_UPSTREAM_KEY", "interval_seconds": 0.2, "retry_max_seconds": 1.0}
    province = TierSuite(tmp_path / "province", "province", store_url=None, index_prefix="tp",
                         inventory="inventory/sample/province.yaml", tiers={"upstream": {"url": national.api, **fast}})
    province.env = {"SOC_UPSTREAM_KEY": national.key("downstream", "province")}
    city = TierSuite(tmp_path / "city", "city", store_url=None, index_prefix="tc", inventory=CITY_INVENTORY,
                     tiers={"upstream": {"url": province.api, **fast}})
    city.env = {"SOC_UPSTREAM_KEY": province.key("downstream", CITY)}
    suites = [national, province, city]
    try:
        for suite in suites:
            suite.start()
        n_analyst, c_analyst = national.key("analyst"), city.key("analyst")
        send_syslog(city.settings.syslog.tcp_port, "127.0.0.3", ordinary_lines("moi-srv", 30))
        send_syslog(city.settings.syslog.tcp_port, "127.0.0.3", sshd_failures("moi-srv", "203.0.113.70", 8))
        alert = wait_for(lambda: city.all_alerts(c_analyst), 60, "the city's alert")[0]
        at_national = wait_for(lambda: (r := national.get(n_analyst, f"/api/v1/alerts/{alert['id']}")).status_code
                               == 200 and r.json()["alert"], 60, "the city's alert at the national centre")
        assert at_national["organization"]["id"] == "x-moi" and at_national["tier"]["link"] == "province"
        city_events = set(city.event_ids(c_analyst))
        wait_for(lambda: city_events <= set(national.event_ids(n_analyst)), 60, "the city's events at the centre")
        # The province's key at the centre sees the city's commune (forwarded twice up); another province's does not.
        province_key, other_key = national.key("agency", "province"), national.key("agency", "other-province")
        assert national.get(province_key, f"/api/v1/alerts/{alert['id']}").status_code == 200
        assert national.get(other_key, f"/api/v1/alerts/{alert['id']}").status_code == 404
        # The national centre acknowledges: the province, then the city hear of it.
        assert national.post(n_analyst, f"/api/v1/alerts/{alert['id']}/acknowledge", {}).status_code == 200
        wait_for(lambda: city.get(c_analyst, f"/api/v1/alerts/{alert['id']}").json()["alert"]["status"]
                 == "acknowledged", 60, "the centre's acknowledgement at the city")
    finally:
        for suite in suites:
            if suite.proc is not None and suite.proc.poll() is None:
                suite.proc.kill()
                suite.proc.wait()


def test_a_full_outbox_drops_the_oldest_events_counted_and_never_an_alert(tmp_path):
    """The province down from the start and an outbox of 64 KiB: the city drops its oldest events (counted, in the
    API and the metrics) and keeps every alert; once the province is up, what was kept arrives and the counts add up."""
    province = TierSuite(tmp_path / "province", "province", store_url=None, index_prefix="tp",
                         inventory="inventory/sample/province.yaml")
    city = TierSuite(tmp_path / "city", "city", store_url=None, index_prefix="tc", inventory=CITY_INVENTORY,
                     tiers={"upstream": {"url": province.api, "key_env": "SOC_UPSTREAM_KEY", "interval_seconds": 0.2,
                                         "retry_max_seconds": 0.5, "spool_max_bytes": 65536}})
    city.env = {"SOC_UPSTREAM_KEY": province.key("downstream", CITY)}
    try:
        city.start()
        c_analyst = city.key("analyst")
        port = city.settings.syslog.tcp_port
        send_syslog(port, "127.0.0.2", sshd_failures("tan-an-srv", "203.0.113.80", 8))
        for round_ in range(4):
            send_syslog(port, "127.0.0.3", ordinary_lines("moi-srv", 150, start=150 * round_))
        sent = 8 + 600
        wait_for(lambda: len(city.event_ids(c_analyst)) == sent, 60, "every line stored at the city")
        state = city.get(c_analyst, "/api/v1/tier/upstream").json()
        dropped = state["dropped"].get("events", 0) + state["dropped"].get("evidence", 0)
        assert dropped > 0 and state["backlog"]["event"]["bytes"] <= 65536
        assert state["backlog"]["alert"]["records"] >= 1
        shown = f"soc_tier_dropped_records{{kind=\"events\"}} {float(state['dropped']['events'])}"
        wait_for(lambda: shown in city.get(c_analyst, "/metrics").text, 10, "the drops in the metrics")
        alert_ids = {a["id"] for a in city.all_alerts(c_analyst)}

        province.start()
        p_analyst = province.key("analyst")
        wait_for(lambda: _drained(city, c_analyst), 60, "the kept backlog sent")
        assert {a["id"] for a in province.all_alerts(p_analyst)} == alert_ids
        assert len(province.event_ids(p_analyst)) == sent - dropped
    finally:
        for suite in (city, province):
            if suite.proc is not None and suite.proc.poll() is None:
                suite.proc.kill()
                suite.proc.wait()


def test_a_filtered_link_sends_the_alerts_with_their_evidence_and_leaves_the_rest_at_the_city(tmp_path):
    """``events: filtered`` with no category or severity: only what an alert rests on goes up, with the alert."""
    province = TierSuite(tmp_path / "province", "province", store_url=None, index_prefix="tp",
                         inventory="inventory/sample/province.yaml")
    city = TierSuite(tmp_path / "city", "city", store_url=None, index_prefix="tc", inventory=CITY_INVENTORY,
                     tiers={"upstream": {"url": province.api, "key_env": "SOC_UPSTREAM_KEY", "interval_seconds": 0.2,
                                         "retry_max_seconds": 1.0, "events": "filtered",
                                         "event_filter": {"evidence": True}}})
    city.env = {"SOC_UPSTREAM_KEY": province.key("downstream", CITY)}
    try:
        province.start()
        city.start()
        p_analyst, c_analyst = province.key("analyst"), city.key("analyst")
        port = city.settings.syslog.tcp_port
        send_syslog(port, "127.0.0.3", ordinary_lines("moi-srv", 30))
        send_syslog(port, "127.0.0.2", sshd_failures("tan-an-srv", "203.0.113.90", 8))
        wait_for(lambda: len(city.event_ids(c_analyst)) == 38, 60, "every line stored at the city")
        alert = wait_for(lambda: city.all_alerts(c_analyst), 60, "the city's alert")[0]
        wait_for(lambda: _drained(city, c_analyst), 60, "the outbox drained")

        def evidence_there():
            evidence = set(city.get(c_analyst, f"/api/v1/alerts/{alert['id']}").json()["alert"]["evidence"])
            return evidence if evidence and set(province.event_ids(p_analyst)) == evidence else None

        evidence = wait_for(evidence_there, 30, "the alert's evidence, and nothing else, at the province")
        assert len(evidence) == 8  # the eight failed logins; none of the thirty cron lines
        assert province.get(p_analyst, f"/api/v1/alerts/{alert['id']}").status_code == 200
    finally:
        for suite in (city, province):
            if suite.proc is not None and suite.proc.poll() is None:
                suite.proc.kill()
                suite.proc.wait()
