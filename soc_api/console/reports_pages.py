"""What the reports page shows: the audit reports ``GET /api/v1/reports`` lists (``Data.reports``: an agency user
gets its own agency's reports only, never the province roll-up), with their headline figures and links to download
each rendering; and when the next ones are built (reports/service.py's schedule).

The files themselves are served by the API's own download function (soc_api/routers/reports.py), through the
user's Data: another agency's report answers 404 exactly as a missing one does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from reports.config import reports_config
from soc_api.console.alerts import agency_name, name_key

PAGE_SIZE = 25
FORMATS = ("pdf", "html", "evidence")  # the order of the download links
REPORT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
PERIOD = re.compile(r"^\d{4}-(\d{2}|Q[1-4])$")
PROVINCE = "province"
CURSOR = re.compile(r"^[A-Za-z0-9_=-]{1,512}$")


@dataclass
class ReportsQuery:
    agency: str = ""  # an agency id, "province" (roll-ups), or "" (all the user may see)
    period: str = ""  # 2026-10 or 2026-Q4
    cursor: str = ""
    problems: list[str] = field(default_factory=list)

    @classmethod
    def from_params(cls, params: Mapping[str, str], *, tenant: bool, agencies: Iterable[str]) -> "ReportsQuery":
        q = cls()
        q.agency = (params.get("agency") or "").strip()[:64]
        q.period = (params.get("period") or "").strip().upper()[:16]
        q.cursor = (params.get("cursor") or "").strip()
        if q.period and not PERIOD.match(q.period):
            q.problems.append("reports.problem.period")
            q.period = ""
        if tenant:
            q.agency = ""  # an agency user's reports are its own agency's, whatever the URL says
        elif q.agency and q.agency != PROVINCE and q.agency not in set(agencies):
            q.problems.append("reports.problem.agency")
            q.agency = ""
        if q.cursor and not CURSOR.match(q.cursor):
            q.problems.append("reports.problem.cursor")
            q.cursor = ""
        return q

    def params(self, **changes) -> dict[str, str]:
        values = {"agency": self.agency, "period": self.period, "cursor": ""}
        values.update(changes)
        return {k: v for k, v in values.items() if v}


def scope_name(inventory, record: Mapping[str, Any], lang: str, t) -> str:
    if record.get("rollup") or record.get("scope") == PROVINCE:
        return t("reports.rollup")
    return agency_name(inventory, record.get("scope"), lang)


def report_row(record: Mapping[str, Any], inventory, lang: str, t) -> dict[str, Any]:
    """A report record as the API lists it (files reduced to the formats that can be downloaded)."""
    summary = record.get("summary") or {}
    formats = [f for f in FORMATS if f in (record.get("files") or {})]
    return {
        "id": record["id"],
        "title": record.get("title") or record["id"],
        "subtitle": record.get("subtitle") or "",
        "scope": record.get("scope"),
        "scope_name": scope_name(inventory, record, lang, t),
        "period": record.get("period", ""),
        "period_kind": record.get("period_kind") or ("quarter" if "Q" in str(record.get("period", "")) else "month"),
        "lang": record.get("lang", ""),
        "generated": record.get("generated"),
        "summary": {
            "events": summary.get("events"),
            "alerts": summary.get("alerts"),
            "sources_expected": summary.get("sources_expected"),
            "sources_reporting": summary.get("sources_reporting"),
            "recommendations": summary.get("recommendations"),
            "incidents": summary.get("incidents"),
        },
        "formats": formats,
        "valid_id": bool(REPORT_ID.match(str(record["id"]))),
    }


def agency_choices(inventory, lang: str) -> list[tuple[str, str]]:
    return sorted(((a, agency_name(inventory, a, lang)) for a in inventory.agencies), key=lambda x: name_key(x[1]))


def schedule(settings) -> dict[str, Any]:
    """When the scheduled reports are built (reports/config.py), for the page's note."""
    config = reports_config(settings)
    return {"enabled": config.schedule_enabled, "day": config.day_of_month, "hour": config.hour,
            "quarterly": config.quarterly, "languages": list(config.languages), "formats": list(config.formats)}
