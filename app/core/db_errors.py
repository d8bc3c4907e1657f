"""Which database failures mean "unavailable, retry later" (503) rather than a bug (500), and
the driver glue that makes each of them reach the app as a SQLAlchemy error.

asyncpg raises a refused or reset socket and its own timeouts as bare `OSError` and
`TimeoutError`; SQLAlchemy wraps only DB-API errors, so these used to bypass every database
handler (a 500), and a connection that timed out went back to the pool to time out again.
"""

from typing import Any, NoReturn

from sqlalchemy.dialects.postgresql.asyncpg import (
    AsyncAdapt_asyncpg_connection,
    AsyncAdapt_asyncpg_dbapi,
)
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.util.concurrency import await_

# The driver's own limit on a statement is this much longer than PostgreSQL's: when the server
# is alive it cancels the statement itself and says why; the driver's limit is for silence.
DRIVER_TIMEOUT_MARGIN_SECONDS = 1.0

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


class _AsyncpgConnection(AsyncAdapt_asyncpg_connection):
    """SQLAlchemy's asyncpg connection, for a server that may stop answering:

    - a socket error or a timeout becomes the DB-API's OperationalError (see the module doc);
    - the pre-ping waits at most the connect timeout, not a whole statement timeout;
    - a connection that timed out or lost its socket is closed at once when discarded; the
      graceful close would wait up to 2 s more for a server that says nothing.
    """

    _silent = False

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
        # mode), in one round trip with its own time limit.
        timeout = self.dbapi.ping_timeout
        connection: Any = self._connection  # asyncpg's, untyped
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
