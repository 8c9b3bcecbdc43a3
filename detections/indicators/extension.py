"""Suite extension (``settings.extensions: [detections.indicators.extension]``): indicator matching on ingest.

register(services, registry) loads the indicator index from the store, adds the matcher to detection, keeps the index
in step with indicators other processes add (``soc taxii pull``, another API node), and records malware findings
(alerts that name file hashes) for STIX export.
"""

from __future__ import annotations

import asyncio
import logging

from detections.indicators.matcher import IndicatorMatcher
from detections.indicators.stix import stix_id_for
from detections.indicators.store import IndicatorService
from soc import ecs
from soc.storage.base import StoreError

log = logging.getLogger(__name__)
SYNC_SECONDS = 15.0
MALWARE_FINDINGS = "malware_findings"
_HASH_BY_LENGTH = {32: "md5", 40: "sha1", 64: "sha256", 128: "sha512"}


def malware_finding(alert: dict) -> dict | None:
    """An alert that names file hashes (antivirus, YARA, an indicator on a hash) is a malware finding."""
    hashes = {}
    for value in (alert.get("entities") or {}).get("hash", []):
        algorithm = _HASH_BY_LENGTH.get(len(value))
        if algorithm and algorithm not in hashes:
            hashes[algorithm] = value.lower()
    if not hashes:
        return None
    return {"id": alert["id"], "stix_id": stix_id_for("malware", alert["id"]), "alert_id": alert["id"], "name": alert["rule"]["title"], "hashes": hashes,
            "organization": {"id": ecs.get(alert, "organization.id")}, "first_seen": alert["first_seen"],
            "last_seen": alert["last_seen"], "modified": ecs.now_iso()}


def register(services, registry) -> None:
    service = IndicatorService(services.store)
    loaded = service.sync()
    log.info("indicator matching on: %d indicators loaded", loaded)
    registry.provide("indicators", service)
    registry.matcher(IndicatorMatcher(service))

    def record_findings(alerts: list[dict]) -> None:
        findings = [f for f in (malware_finding(a) for a in alerts) if f]
        if findings:
            services.store.put_documents(MALWARE_FINDINGS, findings)

    registry.on_alerts(record_findings)

    async def keep_in_step() -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(SYNC_SECONDS)
            try:
                await loop.run_in_executor(None, service.sync)
            except StoreError as exc:
                log.warning("indicator sync failed, retrying later: %s", exc)

    registry.run_in_background(keep_in_step)
