"""What every response says about itself: security headers, caching, and HEAD for every GET."""

from collections.abc import Mapping

from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The API answers JSON that no browser should render, frame or load anything for.
API_CSP = "default-src 'none'; frame-ancestors 'none'"
HSTS = "max-age=31536000; includeSubDomains"

SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)


def security_headers(*, https: bool, csp: str = API_CSP) -> list[tuple[bytes, bytes]]:
    """The headers every response carries (also written by the server protocol's own 431)."""
    headers = [*SECURITY_HEADERS, (b"content-security-policy", csp.encode())]
    if https:
        # Only over https: on plain http a browser ignores it, and a test server would pin itself.
        headers.append((b"strict-transport-security", HSTS.encode()))
    return headers


class ResponseHeadersMiddleware:
    """Security headers and `Cache-Control: no-store` on every response, and HEAD wherever GET is
    served.

    - Security headers: nosniff, no framing (`X-Frame-Options` and CSP `frame-ancestors`),
      `Referrer-Policy: no-referrer`, and HSTS when the request came over https (the scheme
      uvicorn saw, or its `--proxy-headers` believed). A header the route set itself wins.
    - `Cache-Control: no-store` unless the route set its own: answers carry tokens or personal
      data, and nothing here is worth a shared cache's risk. (Conditional requests with an
      ETag still work: the client keeps the ETag, not a cached copy.)
    - HEAD: FastAPI routes answer only the methods they declare, so HEAD on a GET route was a
      405. Here a HEAD whose path has a GET route is run as that GET and its body dropped:
      same status and headers (Content-Length included), no body. The OpenAPI document is
      unchanged, as RFC 9110 makes HEAD implied by GET.
    """

    def __init__(self, app: ASGIApp, *, page_csp: Mapping[str, str] | None = None) -> None:
        self.app = app
        # The pages a browser renders (the interactive docs) and the CSP each needs.
        self.page_csp = dict(page_csp or {})
        # The sets a response can get, built once rather than per request.
        self._extra = {
            (https, csp): (
                *security_headers(https=https, csp=csp),
                (b"cache-control", b"no-store"),
            )
            for https in (False, True)
            for csp in {API_CSP, *self.page_csp.values()}
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        head = scope["method"] == "HEAD"
        outer = scope
        if head and _serves_get(scope):
            # A copy: the server's own scope must still say HEAD, so that it sends no body.
            scope = {**scope, "method": "GET"}
        extra = self._extra[
            scope.get("scheme") == "https", self.page_csp.get(scope["path"], API_CSP)
        ]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers.extend((name, value) for name, value in extra if name not in present)
                message = {**message, "headers": headers}
            elif message["type"] == "http.response.body" and head:
                message = {**message, "body": b""}
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            if scope is not outer and "route" in scope:
                outer["route"] = scope["route"]  # the request log names the route
                outer["path_params"] = scope.get("path_params", {})


def _serves_get(scope: Scope) -> bool:
    app = scope.get("app")
    routes = getattr(getattr(app, "router", None), "routes", ())
    as_get = {**scope, "method": "GET"}
    return any(route.matches(as_get)[0] == Match.FULL for route in routes)
