"""Through the real path: `soc serve` (what `make run` starts) with parse workers, crafted 64 KB Cisco ASA lines
over syslog TCP and UDP, then ordinary lines: the ordinary lines are stored at once, and SIGTERM stops the suite
within seconds, also while a parse worker is stuck in a record.

The 64 KB lines are the ones whose backtracking kept a parser busy for hours before soc/linear_re.py.
For the stuck worker, a test-only format ("slowpoke", sleeping on lines marked SLOW) is put in the suite's and its
workers' registry by a sitecustomize module on their PYTHONPATH: no hook in the suite's code.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import yaml

from suite.settings import load_settings
from soc.storage import EventQuery, open_store
from tests.conftest import free_port, wait_until

PROJECT = Path(__file__).resolve().parent.parent.parent
SOC = [sys.executable, "-m", "suite.cli", "serve", "--config"]
SIZE = 64 * 1024 - 512  # the whole syslog line stays under the 64 KiB max_line_bytes
HEADER = "<132>Nov 22 10:00:00 fw-01 "  # (over UDP at 10:00:01: the same line from the same sender is one event)
STOP_SECONDS = 5.0  # SIGTERM to exit, with nothing left to drain


def _pump(prefix: str, unit: str, suffix: str = "") -> str:
    return prefix + unit * ((SIZE - len(prefix) - len(suffix)) // len(unit)) + suffix


WORST = [  # the Cisco ASA lines that backtracked (113019, 113004, "message repeated")
    "%ASA-4-113019: " + "Group = , Username = , IP = a" * (SIZE // 29),
    _pump("%ASA-6-113004: AAA user authentication Successful : server = 10.0.0.1 : user = x", " ", suffix="y"),
    _pump("%ASA-4-106023: message repeated 5 times: [", " "),
]

SLOW_FORMAT = '''
"""Test-only format (tests/security/test_parser_redos_e2e.py): marks a file, then sleeps, on a line marked SLOW."""
import os
import time

from collectors.parsers.registry import ParserSpec


def parse(doc, ctx):
    if "SLOW" in (doc.get("message") or ""):
        with open(os.environ["SLOWPOKE_MARK"], "a") as mark:
            mark.write(f"{os.getpid()}\\n")
        time.sleep(3600)
    return doc


SPEC = ParserSpec(name="slowpoke", dataset="slowpoke.log", carrier="syslog", parse=parse, programs=("slowpoke",),
                  description="test only: sleeps on lines marked SLOW")
'''
SITECUSTOMIZE = '''
import collectors.parsers.registry as registry

registry.PARSER_MODULES = (*registry.PARSER_MODULES, "slowpoke_format")
'''


class Served:
    """`soc serve` in a process of its own, with a configuration of its own."""

    def __init__(self, tmp_path: Path, env: dict | None = None, **pipeline):
        self.config = tmp_path / "soc.yaml"
        if not self.config.exists():
            self.config.write_text(yaml.safe_dump({
                "data_dir": str(tmp_path),
                "store": {"url": f"sqlite:///{tmp_path / 'soc.db'}"},
                "syslog": {"host": "127.0.0.1", "udp_port": free_port(), "tcp_port": free_port()},
                "api": {"host": "127.0.0.1", "port": free_port()},
                "extensions": [],
                "reports": {"schedule_enabled": False},
            }))
        data = yaml.safe_load(self.config.read_text())
        data["pipeline"] = {"flush_interval_seconds": 0.05, **pipeline}
        self.config.write_text(yaml.safe_dump(data))
        self.settings = load_settings(self.config, environ={})
        self.log = (tmp_path / "serve.log").open("ab")
        environ = {k: v for k, v in os.environ.items() if not k.startswith("SOC__")} | (env or {})
        self.proc = subprocess.Popen(SOC + [str(self.config)], stdout=self.log, stderr=self.log, env=environ)
        self.api = f"http://127.0.0.1:{self.settings.api.port}"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if httpx.get(f"{self.api}/api/v1/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError("soc serve did not come up: " + (tmp_path / "serve.log").read_text())

    def metric(self, name: str, **labels) -> float:
        text = httpx.get(f"{self.api}/metrics", timeout=5).text
        label_text = ",".join(f'{k}="{v}"' for k, v in labels.items())
        found = re.search(re.escape(name) + (r"\{" + re.escape(label_text) + r"\}" if labels else "") + r" (\S+)",
                          text)
        return float(found.group(1)) if found else 0.0

    def children(self) -> list[int]:
        """The suite's child processes (its parse workers)."""
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[1]) == self.proc.pid:
                    found.append(int(entry.name))
        return found

    def sigterm(self) -> tuple[int, float]:
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=60)
        finally:
            self.log.close()
        return code, time.monotonic() - started


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _send_tcp(port: int, lines: list[bytes]) -> None:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"\n".join(lines) + b"\n")


def _send_udp(port: int, lines: list[bytes]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for line in lines:
            sock.sendto(line, ("127.0.0.1", port))
            time.sleep(0.02 if len(line) > 10_000 else 0.002)  # the suite's socket buffer holds a few 64 KB ones


def _ordinary(n: int, transport: str) -> bytes:
    return (f"{HEADER}%ASA-4-106023: Deny tcp src outside:203.0.113.{n % 250}/{40000 + n} dst inside:10.1.1.5/22 "
            f'by access-group "outside_in" [0x0, 0x0] {transport}-{n}').encode()


def test_64kb_asa_lines_over_tcp_and_udp_do_not_hold_the_suite_and_sigterm_stops_it(tmp_path):
    served = Served(tmp_path, parse_workers=2)
    stopped = False
    try:
        tcp, udp = served.settings.syslog.tcp_port, served.settings.syslog.udp_port
        worst = [(HEADER + text).encode() for text in WORST]
        worst_udp = [line.replace(b"10:00:00", b"10:00:01", 1) for line in worst]
        assert all(60_000 < len(line) <= served.settings.syslog.max_line_bytes for line in worst)
        assert all(len(line) <= 65_507 for line in worst_udp)  # each fits one UDP datagram too
        started = time.monotonic()
        _send_tcp(tcp, worst)
        _send_udp(udp, worst_udp)
        _send_tcp(tcp, [_ordinary(n, "tcp") for n in range(100)])
        _send_udp(udp, [_ordinary(n, "udp") for n in range(100)])
        expected = len(worst) * 2 + 200
        assert wait_until(lambda: served.metric("soc_events_stored_total", store="sqlite") >= expected, timeout=30), \
            served.metric("soc_events_stored_total", store="sqlite")
        took = time.monotonic() - started
        assert took < 20, f"stored after {took:.1f} s"  # before the fix: hours (a worker busy on the first line)
        assert served.metric("soc_dead_letters_total", reason="parse_timeout") == 0  # fast, not cut off
        workers = served.children()
        assert len(workers) == 2
        code, took = served.sigterm()
        stopped = True
        assert code == 0 and took < STOP_SECONDS, (code, took)
        assert not [pid for pid in workers if _running(pid)]
    finally:
        if not stopped:
            served.proc.kill()
    store = open_store(served.settings)
    try:
        assert store.count_events() == expected and store.count_dead_letters() == 0
        for transport in ("tcp", "udp"):
            found = store.search_events(EventQuery(text=f"{transport}-99", limit=5))
            assert [e["event"]["code"] for e in found] == ["106023"]
        codes = sorted(e["event"]["code"] for e in store.search_events(EventQuery(terms={"observer.hostname": "fw-01"},
                                                                                  limit=500)))
        assert codes.count("113019") == codes.count("113004") == 2 and codes.count("106023") == 202
    finally:
        store.close()


def test_sigterm_stops_the_suite_while_a_parse_worker_is_stuck(tmp_path):
    """A worker sleeping in a record (the budget set far above) does not keep the suite from stopping; the record
    stays in the spool, and at the next start, with the default budget, it becomes a parse_timeout dead letter."""
    folder = tmp_path / "slow"
    folder.mkdir()
    (folder / "slowpoke_format.py").write_text(SLOW_FORMAT)
    (folder / "sitecustomize.py").write_text(SITECUSTOMIZE)
    mark = tmp_path / "slow.mark"
    env = {"PYTHONPATH": os.pathsep.join([str(folder), str(PROJECT)]), "SLOWPOKE_MARK": str(mark)}
    served = Served(tmp_path, env=env, parse_workers=1, parse_timeout_seconds=600, shutdown_drain_seconds=1)
    stopped = False
    slow = b"<38>Nov 22 10:00:00 web-01 slowpoke[7]: request 1 SLOW"
    try:
        _send_tcp(served.settings.syslog.tcp_port, [slow])
        assert wait_until(mark.exists, timeout=30), "the worker never took the slow record"
        stuck = int(mark.read_text().split()[0])
        assert stuck in served.children() and _running(stuck)
        code, took = served.sigterm()
        stopped = True
        assert code == 0 and took < 1 + STOP_SECONDS, (code, took)  # drain 1 s, then the worker is killed
        assert not _running(stuck)
    finally:
        if not stopped:
            served.proc.kill()

    again = Served(tmp_path, env=env, parse_workers=1, parse_timeout_seconds=1, shutdown_drain_seconds=1)
    try:
        assert wait_until(lambda: again.metric("soc_dead_letters_total", reason="parse_timeout") >= 1, timeout=60)
    finally:
        code, took = again.sigterm()
    assert code == 0 and took < STOP_SECONDS
    store = open_store(again.settings)
    try:
        letters = store.list_dead_letters(10)
        assert [letter.raw for letter in letters] == [slow] and letters[0].reason.startswith("parse_timeout: ")
        assert store.count_events() == 0
    finally:
        store.close()
