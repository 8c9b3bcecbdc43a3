"""Known vulnerabilities: a dataset imported from NVD CVE JSON 2.0 files, and software versions read from banners
matched against it.

Import (``soc assess import-vulns FILE``): each ``vulnerabilities[].cve`` of an NVD API 2.0 answer or feed file
becomes one document of the ``vulnerabilities`` collection: its id, English description, CVSS (the primary v4.0,
else v3.1, v3.0, v2 metric: score, severity, vector) and the vulnerable CPE matches of its configurations (exact
versions, or ranges with versionStart/EndIncluding/Excluding). Importing again replaces a CVE's record. A
configuration's AND of several products is simplified to "any vulnerable product matches" (banners cannot show the
platform underneath).

Software comes from nmap's service CPEs (``cpe:/a:openbsd:openssh:9.2p1``), ssh-audit's banner (``OpenSSH_9.2p1``)
and the HTTP ``Server`` / ``X-Powered-By`` headers (``nginx/1.18.0``, ``Python/3.11.7``). A banner names a product
without a vendor; it matches CPEs of that product name, whatever the vendor (with a few aliases: Apache is
``apache:http_server``). A banner shows a version, not the patches a distribution backported: such a finding is for
the analyst to confirm or mark a false positive.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from assessment.findings import Observation
from soc.storage.base import DocumentQuery, Store

VULNS = "vulnerabilities"
MAX_FILE_BYTES = 512 * 1024 * 1024
_CVE_ID = re.compile(r"^CVE-\d{4}-\d{4,19}$")
_TOKEN = re.compile(r"([A-Za-z][A-Za-z0-9._+-]*?)[/_ ]v?(\d[0-9A-Za-z.+~-]*)")
# banner product (lower case) -> (CPE vendor, CPE product)
ALIASES = {"apache": ("apache", "http_server"), "httpd": ("apache", "http_server"),
           "microsoft-iis": ("microsoft", "internet_information_services"), "openssh": ("openbsd", "openssh"),
           "php": ("php", "php"), "openssl": ("openssl", "openssl"), "python": ("python", "python"),
           "lighttpd": ("lighttpd", "lighttpd"), "dropbear": ("dropbear_ssh_project", "dropbear_ssh")}


class VulnImportError(Exception):
    pass


@dataclass(frozen=True)
class Software:
    vendor: str | None
    product: str
    version: str
    source: str  # where it was read: "nmap cpe", "ssh banner", "http header"


# --- versions ----------------------------------------------------------------------------------------------------
def version_key(version: str) -> tuple:
    parts: list[tuple[int, Any]] = []
    for token in re.findall(r"\d+|[A-Za-z]+", version.lower()):
        parts.append((1, int(token)) if token.isdigit() else (0, token))
    return tuple(parts)


def _cmp(a: str, b: str) -> int:
    ka, kb = version_key(a), version_key(b)
    return (ka > kb) - (ka < kb)


def version_matches(match: dict, version: str) -> bool:
    exact = match.get("version")
    if exact not in (None, "*", "-", ""):
        wanted = exact + (match.get("update") or "") if match.get("update") not in (None, "*", "-") else exact
        return version_key(wanted) == version_key(version) or (
            not match.get("update") and version_key(exact) == version_key(version))
    if exact == "-":
        return False
    bounds = [("start_including", lambda c: c >= 0), ("start_excluding", lambda c: c > 0),
              ("end_including", lambda c: c <= 0), ("end_excluding", lambda c: c < 0)]
    if not any(match.get(k) for k, _ in bounds):
        return False  # "every version" of a product: too broad to judge from a banner
    return all(ok(_cmp(version, match[k])) for k, ok in bounds if match.get(k))


# --- import ------------------------------------------------------------------------------------------------------
def _cvss(metrics: dict) -> dict | None:
    for key in ("cvssMetricV40", "cvssMetricV31", "cvssMetricV30", "cvssMetricV2"):
        entries = metrics.get(key) or []
        if not entries:
            continue
        entry = next((e for e in entries if e.get("type") == "Primary"), entries[0])
        data = entry.get("cvssData") or {}
        severity = data.get("baseSeverity") or entry.get("baseSeverity")
        score = data.get("baseScore")
        if score is None:
            continue
        return {"version": data.get("version") or key[-2:], "score": float(score),
                "severity": (severity or _severity_of(float(score))).lower(), "vector": data.get("vectorString")}
    return None


def _severity_of(score: float) -> str:
    return "critical" if score >= 9 else "high" if score >= 7 else "medium" if score >= 4 else "low" if score > 0 \
        else "none"


def _matches(configurations: list) -> list[dict]:
    out = []
    for configuration in configurations or []:
        for node in configuration.get("nodes") or []:
            if node.get("negate"):
                continue
            for match in node.get("cpeMatch") or []:
                if not match.get("vulnerable"):
                    continue
                parts = str(match.get("criteria", "")).split(":")
                if len(parts) < 7 or parts[:2] != ["cpe", "2.3"] or parts[2] not in ("a", "o", "h"):
                    continue
                out.append({"part": parts[2], "vendor": parts[3].lower(), "product": parts[4].lower(),
                            "version": parts[5], "update": parts[6],
                            "start_including": match.get("versionStartIncluding"),
                            "start_excluding": match.get("versionStartExcluding"),
                            "end_including": match.get("versionEndIncluding"),
                            "end_excluding": match.get("versionEndExcluding")})
    return out


def parse_nvd(data: Any, source: str) -> list[dict]:
    if not isinstance(data, dict) or not isinstance(data.get("vulnerabilities"), list):
        raise VulnImportError(f"{source}: not NVD CVE JSON 2.0 (no 'vulnerabilities' list)")
    if data.get("format") not in (None, "NVD_CVE") or str(data.get("version", "2.0")) != "2.0":
        raise VulnImportError(f"{source}: format {data.get('format')!r} version {data.get('version')!r}; "
                              "NVD_CVE 2.0 expected")
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
    docs = []
    for item in data["vulnerabilities"]:
        cve = (item or {}).get("cve") if isinstance(item, dict) else None
        if not isinstance(cve, dict) or not _CVE_ID.match(str(cve.get("id", ""))):
            raise VulnImportError(f"{source}: an entry without a valid cve.id")
        matches = _matches(cve.get("configurations") or [])
        description = next((d.get("value", "") for d in cve.get("descriptions") or [] if d.get("lang") == "en"), "")
        docs.append({"id": cve["id"], "description": description[:4000], "published": cve.get("published"),
                     "last_modified": cve.get("lastModified"), "status": cve.get("vulnStatus"),
                     "cvss": _cvss(cve.get("metrics") or {}), "matches": matches,
                     "products": sorted({m["product"] for m in matches}), "source": source, "imported": now})
    return docs


def import_file(store: Store, path: str | Path) -> int:
    path = Path(path)
    if path.stat().st_size > MAX_FILE_BYTES:
        raise VulnImportError(f"{path}: larger than {MAX_FILE_BYTES} bytes")
    try:
        data = json.loads(path.read_bytes())
    except ValueError as exc:
        raise VulnImportError(f"{path}: not JSON: {exc}") from exc
    docs = parse_nvd(data, path.name)
    for start in range(0, len(docs), 500):
        store.put_documents(VULNS, docs[start:start + 500])
    return len(docs)


# --- software from banners ---------------------------------------------------------------------------------------
def from_cpe(cpe: str) -> Software | None:
    """nmap's CPE 2.2 URI (cpe:/a:vendor:product:version) with a version, else None."""
    parts = cpe.split(":")
    if len(parts) < 5 or parts[0] != "cpe" or parts[1] not in ("/a", "/o", "/h") or not parts[4]:
        return None
    return Software(parts[2].lower(), parts[3].lower(), parts[4], "nmap cpe")


def from_banner(text: str, source: str) -> list[Software]:
    out = []
    for product, version in _TOKEN.findall(text or "")[:8]:
        name = product.lower()
        vendor, cpe_product = ALIASES.get(name, (None, name))
        out.append(Software(vendor, cpe_product, version.rstrip(".-"), source))
    return out


def assess(store: Store, software: Iterable[tuple[int, Software]]) -> list[Observation]:
    out: dict[str, Observation] = {}
    cache: dict[str, list[dict]] = {}
    for port, item in software:
        if item.product not in cache:
            cache[item.product] = store.find_documents(VULNS, DocumentQuery(terms={"products": item.product},
                                                                            limit=10000))
        for vuln in cache[item.product]:
            hits = [m for m in vuln.get("matches") or [] if m["product"] == item.product
                    and (item.vendor is None or m["vendor"] == item.vendor) and version_matches(m, item.version)]
            if not hits:
                continue
            detail = f"{port}/{vuln['id']}/{item.product}"
            if detail in out:
                out[detail].evidence["sources"].append(item.source)
                continue
            cvss = vuln.get("cvss") or {}
            severity = cvss.get("severity") if cvss.get("severity") in ("critical", "high", "medium", "low") \
                else "medium"
            out[detail] = Observation(
                "vulnerabilities", detail, f"{vuln['id']} in {item.product} {item.version} on port {port}",
                severity, port, {"tool": "banner + imported dataset", "product": item.product,
                                 "vendor": item.vendor, "version": item.version, "sources": [item.source],
                                 "match": hits[0], "description": (vuln.get("description") or "")[:500]},
                {"cve": vuln["id"], "cvss": cvss or None})
    return list(out.values())
