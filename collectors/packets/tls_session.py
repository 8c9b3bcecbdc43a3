"""A TLS connection's clear-text start: the ClientHello and the ServerHello make one ``network.tls`` record."""

from __future__ import annotations

from collectors.packets import tls


class TlsSession:
    def __init__(self, extractor, flow) -> None:
        self.extractor = extractor
        self.flow = flow
        self.client = tls.HandshakeReader()
        self.server = tls.HandshakeReader()
        self.hello: dict | None = None
        self.server_messages: list[bytes] = []
        self.ts = 0
        self.done = False

    def data(self, from_client: bool, data: bytes, ts: int) -> None:
        if self.done:
            return
        if from_client:
            for kind, message in self.client.feed(data):
                self.client.done = True  # only the first client message matters
                if kind == tls.CLIENT_HELLO:
                    self.hello = self.extractor.dissectors.client_hello(message)
                    self.ts = ts
                if self.hello is None:
                    self.done = True
                    return
                break
        else:
            self.server_messages += [m for kind, m in self.server.feed(data) if kind == tls.SERVER_HELLO]
            if self.server_messages:
                self.server.done = True
        if self.hello is not None and self.server_messages:
            self._emit(self.extractor.dissectors.server_hello(self.server_messages[0]))
        elif self.client.done and self.hello is None:
            self.done = True

    def _emit(self, server: dict | None) -> None:
        self.done = True
        doc = self.flow.base_record(self.ts, "network.tls", "protocol")
        self.extractor.emit(tls.fill_record(doc, self.hello, server))

    def gap(self, from_client: bool, size: int) -> None:
        (self.client if from_client else self.server).done = True

    def close(self) -> None:
        if not self.done and self.hello is not None:
            self._emit(None)
