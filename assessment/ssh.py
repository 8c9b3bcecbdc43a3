"""SSH algorithms and banner with ssh-audit (PyPI ``ssh-audit``), read from its JSON output (``-j``).

ssh-audit runs as a subprocess (``python -m ssh_audit``) with an argument list, its connection-rate test skipped
(``--skip-rate-test``: the assessment's own rate limit holds). Each key exchange, host key, cipher or MAC algorithm
ssh-audit marks is one finding: "fail" notes make it medium, "warn" notes only low. ssh-audit's own CVE list and
additional notes are not findings (software versions are matched against the imported dataset, vulns.py); the
banner is returned for that.
"""

from __future__ import annotations

import json
import subprocess  # nosec B404 - an argument list, never a shell
import sys

from assessment.findings import Observation
from assessment.nmap import ToolError
from assessment.scope import Target, check_allowed
from assessment.settings import AssessmentSettings

_KINDS = {"kex": "key exchange", "key": "host key", "enc": "cipher", "mac": "MAC"}


def command(settings: AssessmentSettings, address: str, port: int) -> list[str]:
    target = check_allowed(settings, address)
    return [sys.executable, "-m", "ssh_audit", "-j", "-n", "--skip-rate-test", "-t",
            str(max(1, int(settings.timeout_seconds))), "-p", str(int(port)), target]


def judge(report: dict, port: int) -> list[Observation]:
    out = []
    banner = (report.get("banner") or {}).get("raw")
    for section, label in _KINDS.items():
        for algorithm in report.get(section) or []:
            notes = algorithm.get("notes") or {}
            fail, warn = notes.get("fail") or [], notes.get("warn") or []
            if not fail and not warn:
                continue
            name = algorithm.get("algorithm", "?")
            severity = "medium" if fail else "low"
            out.append(Observation("ssh", f"{port}/{section}/{name}", f"Weak SSH {label} {name} on port {port}",
                                   severity, port, {"tool": "ssh-audit", "algorithm": name, "kind": section,
                                                    "fail": fail, "warn": warn, "banner": banner}))
    return out


def assess(settings: AssessmentSettings, target: Target, port: int) -> tuple[list[Observation], list[str]]:
    argv = command(settings, target.address, port)
    try:
        result = subprocess.run(argv, capture_output=True, text=True,  # nosec B603 - an argument list, a checked address
                                timeout=settings.timeout_seconds * 6 + 30)
    except subprocess.TimeoutExpired as exc:
        raise ToolError("ssh-audit did not finish in time") from exc
    if result.returncode not in (0, 2, 3):  # good, warnings, failures; 1 is a connection error
        raise ToolError(f"ssh-audit could not audit {target.address}:{port} ({result.returncode}): "
                        f"{(result.stdout + result.stderr).strip()[:500]}")
    try:
        report = json.loads(result.stdout)
    except ValueError as exc:
        raise ToolError(f"ssh-audit's JSON could not be read: {exc}") from exc
    banner = (report.get("banner") or {}).get("software")
    return judge(report, port), [banner] if banner else []
