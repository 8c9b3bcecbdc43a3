"""TLS over TCP: the ClientHello and ServerHello out of a reassembled stream, JA3/JA3S/JA4, and ECS ``tls.*``.

Only the first handshake records are read: after the ServerHello everything is encrypted or uninteresting here,
so the flow stops being reassembled. Hello messages may span several records and several TCP segments;
``HandshakeReader`` joins them.
"""

from __future__ import annotations

import hashlib
import struct

_H = struct.Struct("!H").unpack_from
MAX_HANDSHAKE_BYTES = 64 * 1024
HANDSHAKE, CLIENT_HELLO, SERVER_HELLO = 22, 1, 2
EXT_SNI, EXT_GROUPS, EXT_POINT_FORMATS, EXT_SIG_ALGS, EXT_ALPN, EXT_VERSIONS = 0, 10, 11, 13, 16, 43


def is_grease(value: int) -> bool:
    return (value & 0x0F0F) == 0x0A0A and (value >> 8) == (value & 0xFF)


def looks_like_tls(data: bytes) -> bool:
    """A TLS handshake record (SSL 3.0 to TLS 1.3 record versions) at the start of a client stream."""
    return len(data) >= 3 and data[0] == HANDSHAKE and data[1] == 3 and data[2] <= 4


class HandshakeReader:
    """Joins handshake records of one direction into whole handshake messages (type, bytes with header)."""

    def __init__(self) -> None:
        self.records = bytearray()
        self.messages = bytearray()
        self.done = False

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        if self.done:
            return []
        self.records += data
        found = []
        while len(self.records) >= 5:
            kind, major, length = self.records[0], self.records[1], _H(self.records, 3)[0]
            if kind not in (20, 21, 22, 23) or major != 3 or length > 18432:
                self.done = True  # not (or no longer) TLS records
                break
            if len(self.records) < 5 + length:
                break
            fragment = bytes(self.records[5:5 + length])
            del self.records[:5 + length]
            if kind != HANDSHAKE:
                self.done = True  # change cipher spec, alert or application data: the clear handshake is over
                break
            self.messages += fragment
            while len(self.messages) >= 4:
                size = int.from_bytes(self.messages[1:4], "big")
                if len(self.messages) < 4 + size:
                    break
                found.append((self.messages[0], bytes(self.messages[:4 + size])))
                del self.messages[:4 + size]
        if len(self.records) > MAX_HANDSHAKE_BYTES or len(self.messages) > MAX_HANDSHAKE_BYTES:
            self.done = True
        return found


def _u16_list(data: bytes, offset: int, length: int) -> list[int]:
    return [_H(data, offset + i)[0] for i in range(0, length - length % 2, 2)]


def _extensions(body: bytes, pos: int) -> list[tuple[int, bytes]] | None:
    """The (type, data) list of a hello's extensions block at pos; None if its lengths do not add up."""
    if pos == len(body):
        return []
    if pos + 2 > len(body):
        return None
    end = pos + 2 + _H(body, pos)[0]
    if end > len(body):
        return None
    pos += 2
    out = []
    while pos + 4 <= end:
        ext_type, ext_len = struct.unpack_from("!HH", body, pos)
        if pos + 4 + ext_len > end:
            return None
        out.append((ext_type, body[pos + 4:pos + 4 + ext_len]))
        pos += 4 + ext_len
    return out


def parse_client_hello(message: bytes) -> dict | None:
    """A ClientHello handshake message (with its 4-byte header) to the fields the fingerprints need."""
    try:
        if len(message) < 4 + 38 or message[0] != CLIENT_HELLO:
            return None
        body = message[4:4 + int.from_bytes(message[1:4], "big")]
        version = _H(body, 0)[0]
        pos = 34 + 1 + body[34]
        cipher_len = _H(body, pos)[0]
        ciphers = _u16_list(body, pos + 2, cipher_len)
        pos += 2 + cipher_len
        if pos >= len(body):
            return None
        pos += 1 + body[pos]
        if pos > len(body):
            return None
        extensions = _extensions(body, pos)
        if extensions is None:
            return None
    except (IndexError, struct.error):
        return None
    hello = {"version": version, "ciphers": ciphers, "extensions": [t for t, _ in extensions], "server_name": None,
             "alpn": [], "groups": [], "point_formats": [], "sig_algs": [], "supported_versions": []}
    for ext_type, data in extensions:
        if ext_type == EXT_SNI:
            hello["server_name"] = _server_name(data)
        elif ext_type == EXT_ALPN and len(data) >= 2:
            hello["alpn"] = _alpn(data)
        elif ext_type == EXT_GROUPS and len(data) >= 2:
            hello["groups"] = _u16_list(data, 2, min(_H(data, 0)[0], len(data) - 2))
        elif ext_type == EXT_POINT_FORMATS and data:
            hello["point_formats"] = list(data[1:1 + data[0]])
        elif ext_type == EXT_SIG_ALGS and len(data) >= 2:
            hello["sig_algs"] = _u16_list(data, 2, min(_H(data, 0)[0], len(data) - 2))
        elif ext_type == EXT_VERSIONS and data:
            hello["supported_versions"] = _u16_list(data, 1, min(data[0], len(data) - 1))
    return hello


def _server_name(data: bytes) -> str | None:
    pos, end = 2, min(len(data), 2 + (_H(data, 0)[0] if len(data) >= 2 else 0))
    while pos + 3 <= end:
        kind, length = data[pos], _H(data, pos + 1)[0]
        if kind == 0:
            return data[pos + 3:pos + 3 + length].decode("utf-8", "backslashreplace")
        pos += 3 + length
    return None


def _alpn(data: bytes) -> list[bytes]:
    out, pos, end = [], 2, min(len(data), 2 + _H(data, 0)[0])
    while pos < end:
        length = data[pos]
        out.append(bytes(data[pos + 1:pos + 1 + length]))
        pos += 1 + length
    return out


def parse_server_hello(message: bytes) -> dict | None:
    try:
        if len(message) < 4 + 38 or message[0] != SERVER_HELLO:
            return None
        body = message[4:4 + int.from_bytes(message[1:4], "big")]
        version = _H(body, 0)[0]
        if version >> 8 == 0x7F and version & 0xFF < 22:  # TLS 1.3 drafts before 22: no session id, no compression
            cipher, extensions = _H(body, 34)[0], _extensions(body, 36)
        else:
            pos = 34 + 1 + body[34]
            cipher = _H(body, pos)[0]
            extensions = _extensions(body, pos + 3)
        if extensions is None:
            return None
    except (IndexError, struct.error):
        return None
    selected = next((_H(data, 0)[0] for t, data in extensions if t == EXT_VERSIONS and len(data) >= 2), None)
    return {"version": version, "cipher": cipher, "extensions": [t for t, _ in extensions],
            "selected_version": selected}


# --- fingerprints -------------------------------------------------------------------------------------------------

def ja3_string(hello: dict) -> str:
    def dashed(values):
        return "-".join(str(v) for v in values if not is_grease(v))
    return (f"{hello['version']},{dashed(hello['ciphers'])},{dashed(hello['extensions'])},"
            f"{dashed(hello['groups'])},{'-'.join(str(v) for v in hello['point_formats'])}")


def ja3s_string(hello: dict) -> str:
    return f"{hello['version']},{hello['cipher']},{'-'.join(str(v) for v in hello['extensions'] if not is_grease(v))}"


_JA4_VERSIONS = {0x0304: "13", 0x0303: "12", 0x0302: "11", 0x0301: "10", 0x0300: "s3", 0x0002: "s2",
                 0xFEFF: "d1", 0xFEFD: "d2", 0xFEFC: "d3"}


def _alnum(byte: int) -> bool:
    return 0x30 <= byte <= 0x39 or 0x41 <= byte <= 0x5A or 0x61 <= byte <= 0x7A


def _ja4_alpn(alpn: list[bytes]) -> str:
    if not alpn or not alpn[0]:
        return "00"
    first = alpn[0]
    if _alnum(first[0]) and _alnum(first[-1]):
        return chr(first[0]) + chr(first[-1])
    text = first.hex()
    return text[0] + text[-1]


def _hash12(text: str) -> str:
    return hashlib.sha256(text.encode("ascii")).hexdigest()[:12] if text else "000000000000"


def ja4(hello: dict, transport: str = "t") -> str:
    """JA4 (FoxIO, https://github.com/FoxIO-LLC/ja4/blob/main/technical_details/JA4.md) of a ClientHello."""
    versions = [v for v in hello["supported_versions"] if not is_grease(v)]
    version = _JA4_VERSIONS.get(max(versions) if versions else hello["version"], "00")
    ciphers = [v for v in hello["ciphers"] if not is_grease(v)]
    extensions = [v for v in hello["extensions"] if not is_grease(v)]
    sni = "d" if EXT_SNI in extensions else "i"
    part_a = f"{transport}{version}{sni}{min(len(ciphers), 99):02d}{min(len(extensions), 99):02d}" \
             f"{_ja4_alpn(hello['alpn'])}"
    part_b = _hash12(",".join(f"{v:04x}" for v in sorted(ciphers)))
    listed = ",".join(f"{v:04x}" for v in sorted(v for v in extensions if v not in (EXT_SNI, EXT_ALPN)))
    sig_algs = ",".join(f"{v:04x}" for v in hello["sig_algs"] if not is_grease(v))
    part_c = _hash12(f"{listed}_{sig_algs}" if listed and sig_algs else listed)
    return f"{part_a}_{part_b}_{part_c}"


# --- ECS ----------------------------------------------------------------------------------------------------------

def version_fields(version: int) -> tuple[str, str] | None:
    """(tls.version_protocol, tls.version) of a protocol version number."""
    if version == 0x0300:
        return "ssl", "3.0"
    if 0x0301 <= version <= 0x0304:
        return "tls", f"1.{version - 0x0301}"
    if version >> 8 == 0x7F:  # TLS 1.3 drafts
        return "tls", "1.3"
    return None


def cipher_name(number: int) -> str:
    from scapy.layers.tls.crypto.suites import _tls_cipher_suites

    return _tls_cipher_suites.get(number, f"0x{number:04x}")


def fill_record(doc: dict, client: dict, server: dict | None) -> dict:
    ja3 = ja3_string(client)
    tls: dict = {"client": {"ja3": hashlib.md5(ja3.encode("ascii"), usedforsecurity=False).hexdigest(), "ja3_string": ja3,
                            "ja4": ja4(client),
                            "supported_ciphers": [cipher_name(c) for c in client["ciphers"] if not is_grease(c)]}}
    if client["server_name"]:
        tls["client"]["server_name"] = client["server_name"]
    if server is not None:
        fields = version_fields(server["selected_version"] or server["version"])
        if fields:
            tls["version_protocol"], tls["version"] = fields
        tls["cipher"] = cipher_name(server["cipher"])
        ja3s = ja3s_string(server)
        tls["server"] = {"ja3s": hashlib.md5(ja3s.encode("ascii"), usedforsecurity=False).hexdigest()}
    doc["tls"] = tls
    if client["server_name"]:
        doc.setdefault("destination", {})["domain"] = client["server_name"]
    return doc
