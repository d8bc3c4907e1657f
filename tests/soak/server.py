"""The soak's server side: its database, its environment, and its memory."""

import os
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from tests.benchmarks.server import BenchmarkError, server_env


def server_rss_kib(pid: int) -> int:
    """Resident memory of the server and its workers: every process of its session."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getsid(int(entry.name)) != pid:
                continue
            status = (entry / "status").read_text()
        except (OSError, ProcessLookupError):
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


async def ensure_database(url: URL) -> None:
    """Create the PostgreSQL database when it does not exist yet."""
    if url.get_backend_name() == "sqlite":
        return
    engine = create_async_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            exists = await connection.scalar(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": url.database}
            )
            if not exists:
                await connection.execute(text(f'CREATE DATABASE "{url.database}"'))
    except (OSError, DBAPIError) as error:
        raise BenchmarkError(f"cannot reach PostgreSQL: {error}") from error
    finally:
        await engine.dispose()


def soak_env(url: URL) -> dict[str, str]:
    env = server_env(url)
    env.update(
        # Every client signs up from 127.0.0.1; the per-address limit is for the open internet.
        THROTTLE_SIGNUP_PER_ADDRESS="1000000/hour",
        # The OWASP minimum: the soak measures the service, not argon2.
        ARGON2_TIME_COST="2",
        ARGON2_MEMORY_COST="19456",
        ARGON2_PARALLELISM="1",
        # As the image runs (Dockerfile): without it, glibc's per-thread arenas keep what the
        # hashing threads freed, and the memory figures measure that instead of the service.
        MALLOC_ARENA_MAX=os.environ.get("MALLOC_ARENA_MAX", "2"),
    )
    return env
