"""The database layer: migrations, isolation, the unit of work, time zones, start-up."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from fastapi import APIRouter, FastAPI
from sqlalchemy import delete, func, inspect, select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from app import features
from app.core.config import Settings
from app.core.db import Base
from app.core.deps import SessionDep
from app.core.security import Passwords
from app.main import create_app
from app.users.models import User
from app.users.service import create_first_superuser
from tests.conftest import alembic_config
from tests.helpers import assert_problem, change_password, login
from tests.users.factories import UserFactory

pytestmark = pytest.mark.anyio


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


def _round_trip(connection: Connection) -> list[set[str]]:
    config = alembic_config(connection)
    seen = [_tables(connection)]
    command.downgrade(config, "base")
    seen.append(_tables(connection))
    command.upgrade(config, "head")
    seen.append(_tables(connection))
    return seen


async def test_migrations_go_down_to_base_and_up_again(connection: AsyncConnection) -> None:
    at_head, at_base, again = await connection.run_sync(_round_trip)
    assert {"users", "items"} <= at_head
    assert not {"users", "items"} & at_base
    assert again == at_head


def _drift(connection: Connection) -> list[Any]:
    features.import_models()
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return compare_metadata(context, Base.metadata)  # type: ignore[no-any-return]


async def test_models_and_migrations_agree(connection: AsyncConnection) -> None:
    assert await connection.run_sync(_drift) == []


@pytest.mark.parametrize("run", [1, 2])
async def test_each_test_starts_from_an_empty_database(
    client: httpx2.AsyncClient, session: AsyncSession, run: int
) -> None:
    # Runs twice: if the first run's user leaked, the second signup would be a 409.
    assert await session.scalar(select(func.count()).select_from(User)) == 0
    response = await client.post(
        "/users/signup", json={"email": "isolation@example.com", "password": "isolated-1"}
    )
    assert response.status_code == 201


async def test_foreign_keys_are_enforced(session: AsyncSession) -> None:
    from sqlalchemy.exc import IntegrityError

    from app.items.models import Item

    session.add(Item(title="orphan", owner_id=uuid.uuid4()))
    with pytest.raises(IntegrityError):
        await session.flush()


async def test_datetimes_come_back_timezone_aware(session: AsyncSession) -> None:
    user = await UserFactory.persist(session)
    session.expunge_all()
    reloaded = await session.get(User, user.id)
    assert reloaded is not None
    assert reloaded.created_at.utcoffset() is not None
    assert reloaded.created_at.utcoffset().total_seconds() == 0  # type: ignore[union-attr]


@pytest.fixture
async def committing_app(settings: Settings, engine: AsyncEngine) -> AsyncIterator[FastAPI]:
    """An app with its own, production session factory: no test transaction, real commits.
    Everything it creates belongs to users named `committed-*`, deleted afterwards."""
    app = create_app(settings)
    try:
        yield app
    finally:
        async with engine.begin() as cleanup:
            await cleanup.execute(delete(User).where(User.email.startswith("committed-")))
        await app.state.engine.dispose()


@pytest.fixture
async def committing_client(committing_app: FastAPI) -> AsyncIterator[httpx2.AsyncClient]:
    transport = httpx2.ASGITransport(app=committing_app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://test/api/v1") as client:
        yield client


async def signup_and_login(client: httpx2.AsyncClient, email: str) -> dict[str, str]:
    response = await client.post("/users/signup", json={"email": email, "password": "committed-1"})
    assert response.status_code == 201, response.text
    token = (await login(client, email, "committed-1")).json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


async def test_a_real_request_commits_before_answering(
    committing_client: httpx2.AsyncClient, engine: AsyncEngine
) -> None:
    email = f"committed-{uuid.uuid4().hex[:8]}@example.com"
    response = await committing_client.post(
        "/users/signup", json={"email": email, "password": "committed-1"}
    )
    assert response.status_code == 201
    async with engine.connect() as other_connection:
        found = await other_connection.scalar(select(User.id).where(User.email == email))
    assert str(found) == response.json()["id"]

    duplicate = await committing_client.post(
        "/users/signup", json={"email": email, "password": "committed-2"}
    )
    assert_problem(duplicate, 409)


async def test_concurrent_writes_all_succeed(
    committing_client: httpx2.AsyncClient, engine: AsyncEngine
) -> None:
    # 25 overlapping requests that each read (the user) and then write: they queue for the one
    # SQLite connection, or share the PostgreSQL pool, and every one is stored. Overlapping
    # transactions on one SQLite file are test_db_rules.py's IMMEDIATE test.
    headers = await signup_and_login(committing_client, f"committed-{uuid.uuid4().hex[:8]}@x.com")

    responses = await asyncio.gather(
        *(
            committing_client.post("/items/", headers=headers, json={"title": f"concurrent {i}"})
            for i in range(25)
        )
    )

    assert [r.status_code for r in responses] == [201] * 25
    listed = await committing_client.get("/items/", headers=headers)
    assert listed.json()["count"] == 25


async def test_every_request_hands_its_connection_back(
    committing_app: FastAPI, committing_client: httpx2.AsyncClient
) -> None:
    # The unit of work (app.core.routing.UnitOfWorkRoute) ends the session of a request that
    # succeeded, failed or was cancelled halfway (a shutdown's deadline): none keeps its
    # pooled connection, and nothing the cancelled one wrote is stored.
    pool = committing_app.state.engine.pool
    entered = asyncio.Event()
    email = f"committed-{uuid.uuid4().hex[:8]}@example.com"

    @committing_app.post("/api/v1/test-hang")
    async def hang(session: SessionDep) -> None:
        session.add(UserFactory.build(email=email))
        await session.flush()
        entered.set()
        await asyncio.Event().wait()

    headers = await signup_and_login(committing_client, f"committed-{uuid.uuid4().hex[:8]}@x.com")
    assert (await committing_client.get("/users/me", headers=headers)).status_code == 200
    assert pool.checkedout() == 0
    assert (await committing_client.get(f"/items/{uuid.uuid4()}", headers=headers)).status_code
    assert pool.checkedout() == 0

    request = asyncio.create_task(committing_client.post("/test-hang"))
    await asyncio.wait_for(entered.wait(), 10)
    assert pool.checkedout() == 1
    request.cancel()
    with pytest.raises(asyncio.CancelledError):
        await request
    assert pool.checkedout() == 0
    async with committing_app.state.engine.connect() as connection:
        assert await connection.scalar(select(User.id).where(User.email == email)) is None


async def test_a_session_is_given_only_to_a_route_with_a_unit_of_work(
    committing_app: FastAPI,
) -> None:
    # FeatureRouter and the app's own router make UnitOfWorkRoutes; a plain APIRouter's route
    # would have nobody to commit its session, so it gets none and says why.
    plain = APIRouter()

    @plain.get("/api/v1/test-plain")
    async def plain_route(session: SessionDep) -> None:
        await session.execute(select(1))

    committing_app.include_router(plain)
    transport = httpx2.ASGITransport(app=committing_app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://test") as client:
        with pytest.raises(RuntimeError, match="SessionDep on a route that is no UnitOfWorkRoute"):
            await client.get("/api/v1/test-plain")


async def test_no_connection_is_held_while_a_password_is_hashed(
    committing_app: FastAPI,
    committing_client: httpx2.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # ~0.2 s of CPU per hash: holding a pooled connection (or SQLite's write lock) meanwhile
    # would let a burst of logins starve every other request.
    pool = committing_app.state.engine.pool
    held: list[int] = []
    original = Passwords._verify_and_update

    def recording(
        self: Passwords, password: str, hashed: str, **options: bool
    ) -> tuple[bool, str | None]:
        held.append(pool.checkedout())
        return original(self, password, hashed, **options)

    monkeypatch.setattr(Passwords, "_verify_and_update", recording)
    email = f"committed-{uuid.uuid4().hex[:8]}@example.com"
    headers = await signup_and_login(committing_client, email)
    response = await change_password(committing_client, headers, "committed-1", "committed-2")
    assert response.status_code == 200
    assert (await login(committing_client, "nobody@example.com", "x" * 8)).status_code == 400

    assert len(held) == 3  # login, password change, unknown email
    assert held == [0, 0, 0]


async def test_first_superuser_is_created_once(
    connection: AsyncConnection, settings: Settings, session: AsyncSession
) -> None:
    sessionmaker = async_sessionmaker(
        bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
    )
    await create_first_superuser(sessionmaker, settings)
    await create_first_superuser(sessionmaker, settings)

    admins = (
        await session.scalars(select(User).where(User.email == settings.FIRST_SUPERUSER))
    ).all()
    assert len(admins) == 1
    assert admins[0].is_superuser


async def test_app_start_creates_the_first_superuser_who_can_log_in(
    app: Any, client: httpx2.AsyncClient, settings: Settings
) -> None:
    async with app.router.lifespan_context(app):
        response = await client.post(
            "/login/access-token",
            data={
                "username": settings.FIRST_SUPERUSER,
                "password": settings.FIRST_SUPERUSER_PASSWORD,
            },
        )
        assert response.status_code == 200
        me = await client.get(
            "/users/me", headers={"Authorization": f"Bearer {response.json()['access_token']}"}
        )
        assert me.json()["is_superuser"] is True
