"""Request body size limit: refuse what would not fit, before it is read into memory."""

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodySizeLimitMiddleware:
    """413 for a body larger than `max_bytes`, declared (Content-Length) or streamed (chunked).

    The limit is enforced as the app reads the body, so routes that never read one pay nothing.
    The HTTPException raised from `receive` passes through FastAPI's body parsing unchanged and
    is rendered as a problem by the app's handlers. (FastAPI's own `max_body_size` answers a
    declared oversize body with a plain-text 413 and logs a crash.)
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
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
