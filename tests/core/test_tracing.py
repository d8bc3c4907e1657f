"""Tracing with `OTEL_EXPORTER_OTLP_ENDPOINT`: a real OTLP/HTTP receiver (a small HTTP server that
keeps what the exporter POSTs, decoded with opentelemetry-proto) gets the request's span and
its SQL statement's, and the request's log line names the same trace. Without the endpoint, none
of the instrumentation or exporter modules is even imported (the API and parts of the SDK are in
any case: FastAPI 0.165 imports the API for its native telemetry, redis-py the SDK)."""

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.config import Settings
from app.core.logging import setup_logging
from app.main import create_app
from tests.benchmarks.server import HOST, ROOT

pytestmark = pytest.mark.anyio

HEALTH = "/api/v1/utils/health-check/"


@contextmanager
def otlp_receiver() -> Iterator[tuple[str, list[ExportTraceServiceRequest]]]:
    """An OTLP/HTTP endpoint on the loopback: its base URL, and the exports it received."""
    received: list[ExportTraceServiceRequest] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.path == "/v1/traces":
                assert self.headers["Content-Type"] == "application/x-protobuf"
                received.append(ExportTraceServiceRequest.FromString(body))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((HOST, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{HOST}:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()


def _spans(received: list[ExportTraceServiceRequest]) -> list[tuple[dict[str, Any], Span]]:
    """Every span received, with its resource's attributes."""
    found = []
    for export in received:
        for resource_spans in export.resource_spans:
            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                found += [(resource, span) for span in scope_spans.spans]
    return found


async def test_a_request_and_its_sql_are_traced_and_its_log_line_names_the_trace(
    settings: Settings, engine: AsyncEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    # `engine`: the test database, migrated; the app queries it on its own engine (traced).
    with otlp_receiver() as (endpoint, received):
        traced = settings.model_copy(
            update={"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "LOG_JSON": True}
        )
        app = create_app(traced)
        try:
            transport = httpx2.ASGITransport(app=app)
            async with httpx2.AsyncClient(transport=transport, base_url="http://test") as client:
                assert (await client.get(HEALTH)).status_code == 200
                # Scrapes are not traced.
                assert (await client.get("/metrics")).status_code == 200
            assert await anyio.to_thread.run_sync(app.state.tracing.force_flush)
        finally:
            app.state.tracing.shutdown()
            await app.state.engine.dispose()
            with capsys.disabled():  # later lines must not go to this test's closed capture
                setup_logging(settings)

    logged = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    request_line = next(r for r in logged if r["event"] == "request" and r["path"] == HEALTH)
    trace_id = request_line["trace_id"]
    assert len(trace_id) == 32
    assert len(request_line["span_id"]) == 16
    # Outside a request, no span: no ids.
    assert not any("trace_id" in r for r in logged if r.get("path") is None)

    spans = _spans(received)
    in_trace = [(res, span) for res, span in spans if span.trace_id.hex() == trace_id]
    server = [span for _, span in in_trace if span.kind == Span.SPAN_KIND_SERVER]
    assert [span.name for span in server] == [f"GET {HEALTH}"]
    assert server[0].span_id.hex() == request_line["span_id"]
    statements = [
        span
        for _, span in in_trace
        if any(a.key in ("db.system", "db.system.name") for a in span.attributes)
    ]
    assert statements, [span.name for _, span in spans]
    assert all(span.parent_span_id for span in statements)
    assert {res["service.name"] for res, _ in in_trace} == {settings.PROJECT_NAME}
    assert not any("/metrics" in span.name for _, span in spans)


def test_without_an_endpoint_no_tracing_module_is_imported(tmp_path: Path) -> None:
    code = f"""
import sys, asyncio, httpx2
from app.core.config import Settings
from app.main import create_app

app = create_app(Settings(_env_file=None, DATABASE_URL="sqlite:///{tmp_path}/app.db"))

async def main():
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://test") as client:
        assert (await client.get("/api/v1/utils/live/")).status_code == 200
    await app.state.engine.dispose()

asyncio.run(main())
tracing = ("opentelemetry.instrumentation", "opentelemetry.exporter", "app.core.tracing")
print(sorted(name for name in sys.modules if name.startswith(tracing)))
"""
    completed = subprocess.run(  # noqa: S603 - our own interpreter, fixed code
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={"PATH": "", "LOG_LEVEL": "WARNING"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert completed.stdout.strip().splitlines()[-1] == "[]", completed.stdout
