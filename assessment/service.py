"""The assessment extension: the schedule (``assessment.schedule_enabled``: every allowed asset once per
``interval_hours``) and the ``assessment`` service the API's on-demand runs go through."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import threading

from assessment import findings, runner
from assessment.settings import AssessmentSettings, assessment_settings
from soc.storage.base import DocumentQuery

log = logging.getLogger(__name__)


class AssessmentService:
    def __init__(self, services, settings: AssessmentSettings):
        self.services = services
        self.settings = settings

    def run(self, *, agency: str | None = None, asset: str | None = None, address: str | None = None,
            requested_by: str = "api") -> dict:
        """Validate the request now (ScopeRefused, AssessmentBusy), then assess."""
        with self.services.job():
            return runner.run(self.services.store, self.services.inventory, self.settings, agency=agency,
                              asset=asset, address=address, requested_by=requested_by,
                              stop=lambda: self.services.closing)

    def start(self, *, agency: str | None = None, asset: str | None = None, address: str | None = None,
              requested_by: str = "api") -> list:
        """Check the request (ScopeRefused names what is refused) and run it in a thread of its own; returns the
        targets that will be assessed."""
        from assessment.scope import resolve_targets

        targets = resolve_targets(self.services.inventory, self.settings, agency=agency, asset=asset,
                                  address=address)
        if not targets:
            from assessment.scope import ScopeRefused

            raise ScopeRefused("no inventory address is inside what assessment.allowed_networks and "
                               "allowed_agencies allow")
        if runner.busy():
            raise runner.AssessmentBusy("an assessment is running; try again when it has finished")

        def work() -> None:
            try:
                self.run(agency=agency, asset=asset, address=address, requested_by=requested_by)
            except Exception:
                log.exception("on-demand assessment failed")

        threading.Thread(target=work, name="assessment", daemon=True).start()
        return targets

    def due(self) -> bool:
        last = self.services.store.find_documents(findings.RUNS, DocumentQuery(
            terms={"requested_by": "schedule", "state": "done"}, sort="started", descending=True, limit=1))
        if not last:
            return True
        started = dt.datetime.fromisoformat(last[0]["started"].replace("Z", "+00:00"))
        return dt.datetime.now(dt.timezone.utc) - started >= dt.timedelta(hours=self.settings.interval_hours)


def register(services, registry) -> None:
    settings = assessment_settings(services.settings)
    service = AssessmentService(services, settings)
    registry.provide("assessment", service)
    if not settings.schedule_enabled:
        return

    async def schedule() -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                if await loop.run_in_executor(None, service.due):
                    await loop.run_in_executor(None, lambda: service.run(requested_by="schedule"))
            except runner.AssessmentBusy:
                pass
            except Exception:
                log.exception("scheduled assessment failed")
            await asyncio.sleep(settings.check_interval_seconds)

    registry.run_in_background(schedule)
