"""uvicorn's httptools protocol with a bound on the request head: `uvicorn --http
app.core.protocol:HttpToolsProtocol` (the Dockerfile, `make dev` and the test servers use it).

httptools (what uvicorn[standard] runs) has no limit of its own: a 32 MiB header, or 100,000
headers, were read into memory and answered 200. Here the bytes of a request head are counted as
they arrive and the headers as they are parsed; past `MAX_REQUEST_HEADER_BYTES` or
`MAX_REQUEST_HEADERS` the answer is a 431 problem and the connection is closed. At most the limit
plus one read of the socket (256 KiB) is ever buffered, however large the head a client sends.
"""

import json
import uuid
from typing import Any

import structlog
from uvicorn.config import Config
from uvicorn.protocols.http import httptools_impl
from uvicorn.server import ServerState

from app.core.config import get_settings
from app.core.headers import security_headers

log = structlog.get_logger(__name__)


# How long a connection accepted just before shutdown may take to send its request.
SHUTDOWN_GRACE_SECONDS = 1.0


class _HeadTooLarge(Exception):
    """Raised from a parser callback to stop parsing; answered with a 431."""


class HttpToolsProtocol(httptools_impl.HttpToolsProtocol):
    def __init__(
        self, config: Config, server_state: ServerState, app_state: dict[str, Any], **kwargs: Any
    ) -> None:
        super().__init__(config, server_state, app_state, **kwargs)
        settings = get_settings()
        self.max_head_bytes = settings.MAX_REQUEST_HEADER_BYTES
        self.max_headers = settings.MAX_REQUEST_HEADERS
        self._in_head = True
        self._head_bytes = 0
        self._header_count = 0
        self._refusal: str | None = None
        self._head_started = False
        self._shutting_down = False

    def data_received(self, data: bytes) -> None:
        if self._refusal is not None:
            return
        whole_read_in_head = self._in_head
        super().data_received(data)
        # A read that starts and ends inside a head is all head: count it before the parser
        # gets the next one. (A read where a head starts or ends is checked exactly below.)
        if whole_read_in_head and self._in_head and self._refusal is None:
            self._head_bytes += len(data)
            if self._head_bytes > self.max_head_bytes:
                self._refuse(self._too_many_bytes())

    def on_message_begin(self) -> None:
        self._head_started = True
        self._in_head = True
        self._head_bytes = 0
        self._header_count = 0
        super().on_message_begin()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > self.max_headers:
            self._refusal = (
                f"The request has more than the limit of {self.max_headers} header fields"
            )
            raise _HeadTooLarge
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > self.max_head_bytes:
            self._refusal = self._too_many_bytes()
            raise _HeadTooLarge
        self._in_head = False
        self._head_started = False
        super().on_headers_complete()
        if self._shutting_down and self.cycle is not None:
            self.cycle.keep_alive = False

    def on_message_complete(self) -> None:
        self._in_head = True
        self._head_bytes = 0
        super().on_message_complete()

    def shutdown(self) -> None:
        """The server stops: finish what is in flight, then close.

        uvicorn closes at once a connection with no request in progress; but on a connection
        that was just accepted, or whose request head is arriving, the request is already on its
        way, and closing would reset it unanswered. Those get `SHUTDOWN_GRACE_SECONDS` to arrive,
        are answered with `Connection: close`, and idle keep-alive connections close at once.
        """
        self._shutting_down = True
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False
        elif self.cycle is None or self._head_started:
            self.loop.call_later(SHUTDOWN_GRACE_SECONDS, self._close_if_idle)
        else:
            self.transport.close()

    def _close_if_idle(self) -> None:
        idle = self.cycle is None or self.cycle.response_complete
        if idle and not self._head_started and not self.transport.is_closing():
            self.transport.close()

    def send_400_response(self, msg: str) -> None:
        # The parser reports a callback's exception as a parse error: answer ours as a 431.
        if self._refusal is not None:
            self._send_431()
        else:
            super().send_400_response(msg)

    def _too_many_bytes(self) -> str:
        return f"The request's headers are larger than the limit of {self.max_head_bytes} bytes"

    def _refuse(self, detail: str) -> None:
        self._refusal = detail
        self._send_431()

    def _send_431(self) -> None:
        log.warning("request.head_too_large", detail=self._refusal, client=self.client)
        if self.cycle is not None and not self.cycle.response_complete:
            # A pipelined request behind one still being answered: finish that answer, then
            # close, rather than write into the middle of it.
            self.cycle.keep_alive = False
            self.flow.pause_reading()
            return
        request_id = uuid.uuid4().hex
        body = json.dumps(
            {
                "type": "about:blank",
                "title": "Request Header Fields Too Large",
                "status": 431,
                "detail": self._refusal,
                "request_id": request_id,
            }
        ).encode()
        headers = [
            *self.server_state.default_headers,
            (b"content-type", b"application/problem+json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
            (b"x-request-id", request_id.encode()),
            (b"cache-control", b"no-store"),
            *security_headers(https=self.scheme == "https"),
        ]
        head = [httptools_impl.STATUS_LINE[431]]
        head += [name + b": " + value + b"\r\n" for name, value in headers]
        self.transport.write(b"".join(head) + b"\r\n" + body)
        self.transport.close()
