"""What a source hands to the pipeline: the raw bytes of one message and where and when they came from."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone


@dataclass(slots=True)
class RawMessage:
    data: bytes
    transport: str  # udp | tcp | tls | http | file
    peer: str = ""  # sender address (IP) as seen by the socket
    peer_port: int = 0
    received: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    truncated: bool = False  # the source cut an oversized message; the pipeline dead-letters it
    # What the source vouches for, beyond the socket address: set only by authenticating sources.
    agency: str = ""  # the agency of the API key that sent it (HTTP ingest); never taken from the body
    sender_name: str = ""  # the verified client certificate's subject name (syslog over TLS)
    format: str = "syslog"  # how the pipeline reads ``data``: syslog | json (one JSON document) | a parser name
    origin: str = ""  # file ingest: where in which file ("/var/log/x.log:12", "/evtx/a.evtx#record 7"), for dead letters

    @property
    def source(self) -> str:
        return f"{self.transport}://{self.peer}:{self.peer_port}" if self.peer else self.transport


class ParseError(Exception):
    """A message a parser rejects. ``kind`` is a short closed label for metrics; the message is for people."""

    def __init__(self, kind: str, detail: str):
        self.kind = kind
        super().__init__(detail)
