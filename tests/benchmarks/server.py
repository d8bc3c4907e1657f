"""The throwaway database and the uvicorn server that the benchmark drives.

Database: refuse any URL that is not on this machine or whose name lacks a throwaway marker, drop
every table, then `alembic upgrade head`. Server: `uvicorn app.main:create_app --factory` on a free
port of 127.0.0.1, in its own session, with the settings that change the cost of a request pinned
to the app's defaults; started, waited for until its health check answers, and stopped.
"""

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import FrameType

import httpx2
from sqlalchemy import MetaData, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from app.core.config import Settings, normalize_database_url

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
LOOPBACK_HOSTS = {None, "", "127.0.0.1", "localhost", "::1"}
THROWAWAY_MARKERS = ("bench", "soak", "test")

STARTUP_TIMEOUT = 60.0
SHUTDOWN_TIMEOUT = 10.0

SUPERUSER_EMAIL = "bench-admin@example.com"
SUPERUSER_PASSWORD = "bench-admin-password"
SECRET_KEY = "benchmark-only-secret-key-of-at-least-32-bytes"

# Settings that change the cost of a request are pinned to the app's defaults, so neither the
# caller's environment nor a `.env` file in the repository can skew the numbers.
PINNED_SETTINGS = (
    "DB_POOL_SIZE",
    "DB_MAX_OVERFLOW",
    "DB_ECHO",
    "ARGON2_TIME_COST",
    "ARGON2_MEMORY_COST",
    "ARGON2_PARALLELISM",
)


Server = subprocess.Popen[bytes]


class BenchmarkError(Exception):
    """The benchmark could not run: bad arguments, database or server trouble."""


# --- database ---------------------------------------------------------------------------------


def throwaway_url(raw: str) -> URL:
    """The async-driver URL of `raw`, if it is safe to empty; BenchmarkError otherwise."""
    url = make_url(normalize_database_url(raw))
    shown = url.render_as_string(hide_password=True)
    if url.get_backend_name() != "sqlite" and url.host not in LOOPBACK_HOSTS:
        raise BenchmarkError(f"refusing {shown}: the benchmark only uses a database on this host")
    name = Path(url.database or "").name
    if not any(marker in name for marker in THROWAWAY_MARKERS):
        raise BenchmarkError(
            f"refusing to empty {shown}: its name must contain one of {THROWAWAY_MARKERS}"
        )
    return url


def _drop_everything(connection: Connection) -> None:
    # Leftovers of an interrupted run, or of the test suite, must not shape the schema.
    stale = MetaData()
    stale.reflect(connection)
    stale.drop_all(connection)


async def empty_database(url: URL) -> str:
    """Drop every table of `url`; return the server's name and version."""
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_drop_everything)
            if url.get_backend_name() == "sqlite":
                version = await connection.scalar(text("SELECT sqlite_version()"))
                return f"SQLite {version}"
            version = await connection.scalar(text("SHOW server_version"))
            return f"PostgreSQL {version}"
    except OSError as error:
        raise BenchmarkError(f"cannot reach the database: {error}") from error
    except DBAPIError as error:
        message = str(error.orig)
        if f'database "{url.database}" does not exist' in message:
            message += (
                f"; create it with: psql -h {url.host or HOST} -U {url.username} "
                f"-c 'CREATE DATABASE {url.database}'"
            )
        raise BenchmarkError(message) from error
    finally:
        await engine.dispose()


def migrate(env: dict[str, str]) -> None:
    command = [sys.executable, "-m", "alembic", "upgrade", "head"]
    completed = subprocess.run(  # noqa: S603 - our own interpreter, fixed arguments
        command, cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    if completed.returncode != 0:
        raise BenchmarkError(f"alembic upgrade head failed:\n{completed.stderr}{completed.stdout}")


# --- server -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def server_env(database_url: URL) -> dict[str, str]:
    env = dict(os.environ)
    defaults = Settings.model_fields
    env.update({name: str(defaults[name].default) for name in PINNED_SETTINGS})
    env.update(
        DATABASE_URL=database_url.render_as_string(hide_password=False),
        ENVIRONMENT="local",
        LOG_LEVEL="WARNING",
        LOG_JSON="false",
        SECRET_KEY=SECRET_KEY,
        FIRST_SUPERUSER=SUPERUSER_EMAIL,
        FIRST_SUPERUSER_PASSWORD=SUPERUSER_PASSWORD,
        USERS_OPEN_REGISTRATION="true",
        BACKEND_CORS_ORIGINS="",
    )
    return env


# The protocol the Dockerfile serves with: httptools with a bound on the request head.
HTTP_PROTOCOL = "app.core.protocol:HttpToolsProtocol"


def server_command(port: int, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        # As the Dockerfile: uvicorn's command line for the app, with a supervisor that stops
        # listening when shutdown begins (app/serve.py).
        "app",
        "serve",
        "--http",
        HTTP_PROTOCOL,
        "--host",
        HOST,
        "--port",
        str(port),
        "--no-access-log",
        "--log-level",
        "warning",
        *extra,
    ]


def start_server(port: int, env: dict[str, str], log_path: Path, *extra: str) -> Server:
    with log_path.open("wb") as log:
        # Its own session: a Ctrl-C reaches only us, and we stop the server in order.
        return subprocess.Popen(  # noqa: S603 - our own interpreter, fixed arguments
            server_command(port, *extra),
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_server(server: Server) -> None:
    """SIGTERM, as an orchestrator stops it; SIGKILL after SHUTDOWN_TIMEOUT, to its whole process
    group when it leads one (`start_new_session=True`): its workers too."""
    if server.poll() is not None:
        return
    server.terminate()
    try:
        server.wait(timeout=SHUTDOWN_TIMEOUT)
    except subprocess.TimeoutExpired:
        try:
            leads_group = os.getpgid(server.pid) == server.pid
        except ProcessLookupError:
            leads_group = False
        if leads_group:
            os.killpg(server.pid, signal.SIGKILL)
        else:
            server.kill()
        server.wait()


def print_log_tail(log_path: Path, lines: int = 40) -> None:
    """The end of the server's output, if any: the last error is usually there."""
    try:
        tail = log_path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return
    if tail:
        print("server log (last lines):", *tail, sep="\n", file=sys.stderr)


async def wait_until_healthy(client: httpx2.AsyncClient, server: Server) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STARTUP_TIMEOUT
    while loop.time() < deadline:
        if server.poll() is not None:
            raise BenchmarkError(f"the server exited with status {server.returncode}")
        try:
            response = await client.get("/utils/health-check/", timeout=2.0)
        except httpx2.TransportError:
            pass
        else:
            if response.status_code == 200:
                return
        await asyncio.sleep(0.1)
    raise BenchmarkError(f"the server did not answer the health check within {STARTUP_TIMEOUT} s")


def throwaway_database(database_url: str | None, workdir: Path, name: str) -> tuple[URL, str]:
    """The database to run against, emptied: `database_url` (checked by throwaway_url) or a
    fresh SQLite file in `workdir`. Returns its URL and a description of the server."""
    if database_url:
        url = throwaway_url(database_url)
    else:
        url = make_url(normalize_database_url(f"sqlite:///{workdir / name}.db"))
    return url, asyncio.run(empty_database(url))


def _exit_on_sigterm(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def run_in_workdir(name: str, run: Callable[[Path], int]) -> int:
    """Run `run` in a temporary directory and turn its ends into exit statuses: its own, 2 when
    it could not be set up, 130 on Ctrl-C, 128+15 on SIGTERM. The server is stopped by `run`'s
    own `finally`, which SIGTERM reaches as SystemExit."""
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        with tempfile.TemporaryDirectory(prefix=f"{name}-") as workdir:
            return run(Path(workdir))
    except BenchmarkError as error:
        print(f"{name} failed: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; the server was stopped", file=sys.stderr)
        return 130
