"""The app through PgBouncer in transaction mode (`DB_PGBOUNCER_TRANSACTION_MODE`): what it
needs, and the statement limit that holds there. The two-instance tests run through it too."""

import tempfile
from pathlib import Path
from typing import Any

import httpx2
import pytest
from sqlalchemy.engine import URL

from app.core.config import Settings
from tests.core import outage
from tests.helpers import assert_problem, require_program
from tests.scale import pgbouncer

pytestmark = pytest.mark.anyio

STATEMENT_TIMEOUT = 1.0  # outage.TIMEOUTS
BOUND = 3.0  # the driver's limit (statement timeout + 1 s), and slack for a busy machine

WAITING_FOR_A_LOCK = """
    SELECT count(*) FROM pg_stat_activity
    WHERE datname = $1 AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()
"""


def through(settings: Settings, url: URL, *, transaction_mode: bool) -> Settings:
    return settings.model_copy(
        update={
            "DATABASE_URL": url.render_as_string(hide_password=False),
            "DB_PGBOUNCER_TRANSACTION_MODE": transaction_mode,
            **outage.TIMEOUTS,
        }
    )


async def test_without_the_setting_pgbouncer_refuses_the_connection_with_503(
    settings: Settings, bouncer_url: URL
) -> None:
    # PgBouncer refuses `statement_timeout` as a connection parameter: the service says it
    # cannot reach its database rather than failing later in a way that is harder to read.
    async with outage.serving(through(settings, bouncer_url, transaction_mode=False)) as (_, c):
        response = await c.get("/utils/ready/")
        assert_problem(response, 503)
        assert response.json()["checks"] == {"database": "unavailable"}


async def blocked_read(client: httpx2.AsyncClient, admin: Any) -> tuple[httpx2.Response, float]:
    """`GET /items/` while `admin` holds a lock on the table; the lock is held on return."""
    headers = await outage.signed_in(client)
    await admin.execute("BEGIN; LOCK TABLE items IN ACCESS EXCLUSIVE MODE")
    response, seconds = await outage.timed(client.get("/items/", headers=headers))
    assert_problem(response, 503)
    assert int(response.headers["retry-after"]) >= 1
    return response, seconds


async def lock_waiters(admin: Any, database: str | None) -> int:
    return int(await admin.fetchval(WAITING_FOR_A_LOCK, database))


async def test_a_blocked_statement_through_pgbouncer_is_a_503_at_the_drivers_limit(
    settings: Settings, bouncer_url: URL, scale_url: URL
) -> None:
    async with outage.serving(through(settings, bouncer_url, transaction_mode=True)) as (_, c):
        admin = await outage.admin_connect(scale_url)
        try:
            _, seconds = await blocked_read(c, admin)
            # PostgreSQL was told no statement_timeout: the driver gave up, a second later.
            assert STATEMENT_TIMEOUT + 1.0 <= seconds < BOUND
            # And the statement is still there, holding its server connection: the reason to set
            # statement_timeout on the role (next test).
            assert await lock_waiters(admin, scale_url.database) == 1
            await admin.execute("ROLLBACK")
        finally:
            await admin.close()
        assert (await c.get("/utils/ready/")).status_code == 200


async def test_with_the_roles_statement_timeout_postgresql_cancels_it_at_the_limit(
    settings: Settings, scale_url: URL, tmp_path: Path
) -> None:
    # Set on the database here (it stands for the role: both are defaults PostgreSQL applies to
    # each new session), through a PgBouncer of this test's own, whose server sessions are new.
    require_program("pgbouncer", install="apt-get install -y pgbouncer")
    admin = await outage.admin_connect(scale_url)
    database = f'"{scale_url.database}"'
    await admin.execute(f"ALTER DATABASE {database} SET statement_timeout = '1s'")
    try:
        with (
            tempfile.TemporaryDirectory(prefix="pgbouncer-") as workdir,
            pgbouncer.pgbouncer(scale_url, Path(workdir)) as url,
        ):
            app_settings = through(settings, url, transaction_mode=True)
            async with outage.serving(app_settings) as (_, c):
                _, seconds = await blocked_read(c, admin)
                assert STATEMENT_TIMEOUT <= seconds < STATEMENT_TIMEOUT + 1.0
                assert await lock_waiters(admin, scale_url.database) == 0
                await admin.execute("ROLLBACK")
    finally:
        await admin.execute(f"ALTER DATABASE {database} RESET statement_timeout")
        await admin.close()
