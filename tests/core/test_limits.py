from collections.abc import AsyncIterator

import httpx2
import pytest

from app.core.config import Settings
from tests.helpers import assert_problem

pytestmark = pytest.mark.anyio


async def test_a_declared_oversize_body_is_413(
    client: httpx2.AsyncClient, settings: Settings
) -> None:
    body = b'{"email": "' + b"a" * settings.MAX_REQUEST_BODY_BYTES + b'"}'
    response = await client.post(
        "/users/signup", content=body, headers={"content-type": "application/json"}
    )
    problem = assert_problem(response, 413)
    assert problem["title"] == "Content Too Large"
    assert str(settings.MAX_REQUEST_BODY_BYTES) in problem["detail"]


async def test_a_streamed_oversize_body_is_413(
    client: httpx2.AsyncClient, settings: Settings
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(settings.MAX_REQUEST_BODY_BYTES // 65536 + 2):
            yield b"x" * 65536

    response = await client.post(
        "/users/signup", content=chunks(), headers={"content-type": "application/json"}
    )
    assert_problem(response, 413)


async def test_a_body_within_the_limit_is_read(client: httpx2.AsyncClient) -> None:
    # Big, but under the limit: it reaches validation and fails there, not at the limit.
    response = await client.post(
        "/users/signup",
        json={"email": "a@example.com", "password": "p" * 8, "full_name": "n" * 500_000},
    )
    assert_problem(response, 422)


async def test_an_oversize_login_form_is_413(
    client: httpx2.AsyncClient, settings: Settings
) -> None:
    response = await client.post(
        "/login/access-token",
        data={"username": "a@example.com", "password": "p" * settings.MAX_REQUEST_BODY_BYTES},
    )
    assert_problem(response, 413)


@pytest.mark.parametrize(
    "path", ["/users/%0A", "/users/%0D", "/items/%0A", "/utils/health-check/%0A", "/users/me%09"]
)
async def test_a_path_with_a_control_character_matches_no_route(
    client: httpx2.AsyncClient, superuser_headers: dict[str, str], path: str
) -> None:
    # `$` in Starlette's route patterns matches before a final newline (found by make contract).
    body = assert_problem(await client.get(path, headers=superuser_headers), 404)
    assert body["detail"].startswith("No route matches GET")
