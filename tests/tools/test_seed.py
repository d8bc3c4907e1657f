"""`make seed` (tools/seed.py) on a fresh migrated SQLite file, in its own process as the Makefile
runs it: the users and items are in the database, and a seeded user logs in through HTTP."""

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx2
import pytest

from app.core.config import Settings
from app.main import create_app
from tests.conftest import ROOT


def _run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our interpreter, fixed arguments
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def _environment(database: Path) -> dict[str, str]:
    """A development database; cheap hashing; no .env of the developer's."""
    return {
        **os.environ,
        "DATABASE_URL": f"sqlite+aiosqlite:///{database}",
        "ENVIRONMENT": "local",
        "ARGON2_TIME_COST": "1",
        "ARGON2_MEMORY_COST": "8192",
        "ARGON2_PARALLELISM": "1",
    }


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    database = tmp_path_factory.mktemp("seed") / "migrated.db"
    done = _run("-m", "alembic", "upgrade", "head", env=_environment(database))
    assert done.returncode == 0, done.stderr
    return database


@pytest.fixture
def env(migrated: Path, tmp_path: Path) -> dict[str, str]:
    """A fresh copy of a freshly migrated database."""
    shutil.copy(migrated, tmp_path / "dev.db")
    return _environment(tmp_path / "dev.db")


@pytest.mark.anyio
async def test_seeded_users_own_their_items_and_can_log_in(env: dict[str, str]) -> None:
    done = _run("-m", "tools.seed", "--users", "3", "--items", "7", env=env)
    assert done.returncode == 0, done.stderr
    assert "added 3 users and 21 items" in done.stdout

    database = env["DATABASE_URL"].removeprefix("sqlite+aiosqlite:///")
    with sqlite3.connect(database) as connection:
        rows = connection.execute(
            "SELECT u.email, u.full_name, count(i.id) FROM users u "
            "JOIN items i ON i.owner_id = u.id GROUP BY u.id"
        ).fetchall()
        counted = connection.execute("SELECT sum(count) FROM item_counts").fetchone()[0]
    assert [count for *_, count in rows] == [7, 7, 7]
    assert counted == 21  # the per-owner counters the list reads are kept, too
    emails = [email for email, *_ in rows]
    assert len(set(emails)) == 3
    assert all(email.endswith("@example.com") for email in emails)
    assert all(name for _, name, _ in rows)

    settings = Settings(_env_file=None, DATABASE_URL=env["DATABASE_URL"], ENVIRONMENT="test")
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://t") as client,
    ):
        login = await client.post(
            "/api/v1/login/access-token",
            data={"username": emails[0], "password": "seeded-password-123"},
        )
        assert login.status_code == 200, login.text
        token = login.json()["access_token"]
        page = await client.get("/api/v1/items/", headers={"Authorization": f"Bearer {token}"})
    assert page.json()["count"] == 7


def test_seed_again_adds_more_users(env: dict[str, str]) -> None:
    for _ in range(2):
        done = _run("-m", "tools.seed", "--users", "2", "--items", "0", env=env)
        assert done.returncode == 0, done.stderr
    database = env["DATABASE_URL"].removeprefix("sqlite+aiosqlite:///")
    with sqlite3.connect(database) as connection:
        assert connection.execute("SELECT count(*) FROM users").fetchone()[0] == 4


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--users", "-1"], "must not be negative"),
        (["--password", "short"], "at least 8 characters"),
    ],
)
def test_bad_arguments_are_refused(env: dict[str, str], args: list[str], message: str) -> None:
    done = _run("-m", "tools.seed", *args, env=env)
    assert done.returncode == 2
    assert message in done.stderr


def test_production_is_refused(env: dict[str, str]) -> None:
    done = _run("-m", "tools.seed", env={**env, "ENVIRONMENT": "production"})
    assert done.returncode != 0
    assert "production" in done.stderr
