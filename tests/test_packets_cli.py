"""``soc pcap`` as a user runs it: JSON lines out, progress and summary on stderr, exit codes; and live capture on
the loopback interface of a network namespace the test creates (traffic stays inside it)."""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest

from tests.conftest import CORPUS

SOC = str(Path(sys.executable).parent / "soc")
PCAPS = CORPUS / "pcap"


def soc(*args, timeout=120):
    return subprocess.run([SOC, *map(str, args)], capture_output=True, text=True, timeout=timeout)


def test_files_to_json_lines_with_payloads(tmp_path):
    captures = [PCAPS / "http-protocol-inspect-v2" / "http.pcap", PCAPS / "tls" / "tls.pcap"]
    out, payloads = tmp_path / "out.jsonl", tmp_path / "payloads"
    result = soc("pcap", *captures, "--out", out, "--payload-dir", payloads)
    assert result.returncode == 0, result.stderr
    docs = [json.loads(line) for line in out.read_text().splitlines()]
    datasets = {d["event"]["dataset"] for d in docs}
    assert datasets == {"network.flow", "network.dns", "network.http", "network.tls"}
    assert all(d["event"]["kind"] == "event" and d["event"]["category"] == ["network"] for d in docs)
    for doc in docs:
        if "file" in doc:
            path = Path(doc["file"]["path"])
            assert path.is_relative_to(payloads) and path.stat().st_size == doc["file"]["size"]
    assert "http.pcap: 43 packets" in result.stderr and "total: 2 files" in result.stderr
    assert result.stdout == ""


def test_stdout_when_no_out_file():
    result = soc("pcap", PCAPS / "ja4-tls" / "input.pcap")
    assert result.returncode == 0
    docs = [json.loads(line) for line in result.stdout.splitlines()]
    assert [d["event"]["dataset"] for d in docs].count("network.tls") == 1


def test_damaged_file_exits_non_zero_after_writing_what_it_could(tmp_path):
    data = (PCAPS / "http-protocol-inspect-v2" / "http.pcap").read_bytes()
    (tmp_path / "cut.pcap").write_bytes(data[:len(data) - 100])
    result = soc("pcap", tmp_path / "cut.pcap", PCAPS / "ja4-tls" / "input.pcap", "--out", tmp_path / "o.jsonl")
    assert result.returncode == 1
    assert "cut.pcap: truncated record" in result.stderr and "could not be read to the end" in result.stderr
    docs = [json.loads(line) for line in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert {d["log"]["file"]["path"] for d in docs} == {str(tmp_path / "cut.pcap"),
                                                        str(PCAPS / "ja4-tls" / "input.pcap")}


def test_usage_errors():
    assert soc("pcap").returncode == 2
    assert soc("pcap", "--live", "lo").returncode == 2  # a live capture needs an end
    missing = soc("pcap", "/nonexistent.pcap")
    assert missing.returncode == 1 and "no such file" in missing.stderr
    unwritable = soc("pcap", PCAPS / "ja4-tls" / "input.pcap", "--out", "/proc/no/such/out.jsonl")
    assert unwritable.returncode == 2 and "/proc/no/such/out.jsonl" in unwritable.stderr
    no_interface = soc("pcap", "--live", "nosuchif0", "--count", "1")
    assert no_interface.returncode == 1 and "cannot capture on nosuchif0" in no_interface.stderr


# --- live capture ---------------------------------------------------------------------------------------------------

TRAFFIC = r'''
import http.server, socket, struct, threading, urllib.request
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"live body for yara"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
threading.Thread(target=server.serve_forever, daemon=True).start()
request = urllib.request.Request(f"http://127.0.0.1:{server.server_port}/live-test?x=1",
                                 headers={"User-Agent": "SOC-live-test/1"})
assert urllib.request.urlopen(request, timeout=5).read() == b"live body for yara"
server.shutdown()
query = struct.pack("!HHHHHH", 4242, 0x0100, 1, 0, 0, 0) + b"\x04live\x03soc\x04test\x00" + struct.pack("!HH", 1, 1)
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.sendto(query, ("127.0.0.1", 53))
sock.close()
'''


@pytest.fixture
def netns():
    """A network namespace of the test's own, with its loopback up; deleted afterwards whatever happens."""
    if os.geteuid() != 0 or not shutil.which("ip"):
        pytest.skip("live capture test needs root and iproute2 (ip netns)")
    name = f"socpcap-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def _lines(stream, into: queue.Queue) -> None:
    for line in stream:
        into.put(line)
    into.put(None)


def test_live_capture_on_namespace_loopback(netns, tmp_path):
    out = tmp_path / "live.jsonl"
    capture = subprocess.Popen(["ip", "netns", "exec", netns, SOC, "pcap", "--live", "lo", "--timeout", "6",
                                "--out", str(out), "--payload-dir", str(tmp_path / "payloads")],
                               stderr=subprocess.PIPE, text=True)
    try:
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=_lines, args=(capture.stderr, lines), daemon=True).start()
        seen = []
        while not any("capturing on lo" in line for line in seen):
            line = lines.get(timeout=30)
            assert line is not None, "".join(seen)
            seen.append(line)
        subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", TRAFFIC], check=True, timeout=30)
        assert capture.wait(timeout=60) == 0
    finally:
        if capture.poll() is None:
            capture.kill()
            capture.wait()
    docs = [json.loads(line) for line in out.read_text().splitlines()]
    (http,) = [d for d in docs if d["event"]["dataset"] == "network.http"]
    assert http["url"]["path"] == "/live-test" and http["url"]["query"] == "x=1"
    assert http["user_agent"]["original"] == "SOC-live-test/1" and http["http"]["response"]["status_code"] == 200
    assert Path(http["file"]["path"]).read_bytes() == b"live body for yara"
    (query,) = [d for d in docs if d["event"]["dataset"] == "network.dns"]
    assert query["dns"]["question"]["name"] == "live.soc.test" and query["dns"]["id"] == 4242
    flows = [d for d in docs if d["event"]["dataset"] == "network.flow"]
    tcp = next(f for f in flows if f["network"].get("protocol") == "http")
    assert tcp["source"]["ip"] == "127.0.0.1" and tcp["destination"]["port"] == http["destination"]["port"]


def test_folder_argument_and_progress_positions(tmp_path):
    import shutil as sh

    from collectors.packets.pcap import PcapExtraction

    big = PCAPS / "output-eve-ftp-data" / "input.pcap"  # 1,350 packets: several progress steps
    sh.copy(big, tmp_path / "a.pcap")
    sh.copy(PCAPS / "ja4-tls" / "input.pcap", tmp_path / "b.pcapng.gz.not-a-capture-name")
    result = soc("pcap", tmp_path, "--out", tmp_path / "o.jsonl")
    assert result.returncode == 0 and "a.pcap: 1350 packets" in result.stderr and "b.pcapng" not in result.stderr
    positions = []
    list(PcapExtraction(big).records(progress=positions.append))
    assert len(positions) >= 2 and positions == sorted(positions) and positions[-1] == big.stat().st_size
