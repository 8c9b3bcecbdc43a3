"""The shared basics in soc/ that features use instead of writing their own: the alert vocabularies (soc/vocabulary.py)
and atomic file writes (soc/files.py)."""

from __future__ import annotations

import json
import os
import stat

import pytest

from soc.files import atomic_write
from soc.vocabulary import (
    ANALYST_STATUSES, OPEN_STATUSES, PRESENTED_OPEN_STATUSES, SEVERITIES, AlertStatus, Severity, known_severity,
    severity_at_least, severity_rank, worst_severity,
)


def test_severities_are_plain_strings_in_their_order():
    assert list(SEVERITIES) == ["informational", "low", "medium", "high", "critical"]
    assert Severity.high == "high" and {"high": 1}[Severity.high] == 1 and json.dumps(Severity.high) == '"high"'
    assert [severity_rank(s) for s in SEVERITIES] == [0, 1, 2, 3, 4]
    assert severity_rank("nonsense") == severity_rank(None) == severity_rank(Severity.medium)
    assert severity_at_least("critical", "high") and severity_at_least("high", Severity.high)
    assert not severity_at_least("medium", "high") and not severity_at_least("nonsense", "informational")
    assert worst_severity(["low", "critical", "high"]) == "critical" and worst_severity([]) == "medium"
    assert known_severity("high") is Severity.high and known_severity(None) is Severity.medium


def test_open_statuses():
    assert set(OPEN_STATUSES) == set(AlertStatus) - {AlertStatus.closed}
    assert set(PRESENTED_OPEN_STATUSES) == set(OPEN_STATUSES) - {AlertStatus.suppressed}
    assert set(ANALYST_STATUSES) == {"acknowledged", "in_progress", "closed"}


def test_atomic_write_replaces_the_whole_file(tmp_path):
    target = tmp_path / "inventory.yaml"
    target.write_text("old\n")
    atomic_write(target, "new ✓\n")
    assert target.read_text(encoding="utf-8") == "new ✓\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600  # owner only unless asked
    atomic_write(target, b"\x00bytes", mode=0o644, durable=False)
    assert target.read_bytes() == b"\x00bytes" and stat.S_IMODE(target.stat().st_mode) == 0o644
    assert os.listdir(tmp_path) == ["inventory.yaml"]  # no temporary file left behind


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "known_hosts"
    target.write_text("kept\n")
    with pytest.raises(TypeError):
        atomic_write(target, 12345)  # type: ignore[arg-type]
    assert target.read_text() == "kept\n" and os.listdir(tmp_path) == ["known_hosts"]


def test_the_api_offers_the_vocabularies():
    from soc_api.app import create_app

    schemas = create_app(object()).openapi()["components"]["schemas"]
    assert schemas["Severity"]["enum"] == list(SEVERITIES)
    assert schemas["AlertStatus"]["enum"] == list(AlertStatus)
    status_change = schemas["StatusChange"]["properties"]["status"]
    assert status_change["enum"] == ["acknowledged", "in_progress", "closed"]
