"""The pool serves waiting checkouts in order, and loses no connection to a timeout or a
cancellation (app.core.pool); the app's engines use it."""

import asyncio
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.util.concurrency import greenlet_spawn
from sqlalchemy.util.queue import Empty

from app.core.config import Settings
from app.core.db import create_engine
from app.core.pool import FairAsyncQueuePool, _FairQueue

# Building the engine connects to nothing.
POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"

pytestmark = pytest.mark.anyio


async def _get(queue: _FairQueue, seconds: float | None = None) -> Any:
    # The pool calls the queue from SQLAlchemy's greenlet, as here.
    return await greenlet_spawn(queue.get, True, seconds)


async def _waiting(queue: _FairQueue, count: int) -> None:
    for _ in range(100):
        if len(queue._waiting) == count:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{len(queue._waiting)} waiting, expected {count}")


async def test_a_connection_handed_back_goes_to_the_longest_waiting_checkout() -> None:
    queue = _FairQueue(2)
    first = asyncio.create_task(_get(queue))
    await _waiting(queue, 1)
    second = asyncio.create_task(_get(queue))
    await _waiting(queue, 2)
    # A checkout that runs between the hand-back and the waiter's wake-up: a request already
    # scheduled in that turn of the event loop. SQLAlchemy's queue let it take the connection,
    # and the woken waiter went to the back of the line.
    go = asyncio.Event()

    async def arriving() -> Any:
        await go.wait()
        return await _get(queue)

    newcomer = asyncio.create_task(arriving())
    await asyncio.sleep(0)
    go.set()
    queue.put_nowait("a")
    with pytest.raises(Empty):  # nor does a checkout that would open a new connection instead
        queue.get(False)
    assert await first == "a"
    await _waiting(queue, 2)
    queue.put_nowait("b")
    queue.put_nowait("c")
    assert await second == "b"
    assert await newcomer == "c"
    assert queue.qsize() == 0


async def test_with_nobody_waiting_a_connection_handed_back_is_kept_idle() -> None:
    queue = _FairQueue(1)
    queue.put_nowait("a")
    assert (queue.qsize(), queue.full()) == (1, True)
    assert await _get(queue) == "a"
    with pytest.raises(Empty):
        queue.get(False)


async def test_a_checkout_that_times_out_is_empty_and_skipped_afterwards() -> None:
    queue = _FairQueue(1)
    with pytest.raises(Empty):
        await _get(queue, 0.01)
    queue.put_nowait("a")  # nobody waits any more: kept
    assert queue.qsize() == 1


async def test_a_checkout_cancelled_after_being_handed_a_connection_passes_it_on() -> None:
    queue = _FairQueue(1)
    leaving = asyncio.create_task(_get(queue))
    await _waiting(queue, 1)
    staying = asyncio.create_task(_get(queue))
    await _waiting(queue, 2)
    queue.put_nowait("a")  # handed to `leaving`, which is cancelled before it runs
    leaving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leaving
    assert await staying == "a"


async def test_a_cancelled_checkout_leaves_the_line() -> None:
    queue = _FairQueue(1)
    gone = asyncio.create_task(_get(queue))
    await _waiting(queue, 1)
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    queue.put_nowait("a")
    assert queue.qsize() == 1


async def test_the_app_pools_use_it_and_one_connection_serves_many_in_turn(
    settings: Settings, tmp_path: Path
) -> None:
    postgres = create_engine(settings.model_copy(update={"DATABASE_URL": POSTGRES_URL}))
    assert isinstance(postgres.pool, FairAsyncQueuePool)
    await postgres.dispose()

    # SQLite: one connection per process, so every checkout but one waits.
    url = f"sqlite+aiosqlite:///{tmp_path / 'pool.db'}"
    engine = create_engine(settings.model_copy(update={"DATABASE_URL": url}))
    assert isinstance(engine.pool, FairAsyncQueuePool)
    order: list[int] = []

    async def use(number: int) -> None:
        async with engine.connect() as connection:
            order.append(number)
            await connection.execute(text("SELECT 1"))
            await asyncio.sleep(0.001)

    try:
        await asyncio.gather(*(use(number) for number in range(20)))
    finally:
        await engine.dispose()
    assert order == list(range(20))
