"""POST /api/v1/yara/scan and GET /api/v1/yara/rules over real HTTP against a running suite: matches, the name
setting the externals, roles, the upload size limit (413), wrong upload form (415)."""

from __future__ import annotations

import hashlib

import httpx
import pytest

from detections.yara.cache import load_pack
from detections.yara.samples import EICAR, SAMPLES, pe_stub
from detections.yara.service import YaraEngine, YaraService
from detections.yara.settings import YaraSettings
from suite.runtime import Suite, SuiteThread
from soc_api.keys import create_key
from tests.conftest import CORPUS, make_settings

SIGNATURE_BASE = CORPUS / "yara-signature-base" / "yara"
LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    runner = SuiteThread(Suite(make_settings(tmp_path_factory.mktemp("yara-api")))).start()
    config = YaraSettings(rule_dirs=[str(SIGNATURE_BASE)], max_upload_bytes=LIMIT, threads=2)
    pack = load_pack(config.rule_dirs, cache_dir=tmp_path_factory.getbasetemp() / "yara-cache")
    service = YaraService(runner.suite.settings)  # as the YARA extension provides it, its engine already built
    service.engine = YaraEngine(config, pack)
    runner.suite.registry.provide("yara", service)
    store = runner.suite.store
    keys = {role: create_key(store, role)[0] for role in ("analyst", "admin", "network_admin", "national_centre")}
    keys["agency"] = create_key(store, "agency", agency="so-tttt")[0]
    client = httpx.Client(base_url=f"http://127.0.0.1:{runner.suite.bound['api']}", timeout=60)
    yield client, keys
    client.close()
    runner.stop()


def _scan(client, key, data, name, **kwargs):
    headers = {"Content-Type": "application/octet-stream", **({"X-API-Key": key} if key else {})}
    return client.post("/api/v1/yara/scan", params={"name": name}, content=data, headers=headers, **kwargs)


def test_upload_is_scanned_and_matches_come_back(api):
    client, keys = api
    body = next(s for s in SAMPLES if s.name.endswith("shell.php")).data
    response = _scan(client, keys["analyst"], body, "shell.php")
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["file"] == {"name": "shell.php", "size": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    rules = {m["rule"]: m for m in answer["matches"]}
    assert {"ChinaChopper_Generic", "WEBSHELL_PHP_Generic_Eval"} <= set(rules)
    chopper = rules["ChinaChopper_Generic"]
    assert chopper["namespace"] == "apt_webshell_chinachopper.yar" and chopper["strings"][0]["identifier"] == "$x_php"
    assert chopper["strings"][0]["offset"] == 2  # the rule's regex begins "<?php" with an optional "<"
    assert answer["rule_files_loaded"] == 741 and answer["rule_files_failed"] == 0 and answer["rules"] > 5800
    assert answer["problem"] is None

    eicar = _scan(client, keys["admin"], EICAR, "eicar.com").json()
    assert [m["rule"] for m in eicar["matches"]] == ["SUSP_Just_EICAR"]
    clean = _scan(client, keys["analyst"], b"Bao cao thang 11 cua So TT&TT", "report.txt").json()
    assert clean["matches"] == [] and clean["problem"] is None


def test_the_name_sets_filename_and_extension(api):
    client, keys = api
    as_jpg = {m["rule"] for m in _scan(client, keys["analyst"], pe_stub(), "avatar.jpg").json()["matches"]}
    as_bin = {m["rule"] for m in _scan(client, keys["analyst"], pe_stub(), "avatar.bin").json()["matches"]}
    assert "SUSP_Known_Type_Cloaked_as_JPG" in as_jpg and "SUSP_Known_Type_Cloaked_as_JPG" not in as_bin


@pytest.mark.parametrize("role,status", [(None, 401), ("agency", 403), ("network_admin", 403),
                                         ("national_centre", 403)])
def test_only_analysts_and_admins_may_scan(api, role, status):
    client, keys = api
    assert _scan(client, keys.get(role), EICAR, "eicar.com").status_code == status
    assert client.get("/api/v1/yara/rules", headers={"X-API-Key": keys[role]} if role else {}).status_code == status


def test_an_upload_over_the_limit_is_refused_with_413(api):
    client, keys = api
    response = _scan(client, keys["analyst"], b"A" * (LIMIT + 1), "big.bin")
    assert response.status_code == 413
    assert response.json()["detail"] == f"the upload is {LIMIT + 1} bytes; the limit is {LIMIT} bytes " \
                                        "(yara.max_upload_bytes)"

    def chunks():  # no Content-Length: the limit is enforced while reading
        for _ in range(LIMIT // 4096 + 2):
            yield b"B" * 4096

    chunked = _scan(client, keys["analyst"], chunks(), "stream.bin")
    assert chunked.status_code == 413 and f"the limit is {LIMIT} bytes" in chunked.json()["detail"]
    # Exactly at the limit is fine.
    assert _scan(client, keys["analyst"], b"A" * LIMIT, "edge.bin").status_code == 200


def test_a_multipart_form_is_refused_with_a_clear_message(api):
    client, keys = api
    response = client.post("/api/v1/yara/scan", params={"name": "x.php"}, files={"file": ("x.php", b"<?php ?>")},
                           headers={"X-API-Key": keys["analyst"]})
    assert response.status_code == 415 and "raw request body" in response.json()["detail"]
    missing_name = client.post("/api/v1/yara/scan", content=b"x", headers={"X-API-Key": keys["analyst"]})
    assert missing_name.status_code == 422


def test_rule_file_health_is_listed(api):
    client, keys = api
    files = client.get("/api/v1/yara/rules", headers={"X-API-Key": keys["analyst"]}).json()
    assert len(files) == 741 and all(f["status"] == "loaded" for f in files)
    assert next(f for f in files if f["namespace"] == "gen_webshells_ext_vars.yar")["rules"] > 0


def test_without_a_prepared_engine_the_api_builds_one_from_the_settings(tmp_path):
    """No `detections.yara.service` extension: the first request builds the engine from the configured rule folder
    (cache under the data dir), later ones reuse it. Without rules the answer is 503 with the reason, and the suite
    stays up."""
    no_rules = SuiteThread(Suite(make_settings(tmp_path / "a", SOC__YARA__RULE_DIRS=f"[{tmp_path / 'no-rules'}]")))
    no_rules.start()
    try:
        key = create_key(no_rules.suite.store, "analyst")[0]
        with httpx.Client(base_url=f"http://127.0.0.1:{no_rules.suite.bound['api']}", timeout=120) as client:
            missing = _scan(client, key, EICAR, "eicar.com")
            assert missing.status_code == 503
            assert missing.json()["detail"].startswith("YARA rules are not available: rule folder")
            assert client.get("/api/v1/health").status_code == 200
    finally:
        no_rules.stop()
    runner = SuiteThread(Suite(make_settings(tmp_path / "b"))).start()
    try:
        key = create_key(runner.suite.store, "analyst")[0]
        with httpx.Client(base_url=f"http://127.0.0.1:{runner.suite.bound['api']}", timeout=120) as client:
            answer = _scan(client, key, EICAR, "eicar.com").json()
            assert [m["rule"] for m in answer["matches"]] == ["SUSP_Just_EICAR"]
        assert list((tmp_path / "b" / "cache" / "yara").glob("*.yarc"))  # cached for the next start
    finally:
        runner.stop()
