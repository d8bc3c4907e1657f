"""Which database failures mean "unavailable, retry later" (503) rather than a bug (500), and
the asyncpg driver glue: each of those failures reaches the app as a SQLAlchemy error, and a
request pays for no round trip that its work does not need.

asyncpg raises a refused or reset socket and its own timeouts as bare `OSError` and
`TimeoutError`; SQLAlchemy wraps only DB-API errors, so these used to bypass every database
handler (a 500), and a connection that timed out went back to the pool to time out again.

Round trips: SQLAlchemy's adapter sends `BEGIN` before a request's first statement, `COMMIT`
after its last, and `pool_pre_ping` a ping (itself `BEGIN; SELECT; ROLLBACK`) at every checkout:
an authenticated `GET` made five round trips for its two `SELECT`s. Here
- a plain `SELECT` that comes before the first write runs outside a transaction, and `BEGIN` is
  sent with the first statement that writes or locks (`FOR UPDATE`/`SHARE`). Under READ
  COMMITTED, PostgreSQL's default and ours, every statement sees what was committed before it
  began, in a transaction or not, so the reads see the same rows; the writes stay one
  transaction, committed at the end of the request. A request that only reads commits nothing.
  A connection set to another isolation level is left alone (its snapshot would move).
  Behind PgBouncer in transaction mode such a read runs on whichever server connection PgBouncer
  picks for it, which is as good: each statement is sent whole and unnamed
  (`DB_PGBOUNCER_TRANSACTION_MODE`, app.core.db), and the app keeps nothing in a server session
  that a later statement relies on (no `SET`, advisory lock, `LISTEN` or temporary table; the
  isolation level is sent with each `BEGIN`).
- the ping is skipped for a connection used less than `PING_AFTER_IDLE_SECONDS` ago whose
  socket is still open: a server that restarted or reset the connection closed the socket,
  which asyncpg has seen; one that went silent meanwhile costs that one statement its timeout.
"""

import re
import time
from functools import lru_cache
from typing import Any, NoReturn, cast

from sqlalchemy.dialects.postgresql.asyncpg import (
    AsyncAdapt_asyncpg_connection,
    AsyncAdapt_asyncpg_cursor,
    AsyncAdapt_asyncpg_dbapi,
)
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.util.concurrency import await_

# The driver's own limit on a statement is this much longer than PostgreSQL's: when the server
# is alive it cancels the statement itself and says why; the driver's limit is for silence.
DRIVER_TIMEOUT_MARGIN_SECONDS = 1.0
# A pooled connection used this recently is not pinged on checkout (see the module doc).
PING_AFTER_IDLE_SECONDS = 1.0
# Isolation levels under which a read outside the transaction sees what it would see inside.
_DEFERRABLE_BEGIN_LEVELS = frozenset({None, "read_committed"})
_LOCKING_CLAUSE = re.compile(r"\bFOR\s+(?:UPDATE|SHARE|NO\s+KEY\s+UPDATE|KEY\s+SHARE)\b", re.I)

# SQLSTATEs that say "not now" rather than "wrong": connection exceptions (class 08),
# insufficient resources (53: too many connections, disk full), operator intervention (57:
# cancelled by `statement_timeout`, admin or crash shutdown, cannot connect now).
_UNAVAILABLE_SQLSTATE_CLASSES = frozenset({"08", "53", "57"})
_UNAVAILABLE_SQLSTATES = frozenset(
    {
        "25006",  # read-only transaction: a standby, or a database set read-only
        "40001",  # serialization failure: the same request may succeed when retried
        "40P01",  # deadlock detected: likewise
        "55P03",  # lock not available
        "42P01",  # undefined table: the schema is not migrated (yet)
    }
)
# SQLite's primary result codes of the same kind: busy, locked, out of memory, read-only,
# interrupted, I/O error, disk full, cannot open the file, lock protocol error.
_UNAVAILABLE_SQLITE_CODES = frozenset({5, 6, 7, 8, 9, 10, 13, 14, 15})


def is_unavailable(error: BaseException) -> bool:
    """Whether `error` says the database cannot serve this request now (503, retry later),
    rather than that the request or the code is wrong (a bad statement stays a 500)."""
    if isinstance(error, PoolTimeoutError | DisconnectionError):
        return True
    if not isinstance(error, DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    orig = error.orig
    sqlstate = getattr(orig, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate:
        return sqlstate[:2] in _UNAVAILABLE_SQLSTATE_CLASSES or sqlstate in _UNAVAILABLE_SQLSTATES
    sqlite_code = getattr(orig, "sqlite_errorcode", None)
    if isinstance(sqlite_code, int):
        # "no such table": not migrated yet, like PostgreSQL's 42P01.
        return sqlite_code & 0xFF in _UNAVAILABLE_SQLITE_CODES or "no such table" in str(orig)
    # Without a SQLSTATE, the DB-API's OperationalError is the connection failing (what
    # `_AsyncpgConnection` makes of a socket error or a timeout).
    return isinstance(error, OperationalError)


def is_not_migrated(error: BaseException) -> bool:
    """Whether `error` is a missing table: a database that the migrations have not reached."""
    orig = getattr(error, "orig", None)
    return getattr(orig, "sqlstate", None) == "42P01" or "no such table" in str(orig)


@lru_cache(maxsize=1024)
def _reads_only(statement: str) -> bool:
    """A plain `SELECT`: reads, takes no row lock (statements are few, so this is cached)."""
    return statement.lstrip()[:6].upper() == "SELECT" and not _LOCKING_CLAUSE.search(statement)


class _AsyncpgCursor(AsyncAdapt_asyncpg_cursor):
    """Runs a plain `SELECT` before the first write outside a transaction (see the module doc)."""

    __slots__ = ()

    async def _prepare_and_execute(self, operation: str, parameters: Any) -> None:
        connection = cast(_AsyncpgConnection, self._adapt_connection)  # its own cursor class
        connection._begin_deferred = _reads_only(operation)
        try:
            await super()._prepare_and_execute(operation, parameters)  # type: ignore[no-untyped-call]
        finally:
            connection._begin_deferred = False


class _AsyncpgConnection(AsyncAdapt_asyncpg_connection):
    """SQLAlchemy's asyncpg connection, for a server that may stop answering, with no round trip
    a request does not need:

    - a socket error or a timeout becomes the DB-API's OperationalError (see the module doc);
    - the pre-ping waits at most the connect timeout, not a whole statement timeout, and is
      skipped for a connection in use a moment ago;
    - reads before the first write run outside the transaction;
    - a connection that timed out or lost its socket is closed at once when discarded; the
      graceful close would wait up to 2 s more for a server that says nothing.
    """

    _cursor_cls = _AsyncpgCursor
    _silent = False
    _begin_deferred = False
    _last_used = float("-inf")

    async def _start_transaction(self) -> None:
        if self._begin_deferred and self.isolation_level in _DEFERRABLE_BEGIN_LEVELS:
            return
        await super()._start_transaction()  # type: ignore[no-untyped-call]

    def rollback(self) -> None:
        # Also how the pool resets every connection handed back: the end of a use.
        super().rollback()  # type: ignore[no-untyped-call]
        self._last_used = time.monotonic()

    @classmethod
    def _handle_exception_no_connection(cls, dbapi: Any, error: Exception) -> NoReturn:
        # Every failure of a connection passes here: connect, ping, execute, commit, rollback.
        if isinstance(error, OSError):  # refused, reset, unreachable, and TimeoutError
            message = str(error) or f"{type(error).__name__}: the database did not answer in time"
            raise dbapi.OperationalError(message, error) from error
        super()._handle_exception_no_connection(dbapi, error)

    def _handle_exception(self, error: Exception) -> NoReturn:
        if isinstance(error, OSError):
            self._silent = True
        super()._handle_exception(error)

    async def _async_ping(self) -> None:
        # As the adapter's ping (in a transaction when none is open, for pgbouncer's transaction
        # mode), in one round trip with its own time limit; none for a connection in use a moment
        # ago whose socket is open (a closed one fails at once, without a round trip).
        timeout = self.dbapi.ping_timeout
        connection: Any = self._connection  # asyncpg's, untyped
        if time.monotonic() - self._last_used < PING_AFTER_IDLE_SECONDS and not (
            connection.is_closed()
        ):
            return
        if self._transaction is None and self.isolation_level != "autocommit":
            await connection.execute("BEGIN; ROLLBACK", timeout=timeout)
        else:
            await connection.fetchrow(";", timeout=timeout)

    def terminate(self) -> None:
        if self._silent:
            self._terminate_force_close()
        else:
            super().terminate()


class _AsyncpgDbapi(AsyncAdapt_asyncpg_dbapi):
    """SQLAlchemy's asyncpg adapter, with `_AsyncpgConnection`."""

    def __init__(self, asyncpg: Any, *, ping_timeout: float) -> None:
        super().__init__(asyncpg)  # type: ignore[no-untyped-call]
        self.ping_timeout = ping_timeout

    def connect(self, *arg: Any, **kw: Any) -> Any:
        # As AsyncAdapt_asyncpg_dbapi.connect, with our connection class.
        creator_fn = kw.pop("async_creator_fn", self.asyncpg.connect)
        cache_size = kw.pop("prepared_statement_cache_size", 100)
        name_func = kw.pop("prepared_statement_name_func", None)
        return await_(
            _AsyncpgConnection.create(
                self,
                creator_fn(*arg, **kw),
                prepared_statement_cache_size=cache_size,
                prepared_statement_name_func=name_func,
            )
        )


def asyncpg_dbapi(*, ping_timeout: float) -> Any:
    """The DB-API module for `create_async_engine(module=...)` on PostgreSQL."""
    import asyncpg  # type: ignore[import-untyped]

    return _AsyncpgDbapi(asyncpg, ping_timeout=ping_timeout)


def _silent(error: BaseException) -> bool:
    return isinstance(error, AsyncAdapt_asyncpg_dbapi.OperationalError) and isinstance(
        error.orig, OSError
    )


def discard_silent_connections(context: ExceptionContext) -> None:
    """`handle_error` listener: a connection whose socket failed or that timed out is thrown
    away (and the pool's other connections are pinged before reuse), not handed to the next
    request to time out again. A pre-ping that timed out fails the checkout at once: the
    server is silent, and a new connection would only wait out the connect timeout too."""
    original = context.original_exception
    if not _silent(original):
        return
    context.is_disconnect = True
    if context.is_pre_ping and isinstance(getattr(original, "orig", None), TimeoutError):
        raise original
