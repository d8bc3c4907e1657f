"""The server as the image runs it: the Dockerfile's CMD, a real process, a raw socket.

- Production refuses unsafe settings: one line per problem on stderr, no traceback, a non-zero
  exit status, with one worker or several.
- A safe production configuration starts, without the docs, with HSTS behind an https proxy.
- Request heads are bounded: a 32 MiB header or 100,000 headers are a 431 problem and a closed
  connection, without the server's memory growing by what was sent. (uvicorn's plain httptools
  protocol accepted both and answered 200; h11 answers a plain-text 400 past 16 KiB.)
"""

import functools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx2
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.config import API_V1_PREFIX, Settings
from tests.benchmarks.server import HOST, ROOT, free_port, migrate
from tests.deploy import dockerfile

pytestmark = pytest.mark.anyio

STARTUP_SECONDS = 60
SAFE_SECRET = "k3Zq9-TwLp_0vXe7RfYb2NcHsUa8MgDj-4Vn"
SAFE_PASSWORD = "a-long-and-safe-password"


IMAGE = dockerfile.read()["runtime"]


def dockerfile_command(*extra: str) -> list[str]:
    """The Dockerfile's CMD, with this interpreter, on the loopback; the port comes from PORT."""
    command = list(IMAGE.cmd)
    assert command[0] == "python"
    command[0] = sys.executable
    command[command.index("--host") + 1] = HOST
    return [*command, *extra]


def dockerfile_env(data: Path, **values: str) -> dict[str, str]:
    """The Dockerfile's ENV (its /app here, its /data in `data`) and `values`, without anything
    of ours that could change the outcome."""
    base = {
        name: value
        for name, value in os.environ.items()
        if name in {"PATH", "HOME", "LANG", "TMPDIR", "PYTHONPATH"}
    }
    return dockerfile.environment(IMAGE, {"/app": ROOT, "/data": data}, base, **values)


# --- production refuses to start unsafe -------------------------------------------------------


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_production_refuses_unsafe_settings_one_line_each_no_traceback(
    workers: str, tmp_path: Path
) -> None:
    env = dockerfile_env(
        tmp_path,
        PORT=str(free_port()),
        SECRET_KEY="s" * 38,
        FIRST_SUPERUSER_PASSWORD="x",
        BACKEND_CORS_ORIGINS="null,https://*.example.com",
        ARGON2_TIME_COST="1",
        ARGON2_MEMORY_COST="8192",
        DATABASE_URL=f"sqlite:///{tmp_path}/app.db",
        WEB_CONCURRENCY=workers,
    )
    run = functools.partial(
        subprocess.run,
        dockerfile_command(),
        cwd=tmp_path,  # no .env file here
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=STARTUP_SECONDS,
        check=False,
    )
    completed: subprocess.CompletedProcess[str] = await anyio.to_thread.run_sync(run)
    output = completed.stdout + completed.stderr
    assert completed.returncode == 3, output
    assert "Traceback" not in output
    lines = completed.stderr.splitlines()
    for start in (
        "SECRET_KEY must be random",
        "FIRST_SUPERUSER_PASSWORD must be at least 12 characters",
        "BACKEND_CORS_ORIGINS may not contain 'null', 'https://*.example.com'",
        "ARGON2_MEMORY_COST=8192 with ARGON2_TIME_COST=1 is below the OWASP minimum",
        "DATABASE_URL must point at PostgreSQL",
    ):
        # Each problem once: with workers too, the supervisor reads the settings (for its
        # logging, app.serve) and stops before it starts any worker.
        matching = [line for line in lines if line.strip().startswith(start)]
        assert len(matching) == 1, (start, completed.stderr)


# --- a running server --------------------------------------------------------------------------


@dataclass
class Running:
    base: str
    process: "subprocess.Popen[bytes]"
    production: bool
    log: Path


def _start(
    command: list[str], env: dict[str, str], port: int, log: Path
) -> "subprocess.Popen[bytes]":
    with log.open("wb") as out:
        return subprocess.Popen(  # noqa: S603 - our interpreter, the Dockerfile's arguments
            command,
            cwd=ROOT,
            env={**env, "PORT": str(port)},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _wait_until_up(running: Running) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        assert running.process.poll() is None, running.log.read_text()
        try:
            if httpx2.get(f"{running.base}/utils/health-check/", timeout=2).status_code == 200:
                return
        except httpx2.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"not up within {STARTUP_SECONDS} s:\n{running.log.read_text()}")


def _stop(running: Running) -> bool:
    """SIGTERM; whether it stopped gracefully. One process re-raises the signal once it has
    shut down (uvicorn's way: exit by SIGTERM); with workers the parent exits 0."""
    running.process.send_signal(signal.SIGTERM)
    try:
        status = running.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(running.process.pid, signal.SIGKILL)  # its own session: workers included
        running.process.wait()
        return False
    return status in (0, -signal.SIGTERM) and "Application shutdown complete." in (
        running.log.read_text()
    )


@pytest.fixture(scope="module")
def server_env(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Production on the suite's PostgreSQL database (its superuser removed after); on SQLite,
    which production refuses, `staging` with a migrated file of its own."""
    email = f"image-{uuid.uuid4().hex[:8]}@example.com"
    safe = {
        "SECRET_KEY": SAFE_SECRET,
        "FIRST_SUPERUSER": email,
        "FIRST_SUPERUSER_PASSWORD": SAFE_PASSWORD,
        "ARGON2_TIME_COST": "2",
        "ARGON2_MEMORY_COST": "19456",
        "ARGON2_PARALLELISM": "1",
        "EMAIL_SENDER": "false",
        "PYTHONPATH": str(ROOT),
    }
    data = tmp_path_factory.mktemp("image")
    if settings.is_sqlite:
        env = dockerfile_env(data, ENVIRONMENT="staging", **safe)  # the image's /data/app.db
        migrate(env)
    else:
        url = make_url(settings.DATABASE_URL).render_as_string(hide_password=False)
        env = dockerfile_env(data, DATABASE_URL=url, **safe)
    return env


@pytest.fixture(scope="module")
def image_server(
    server_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    port = free_port()
    log = tmp_path_factory.mktemp("image-log") / "server.log"
    running = Running(
        base=f"http://{HOST}:{port}{API_V1_PREFIX}",
        process=_start(dockerfile_command(), server_env, port, log),
        production=server_env["ENVIRONMENT"] == "production",
        log=log,
    )
    try:
        _wait_until_up(running)
        yield running
    finally:
        assert _stop(running), log.read_text()


@pytest.fixture(scope="module", autouse=True)
async def _remove_the_superuser(
    server_env: dict[str, str], engine: AsyncEngine
) -> AsyncIterator[None]:
    yield
    if server_env["ENVIRONMENT"] == "production":
        async with engine.begin() as connection:
            await connection.execute(
                text("DELETE FROM users WHERE email = :e"), {"e": server_env["FIRST_SUPERUSER"]}
            )


async def test_a_safe_configuration_starts_with_hygiene(image_server: Running) -> None:
    health = httpx2.get(f"{image_server.base}/utils/health-check/")
    assert health.json() is True
    assert health.headers["x-content-type-options"] == "nosniff"
    assert health.headers["x-frame-options"] == "DENY"
    assert health.headers["cache-control"] == "no-store"
    assert "strict-transport-security" not in health.headers
    head = httpx2.head(f"{image_server.base}/utils/health-check/")
    assert head.status_code == 200
    assert head.content == b""
    # --proxy-headers: https as the load balancer (on 127.0.0.1, trusted by default) says.
    proxied = httpx2.get(
        f"{image_server.base}/utils/health-check/", headers={"X-Forwarded-Proto": "https"}
    )
    assert proxied.headers["strict-transport-security"].startswith("max-age=")
    origin = image_server.base.removesuffix(API_V1_PREFIX)
    docs = [f"{origin}/docs", f"{origin}/redoc", f"{image_server.base}/openapi.json"]
    for url in docs:
        expected = 404 if image_server.production else 200
        assert httpx2.get(url).status_code == expected, url


def _rss_peak_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    assert found
    return int(found.group(1))


def _send_head(port: int, lines: Iterator[bytes]) -> bytes:
    """Send a request head line by line until the server stops reading; return its answer."""
    with socket.create_connection((HOST, port), timeout=10) as sock:
        try:
            sock.sendall(f"GET {API_V1_PREFIX}/utils/health-check/ HTTP/1.1\r\n".encode())
            for line in lines:
                sock.sendall(line)
            sock.sendall(b"\r\n")
        except OSError:
            pass  # closed after its answer, while we were still sending: read that answer
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except OSError:
            pass
        return answer


def _huge_header(size: int) -> Iterator[bytes]:
    yield b"Host: test\r\nX-Huge: "
    for _ in range(size // 65536):
        yield b"a" * 65536
    yield b"\r\n"


def _many_headers(count: int) -> Iterator[bytes]:
    yield b"Host: test\r\n"
    for n in range(count):
        yield b"X-H%d: v\r\n" % n


def _assert_431_problem(answer: bytes, limit_words: str) -> None:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 "), answer[:300]
    assert b"content-type: application/problem+json" in head
    assert b"connection: close" in head
    assert b"x-content-type-options: nosniff" in head
    problem = json.loads(body)
    assert problem["status"] == 431
    assert limit_words in problem["detail"]
    assert problem["request_id"]


async def test_a_32_mib_header_is_a_431_and_memory_stays_flat(image_server: Running) -> None:
    port = int(image_server.base.split(":")[2].split("/")[0])
    before = _rss_peak_kib(image_server.process.pid)
    answer = _send_head(port, _huge_header(32 * 1024 * 1024))
    _assert_431_problem(answer, "larger than the limit of 32768 bytes")
    many = _send_head(port, _many_headers(100_000))
    _assert_431_problem(many, "more than the limit of 100 header fields")
    # Unbounded, the peak grew by the 32 MiB sent (measured: +34 MiB).
    assert _rss_peak_kib(image_server.process.pid) - before < 4 * 1024
    # Within the limits, the same server answers as usual.
    within = b"Host: test\r\nConnection: close\r\nX-Ok: " + b"a" * 16000 + b"\r\n"
    fine = _send_head(port, iter([within]))
    assert fine.startswith(b"HTTP/1.1 200 "), fine[:300]
    assert image_server.process.poll() is None


async def test_with_h11_a_large_head_is_a_plain_400(
    server_env: dict[str, str], tmp_path: Path
) -> None:
    # For the record: `--http h11` (not what we run) has its own bound, 16 KiB by default
    # (--h11-max-incomplete-event-size), answered with a plain-text 400 and a closed connection.
    port = free_port()
    running = Running(
        base=f"http://{HOST}:{port}{API_V1_PREFIX}",
        process=_start(dockerfile_command("--http", "h11"), server_env, port, tmp_path / "log"),
        production=True,
        log=tmp_path / "log",
    )
    try:
        _wait_until_up(running)
        answer = _send_head(port, _huge_header(32 * 1024 * 1024))
        assert answer.startswith(b"HTTP/1.1 400 "), answer[:300]
        assert b"Invalid HTTP request received." in answer
    finally:
        assert _stop(running), running.log.read_text()


async def test_the_bound_holds_for_each_request_of_a_kept_alive_connection(
    image_server: Running,
) -> None:
    port = int(image_server.base.split(":")[2].split("/")[0])
    request = f"GET {API_V1_PREFIX}/utils/health-check/ HTTP/1.1\r\nHost: test\r\n".encode()
    with socket.create_connection((HOST, port), timeout=10) as sock:
        answers = b""
        for n in range(3):  # heads that add up past the limit, each within it: all answered
            sock.sendall(request + b"X-Ok: " + b"a" * 20000 + b"\r\n\r\n")
            while answers.count(b"\r\n\r\ntrue") < n + 1:
                answers += sock.recv(65536)
        assert answers.count(b"HTTP/1.1 200 ") == 3
        try:
            sock.sendall(request)
            for line in _huge_header(1024 * 1024):
                sock.sendall(line)
        except OSError:
            pass
        rest = b""
        try:
            while chunk := sock.recv(65536):
                rest += chunk
        except OSError:
            pass
    _assert_431_problem(rest, "larger than the limit of 32768 bytes")
