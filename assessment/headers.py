"""HTTP security headers of a web port, read with httpx (one GET of ``/``, no redirect followed).

Over TLS: Strict-Transport-Security, Content-Security-Policy, X-Content-Type-Options: nosniff, and framing
protection (X-Frame-Options, or a CSP with frame-ancestors); over plain HTTP the same but HSTS, unless the answer is a
redirect to HTTPS. Each missing header is a finding of its own (low). The ``Server`` and ``X-Powered-By`` headers are
returned as banners for the vulnerability check. The request goes to the checked address with the asset's host name
in ``Host``; the certificate is not verified here (tls.py judges it).
"""

from __future__ import annotations

import httpx

from assessment.findings import Observation
from assessment.nmap import ToolError
from assessment.scope import Target, check_allowed
from assessment.settings import AssessmentSettings


def _url(address: str, port: int, tls: bool) -> str:
    host = f"[{address}]" if ":" in address else address
    return f"{'https' if tls else 'http'}://{host}:{port}/"


def judge(headers: httpx.Headers, port: int, tls: bool, status: int, url: str) -> list[Observation]:
    location = headers.get("location", "")
    if not tls and 300 <= status < 400 and location.lower().startswith("https://"):
        return []
    seen = {k.lower(): v for k, v in headers.items()}
    evidence = {"tool": "httpx", "url": url, "status": status,
                "headers": {k: seen[k][:300] for k in sorted(seen) if k in (
                    "strict-transport-security", "content-security-policy", "x-content-type-options",
                    "x-frame-options", "server", "x-powered-by")}}
    csp = seen.get("content-security-policy", "")
    missing = []
    if tls and "max-age=" not in seen.get("strict-transport-security", "").lower():
        missing.append(("strict-transport-security", "Strict-Transport-Security (HSTS)"))
    if not csp.strip():
        missing.append(("content-security-policy", "Content-Security-Policy"))
    if seen.get("x-content-type-options", "").strip().lower() != "nosniff":
        missing.append(("x-content-type-options", "X-Content-Type-Options: nosniff"))
    xfo = seen.get("x-frame-options", "").strip().lower()
    if xfo not in ("deny", "sameorigin") and "frame-ancestors" not in csp.lower():
        missing.append(("frame-options", "X-Frame-Options or CSP frame-ancestors"))
    return [Observation("headers", f"{port}/{key}", f"{label} missing on port {port}", "low", port, evidence)
            for key, label in missing]


def assess(settings: AssessmentSettings, target: Target, port: int, tls: bool) -> tuple[list[Observation], list[str]]:
    """The findings, and the software banners the answer carried (Server, X-Powered-By)."""
    address = check_allowed(settings, target.address)
    url = _url(address, port, tls)
    try:
        with httpx.Client(verify=False, timeout=settings.timeout_seconds, follow_redirects=False,  # nosec B501 - the
                          # scanned host's certificate is another check's (tls.py): the headers are read whatever it is
                          trust_env=False) as client:
            response = client.get(url, headers={"Host": target.hostname, "User-Agent": "soc-assessment"})
    except httpx.HTTPError as exc:
        raise ToolError(f"GET {url} failed: {type(exc).__name__}: {exc}") from exc
    banners = [response.headers[h] for h in ("server", "x-powered-by") if h in response.headers]
    return judge(response.headers, port, tls, response.status_code, url), banners
