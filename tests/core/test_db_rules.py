"""Rules of the database layer that features rely on without seeing them: constraint names,
`release_connection` only after reads, SQLite transactions that queue instead of failing."""

import asyncio
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import produce_migrations, render_python_code
from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlalchemy import (
    Column,
    ForeignKeyConstraint,
    Index,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    Uuid,
    inspect,
)
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.core.config import Settings
from app.core.db import NAMING_CONVENTION, create_engine, release_connection
from app.users.models import User
from tests.users.factories import UserFactory

pytestmark = pytest.mark.anyio


def _migrate_composite_keys(connection: Connection) -> dict[str, list[str]]:
    # Two unique keys and two foreign keys that all start with `owner_id`, through the path a
    # real migration takes: autogenerate renders the names, the migration creates them. Named by
    # their first column only, the second of each pair would collide (PostgreSQL: "relation
    # already exists").
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    Table(
        "naming_parents",
        metadata,
        Column("owner_id", Uuid, primary_key=True),
        Column("slug", String(20), primary_key=True),
    )
    Table(
        "naming_children",
        metadata,
        Column("id", Uuid, primary_key=True),
        Column("owner_id", Uuid, nullable=False),
        Column("title", String(20), nullable=False),
        Column("slug", String(20), nullable=False),
        UniqueConstraint("owner_id", "title"),
        UniqueConstraint("owner_id", "slug"),
        ForeignKeyConstraint(
            ["owner_id", "slug"], ["naming_parents.owner_id", "naming_parents.slug"]
        ),
        ForeignKeyConstraint(
            ["owner_id", "title"], ["naming_parents.owner_id", "naming_parents.slug"]
        ),
        Index(None, "owner_id", "title"),
    )
    context = MigrationContext.configure(
        connection,
        opts={
            "target_metadata": metadata,
            # Compare only these tables: the real ones are not in this metadata.
            "include_name": lambda name, kind, _parent: (
                kind != "table" or name.startswith("naming_")
            ),
        },
    )
    upgrade = produce_migrations(context, metadata).upgrade_ops
    assert upgrade is not None
    script = render_python_code(upgrade)
    # Rendered as a function body: four spaces in.
    source = "\n".join(line.removeprefix("    ") for line in script.splitlines())
    exec(source, {"op": Operations(context), "sa": sa})  # noqa: S102 - alembic's own rendering
    inspector = inspect(connection)
    return {
        "unique": sorted(
            str(c["name"]) for c in inspector.get_unique_constraints("naming_children")
        ),
        "foreign": sorted(str(c["name"]) for c in inspector.get_foreign_keys("naming_children")),
        "index": sorted(str(i["name"]) for i in inspector.get_indexes("naming_children")),
    }


async def test_composite_keys_are_named_by_all_their_columns(connection: AsyncConnection) -> None:
    # Inside the test's transaction: rolled back with it, on PostgreSQL and SQLite alike.
    names = await connection.run_sync(_migrate_composite_keys)
    assert names["unique"] == [
        "uq_naming_children_owner_id_slug",
        "uq_naming_children_owner_id_title",
    ]
    assert names["foreign"] == [
        "fk_naming_children_owner_id_slug_naming_parents",
        "fk_naming_children_owner_id_title_naming_parents",
    ]
    assert "ix_naming_children_owner_id_title" in names["index"]


async def test_release_connection_ends_a_transaction_that_only_read(session: AsyncSession) -> None:
    user = await UserFactory.persist(session)
    await session.commit()
    assert await session.get(User, user.id) is user
    await session.scalar(User.__table__.select().limit(1))
    assert session.in_transaction()

    await release_connection(session)

    assert not session.in_transaction()


async def test_release_connection_refuses_pending_writes(session: AsyncSession) -> None:
    session.add(UserFactory.build())
    with pytest.raises(RuntimeError, match="after writes"):
        await release_connection(session)


async def test_release_connection_refuses_flushed_writes(session: AsyncSession) -> None:
    # Flushed is not committed: ending the transaction here would commit half a request.
    await UserFactory.persist(session)
    with pytest.raises(RuntimeError, match="after writes"):
        await release_connection(session)
    await session.rollback()
    await release_connection(session)  # a new transaction has written nothing


async def test_overlapping_sqlite_transactions_queue_instead_of_failing(
    tmp_path: Path, settings: Settings
) -> None:
    # Two processes on one SQLite file (`make dev` with workers), each transaction reading and
    # then writing. Begun DEFERRED, the second writer fails at once with "database is locked"
    # (the busy timeout does not apply to that upgrade); begun IMMEDIATE, it waits its turn.
    url = f"sqlite+aiosqlite:///{tmp_path / 'overlap.db'}"
    engines = [create_engine(settings.model_copy(update={"DATABASE_URL": url})) for _ in range(2)]
    async with engines[0].begin() as connection:
        await connection.exec_driver_sql("CREATE TABLE counter (n INTEGER)")

    async def read_then_write(index: int) -> None:
        async with engines[index].begin() as connection:
            await connection.exec_driver_sql("SELECT count(*) FROM counter")
            await asyncio.sleep(0.05)  # the other transaction begins and reads meanwhile
            await connection.execute(sa.text("INSERT INTO counter VALUES (:n)"), {"n": index})

    try:
        await asyncio.gather(read_then_write(0), read_then_write(1))
        async with engines[0].connect() as connection:
            rows = await connection.exec_driver_sql("SELECT n FROM counter ORDER BY n")
            assert [row[0] for row in rows] == [0, 1]
    finally:
        for engine in engines:
            await engine.dispose()
