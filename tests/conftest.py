"""App, database, client and auth fixtures.

The schema comes from the real migrations. Every test runs inside one transaction on one
connection that is rolled back at teardown; the app's sessions join it through savepoints, so the
app's own commit/rollback code runs unchanged. `TEST_DATABASE_URL` picks the database (default: a
fresh SQLite file); the suite refuses a PostgreSQL database whose name does not contain "test",
because it empties it first.
"""

import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import MetaData
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from app.core.config import Settings, normalize_database_url
from app.core.db import create_engine
from app.core.security import create_access_token, credential_fingerprint
from app.main import create_app
from app.users.models import User, UserSession
from tests.helpers import skip_outside_ci
from tests.users.factories import UserFactory

ROOT = Path(__file__).resolve().parent.parent
TEST_SECRET = "test-secret-key-of-at-least-thirty-two-bytes!"  # joserfc warns below 112 bits


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        return f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"
    url = normalize_database_url(url)
    database = make_url(url).database or ""
    if not url.startswith("sqlite") and "test" not in database:
        pytest.exit(f"refusing to empty database {database!r}: its name must contain 'test'")
    return url


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    return Settings(
        _env_file=None,
        ENVIRONMENT="test",
        DATABASE_URL=database_url,
        SECRET_KEY=TEST_SECRET,
        USERS_OPEN_REGISTRATION=True,
        BACKEND_CORS_ORIGINS=["http://localhost:5173"],
        # Cheap hashing: every user a test creates would otherwise cost a quarter second.
        ARGON2_TIME_COST=1,
        ARGON2_MEMORY_COST=8192,
        ARGON2_PARALLELISM=1,
        LOG_LEVEL="INFO",
        LOG_JSON=False,
        # The sender would share the test's one connection with the requests; the email tests
        # run their own.
        EMAIL_SENDER=False,
    )


def alembic_config(connection: Connection) -> Config:
    config = Config(str(ROOT / "alembic.ini"))
    config.attributes["connection"] = connection
    config.attributes["configure_logger"] = False
    return config


def _reset_and_migrate(connection: Connection) -> None:
    # Leftovers of an interrupted run must not decide what the schema looks like.
    stale = MetaData()
    stale.reflect(connection)
    stale.drop_all(connection)
    connection.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
    command.upgrade(alembic_config(connection), "head")


@pytest.fixture(scope="session")
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(settings)
    async with engine.begin() as connection:
        await connection.run_sync(_reset_and_migrate)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
async def app(settings: Settings, engine: AsyncEngine) -> AsyncIterator[Any]:
    app = create_app(settings)
    yield app
    await app.state.engine.dispose()


@pytest.fixture
async def connection(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    async with engine.connect() as connection:
        transaction = await connection.begin()
        yield connection
        await transaction.rollback()


@pytest.fixture
async def session(connection: AsyncConnection) -> AsyncIterator[AsyncSession]:
    """The test's own view of the database, inside the test's transaction."""
    async with AsyncSession(
        bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
    ) as session:
        yield session


@pytest.fixture
async def client(
    app: Any, settings: Settings, connection: AsyncConnection
) -> AsyncIterator[httpx2.AsyncClient]:
    original_sessionmaker = app.state.sessionmaker
    app.state.sessionmaker = async_sessionmaker(
        bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
    )
    # Every test's requests come from one address: each starts with no sign-ups, recoveries or
    # failed logins counted (the limits stay on, at their defaults).
    await app.state.throttle.reset()
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://test/api/v1") as client:
        yield client
    app.state.sessionmaker = original_sessionmaker
    app.state.settings = settings


@pytest.fixture
def override_settings(app: Any, settings: Settings) -> Callable[..., Settings]:
    """Change settings for one test: `override_settings(USERS_OPEN_REGISTRATION=False)`."""

    def override(**changes: Any) -> Settings:
        app.state.settings = settings.model_copy(update=changes)
        return app.state.settings  # type: ignore[no-any-return]

    return override


async def auth_headers(session: AsyncSession, user: User, settings: Settings) -> dict[str, str]:
    """A bearer header for `user`, in a new session of theirs (as a login would open)."""
    user_session = UserSession(user_id=user.id)
    session.add(user_session)
    await session.flush()
    credential = credential_fingerprint(user.hashed_password, settings)
    token = create_access_token(
        str(user.id), settings, credential=credential, session_id=str(user_session.id)
    ).token
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def user(session: AsyncSession) -> User:
    return await UserFactory.persist(session, full_name="Normal User")


@pytest.fixture
async def other_user(session: AsyncSession) -> User:
    return await UserFactory.persist(session, full_name="Other User")


@pytest.fixture
async def superuser(session: AsyncSession) -> User:
    return await UserFactory.persist(session, is_superuser=True, full_name="Super User")


@pytest.fixture
async def user_headers(session: AsyncSession, user: User, settings: Settings) -> dict[str, str]:
    return await auth_headers(session, user, settings)


@pytest.fixture
async def other_headers(
    session: AsyncSession, other_user: User, settings: Settings
) -> dict[str, str]:
    return await auth_headers(session, other_user, settings)


@pytest.fixture
async def superuser_headers(
    session: AsyncSession, superuser: User, settings: Settings
) -> dict[str, str]:
    return await auth_headers(session, superuser, settings)


REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="session")
async def redis_url() -> str:
    """The Redis the tests share (`TEST_REDIS_URL`); without one they skip, except in CI."""
    from redis.asyncio import Redis
    from redis.exceptions import RedisError

    redis = Redis.from_url(REDIS_URL, socket_connect_timeout=0.5)
    try:
        await redis.ping()
    except (RedisError, OSError) as error:
        skip_outside_ci(f"no Redis at {REDIS_URL} ({error}); start one or set TEST_REDIS_URL")
    finally:
        await redis.aclose()
    return REDIS_URL
