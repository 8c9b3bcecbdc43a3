"""The collectors' sections of the configuration: the syslog listeners and the pipeline."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import Field, model_validator

from soc.config import Section


class SyslogConfig(Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    udp_port: int = Field(default=5514, ge=0, le=65535)
    tcp_port: int = Field(default=5514, ge=0, le=65535)
    max_line_bytes: int = Field(default=64 * 1024, ge=256)
    # A dead letter keeps at most this much of an oversized line's raw bytes, and says it was cut.
    dead_letter_max_bytes: int = Field(default=2 * 1024 * 1024, ge=1024)
    # Syslog over TLS (RFC 5425) on host:tls_port; it listens only when tls_cert_file and tls_key_file are set.
    tls_port: int = Field(default=6514, ge=0, le=65535)
    tls_cert_file: str | None = None  # the server's certificate chain (PEM)
    tls_key_file: str | None = None
    tls_ca_file: str | None = None  # CA(s) that sign client certificates (PEM); needed unless client certs are "none"
    # none: no client certificate asked; optional: verified when sent (it then names the sender); required: no
    # certificate from a trusted CA, no connection.
    tls_client_certificates: Literal["none", "optional", "required"] = "none"
    tls_handshake_timeout_seconds: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _keep_whole_lines(self) -> "SyslogConfig":
        if self.dead_letter_max_bytes < self.max_line_bytes:
            raise ValueError("dead_letter_max_bytes must be at least max_line_bytes")
        return self

    @model_validator(mode="after")
    def _tls_complete(self) -> "SyslogConfig":
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ValueError("tls_cert_file and tls_key_file go together: set both (TLS listener) or neither")
        if self.tls_cert_file and self.tls_client_certificates != "none" and not self.tls_ca_file:
            raise ValueError(f"tls_client_certificates is {self.tls_client_certificates!r}: set tls_ca_file to the "
                             "CA(s) that sign the senders' certificates")
        return self


class PipelineConfig(Section):
    batch_size: int = Field(default=500, ge=1)
    flush_interval_seconds: float = Field(default=0.2, gt=0)
    # The disk spool between the sources and the pipeline (collectors/spool.py); relative paths are under data_dir.
    spool_dir: str = "spool"
    spool_max_bytes: int = Field(default=1 << 30, ge=64 * 1024)  # beyond this TCP is slowed, HTTP refused, UDP dropped
    spool_segment_bytes: int = Field(default=64 << 20, ge=64 * 1024)
    spool_sync_interval_seconds: float = Field(default=1.0, gt=0)  # fsync of what TCP/UDP wrote; HTTP syncs at once
    shutdown_drain_seconds: float = Field(default=10.0, ge=0)  # on stop, what is not stored by then waits in the spool
    # One JSON document (HTTP ingest, JSON lines, EVTX records): larger or deeper is a dead letter with the reason.
    json_max_bytes: int = Field(default=1_048_576, ge=1024)
    json_max_depth: int = Field(default=32, ge=2, le=200)
    # Processes that parse batches beside the suite's own (collectors/parse_workers.py): "auto" uses one per core (at
    # least one: only a worker can be stopped in the middle of a record). 0 parses in the suite's thread, where the
    # parse_timeout_seconds budget cannot be enforced.
    parse_workers: int | Literal["auto"] = "auto"
    # Time budget of one record in a parse worker: a record still being parsed after it becomes a dead letter
    # (reason parse_timeout) and its worker is killed and replaced; the batch's other records are parsed.
    parse_timeout_seconds: float = Field(default=2.0, gt=0, le=3600)

    def parse_worker_count(self) -> int:
        if self.parse_workers == "auto":
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
            return max(1, min(cores, 8))
        return max(0, min(int(self.parse_workers), 64))
