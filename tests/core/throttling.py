"""What the throttle tests share (test_throttle.py, test_throttle_redis.py): requests from a given
address, a sign-up, counting users, the throttle's log lines. Their fixtures are in
tests/core/conftest.py."""

from collections.abc import Callable
from typing import Any

import httpx2
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.throttle import Throttle
from app.users.models import User

PASSWORD = "a-long-password"

ThrottleMaker = Callable[..., Throttle]


def peer_client(app: Any, peer: str) -> httpx2.AsyncClient:
    """A client whose requests come from `peer` (use it beside the `client` fixture, which
    points the app at the test's transaction)."""
    transport = httpx2.ASGITransport(app=app, client=(peer, 40000))
    return httpx2.AsyncClient(transport=transport, base_url="http://test/api/v1")


async def signup(client: httpx2.AsyncClient, email: str, **headers: str) -> httpx2.Response:
    return await client.post(
        "/users/signup", json={"email": email, "password": PASSWORD}, headers=headers
    )


async def count_users(session: AsyncSession, email: str) -> int:
    return await session.scalar(select(func.count()).where(User.email == email)) or 0


def throttle_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.msg["event"]
        for record in caplog.records
        if record.name == "app.core.throttle" and isinstance(record.msg, dict)
    ]
