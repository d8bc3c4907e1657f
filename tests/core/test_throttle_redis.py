"""Request limits counted in Redis: storage shared by throttles, keys that hold no emails, a Redis
that is down or slow, and two real app processes sharing one Redis."""

import asyncio
import ipaddress
import logging
import os
import random
import shutil
import sqlite3
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from anyio.abc import Process
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.throttle import (
    Throttle,
    TooManyRequests,
)
from tests.benchmarks.server import (
    free_port,
    migrate,
    print_log_tail,
    start_server,
    stop_server,
    wait_until_healthy,
)
from tests.conftest import TEST_SECRET
from tests.core.throttling import (
    ThrottleMaker,
    count_users,
    signup,
    throttle_lines,
)
from tests.helpers import assert_problem

# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
async def redis_prefix(redis_url: str) -> AsyncIterator[str]:
    """A key prefix of this test's own in the shared Redis; its keys are deleted afterwards."""
    prefix = f"test-throttle-{uuid.uuid4().hex}"
    yield prefix
    redis = Redis.from_url(redis_url)
    keys = [key async for key in redis.scan_iter(match=f"{prefix}:*")]
    if keys:
        await redis.delete(*keys)
    await redis.aclose()


@pytest.fixture
def closed_port_url() -> str:
    """A Redis URL where nothing listens: every connection is refused at once."""
    return f"redis://127.0.0.1:{free_port()}/0"


# --- Redis ------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_redis_storage_is_shared_by_throttles(
    make_throttle: ThrottleMaker, redis_url: str, redis_prefix: str
) -> None:
    def on_redis() -> Throttle:
        return make_throttle(
            key_prefix=redis_prefix, REDIS_URL=redis_url, THROTTLE_REFRESH_PER_SESSION="3/minute"
        )

    one, other = on_redis(), on_redis()
    await one.hit("refresh", "session-1")
    await other.hit("refresh", "session-1")
    await one.hit("refresh", "session-1")

    with pytest.raises(TooManyRequests) as refused:
        await other.hit("refresh", "session-1")
    assert 55 < refused.value.retry_after <= 60
    with pytest.raises(TooManyRequests):
        await one.check("refresh", "session-1")
    await other.check("refresh", "session-2")


@pytest.mark.anyio
async def test_keys_hold_no_email(
    make_throttle: ThrottleMaker, redis_url: str, redis_prefix: str
) -> None:
    throttle = make_throttle(key_prefix=redis_prefix, REDIS_URL=redis_url)
    await throttle.hit("login_failures_account", "Alice.Liddell@Example.com")
    await throttle.hit("login_failures_address", "198.51.100.23")

    redis = Redis.from_url(redis_url, decode_responses=True)
    keys = [key async for key in redis.scan_iter(match=f"{redis_prefix}:*")]
    await redis.aclose()
    assert len(keys) == 2
    for key in keys:
        assert "alice" not in key.lower()
        assert "example" not in key.lower()
        assert "198.51.100.23" not in key
    # The same account however it is spelled: one key, counted twice.
    await throttle.hit("login_failures_account", "alice.liddell@example.com")
    redis = Redis.from_url(redis_url)
    assert len([key async for key in redis.scan_iter(match=f"{redis_prefix}:*")]) == 2
    await redis.aclose()


@pytest.mark.anyio
async def test_unreachable_redis_fails_open_with_one_warning(
    client: httpx2.AsyncClient,
    session: AsyncSession,
    use_throttle: ThrottleMaker,
    closed_port_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="app.core.throttle")
    # Retried on every request, to show that a long outage still logs once.
    use_throttle(
        REDIS_URL=closed_port_url, THROTTLE_SIGNUP_PER_ADDRESS="1/hour", storage_retry_seconds=0
    )
    for n in range(5):
        assert (await signup(client, f"open{n}@example.com")).status_code == 201

    assert throttle_lines(caplog) == ["throttle.degraded"]
    degraded = next(r.msg for r in caplog.records if r.name == "app.core.throttle")
    assert isinstance(degraded, dict)
    assert degraded["fail_open"] is True
    assert "connect" in degraded["error"].lower()
    assert await count_users(session, "open4@example.com") == 1


@pytest.mark.anyio
async def test_unreachable_redis_fails_closed_with_503(
    client: httpx2.AsyncClient,
    session: AsyncSession,
    use_throttle: ThrottleMaker,
    closed_port_url: str,
) -> None:
    use_throttle(REDIS_URL=closed_port_url, THROTTLE_FAIL_OPEN=False)
    for n in range(3):  # the first after the failure, and those that skip Redis for a while
        response = await signup(client, f"closed{n}@example.com")
        assert_problem(response, 503, type_="urn:problem:service-unavailable")
        assert int(response.headers["retry-after"]) >= 1
        assert await count_users(session, f"closed{n}@example.com") == 0

    response = await client.post("/password-recovery/someone@example.com")
    assert_problem(response, 503)


@pytest.mark.anyio
async def test_a_redis_that_does_not_answer_costs_half_a_second(
    app: Any, make_throttle: ThrottleMaker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="app.core.throttle")

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up
        writer.close()

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        throttle = make_throttle(REDIS_URL=f"redis://127.0.0.1:{port}/0")
        started = time.monotonic()
        await throttle.hit("signup", "198.51.100.1")
        first = time.monotonic() - started
        started = time.monotonic()
        for _ in range(20):  # within STORAGE_RETRY_SECONDS: Redis is not waited for again
            await throttle.hit("signup", "198.51.100.1")
        rest = time.monotonic() - started
        await throttle.aclose()
    finally:
        server.close()
        await server.wait_closed()

    assert 0.4 < first < 1.5
    assert rest < 0.1
    assert throttle_lines(caplog) == ["throttle.degraded"]


@pytest.mark.anyio
async def test_redis_down_then_back_logs_degraded_then_recovered(
    app: Any, make_throttle: ThrottleMaker, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    caplog.set_level(logging.INFO, logger="app.core.throttle")
    port = free_port()
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir"]
    command += [str(tmp_path), "--appendonly", "no"]

    async def start_redis() -> Process:
        process = await anyio.open_process(command, stdout=subprocess.DEVNULL)
        redis = Redis(port=port, socket_connect_timeout=0.2)
        for _ in range(50):
            try:
                await redis.ping()
                break
            except RedisError:
                await anyio.sleep(0.05)
        await redis.aclose()
        return process

    throttle = make_throttle(REDIS_URL=f"redis://127.0.0.1:{port}/0", storage_retry_seconds=0)
    process = await start_redis()
    try:
        await throttle.hit("recovery", "198.51.100.1")
        process.terminate()
        await process.wait()
        for _ in range(3):
            await throttle.hit("recovery", "198.51.100.1")
        process = await start_redis()
        await throttle.hit("recovery", "198.51.100.1")
        await throttle.hit("recovery", "198.51.100.1")
    finally:
        process.terminate()
        await process.wait()

    assert throttle_lines(caplog) == ["throttle.degraded", "throttle.recovered"]


# --- two app processes, one Redis ---------------------------------------------------------------


@pytest.mark.anyio
async def test_two_processes_share_the_limit(
    redis_url: str, make_throttle: ThrottleMaker, tmp_path: Path
) -> None:
    # Both processes see the test as 127.0.0.1, a trusted proxy, and the client as a random
    # address of the documentation range: this run's keys are its own, whoever else uses Redis.
    address = str(ipaddress.IPv6Address(0x2001_0DB8 << 96 | random.getrandbits(64)))
    neighbour = str(ipaddress.IPv6Address(0x2001_0DB8 << 96 | random.getrandbits(64)))
    database = tmp_path / "shared.db"
    env = {
        **os.environ,
        "ENVIRONMENT": "test",
        "SECRET_KEY": TEST_SECRET,
        "DATABASE_URL": f"sqlite+aiosqlite:///{database}",
        "ARGON2_TIME_COST": "1",
        "ARGON2_MEMORY_COST": "8192",
        "ARGON2_PARALLELISM": "1",
        "EMAIL_SENDER": "false",
        "USERS_OPEN_REGISTRATION": "true",
        "BACKEND_CORS_ORIGINS": "",
        "LOG_LEVEL": "WARNING",
        "LOG_JSON": "false",
        "REDIS_URL": redis_url,
        "THROTTLE_ENABLED": "true",
        # Closed: a process that could not reach Redis answers 503, never a passing 201.
        "THROTTLE_FAIL_OPEN": "false",
        "THROTTLE_SIGNUP_PER_ADDRESS": "3/hour",
        "TRUSTED_PROXIES": "127.0.0.1",
        # uvicorn's own X-Forwarded-For handling (on for 127.0.0.1 by default) off: the app's
        # TRUSTED_PROXIES is what finds the client here.
        "UVICORN_PROXY_HEADERS": "false",
    }
    await anyio.to_thread.run_sync(migrate, env)

    servers, clients, logs = [], [], []
    try:
        for name in ("a", "b"):
            port = free_port()
            logs.append(tmp_path / f"{name}.log")
            servers.append(start_server(port, env, logs[-1]))
            clients.append(httpx2.AsyncClient(base_url=f"http://127.0.0.1:{port}/api/v1"))
        a, b = clients
        await asyncio.gather(
            *(wait_until_healthy(c, s) for c, s in zip(clients, servers, strict=True))
        )

        forwarded = {"X-Forwarded-For": address}
        for n in range(3):
            assert (await signup(a, f"via-a{n}@example.com", **forwarded)).status_code == 201

        refused = await signup(b, "via-b@example.com", **forwarded)
        problem = assert_problem(refused, 429, type_="urn:problem:too-many-requests")
        assert 3500 < int(refused.headers["retry-after"]) <= 3600, problem
        assert (await signup(a, "via-a-again@example.com", **forwarded)).status_code == 429
        # B is not refusing everyone: another address still signs up there.
        other = {"X-Forwarded-For": neighbour}
        assert (await signup(b, "neighbour@example.com", **other)).status_code == 201
        # The database both processes share holds the sign-ups that were allowed, and only them.
        with sqlite3.connect(database) as connection:
            emails = {row[0] for row in connection.execute("SELECT email FROM users")}
        assert {"via-a0@example.com", "neighbour@example.com"} <= emails
        assert not {"via-b@example.com", "via-a-again@example.com"} & emails
    except BaseException:
        for log in logs:
            print_log_tail(log)
        raise
    finally:
        for client in clients:
            await client.aclose()
        for server in servers:
            stop_server(server)
        cleanup = make_throttle(
            REDIS_URL=redis_url, SECRET_KEY=TEST_SECRET, THROTTLE_SIGNUP_PER_ADDRESS="3/hour"
        )
        for key in (address, neighbour, "127.0.0.1"):  # the last if the proxy was not believed
            await cleanup.clear("signup", key)
