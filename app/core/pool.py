"""A connection pool that serves waiting requests first come, first served.

SQLAlchemy's asyncio pool keeps idle connections in an `asyncio.Queue`, and a checkout first
tries to take one without waiting: a connection handed back while others wait went to whichever
request asked next, often one that had just arrived, and the request woken for it found the
queue empty and waited again, at the back. With more requests than connections (64 concurrent
`GET /users/me` on a pool of 10) the median was 45 ms and the p99 about 1 s: the same few
requests kept losing. Here a connection handed back goes straight to the longest-waiting
checkout, and a new checkout waits behind those already waiting.
"""

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

from sqlalchemy.pool import AsyncAdaptedQueuePool
from sqlalchemy.util.concurrency import await_
from sqlalchemy.util.queue import Empty, Full, QueueCommon


class _FairQueue(QueueCommon[Any]):
    """The idle connections of a pool, and the checkouts waiting for one, both in order."""

    def __init__(self, maxsize: int = 0, use_lifo: bool = False) -> None:
        self.maxsize = maxsize
        self.use_lifo = use_lifo
        self._idle: deque[Any] = deque()
        self._waiting: deque[asyncio.Future[Any]] = deque()
        # Told +1 when a checkout starts waiting and -1 when it stops (app.core.metrics).
        self.on_wait: Callable[[int], None] | None = None

    def empty(self) -> bool:
        return not self._idle

    def full(self) -> bool:
        return 0 < self.maxsize <= len(self._idle)

    def qsize(self) -> int:
        return len(self._idle)

    def put_nowait(self, item: Any) -> None:
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():  # one that timed out or was cancelled is skipped
                waiter.set_result(item)
                return
        if self.full():
            raise Full()
        self._idle.append(item)

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        # Never more connections than places: the pool hands back only what it took.
        self.put_nowait(item)

    def get_nowait(self) -> Any:
        if not self._idle:
            raise Empty()
        return self._idle.pop() if self.use_lifo else self._idle.popleft()

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        # Idle connections and waiting checkouts never coexist (put_nowait hands over), so a
        # connection taken here is one nobody was waiting for.
        if self._idle or not block:
            return self.get_nowait()
        return await_(self._wait(seconds=timeout))

    async def _wait(self, *, seconds: float | None) -> Any:
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        on_wait = self.on_wait
        if on_wait is not None:
            on_wait(1)
        try:
            async with asyncio.timeout(seconds):
                return await waiter
        except BaseException as error:
            if waiter.done() and not waiter.cancelled():
                # Handed a connection, but leaving (cancelled or timed out at the same moment):
                # pass it on rather than lose it.
                self.put_nowait(waiter.result())
            else:
                waiter.cancel()
            if isinstance(error, TimeoutError):
                raise Empty() from None
            raise
        finally:
            if on_wait is not None:
                on_wait(-1)


class FairAsyncQueuePool(AsyncAdaptedQueuePool):
    """SQLAlchemy's asyncio pool (sizes, overflow, timeout, pre-ping: all as documented), with
    waiting checkouts served in order."""

    _queue_class = _FairQueue

    def watch_waiting(self, on_wait: Callable[[int], None]) -> None:
        """Call `on_wait(+1)` when a checkout starts waiting for a connection, `-1` when it
        stops (served, timed out or cancelled): only the slow path pays for it."""
        queue: _FairQueue = self._pool  # type: ignore[assignment]
        queue.on_wait = on_wait

    def recreate(self) -> "FairAsyncQueuePool":
        # `engine.dispose()` replaces the pool; the event listeners carry over, this too.
        pool: FairAsyncQueuePool = super().recreate()  # type: ignore[assignment]
        queue: _FairQueue = self._pool  # type: ignore[assignment]
        if queue.on_wait is not None:
            pool.watch_waiting(queue.on_wait)
        return pool
