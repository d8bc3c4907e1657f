"""A real PostgreSQL going away, through a proxy the tests control: every failure to reach or
use the database is a 503 with `Retry-After`, answered within a bound (never a 500, never a
hung request, never a 2xx for a write that was not stored), and the app recovers without a
restart once the database is back.

The app's limits here are a second each (`outage.TIMEOUTS`). A request may wait for a pooled
connection, then for a new one (or for the ping of an old one): twice the limit, the bound.
"""

import asyncio
import uuid
from pathlib import Path
from typing import Any

import httpx2
import pytest
from sqlalchemy.engine import URL

from app.core.config import Settings
from app.core.db import create_engine, create_sessionmaker
from app.users.service import create_first_superuser
from tests.core import outage
from tests.core.faultproxy import FaultProxy
from tests.helpers import assert_problem

pytestmark = pytest.mark.anyio

BOUND = 2.5  # twice the app's limits (outage.TIMEOUTS), and some slack for a busy machine
RECOVERY = 2.0  # back to normal answers after the database is back


@pytest.fixture
def app_settings(settings: Settings, outage_url: URL, proxy: FaultProxy) -> Settings:
    return outage.app_settings(settings, outage_url, proxy)


def assert_unavailable(response: httpx2.Response) -> Any:
    body = assert_problem(response, 503)
    assert int(response.headers["retry-after"]) >= 1
    return body


async def row_exists(url: URL, title: str) -> bool:
    admin = await outage.admin_connect(url)
    try:
        return bool(await admin.fetchval("SELECT count(*) FROM items WHERE title = $1", title))
    finally:
        await admin.close()


async def test_refused_is_a_fast_503_and_the_app_recovers_without_a_restart(
    app_settings: Settings, proxy: FaultProxy
) -> None:
    async with outage.serving(app_settings) as (_, client):
        headers = await outage.signed_in(client)
        assert (await client.get("/items/", headers=headers)).status_code == 200

        proxy.refuse()  # killed: open connections reset, nothing listens
        for request in (
            client.get("/items/", headers=headers),
            client.post("/items/", headers=headers, json={"title": "lost?"}),
            client.get("/utils/health-check/"),
        ):
            response, seconds = await outage.timed(request)
            assert_unavailable(response)
            assert seconds < BOUND
        response = await client.get("/items/", headers=headers)
        assert assert_unavailable(response)["type"] == "urn:problem:database-unavailable"
        ready = await client.get("/utils/ready/")
        assert assert_unavailable(ready)["checks"] == {"database": "unavailable"}
        assert (await client.get("/utils/live/")).json() == {"status": "ok"}

        await proxy.restore()
        seconds = await outage.recovered(
            lambda: client.get("/items/", headers=headers), 200, within=RECOVERY
        )
        assert seconds < RECOVERY
        assert (await client.get("/utils/health-check/")).json() is True
        assert (await client.get("/utils/ready/")).json() == {
            "status": "ok",
            "checks": {"database": "ok"},
        }


async def test_connections_reset_mid_use_are_503_then_replaced(
    app_settings: Settings, proxy: FaultProxy, outage_url: URL
) -> None:
    async with outage.serving(app_settings) as (_, client):
        headers = await outage.signed_in(client)
        admin = await outage.admin_connect(outage_url)
        try:
            # A request is mid-statement (waiting for a lock) when its connection is reset.
            locked = admin.transaction()
            await locked.start()
            await admin.execute("LOCK TABLE items IN ACCESS EXCLUSIVE MODE")
            waiting = asyncio.create_task(client.get("/items/", headers=headers))
            await asyncio.sleep(0.3)
            proxy.reset()
            response, seconds = await outage.timed(waiting)
            assert_unavailable(response)
            await locked.rollback()
        finally:
            await admin.close()
        # New connections are reset too, at once.
        response, seconds = await outage.timed(client.get("/items/", headers=headers))
        assert_unavailable(response)
        assert seconds < BOUND

        await proxy.restore()
        await outage.recovered(lambda: client.get("/items/", headers=headers), 200, within=RECOVERY)


async def test_a_restarted_server_costs_no_request(
    app_settings: Settings, proxy: FaultProxy
) -> None:
    # Every pooled connection dies while idle; the check on checkout replaces them. A pooled
    # connection used a moment ago is not pinged: its closed socket is what the check sees, once
    # the app's event loop has read the reset (a real restart takes far longer than this pause).
    async with outage.serving(app_settings) as (_, client):
        headers = await outage.signed_in(client)
        pair = [client.get("/items/", headers=headers) for _ in range(2)]
        assert [r.status_code for r in await asyncio.gather(*pair)] == [200, 200]
        proxy.reset()
        await asyncio.sleep(0.1)
        await proxy.restore()
        for _ in range(3):
            assert (await client.get("/items/", headers=headers)).status_code == 200


async def test_a_frozen_database_answers_503_in_bounded_time(
    app_settings: Settings, proxy: FaultProxy, outage_url: URL
) -> None:
    async with outage.serving(app_settings) as (_, client):
        headers = await outage.signed_in(client)
        assert (await client.get("/items/", headers=headers)).status_code == 200

        proxy.freeze()  # a stopped server: connections accepted, nothing answered
        title = f"frozen-{uuid.uuid4().hex}"
        requests = {
            "list": client.get("/items/", headers=headers),
            "create": client.post("/items/", headers=headers, json={"title": title}),
            "health": client.get("/utils/health-check/"),
            "ready": client.get("/utils/ready/"),
            "again": client.get("/items/", headers=headers),
        }
        answers = await asyncio.gather(*(outage.timed(r) for r in requests.values()))
        for name, (response, seconds) in zip(requests, answers, strict=True):
            assert_unavailable(response)
            assert seconds < BOUND, (name, seconds)
        live, seconds = await outage.timed(client.get("/utils/live/"))
        assert live.status_code == 200
        assert seconds < 0.5

        await proxy.restore()
        await outage.recovered(lambda: client.get("/items/", headers=headers), 200, within=RECOVERY)
    assert not await row_exists(outage_url, title)


async def test_an_exhausted_pool_is_a_503_after_the_pool_timeout(
    settings: Settings, outage_url: URL, proxy: FaultProxy
) -> None:
    # Both connections are held by requests waiting for a lock; a third waits for the pool.
    slow = outage.app_settings(
        settings, outage_url, proxy, DB_STATEMENT_TIMEOUT_SECONDS=5.0, DB_POOL_TIMEOUT_SECONDS=0.5
    )
    async with outage.serving(slow) as (_, client):
        headers = await outage.signed_in(client)
        admin = await outage.admin_connect(outage_url)
        try:
            locked = admin.transaction()
            await locked.start()
            await admin.execute("LOCK TABLE items IN ACCESS EXCLUSIVE MODE")
            holding = [
                asyncio.create_task(client.get("/items/", headers=headers)) for _ in range(2)
            ]
            await asyncio.sleep(0.3)
            response, seconds = await outage.timed(client.get("/items/", headers=headers))
            assert_unavailable(response)
            assert seconds < 2 * 0.5
            await locked.rollback()
        finally:
            await admin.close()
        # The lock released, the waiting requests are served.
        assert [(await task).status_code for task in holding] == [200, 200]


async def test_a_statement_cancelled_by_the_statement_timeout_is_a_503(
    app_settings: Settings, proxy: FaultProxy, outage_url: URL
) -> None:
    async with outage.serving(app_settings) as (_, client):
        headers = await outage.signed_in(client)
        admin = await outage.admin_connect(outage_url)
        try:
            locked = admin.transaction()
            await locked.start()
            await admin.execute("LOCK TABLE items IN ACCESS EXCLUSIVE MODE")
            response, seconds = await outage.timed(client.get("/items/", headers=headers))
            assert_unavailable(response)
            assert 1.0 <= seconds < BOUND  # PostgreSQL cancelled it at statement_timeout
            await locked.rollback()
        finally:
            await admin.close()
        # The connection was fine: the next request is served at once.
        assert (await client.get("/items/", headers=headers)).status_code == 200


async def test_a_server_shutting_down_is_a_503(
    settings: Settings, proxy: FaultProxy, outage_url: URL
) -> None:
    # The administrator ends the backend serving the request (what a fast shutdown does to every
    # session): asyncpg's AdminShutdownError.
    slow = outage.app_settings(settings, outage_url, proxy, DB_STATEMENT_TIMEOUT_SECONDS=5.0)
    async with outage.serving(slow) as (_, client):
        headers = await outage.signed_in(client)
        admin = await outage.admin_connect(outage_url)
        try:
            locked = admin.transaction()
            await locked.start()
            await admin.execute("LOCK TABLE items IN ACCESS EXCLUSIVE MODE")
            waiting = asyncio.create_task(client.get("/items/", headers=headers))
            terminated = 0
            async with asyncio.timeout(3):
                while not terminated:
                    await asyncio.sleep(0.05)
                    terminated = await admin.fetchval(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                    )
            assert_unavailable(await waiting)
            await locked.rollback()
        finally:
            await admin.close()
        assert (await client.get("/items/", headers=headers)).status_code == 200


async def test_a_read_only_database_refuses_writes_with_503_and_serves_reads(
    app_settings: Settings, proxy: FaultProxy, outage_url: URL
) -> None:
    admin = await outage.admin_connect(outage_url)
    name = outage_url.database
    try:
        async with outage.serving(app_settings) as (app, client):
            headers = await outage.signed_in(client)
            # As on a standby, or a database set read-only: new sessions cannot write.
            await admin.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
            await app.state.engine.dispose()
            title = f"read-only-{uuid.uuid4().hex}"
            response = await client.post("/items/", headers=headers, json={"title": title})
            assert_unavailable(response)
            assert (await client.get("/items/", headers=headers)).status_code == 200

            await admin.execute(f'ALTER DATABASE "{name}" RESET default_transaction_read_only')
            await app.state.engine.dispose()
            response = await client.post("/items/", headers=headers, json={"title": title})
            assert response.status_code == 201
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" RESET default_transaction_read_only')
        await admin.close()


async def assert_failed_commit_is_a_503(
    client: httpx2.AsyncClient, proxy: FaultProxy, outage_url: URL
) -> None:
    """A create whose COMMIT the proxy resets is a 503 and stores nothing; the retry stores it."""
    headers = await outage.signed_in(client)
    title = f"uncommitted-{uuid.uuid4().hex}"
    proxy.reset_on_commit()
    response = await client.post("/items/", headers=headers, json={"title": title})
    assert proxy.commits_reset == 1
    assert_unavailable(response)
    assert not await row_exists(outage_url, title)

    response = await client.post("/items/", headers=headers, json={"title": title})
    assert response.status_code == 201
    assert await row_exists(outage_url, title)


async def test_a_commit_that_fails_is_a_503_and_nothing_is_stored(
    app_settings: Settings, proxy: FaultProxy, outage_url: URL
) -> None:
    # The commit runs before the response is sent: a 2xx here would be a lie.
    async with outage.serving(app_settings) as (_, client):
        await assert_failed_commit_is_a_503(client, proxy, outage_url)


async def test_a_real_server_answers_503_not_201_when_its_commit_fails(
    app_settings: Settings, proxy: FaultProxy, outage_url: URL, tmp_path: Path
) -> None:
    # Through a real server: were the commit ever moved after the response (a background task,
    # a dependency that commits on exit after sending), this client would read a 201.
    env = outage.server_env(app_settings.DATABASE_URL)
    async with outage.real_server(env, tmp_path / "server.log") as client:
        await assert_failed_commit_is_a_503(client, proxy, outage_url)


async def test_the_email_sender_survives_an_outage_and_resumes(
    app_settings: Settings, proxy: FaultProxy, outage_url: URL
) -> None:
    sending = app_settings.model_copy(update={"EMAIL_SENDER": True, "EMAIL_POLL_SECONDS": 0.05})
    async with outage.serving(sending, lifespan=True) as (_, client):
        email = f"outage-{uuid.uuid4().hex[:12]}@example.com"
        signup = {"email": email, "password": "outage-password"}
        assert (await client.post("/users/signup", json=signup)).status_code == 201

        proxy.refuse()
        await asyncio.sleep(0.5)  # ten polls that fail
        await proxy.restore()
        await outage.recovered(lambda: client.get("/utils/ready/"), 200, within=RECOVERY)
        assert (await client.post(f"/password-recovery/{email}")).status_code == 200

        admin = await outage.admin_connect(outage_url)
        try:
            status = None
            async with asyncio.timeout(5):
                while status != "logged":  # the sender is another task
                    await asyncio.sleep(0.05)
                    status = await admin.fetchval(
                        "SELECT status FROM email_outbox WHERE recipient = $1", email
                    )
        finally:
            await admin.close()


async def test_many_processes_bootstrapping_at_once_create_one_superuser(
    app_settings: Settings, proxy: FaultProxy, outage_url: URL
) -> None:
    # Each on its own engine, as in separate processes starting together.
    email = f"first-{uuid.uuid4().hex[:12]}@example.com"
    settings = app_settings.model_copy(update={"FIRST_SUPERUSER": email})
    engines = [create_engine(settings) for _ in range(4)]
    try:
        await asyncio.gather(
            *(create_first_superuser(create_sessionmaker(e), settings) for e in engines)
        )
    finally:
        await asyncio.gather(*(e.dispose() for e in engines))
    admin = await outage.admin_connect(outage_url)
    try:
        rows = await admin.fetch("SELECT is_superuser FROM users WHERE email = $1", email)
    finally:
        await admin.close()
    assert [row["is_superuser"] for row in rows] == [True]
