"""A real PostgreSQL for the outage tests, reached through a `FaultProxy`, and the app on it.

The outage tests commit for real (no rolled-back test transaction: a commit that fails is the
point), so they get a database of their own, `<the suite's PostgreSQL database>_outage`, made
and migrated once per run. On a SQLite run of the suite the PostgreSQL is `TEST_POSTGRES_URL`
(default: the Makefile's); when none is reachable, the tests are skipped with the reason.
"""

import asyncio
import os
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import asyncpg  # type: ignore[import-untyped]
import httpx2
import pytest
from fastapi import FastAPI
from sqlalchemy.engine import URL, make_url

from app.core.config import Settings, normalize_database_url
from app.core.db import create_engine
from app.main import create_app
from tests.benchmarks.server import free_port, start_server
from tests.conftest import TEST_SECRET, _reset_and_migrate
from tests.core.faultproxy import FaultProxy

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"

# The app's limits in these tests: small, so that each outage is answered in about a second.
TIMEOUTS = {
    "DB_CONNECT_TIMEOUT_SECONDS": 1.0,
    "DB_POOL_TIMEOUT_SECONDS": 1.0,
    "DB_STATEMENT_TIMEOUT_SECONDS": 1.0,
    "HEALTH_TIMEOUT_SECONDS": 1.0,
    "DB_POOL_SIZE": 2,
    "DB_MAX_OVERFLOW": 0,
}


def postgres_url() -> URL:
    """The suite's PostgreSQL: TEST_DATABASE_URL when it is one, else TEST_POSTGRES_URL."""
    url = os.environ.get("TEST_DATABASE_URL", "")
    if not url.startswith("postgres"):
        url = os.environ.get("TEST_POSTGRES_URL") or DEFAULT_POSTGRES_URL
    return make_url(normalize_database_url(url))


def _dsn(url: URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


async def admin_connect(url: URL) -> Any:
    """A plain asyncpg connection straight to the server (not through the proxy)."""
    return await asyncpg.connect(_dsn(url), timeout=3)


async def prepare_database(suffix: str = "outage") -> URL:
    """Create (once) and migrate the database `<the suite's>_<suffix>`; skip when there is no
    server."""
    base = postgres_url()
    name = f"{base.database}_{suffix}"
    if "test" not in name:
        pytest.fail(f"refusing to use database {name!r}: its name must contain 'test'")
    try:
        admin = await admin_connect(base)
    except (OSError, asyncpg.PostgresError) as error:
        pytest.skip(f"no PostgreSQL for the {suffix} tests at {base.render_as_string()}: {error}")
    try:
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await admin.execute(f'CREATE DATABASE "{name}"')
        # Left over by an interrupted read-only test, it would stop the migrations.
        await admin.execute(f'ALTER DATABASE "{name}" RESET default_transaction_read_only')
    finally:
        await admin.close()
    url = base.set(database=name)
    await migrate_afresh(url)
    return url


async def migrate_afresh(url: URL) -> None:
    """Empty the database at `url` and migrate it to head (the suite's own reset)."""
    settings = Settings(_env_file=None, DATABASE_URL=url.render_as_string(hide_password=False))
    engine = create_engine(settings, statement_timeout=False)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_reset_and_migrate)
    finally:
        await engine.dispose()


def app_settings(base: Settings, url: URL, proxy: FaultProxy, **changes: Any) -> Settings:
    """The suite's settings, on `url`'s database through the proxy, with short timeouts."""
    # In clear, so that the proxy can read the protocol (COMMIT).
    through = url.set(host=proxy.host, port=proxy.port).update_query_dict({"ssl": "disable"})
    return base.model_copy(
        update={
            "DATABASE_URL": through.render_as_string(hide_password=False),
            **TIMEOUTS,
            **changes,
        }
    )


@asynccontextmanager
async def serving(
    settings: Settings, *, lifespan: bool = False
) -> AsyncIterator[tuple[FastAPI, httpx2.AsyncClient]]:
    """The app on its own engine (commits for real), and a client of it; with `lifespan`, its
    start-up and background work (the email sender) too."""
    app = create_app(settings)
    transport = httpx2.ASGITransport(app=app)
    try:
        async with AsyncExitStack() as stack:
            if lifespan:
                await stack.enter_async_context(app.router.lifespan_context(app))
            client = httpx2.AsyncClient(transport=transport, base_url="http://test/api/v1")
            yield app, await stack.enter_async_context(client)
    finally:
        await app.state.engine.dispose()


async def signed_in(client: httpx2.AsyncClient) -> dict[str, str]:
    """A new account's bearer header."""
    email = f"outage-{uuid.uuid4().hex[:12]}@example.com"
    password = "outage-password"
    response = await client.post("/users/signup", json={"email": email, "password": password})
    assert response.status_code == 201, response.text
    response = await client.post(
        "/login/access-token", data={"username": email, "password": password}
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def timed(request: Awaitable[httpx2.Response]) -> tuple[httpx2.Response, float]:
    started = time.monotonic()
    response = await request
    return response, time.monotonic() - started


async def recovered(
    call: Callable[[], Awaitable[httpx2.Response]], status: int, *, within: float
) -> float:
    """Seconds until `call()` answers `status`; fails after `within`."""
    started = time.monotonic()
    async with asyncio.timeout(within):
        while (await call()).status_code != status:  # noqa: ASYNC110 - the state is elsewhere
            await asyncio.sleep(0.05)
    return time.monotonic() - started


def server_env(database_url: str, **changes: str) -> dict[str, str]:
    """The environment of a real server on `database_url` (through the proxy), with the short
    limits of these tests and cheap hashing."""
    return {
        **os.environ,
        "ENVIRONMENT": "test",
        "DATABASE_URL": database_url,
        "SECRET_KEY": TEST_SECRET,
        "ARGON2_TIME_COST": "1",
        "ARGON2_MEMORY_COST": "8192",
        "ARGON2_PARALLELISM": "1",
        "EMAIL_SENDER": "false",
        "REDIS_URL": "",
        "LOG_LEVEL": "INFO",
        "LOG_JSON": "true",
        **{name: str(value) for name, value in TIMEOUTS.items()},
        **changes,
    }


async def eventually(client: httpx2.AsyncClient, path: str, status: int, within: float) -> Any:
    """The first answer of `GET path` with `status`, polling (a server may not listen yet)."""
    async with asyncio.timeout(within):
        while True:
            try:
                response = await client.get(path)
                if response.status_code == status:
                    return response
            except httpx2.TransportError:
                pass  # not listening yet
            await asyncio.sleep(0.1)


@asynccontextmanager
async def real_server(env: dict[str, str], log_path: Path) -> AsyncIterator[httpx2.AsyncClient]:
    """The app as the Dockerfile starts it (`python -m app serve`, the bounded protocol), in a
    process of its own, and a client of it once it is live; stopped (SIGTERM) at the end."""
    port = free_port()
    server = start_server(port, env, log_path)
    try:
        async with httpx2.AsyncClient(base_url=f"http://127.0.0.1:{port}/api/v1") as client:
            await eventually(client, "/utils/live/", 200, within=30)
            yield client
            if server.poll() is not None:
                output = await anyio.Path(log_path).read_text()
                raise AssertionError(f"the server exited ({server.returncode}):\n{output}")
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
