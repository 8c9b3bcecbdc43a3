"""The periodic assessment against real servers in a network namespace (tests/netns_assessment.py): it finds exactly
the weaknesses planted, marks them fixed once the servers are restarted fixed, and flags one planted again as a
regression. Needs root (namespaces); skips loudly where they cannot be made, fails in CI."""

from __future__ import annotations

import json
import platform
import re

import pytest

from assessment import runner
from assessment.findings import FINDINGS
from assessment.settings import AssessmentSettings
from assessment.vulns import import_file
from inventory.lookup import Inventory
from soc.storage import store_from_url
from soc.storage.base import DocumentQuery
from tests.netns_firewall import need_lab


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    from tests.netns_assessment import AssessmentLab

    need_lab()
    lab = AssessmentLab(tmp_path_factory.mktemp("assess")).start()
    try:
        yield lab
    finally:
        lab.close()


def nvd_file(path, ssh_version: str) -> None:
    """NVD CVE JSON 2.0 naming the versions the planted banners show, and two records that must not match."""
    def cve(cve_id, criteria, score, severity, **bounds):
        return {"cve": {"id": cve_id, "published": "2026-01-01T00:00:00.000", "vulnStatus": "Analyzed",
                        "descriptions": [{"lang": "en", "value": f"test record {cve_id}"}],
                        "metrics": {"cvssMetricV31": [{"source": "nvd@nist.gov", "type": "Primary", "cvssData": {
                            "version": "3.1", "vectorString": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
                            "baseScore": score, "baseSeverity": severity}}]},
                        "configurations": [{"nodes": [{"operator": "OR", "negate": False, "cpeMatch": [
                            dict({"vulnerable": True, "criteria": criteria, "matchCriteriaId": "X"}, **bounds)]}]}]}}
    doc = {"resultsPerPage": 4, "startIndex": 0, "totalResults": 4, "format": "NVD_CVE", "version": "2.0",
           "timestamp": "2026-12-01T00:00:00.000", "vulnerabilities": [
               cve("CVE-1999-90001", "cpe:2.3:a:openbsd:openssh:*:*:*:*:*:*:*:*", 8.1, "HIGH",
                   versionStartIncluding="1.0", versionEndIncluding=ssh_version),
               cve("CVE-1999-90002", "cpe:2.3:a:python:python:*:*:*:*:*:*:*:*", 9.8, "CRITICAL",
                   versionEndIncluding=platform.python_version()),
               cve("CVE-1999-90003", "cpe:2.3:a:openbsd:openssh:*:*:*:*:*:*:*:*", 5.0, "MEDIUM",
                   versionEndExcluding="1.0"),
               cve("CVE-1999-90004", "cpe:2.3:a:f5:nginx:*:*:*:*:*:*:*:*", 7.5, "HIGH",
                   versionEndExcluding="99.0")]}
    path.write_text(json.dumps(doc))


PLANTED = {
    ("lab-web-01", "ports", "8081/tcp"),
    ("lab-web-01", "tls", "443/protocol/TLS 1.0"),
    ("lab-web-01", "tls", "443/protocol/TLS 1.1"),
    ("lab-web-01", "tls", "443/cipher/TLS_RSA_WITH_AES_128_CBC_SHA"),
    ("lab-web-01", "tls", "443/certificate/expired"),
    ("lab-web-01", "tls", "443/certificate/self-signed"),
    ("lab-web-01", "tls", "443/certificate/name-mismatch"),
    ("lab-web-01", "headers", "443/strict-transport-security"),
    ("lab-web-01", "headers", "443/content-security-policy"),
    ("lab-web-01", "headers", "443/x-content-type-options"),
    ("lab-web-01", "headers", "443/frame-options"),
    ("lab-web-01", "vulnerabilities", "443/CVE-1999-90002/python"),
    ("lab-ssh-01", "ssh", "22/kex/diffie-hellman-group14-sha1"),
    ("lab-ssh-01", "ssh", "22/enc/aes128-cbc"),
    ("lab-ssh-01", "ssh", "22/mac/hmac-sha1"),
    ("lab-ssh-01", "vulnerabilities", "22/CVE-1999-90001/openssh"),
}
# The OpenSSH version its banner shows cannot be changed by the test: that finding stays open when the rest is fixed.
STAYS = {("lab-ssh-01", "vulnerabilities", "22/CVE-1999-90001/openssh")}


def by_key(store) -> dict:
    docs = store.find_documents(FINDINGS, DocumentQuery(limit=1000))
    return {(d["asset"]["id"], d["check"], d["detail"]): d for d in docs}


def test_assessment_finds_exactly_what_was_planted_then_fixed_then_regression(lab, tmp_path):
    settings = AssessmentSettings(allowed_networks=[str(lab.subnet)], allowed_agencies=["lab"],
                                  ports="21-23,80,443,8080,8081,8443", max_targets_per_minute=60,
                                  timeout_seconds=5, nmap_max_rate=500)
    inventory = Inventory.load(lab.inventory(tmp_path / "inventory.yaml"))
    store = store_from_url(f"sqlite:///{tmp_path / 'soc.db'}")
    store.open()
    try:
        lab.web_server("weak")
        lab.extra_listener(True)
        lab.ssh_server("weak")
        banner = lab.ssh_banner()
        version = re.search(r"OpenSSH_([0-9][0-9A-Za-z.]*)", banner).group(1)
        nvd_file(tmp_path / "nvd.json", version)
        assert import_file(store, tmp_path / "nvd.json") == 4

        first = runner.run(store, inventory, settings, agency="lab", requested_by="test")
        assert first["errors"] == [], first["errors"]
        found = by_key(store)
        assert set(found) == PLANTED, (f"missing {sorted(PLANTED - set(found))}, "
                                       f"unexpected {sorted(set(found) - PLANTED)}")
        for key, doc in found.items():
            assert doc["status"] == "open" and doc["organization"]["id"] == "lab" and not doc["regression"]
            assert doc["first_seen"] == doc["last_seen"] and doc["evidence"]
        assert found[("lab-web-01", "tls", "443/certificate/expired")]["severity"] == "high"
        python_vuln = found[("lab-web-01", "vulnerabilities", "443/CVE-1999-90002/python")]
        assert python_vuln["cvss"]["score"] == 9.8 and python_vuln["severity"] == "critical"
        assert python_vuln["due"] is not None
        assert found[("lab-web-01", "ports", "8081/tcp")]["evidence"]["tool"] == "nmap"
        assert "other-srv-01" not in {k[0] for k in found} and lab.canary_hits() == ""

        # The same weaknesses again: the same findings, updated (no duplicates).
        ids = {k: d["id"] for k, d in found.items()}
        runner.run(store, inventory, settings, agency="lab", requested_by="test")
        again = by_key(store)
        assert {k: d["id"] for k, d in again.items()} == ids
        assert all(d["status"] == "open" for d in again.values())

        # Fixed: the servers restarted without their weaknesses, the extra listener gone.
        lab.web_server("fixed")
        lab.extra_listener(False)
        lab.ssh_server("fixed")
        second = runner.run(store, inventory, settings, agency="lab", requested_by="test")
        assert second["errors"] == [], second["errors"]
        after = by_key(store)
        assert set(after) == PLANTED  # nothing new
        for key, doc in after.items():
            assert doc["status"] == ("open" if key in STAYS else "fixed"), (key, doc["status"])
        assert second["counts"]["fixed"] == len(PLANTED) - len(STAYS)

        # One planted again: a regression.
        lab.extra_listener(True)
        third = runner.run(store, inventory, settings, asset="lab-web-01", requested_by="test")
        assert third["errors"] == [], third["errors"]
        final = by_key(store)
        port = final[("lab-web-01", "ports", "8081/tcp")]
        assert port["status"] == "open" and port["regression"] is True and port["regressions"] == 1
        assert all(d["status"] == "fixed" for k, d in final.items() if k[0] == "lab-web-01" and k[1] != "ports")
        assert lab.canary_hits() == ""
    finally:
        store.close()
