"""The ``yara`` / ``yarac`` command-line tools as a reference: which rule files they accept, what they match.

The Debian tools here are libyara 4.2.3 while yara-python is 4.5.x, so a rule file may be accepted by one and not
the other. ``annotate`` records the tool's verdict in each file's health (``cli``); ``comparable`` is the set of
namespaces both accept, the only ones a comparison of results may use. Used by ``soc yara check --cli``, the
equality tests and the benchmark.
"""

from __future__ import annotations

import os
import shutil
import subprocess  # nosec B404 - runs the yara tools as the reference the scanner is compared with
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable

from detections.yara.compiler import RulePack
from detections.yara.model import RuleFileHealth


class ReferenceUnavailable(Exception):
    pass


def tools() -> tuple[str, str]:
    yara_bin, yarac_bin = shutil.which("yara"), shutil.which("yarac")
    if not yara_bin or not yarac_bin:
        raise ReferenceUnavailable("the yara command-line tools (yara, yarac) are not installed")
    return yara_bin, yarac_bin


def version() -> str:
    yara_bin, _ = tools()
    # argv list, no shell: paths and rule names are arguments, never parsed by a shell
    return subprocess.run([yara_bin, "--version"],  # nosec B603
                          capture_output=True, text=True, check=True).stdout.strip()


def defines(externals: dict[str, str]) -> list[str]:
    args = []
    for key, value in externals.items():
        args += ["-d", f"{key}={value}"]
    return args


def _check_one(yarac_bin: str, health: RuleFileHealth, externals: dict[str, str], out: str) -> str:
    # argv list, no shell: paths and rule names are arguments, never parsed by a shell
    proc = subprocess.run([yarac_bin, "-w", *defines(externals), health.path, out],  # nosec B603
                          capture_output=True, text=True)
    if proc.returncode == 0:
        return "accepted"
    reason = (proc.stderr or proc.stdout).strip().replace("\n", "; ")
    return f"rejected: {reason or f'exit status {proc.returncode}'}"


def annotate(pack: RulePack, threads: int = 2) -> list[RuleFileHealth]:
    """Ask yarac about every rule file; sets ``health.cli``. Returns the files on which the two disagree."""
    _, yarac_bin = tools()
    with tempfile.TemporaryDirectory(prefix="soc-yarac-") as tmp:
        def run(item: tuple[int, RuleFileHealth]) -> None:
            i, health = item
            health.cli = _check_one(yarac_bin, health, pack.externals, os.path.join(tmp, f"{i}.yarc"))

        with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
            list(pool.map(run, enumerate(pack.health)))
    return [h for h in pack.health if (h.status == "loaded") != (h.cli == "accepted")]


def comparable(pack: RulePack) -> list[RuleFileHealth]:
    """Files both engines accept (call ``annotate`` first)."""
    return [h for h in pack.health if h.status == "loaded" and h.cli == "accepted"]


def compile_with_cli(files: Iterable[RuleFileHealth], externals: dict[str, str], out: str | Path) -> Path:
    """One compiled file from yarac, namespace per rule file, as the suite compiles them."""
    _, yarac_bin = tools()
    args = [f"{h.namespace}:{h.path}" for h in files]
    # argv list, no shell: paths and rule names are arguments, never parsed by a shell
    proc = subprocess.run([yarac_bin, "-w", *defines(externals), *args, str(out)],  # nosec B603
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise ReferenceUnavailable(f"yarac failed on the comparable rule files: {proc.stderr.strip()}")
    return Path(out)


def scan_command(compiled: str | Path, target: str | Path, externals: dict[str, str], *, threads: int = 1,
                 recursive: bool = True, scan_list: bool = False, timeout: int | None = None) -> list[str]:
    """The tool takes one target: a file, a folder, or (``scan_list``) a file listing paths, one per line."""
    yara_bin, _ = tools()
    cmd = [yara_bin, "-w", "-e", "-C", "-p", str(threads), *defines(externals)]
    if recursive:
        cmd.append("-r")
    if scan_list:
        cmd.append("--scan-list")
    if timeout:
        cmd += ["-a", str(timeout)]
    return [*cmd, str(compiled), str(target)]


def parse_hits(stdout: str) -> set[tuple[str, str, str]]:
    """``namespace:rule path`` lines to {(namespace, rule, path)}."""
    hits = set()
    for line in stdout.splitlines():
        if not line.strip() or ":" not in line:
            continue
        namespace, rest = line.split(":", 1)
        rule, _, path = rest.partition(" ")
        hits.add((namespace, rule, path))
    return hits


def scan(compiled: str | Path, target: str | Path, externals: dict[str, str], **options) -> set[tuple[str, str, str]]:
    # argv list, no shell: paths and rule names are arguments, never parsed by a shell
    proc = subprocess.run(scan_command(compiled, target, externals, **options),  # nosec B603
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise ReferenceUnavailable(f"yara failed: {proc.stderr.strip()}")
    return parse_hits(proc.stdout)
