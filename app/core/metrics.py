"""Prometheus metrics: what every request, the connection pool and the database say, at `/metrics`.

Several worker processes (`python -m app.serve --workers N`) each count their own requests;
`app.serve` gives them one `PROMETHEUS_MULTIPROC_DIR`, emptied at every start, where
prometheus-client keeps each process's values in a memory-mapped file, and a scrape, answered by
whichever worker gets it, sums them all. The gauges of a process (requests in flight, pool
connections) are summed over the live processes only (`livesum`); `app.serve` drops a dead
worker's. Without that directory (one process, tests), values live in memory.

Figures read from the database (emails pending) are not counted by the workers: the worker that
answers a scrape reads them, at most once per `METRICS_DB_MAX_AGE_SECONDS`, so a scrape (or many)
never costs more than one cheap query per period. Every instance reports the same figure: take
the `max`, not the `sum`, across instances.
"""

import asyncio
import hmac
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any

import anyio
import structlog
from fastapi import FastAPI, Request, Response
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.errors import Unauthorized
from app.core.logging import path_template
from app.core.pool import FairAsyncQueuePool

log = structlog.get_logger(__name__)

METRICS_PATH = "/metrics"
MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
# A request no route matched (a 404 for an unknown path, a CORS preflight): one label value for
# them all, never the raw path, which anyone can vary without end.
UNMATCHED = "<unmatched>"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_OTHER_METHOD = "OTHER"
# Most answers here take a few milliseconds: finer steps at the low end than the defaults.
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# No `*_created` series (one per counter and histogram child, holding its creation time): they
# double the series of the default registry for no query we make; the multiprocess mode has none.
disable_created_metrics()  # type: ignore[no-untyped-call]

REQUESTS = Counter(
    "http_requests_total",
    "HTTP requests answered, by method, route template and status.",
    ["method", "route", "status"],
)
LATENCY = Histogram(
    "http_request_duration_seconds",
    "Time from the request's arrival in the app to the end of its answer, in seconds.",
    ["method", "route", "status"],
    buckets=_LATENCY_BUCKETS,
)
IN_FLIGHT = Gauge(
    "http_requests_in_flight",
    "HTTP requests being answered now.",
    multiprocess_mode="livesum",
)
DB_POOL_IN_USE = Gauge(
    "db_pool_connections_in_use",
    "Database connections checked out of the pool (held by a request or the email sender).",
    multiprocess_mode="livesum",
)
DB_POOL_WAITING = Gauge(
    "db_pool_checkouts_waiting",
    "Requests waiting for a pooled database connection, all being in use.",
    multiprocess_mode="livesum",
)


class MetricsUnauthorized(Unauthorized):
    code = "metrics-unauthorized"
    detail = "Send `Authorization: Bearer <METRICS_BEARER_TOKEN>` to read the metrics"
    headers = {"WWW-Authenticate": 'Bearer realm="metrics"'}  # noqa: RUF012


# --- requests -----------------------------------------------------------------------------------

_Children = tuple[Any, Any]  # the counter's and the histogram's child for one label set


class RequestMetrics:
    """The label children of every (method, route, status) seen, found by one dict lookup.

    Keyed by the id of the matched route object (routes compare by value, so are not hashable;
    they live as long as the app), not by its template: no string is built per request, the
    template is worked out once per route. The key space is bounded: known methods, the app's
    routes, status codes.
    """

    def __init__(self) -> None:
        self._children: dict[tuple[str, int, int], _Children] = {}

    def precreate(self, mounted: Iterable[tuple[str, Iterable[BaseRoute]]]) -> None:
        """Create each route's series with its success status, so they exist (at 0) from the
        first scrape on and `rate()` sees the first request. `mounted`: (prefix, routes)."""
        for prefix, routes in mounted:
            for route in routes:
                path_format = getattr(route, "path_format", None)
                methods = getattr(route, "methods", None)
                if not isinstance(path_format, str) or not methods:
                    continue  # an included router, not a route
                status = getattr(route, "status_code", None) or 200
                for method in methods:
                    self._create(method, route, status, prefix + path_format)

    def children(self, scope: Scope, method: str, status: int) -> _Children:
        # FastAPI's routing puts the matched route, if any, in the scope.
        route = scope.get("route")
        found = self._children.get((method, id(route), status))
        if found is None:
            found = self._create(method, route, status, path_template(scope) or UNMATCHED)
        return found

    def _create(self, method: str, route: object, status: int, template: str) -> _Children:
        labels = (method, template, str(status))
        children = (REQUESTS.labels(*labels), LATENCY.labels(*labels))
        self._children[(method, id(route), status)] = children
        return children


class RequestMetricsMiddleware:
    """Count and time every HTTP request by method, route template and status (pure ASGI)."""

    def __init__(self, app: ASGIApp, metrics: RequestMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # unless the app answers: an exception that escapes it is a 500

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        IN_FLIGHT.inc()
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            elapsed = time.perf_counter() - started
            IN_FLIGHT.dec()
            method = scope["method"]
            if method not in _METHODS:
                method = _OTHER_METHOD
            count, latency = self.metrics.children(scope, method, status)
            count.inc()
            latency.observe(elapsed)


# --- connection pool ----------------------------------------------------------------------------


def _checked_out(*_: Any) -> None:
    DB_POOL_IN_USE.inc()


def _checked_in(*_: Any) -> None:
    DB_POOL_IN_USE.dec()


def watch_pool(engine: AsyncEngine) -> None:
    """Keep the pool gauges of `engine` current: two gauge updates per checkout, and the
    waiting count on the slow path only."""
    event.listen(engine.sync_engine, "checkout", _checked_out)
    event.listen(engine.sync_engine, "checkin", _checked_in)
    pool = engine.sync_engine.pool
    if isinstance(pool, FairAsyncQueuePool):
        pool.watch_waiting(DB_POOL_WAITING.inc)


# --- figures read from the database at scrape time ---------------------------------------------


class DatabaseGauge(Collector):
    """A gauge whose value a query gives, refreshed by a scrape when older than a max age.

    A failed or slow read (the database away) drops the series until a later read succeeds,
    rather than report a stale figure as current; the failure is cached like a value, so a
    database that is away is not asked again at every scrape either.
    """

    def __init__(self, name: str, documentation: str, read: Callable[[], Awaitable[int]]) -> None:
        self.name = name
        self.documentation = documentation
        self._read = read
        self._value: float | None = None
        self._read_at = -float("inf")
        self._lock = asyncio.Lock()

    async def refresh(self, *, max_age: float, read_seconds: float) -> None:
        async with self._lock:  # concurrent scrapes: one query, the others use its result
            if time.monotonic() - self._read_at < max_age:
                return
            try:
                with anyio.fail_after(read_seconds):
                    self._value = float(await self._read())
            except Exception as error:
                self._value = None
                log.warning("metrics.read_failed", metric=self.name, error=repr(error))
            self._read_at = time.monotonic()

    def collect(self) -> Iterator[Metric]:
        if self._value is not None:
            yield GaugeMetricFamily(self.name, self.documentation, value=self._value)


# --- the endpoint -------------------------------------------------------------------------------


def _exposition(gauges: CollectorRegistry) -> bytes:
    if os.environ.get(MULTIPROC_DIR_ENV):
        # Every process's values, from the shared directory; this process's registry holds only
        # its own.
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry) + generate_latest(gauges)
    return generate_latest(REGISTRY) + generate_latest(gauges)


def _authorized(request: Request, token: str) -> bool:
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    # Compared in constant time: how long a refusal takes says nothing about the token.
    return scheme.lower() == "bearer" and hmac.compare_digest(
        presented.strip().encode(), token.encode()
    )


def install_metrics(
    app: FastAPI,
    engine: AsyncEngine,
    gauges: Iterable[DatabaseGauge],
    mounted: Iterable[tuple[str, Iterable[BaseRoute]]],
) -> None:
    """Count requests and pool use of `app`, and serve `GET /metrics`. Called once its routes
    are all included; `mounted` lists the routers under their prefixes, whose routes' series it
    precreates. Its middleware is then the outermost."""
    request_metrics = RequestMetrics()
    app.add_middleware(RequestMetricsMiddleware, metrics=request_metrics)
    watch_pool(engine)
    database_gauges = list(gauges)
    scrape_registry = CollectorRegistry(auto_describe=False)
    for gauge in database_gauges:
        scrape_registry.register(gauge)

    # Not in the OpenAPI document: it is for Prometheus, not for the API's clients.
    @app.get(METRICS_PATH, include_in_schema=False)
    async def metrics(request: Request) -> Response:
        settings = request.app.state.settings
        token = settings.METRICS_BEARER_TOKEN
        if token is not None and not _authorized(request, token.get_secret_value()):
            raise MetricsUnauthorized()
        for gauge in database_gauges:
            await gauge.refresh(
                max_age=settings.METRICS_DB_MAX_AGE_SECONDS,
                read_seconds=settings.HEALTH_TIMEOUT_SECONDS,
            )
        # Reading every worker's file and rendering is CPU and file work: off the event loop.
        body = await anyio.to_thread.run_sync(_exposition, scrape_registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    request_metrics.precreate([("", app.routes), *mounted])
