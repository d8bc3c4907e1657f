"""The probes: liveness asks nothing, readiness names each dependency and its state.

The database going away is in tests/core/test_outages.py; here, Redis does.
"""

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.config import Settings
from app.main import create_app
from tests.benchmarks.server import free_port
from tests.helpers import assert_problem

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def probing(settings: Settings) -> AsyncIterator[httpx2.AsyncClient]:
    app = create_app(settings)
    transport = httpx2.ASGITransport(app=app)
    try:
        async with httpx2.AsyncClient(transport=transport, base_url="http://test/api/v1") as client:
            yield client
    finally:
        await app.state.throttle.aclose()
        await app.state.engine.dispose()


async def test_live_asks_nothing(client: httpx2.AsyncClient) -> None:
    response = await client.get("/utils/live/")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_ready_names_the_database(client: httpx2.AsyncClient) -> None:
    response = await client.get("/utils/ready/")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok"}}


async def test_ready_names_redis_when_it_is_configured(
    settings: Settings, engine: AsyncEngine, redis_url: str
) -> None:
    async with probing(settings.model_copy(update={"REDIS_URL": redis_url})) as client:
        response = await client.get("/utils/ready/")
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "redis": "ok"}


async def test_an_unreachable_redis_makes_ready_a_503_that_names_it(
    settings: Settings, engine: AsyncEngine
) -> None:
    nobody = f"redis://127.0.0.1:{free_port()}/0"  # refused at once
    async with probing(settings.model_copy(update={"REDIS_URL": nobody})) as client:
        started = time.monotonic()
        response = await client.get("/utils/ready/")
        seconds = time.monotonic() - started
        body = assert_problem(response, 503, type_="urn:problem:not-ready")
        assert body["checks"] == {"database": "ok", "redis": "unavailable"}
        assert "redis: unavailable" in body["detail"]
        assert response.headers["retry-after"] == "1"
        assert seconds < 2 * settings.HEALTH_TIMEOUT_SECONDS
        # The template's health check is about the database; liveness about nothing.
        assert (await client.get("/utils/health-check/")).json() is True
        assert (await client.get("/utils/live/")).status_code == 200


async def test_the_probes_are_documented(client: httpx2.AsyncClient) -> None:
    spec: dict[str, Any] = (await client.get("/openapi.json")).json()
    for path in ("/api/v1/utils/ready/", "/api/v1/utils/health-check/"):
        responses = spec["paths"][path]["get"]["responses"]
        assert list(responses["503"]["content"]) == ["application/problem+json"]
    ready = spec["paths"]["/api/v1/utils/ready/"]["get"]["responses"]["200"]
    assert ready["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Readiness"
    }
    live = spec["paths"]["/api/v1/utils/live/"]["get"]["responses"]["200"]
    assert live["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Liveness"
    }
