"""Every error, ours or the framework's, is a problem+json body with a request id."""

import uuid
from typing import Any

import httpx2
import jsonschema_rs
import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import text

from app.core.config import Settings
from app.core.deps import SessionDep
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


async def test_every_error_response_refers_to_the_one_problem_schema(
    client: httpx2.AsyncClient, user_headers: dict[str, str]
) -> None:
    document = (await client.get("/openapi.json")).json()
    problem_ref = {"$ref": "#/components/schemas/Problem"}
    errors = [
        (f"{method} {path} {status}", response)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        for status, response in operation["responses"].items()
        if int(status) >= 400
    ]
    assert len(errors) > 100
    for where, response in errors:
        (schema,) = [body["schema"] for body in response["content"].values()]
        assert list(response["content"]) == ["application/problem+json"], where
        # The readiness probes' 503 adds the state of each check to the problem.
        assert problem_ref in (schema, *schema.get("allOf", [])), where
    # Defined once, not inlined anywhere.
    assert str(document).count("'title': 'Problem'") == 1

    # What the document says is what the errors are.
    problem = document["components"]["schemas"]["Problem"]
    for response in (
        await client.get("/no/such/route"),
        await client.post("/users/signup", json={"email": "nope"}),
        await client.get("/users/me"),
        await client.get(f"/items/{uuid.uuid4()}", headers=user_headers),
    ):
        assert response.headers["content-type"] == "application/problem+json"
        jsonschema_rs.validate(problem, response.json())


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


# Database outages, real ones: tests/core/test_outages.py (PostgreSQL through a proxy) and
# tests/core/test_start_without_database.py.


async def test_a_bad_statement_is_a_500_not_a_503(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    # The database's own error for a bug (a syntax error: ProgrammingError on PostgreSQL, an
    # OperationalError on SQLite) is not an outage: retrying would not help.
    app = create_app(settings)

    @app.get("/api/v1/bad-sql")
    async def bad_sql(session: SessionDep) -> Any:
        await session.execute(text("SELEC 1"))

    transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx2.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/api/v1/bad-sql")
    await app.state.engine.dispose()

    assert_problem(response, 500)
    assert "retry-after" not in response.headers
    assert "SELEC" not in response.text
    assert "request.failed" in capsys.readouterr().out


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
