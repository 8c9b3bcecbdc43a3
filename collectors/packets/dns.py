"""DNS messages (over UDP, and over TCP once reassembled) to ECS ``dns.*``, dissected with scapy's DNS layer.

Only the few DNS payloads reach scapy (ports 53 and 5353, found by the fast header decoder); the message is turned
into a plain dict first (``message_from_scapy``) so the reference decoder, which gets the same layer from a full
dissection, yields exactly the same record.
"""

from __future__ import annotations

import struct

from scapy.layers.dns import DNS, DNSQR, DNSRR, DNSRRMX, DNSRRSOA, DNSRRSRV, dns_get_str, dnsclasses, dnstypes
from scapy.packet import Packet

from collectors.packets import dns_wire

DNS_PORTS = (53, 5353)
OPCODES = {0: "QUERY", 1: "IQUERY", 2: "STATUS", 4: "NOTIFY", 5: "UPDATE", 6: "DSO"}
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED", 6: "YXDOMAIN",
          7: "YXRRSET", 8: "NXRRSET", 9: "NOTAUTH", 10: "NOTZONE"}
_NAME_TYPES = (2, 5, 12, 39)  # NS, CNAME, PTR, DNAME: the data is a domain name
_FLAGS = ("aa", "tc", "rd", "ra", "ad", "cd")


def name(value) -> str:
    """A DNS name as text: no trailing dot (except the root), bytes that are not UTF-8 escaped."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "backslashreplace")
    value = str(value)
    return value[:-1] if value.endswith(".") and value != "." else value


def type_name(number: int) -> str:
    return dnstypes.get(number, f"TYPE{number}")


def _raw_rdata(rr) -> bytes:
    """The record's data as it was on the wire (scapy drops rdlen after dissecting)."""
    raw = rr.original or b""
    _, rest = dns_get_str(raw, _ignore_compression=True)
    length = int.from_bytes(rest[8:10], "big") if len(rest) >= 10 else 0
    return bytes(rest[10:10 + length])


def _rdata(rr) -> str:
    fields = rr.fields
    if isinstance(rr, DNSRRSOA):
        return (f"{name(fields['mname'])} {name(fields['rname'])} {fields['serial']} {fields['refresh']} "
                f"{fields['retry']} {fields['expire']} {fields['minimum']}")
    if isinstance(rr, DNSRRMX):
        return f"{fields['preference']} {name(fields['exchange'])}"
    if isinstance(rr, DNSRRSRV):
        return f"{fields['priority']} {fields['weight']} {fields['port']} {name(fields['target'])}"
    if type(rr) is DNSRR:
        data = fields.get("rdata")
        if fields["type"] in _NAME_TYPES and isinstance(data, bytes):
            return name(data)
        if isinstance(data, list):  # TXT: a list of character strings
            return " ".join(part.decode("utf-8", "backslashreplace") if isinstance(part, bytes) else str(part)
                            for part in data)
        if isinstance(data, bytes):
            return data.hex()
        return str(data)
    return _raw_rdata(rr).hex()  # other record classes (DNSSEC, SVCB...): the data in hex


def message_from_scapy(layer) -> dict | None:
    """A scapy DNS layer as a plain dict; None when it holds no usable DNS message (junk on port 53).

    Values are read from ``fields`` (what scapy dissected) rather than as attributes: attribute access on the
    record lists builds a new class each time, which costs more than the dissection itself."""
    try:
        fields = layer.fields
        questions = [(name(q.fields["qname"]), int(q.fields["qtype"]), int(q.fields["qclass"]))
                     for q in (fields.get("qd") or []) if isinstance(q, DNSQR)]
        answers = [(name(rr.fields["rrname"]), int(rr.fields["type"]), int(rr.fields.get("rclass", 0)),
                    int(rr.fields.get("ttl", 0)), _rdata(rr))
                   for rr in (fields.get("an") or []) if isinstance(rr, Packet) and "rrname" in rr.fields]
        return {"id": int(fields["id"]), "qr": int(fields["qr"]), "opcode": int(fields["opcode"]),
                "rcode": int(fields["rcode"]), "flags": [flag.upper() for flag in _FLAGS if fields[flag]],
                "questions": questions, "answers": answers}
    except (AttributeError, TypeError, ValueError, KeyError):
        return None


def parse_message(data: bytes) -> dict | None:
    """One DNS message (no TCP length prefix): the struct reader for ordinary messages, scapy for the rest."""
    if len(data) < 12:
        return None
    try:
        return dns_wire.parse(data)
    except (dns_wire.Unusual, IndexError, struct.error):
        pass
    return parse_with_scapy(data)


def parse_with_scapy(data: bytes) -> dict | None:
    """Dissect one DNS message with scapy's DNS layer."""
    if len(data) < 12:
        return None
    try:
        # Only the question and answer sections are recorded: with the authority and additional counts zeroed,
        # scapy stops after the answers instead of building objects for records nobody reads.
        return message_from_scapy(DNS(data[:8] + b"\0\0\0\0" + data[12:]))
    except Exception:  # scapy raises many kinds on hostile input; a bad message is just not a DNS record
        return None


def fill_record(doc: dict, message: dict) -> dict:
    """ECS dns.* for one message (a query or an answer)."""
    dns: dict = {"id": message["id"], "type": "answer" if message["qr"] else "query",
                 "op_code": OPCODES.get(message["opcode"], str(message["opcode"])),
                 "header_flags": message["flags"]}
    if message["qr"]:
        dns["response_code"] = RCODES.get(message["rcode"], str(message["rcode"]))
    if message["questions"]:
        qname, qtype, qclass = message["questions"][0]
        dns["question"] = {"name": qname, "type": type_name(qtype), "class": dnsclasses.get(qclass, str(qclass))}
    if message["answers"]:
        dns["answers"] = [{"name": rname, "type": type_name(rtype), "class": dnsclasses.get(rclass, str(rclass)),
                           "ttl": ttl, "data": data} for rname, rtype, rclass, ttl, data in message["answers"]]
        resolved = [data for _, rtype, _, _, data in message["answers"] if rtype in (1, 28)]
        if resolved:
            dns["resolved_ip"] = resolved
    doc["dns"] = dns
    return doc


class TcpDnsSession:
    """DNS over TCP: each message has a two-byte length in front of it (RFC 1035 4.2.2)."""

    def __init__(self, extractor, flow) -> None:
        self.extractor = extractor
        self.flow = flow
        self.buffers = {True: bytearray(), False: bytearray()}
        self.done = False

    def data(self, from_client: bool, data: bytes, ts: int) -> None:
        buf = self.buffers[from_client]
        buf += data
        while len(buf) >= 2:
            size = int.from_bytes(buf[:2], "big")
            if len(buf) < 2 + size:
                break
            message = self.extractor.dissectors.dns_message(bytes(buf[2:2 + size]))
            del buf[:2 + size]
            if message is not None:
                doc = self.flow.base_record(ts, "network.dns", "protocol")
                self.extractor.emit(fill_record(doc, message))

    def gap(self, from_client: bool, size: int) -> None:
        self.buffers[from_client].clear()  # the next length prefix cannot be found after a hole

    def close(self) -> None:
        pass
