"""Syslog over TLS (RFC 5425): a real suite, a throwaway PKI, Python ssl clients and a real rsyslogd forwarding over
TCP and TLS. Nothing is mocked: certificates are verified by OpenSSL (and GnuTLS on rsyslog's side), events go through
the pipeline into the SQLite store.

The test inventory gives 127.0.0.1 to the agency "lab" (so an address identifies a sender) and puts the client
certificates' names on assets of other agencies (so an event's agency shows which of the two identified it).
127.0.0.2 is in no agency: a sender there without a known certificate is an unknown sender.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from suite.runtime import Suite, SuiteThread
from soc.storage import EventQuery
from soc_api.keys import create_key
from tests.conftest import cannot_run, free_port, make_settings, wait_until

RELAY = "relay-01.syslog.test"  # asset relay-01, agency so-tttt
RSYSLOG = "rsyslog-relay.syslog.test"  # asset rsyslog-relay, agency so-tc
CN_ONLY = "cn-only-sender"  # no subjectAltName: named by its CN; also on relay-01
STRANGER = "stranger.syslog.test"  # signed by the trusted CA, but on no asset


# --- a throwaway PKI ----------------------------------------------------------------------------------------------
def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _write(path: Path, cert, key) -> tuple[str, str]:
    path.with_suffix(".pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    path.with_suffix(".key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                           serialization.PrivateFormat.PKCS8,
                                                           serialization.NoEncryption()))
    return str(path.with_suffix(".pem")), str(path.with_suffix(".key"))


def _ca(folder: Path, name: str):
    key = _key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False),
                           critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    _write(folder / name, cert, key)
    return cert, key


def _leaf(folder: Path, file: str, ca, *, cn: str, dns: list[str] = (), ips: list[str] = (), server: bool):
    ca_cert, ca_key = ca
    key = _key()
    now = dt.datetime.now(dt.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
               .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server
                                                     else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                              critical=False))
    names = [x509.DNSName(n) for n in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return _write(folder / file, builder.sign(ca_key, hashes.SHA256()), key)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("pki")
    ca = _ca(folder, "test-ca")
    rogue = _ca(folder, "rogue-ca")
    return {
        "ca": str(folder / "test-ca.pem"),
        "server": _leaf(folder, "server", ca, cn="localhost", dns=["localhost"], ips=["127.0.0.1"], server=True),
        "relay": _leaf(folder, "relay", ca, cn="relay-01", dns=[RELAY], server=False),
        "rsyslog": _leaf(folder, "rsyslog", ca, cn="rsyslog-relay", dns=[RSYSLOG], server=False),
        "cn_only": _leaf(folder, "cn-only", ca, cn=CN_ONLY, server=False),
        "stranger": _leaf(folder, "stranger", ca, cn="stranger", dns=[STRANGER], server=False),
        # Same name as the relay, signed by a CA the suite does not trust: the name must not be believed.
        "rogue": _leaf(folder, "rogue", rogue, cn="relay-01", dns=[RELAY], server=False),
    }


# --- a suite with its own inventory -------------------------------------------------------------------------------
INVENTORY = {
    "province": {"id": "province", "name_vi": "Tỉnh", "name_en": "Province", "kind": "province"},
    "agencies": [
        {"id": "lab", "name_vi": "Phòng thử", "name_en": "Lab", "kind": "datacentre",
         "networks": [{"cidr": "127.0.0.1/32", "zone": "management"}]},
        {"id": "so-tttt", "name_vi": "Sở TTTT", "name_en": "Department of ICT", "kind": "department"},
        {"id": "so-tc", "name_vi": "Sở TC", "name_en": "Department of Finance", "kind": "department"},
    ],
    "assets": [
        {"id": "relay-01", "hostname": "relay-01", "kind": "server", "agency": "so-tttt",
         "certificate_names": [RELAY, CN_ONLY]},
        {"id": "rsyslog-relay", "hostname": "rsyslog-relay", "kind": "server", "agency": "so-tc",
         "certificate_names": [RSYSLOG]},
    ],
}


def _settings(tmp_path: Path, pki: dict, mode: str, **env):
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(yaml.safe_dump(INVENTORY, allow_unicode=True), encoding="utf-8")
    cert, key = pki["server"]
    return make_settings(tmp_path, SOC__INVENTORY__PATH=str(inventory), SOC__SYSLOG__TLS_PORT="0",
                         SOC__SYSLOG__TLS_CERT_FILE=cert, SOC__SYSLOG__TLS_KEY_FILE=key,
                         SOC__SYSLOG__TLS_CA_FILE=pki["ca"], SOC__SYSLOG__TLS_CLIENT_CERTIFICATES=mode, **env)


@pytest.fixture
def start_suite(tmp_path, pki):
    runners = []

    def start(mode: str, **env) -> Suite:
        runner = SuiteThread(Suite(_settings(tmp_path, pki, mode, **env))).start()
        runners.append(runner)
        return runner.suite

    yield start
    for runner in runners:
        runner.stop()


def _metrics(suite: Suite) -> str:
    return httpx.get(f"http://127.0.0.1:{suite.bound['api']}/metrics").text


def _metric(text: str, name: str, **labels) -> float:
    label_text = ",".join(f'{k}="{v}"' for k, v in labels.items())
    match = re.search(re.escape(name) + (r"\{" + re.escape(label_text) + r"\}" if labels else "") + r" ([0-9.e+]+)",
                      text)
    return float(match.group(1)) if match else 0.0


def _client_context(pki: dict, cert: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=pki["ca"])
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert:
        context.load_cert_chain(*pki[cert])
    return context


def _send_tls(suite: Suite, pki: dict, cert: str | None, payload: bytes, source: str = "127.0.0.1") -> None:
    """Send and close cleanly (close_notify), as a well-behaved RFC 5425 sender does."""
    raw = socket.create_connection(("127.0.0.1", suite.bound["syslog_tls"]), timeout=10,
                                   source_address=(source, 0))
    with _client_context(pki, cert).wrap_socket(raw, server_hostname="localhost") as tls:
        tls.sendall(payload)
        tls.unwrap().close()


def _refused(suite: Suite, pki: dict, cert: str | None) -> bool:
    """True when the server ends the connection in (or right after, with TLS 1.3) the handshake, without data."""
    raw = socket.create_connection(("127.0.0.1", suite.bound["syslog_tls"]), timeout=10)
    try:
        with _client_context(pki, cert).wrap_socket(raw, server_hostname="localhost") as tls:
            # TLS 1.3: the client's side of the handshake ends before the server has checked its certificate; the
            # refusal arrives as an alert on the next read.
            tls.sendall(b"<13>1 2026-11-22T10:00:00Z host app - - - must not be stored\n")
            return tls.recv(1) == b""
    except (ssl.SSLError, ConnectionError):
        return True


def _closed_by_server(sock: socket.socket) -> bool:
    try:
        while sock.recv(4096):  # at most an alert before the end
            pass
        return True
    except ConnectionError:
        return True
    except TimeoutError:
        return False


def _octets(message: bytes) -> bytes:
    return str(len(message)).encode() + b" " + message


RFC5424_SD = (b'<165>1 2026-11-22T10:00:00.123Z edge-gw-7 sshd 4242 ID47 [exampleSDID@32473 iut="3" '
              b'eventSource="Application"] Failed password for root from 203.0.113.21 port 5001 ssh2')
RFC3164 = b"<38>Nov 22 10:00:01 edge-gw-7 sshd[7]: Failed password for admin from 203.0.113.22 port 5002 ssh2"
RFC5424_PLAIN = b"<13>1 2026-11-22T10:00:02Z edge-gw-7 app - - - newline framed five four two four"
RFC3164_PLAIN = b"<38>Nov 22 10:00:03 edge-gw-7 sshd[7]: Accepted password for bob from 203.0.113.23 port 5003 ssh2"


def _events(suite: Suite, n: int) -> list[dict]:
    assert wait_until(lambda: suite.store.count_events() >= n), \
        f"{suite.store.count_events()} events stored, {n} expected"
    return suite.store.search_events(EventQuery(limit=100))


# --- the tests ----------------------------------------------------------------------------------------------------
def test_tls_framings_and_formats_are_stored_with_the_certificates_agency(start_suite, pki):
    suite = start_suite("required")
    before = _metrics(suite)
    # RFC 5425 framing (octet counting) and newline framing mixed on one connection; RFC 5424 and RFC 3164.
    _send_tls(suite, pki, "relay", _octets(RFC5424_SD) + _octets(RFC3164) + RFC5424_PLAIN + b"\n" + RFC3164_PLAIN +
              b"\n")
    events = _events(suite, 4)
    assert len(events) == 4 and suite.store.count_dead_letters() == 0
    by_text = {e["event"]["original"]: e for e in events}
    assert set(by_text) == {m.decode() for m in (RFC5424_SD, RFC3164, RFC5424_PLAIN, RFC3164_PLAIN)}
    for event in events:
        assert event["log"]["source"]["address"].startswith("tls://127.0.0.1:")
        # 127.0.0.1 belongs to "lab"; the verified certificate names relay-01 of so-tttt, and wins.
        assert event["organization"]["id"] == "so-tttt"
        assert event["soc"]["asset"]["id"] == "relay-01"
        assert event["soc"]["sender"]["certificate"] == RELAY
        assert "unknown_sender" not in event.get("tags", [])
    sd = by_text[RFC5424_SD.decode()]
    assert sd["log"]["syslog"]["structured_data"] == {"exampleSDID@32473": {"iut": "3",
                                                                             "eventSource": "Application"}}
    assert sd["source"]["ip"] == "203.0.113.21" and sd["user"]["name"] == "root"
    assert sd["event"]["outcome"] == "failure" and sd["log"]["syslog"]["facility"]["name"] == "local4"
    assert by_text[RFC3164.decode()]["user"]["name"] == "admin"
    assert by_text[RFC3164_PLAIN.decode()]["event"]["outcome"] == "success"
    assert by_text[RFC5424_PLAIN.decode()]["message"] == "newline framed five four two four"
    after = _metrics(suite)
    assert _metric(after, "soc_events_received_total", transport="tls") - \
        _metric(before, "soc_events_received_total", transport="tls") == 4


def test_required_mode_refuses_clients_without_a_trusted_certificate_and_keeps_listening(start_suite, pki):
    suite = start_suite("required")
    name = "soc_syslog_tls_handshake_failures_total"
    before = _metrics(suite)
    assert _refused(suite, pki, None)
    assert _refused(suite, pki, "rogue")  # the relay's name, from a CA the suite does not trust
    with socket.create_connection(("127.0.0.1", suite.bound["syslog_tls"]), timeout=10) as plain:
        plain.sendall(RFC3164 + b"\n")  # a plain-text sender on the TLS port
        assert _closed_by_server(plain)
    # The server counts a refusal before it closes the connection, so the counts are final by now.
    after = _metrics(suite)
    for reason in ("no_client_certificate", "bad_client_certificate", "not_tls"):
        assert _metric(after, name, reason=reason) - _metric(before, name, reason=reason) == 1, reason
    # Still listening, and nothing from the refused clients was taken.
    _send_tls(suite, pki, "relay", _octets(RFC3164))
    events = _events(suite, 1)
    assert [e["event"]["original"] for e in events] == [RFC3164.decode()]
    assert suite.store.count_dead_letters() == 0


def test_optional_mode_names_senders_by_certificate_or_address_and_lists_unknown_ones(start_suite, pki):
    suite = start_suite("optional")
    line = b"<38>Nov 22 10:00:01 edge-gw-7 app[7]: sent by %s\n"
    _send_tls(suite, pki, None, line % b"no-certificate")
    _send_tls(suite, pki, "relay", line % b"relay")
    _send_tls(suite, pki, "cn_only", line % b"cn-only")
    _send_tls(suite, pki, None, line % b"no-certificate-unknown-address", source="127.0.0.2")
    _send_tls(suite, pki, "stranger", line % b"stranger-1", source="127.0.0.2")
    _send_tls(suite, pki, "stranger", line % b"stranger-2", source="127.0.0.2")
    events = {e["message"].removeprefix("sent by "): e for e in _events(suite, 6)}
    assert events["no-certificate"]["organization"]["id"] == "lab"  # by address
    assert "certificate" not in events["no-certificate"].get("soc", {}).get("sender", {})
    assert events["relay"]["organization"]["id"] == "so-tttt"  # by certificate, over the address
    assert events["cn-only"]["soc"]["sender"]["certificate"] == CN_ONLY
    assert events["cn-only"]["soc"]["asset"]["id"] == "relay-01"
    for name in ("no-certificate-unknown-address", "stranger-1", "stranger-2"):
        assert "unknown_sender" in events[name]["tags"] and "organization" not in events[name], name
    assert events["stranger-1"]["soc"]["sender"]["certificate"] == STRANGER

    api = f"http://127.0.0.1:{suite.bound['api']}/api/v1/inventory/unknown-senders"
    analyst, _ = create_key(suite.store, "analyst")
    agency, _ = create_key(suite.store, "agency", agency="lab")
    assert httpx.get(api, headers={"X-API-Key": agency}).status_code == 403
    listed = httpx.get(api, headers={"X-API-Key": analyst})
    assert listed.status_code == 200, listed.text
    table = {(s["address"], s["certificate"]): s for s in listed.json()}
    assert set(table) == {("127.0.0.2", ""), ("127.0.0.2", STRANGER)}
    assert table[("127.0.0.2", STRANGER)]["count"] == 2 and table[("127.0.0.2", STRANGER)]["transport"] == "tls"
    assert table[("127.0.0.2", "")]["count"] == 1
    assert listed.json()[0]["certificate"] == STRANGER  # most recently heard first


def test_none_mode_asks_no_certificate_and_a_silent_client_times_out(start_suite, pki):
    suite = start_suite("none", SOC__SYSLOG__TLS_HANDSHAKE_TIMEOUT_SECONDS="0.5")
    name = "soc_syslog_tls_handshake_failures_total"
    before = _metric(_metrics(suite), name, reason="timeout")
    with socket.create_connection(("127.0.0.1", suite.bound["syslog_tls"]), timeout=10) as silent:
        assert _closed_by_server(silent)  # a connection that never says hello does not hold a slot for long
    assert _metric(_metrics(suite), name, reason="timeout") - before == 1
    # Not asked for, a client certificate is not sent, so it names nobody: the address does.
    _send_tls(suite, pki, "relay", b"<38>Nov 22 10:00:01 edge-gw-7 app[7]: no certificate asked\n")
    [event] = _events(suite, 1)
    assert event["organization"]["id"] == "lab" and "certificate" not in event["soc"]["sender"]


def test_a_missing_certificate_file_stops_the_start_naming_the_file(tmp_path, pki):
    missing = tmp_path / "nowhere" / "server.pem"
    config = tmp_path / "soc.yaml"
    config.write_text(yaml.safe_dump({
        "data_dir": str(tmp_path), "store": {"url": f"sqlite:///{tmp_path / 'soc.db'}"},
        "syslog": {"udp_port": 0, "tcp_port": 0, "tls_port": 0, "tls_cert_file": str(missing),
                   "tls_key_file": pki["server"][1]},
        "api": {"port": 0}}))
    result = subprocess.run([sys.executable, "-m", "suite.cli", "serve", "--config", str(config)], capture_output=True,
                            text=True, timeout=120, cwd=Path(__file__).resolve().parent.parent)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "syslog.tls_cert_file" in result.stderr and str(missing) in result.stderr
    assert "No such file" in result.stderr


# --- real rsyslog forwarding ----------------------------------------------------------------------------------------
def _need(tool: str) -> str:
    path = shutil.which(tool) or (f"/usr/sbin/{tool}" if os.path.exists(f"/usr/sbin/{tool}") else None)
    if path:
        return path
    cannot_run(f"{tool} is not installed (make test installs rsyslog, rsyslog-gnutls and bsdutils)",
               f"{tool} is not installed: in CI the rsyslog forwarding tests must run (make test installs it)")


@pytest.fixture
def rsyslogd(tmp_path):
    """Start a foreground rsyslogd on a configuration of ours (no system inputs), stopped at the test's end."""
    binary = _need("rsyslogd")
    _need("logger")
    started: list[tuple[subprocess.Popen, Path]] = []

    def start(actions: str, globals_: str = "") -> int:
        work = tmp_path / "rsyslog"
        work.mkdir()
        port = free_port()
        config = work / "rsyslog.conf"
        config.write_text(f"""
global(workDirectory="{work}" {globals_})
module(load="imtcp")
input(type="imtcp" address="127.0.0.1" port="{port}" ruleset="forward")
ruleset(name="forward") {{
{actions}
}}
""")
        log = work / "rsyslogd.log"
        process = subprocess.Popen([binary, "-n", "-f", str(config), "-i", str(work / "rsyslogd.pid")],
                                   stdout=log.open("wb"), stderr=subprocess.STDOUT)
        started.append((process, log))

        def listening() -> bool:
            assert process.poll() is None, f"rsyslogd exited: {log.read_text(errors='replace')}"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return True
            except OSError:
                return False

        assert wait_until(listening, 20), f"rsyslogd does not listen: {log.read_text(errors='replace')}"
        return port

    yield start
    for process, _ in started:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def _logger(port: int, text: str, rfc: str = "--rfc5424") -> None:
    # sshd: the program that selects the Linux auth parser, so parsed fields show the line went through whole.
    subprocess.run(["logger", "--tcp", rfc, "-n", "127.0.0.1", "-P", str(port), "-t", "sshd", "-p", "auth.warning",
                    text], check=True, timeout=10)


def test_rsyslog_forwards_over_plain_tcp_identified_by_address(tmp_path, start_suite, pki, rsyslogd):
    suite = start_suite("required")
    port = rsyslogd(f"""  action(type="omfwd" target="127.0.0.1" port="{suite.bound['syslog_tcp']}" protocol="tcp"
         template="RSYSLOG_TraditionalForwardFormat" action.resumeRetryCount="-1" action.resumeInterval="1")""")
    # RFC 3164 in, so rsyslog's traditional forward format has a "TAG:" to parse.
    _logger(port, "Failed password for root from 203.0.113.40 port 6001 ssh2", rfc="--rfc3164")
    [event] = _events(suite, 1)
    assert event["log"]["source"]["address"].startswith("tcp://127.0.0.1:")
    assert event["organization"]["id"] == "lab"  # by address: plain TCP carries no certificate
    assert event["process"]["name"] == "sshd" and event["source"]["ip"] == "203.0.113.40"
    assert event["user"]["name"] == "root" and event["event"]["outcome"] == "failure"
    assert event["event"]["original"].endswith(" sshd: Failed password for root from 203.0.113.40 port 6001 ssh2")


def test_rsyslog_forwards_over_tls_with_a_client_certificate(tmp_path, start_suite, pki, rsyslogd):
    suite = start_suite("required")
    cert, key = pki["rsyslog"]
    port = rsyslogd(
        f"""  action(type="omfwd" target="127.0.0.1" port="{suite.bound['syslog_tls']}" protocol="tcp"
         StreamDriver="gtls" StreamDriverMode="1" StreamDriverAuthMode="x509/name"
         StreamDriverPermittedPeers="localhost" TCP_Framing="octet-counted"
         template="RSYSLOG_SyslogProtocol23Format" action.resumeRetryCount="-1" action.resumeInterval="1")""",
        globals_=f'DefaultNetstreamDriverCAFile="{pki["ca"]}" DefaultNetstreamDriverCertFile="{cert}" '
                 f'DefaultNetstreamDriverKeyFile="{key}"')
    _logger(port, "Failed password for root from 203.0.113.41 port 6002 ssh2")
    _logger(port, "Accepted password for carol from 203.0.113.42 port 6003 ssh2")
    events = sorted(_events(suite, 2), key=lambda e: e["source"]["ip"])
    assert [e["source"]["ip"] for e in events] == ["203.0.113.41", "203.0.113.42"]
    for event in events:
        assert event["log"]["source"]["address"].startswith("tls://127.0.0.1:")
        assert event["soc"]["sender"]["certificate"] == RSYSLOG
        assert event["organization"]["id"] == "so-tc" and event["soc"]["asset"]["id"] == "rsyslog-relay"
        assert event["process"]["name"] == "sshd"
        assert event["event"]["original"].startswith("<36>1 ")  # RFC 5424 as rsyslog formats it
    assert [e["event"]["outcome"] for e in events] == ["failure", "success"]
    assert suite.store.count_dead_letters() == 0
