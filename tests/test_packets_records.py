"""What the pcap extractor finds: checked against values published by Suricata's own test suite for the same
captures (suricata-verify test.yaml files), against the Community ID spec's baseline, and against synthetic
captures whose content the test itself wrote."""

from __future__ import annotations

import gzip
from decimal import Decimal
import hashlib
from pathlib import Path

import pytest

from tests.conftest import CORPUS
from tests.packet_builders import Conversation, udp, write_pcap, write_pcapng

from collectors.packets.community_id import community_id
from collectors.packets.pcap import PcapExtraction, iter_pcap_records

PCAPS = CORPUS / "pcap"


def records(path, payload_dir=None, dataset=None):
    out = list(iter_pcap_records(path, payload_dir))
    return [r for r in out if dataset is None or r["event"]["dataset"] == dataset]


# --- values Suricata's tests publish for these captures -----------------------------------------------------------

def test_ja4_matches_suricata_for_ja4_tls_capture():
    (tls,) = records(PCAPS / "ja4-tls" / "input.pcap", dataset="network.tls")
    assert tls["tls"]["client"]["ja4"] == "t12i1810s1_27d4652c4487_06a4338d0495"  # tests/ja4-tls/test.yaml
    assert "server_name" not in tls["tls"]["client"]  # the "i" in the fingerprint: no SNI


def test_ja3_string_matches_suricata_and_hash_is_its_md5():
    (tls,) = records(PCAPS / "tls-duplicate-hello" / "input.pcap", dataset="network.tls")
    expected = ("771,4866-4867-4865-4868-49196-52393-49325-49162-49195-49324-49161-49200-52392-49172-49199-49171-"
                "157-49309-53-156-49308-47-159-52394-49311-57-158-49310-51,5-10-11-13-22-23-35-51-43-65281-0-45,23,0")
    client = tls["tls"]["client"]
    assert client["ja3_string"] == expected  # tests/tls-duplicate-hello/test.yaml
    assert client["ja3"] == hashlib.md5(expected.encode()).hexdigest()
    assert tls["tls"]["version"] == "1.3" and tls["network"]["protocol"] == "tls"


def test_dns_nxdomain_answer():
    docs = records(PCAPS / "dns-eve-v2-udp-nxdomain-soa" / "dns-udp-nxdomain-soa.pcap", dataset="network.dns")
    answer = next(d for d in docs if d["dns"]["type"] == "answer")
    assert answer["dns"]["response_code"] == "NXDOMAIN"  # tests/dns-eve-v2-udp-nxdomain-soa/test.yaml
    assert answer["dns"]["question"] == {"name": "dne.oisf.net", "type": "A", "class": "IN"}
    query = next(d for d in docs if d["dns"]["type"] == "query")
    assert query["dns"]["id"] == answer["dns"]["id"]
    assert query["source"] == answer["source"] and query["destination"]["port"] == 53


def test_http_files_hash_like_suricata_filestore(tmp_path):
    """suricata-verify's filestore-filecontainer-http names the sha256 of the files in this capture (stored or
    not by its rules); gzip bodies among them hash as decoded, as Suricata stores them."""
    capture = PCAPS / "filestore-filecontainer-http" / "filecontainer-http.pcap"
    extraction = PcapExtraction(capture, tmp_path)
    docs = list(extraction.records())
    found = {p.sha256 for p in extraction.extracted_payloads}
    suricata = {"e092858d5bd66ab33085a966ee4ac0bf0edf6eab8d8b1e66432ee600e904bb4f",
                "031b2bbeda6fd7e877e50298d2b2ded2073ce6e15f29029b4e50dbd9e81f6be6",
                "560904cbe632389147334ad588ced6e69f912b3fcc599de56fee7b7d44442c98",
                "57b43ee07432cf8a8b8a17d9d712138194e4564e4b36963a34c495b576b404fe",
                "667cb0b513b1497bee0c2bb633ffd1a6959448d5f9d58d12bb50d9394b3cf543",
                "76ff7909219dfe177a89431965885e7e992e40a2562755ac929f3c8a917a7fe6",
                "e53c64d266a58ab714bcd350d19438017fa0503bd5a3797e7be4bf0d6913e24e",
                "f7200f61b3285a7deaf0c418c206c94bae135ac3b29977ab7034611407ede45f"}
    assert suricata <= found
    for payload in extraction.extracted_payloads:  # content-addressed files that really hold that content
        assert hashlib.sha256(Path(payload.path).read_bytes()).hexdigest() == payload.sha256
        assert Path(payload.path).name == payload.sha256
    png = next(d for d in docs if d.get("file", {}).get("hash", {}).get("sha256") ==
               "e092858d5bd66ab33085a966ee4ac0bf0edf6eab8d8b1e66432ee600e904bb4f")
    assert png["url"]["path"].endswith(".png") and png["file"]["mime_type"] == "image/png"


def test_tls_hello_split_over_300_byte_segments():
    (tls,) = records(PCAPS / "tls" / "dump_mtu300.pcap", dataset="network.tls")
    assert tls["tls"]["client"]["server_name"] == "www.google.com"
    assert tls["destination"]["domain"] == "www.google.com"
    assert tls["tls"]["cipher"] == "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"


def test_ipv6_loopback_capture_from_a_bsd_host():
    (http,) = records(PCAPS / "http-ipv6" / "input.pcap", dataset="network.http")
    assert http["network"]["type"] == "ipv6" and http["destination"] == {"ip": "::1", "port": 8000}
    assert http["http"]["response"]["status_code"] == 200


# --- Community ID ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("proto,src,dst,sport,dport,expected", [
    # baseline/baseline_deflt.json of github.com/corelight/community-id-spec (ICMP entries give type and code)
    (6, "128.232.110.120", "66.35.250.204", 34855, 80, "1:LQU9qZlK+B5F3KDmev6m5PMibrg="),
    (6, "66.35.250.204", "128.232.110.120", 80, 34855, "1:LQU9qZlK+B5F3KDmev6m5PMibrg="),
    (17, "192.168.1.52", "8.8.8.8", 54585, 53, "1:d/FP5EW3wiY1vCndhwleRRKHowQ="),
    (6, "2001:470:e5bf:dead:4957:2174:e82c:4887", "2607:f8b0:400c:c03::1a", 63943, 25,
     "1:/qFaeAR+gFe1KYjMzVDsMv+wgU4="),
    (132, "192.168.170.8", "192.168.170.56", 7, 7, "1:MP2EtRCAUIZvTw6MxJHLV7N7JDs="),
    (1, "192.168.0.89", "192.168.0.1", 8, 0, "1:X0snYXpgwiv9TZtqg64sgzUn6Dk="),
    (1, "192.168.0.1", "192.168.0.89", 0, 0, "1:X0snYXpgwiv9TZtqg64sgzUn6Dk="),  # the echo reply
    (1, "10.0.0.1", "10.0.0.2", 11, 0, "1:YHxtAirCG//0OzkcVAukqKQN9xM="),
    (58, "3ffe:507:0:1:200:86ff:fe05:80da", "3ffe:501:0:1001::2", 128, 0, "1:+TW+HtLHvV1xnGhV1lv7XoJrqQg="),
    (58, "fe80::200:86ff:fe05:80da", "fe80::260:97ff:fe07:69ea", 135, 0, "1:dGHyGvjMfljg6Bppwm3bg0LO8TY="),
    (58, "3ffe:501:410:0:2c0:dfff:fe47:33e", "3ffe:507:0:1:200:86ff:fe05:80da", 1, 4,
     "1:hLZd0XGWojozrvxqE0dWB1iM6R0="),
    (46, "10.1.12.1", "10.1.12.2", 0, 0, "1:KHlLkgoJW7ifUTyTSgyVfkFHzKw="),
])
def test_community_id_spec_baseline(proto, src, dst, sport, dport, expected):
    assert community_id(src, dst, proto, sport, dport) == expected


# --- synthetic captures ---------------------------------------------------------------------------------------------

def _chunked(body: bytes, sizes=(7, 300)) -> bytes:
    out, pos, i = b"", 0, 0
    while pos < len(body):
        size = sizes[i % len(sizes)]
        piece = body[pos:pos + size]
        out += f"{len(piece):x};ext=1\r\n".encode() + piece + b"\r\n"
        pos, i = pos + size, i + 1
    return out + b"0\r\nX-Trailer: yes\r\n\r\n"


BODY = b"MZ\x90\x00" + bytes(range(256)) * 4 + b"not really a program, but YARA will not mind " * 40
UPLOAD = b'{"user": "nguyen.van.a", "secret": "hunter2"}'


def _http_conversation():
    """A keep-alive connection: a GET whose request arrives out of order with a retransmission, answered with a
    gzip, chunked body cut at awkward places; then a POST with a Content-Length body."""
    c = Conversation(server=("10.20.0.80", 8080))
    request = (b"GET /files/update.exe?build=42&lang=vi HTTP/1.1\r\nHost: updates.example.org:8080\r\n"
               b"User-Agent: TestAgent/1.0 (SOC)\r\nReferer: http://portal.example.org/\r\n\r\n")
    gzipped = gzip.compress(BODY)
    response = (b"HTTP/1.1 200 OK\r\nContent-Type: application/x-msdownload\r\nContent-Encoding: gzip\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n" + _chunked(gzipped))
    post = (b"POST /api/login HTTP/1.1\r\nHost: updates.example.org:8080\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(UPLOAD)).encode() + b"\r\n\r\n" + UPLOAD)
    reply = b"HTTP/1.1 204 No Content\r\n\r\n"
    packets = c.handshake()
    req = c.data(True, request, pieces=3)
    packets += [req[1], req[2], req[0], req[1]]  # out of order, then a retransmission
    packets += c.data(False, response, pieces=9) + c.data(True, post, pieces=2) + c.data(False, reply)
    return packets + c.close(), gzipped


@pytest.mark.parametrize("writer", [write_pcap, write_pcapng])
def test_http_exchange_fields_and_bodies(tmp_path, writer):
    packets, gzipped = _http_conversation()
    capture = tmp_path / "http.cap"
    writer(capture, packets)
    docs = records(capture, tmp_path / "payloads")
    get, post = [d for d in docs if d["event"]["dataset"] == "network.http"]
    assert get["http"]["request"]["method"] == "GET" and get["http"]["version"] == "1.1"
    assert get["url"] == {"original": "/files/update.exe?build=42&lang=vi", "path": "/files/update.exe",
                          "query": "build=42&lang=vi", "domain": "updates.example.org", "port": 8080,
                          "full": "http://updates.example.org:8080/files/update.exe?build=42&lang=vi"}
    assert get["user_agent"]["original"] == "TestAgent/1.0 (SOC)"
    assert get["http"]["request"]["referrer"] == "http://portal.example.org/"
    assert get["http"]["response"]["status_code"] == 200
    assert get["http"]["response"]["body"]["bytes"] == len(gzipped)  # de-chunked, still compressed
    assert get["file"]["hash"]["sha256"] == hashlib.sha256(BODY).hexdigest()  # decoded for YARA
    assert get["file"]["size"] == len(BODY) and Path(get["file"]["path"]).read_bytes() == BODY
    (payload,) = get["soc"]["payloads"]
    assert payload["direction"] == "response" and payload["complete"] and payload["content_encoding"] == "gzip"
    assert post["http"]["request"]["method"] == "POST" and post["http"]["response"]["status_code"] == 204
    assert Path(post["file"]["path"]).read_bytes() == UPLOAD
    assert post["soc"]["payloads"][0]["direction"] == "request"
    (flow,) = [d for d in docs if d["event"]["dataset"] == "network.flow"]
    sent = [p for p in packets if p["TCP"].sport == 40123]
    assert flow["source"]["packets"] == len(sent) and flow["destination"]["packets"] == len(packets) - len(sent)
    assert flow["source"]["bytes"] == sum(len(p["IP"]) for p in sent)
    assert flow["network"]["protocol"] == "http" and flow["network"]["community_id"] == get["network"]["community_id"]


def test_pcap_and_pcapng_give_the_same_records(tmp_path):
    packets, _ = _http_conversation()
    write_pcap(tmp_path / "a.pcap", packets)
    write_pcapng(tmp_path / "a.pcapng", packets)

    def strip(docs):
        for d in docs:
            d.pop("log")
        return docs
    assert strip(records(tmp_path / "a.pcap")) == strip(records(tmp_path / "a.pcapng"))


def test_missing_segment_marks_body_incomplete(tmp_path):
    c = Conversation()
    body = bytes(range(256)) * 20
    packets = c.handshake() + c.data(True, b"GET /big HTTP/1.1\r\nHost: h\r\n\r\n")
    response = c.data(False, b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body, pieces=6)
    del response[3]  # the capture lost this one
    write_pcap(tmp_path / "gap.pcap", packets + response + c.close())
    extraction = PcapExtraction(tmp_path / "gap.pcap")
    docs = list(extraction.records())
    (http,) = [d for d in docs if d["event"]["dataset"] == "network.http"]
    assert http["soc"]["payloads"][0]["complete"] is False
    assert http["http"]["response"]["body"]["bytes"] < len(body)
    assert extraction.stats["tcp_gaps"] == 1


def test_dns_over_tcp_messages_split_and_joined(tmp_path):
    from scapy.layers.dns import DNS, DNSQR, DNSRR

    query = bytes(DNS(id=7, rd=1, qd=[DNSQR(qname="so-tttt.gov.vn", qtype="A")]))
    answer = bytes(DNS(id=7, qr=1, ra=1, qd=[DNSQR(qname="so-tttt.gov.vn", qtype="A")],
                       an=[DNSRR(rrname="so-tttt.gov.vn", type="A", ttl=300, rdata="203.0.113.9")]))
    framed = b"".join(len(m).to_bytes(2, "big") + m for m in (query, query))
    c = Conversation(server=("10.20.0.53", 53))
    packets = c.handshake() + c.data(True, framed, pieces=3)
    packets += c.data(False, len(answer).to_bytes(2, "big") + answer, pieces=2) + c.close()
    write_pcap(tmp_path / "dns.pcap", packets)
    docs = records(tmp_path / "dns.pcap", dataset="network.dns")
    assert [d["dns"]["type"] for d in docs] == ["query", "query", "answer"]
    assert docs[2]["dns"]["answers"] == [{"name": "so-tttt.gov.vn", "type": "A", "class": "IN", "ttl": 300,
                                          "data": "203.0.113.9"}]
    assert docs[2]["dns"]["resolved_ip"] == ["203.0.113.9"] and docs[2]["network"]["transport"] == "tcp"


def test_udp_dns_record_fields_and_direction(tmp_path):
    from scapy.layers.dns import DNS, DNSQR, DNSRR, DNSRRMX

    client, server = ("198.51.100.10", 53000), ("198.51.100.53", 53)
    answer = DNS(id=99, qr=1, rd=1, ra=1, qd=[DNSQR(qname="mail.example.vn", qtype="MX")],
                 an=[DNSRR(rrname="mail.example.vn", type="CNAME", ttl=60, rdata="mx.example.vn"),
                     DNSRRMX(rrname="mx.example.vn", ttl=60, preference=10, exchange="mx1.example.vn")])
    # the capture starts with the answer: the server is still the side on port 53
    write_pcap(tmp_path / "u.pcap", [udp(server, client, bytes(answer), 1700000000.5),
                                     udp(client, server, bytes(DNS(id=100, qd=[DNSQR(qname="x.vn")])), 1700000001)])
    docs = records(tmp_path / "u.pcap")
    dns_docs = [d for d in docs if d["event"]["dataset"] == "network.dns"]
    assert all(d["source"]["ip"] == "198.51.100.10" and d["destination"]["port"] == 53 for d in dns_docs)
    assert [a["data"] for a in dns_docs[0]["dns"]["answers"]] == ["mx.example.vn", "10 mx1.example.vn"]
    assert dns_docs[0]["dns"]["question"]["type"] == "MX" and "resolved_ip" not in dns_docs[0]["dns"]
    (flow,) = [d for d in docs if d["event"]["dataset"] == "network.flow"]
    assert flow["source"]["packets"] == 1 and flow["destination"]["packets"] == 1
    assert flow["event"]["duration"] == 500_000_000 and flow["network"]["protocol"] == "dns"


def test_encapsulations_fragments_and_port_reuse(tmp_path):
    """QinQ VLAN tags, IPv6 extension headers, IP fragments and a reused 5-tuple: the fast decoder and scapy's
    full dissection agree, and the flows are what was sent."""
    from scapy.layers.dns import DNS, DNSQR
    from scapy.layers.inet import IP, UDP, fragment
    from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrHopByHop
    from scapy.layers.l2 import Dot1AD, Dot1Q, Ether

    from collectors.packets.naive import naive_records
    from tests.packet_builders import MACS

    def at(pkt, t):
        pkt.time = t
        return pkt

    query = DNS(id=1, rd=1, qd=[DNSQR(qname="vlan.example.vn")])
    packets = [at(Ether(**MACS) / Dot1AD(vlan=100) / Dot1Q(vlan=20) / IP(src="10.9.0.1", dst="10.9.0.53") /
                  UDP(sport=3333, dport=53) / query, 1700000000),
               at(Ether(**MACS) / IPv6(src="2001:db8::1", dst="2001:db8::53") / IPv6ExtHdrHopByHop() /
                  IPv6ExtHdrDestOpt() / UDP(sport=4444, dport=53) / query, 1700000001)]
    big = IP(src="10.9.0.7", dst="10.9.0.8") / UDP(sport=5555, dport=9999) / (b"x" * 3000)
    packets += [at(Ether(**MACS) / f, 1700000002) for f in fragment(big, fragsize=1000)]
    for i in range(2):  # the same 5-tuple twice, one connection after the other
        c = Conversation(start=Decimal(1700000010 + i * 5))
        packets += c.handshake() + c.data(True, b"GET /%d HTTP/1.1\r\nHost: h\r\n\r\n" % i) + c.close()
    write_pcap(tmp_path / "mix.pcap", packets)

    fast = list(iter_pcap_records(tmp_path / "mix.pcap"))
    assert sorted(map(str, fast)) == sorted(map(str, naive_records(tmp_path / "mix.pcap")))
    dns_docs = [d for d in fast if d["event"]["dataset"] == "network.dns"]
    assert [d["source"]["ip"] for d in dns_docs] == ["10.9.0.1", "2001:db8::1"]
    assert all(d["dns"]["question"]["name"] == "vlan.example.vn" for d in dns_docs)
    flows = [d for d in fast if d["event"]["dataset"] == "network.flow"]
    (fragmented,) = [f for f in flows if f["destination"].get("port") == 9999]
    assert fragmented["source"]["packets"] == 1  # only the first fragment carries the ports
    http_flows = [f for f in flows if f["network"].get("protocol") == "http"]
    assert len(http_flows) == 2 and {f["source"]["packets"] for f in http_flows} == {5}
    assert [d["url"]["path"] for d in fast if d["event"]["dataset"] == "network.http"] == ["/0", "/1"]


@pytest.mark.parametrize("capture,action,name,user", [
    ("filestore-ftp-passive-mode/ftp-passive-mode.pcap", "ftp-retr", "index.html", "anonymous"),  # PASV
    ("filestore-ftp-active-mode/ftp-active-mode.pcap", "ftp-retr", "index.html", "anonymous"),  # PORT
    ("ftp/input.pcap", "ftp-stor", "index.html", "alice"),
])
def test_ftp_transfers_are_extracted(tmp_path, capture, action, name, user):
    extraction = PcapExtraction(PCAPS / capture, tmp_path)
    docs = list(extraction.records())
    (transfer,) = [d for d in docs if d["event"]["dataset"] == "network.ftp"]
    assert transfer["event"]["action"] == action and transfer["file"]["name"] == name
    assert transfer["user"]["name"] == user
    content = Path(transfer["file"]["path"]).read_bytes()
    assert content == b"uid=0(root) gid=0(root) groups=0(root)\n"  # what the data connection carried
    assert transfer["file"]["size"] == len(content)
    (payload,) = extraction.extracted_payloads
    assert payload.protocol == "ftp" and payload.direction == ("download" if action == "ftp-retr" else "upload")
    control = next(d for d in docs if d["event"]["dataset"] == "network.flow" and d["network"].get("protocol") == "ftp")
    assert transfer["soc"]["ftp"]["control_community_id"] == control["network"]["community_id"]
    assert control["destination"]["port"] == 21 and transfer["network"]["protocol"] == "ftp-data"


@pytest.mark.parametrize("options", [{"nano": True}, {"endianness": ">"}, {"gz": True}, {"linktype": 1}])
def test_pcap_variants_give_the_same_records(tmp_path, options):
    """Nanosecond and big-endian pcaps, and gzip-compressed ones, read like the plain little-endian file."""
    from scapy.utils import PcapWriter

    packets, _ = _http_conversation()
    write_pcap(tmp_path / "plain.pcap", packets)
    with PcapWriter(str(tmp_path / "variant.pcap"), sync=True, **options) as out:
        for pkt in packets:
            out.write(pkt)

    def strip(path):
        docs = records(path)
        for d in docs:
            d.pop("log")
        return docs
    variant = strip(tmp_path / "variant.pcap")
    assert variant == strip(tmp_path / "plain.pcap") and len(variant) == 3
