"""The monthly report's sections on the periodic assessment's findings and on the threat-update digest, over the
generated month of tests/reports_month.py plus findings, indicators and sightings stored here: the agency's findings
open at the end of the period by severity and those past due (accepted, false positive, fixed before the end and
first seen after it are not counted; another agency's never); the indicators new in the period seen in the agency's
traffic, one above the agency's TLP withheld (id, source and TLP only); every figure linked to evidence."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from assessment.findings import FINDINGS, Observation, record, set_status
from assessment.scope import Target
from assessment.settings import AssessmentSettings
from detections.indicators.model import COLLECTION as INDICATORS, SIGHTINGS, build
from reports.builder import build_report
from reports.periods import parse_period
from soc.storage.base import DocumentQuery
from suite.runtime import Suite
from tests import reports_month as month_data
from tests.conftest import make_settings

GREEN_VALUE = "203.0.113.201"
AMBER_VALUE = "203.0.113.202"
AMBER_NAME = "amber-secret-operation"


def _findings(store) -> dict[str, str]:
    settings = AssessmentSettings()
    ids: dict[str, str] = {}

    def put(asset: str, agency: str, detail: str, severity: str, day: int, due: str, title: str) -> str:
        target = Target(month_data.ADDRESS[asset], asset, asset, agency, ("https",))
        now = dt.datetime(2026, 10, day, tzinfo=dt.timezone.utc) if day <= 31 else \
            dt.datetime(2026, 11, day - 31, tzinfo=dt.timezone.utc)
        record(store, settings, target, "tls", [Observation("tls", detail, title, severity, 443,
                                                             {"protocol": "TLS 1.0"})], set(), now, f"r-{detail}")
        fid = next(d["id"] for d in store.find_documents(FINDINGS, DocumentQuery(terms={"detail": detail},
                                                                                  limit=5)))
        doc = store.get_document(FINDINGS, fid)
        doc["due"] = due
        store.put_documents(FINDINGS, [doc])
        return fid

    ids["past_due_high"] = put("a-web-01", "so-a", "443/protocol/TLS 1.0", "high", 3, "2026-10-20",
                               "TLS 1.0 <offered>")
    ids["critical_not_due"] = put("a-web-01", "so-a", "443/cve", "critical", 5, "2026-11-20", "CVE on nginx")
    ids["past_due_low"] = put("a-app-01", "so-a", "443/cipher/rc4", "low", 2, "2026-10-10", "RC4 offered")
    ids["accepted"] = put("a-app-01", "so-a", "443/cipher/3des", "medium", 2, "2026-10-10", "3DES offered")
    ids["after_end"] = put("a-app-01", "so-a", "443/late", "high", 33, "2026-11-05", "found in November")
    ids["other_agency"] = put("b-web-01", "so-b", "443/protocol/SSLv3", "critical", 4, "2026-10-08",
                              "SSLv3 of health")
    ids["fixed_before_end"] = put("a-fw-01", "so-a", "443/fw", "medium", 2, "2026-10-05", "fixed in time")
    accepted = store.get_document(FINDINGS, ids["accepted"])
    store.put_documents(FINDINGS, [set_status(accepted, "accepted", "behind the WAF", "ana",
                                              dt.datetime(2026, 10, 6, tzinfo=dt.timezone.utc))])
    fixed = store.get_document(FINDINGS, ids["fixed_before_end"])
    fixed.update(status="fixed", fixed_at="2026-10-20T00:00:00Z")
    store.put_documents(FINDINGS, [fixed])
    return ids


def _indicators(store) -> dict[str, str]:
    october = "2026-10-05T00:00:00Z"
    green = build([{"type": "ipv4", "value": GREEN_VALUE}], source="national_centre", tlp="green",
                  confidence=80, valid_from=october, name="green-botnet-c2")
    amber = build([{"type": "ipv4", "value": AMBER_VALUE}], source="national_centre", tlp="amber",
                  confidence=80, valid_from=october, name=AMBER_NAME)
    old = build([{"type": "ipv4", "value": "203.0.113.203"}], source="national_centre", tlp="green",
                confidence=80, valid_from="2026-09-01T00:00:00Z", name="september-indicator")
    for doc, created in ((green, october), (amber, october), (old, "2026-09-01T00:00:00Z")):
        doc.update(created=created, modified=created, added=created)
    store.put_documents(INDICATORS, [green, amber, old])
    sightings = []
    for n, (doc, agency) in enumerate(((green, "so-a"), (amber, "so-a"), (old, "so-a"), (green, "so-b"))):
        sightings.append({"id": f"sight-{n}", "indicator_id": doc["id"], "organization": {"id": agency},
                          "count": 3 + n, "first_seen": "2026-10-10T01:00:00.000Z",
                          "last_seen": "2026-10-12T01:00:00.000Z", "events": [], "observed": [],
                          "source": doc["source"]})
    store.put_documents(SIGHTINGS, sightings)
    return {"green": green["id"], "amber": amber["id"], "old": old["id"]}


@pytest.fixture(scope="module")
def month(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report-findings")
    inventory = month_data.write_inventory(folder)
    suite = Suite(make_settings(folder, SOC__INVENTORY__PATH=str(inventory)))
    month_data.play(suite, month_data.generate())
    month_data.handle_alerts(suite.store)
    month_data.other_components(suite.store)
    ids = _findings(suite.store)
    indicators = _indicators(suite.store)
    suite.store.refresh()
    yield suite, ids, indicators
    suite.close()


def _build(suite, scope, langs=("vi", "en")):
    return build_report(suite.store, suite.inventory, suite.ruleset, scope=scope,
                        period=parse_period("2026-10", suite.settings.tz), langs=langs, formats=("html",),
                        out_dir=Path(suite.settings.data_dir) / "reports", zone=suite.settings.tz)


def _html(built, lang: str) -> str:
    item = next(b for b in built if b.record["lang"] == lang)
    return item.files["html"].read_text(encoding="utf-8")


def test_findings_section_counts_open_and_past_due_with_evidence(month):
    suite, ids, _ = month
    built = _build(suite, "so-a", langs=("en",))
    data = built[0].data
    found = data.findings
    assert found["by_severity"] == {"critical": 1, "high": 1, "medium": 0, "low": 1, "informational": 0}
    assert found["open"] == 3
    assert [r["id"] for r in found["past_due"]] == [ids["past_due_high"], ids["past_due_low"]]
    assert found["past_due"][0] == {"id": ids["past_due_high"], "agency": "so-a", "asset": "a-web-01",
                                    "hostname": "a-web-01", "check": "tls", "title": "TLS 1.0 <offered>",
                                    "severity": "high", "due": "2026-10-20"}
    for key in ("findings:critical", "findings:high", "findings:low", f"findings:due:{ids['past_due_high']}"):
        ev = data.evidence[key]
        assert ev.other[FINDINGS] and ev.query["agency"] == "so-a"
        for fid in ev.other[FINDINGS]:
            assert suite.store.get_document(FINDINGS, fid)["organization"]["id"] == "so-a"
    html = _html(built, "en")
    section = html[html.index('id="s-findings"'):html.index('id="s-digest"')]
    assert "TLS 1.0 &lt;offered&gt;" in section and "<offered>" not in section
    assert "2026-10-20" in section and "RC4 offered" in section
    for hidden in ("CVE on nginx", "3DES offered", "found in November", "SSLv3 of health", "fixed in time"):
        assert hidden not in section  # not past due, accepted, after the end, another agency's, fixed in time
    links = set(re.findall(r'href="#ev-(E\d+)"', section))
    assert len(links) == 5  # three severities, two past-due rows
    assert links <= set(re.findall(r'id="ev-(E\d+)"', html))


def test_digest_section_withholds_what_the_agency_may_not_read(month):
    suite, _, indicators = month
    built = _build(suite, "so-a")
    data = built[0].data
    digest = data.digest
    assert {e["indicator_id"] for e in digest["seen"]} == {indicators["green"], indicators["amber"]}
    assert digest["withheld"] == 1 and digest["older_seen"] == 1
    green = next(e for e in digest["seen"] if e["indicator_id"] == indicators["green"])
    assert green["count"] == 3 and green["values"] == [GREEN_VALUE]  # so-b's sighting is not so-a's
    amber = next(e for e in digest["seen"] if e["indicator_id"] == indicators["amber"])
    assert amber.get("withheld") and "name" not in amber and "values" not in amber
    assert digest["by_source"] == {"national_centre": 1}  # only what the agency may read is counted
    for lang in ("vi", "en"):
        html = _html(built, lang)
        section = html[html.index('id="s-digest"'):]
        assert GREEN_VALUE in section and "green-botnet-c2" in section
        assert AMBER_NAME not in section and AMBER_VALUE not in section and indicators["amber"] in section
        # Nowhere in the agency's report: section 10 (the indicators exchanged) withholds its value too.
        assert AMBER_VALUE not in html and AMBER_NAME not in html and "TLP:AMBER" in html
        assert "september-indicator" not in section
        assert len(set(re.findall(r'href="#ev-(E\d+)"', section))) >= 3
    ev = data.evidence[f"digest:{indicators['green']}"]
    assert ev.other[SIGHTINGS] == ["sight-0"] and ev.other[INDICATORS] == [indicators["green"]]


def test_the_province_rollup_shows_everything_to_the_soc(month):
    suite, ids, indicators = month
    built = _build(suite, None, langs=("en",))
    data = built[0].data
    assert data.findings["open"] == 4
    assert ids["other_agency"] in {r["id"] for r in data.findings["past_due"]}
    assert data.digest["withheld"] == 0
    amber = next(e for e in data.digest["seen"] if e["indicator_id"] == indicators["amber"])
    assert amber["name"] == AMBER_NAME and amber["agencies"] == ["so-a"]
    green = next(e for e in data.digest["seen"] if e["indicator_id"] == indicators["green"])
    assert green["count"] == 3 + 6 and green["agencies"] == ["so-a", "so-b"]
    html = _html(built, "en")
    assert AMBER_VALUE in html  # the SOC's own roll-up withholds nothing
    assert "SSLv3 of health" in html and "Department of Health (test)" in html


def test_the_digest_lists_the_rules_that_arrived_in_the_month_for_the_agencys_events(month):
    """A rule that arrived in October and applies to so-a's SSH logs is listed in so-a's October digest; one that
    arrived later is not."""
    from detections import rule_arrivals
    from soc.storage.base import DocumentQuery

    suite, _, _ = month
    docs = suite.store.find_documents(rule_arrivals.COLLECTION, DocumentQuery(limit=10_000))
    ssh = next(d for d in docs if d["logsource"].get("service") in ("auth", "sshd"))
    for doc in docs:
        doc["arrived"] = "2026-11-20T00:00:00.000Z"  # after the month
    ssh["arrived"] = "2026-10-15T03:00:00.000Z"
    suite.store.put_documents(rule_arrivals.COLLECTION, docs)
    suite.store.refresh()
    built = _build(suite, "so-a")
    assert [r["id"] for r in built[0].data.digest["new_rules"]["rules"]] == [ssh["id"]]
    for lang in ("vi", "en"):
        section = _html(built, lang)
        section = section[section.index('id="s-digest"'):]
        assert ssh["title"] in section
    assert "1 luật phát hiện mới" in _html(built, "vi") and "1 detection rules arrived" in _html(built, "en")
