"""FTP: the control connection is read for logins, commands and the data connections it announces (PASV, EPSV,
PORT, EPRT); a data connection that carries a RETR or STOR is kept whole as an extracted payload (a transferred
file, for YARA) and recorded as ``network.ftp``.
"""

from __future__ import annotations

import re

from collectors.packets.http import Body

_FIRST_COMMANDS = re.compile(rb"(USER|AUTH|FEAT|SYST|OPTS|PASS|PWD|TYPE|PASV|EPSV|PORT|EPRT|HOST|CLNT|LANG|NOOP)"
                             rb"( |\r?\n)", re.IGNORECASE)
_PASV = re.compile(r"\((\d+),(\d+),(\d+),(\d+),(\d+),(\d+)\)")
_EPSV = re.compile(r"\(([^\d\s])\1\1(\d+)\1\)")
_PORT = re.compile(r"(\d+),(\d+),(\d+),(\d+),(\d+),(\d+)")
FILE_COMMANDS = {"RETR": "download", "STOR": "upload", "STOU": "upload", "APPE": "upload"}
MAX_LINE = 4096


def looks_like_ftp(client_first: bytes, server_first: bytes, server_port: int) -> bool:
    """A client opening with an FTP command to a server that greeted with 220 (or listens on port 21)."""
    return _FIRST_COMMANDS.match(client_first) is not None and (server_first.startswith(b"220") or server_port == 21)


class Expectation:
    """A data connection announced on a control connection, and what it will carry once the command is known."""

    __slots__ = ("user", "command", "argument", "control_id")

    def __init__(self, user: str | None, control_id: str) -> None:
        self.user = user
        self.command: str | None = None
        self.argument: str | None = None
        self.control_id = control_id


class FtpSession:
    def __init__(self, extractor, flow) -> None:
        self.extractor = extractor
        self.flow = flow
        self.buffers = {True: bytearray(), False: bytearray()}
        self.user: str | None = None
        self.announced: list[Expectation] = []  # data connections announced since the last transfer command
        self.done = False

    def data(self, from_client: bool, data: bytes, ts: int) -> None:
        buf = self.buffers[from_client]
        buf += data
        while True:
            end = buf.find(b"\n")
            if end < 0:
                if len(buf) > MAX_LINE:
                    buf.clear()  # an over-long line: drop it, keep reading lines
                return
            line = bytes(buf[:end]).rstrip(b"\r").decode("utf-8", "backslashreplace")
            del buf[:end + 1]
            (self._command if from_client else self._reply)(line)

    def _command(self, line: str) -> None:
        verb, _, argument = line.partition(" ")
        verb = verb.upper()
        if verb == "USER":
            self.user = argument.strip() or None
        elif verb == "PORT":
            match = _PORT.search(argument)
            if match:
                h1, h2, h3, h4, p1, p2 = (int(g) for g in match.groups())
                self._expect(f"{h1}.{h2}.{h3}.{h4}", p1 * 256 + p2, self.flow.client[0])
        elif verb == "EPRT":
            parts = argument.split(argument[:1]) if argument else []
            if len(parts) >= 4 and parts[3].isdigit():
                self._expect(parts[2], int(parts[3]), self.flow.client[0])
        elif verb in FILE_COMMANDS or verb in ("LIST", "NLST", "MLSD"):
            for expectation in self.announced:
                expectation.command, expectation.argument = verb, argument.strip()
            self.announced = []

    def _reply(self, line: str) -> None:
        if line.startswith("227"):
            match = _PASV.search(line)
            if match:
                h1, h2, h3, h4, p1, p2 = (int(g) for g in match.groups())
                self._expect(f"{h1}.{h2}.{h3}.{h4}", p1 * 256 + p2, self.flow.server[0])
        elif line.startswith("229"):
            match = _EPSV.search(line)
            if match:
                self._expect(self.flow.server[0], int(match.group(2)), None)

    def _expect(self, address: str, port: int, also: str | None) -> None:
        """The data connection will go to address:port (or, behind NAT, the control connection's address)."""
        if not 0 < port < 65536:
            return
        expectation = Expectation(self.user, self.flow.community_id)
        self.announced.append(expectation)
        for host in {address, also} - {None}:
            self.extractor.expect_data_connection((host, port), expectation)

    def gap(self, from_client: bool, size: int) -> None:
        self.buffers[from_client].clear()

    def close(self) -> None:
        self.done = True


class FtpDataSession:
    """One data connection: whatever one side sends is the transferred content."""

    def __init__(self, extractor, flow, expectation: Expectation) -> None:
        self.extractor = extractor
        self.flow = flow
        self.expectation = expectation
        self.bodies = {True: Body(), False: Body()}
        self.complete = True
        self.ts: int | None = None
        self.done = False

    def data(self, from_client: bool, data: bytes, ts: int) -> None:
        if self.ts is None:
            self.ts = ts
        self.bodies[from_client].add(data)

    def gap(self, from_client: bool, size: int) -> None:
        self.complete = False

    def close(self) -> None:
        self.done = True
        expectation = self.expectation
        body = max(self.bodies.values(), key=lambda b: b.length)
        if expectation.command not in FILE_COMMANDS or not body.length:
            return  # a directory listing, or nothing was sent
        direction = FILE_COMMANDS[expectation.command]
        payload = self.extractor.store_payload(
            bytes(body.data), direction=direction, protocol="ftp", complete=self.complete and not body.truncated,
            truncated=body.truncated, community_id=self.flow.community_id, url=expectation.argument)
        doc = self.flow.base_record(self.ts or self.flow.start, "network.ftp", "protocol")
        doc["event"]["action"] = f"ftp-{expectation.command.lower()}"
        doc["file"] = {"name": expectation.argument, "size": payload.size, "hash": {"sha256": payload.sha256}}
        if payload.path:
            doc["file"]["path"] = payload.path
        if expectation.user:
            doc["user"] = {"name": expectation.user}
        doc["soc"] = {"payloads": [payload.as_dict()], "ftp": {"command": expectation.command,
                                                               "control_community_id": expectation.control_id}}
        self.extractor.emit(doc)
