"""What the health routes ask of the dependencies: is the database (and Redis, when configured)
usable right now? Each answer comes within its own time limit (`HEALTH_TIMEOUT_SECONDS`), so a
frozen dependency makes a probe fail, never hang.

A check that runs out of time is not cancelled: cancelling a database call mid-way costs more
waiting (the driver closes the connection gracefully, and a frozen server never answers). It
finishes in the background, bounded by the engine's own timeouts.
"""

import asyncio
from collections.abc import Coroutine
from typing import Any, Literal, TypeVar

import structlog
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.db_errors import is_not_migrated
from app.core.throttle import Throttle

log = structlog.get_logger(__name__)

CheckState = Literal["ok", "unavailable", "timeout", "not migrated"]

T = TypeVar("T")
_late_checks: set["asyncio.Task[Any]"] = set()


async def _within(limit_seconds: float, check: Coroutine[Any, Any, T]) -> T | None:
    """`check`'s result, or None when it takes longer than `limit_seconds` (it runs on)."""
    task = asyncio.ensure_future(check)
    done, _ = await asyncio.wait({task}, timeout=limit_seconds)
    if task in done:
        return task.result()
    _late_checks.add(task)
    task.add_done_callback(_late_checks.discard)
    return None


async def database_state(
    sessionmaker: async_sessionmaker[AsyncSession], *, limit_seconds: float
) -> CheckState:
    """`ok` when the database answers and has been migrated."""
    state = await _within(limit_seconds, _database_state(sessionmaker))
    if state is None:
        log.warning("health.database_timeout", limit_seconds=limit_seconds)
    return state or "timeout"


async def _database_state(sessionmaker: async_sessionmaker[AsyncSession]) -> CheckState:
    try:
        async with sessionmaker() as session:
            # Any row: a database the migrations never reached has no such table, or no row.
            migrated = await session.scalar(text("SELECT 1 FROM alembic_version LIMIT 1"))
    except (SQLAlchemyError, OSError) as error:
        if is_not_migrated(error):
            log.warning("health.database_not_migrated", hint="run the migrations: make migrate")
            return "not migrated"
        log.warning("health.database_unavailable", error=str(getattr(error, "orig", error)))
        return "unavailable"
    if migrated is None:
        log.warning("health.database_not_migrated", hint="run the migrations: make migrate")
        return "not migrated"
    return "ok"


async def redis_state(throttle: Throttle, *, limit_seconds: float) -> CheckState | None:
    """`ok` when Redis answers a PING; None when no Redis is configured."""
    if not throttle.uses_redis:
        return None
    return await _within(limit_seconds, _redis_state(throttle)) or "timeout"


async def _redis_state(throttle: Throttle) -> CheckState:
    try:
        await throttle.ping()
    except Exception as error:  # whatever the client raises: Redis is not usable
        log.warning("health.redis_unavailable", error=f"{type(error).__name__}: {error}")
        return "unavailable"
    return "ok"


async def readiness(
    sessionmaker: async_sessionmaker[AsyncSession], throttle: Throttle, *, limit_seconds: float
) -> dict[str, CheckState]:
    """Each dependency's state, checked at the same time: `{"database": "ok", "redis": "ok"}`."""
    database, redis = await asyncio.gather(
        database_state(sessionmaker, limit_seconds=limit_seconds),
        redis_state(throttle, limit_seconds=limit_seconds),
    )
    checks: dict[str, CheckState] = {"database": database}
    if redis is not None:
        checks["redis"] = redis
    return checks
