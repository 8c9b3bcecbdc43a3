"""`soc report`: build an agency's audit report (or the province roll-up) for a month or a quarter."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def register(app: typer.Typer) -> None:
    app.command("report")(report)


def report(
    agency: Annotated[Optional[str], typer.Option(help="the agency id (inventory) to report on")] = None,
    province: Annotated[bool, typer.Option("--province", help="the province roll-up of every agency")] = False,
    period: Annotated[str, typer.Option(help="a month (2026-10) or a quarter (2026-Q4)")] = ...,
    lang: Annotated[list[str], typer.Option(help="vi or en (repeat for both)")] = ["vi"],  # noqa: B006
    fmt: Annotated[list[str], typer.Option("--format", help="pdf or html (repeat for both)")] = ["pdf"],  # noqa: B006
    out: Annotated[Optional[Path], typer.Option(help="folder for the files (default: data_dir/reports)")] = None,
    config: Annotated[Optional[str], typer.Option("--config", "-c", help="YAML configuration file")] = None,
) -> None:
    """Build an audit report from the store: sources, events, alerts, incidents, playbooks, coverage, indicators,
    recommendations, with the evidence behind every figure. Prints the files written."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from detections.sigma.loader import load_rules
    from inventory.lookup import Inventory, InventoryError
    from reports.builder import build_report
    from reports.config import output_dir, reports_config
    from reports.gather import GatherOptions
    from reports.periods import PeriodError, parse_period
    from soc.plugins import commands

    if province == (agency is not None):
        typer.echo("soc report: give --agency ID or --province (one of them)", err=True)
        raise typer.Exit(2)
    settings = commands().settings(config)
    try:
        the_period = parse_period(period, settings.tz)
        inventory = Inventory.load(settings.inventory.path)
    except (PeriodError, InventoryError) as exc:
        typer.echo(f"soc report: {exc}", err=True)
        raise typer.Exit(2) from exc
    if agency is not None and agency not in inventory.agencies:
        typer.echo(f"soc report: agency {agency!r} is not in the inventory {inventory.source}", err=True)
        raise typer.Exit(2)
    bad = [x for x in lang if x not in ("vi", "en")] + [x for x in fmt if x not in ("pdf", "html")]
    if bad:
        typer.echo(f"soc report: unknown language or format: {', '.join(bad)} (languages vi, en; formats pdf, html)",
                   err=True)
        raise typer.Exit(2)
    cfg = reports_config(settings)
    store = commands().open_store(settings)
    try:
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                      transient=True) as bar:
            task = bar.add_task("reading the store", total=None)

            def counted(what: str, n: int) -> None:
                bar.update(task, description=f"reading the store: {n} {what}")

            built = build_report(store, inventory, load_rules(settings.detections.sigma_rule_dirs),
                                 scope=None if province else agency, period=the_period, langs=lang, formats=fmt,
                                 out_dir=out or output_dir(settings, cfg), zone=settings.tz,
                                 options=GatherOptions(gap_hours_min=cfg.gap_hours_min, progress=counted),
                                 progress=lambda text: bar.update(task, description=text))
    finally:
        store.close()
    for item in built:
        summary = item.record["summary"]
        typer.echo(f"{item.record['id']}: {summary['events']} events, {summary['alerts']} alerts, "
                   f"{summary['sources_reporting']}/{summary['sources_expected']} sources reporting, "
                   f"{summary['recommendations']} recommendations")
        for kind, path in item.files.items():
            typer.echo(f"  {kind}: {path}")
