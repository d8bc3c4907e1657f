"""The answer to a request the server gives up on when it stops."""

import asyncio
import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

RETRY_AFTER_SECONDS = 1


class AnswerCancelledRequests:
    """503 with `Retry-After` for a request cancelled before its answer began.

    On SIGTERM uvicorn lets requests in flight finish for `--timeout-graceful-shutdown` seconds,
    then cancels what is still running; it would answer those with a bare 500, as for a crash.
    The request did not fail, the server went away: retry it (another instance will answer).
    The cancellation still propagates: the request's work stops as uvicorn meant it to.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except asyncio.CancelledError:
            if not started:
                await _send_unavailable(scope, send)
            raise


async def _send_unavailable(scope: Scope, send: Send) -> None:
    request_id = scope.get("state", {}).get("request_id")
    body = json.dumps(
        {
            "type": "urn:problem:shutting-down",
            "title": "Service Unavailable",
            "status": 503,
            "detail": "The server stopped before this request finished; retry it",
            "instance": scope["path"],
            "request_id": request_id,
        }
    ).encode()
    headers = [
        (b"content-type", b"application/problem+json"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", str(RETRY_AFTER_SECONDS).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body})
