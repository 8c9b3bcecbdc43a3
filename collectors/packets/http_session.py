"""An HTTP/1.x connection: requests paired with responses (in order, as HTTP/1.1 pipelining requires), each
exchange one ``network.http`` record, each body kept as an extracted payload."""

from __future__ import annotations

from collections import deque

from collectors.packets import http
from collectors.packets.http import Body, Head


class Exchange:
    __slots__ = ("ts", "request", "request_body", "response", "response_body", "request_done", "response_done",
                 "emitted")

    def __init__(self, ts: int, request: Head | None) -> None:
        self.ts = ts
        self.request = request
        self.request_body: Body | None = None
        self.response: Head | None = None
        self.response_body: Body | None = None
        self.request_done = request is None
        self.response_done = False
        self.emitted = False


def _framing(head: Head) -> tuple[str, int] | None:
    if "chunked" in (head.header("transfer_encoding") or "").lower():
        return http.CHUNKED, 0
    length = head.header("content_length")
    if length is not None:
        length = length.strip()
        return (http.LENGTH, int(length)) if length.isdigit() else None
    return None


class HttpSession:
    def __init__(self, extractor, flow) -> None:
        self.extractor = extractor
        self.flow = flow
        self.requests = http.MessageStream(self._request_head, self._request_done)
        self.responses = http.MessageStream(self._response_head, self._response_done)
        self.waiting: deque[Exchange] = deque()  # requests whose response has not been read yet
        self.reading_request: Exchange | None = None
        self.reading_response: Exchange | None = None
        self.interim = False
        self.ts = 0
        self.done = False

    # -- stream events ---------------------------------------------------------------------------------------------
    def data(self, from_client: bool, data: bytes, ts: int) -> None:
        self.ts = ts
        (self.requests if from_client else self.responses).feed(data)
        if self.requests.lost and self.responses.lost:
            self.done = True

    def gap(self, from_client: bool, size: int) -> None:
        (self.requests if from_client else self.responses).gap()

    def close(self) -> None:
        self.requests.close()
        self.responses.close()
        for exchange in list(self.waiting):
            self._emit(exchange)
        self.waiting.clear()
        self.done = True

    # -- requests --------------------------------------------------------------------------------------------------
    def _request_head(self, raw: bytes) -> tuple[str, int]:
        head = self.extractor.dissectors.http_head(raw)
        if head is None or head.first[0].startswith("HTTP/"):
            return "lost", 0
        exchange = Exchange(self.ts, head)
        self.waiting.append(exchange)
        self.reading_request = exchange
        framing = _framing(head)
        if framing is None:
            return ("lost", 0) if head.header("content_length") is not None else (http.NO_BODY, 0)
        return framing

    def _request_done(self, body: Body | None) -> None:
        exchange, self.reading_request = self.reading_request, None
        if exchange is None:
            return
        exchange.request_body = body
        exchange.request_done = True
        if exchange.response_done:
            self._emit(exchange)

    # -- responses -------------------------------------------------------------------------------------------------
    def _response_head(self, raw: bytes) -> tuple[str, int]:
        head = self.extractor.dissectors.http_head(raw)
        if head is None or not head.first[0].startswith("HTTP/"):
            return "lost", 0
        status = head.first[1]
        code = int(status) if status.isdigit() else 0
        if 100 <= code < 200 and code != 101:
            self.interim = True  # 100 Continue and friends: the real response follows
            return http.NO_BODY, 0
        exchange = self.waiting[0] if self.waiting else Exchange(self.ts, None)
        exchange.response = head
        self.reading_response = exchange
        method = exchange.request.first[0] if exchange.request else ""
        if code == 101 or (method == "CONNECT" and 200 <= code < 300):
            self.requests.stop()  # a tunnel or another protocol follows: nothing more to frame
            self._response_done(None)
            return "lost", 0
        if method == "HEAD" or code in (204, 304):
            return http.NO_BODY, 0
        framing = _framing(head)
        if framing is None:
            return ("lost", 0) if head.header("content_length") is not None else (http.UNTIL_CLOSE, 0)
        return framing

    def _response_done(self, body: Body | None) -> None:
        if self.interim:
            self.interim = False
            return
        exchange, self.reading_response = self.reading_response, None
        if exchange is None:
            return
        exchange.response_body = body
        exchange.response_done = True
        if self.waiting and self.waiting[0] is exchange:
            self.waiting.popleft()
        if exchange.request_done:
            self._emit(exchange)

    # -- record ----------------------------------------------------------------------------------------------------
    def _emit(self, exchange: Exchange) -> None:
        if exchange.emitted:
            return
        exchange.emitted = True
        doc = self.flow.base_record(exchange.ts, "network.http", "protocol")
        http_doc: dict = {}
        request, response = exchange.request, exchange.response
        payloads = []
        if request is not None:
            method, target, version = request.first
            http_doc["version"] = version.partition("/")[2]
            http_doc["request"] = {"method": method}
            doc["url"] = _url(target, request.header("host"))
            if request.header("user_agent"):
                doc["user_agent"] = {"original": request.header("user_agent")}
            if request.header("referer"):
                http_doc["request"]["referrer"] = request.header("referer")
            if exchange.request_body is not None:
                http_doc["request"]["body"] = {"bytes": exchange.request_body.length}
            mime = _mime(request)
            if mime:
                http_doc["request"]["mime_type"] = mime
            payloads.append(self._payload("request", request, exchange.request_body, doc))
        if response is not None:
            version, status, _ = response.first
            http_doc.setdefault("version", version.partition("/")[2])
            http_doc["response"] = {"status_code": int(status)} if status.isdigit() else {}
            if exchange.response_body is not None:
                http_doc["response"]["body"] = {"bytes": exchange.response_body.length}
            mime = _mime(response)
            if mime:
                http_doc["response"]["mime_type"] = mime
            payloads.append(self._payload("response", response, exchange.response_body, doc))
        doc["http"] = http_doc
        payloads = [p for p in payloads if p is not None]
        if payloads:
            doc["soc"] = {"payloads": [p.as_dict() for p in payloads]}
            chosen = payloads[-1]  # the response body (a download) if there is one, else the upload
            doc["file"] = {"hash": {"sha256": chosen.sha256}, "size": chosen.size}
            if chosen.path:
                doc["file"]["path"] = chosen.path
            if chosen.mime_type:
                doc["file"]["mime_type"] = chosen.mime_type
        self.extractor.emit(doc)

    def _payload(self, direction: str, head: Head, body: Body | None, doc: dict):
        if body is None or not body.data:
            return None
        encoding = head.header("content_encoding")
        data, error = http.decode_content(bytes(body.data), encoding)
        return self.extractor.store_payload(
            data, direction=direction, protocol="http", mime_type=_mime(head),
            content_encoding=encoding, decode_error=error, complete=body.complete and not body.truncated,
            truncated=body.truncated, community_id=self.flow.community_id, url=doc.get("url", {}).get("original"))


def _mime(head: Head) -> str | None:
    value = head.header("content_type")
    return value.split(";", 1)[0].strip().lower() or None if value else None


def _url(target: str, host_header: str | None) -> dict:
    absolute_host, path, query = http.split_target(target)
    url: dict = {"original": target, "path": path}
    if query is not None:
        url["query"] = query
    host = absolute_host or host_header
    if host:
        domain, port = http.split_host(host.strip())
        if domain:
            url["domain"] = domain
        if port is not None:
            url["port"] = port
        url["full"] = target if absolute_host else f"http://{host.strip()}{target}"
    return url
