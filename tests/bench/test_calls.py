"""`python -m bench.calls` calls the app as uvicorn does: each call is one real request."""

import uuid
from typing import Any

import httpx2
import pytest

from app.users.models import User
from bench.calls import calls_of, cpu_per_request, request

pytestmark = pytest.mark.anyio


async def test_each_call_is_answered_as_over_http(
    app: Any, client: httpx2.AsyncClient, user: User, user_headers: dict[str, str]
) -> None:
    # `client` points the app at the test's transaction, where `user` and its session are.
    token = user_headers["Authorization"].removeprefix("Bearer ")
    created = await client.post("/items/", headers=user_headers, json={"title": "mine"})
    calls = calls_of(uuid.UUID(created.json()["id"]))

    for name in ("me", "item", "list", "post", "patch"):
        assert await request(app, calls[name], token) in (200, 201), name
    assert await request(app, calls["me"], "not-a-token") == 401
    assert await request(app, calls_of(uuid.uuid4())["item"], token) == 404
    assert (await client.get("/items/", headers=user_headers)).json()["count"] == 2  # + POST
    assert await cpu_per_request(app, calls["me"], token, 3) > 0
    with pytest.raises(AssertionError):  # a refused call is no measurement
        await cpu_per_request(app, calls["me"], "not-a-token", 1)
