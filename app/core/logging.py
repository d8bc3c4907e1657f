"""structlog, configured once; and the middleware that gives every request an id and a log line."""

import logging
import re
import sys
import time
import uuid
from typing import Any

import structlog
import structlog.tracebacks
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.config import Settings

REQUEST_ID_HEADER = "X-Request-ID"
_HEADER_KEY = REQUEST_ID_HEADER.lower().encode()
# An incoming id is echoed into logs and headers, so it must be short and plain.
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")

log = structlog.get_logger("app.request")


def setup_logging(settings: Settings) -> None:
    """Route structlog and stdlib loggers (uvicorn, sqlalchemy) through one renderer."""
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    # Run by the handler's formatter, for structlog's and stdlib's records alike, at the moment
    # the line is written (so in the request's context).
    final: list[structlog.types.Processor] = [
        structlog.stdlib.ProcessorFormatter.remove_processors_meta
    ]
    if settings.OTEL_EXPORTER_OTLP_ENDPOINT:
        # Imported only when tracing is on: otherwise no tracing module is loaded. Here, not in
        # `shared`: structlog caches each logger's chain on first use, and a logger used before
        # this call (a test's earlier app) would never get it.
        from app.core.tracing import add_trace_ids

        final.append(add_trace_ids)
    renderer: structlog.types.Processor
    # Tracebacks never show local variables: they hold passwords and tokens, and rich's
    # pretty tracebacks with locals ran to 28,000 lines for one 500 (seen under `make bench`).
    if settings.log_json:
        renderer = structlog.processors.JSONRenderer()
        shared.append(
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            )
        )
    else:
        renderer = structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback)

    structlog.configure(
        processors=[
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[*final, renderer],
        )
    )
    # No line carries the caller, thread or process fields: skip computing them for every
    # record (the logging module's documented optimisations). The caller lookup walked the stack
    # on each request's line.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(settings.LOG_LEVEL)
    # uvicorn's own loggers (its error log, its access log when enabled, the workers'
    # supervisor) are configured by uvicorn with handlers of their own: through ours instead.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "sqlalchemy.engine"):
        logger = logging.getLogger(name)
        logger.handlers = []
        logger.propagate = True
    # Rather than SQLAlchemy's `echo`, which adds a second handler of its own.
    if settings.DB_ECHO:
        logging.getLogger("sqlalchemy.engine").setLevel(logging.INFO)
    # Our middleware writes one line per request, with the request id; uvicorn's would repeat it.
    logging.getLogger("uvicorn.access").disabled = True
    # Likewise for a crash: `request.failed` already carries the traceback and the request id.
    error_log = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _DropUvicornAppTraceback) for f in error_log.filters):
        error_log.addFilter(_DropUvicornAppTraceback())


class _DropUvicornAppTraceback(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Exception in ASGI application")


class RequestContextMiddleware:
    """Bind `request_id`, method and path to every log line of a request; log its outcome."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        request_id = _incoming_request_id(scope) or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(
            request_id=request_id, method=scope["method"], path=scope["path"]
        )
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                if not any(name.lower() == _HEADER_KEY for name, _ in headers):
                    headers.append((_HEADER_KEY, request_id.encode()))
                    message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            status = 500
            log.exception("request.failed", **_outcome(scope, status, started))
            raise
        else:
            level = logging.WARNING if status >= 500 else logging.INFO
            # Checked first: a filtered-out line costs nothing, not the whole processor chain.
            if log.isEnabledFor(level):
                log.log(level, "request", **_outcome(scope, status, started))
        finally:
            structlog.contextvars.clear_contextvars()


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == _HEADER_KEY:
            candidate = value.decode("latin-1")
            return candidate if _SAFE_REQUEST_ID.match(candidate) else None
    return None


def path_template(scope: Scope) -> str | None:
    """`/api/v1/items/{item_id}` for `/api/v1/items/3fa8...`: groups log lines by endpoint.

    FastAPI puts the matched route in the scope with its path relative to the router that holds
    it; the prefixes it was included under are what precedes the filled-in route path.
    """
    route = scope.get("route")
    path_format = getattr(route, "path_format", None)
    if not isinstance(path_format, str):
        return None
    try:
        filled = path_format.format(**scope.get("path_params", {}))
    except (KeyError, IndexError, ValueError):
        return path_format
    path: str = scope["path"]
    prefix = path[: len(path) - len(filled)] if path.endswith(filled) else ""
    return prefix + path_format


def _outcome(scope: Scope, status: int, started: float) -> dict[str, Any]:
    return {
        "route": path_template(scope),
        "status": status,
        "duration_ms": round((time.perf_counter() - started) * 1000, 2),
    }
