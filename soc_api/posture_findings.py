"""The assessment's findings in the posture document (``GET /api/v1/posture``, the push to the national centre): a
``findings`` object per agency, ``{"open": n, "by_severity": {...}, "past_due": n, "oldest_past_due": "YYYY-MM-DD"}``,
now (the layers' layer 3 says the same of a month's end, without severities).

Open: status ``open`` (accepted risks and false positives are not counted, as for layer 3); past due: open with a due
date (a day, UTC) before today. Read through the caller's Data, so an agency key counts its own agency's only.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from assessment.findings import FINDINGS
from soc.storage.base import DocumentQuery
from soc_api.data import Data

SEVERITIES = ("critical", "high", "medium", "low", "informational")
CAP = 100_000


def add_findings(data: Data, document: dict[str, Any], now: datetime | None = None) -> None:
    today = (now or datetime.now(timezone.utc)).astimezone(timezone.utc).date().isoformat()
    per: dict[str, dict[str, Any]] = {}
    for agency in document.get("agencies") or []:
        per[agency["id"]] = agency["findings"] = {"open": 0, "by_severity": {s: 0 for s in SEVERITIES},
                                                  "past_due": 0, "oldest_past_due": None}
    if not per:
        return
    docs = data.find_all(FINDINGS, DocumentQuery(terms={"status": "open", "organization.id": sorted(per)},
                                                 limit=1000), cap=CAP)
    for doc in docs:
        entry = per.get((doc.get("organization") or {}).get("id"))
        if entry is None or doc.get("status") != "open":
            continue
        entry["open"] += 1
        severity = doc.get("severity") if doc.get("severity") in SEVERITIES else "medium"
        entry["by_severity"][severity] += 1
        due = doc.get("due")
        if isinstance(due, str) and due[:10] < today:
            entry["past_due"] += 1
            if entry["oldest_past_due"] is None or due[:10] < entry["oldest_past_due"]:
                entry["oldest_past_due"] = due[:10]
