"""Declarative base, column types and mixins, and the engine and session factory."""

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, MetaData, event, make_url
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, SessionTransaction, mapped_column
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.types import TypeDecorator

from app.core.config import Settings
from app.core.db_errors import (
    DRIVER_TIMEOUT_MARGIN_SECONDS,
    asyncpg_dbapi,
    discard_silent_connections,
)
from app.core.pool import FairAsyncQueuePool

# Stable constraint names, so migrations can drop and alter them on every backend. Composite
# constraints are named by all their columns (`column_0_N_name`): two unique keys that both start
# with `owner_id` would otherwise get the same name, which PostgreSQL refuses (names of indexes and
# constraints are unique per schema). Names over 63 characters are shortened with a hash suffix.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware datetime on every backend.

    SQLite has no timezone type and hands back naive values; we store UTC and attach UTC on the
    way out, so application code only ever sees aware datetimes.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime; use datetime.now(UTC)")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


SQLITE_BUSY_TIMEOUT_MS = 10_000


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UUIDPrimaryKey:
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)


class CreatedAt:
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)


def _sqlite_listeners(engine: AsyncEngine) -> None:
    """Make SQLite behave like a real transactional database under concurrent requests.

    pysqlite's own transaction handling defers BEGIN and breaks SAVEPOINT (SQLAlchemy docs,
    "Serializable isolation / Savepoints / Transactional DDL"), so we switch it off and begin
    transactions ourselves. We begin them IMMEDIATE: a deferred transaction that reads, then
    writes, fails at once with "database is locked" when another connection wrote in between
    (the busy timeout does not apply to that upgrade), which turned concurrent POSTs into 500s.
    IMMEDIATE takes the write lock up front, so transactions queue for up to busy_timeout instead.
    Foreign keys are off by default in SQLite, and we need ON DELETE CASCADE.
    """

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        # Readers no longer block the writer (a no-op for in-memory databases).
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _unnamed_statement() -> str:
    return ""


# Behind PgBouncer in transaction mode, a connection's transactions (and its statements outside
# one) may each run on another server connection. A named prepared statement would then be
# missing there ("prepared statement ... does not exist"), or collide with another client's
# ("already exists"), and never be freed. So: no cache of prepared statements, in SQLAlchemy's
# adapter or in asyncpg, and every statement unnamed. asyncpg then sends it as Parse, Describe,
# Flush (for the result's columns), and again as Parse, Bind, Execute, Sync: the run is one
# message sequence, complete on whichever server connection gets it, and the unnamed statement
# is replaced by the next one instead of piling up on the server.
TRANSACTION_POOLING_CONNECT_ARGS: dict[str, Any] = {
    "statement_cache_size": 0,
    "prepared_statement_cache_size": 0,
    "prepared_statement_name_func": _unnamed_statement,
}


def create_engine(settings: Settings, *, statement_timeout: bool = True) -> AsyncEngine:
    """The app's engine. `statement_timeout=False` lifts the per-statement limit (PostgreSQL):
    for migrations, which may rightly run longer than a request."""
    if settings.is_sqlite:
        # One connection per process: SQLite runs one write transaction at a time anyway (we begin
        # them IMMEDIATE), and waiting in the pool's FIFO queue beats SQLite's busy-wait backoff:
        # same throughput under `make bench`, p99 190 ms instead of 1,100 ms at 32 concurrent.
        # In-memory databases get SQLAlchemy's StaticPool, which takes no sizes.
        database = make_url(settings.DATABASE_URL).database
        in_memory = database in (None, "", ":memory:")
        pool_args: dict[str, Any] = {}
        if not in_memory:
            pool_args = {
                "poolclass": FairAsyncQueuePool,
                "pool_size": 1,
                "max_overflow": 0,
                "pool_timeout": settings.DB_POOL_TIMEOUT_SECONDS,
            }
        engine = create_async_engine(settings.DATABASE_URL, **pool_args)
        _sqlite_listeners(engine)
        return engine
    connect_args: dict[str, Any] = {"timeout": settings.DB_CONNECT_TIMEOUT_SECONDS}
    pgbouncer = settings.DB_PGBOUNCER_TRANSACTION_MODE
    if pgbouncer:
        connect_args.update(TRANSACTION_POOLING_CONNECT_ARGS)
    if statement_timeout:
        seconds = settings.DB_STATEMENT_TIMEOUT_SECONDS
        # The server cancels a slow statement and says so (57014); the driver's own limit, a
        # second later, is for a server that says nothing at all. PgBouncer refuses the first
        # ("unsupported startup parameter"): there, the role's own setting does it.
        if not pgbouncer:
            connect_args["server_settings"] = {"statement_timeout": str(round(seconds * 1000))}
        connect_args["command_timeout"] = seconds + DRIVER_TIMEOUT_MARGIN_SECONDS
    engine = create_async_engine(
        settings.DATABASE_URL,
        # asyncpg's options above, and its errors as SQLAlchemy errors (app.core.db_errors).
        module=asyncpg_dbapi(ping_timeout=settings.DB_CONNECT_TIMEOUT_SECONDS),
        connect_args=connect_args,
        # Waiting checkouts are served in order (app.core.pool).
        poolclass=FairAsyncQueuePool,
        pool_size=settings.DB_POOL_SIZE,
        max_overflow=settings.DB_MAX_OVERFLOW,
        pool_timeout=settings.DB_POOL_TIMEOUT_SECONDS,
        # A connection that died while idle (a restarted server) is replaced on checkout instead
        # of failing the request. On a frozen server the ping costs one driver timeout, then the
        # reconnect one connect timeout: bounded, and a restart costs no request.
        pool_pre_ping=True,
    )
    event.listen(engine.sync_engine, "handle_error", discard_silent_connections)
    return engine


_WROTE = "app.wrote_in_transaction"


@event.listens_for(Session, "after_flush")
def _remember_write(session: Session, _flush_context: Any) -> None:
    session.info[_WROTE] = True


@event.listens_for(Session, "after_transaction_end")
def _forget_writes(session: Session, transaction: SessionTransaction) -> None:
    # Only when the outermost transaction ends: a savepoint's end leaves the writes around it.
    if transaction.parent is None:
        session.info.pop(_WROTE, None)


async def release_connection(session: AsyncSession) -> None:
    """Hand the session's connection back before slow work that needs no database.

    Password hashing takes ~0.2 s of CPU; holding a pooled connection (and, on SQLite, the write
    lock) meanwhile lets a burst of logins starve every other request. This ends the transaction,
    so it is only for a transaction that has only read: with writes pending or flushed it raises
    instead of committing half of the request's unit of work. The session begins a new
    transaction when next used, and the request still commits (or rolls back) at the end.
    """
    sync = session.sync_session
    if sync.new or sync.dirty or sync.deleted or sync.info.get(_WROTE):
        raise RuntimeError(
            "release_connection() after writes would commit part of the request early; "
            "hash before writing"
        )
    if session.in_transaction():
        # A read-only transaction: ending it commits nothing.
        await session.commit()


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # Objects stay readable after the commit that ends each request.
    return async_sessionmaker(engine, expire_on_commit=False)
