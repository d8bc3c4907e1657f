"""Security headers and Cache-Control on every response, HEAD wherever GET is served, and the
docs off in production."""

from typing import Any

import httpx2
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.main import create_app
from app.users.models import User
from tests.helpers import assert_problem
from tests.items.factories import ItemFactory
from tests.test_owasp_api_top10 import concrete, routes

pytestmark = pytest.mark.anyio

SECURITY = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


def assert_secure(response: httpx2.Response, *, csp: str = "default-src 'none'") -> None:
    for name, value in SECURITY.items():
        assert response.headers[name] == value, (response.request.url, name)
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["content-security-policy"].startswith(csp)
    assert response.headers["cache-control"] == "no-store"


async def test_every_kind_of_answer_carries_the_security_headers(
    client: httpx2.AsyncClient, user_headers: dict[str, str]
) -> None:
    answers = [
        await client.get("/users/me", headers=user_headers),  # personal data
        await client.get("/utils/health-check/"),  # public
        await client.get("/no/such/route"),  # 404 of the router
        await client.get("/users/me"),  # 401
        await client.post("/users/signup", json={}),  # 422
        await client.put("/utils/health-check/"),  # 405
        await client.post("/login/access-token", data={"username": "a@b.c", "password": "x"}),
        await client.options(  # CORS preflight
            "/items/",
            headers={"Origin": "http://localhost:5173", "Access-Control-Request-Method": "GET"},
        ),
    ]
    for response in answers:
        assert_secure(response)
        # Over plain http a browser ignores HSTS; it is only sent over https.
        assert "strict-transport-security" not in response.headers


async def test_hsts_only_over_https(app: FastAPI) -> None:
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="https://test/api/v1") as tls:
        response = await tls.get("/no/such/route")
    assert_problem(response, 404)
    assert response.headers["strict-transport-security"].startswith("max-age=31536000")


async def test_a_500_carries_them_too(settings: Settings) -> None:
    app = create_app(settings)

    @app.get("/api/v1/boom")
    async def boom() -> Any:
        raise RuntimeError("boom")

    transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx2.AsyncClient(transport=transport, base_url="https://test") as client:
        response = await client.get("/api/v1/boom")
    await app.state.engine.dispose()
    assert_problem(response, 500)
    assert_secure(response)
    assert "strict-transport-security" in response.headers


async def test_the_docs_pages_load_scripts_from_this_server_only_and_are_not_framed(
    client: httpx2.AsyncClient,
) -> None:
    for path in ("/docs", "/redoc", "/docs/oauth2-redirect"):
        response = await client.get(f"http://test{path}")
        assert response.status_code == 200, path
        assert_secure(response, csp="default-src 'none'")
        policy = dict(
            directive.strip().split(" ", 1)
            for directive in response.headers["content-security-policy"].split(";")
        )
        # Swagger UI and ReDoc come from this server (app.core.docs), with no inline script.
        assert policy["script-src"] == "'self'", path
        assert policy["connect-src"] == "'self'", path
        assert policy["frame-ancestors"] == "'none'", path


async def test_a_route_that_sets_its_own_cache_control_keeps_it(
    client: httpx2.AsyncClient,
) -> None:
    # The OIDC start redirect says no-store itself; nothing is doubled.
    response = await client.get("/login/oidc/nope")
    assert response.headers.get_list("cache-control") == ["no-store"]


async def test_head_answers_like_get_on_every_get_route(
    app: FastAPI,
    client: httpx2.AsyncClient,
    session: AsyncSession,
    superuser: User,
    superuser_headers: dict[str, str],
) -> None:
    item = await ItemFactory.persist(session, owner_id=superuser.id, title="Mine")
    paths = [path for method, path in routes(app) if method == "GET"]
    paths += ["/openapi.json", "http://test/docs", "http://test/redoc"]
    assert len(paths) > 8
    for path in paths:
        url = concrete(path, item=item, user=superuser)
        got = await client.get(url, headers=superuser_headers)
        head = await client.head(url, headers=superuser_headers)
        assert head.status_code == got.status_code, path
        assert head.content == b"", path
        varying = {"x-request-id", "date", "location", "set-cookie"}
        assert {k: v for k, v in head.headers.items() if k not in varying} == {
            k: v for k, v in got.headers.items() if k not in varying
        }, path


async def test_head_where_no_get_is_served_is_a_405_without_a_body(
    client: httpx2.AsyncClient,
) -> None:
    response = await client.head("/users/signup")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.content == b""
    unknown = await client.head("/no/such/route")
    assert unknown.status_code == 404
    assert unknown.content == b""


async def test_the_405_allow_lists_head_wherever_get_is(client: httpx2.AsyncClient) -> None:
    response = await client.post("/users/me")
    assert_problem(response, 405)
    assert response.headers["allow"] == "GET, HEAD, PATCH, DELETE"


def test_the_docs_are_off_in_production_by_default() -> None:
    assert Settings(_env_file=None).docs_enabled is True
    production = Settings.model_construct(ENVIRONMENT="production", DOCS_ENABLED=None)
    assert production.docs_enabled is False
    switched_on = Settings.model_construct(ENVIRONMENT="production", DOCS_ENABLED=True)
    assert switched_on.docs_enabled is True


async def test_docs_off_are_404s(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"DOCS_ENABLED": False}))
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://test") as client:
        docs = ("/docs", "/redoc", "/docs/oauth2-redirect", "/docs/swagger-ui-bundle.js")
        for path in (*docs, "/redoc/redoc.standalone.js", "/api/v1/openapi.json"):
            response = await client.get(path)
            assert_problem(response, 404)
            assert_secure(response)
        assert (await client.get("/api/v1/utils/health-check/")).status_code == 200
    await app.state.engine.dispose()
