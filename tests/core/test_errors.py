"""Every error, ours or the framework's, is a problem+json body with a request id."""

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest
from sqlalchemy import exc as sa_exc

from app.core.config import Settings
from app.main import create_app
from tests.helpers import assert_problem

pytestmark = pytest.mark.anyio


async def test_unknown_route_is_a_problem(client: httpx2.AsyncClient) -> None:
    body = assert_problem(await client.get("/no/such/route"), 404, type_="about:blank")
    assert body["detail"] == "No route matches GET /api/v1/no/such/route"


async def test_wrong_method_is_a_problem(client: httpx2.AsyncClient) -> None:
    response = await client.put("/utils/health-check/")
    assert_problem(response, 405)
    assert response.headers["allow"] == "GET, HEAD"


async def test_405_lists_every_method_of_the_path(
    client: httpx2.AsyncClient, superuser_headers: dict[str, str]
) -> None:
    # The path's methods live on three routes; Starlette alone would name only the first.
    response = await client.post(f"/users/{uuid.uuid4()}", headers=superuser_headers)
    assert_problem(response, 405)
    assert response.headers["allow"] == "GET, HEAD, PATCH, DELETE"


async def test_a_literal_path_is_not_taken_for_an_id(
    client: httpx2.AsyncClient, superuser_headers: dict[str, str]
) -> None:
    # /users/{user_id} only matches UUIDs, so /users/signup stays the signup route: 405, not 422.
    response = await client.patch("/users/signup", headers=superuser_headers, json={})
    assert_problem(response, 405)
    assert response.headers["allow"] == "POST"


async def test_openapi_operation_ids_follow_the_template(client: httpx2.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    ids = {op["operationId"] for path in spec["paths"].values() for op in path.values()}
    assert {
        "login-login_access_token",
        "users-read_user_by_id",
        "users-update_password_me",
        "items-read_items",
        "items-update_item",
        "utils-health_check",
    } <= ids


async def test_openapi_documents_errors_as_problems(client: httpx2.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    operation = spec["paths"]["/api/v1/items/{id}"]["get"]
    for status in ("401", "403", "404", "422"):
        assert list(operation["responses"][status]["content"]) == ["application/problem+json"]
    patch_schema = spec["components"]["schemas"]["ItemUpdate"]["properties"]["title"]
    assert "null" not in str(patch_schema)


async def test_validation_error_lists_fields_and_says_what_is_wrong(
    client: httpx2.AsyncClient,
) -> None:
    response = await client.post("/users/signup", json={"email": "nope"})
    body = assert_problem(response, 422, type_="urn:problem:validation-error")
    locations = sorted(tuple(error["loc"]) for error in body["errors"])
    assert locations == [("body", "email"), ("body", "password")]
    assert all(isinstance(error["msg"], str) for error in body["errors"])
    assert "body.email" in body["detail"]
    assert "body.password" in body["detail"]


async def test_unexpected_error_is_a_500_problem_without_internals(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    app = create_app(settings)

    @app.get("/api/v1/boom")
    async def boom() -> Any:
        password = "hunter2-in-a-local"  # noqa: F841 - must not reach the log
        raise RuntimeError("secret internals: /etc/passwd")

    transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx2.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/api/v1/boom", headers={"X-Request-ID": "trace-500"})
    await app.state.engine.dispose()

    body = assert_problem(response, 500)
    assert body["request_id"] == "trace-500"
    assert "secret" not in response.text
    assert "Traceback" not in response.text
    logged = capsys.readouterr().out
    assert "request.failed" in logged
    assert "trace-500" in logged
    assert "RuntimeError: secret internals" in logged
    assert "hunter2-in-a-local" not in logged


@pytest.fixture
async def unreachable_database_client(
    settings: Settings, tmp_path: Any
) -> AsyncIterator[httpx2.AsyncClient]:
    broken = settings.model_copy(
        update={"DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/missing/dir/db.sqlite"}
    )
    app = create_app(broken)
    async with httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=app), base_url="http://test/api/v1"
    ) as client:
        yield client
    await app.state.engine.dispose()


async def test_health_check_is_503_when_the_database_is_unreachable(
    unreachable_database_client: httpx2.AsyncClient,
) -> None:
    assert_problem(await unreachable_database_client.get("/utils/health-check/"), 503)


async def test_any_request_is_a_retryable_503_when_the_database_is_unreachable(
    unreachable_database_client: httpx2.AsyncClient, user_headers: dict[str, str]
) -> None:
    response = await unreachable_database_client.get("/items/", headers=user_headers)
    assert_problem(response, 503, type_="urn:problem:database-unavailable")
    assert response.headers["retry-after"] == "1"


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(sa_exc.TimeoutError("QueuePool limit reached"), id="pool-timeout"),
        pytest.param(
            sa_exc.OperationalError("SELECT 1", {}, Exception("database is locked")), id="locked"
        ),
    ],
)
async def test_database_congestion_is_a_retryable_503(settings: Settings, error: Exception) -> None:
    app = create_app(settings)

    @app.get("/api/v1/congested")
    async def congested() -> Any:
        raise error

    transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx2.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/api/v1/congested")
    await app.state.engine.dispose()

    assert_problem(response, 503, type_="urn:problem:database-unavailable")
    assert response.headers["retry-after"] == "1"


async def test_a_value_the_database_refuses_is_a_422(settings: Settings) -> None:
    app = create_app(settings)

    @app.get("/api/v1/unstorable")
    async def unstorable() -> Any:
        raise sa_exc.DataError("INSERT", {}, Exception("value out of range"))

    transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx2.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/api/v1/unstorable")
    await app.state.engine.dispose()

    assert_problem(response, 422, type_="urn:problem:unstorable-value")
