"""Retries that race: the same `Idempotency-Key` sent again while the first request is still
running creates nothing twice, on one instance or on two.

Real commits (`committing_app`) and concurrent requests. On PostgreSQL the request that claimed
the key is held after its claim until every other request is waiting for the database (they
wait on the key's unique index, `pg_stat_activity` says so); then it creates, stores its answer
and commits, and the others replay that answer. On SQLite the requests queue for the process's
one connection, or, with two instances, for the database's one writer (`BEGIN IMMEDIATE`), and
each sees the key its predecessor committed.
"""

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx2
import pytest
from fastapi import FastAPI
from sqlalchemy import delete, func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.core.config import Settings
from app.idempotency.models import IdempotencyKey
from app.items import crud as items_crud
from app.items.models import Item
from app.main import create_app
from app.users import service as users_service
from app.users.models import User
from tests.core.test_database import (  # noqa: F401 - fixtures
    committing_app,
    committing_client,
    signup_and_login,
)
from tests.helpers import login
from tests.users.factories import UserFactory

pytestmark = pytest.mark.anyio

N = 5
WAIT_SECONDS = 20  # a guard against a hang, not a timing assumption
REPLAYED = "idempotent-replayed"


@pytest.fixture(autouse=True)
async def _forget_keys(engine: AsyncEngine) -> AsyncIterator[None]:
    # Keys have no foreign key to users: delete those of the committed users before they go.
    yield
    committed = select(User.id).where(User.email.startswith("committed-"))
    async with engine.begin() as connection:
        await connection.execute(
            delete(IdempotencyKey).where(IdempotencyKey.user_id.in_(committed))
        )


def _email(label: str = "") -> str:
    return f"committed-{label}{uuid.uuid4().hex[:8]}@example.com"


async def _lock_waiters(engine: AsyncEngine, count: int) -> int:
    """Wait until `count` sessions of this database wait for a lock; how many did (PostgreSQL)."""
    query = text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    waiting = 0
    async with engine.connect() as connection:
        with anyio.move_on_after(WAIT_SECONDS):
            while waiting < count:
                waiting = int(await connection.scalar(query) or 0)
                await connection.commit()  # a new snapshot of pg_stat_activity each time
                await asyncio.sleep(0.02)
    return waiting


def _hold_the_claimer(
    monkeypatch: pytest.MonkeyPatch, settings: Settings, engine: AsyncEngine, target: Any, name: str
) -> list[int]:
    """Hold the first call of `target.name` (what runs after the claim) until the others wait on
    PostgreSQL's locks; records how many did. Every call is counted: one means one creation."""
    calls: list[int] = []
    original = getattr(target, name)

    async def held(*args: Any, **kwargs: Any) -> Any:
        calls.append(0)
        if len(calls) == 1 and not settings.is_sqlite:
            calls[0] = await _lock_waiters(engine, N - 1)
        return await original(*args, **kwargs)

    monkeypatch.setattr(target, name, held)
    return calls


def _assert_one_answer(responses: list[httpx2.Response]) -> None:
    """Every request got the first one's answer; all but that one are marked as replays."""
    assert [response.status_code for response in responses] == [201] * N
    assert len({response.text for response in responses}) == 1
    assert len({response.headers["etag"] for response in responses}) == 1
    replayed = sorted(response.headers.get(REPLAYED, "") for response in responses)
    assert replayed == [""] + ["true"] * (N - 1)


async def test_racing_retries_of_an_item_creation_create_one_item(
    committing_client: httpx2.AsyncClient,  # noqa: F811
    engine: AsyncEngine,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    email = _email()
    headers = {**await signup_and_login(committing_client, email), "Idempotency-Key": "race"}
    calls = _hold_the_claimer(monkeypatch, settings, engine, items_crud, "create")

    responses = await asyncio.gather(
        *(committing_client.post("/items/", headers=headers, json={"title": "t"}) for _ in range(N))
    )

    _assert_one_answer(list(responses))
    assert len(calls) == 1, "one request created, the others replayed"
    if not settings.is_sqlite:
        assert calls[0] >= N - 1, "the retries waited for the first request's key"
    async with AsyncSession(engine) as session:
        owner = select(User.id).where(User.email == email).scalar_subquery()
        items = await session.scalar(
            select(func.count()).select_from(Item).where(Item.owner_id == owner)
        )
        keys = await session.scalar(
            select(func.count()).select_from(IdempotencyKey).where(IdempotencyKey.user_id == owner)
        )
    assert (items, keys) == (1, 1)


async def test_racing_retries_of_an_account_creation_create_one_account(
    committing_client: httpx2.AsyncClient,  # noqa: F811
    engine: AsyncEngine,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    admin_email = _email("admin-")
    async with AsyncSession(engine) as session:
        session.add(UserFactory.build(email=admin_email, password="admin-pass", is_superuser=True))
        await session.commit()
    token = (await login(committing_client, admin_email, "admin-pass")).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": "new-account"}
    email = _email()
    calls = _hold_the_claimer(monkeypatch, settings, engine, users_service, "create")

    responses = await asyncio.gather(
        *(
            committing_client.post(
                "/users/", headers=headers, json={"email": email, "password": "password-1"}
            )
            for _ in range(N)
        )
    )

    _assert_one_answer(list(responses))
    assert len(calls) == 1
    if not settings.is_sqlite:
        assert calls[0] >= N - 1
    async with AsyncSession(engine) as session:
        assert (
            await session.scalar(select(func.count()).select_from(User).where(User.email == email))
            == 1
        )


@pytest.fixture
async def second_instance(settings: Settings, engine: AsyncEngine) -> AsyncIterator[FastAPI]:
    """Another app on the same database, with its own engine and pool: another instance."""
    app = create_app(settings)
    yield app
    await app.state.engine.dispose()


async def test_a_retry_sent_to_another_instance_replays(
    committing_client: httpx2.AsyncClient,  # noqa: F811
    second_instance: FastAPI,
    engine: AsyncEngine,
) -> None:
    email = _email()
    headers = {**await signup_and_login(committing_client, email), "Idempotency-Key": "two"}
    transport = httpx2.ASGITransport(app=second_instance)
    async with httpx2.AsyncClient(transport=transport, base_url="http://test/api/v1") as other:
        responses = await asyncio.gather(
            *(
                client.post("/items/", headers=headers, json={"title": "t"})
                for client in (committing_client, other) * 2
            )
        )
    assert [response.status_code for response in responses] == [201] * 4
    assert len({response.json()["id"] for response in responses}) == 1
    assert sum(response.headers.get(REPLAYED) == "true" for response in responses) == 3
    async with AsyncSession(engine) as session:
        owner = select(User.id).where(User.email == email).scalar_subquery()
        items = await session.scalar(
            select(func.count()).select_from(Item).where(Item.owner_id == owner)
        )
    assert items == 1
