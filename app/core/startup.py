"""Work the app does once the database is there, not as a condition of starting.

The process starts and serves (503 on the routes that need the database, `ready` = 503) while
the database is unreachable or not migrated yet; `run_when_database_ready` keeps retrying its
step in the background, with backoff, until the step succeeds or the app shuts down.
"""

from collections.abc import Awaitable, Callable

import anyio
import structlog
from anyio.abc import TaskStatus

from app.core.db_errors import is_not_migrated, is_unavailable

log = structlog.get_logger(__name__)

FIRST_RETRY_SECONDS = 0.5
MAX_RETRY_SECONDS = 10.0


async def run_when_database_ready(
    name: str,
    step: Callable[[], Awaitable[None]],
    *,
    first_retry_seconds: float = FIRST_RETRY_SECONDS,
    max_retry_seconds: float = MAX_RETRY_SECONDS,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Run `step` until it succeeds, waiting between tries (doubling, up to a limit) while the
    database is unreachable, not migrated, or the step fails otherwise (logged with its
    traceback). The step must be idempotent: several processes may run it at once.

    Started with `TaskGroup.start()`, the start waits for the first try only (bounded by the
    database timeouts): when the database is up, the step is done before the app serves."""
    delay = first_retry_seconds
    attempt = 1
    while True:
        try:
            await step()
        except Exception as error:
            retry = {"step": name, "attempt": attempt, "retry_in": round(delay, 2)}
            if is_not_migrated(error):
                log.error(
                    "startup.database_not_migrated",
                    hint="run the migrations: `make migrate` (alembic upgrade head)",
                    **retry,
                )
            elif is_unavailable(error):
                log.warning(
                    "startup.database_unavailable",
                    error=str(getattr(error, "orig", error)),
                    **retry,
                )
            else:
                log.exception("startup.step_failed", **retry)
        else:
            if attempt > 1:
                log.info("startup.step_done", step=name, attempt=attempt)
            else:
                task_status.started()
            return
        if attempt == 1:
            task_status.started()
        await anyio.sleep(delay)
        delay = min(delay * 2, max_retry_seconds)
        attempt += 1
