"""What the health routes ask of the dependencies: is the database (and Redis, when configured)
usable right now? Each answer comes within its own time limit (`HEALTH_TIMEOUT_SECONDS`), so a
frozen dependency makes a probe fail, never hang."""

import asyncio
from typing import Literal

import structlog
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.db_errors import is_not_migrated
from app.core.throttle import Throttle

log = structlog.get_logger(__name__)

CheckState = Literal["ok", "unavailable", "timeout", "not migrated"]


async def database_state(
    sessionmaker: async_sessionmaker[AsyncSession], *, limit_seconds: float
) -> CheckState:
    """`ok` when the database answers and has been migrated."""
    try:
        async with asyncio.timeout(limit_seconds), sessionmaker() as session:
            # Any row: a database the migrations never reached has no such table, or no row.
            migrated = await session.scalar(text("SELECT 1 FROM alembic_version LIMIT 1"))
    except TimeoutError:
        log.warning("health.database_timeout", limit_seconds=limit_seconds)
        return "timeout"
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
    try:
        async with asyncio.timeout(limit_seconds):
            await throttle.ping()
    except TimeoutError:
        return "timeout"
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
