"""The official full-stack template's backend as a third reference (`--template-dir DIR`).

Its code stays where it is (DIR, a checkout of its `backend/` with its own virtualenv); nothing
of it enters this repository. It gets a database of its own (`<bench database>_tpl`), its tables
from its own models (`SQLModel.metadata.create_all`, then its `init_db`), and the same users as
ours with the same password hash: the 1k reader and the writer. Its `item` table has no index on
`owner_id` (upstream has none), so its list's cost grows with the whole table: it holds only
these users' items.
"""

import secrets
import subprocess
import uuid
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy.engine import URL

from bench import seed
from tests.benchmarks.server import BenchmarkError
from tests.soak.server import ensure_database

CREATE_TABLES = """
from sqlmodel import Session, SQLModel
import app.models
from app.core.db import engine, init_db
SQLModel.metadata.create_all(engine)
with Session(engine) as session:
    init_db(session)
"""
BULK = """
INSERT INTO item (id, title, description, created_at, owner_id)
SELECT gen_random_uuid(), 'item ' || g, 'seeded', now() - make_interval(secs => g), $1
FROM generate_series(1, $2::integer) AS g
"""
USERS = (seed.sized_email("1k"), seed.WRITER)


def python(directory: Path) -> str:
    for candidate in (directory / ".venv", directory.parent / ".venv"):
        if (candidate / "bin" / "python").exists():
            return str(candidate / "bin" / "python")
    raise BenchmarkError(f"no virtualenv for the template: neither {directory}/.venv nor ../.venv")


def database_url(bench: URL) -> URL:
    return bench.set(database=f"{bench.database}_tpl")


def environment(base: dict[str, str], url: URL) -> dict[str, str]:
    """What its Settings read, for production."""
    env = {k: v for k, v in base.items() if k not in ("DATABASE_URL", "SECRET_KEY")}
    env.update(
        PROJECT_NAME="Full Stack FastAPI Project",
        ENVIRONMENT="production",
        POSTGRES_SERVER=url.host or "127.0.0.1",
        POSTGRES_PORT=str(url.port or 5432),
        POSTGRES_USER=url.username or "postgres",
        POSTGRES_PASSWORD=url.password or secrets.token_urlsafe(12),
        POSTGRES_DB=url.database or "",
        # Fixed for the run: with several workers, each must accept the others' tokens.
        SECRET_KEY=secrets.token_urlsafe(32),
        FIRST_SUPERUSER="admin@example.com",
        FIRST_SUPERUSER_PASSWORD=secrets.token_urlsafe(16),
        FRONTEND_HOST="http://localhost:5173",
    )
    return env


def _dsn(url: URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


async def prepare(directory: Path, env: dict[str, str], url: URL, hashed: str) -> None:
    """Its database, tables and users (items reset by `reset`)."""
    await ensure_database(url)
    done = subprocess.run(  # noqa: ASYNC221, S603 - its interpreter, our fixed script
        [python(directory), "-c", CREATE_TABLES],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise BenchmarkError(f"the template's tables could not be created:\n{done.stderr[-2000:]}")
    connection = await asyncpg.connect(_dsn(url))
    try:
        for email in USERS:
            await connection.execute(
                'INSERT INTO "user" (id, email, is_active, is_superuser, full_name, '
                "hashed_password, created_at) VALUES ($1, $2, true, false, 'Bench', $3, now()) "
                "ON CONFLICT (email) DO UPDATE SET hashed_password = EXCLUDED.hashed_password",
                uuid.uuid4(),
                email,
                hashed,
            )
    finally:
        await connection.close()


async def reset(url: URL, workdir: Path) -> None:
    """Both users back to 1,000 items each; their ids in `template:<email>.ids`."""
    connection = await asyncpg.connect(_dsn(url))
    try:
        for email in USERS:
            owner = await connection.fetchval('SELECT id FROM "user" WHERE email = $1', email)
            async with connection.transaction():
                await connection.execute("DELETE FROM item WHERE owner_id = $1", owner)
                await connection.execute(BULK, owner, seed.WRITER_ITEMS)
            rows = await connection.fetch("SELECT id FROM item WHERE owner_id = $1", owner)
            ids = "".join(f"{row['id']}\n" for row in rows)
            (workdir / f"template:{email}.ids").write_text(ids)
        await connection.execute("ANALYZE item")
    finally:
        await connection.close()
