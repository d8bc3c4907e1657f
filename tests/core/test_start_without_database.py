"""The process starts and serves while its database is unreachable or not migrated, and serves
normally once it is there, first superuser included, without a restart."""

import asyncio
import uuid
from pathlib import Path

import httpx2
import pytest
from alembic import command
from sqlalchemy import select
from sqlalchemy.engine import URL, Connection
from sqlalchemy.ext.asyncio import create_async_engine

from app.core.config import Settings
from app.main import create_app
from app.users.models import User
from tests.conftest import alembic_config
from tests.core import outage
from tests.core.faultproxy import FaultProxy
from tests.helpers import assert_problem

pytestmark = pytest.mark.anyio

PASSWORD = "first-superuser-password"


async def test_a_server_started_while_postgresql_is_down_serves_then_recovers(
    outage_url: URL, proxy: FaultProxy, tmp_path: Path
) -> None:
    proxy.refuse()  # down before the server starts
    admin_email = f"first-admin-{uuid.uuid4().hex[:8]}@example.com"
    through = outage.app_settings(Settings(_env_file=None), outage_url, proxy).DATABASE_URL
    log_path = tmp_path / "server.log"
    env = outage.server_env(through, FIRST_SUPERUSER=admin_email, FIRST_SUPERUSER_PASSWORD=PASSWORD)
    async with outage.real_server(env, log_path) as client:
        ready = await client.get("/utils/ready/")
        assert assert_problem(ready, 503)["checks"] == {"database": "unavailable"}
        assert ready.headers["retry-after"] == "1"
        login = {"username": admin_email, "password": PASSWORD}
        response = await client.post("/login/access-token", data=login)
        assert_problem(response, 503, type_="urn:problem:database-unavailable")
        assert response.headers["retry-after"] == "1"

        await proxy.restore()
        await outage.eventually(client, "/utils/ready/", 200, within=10)
        # The bootstrap retries with backoff: the superuser is there soon after.
        async with asyncio.timeout(10):
            response = await client.post("/login/access-token", data=login)
            while response.status_code != 200:
                await asyncio.sleep(0.2)
                response = await client.post("/login/access-token", data=login)
    logged = log_path.read_text()
    assert "startup.database_unavailable" in logged
    assert "user.first_superuser_created" in logged


def _migrate(connection: Connection) -> None:
    command.upgrade(alembic_config(connection), "head")


async def test_an_unmigrated_database_is_served_with_503_until_it_is_migrated(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A fresh SQLite file that no migration has reached.
    url = f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    app = create_app(settings.model_copy(update={"DATABASE_URL": url}))
    transport = httpx2.ASGITransport(app=app)
    try:
        async with (
            app.router.lifespan_context(app),
            httpx2.AsyncClient(transport=transport, base_url="http://test/api/v1") as client,
        ):
            ready = await client.get("/utils/ready/")
            assert assert_problem(ready, 503)["checks"] == {"database": "not migrated"}
            signup = {"email": "early@example.com", "password": "early-password"}
            response = await client.post("/users/signup", json=signup)
            assert_problem(response, 503, type_="urn:problem:database-unavailable")
            assert "run the migrations" in capsys.readouterr().out

            engine = create_async_engine(url)
            async with engine.begin() as connection:
                await connection.run_sync(_migrate)
            try:
                await outage.eventually(client, "/utils/ready/", 200, within=5)
                async with asyncio.timeout(5):
                    while True:
                        async with engine.connect() as connection:
                            email = settings.FIRST_SUPERUSER
                            found = await connection.scalar(
                                select(User.is_superuser).where(User.email == email)
                            )
                        if found:
                            break
                        await asyncio.sleep(0.1)
                assert (await client.post("/users/signup", json=signup)).status_code == 201
            finally:
                await engine.dispose()
    finally:
        await app.state.engine.dispose()


async def test_a_read_only_sqlite_file_is_a_503_with_retry_after(
    settings: Settings, tmp_path: Path
) -> None:
    # A migrated file opened read-only: SQLITE_READONLY, even for reads (transactions begin
    # IMMEDIATE, that is, as writers).
    database = tmp_path / "readonly.db"
    source = create_async_engine(f"sqlite+aiosqlite:///{database}")
    async with source.begin() as connection:
        await connection.run_sync(_migrate)
    await source.dispose()
    url = f"sqlite+aiosqlite:///file:{database}?mode=ro&uri=true"
    app = create_app(settings.model_copy(update={"DATABASE_URL": url}))
    transport = httpx2.ASGITransport(app=app)
    try:
        async with httpx2.AsyncClient(transport=transport, base_url="http://test/api/v1") as client:
            signup = {"email": "read-only@example.com", "password": "read-only-password"}
            response = await client.post("/users/signup", json=signup)
            assert_problem(response, 503, type_="urn:problem:database-unavailable")
            assert response.headers["retry-after"] == "1"
            health = await client.get("/utils/health-check/")
            assert assert_problem(health, 503)["checks"] == {"database": "unavailable"}
            assert health.headers["retry-after"] == "1"
    finally:
        await app.state.engine.dispose()
