"""Scan the payloads the packet collectors extracted (HTTP bodies, FTP files) and say what matched, as ECS alerts.

A `network.http` or `network.ftp` event lists its payloads under ``soc.payloads[]``, each stored once under its
sha256 (``collectors/packets/payloads.py``). The payload is scanned as data under the name it travelled with (the
last part of the URL path, or the FTP file name), so rules on filename/extension see "invoice.php", not a hash. The
alert documents carry the traffic around it (source, destination, url, community id, agency) and the id of the
event that carried it.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Iterable
from urllib.parse import unquote, urlsplit

from detections.yara.ecs import match_to_ecs
from detections.yara.model import ScanProblem, ScanResult, Target
from detections.yara.scanner import Scanner
from soc import ecs

log = logging.getLogger(__name__)

# Copied from the carrying event onto each alert: who talked to whom, about what, in which agency.
CONTEXT_FIELDS = ("source", "destination", "client", "server", "network", "url", "http", "user_agent", "user",
                  "organization", "host", "observer")


def payload_name(event: dict, payload: dict) -> str:
    """The name the payload travelled under: the FTP file name, else the last segment of its URL path."""
    if ecs.get(event, "event.dataset") == "network.ftp" and ecs.get(event, "file.name"):
        return os.path.basename(str(ecs.get(event, "file.name")))
    url = payload.get("url") or ecs.get(event, "url.path") or ecs.get(event, "url.original") or ""
    path = urlsplit(url).path if "://" in url else url.split("?", 1)[0]
    return os.path.basename(unquote(path).rstrip("/")) or payload.get("sha256", "")


def context_of(event: dict) -> dict[str, Any]:
    extra = {name: event[name] for name in CONTEXT_FIELDS if isinstance(event.get(name), dict)}
    extra["soc"] = {"yara": {"carrier_event": ecs.get(event, "event.id"),
                             "carrier_dataset": ecs.get(event, "event.dataset")}}
    return extra


def scan_event_payloads(scanner: Scanner, events: Iterable[dict]) -> tuple[list[dict], list[ScanResult]]:
    """(ECS alert documents, scan results) for every stored payload of these events. A payload that is missing,
    unreadable or over the size limit comes back as a result with its problem, never as an exception."""
    alerts: list[dict] = []
    results: list[ScanResult] = []
    for event in events:
        payloads = ecs.get(event, "soc.payloads") or []
        for payload in payloads if isinstance(payloads, list) else []:
            path = payload.get("path") if isinstance(payload, dict) else None
            if not path:
                continue  # hashed, not kept: nothing to scan
            result = _scan_one(scanner, path, payload_name(event, payload))
            results.append(result)
            if result.problem:
                log.warning("payload %s of event %s not scanned: %s", path, ecs.get(event, "event.id"),
                            result.problem.reason)
            extra = context_of(event)
            alerts.extend(match_to_ecs(m, timestamp=ecs.get(event, "@timestamp"), extra=extra)
                          for m in result.matches)
    return alerts, results


def _scan_one(scanner: Scanner, path: str, name: str) -> ScanResult:
    target = Target(path=path, size=0, kind="payload", name=name)
    limit = scanner.options.max_file_bytes
    try:
        target.size = os.stat(path).st_size
        if target.size > limit:
            return ScanResult(target=target, problem=ScanProblem(
                path=path, kind="too_large", reason=f"{target.size} bytes is over the limit of {limit} bytes"))
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        return ScanResult(target=target, problem=ScanProblem(path=path, kind="unreadable",
                                                             reason=exc.strerror or str(exc)))
    return scanner.scan_bytes(data, name, path=path)
