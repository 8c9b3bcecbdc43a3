"""Packets to ECS records: pcap/pcapng files (and live capture) → flows, DNS, HTTP, TLS and FTP records, with HTTP
bodies and FTP files kept content-addressed for YARA.

    reader.py        capture files via scapy's raw readers; damage is reported (PcapReadError), not swallowed
    headers.py       the fast decoder: link/IP/TCP/UDP/ICMP headers with struct → packet.Packet
    extractor.py     flows (flows.py, Community ID), TCP reassembly (tcp_stream.py), application detection
    dns.py, dns_wire.py, http.py, http_session.py, tls.py, tls_session.py, ftp.py   one file per protocol
    payloads.py      content-addressed payload store (ExtractedPayload: path + metadata)
    pcap.py          iter_pcap_records(path, payload_dir) and PcapExtraction (records, extracted_payloads, stats)
    naive.py         the reference: scapy's PcapReader with full dissection and scapy's DNS/HTTP/TLS layers
    live.py, cli.py  `soc pcap PATH… | --live IFACE`
"""


def iter_pcap_records(path, payload_dir=None):
    """See collectors.packets.pcap.iter_pcap_records (imported lazily: scapy is slow to import)."""
    from collectors.packets.pcap import iter_pcap_records as records

    return records(path, payload_dir)
