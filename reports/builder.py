"""Build reports end to end: gather → layout → render (HTML, PDF) → files under data_dir/reports and a record in
the store's ``reports`` collection, which the API lists and serves.

A report is identified by scope, period and language (``so-tttt_2026-10_vi``): generating it again replaces it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable
from zoneinfo import ZoneInfo

from detections.sigma.loader import RuleSet
from inventory.lookup import Inventory
from reports.gather import PROVINCE, GatherOptions, gather
from reports.layout import build
from reports.model import ReportData
from reports.periods import Period
from reports.render_html import render_html
from reports.render_pdf import render_pdf
from soc.files import atomic_write
from soc.storage.base import DocumentQuery, Store

log = logging.getLogger(__name__)

COLLECTION = "reports"
FORMATS = ("pdf", "html")


@dataclass
class BuiltReport:
    record: dict
    data: ReportData
    files: dict[str, Path]


def report_id(scope: str, period: str, lang: str) -> str:
    return f"{scope}_{period}_{lang}"


def _write(path: Path, content: bytes) -> dict:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, content, mode=0o644)  # readers never see a half-written report
    return {"path": str(path.resolve()), "bytes": len(content), "sha256": hashlib.sha256(content).hexdigest()}


def build_report(store: Store, inventory: Inventory, ruleset: RuleSet, *, scope: str | None, period: Period,
                 langs: Iterable[str] = ("vi",), formats: Iterable[str] = FORMATS, out_dir: Path,
                 zone: ZoneInfo, options: GatherOptions | None = None,
                 progress: Callable[[str], None] | None = None) -> list[BuiltReport]:
    """Gather once, render each language and format, keep the files and the records. scope None = province."""
    formats = [f for f in formats]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"unknown report format(s) {', '.join(unknown)}; choose from {', '.join(FORMATS)}")
    data = gather(store, inventory, ruleset, scope, period, options)
    if progress:
        progress(f"gathered {data.events_total} events and {data.alerts_total} alerts")
    built = []
    docs = {lang: build(data, lang, zone) for lang in langs}  # the layout adds the summary's evidence
    evidence = json.dumps(data.evidence_json(), ensure_ascii=False, indent=1).encode()
    for lang, doc in docs.items():
        rid = report_id(data.scope, period.label, lang)
        folder = Path(out_dir) / period.label
        files: dict[str, dict] = {"evidence": _write(folder / f"{rid}.evidence.json", evidence)}
        paths: dict[str, Path] = {"evidence": folder / f"{rid}.evidence.json"}
        for fmt in formats:
            content = render_pdf(doc) if fmt == "pdf" else render_html(doc).encode("utf-8")
            paths[fmt] = folder / f"{rid}.{fmt}"
            files[fmt] = _write(paths[fmt], content)
            if progress:
                progress(f"wrote {paths[fmt]}")
        record = {
            "id": rid,
            "scope": data.scope,
            "rollup": data.rollup,
            "organization": {"id": None if data.rollup else data.scope},
            "period": period.label,
            "period_kind": period.kind,
            "period_start": period.start_iso,
            "period_end": period.end_iso,
            "lang": lang,
            "title": doc.title,
            "subtitle": doc.subtitle,
            "generated": data.generated,
            "files": files,
            "summary": data.summary(),
        }
        store.put_documents(COLLECTION, [record])
        built.append(BuiltReport(record, data, paths))
    return built


def list_reports(store: Store, agency: str | None = None, period: str | None = None,
                 limit: int = 100, after: tuple[str, str] | None = None) -> list[dict]:
    """Report records, newest generated first; ``agency`` limits to that agency's own reports."""
    terms: dict = {}
    if agency is not None:
        terms["scope"] = list(agency) if isinstance(agency, tuple) else agency  # a city's: its communes' too
    if period is not None:
        terms["period"] = period
    return store.find_documents(COLLECTION, DocumentQuery(terms=terms, sort="generated", descending=True,
                                                          limit=limit, after=after))


def exists(store: Store, scope: str, period: str, lang: str) -> bool:
    return store.get_document(COLLECTION, report_id(scope, period, lang)) is not None


def scopes(inventory: Inventory, agencies: Iterable[str] | None = None) -> list[str]:
    """Agencies a scheduled run reports on: those given, else every agency with an asset in the inventory."""
    if agencies:
        return [a for a in agencies if a in inventory.agencies]
    return sorted({asset.agency for asset in inventory.assets.values()} - {PROVINCE})

