"""DNS messages (over UDP, and over TCP once reassembled) to ECS ``dns.*``, dissected with scapy's DNS layer.

Only the few DNS payloads reach scapy (ports 53 and 5353, found by the fast header decoder); the message is turned
into a plain dict first (``message_from_scapy``) so the reference decoder, which gets the same layer from a full
dissection, yields exactly the same record.
"""

from __future__ import annotations

from scapy.layers.dns import DNS, DNSQR, DNSRR, DNSRRMX, DNSRRSOA, DNSRRSRV, dnsclasses, dnstypes

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


def _rdata(rr) -> str:
    if isinstance(rr, DNSRRSOA):
        return f"{name(rr.mname)} {name(rr.rname)} {rr.serial} {rr.refresh} {rr.retry} {rr.expire} {rr.minimum}"
    if isinstance(rr, DNSRRMX):
        return f"{rr.preference} {name(rr.exchange)}"
    if isinstance(rr, DNSRRSRV):
        return f"{rr.priority} {rr.weight} {rr.port} {name(rr.target)}"
    if type(rr) is DNSRR:
        data = rr.rdata
        if rr.type in _NAME_TYPES and isinstance(data, bytes):
            return name(data)
        if isinstance(data, list):  # TXT: a list of character strings
            return " ".join(part.decode("utf-8", "backslashreplace") if isinstance(part, bytes) else str(part)
                            for part in data)
        if isinstance(data, bytes):
            return data.hex()
        return str(data)
    length = getattr(rr, "rdlen", None) or 0  # other record classes (DNSSEC...): the raw data in hex
    return bytes(rr)[-length:].hex() if length else ""


def message_from_scapy(layer) -> dict | None:
    """A scapy DNS layer as a plain dict; None when it holds no usable DNS message (junk on port 53)."""
    try:
        questions = [(name(q.qname), int(q.qtype), int(q.qclass)) for q in (layer.qd or []) if isinstance(q, DNSQR)]
        answers = [(name(rr.rrname), int(rr.type), int(rr.rclass), int(rr.ttl), _rdata(rr))
                   for rr in (layer.an or []) if isinstance(rr, DNSRR) or hasattr(rr, "rrname")]
        return {"id": int(layer.id), "qr": int(layer.qr), "opcode": int(layer.opcode), "rcode": int(layer.rcode),
                "flags": [flag.upper() for flag in _FLAGS if getattr(layer, flag)],
                "questions": questions, "answers": answers}
    except (AttributeError, TypeError, ValueError):
        return None


def parse_message(data: bytes) -> dict | None:
    """Dissect one DNS message (no TCP length prefix) with scapy."""
    if len(data) < 12:
        return None
    try:
        return message_from_scapy(DNS(data))
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
