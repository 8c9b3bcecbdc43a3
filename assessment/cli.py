"""`soc assess ...`: run an assessment now, list findings, import a vulnerability dataset."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

assess_app = typer.Typer(help="Periodic assessment: ports, TLS, HTTP headers, SSH, known vulnerabilities.",
                         no_args_is_help=True)
ConfigOption = Annotated[Optional[str], typer.Option("--config", "-c", help="YAML configuration file")]


def register(app: typer.Typer) -> None:
    app.add_typer(assess_app, name="assess")


def _open(config: str | None):
    from soc.plugins import commands

    settings = commands().settings(config)
    return settings, commands().open_store(settings)


def _fail(message: str, code: int = 1):
    typer.echo(f"soc: {message}", err=True)
    raise typer.Exit(code)


@assess_app.command("run")
def run_command(
    agency: Annotated[Optional[str], typer.Option("--agency", help="only this agency's assets")] = None,
    asset: Annotated[Optional[str], typer.Option("--asset", help="only this asset")] = None,
    address: Annotated[Optional[str], typer.Option("--address", help="only this inventory address")] = None,
    config: ConfigOption = None,
) -> None:
    """Assess now what the configuration allows (assessment.allowed_networks / allowed_agencies)."""
    from assessment.runner import AssessmentBusy, run
    from assessment.scope import ScopeRefused
    from assessment.settings import assessment_settings
    from inventory.lookup import Inventory, InventoryError

    settings, store = _open(config)
    try:
        try:
            inventory = Inventory.load(settings.inventory.path)
        except InventoryError as exc:
            _fail(str(exc), 2)
        try:
            result = run(store, inventory, assessment_settings(settings), agency=agency, asset=asset,
                         address=address, requested_by="cli")
        except ScopeRefused as exc:
            _fail(f"refused: {exc}", 2)
        except AssessmentBusy as exc:
            _fail(str(exc), 1)
        typer.echo(json.dumps({k: result.get(k) for k in ("id", "state", "counts", "errors", "results")},
                              ensure_ascii=False, indent=2))
        if result.get("errors"):
            raise typer.Exit(1)
    finally:
        store.close()


@assess_app.command("findings")
def findings_command(
    agency: Annotated[Optional[str], typer.Option("--agency")] = None,
    asset: Annotated[Optional[str], typer.Option("--asset")] = None,
    status: Annotated[Optional[str], typer.Option("--status", help="open, accepted, fixed, false_positive")] = None,
    severity: Annotated[Optional[str], typer.Option("--severity")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON document a line")] = False,
    limit: Annotated[int, typer.Option("--limit", min=1, max=100000)] = 1000,
    config: ConfigOption = None,
) -> None:
    """List findings (most severe first within each asset)."""
    from assessment.findings import FINDINGS
    from soc.storage.base import DocumentQuery

    terms = {k: v for k, v in {"organization.id": agency, "asset.id": asset, "status": status,
                               "severity": severity}.items() if v}
    _, store = _open(config)
    try:
        docs = store.find_documents(FINDINGS, DocumentQuery(terms=terms, limit=limit))
    finally:
        store.close()
    for doc in sorted(docs, key=lambda d: (d.get("asset", {}).get("id", ""), d.get("check", ""), d["id"])):
        if as_json:
            typer.echo(json.dumps(doc, ensure_ascii=False, sort_keys=True))
        else:
            flag = " REGRESSION" if doc.get("regression") and doc.get("status") == "open" else ""
            typer.echo(f"{doc['id']}  {doc.get('status', ''):<14} {doc.get('severity', ''):<8} "
                       f"{doc.get('organization', {}).get('id', '')}/{doc.get('asset', {}).get('id', '')} "
                       f"due {doc.get('due') or '-'}  {doc.get('title', '')}{flag}")


@assess_app.command("import-vulns")
def import_vulns_command(
    path: Annotated[str, typer.Argument(help="an NVD CVE JSON 2.0 file (API answer or feed)")],
    config: ConfigOption = None,
) -> None:
    """Import (or update) known vulnerabilities that banners are matched against."""
    from assessment.vulns import VulnImportError, import_file

    _, store = _open(config)
    try:
        count = import_file(store, path)
    except (VulnImportError, OSError) as exc:
        _fail(str(exc), 2)
    finally:
        store.close()
    typer.echo(f"{count} vulnerabilities imported from {path}")
