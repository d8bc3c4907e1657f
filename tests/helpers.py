"""Assertions every feature's tests share."""

import os
import shutil
from typing import Any, NoReturn

import httpx2
import pytest


def assert_problem(response: httpx2.Response, status: int, *, type_: str | None = None) -> Any:
    """The response is an RFC 9457 problem with this status; returns its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status
    assert isinstance(body["title"], str)
    assert body["title"]
    assert isinstance(body["detail"], str)
    assert body["detail"]
    assert body["request_id"] == response.headers["x-request-id"]
    if type_ is not None:
        assert body["type"] == type_
    return body


def assert_unauthorized(response: httpx2.Response) -> Any:
    body = assert_problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")
    return body


def require_program(program: str, *, install: str) -> str:
    """The path of `program`. When it is missing the test skips, except in CI (`CI=true`, as the
    CI runner sets it), where .ci/run installs it: there the test fails rather than hide."""
    found = shutil.which(program)
    if found:
        return found
    skip_outside_ci(f"{program} is not installed ({install})")


def skip_outside_ci(reason: str) -> NoReturn:
    """Skip for `reason`, except in CI (`CI=true`; .ci/run sets it), which installs and starts
    what the tests need: there a missing program or service fails the test rather than hide."""
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(f"{reason}, and this is CI, whose .ci/run provides it", pytrace=False)
    pytest.skip(reason)


async def login(client: httpx2.AsyncClient, email: str, password: str) -> httpx2.Response:
    """The OAuth2 password grant, as a client sends it."""
    return await client.post("/login/access-token", data={"username": email, "password": password})


async def change_password(
    client: httpx2.AsyncClient, headers: dict[str, str], current: str, new: str
) -> httpx2.Response:
    return await client.patch(
        "/users/me/password",
        headers=headers,
        json={"current_password": current, "new_password": new},
    )
