"""The report schedule inside the running suite: on the configured day of each month (the 1st by default) the
previous month's reports are built for every agency (and the province roll-up), in each configured language and
format, and kept (files under data_dir/reports, records in the ``reports`` collection). On the first run of a
quarter the previous quarter's reports are built too. A report that already exists is not built again, so a
restart on the 1st, or several suite instances, do not duplicate work; a missed day is caught up on the next check.

Enable with ``extensions: [reports.service]``; configure with the ``reports`` section (reports/config.py).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import date

from reports.builder import build_report, exists, scopes
from reports.config import ReportsConfig, output_dir, reports_config
from reports.gather import PROVINCE, GatherOptions
from reports.periods import Period, now_local, previous_month, previous_quarter

log = logging.getLogger(__name__)


def due_periods(today: date, zone, config: ReportsConfig) -> list[Period]:
    """Periods whose reports are due on ``today``: the previous month from the configured day on (a late start
    still catches up), and the previous quarter in the first month of a quarter."""
    if today.day < config.day_of_month:
        return []
    periods = [previous_month(today, zone)]
    if config.quarterly and today.month in (1, 4, 7, 10):
        periods.append(previous_quarter(today, zone))
    return periods


def run_due(suite, today: date | None = None, config: ReportsConfig | None = None) -> list[str]:
    """Build every due report that does not exist yet; returns the ids built. Safe to call again."""
    config = config or reports_config(suite.settings)
    zone = suite.settings.tz
    today = today or now_local(zone).date()
    built: list[str] = []
    targets: list[str | None] = list(scopes(suite.inventory, config.agencies))
    if config.province_rollup:
        targets.append(None)
    for period in due_periods(today, zone, config):
        for scope in targets:
            if suite.closing:
                return built  # the rest is caught up at the next start
            try:
                with suite.job():
                    built += _build_one(suite, config, zone, period, scope)
            except Exception:  # one agency's failure must not stop the others' reports
                if suite.closing:
                    return built
                log.exception("scheduled report for %s %s failed", scope or PROVINCE, period.label)
    if built:
        log.info("scheduled reports built: %s", ", ".join(built))
    return built


def _build_one(suite, config: ReportsConfig, zone, period: Period, scope: str | None) -> list[str]:
    langs = [lang for lang in config.languages if not exists(suite.store, scope or PROVINCE, period.label, lang)]
    if not langs:
        return []
    return [item.record["id"] for item in build_report(suite.store, suite.inventory, suite.ruleset, scope=scope,
                                                       period=period, langs=langs, formats=config.formats,
                                                       out_dir=output_dir(suite.settings, config), zone=zone,
                                                       options=GatherOptions(gap_hours_min=config.gap_hours_min,
                                                                             agency_tlp=_agency_tlp(suite)))]


def _agency_tlp(suite) -> tuple[str, ...]:
    """The TLP levels agencies may read, as the API's TAXII settings say (its defaults when not configured)."""
    return tuple(suite.settings.soc_api.taxii.agency_tlp)


def register(services, registry) -> None:
    suite = services  # run_due reads settings, store, inventory, ruleset and the job runner from it
    config = reports_config(suite.settings)
    if not config.schedule_enabled:
        return

    async def schedule() -> None:
        loop = asyncio.get_running_loop()
        while True:
            now = now_local(suite.settings.tz)
            if now.hour >= config.hour or now.day > config.day_of_month:
                # Reading a month of events takes a while: off the event loop, so the API stays responsive.
                await loop.run_in_executor(None, run_due, suite, now.date())
            await asyncio.sleep(config.check_interval_seconds)

    registry.run_in_background(schedule)
