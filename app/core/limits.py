"""Limits on what a request may be: the body size, and the characters of its path."""

import re

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.problems import problem

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class RequestLimitsMiddleware:
    """404 for a path with a control character; 413 for a body larger than `max_bytes`,
    declared (Content-Length) or streamed (chunked).

    Paths: Starlette matches routes with `re.match(... + "$")`, and `$` also matches before a
    final newline: `GET /users/%0A` was answered as `GET /users/` (found by `make contract`). No
    path of ours holds a control character, so none can name a resource. (Checked here rather
    than in an app-wide dependency, which FastAPI would solve on every request at many times
    the cost of this search.)

    Bodies: the limit is enforced as the app reads the body, so routes that never read one pay
    nothing. The HTTPException raised from `receive` passes through FastAPI's body parsing
    unchanged and is rendered as a problem by the app's handlers. (FastAPI's own
    `max_body_size` answers a declared oversize body with a plain-text 413 and logs a crash.)
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if _CONTROL.search(scope["path"]):  # decoded; the raw path keeps %0A
            request = Request(scope)
            detail = f"No route matches {request.method} {request.url.path}"
            await problem(request, status=404, detail=detail)(scope, receive, send)
            return

        declared = _content_length(scope)
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            if declared is not None and declared > self.max_bytes:
                raise self._too_large()
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise self._too_large()
            return message

        await self.app(scope, limited_receive, send)

    def _too_large(self) -> HTTPException:
        return HTTPException(
            status_code=413,
            detail=f"The request body is larger than the limit of {self.max_bytes} bytes",
        )


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
