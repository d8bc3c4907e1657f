"""Request ids, the per-request log line, and CORS."""

import logging

import httpx2
import pytest

from app.users.models import User

pytestmark = pytest.mark.anyio


async def test_request_id_is_generated_when_absent(client: httpx2.AsyncClient) -> None:
    first = await client.get("/utils/health-check/")
    second = await client.get("/utils/health-check/")
    assert len(first.headers["x-request-id"]) == 32
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


async def test_incoming_request_id_is_echoed(client: httpx2.AsyncClient) -> None:
    response = await client.get("/utils/health-check/", headers={"X-Request-ID": "abc-123.x"})
    assert response.headers["x-request-id"] == "abc-123.x"
    assert response.headers.get_list("x-request-id") == ["abc-123.x"]


@pytest.mark.parametrize("unsafe", ["a" * 129, "evil\tvalue", "with space", ""])
async def test_unsafe_request_id_is_replaced(client: httpx2.AsyncClient, unsafe: str) -> None:
    response = await client.get("/utils/health-check/", headers={"X-Request-ID": unsafe})
    assert response.headers["x-request-id"] != unsafe
    assert len(response.headers["x-request-id"]) == 32


async def test_error_bodies_carry_the_same_request_id(client: httpx2.AsyncClient) -> None:
    response = await client.get("/missing", headers={"X-Request-ID": "req-42"})
    assert response.json()["request_id"] == "req-42"
    assert response.headers.get_list("x-request-id") == ["req-42"]


async def test_one_log_line_per_request_with_route_template(
    client: httpx2.AsyncClient,
    user: User,
    user_headers: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="app.request")
    await client.get(f"/users/{user.id}", headers={**user_headers, "X-Request-ID": "log-1"})

    lines = [r.msg for r in caplog.records if r.name == "app.request"]
    assert len(lines) == 1
    line = lines[0]
    assert isinstance(line, dict)
    assert line["event"] == "request"
    assert line["request_id"] == "log-1"
    assert line["method"] == "GET"
    assert line["route"] == "/api/v1/users/{user_id}"
    assert line["path"] == f"/api/v1/users/{user.id}"
    assert line["status"] == 200
    assert line["duration_ms"] >= 0
    assert user_headers["Authorization"].split()[1] not in str(line)


async def test_cors_preflight_for_an_allowed_origin(client: httpx2.AsyncClient) -> None:
    response = await client.options(
        "/items/",
        headers={
            "Origin": "http://localhost:5173",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "http://localhost:5173"
    assert "x-request-id" in response.headers


async def test_cors_ignores_other_origins(client: httpx2.AsyncClient) -> None:
    response = await client.get("/utils/health-check/", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in response.headers
