"""Alembic environment: the URL comes from Settings, the tables from the feature list."""

import asyncio
from logging.config import fileConfig
from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from alembic.operations.ops import MigrationScript
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from app import features
from app.core.config import get_settings
from app.core.db import Base, UTCDateTime, create_engine

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

features.import_models()
target_metadata = Base.metadata


def _render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    # Migrations must not import app code that may move: render our UTC type as its column type.
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _sequential_revision_id(
    _context: MigrationContext, _revision: Any, directives: list[MigrationScript]
) -> None:
    # Ids that count up (0001, 0002 ...) read in order in the versions folder and in review;
    # two branches that both add 0002 fail loudly ("present more than once") instead of
    # forking the history silently.
    script = ScriptDirectory.from_config(config)
    numbers = [int(rev.revision) for rev in script.walk_revisions() if rev.revision.isdigit()]
    for directive in directives:
        directive.rev_id = f"{max(numbers, default=0) + 1:04d}"


def _configure(connection: Connection | None = None, url: str | None = None) -> None:
    context.configure(
        process_revision_directives=_sequential_revision_id,
        connection=connection,
        url=url,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things; batch mode copies the table, and is harmless elsewhere.
        render_as_batch=True,
        compare_type=True,
        render_item=_render_item,
        literal_binds=url is not None,
    )


def run_migrations_offline() -> None:
    _configure(url=get_settings().DATABASE_URL)
    with context.begin_transaction():
        context.run_migrations()


def _run_sync(connection: Connection) -> None:
    _configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    engine = create_engine(get_settings(), statement_timeout=False)
    async with engine.begin() as connection:
        await connection.run_sync(_run_sync)
    await engine.dispose()


def run_migrations_online() -> None:
    # Tests and the app pass an open connection: asyncio.run() would fail inside their loop.
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_sync(connection)
    else:
        asyncio.run(_run_async())


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
