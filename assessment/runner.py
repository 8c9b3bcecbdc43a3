"""One assessment: the targets a request names (scope.py: refused outside the allow-list), each in turn under the
rate limit, every configured check, and the findings recorded (findings.py). The run itself is a document of the
``assessment_runs`` collection: who asked, what was assessed, the counts, and each check that could not run.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import uuid
from typing import Callable

from assessment import findings, headers, nmap, ssh, tls, vulns
from assessment.nmap import ToolError
from assessment.scope import ScopeRefused, Target, resolve_targets
from assessment.settings import AssessmentSettings

log = logging.getLogger(__name__)


class AssessmentBusy(Exception):
    """Another assessment is running (one at a time)."""


class TargetRate:
    """Targets started per minute, across every run of this process (a token bucket; waits for a token)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: float | None = None
        self._last = time.monotonic()

    def take(self, per_minute: int, stop: Callable[[], bool] = lambda: False) -> bool:
        while True:
            with self._lock:
                now = time.monotonic()
                if self._tokens is None:
                    self._tokens = float(per_minute)
                self._tokens = min(float(per_minute), self._tokens + (now - self._last) * per_minute / 60.0)
                self._last = now
                if self._tokens >= 1.0:
                    self._tokens -= 1.0
                    return True
                wait = (1.0 - self._tokens) * 60.0 / per_minute
            if stop():
                return False
            time.sleep(min(wait, 1.0))


RATE = TargetRate()
_RUNNING = threading.Lock()


def busy() -> bool:
    return _RUNNING.locked()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def assess_target(store, settings: AssessmentSettings, target: Target, run_id: str,
                  now: dt.datetime | None = None) -> dict:
    """Every check on one address; returns {"counts": ..., "errors": [...], "open_ports": [...]}."""
    now = now or _now()
    expected = target.expected
    counts = {"new": 0, "seen": 0, "reopened": 0, "fixed": 0}
    errors: list[dict] = []

    def add(result: dict) -> None:
        for k, v in result.items():
            counts[k] += v

    try:
        open_ports, summary = nmap.scan(settings, target.address, [p for p in expected])
    except ToolError as exc:
        return {"counts": counts, "errors": [{"check": "ports", "error": str(exc)}], "open_ports": []}
    open_numbers = {p.port for p in open_ports}
    checks = set(settings.checks)
    if "ports" in checks:
        observations = [findings.Observation(
            "ports", f"{p.port}/tcp", f"Unexpected open port {p.port}/tcp ({p.service or 'unknown'})", "medium",
            p.port, dict(p.evidence(), tool="nmap", expected=sorted(expected), nmap_args=summary.get("args")))
            for p in open_ports if p.port not in expected]
        add(findings.record(store, settings, target, "ports", observations, None, now, run_id))
    software: list[tuple[int, vulns.Software]] = []
    for p in open_ports:
        software.extend((p.port, s) for s in (vulns.from_cpe(c) for c in p.cpes) if s)
    per_check: dict[str, list] = {"tls": [], "headers": [], "ssh": []}
    covered: dict[str, set] = {"tls": set(), "headers": set(), "ssh": set()}
    for port, kind in sorted(expected.items()):
        if kind is None:
            continue
        is_open = port in open_numbers
        wanted = {"tls": kind in ("tls", "tls-plain"), "headers": kind in ("tls", "http"), "ssh": kind == "ssh"}
        for check, applies in wanted.items():
            if not applies or check not in checks:
                continue
            if not is_open:  # the service is gone from the port: nothing of it is there any more
                covered[check].add(port)
                continue
            try:
                if check == "tls":
                    per_check["tls"].extend(tls.assess(settings, target, port, now))
                elif check == "headers":
                    found, banners = headers.assess(settings, target, port, tls=kind == "tls")
                    per_check["headers"].extend(found)
                    software.extend((port, s) for b in banners for s in vulns.from_banner(b, "http header"))
                else:
                    found, banners = ssh.assess(settings, target, port)
                    per_check["ssh"].extend(found)
                    software.extend((port, s) for b in banners for s in vulns.from_banner(b, "ssh banner"))
                covered[check].add(port)
            except (ToolError, ScopeRefused) as exc:
                errors.append({"check": check, "port": port, "error": str(exc)[:1000]})
            except Exception as exc:  # a tool's bug costs that check, never the run
                log.exception("assessment check %s on %s:%s failed", check, target.address, port)
                errors.append({"check": check, "port": port, "error": f"{type(exc).__name__}: {exc}"[:1000]})
    for check in ("tls", "headers", "ssh"):
        if check in checks:
            add(findings.record(store, settings, target, check, per_check[check], covered[check], now, run_id))
    if "vulnerabilities" in checks:
        # Banners of the ports whose checks failed are missing: those ports' findings are left alone.
        failed = {e.get("port") for e in errors}
        ports_seen = (open_numbers | set(expected)) - failed
        observations = [o for o in vulns.assess(store, software) if o.port in ports_seen]
        add(findings.record(store, settings, target, "vulnerabilities", observations, ports_seen, now, run_id))
    return {"counts": counts, "errors": errors, "open_ports": sorted(open_numbers)}


def run(store, inventory, settings: AssessmentSettings, *, agency: str | None = None, asset: str | None = None,
        address: str | None = None, requested_by: str = "schedule",
        stop: Callable[[], bool] = lambda: False) -> dict:
    """Assess what the request names. ScopeRefused when it names something outside the allow-list (nothing is
    scanned then); AssessmentBusy when another assessment runs."""
    targets = resolve_targets(inventory, settings, agency=agency, asset=asset, address=address)
    if not _RUNNING.acquire(blocking=False):
        raise AssessmentBusy("an assessment is running; try again when it has finished")
    try:
        started = _now()
        run_doc = {"id": f"run-{started.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}",
                   "started": findings._iso(started), "requested_by": requested_by,
                   "request": {"agency": agency, "asset": asset, "address": address}, "state": "running",
                   "targets": [{"asset": t.asset, "address": t.address, "agency": t.agency} for t in targets],
                   "agencies": sorted({t.agency for t in targets})}
        store.put_documents(findings.RUNS, [run_doc])
        totals = {"new": 0, "seen": 0, "reopened": 0, "fixed": 0}
        errors = []
        results = []
        for target in targets:
            if not RATE.take(settings.max_targets_per_minute, stop):
                run_doc["state"] = "stopped"
                break
            result = assess_target(store, settings, target, run_doc["id"])
            for k, v in result["counts"].items():
                totals[k] += v
            errors.extend(dict(e, asset=target.asset, address=target.address) for e in result["errors"])
            results.append({"asset": target.asset, "address": target.address, "agency": target.agency,
                            "open_ports": result["open_ports"], "counts": result["counts"]})
        run_doc.update(finished=findings._iso(_now()), counts=totals, errors=errors, results=results,
                       state="stopped" if run_doc["state"] == "stopped" else "done")
        store.put_documents(findings.RUNS, [run_doc])
        return run_doc
    finally:
        _RUNNING.release()
