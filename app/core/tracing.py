"""OpenTelemetry tracing, when `OTEL_EXPORTER_OTLP_ENDPOINT` is set: a span per request and per
SQL statement, exported over OTLP/HTTP, and the trace and span ids on every log line.

Imported only when tracing is configured (`app.main`, `app.core.logging`): otherwise no
instrumentation or exporter is loaded and a request pays nothing for it. (The OpenTelemetry API
is loaded anyway: FastAPI 0.165 imports it for its native telemetry, which stays off while no
tracer provider is set globally; ours is passed to the instrumentations, never made global, so
requests are not traced twice.)
"""

from typing import Any

from fastapi import FastAPI
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import get_current_span
from sqlalchemy.ext.asyncio import AsyncEngine
from structlog.types import EventDict

from app.core.config import Settings
from app.core.metrics import METRICS_PATH


def add_trace_ids(_logger: Any, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: `trace_id` and `span_id` of the active span, as trace backends
    print them (32 and 16 hex digits), so a log line leads to its trace and back."""
    context = get_current_span().get_span_context()
    if context.is_valid:
        event_dict["trace_id"] = format(context.trace_id, "032x")
        event_dict["span_id"] = format(context.span_id, "016x")
    return event_dict


class Tracing:
    """Traces `app`'s requests and `engine`'s statements; `shutdown()` sends what is left."""

    def __init__(self, app: FastAPI, engine: AsyncEngine, settings: Settings) -> None:
        assert settings.OTEL_EXPORTER_OTLP_ENDPOINT
        # Resource.create also reads OTEL_RESOURCE_ATTRIBUTES; the exporter reads the other
        # standard variables itself (OTEL_EXPORTER_OTLP_HEADERS, _TIMEOUT, _COMPRESSION, ...).
        resource = Resource.create(
            {SERVICE_NAME: settings.OTEL_SERVICE_NAME or settings.PROJECT_NAME}
        )
        self.provider = TracerProvider(resource=resource)
        exporter = OTLPSpanExporter(endpoint=f"{settings.OTEL_EXPORTER_OTLP_ENDPOINT}/v1/traces")
        # Spans leave in batches from a background thread: a request never waits for the export.
        self.provider.add_span_processor(BatchSpanProcessor(exporter))
        # No span per ASGI message (`http send`, `http receive`): the request's span says it all.
        # Scrapes are not traced: one every few seconds from each Prometheus would be noise.
        FastAPIInstrumentor.instrument_app(
            app,
            tracer_provider=self.provider,
            exclude_spans=["receive", "send"],
            excluded_urls=f"{METRICS_PATH}$",
        )
        self._sqlalchemy = SQLAlchemyInstrumentor()
        # The instrumentation declares `sqlalchemy < 2.1` and without skip_dep_check silently
        # instruments nothing on our 2.1. It works through the engine's event hooks, unchanged
        # in 2.1: tests/core/test_tracing.py proves the statements' spans arrive.
        self._sqlalchemy.instrument(
            engine=engine.sync_engine, tracer_provider=self.provider, skip_dep_check=True
        )

    def force_flush(self) -> bool:
        return self.provider.force_flush()

    def shutdown(self) -> None:
        """Export the spans still queued; stop tracing the engine (the instrumentor is one per
        process, so an app built after this one can be traced again)."""
        self._sqlalchemy.uninstrument()
        self.provider.shutdown()
