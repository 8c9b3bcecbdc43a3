"""Open ports and service banners with nmap (Debian's ``nmap``), read from its XML output.

nmap runs as a subprocess with an argument list (never a shell): a TCP connect scan (``-sT``, no raw sockets
needed), light version detection (``-sV --version-light``), no DNS (``-n``), no ping (``-Pn``), at most
``nmap_max_rate`` packets a second, on the configured ports plus the ones the inventory names. The target is the
canonical text of an address checked against the allow-list right before the call (scope.check_allowed). The XML is
parsed with defusedxml (no entities, no external references).
"""

from __future__ import annotations

import shutil
import subprocess  # nosec B404 - an argument list, never a shell
from dataclasses import dataclass, field

from defusedxml import ElementTree

from assessment.scope import check_allowed
from assessment.settings import AssessmentSettings


class ToolError(Exception):
    """A scanning tool is missing, failed or said something unreadable."""


@dataclass
class OpenPort:
    port: int
    protocol: str = "tcp"
    service: str = ""
    product: str = ""
    version: str = ""
    extrainfo: str = ""
    tunnel: str = ""
    cpes: list[str] = field(default_factory=list)

    def evidence(self) -> dict:
        return {k: v for k, v in {"port": self.port, "protocol": self.protocol, "service": self.service,
                                  "product": self.product, "version": self.version, "extrainfo": self.extrainfo,
                                  "tunnel": self.tunnel, "cpe": self.cpes}.items() if v}


def port_list(settings: AssessmentSettings, expected: list[int]) -> str:
    extra = ",".join(str(p) for p in sorted(set(expected)))
    return f"{settings.ports},{extra}" if extra else settings.ports


def command(settings: AssessmentSettings, address: str, ports: str) -> list[str]:
    nmap = shutil.which(settings.nmap_path)
    if nmap is None:
        raise ToolError(f"nmap ({settings.nmap_path}) is not installed (Debian: nmap)")
    target = check_allowed(settings, address)
    six = ["-6"] if ":" in target else []
    return [nmap, *six, "-Pn", "-n", "-sT", "-sV", "--version-light", "--max-rate", str(settings.nmap_max_rate),
            "--max-retries", "2", "--host-timeout", f"{int(settings.nmap_timeout_seconds)}s", "-p", ports,
            "-oX", "-", target]


def parse(xml_text: str) -> tuple[list[OpenPort], dict]:
    """The open TCP ports of nmap's XML report, and a summary of the run (nmap's arguments, version, timing)."""
    try:
        root = ElementTree.fromstring(xml_text)
    except Exception as exc:  # defusedxml refuses entities and DTD tricks; anything unreadable is a tool error
        raise ToolError(f"nmap's XML output could not be read: {exc}") from exc
    if root.tag != "nmaprun":
        raise ToolError("nmap's output is not an nmaprun document")
    ports: list[OpenPort] = []
    for port in root.iterfind("./host/ports/port"):
        state = port.find("state")
        if state is None or state.get("state") != "open" or port.get("protocol") != "tcp":
            continue
        service = port.find("service")
        attrs = service.attrib if service is not None else {}
        ports.append(OpenPort(
            port=int(port.get("portid", "0")), protocol="tcp", service=attrs.get("name", ""),
            product=attrs.get("product", ""), version=attrs.get("version", ""), extrainfo=attrs.get("extrainfo", ""),
            tunnel=attrs.get("tunnel", ""),
            cpes=[c.text for c in (service.iterfind("cpe") if service is not None else []) if c.text]))
    # Ports that answered at all (open, or closed: a refusal). None answering means the host was not reached, and
    # an unreachable host must not look like a host whose weaknesses were all fixed.
    closed = sum(1 for p in root.iterfind("./host/ports/port") if (p.find("state") is not None
                                                                    and p.find("state").get("state") == "closed"))
    closed += sum(int(e.get("count", "0")) for e in root.iterfind("./host/ports/extraports")
                  if e.get("state") == "closed")
    finished = root.find("./runstats/finished")
    summary = {"tool": "nmap", "version": root.get("version"), "args": root.get("args"),
               "elapsed": finished.get("elapsed") if finished is not None else None,
               "exit": finished.get("exit") if finished is not None else None,
               "answered": len(ports) + closed}
    return ports, summary


def scan(settings: AssessmentSettings, address: str, expected: list[int]) -> tuple[list[OpenPort], dict]:
    argv = command(settings, address, port_list(settings, expected))
    try:
        result = subprocess.run(argv, capture_output=True, text=True,  # nosec B603 - an argument list, a checked address
                                timeout=settings.nmap_timeout_seconds + 30)
    except subprocess.TimeoutExpired as exc:
        raise ToolError(f"nmap did not finish within {settings.nmap_timeout_seconds + 30:.0f} s") from exc
    if result.returncode != 0:
        raise ToolError(f"nmap failed ({result.returncode}): {result.stderr.strip()[:500]}")
    ports, summary = parse(result.stdout)
    if summary.get("exit") not in (None, "success"):
        raise ToolError(f"nmap reported {summary.get('exit')}: {result.stderr.strip()[:500]}")
    if not summary["answered"]:
        raise ToolError(f"{address} did not answer on any port (unreachable, or every port filtered)")
    return ports, summary
