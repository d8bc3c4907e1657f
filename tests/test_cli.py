"""`python -m app`: each command, in a real process or through Typer's runner, against a real
database (the suite's: SQLite, or PostgreSQL with TEST_DATABASE_URL)."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from app.cli import cli, openapi_json
from app.core.config import get_settings
from tests.benchmarks.server import free_port
from tests.conftest import ROOT, TEST_SECRET

PASSWORD = "a-long-enough-password"
CHEAP_HASHING = {"ARGON2_TIME_COST": "1", "ARGON2_MEMORY_COST": "8192", "ARGON2_PARALLELISM": "1"}


def cli_env(database_url: str, **values: str) -> dict[str, str]:
    """A process environment with the suite's database and nothing else of ours."""
    env = {k: v for k, v in os.environ.items() if k in {"PATH", "HOME", "LANG", "TMPDIR"}}
    env.update(ENVIRONMENT="test", DATABASE_URL=database_url, SECRET_KEY=TEST_SECRET)
    env.update(CHEAP_HASHING, EMAIL_SENDER="false", LOG_JSON="false")
    env.update(values)
    return env


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "app", *args],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


SetEnv = Callable[..., None]


@pytest.fixture
def runner_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[SetEnv]:
    """In-process commands read this environment: no .env, no variable of the developer's, and
    the ones the test sets (all restored after it)."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.isupper() and not name.startswith(("PATH", "HOME", "LANG", "TMP", "PYTHON")):
            monkeypatch.delenv(name)

    def setenv(**values: str) -> None:
        for name, value in values.items():
            monkeypatch.setenv(name, value)

    get_settings.cache_clear()
    yield setenv
    get_settings.cache_clear()


# --- migrate -------------------------------------------------------------------------------------


def test_migrate_brings_a_new_database_to_head_and_is_idempotent(tmp_path: Path) -> None:
    database = tmp_path / "new.db"
    env = cli_env(f"sqlite:///{database}")

    first = run_cli(env, "migrate")
    assert first.returncode == 0, first.stderr
    assert "Running upgrade" in first.stderr
    heads = subprocess.run(
        [sys.executable, "-m", "alembic", "heads"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    with sqlite3.connect(database) as connection:
        (version,) = connection.execute("SELECT version_num FROM alembic_version").fetchone()
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    assert heads.stdout.startswith(f"{version} (head)")
    assert {"users", "items", "user_sessions"} <= tables

    again = run_cli(env, "migrate")
    assert again.returncode == 0, again.stderr
    assert "Running upgrade" not in again.stderr


def test_migrate_says_when_the_database_cannot_be_reached() -> None:
    closed = f"postgresql://postgres:not-shown@127.0.0.1:{free_port()}/nothing"
    result = run_cli(cli_env(closed, DB_CONNECT_TIMEOUT_SECONDS="2"), "migrate")
    assert result.returncode == 1
    assert result.stderr.startswith("migrate: the database refused:"), result.stderr
    assert "not-shown" not in result.stderr
    assert "Traceback" not in result.stderr


# --- create-superuser ----------------------------------------------------------------------------


async def _login(app: Any, email: str, password: str) -> httpx2.Response:
    await app.state.throttle.reset()
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://test/api/v1") as client:
        response = await client.post(
            "/login/access-token", data={"username": email, "password": password}
        )
        if response.status_code != 200:
            return response
        token = response.json()["access_token"]
        return await client.get("/users/me", headers={"Authorization": f"Bearer {token}"})


@pytest.mark.anyio
async def test_create_superuser_creates_an_account_that_logs_in(
    app: Any, engine: AsyncEngine, database_url: str
) -> None:
    email = f"cli-{uuid.uuid4().hex[:8]}@example.com"
    env = cli_env(database_url, ADMIN_PASSWORD=PASSWORD, NEW_PASSWORD="another-long-password")
    try:
        created = await anyio.to_thread.run_sync(
            run_cli, env, "create-superuser", email.upper(), "--password-env", "ADMIN_PASSWORD"
        )
        assert created.returncode == 0, created.stderr
        assert f"created superuser {email}" in created.stdout
        me = await _login(app, email, PASSWORD)
        assert me.status_code == 200, me.text
        assert me.json()["is_superuser"] is True
        assert me.json()["is_active"] is True

        # Exists: said so, and nothing changes.
        again = await anyio.to_thread.run_sync(
            run_cli, env, "create-superuser", email, "--password-env", "NEW_PASSWORD"
        )
        assert again.returncode == 1
        assert f"{email} already exists (--update to promote it)" in again.stderr
        assert (await _login(app, email, PASSWORD)).status_code == 200

        # --update: the new password, and only it, logs in.
        updated = await anyio.to_thread.run_sync(
            run_cli, env, "create-superuser", email, "--password-env", "NEW_PASSWORD", "--update"
        )
        assert updated.returncode == 0, updated.stderr
        assert f"updated superuser {email}" in updated.stdout
        assert (await _login(app, email, PASSWORD)).status_code == 400
        assert (await _login(app, email, "another-long-password")).status_code == 200
    finally:
        async with engine.begin() as connection:
            await connection.execute(text("DELETE FROM users WHERE email = :e"), {"e": email})


@pytest.mark.parametrize(
    ("email", "password", "message"),
    [
        ("boss@example.com", "short", "password: String should have at least 8 characters"),
        ("boss@example.com", "x" * 129, "password: String should have at most 128 characters"),
        ("boss@example.com", "eleven-char", "a superuser's password has at least 12 characters"),
        ("boss@example.com", "BOSS@example.com", "the password is the email"),
        ("boss@example.test", PASSWORD, "email: value is not a valid email address"),
        ("not-an-email", PASSWORD, "email: value is not a valid email address"),
    ],
)
def test_create_superuser_refuses_invalid_input_before_the_database(
    runner_env: SetEnv, email: str, password: str, message: str
) -> None:
    # An unreachable database: a refusal must not need one.
    runner_env(
        DATABASE_URL=f"postgresql://postgres@127.0.0.1:{free_port()}/nothing",
        ADMIN_PASSWORD=password,
    )
    result = CliRunner().invoke(
        cli, ["create-superuser", email, "--password-env", "ADMIN_PASSWORD"]
    )
    assert result.exit_code == 1
    assert "create-superuser: refused:" in result.stderr
    assert message in result.stderr
    assert password not in result.stderr


def test_create_superuser_prompts_twice_and_hidden(runner_env: SetEnv) -> None:
    # Typed twice, differently: asked again; then an invalid one is refused.
    result = CliRunner().invoke(
        cli, ["create-superuser", "boss@example.com"], input="first-password\nother\nshort\nshort\n"
    )
    assert result.exit_code == 1
    assert "Password: " in result.output
    assert "Repeat for confirmation: " in result.output
    assert "The two entered values do not match." in result.output
    assert "first-password" not in result.output  # hidden input is not echoed
    assert "password: String should have at least 8 characters" in result.stderr


def test_create_superuser_needs_the_variable_it_names(runner_env: SetEnv) -> None:
    result = CliRunner().invoke(
        cli, ["create-superuser", "boss@example.com", "--password-env", "NOT_SET_ANYWHERE"]
    )
    assert result.exit_code == 1
    assert "the environment variable NOT_SET_ANYWHERE is not set or empty" in result.stderr


# --- check-settings ------------------------------------------------------------------------------


def test_check_settings_lists_what_production_would_refuse(runner_env: SetEnv) -> None:
    runner_env(SECRET_KEY="short", BACKEND_CORS_ORIGINS="*")
    result = CliRunner().invoke(cli, ["check-settings"])
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0] == "production would refuse these settings:"
    # The app's own messages, all at once.
    assert any(line.startswith("  SECRET_KEY must be set to a random value") for line in lines)
    assert "  FIRST_SUPERUSER_PASSWORD must be changed from the default" in lines
    assert any(line.startswith("  DATABASE_URL must point at PostgreSQL") for line in lines)
    assert any(line.startswith("  BACKEND_CORS_ORIGINS may not contain '*'") for line in lines)


def test_check_settings_names_an_invalid_setting(runner_env: SetEnv) -> None:
    # Like the app, it cannot judge the rest before every value is valid.
    runner_env(LOG_LEVEL="chatty")
    result = CliRunner().invoke(cli, ["check-settings"])
    assert result.exit_code == 1
    assert result.stdout == (
        "production would refuse these settings:\n"
        "  LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR (any case)\n"
    )


def test_check_settings_passes_settings_production_accepts(runner_env: SetEnv) -> None:
    runner_env(
        ENVIRONMENT="local",  # checked as production all the same
        SECRET_KEY="k3Zq9-TwLp_0vXe7RfYb2NcHsUa8MgDj-4Vn",
        FIRST_SUPERUSER_PASSWORD="a-long-and-safe-password",
        DATABASE_URL="postgresql://app@db.internal/app",
    )
    result = CliRunner().invoke(cli, ["check-settings"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "production would accept these settings\n"


# --- openapi -------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_openapi_prints_and_writes_the_apps_document(
    app: Any, runner_env: SetEnv, tmp_path: Path
) -> None:
    runner_env(PROJECT_NAME="Not in the document")  # it describes the code, not the host
    printed = CliRunner().invoke(cli, ["openapi"])
    assert printed.exit_code == 0, printed.output
    assert printed.stdout == openapi_json(app)
    assert json.loads(printed.stdout)["info"]["title"] == "FastAPI Service"

    written = tmp_path / "openapi.json"
    assert CliRunner().invoke(cli, ["openapi", "--output", str(written)]).exit_code == 0
    assert written.read_text() == openapi_json(app)


@pytest.mark.anyio
async def test_the_committed_openapi_json_is_the_apps(app: Any) -> None:
    committed = (ROOT / "openapi.json").read_text()
    assert committed == openapi_json(app), "openapi.json is out of date: run `make openapi`"
    assert committed.endswith("}\n")
    assert json.loads(committed)["components"]["schemas"]["Problem"]["title"] == "Problem"


# --- serve ---------------------------------------------------------------------------------------


def test_serve_runs_the_app_with_the_bounded_protocol(tmp_path: Path) -> None:
    database = tmp_path / "served.db"
    env = cli_env(f"sqlite:///{database}")
    assert run_cli(env, "migrate").returncode == 0
    port = free_port()
    log = (tmp_path / "server.log").open("wb")
    server = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "app", "serve", "--port", str(port), "--no-access-log"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}/api/v1"
        with httpx2.Client(base_url=base) as client:
            for _ in range(600):
                try:
                    live = client.get("/utils/live/")
                    break
                except httpx2.TransportError:
                    assert server.poll() is None, (tmp_path / "server.log").read_text()
                    time.sleep(0.1)
            assert live.status_code == 200
            # The default --http: app.core.protocol's bound on the request head, not httptools'.
            huge = client.get("/utils/live/", headers={"X-Big": "x" * 40_000})
            assert huge.status_code == 431
            assert huge.headers["content-type"] == "application/problem+json"
    finally:
        server.terminate()
        # uvicorn, done with its graceful shutdown, raises the signal again, as it was asked to.
        exit_status = server.wait(timeout=30)
        log.close()
    assert exit_status == -signal.SIGTERM, (tmp_path / "server.log").read_text()
