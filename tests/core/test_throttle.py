"""Request limits: the 429 and its `Retry-After`, per address, who is believed about the address,
keys that hold no emails, Redis storage and a Redis that is down or slow, and two real app
processes sharing one Redis."""

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
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from anyio.abc import Process
from pydantic import ValidationError
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request

from app.core.config import Settings
from app.core.throttle import (
    KEY_PREFIX,
    STORAGE_RETRY_SECONDS,
    Throttle,
    TooManyRequests,
    client_address,
)
from app.emails.models import OutboxEmail
from app.users.models import User
from tests.benchmarks.server import (
    free_port,
    migrate,
    print_log_tail,
    start_server,
    stop_server,
    wait_until_healthy,
)
from tests.conftest import TEST_SECRET
from tests.helpers import assert_problem

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
PASSWORD = "a-long-password"

ThrottleMaker = Callable[..., Throttle]


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
async def make_throttle(settings: Settings) -> AsyncIterator[ThrottleMaker]:
    """Build Throttles from the test settings with `changes`; all closed at teardown."""
    made: list[Throttle] = []

    def make(
        *,
        key_prefix: str = KEY_PREFIX,
        storage_retry_seconds: float = STORAGE_RETRY_SECONDS,
        **changes: Any,
    ) -> Throttle:
        throttle = Throttle(
            settings.model_copy(update=changes),
            key_prefix=key_prefix,
            storage_retry_seconds=storage_retry_seconds,
        )
        made.append(throttle)
        return throttle

    yield make
    for throttle in made:
        await throttle.aclose()


@pytest.fixture
async def use_throttle(app: Any, make_throttle: ThrottleMaker) -> AsyncIterator[ThrottleMaker]:
    """Like `make_throttle`, and the app serves with the Throttle built, for this test only."""
    original = app.state.throttle

    def use(**changes: Any) -> Throttle:
        app.state.throttle = make_throttle(**changes)
        return app.state.throttle  # type: ignore[no-any-return]

    yield use
    app.state.throttle = original


@pytest.fixture
async def redis_url() -> str:
    redis = Redis.from_url(REDIS_URL, socket_connect_timeout=0.5)
    try:
        await redis.ping()
    except RedisError as error:
        pytest.skip(f"no Redis at {REDIS_URL} ({error}); start one or set TEST_REDIS_URL")
    finally:
        await redis.aclose()
    return REDIS_URL


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


def peer_client(app: Any, peer: str) -> httpx2.AsyncClient:
    """A client whose requests come from `peer` (use it beside the `client` fixture, which
    points the app at the test's transaction)."""
    transport = httpx2.ASGITransport(app=app, client=(peer, 40000))
    return httpx2.AsyncClient(transport=transport, base_url="http://test/api/v1")


async def signup(client: httpx2.AsyncClient, email: str, **headers: str) -> httpx2.Response:
    return await client.post(
        "/users/signup", json={"email": email, "password": PASSWORD}, headers=headers
    )


async def count_users(session: AsyncSession, email: str) -> int:
    return await session.scalar(select(func.count()).where(User.email == email)) or 0


def throttle_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.msg["event"]
        for record in caplog.records
        if record.name == "app.core.throttle" and isinstance(record.msg, dict)
    ]


# --- over the limit ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_signup_over_the_limit_is_429_and_creates_nothing(
    client: httpx2.AsyncClient, session: AsyncSession, use_throttle: ThrottleMaker
) -> None:
    use_throttle(THROTTLE_SIGNUP_PER_ADDRESS="2/hour")
    for n in range(2):
        assert (await signup(client, f"allowed{n}@example.com")).status_code == 201

    response = await signup(client, "refused@example.com")

    problem = assert_problem(response, 429, type_="urn:problem:too-many-requests")
    assert problem["title"] == "Too Many Requests"
    retry_after = int(response.headers["retry-after"])
    assert 3500 < retry_after <= 3600
    assert "retry in 60 minutes" in problem["detail"]
    assert await count_users(session, "refused@example.com") == 0
    assert await count_users(session, "allowed1@example.com") == 1


@pytest.mark.anyio
async def test_the_limit_is_per_address(
    app: Any, client: httpx2.AsyncClient, use_throttle: ThrottleMaker
) -> None:
    use_throttle(THROTTLE_SIGNUP_PER_ADDRESS="1/hour")
    async with peer_client(app, "203.0.113.1") as first, peer_client(app, "203.0.113.2") as other:
        assert (await signup(first, "first@example.com")).status_code == 201
        assert (await signup(first, "first-again@example.com")).status_code == 429

        assert (await signup(other, "other@example.com")).status_code == 201


@pytest.mark.anyio
async def test_recovery_over_the_limit_is_429_and_queues_nothing(
    client: httpx2.AsyncClient, session: AsyncSession, use_throttle: ThrottleMaker
) -> None:
    use_throttle(THROTTLE_RECOVERY_PER_ADDRESS="2/hour")
    for n in range(2):
        assert (await client.post(f"/password-recovery/r{n}@example.com")).status_code == 200

    response = await client.post("/password-recovery/refused@example.com")

    assert_problem(response, 429, type_="urn:problem:too-many-requests")
    assert int(response.headers["retry-after"]) > 0
    queued = await session.scalars(select(OutboxEmail.recipient))
    assert "refused@example.com" not in queued.all()


@pytest.mark.anyio
async def test_closed_registration_is_403_and_counts_nothing(
    client: httpx2.AsyncClient,
    use_throttle: ThrottleMaker,
    override_settings: Callable[..., Settings],
) -> None:
    use_throttle(THROTTLE_SIGNUP_PER_ADDRESS="1/hour")
    override_settings(USERS_OPEN_REGISTRATION=False)
    for n in range(3):
        assert (await signup(client, f"closed{n}@example.com")).status_code == 403
    override_settings(USERS_OPEN_REGISTRATION=True)
    assert (await signup(client, "open@example.com")).status_code == 201


@pytest.mark.anyio
async def test_the_429_is_documented(client: httpx2.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert "429" in paths["/api/v1/users/signup"]["post"]["responses"]
    assert "429" in paths["/api/v1/password-recovery/{email}"]["post"]["responses"]


@pytest.mark.anyio
async def test_check_counts_nothing_and_hit_counts_one(make_throttle: ThrottleMaker) -> None:
    throttle = make_throttle(THROTTLE_LOGIN_FAILURES_PER_ACCOUNT="3/15 minutes")
    for _ in range(10):
        await throttle.check("login_failures_account", "someone@example.com")
    for _ in range(3):
        await throttle.hit("login_failures_account", "someone@example.com")

    with pytest.raises(TooManyRequests) as refused:
        await throttle.check("login_failures_account", "SomeOne@example.com")
    assert 890 < refused.value.retry_after <= 900
    assert refused.value.headers == {"Retry-After": str(refused.value.retry_after)}
    with pytest.raises(TooManyRequests):
        await throttle.hit("login_failures_account", "someone@example.com")
    await throttle.check("login_failures_account", "someone-else@example.com")

    await throttle.clear("login_failures_account", "someone@example.com")
    await throttle.check("login_failures_account", "someone@example.com")


@pytest.mark.anyio
async def test_disabled_is_a_no_op(client: httpx2.AsyncClient, use_throttle: ThrottleMaker) -> None:
    throttle = use_throttle(THROTTLE_ENABLED=False, THROTTLE_SIGNUP_PER_ADDRESS="1/hour")
    for n in range(3):
        assert (await signup(client, f"free{n}@example.com")).status_code == 201
    for _ in range(3):
        await throttle.hit("refresh", "a-session")
    await throttle.check("refresh", "a-session")


def test_retry_after_headers_belong_to_each_error() -> None:
    soon, later = TooManyRequests(5), TooManyRequests(3600)
    assert soon.headers == {"Retry-After": "5"}
    assert later.headers == {"Retry-After": "3600"}
    assert TooManyRequests.headers is None
    assert TooManyRequests(0).retry_after == 1
    assert soon.detail == "Too many attempts; retry in 5 seconds"


# --- who the client is ------------------------------------------------------------------------

TRUSTED = ["10.0.0.0/8", "192.0.2.1"]


def request_from(peer: str | None, *forwarded_for: str) -> Request:
    return Request(
        {
            "type": "http",
            "method": "POST",
            "path": "/",
            "headers": [(b"x-forwarded-for", value.encode()) for value in forwarded_for],
            "client": (peer, 40000) if peer else None,
        }
    )


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "expected"),
    [
        # Not from a proxy: the header is the client's own claim, ignored.
        ("203.0.113.5", ["198.51.100.7"], "203.0.113.5"),
        # From a proxy: what the proxy saw.
        ("10.0.0.2", ["198.51.100.7"], "198.51.100.7"),
        ("10.0.0.2", [], "10.0.0.2"),
        # The client sent its own header and the proxy appended to it: the right-most entry.
        ("10.0.0.2", ["6.6.6.6, 198.51.100.7"], "198.51.100.7"),
        ("10.0.0.2", ["6.6.6.6", "198.51.100.7"], "198.51.100.7"),
        # Two proxies: the right-most entry that is not one of ours.
        ("10.0.0.2", ["198.51.100.7, 10.0.0.9"], "198.51.100.7"),
        ("10.0.0.2", ["10.0.0.5, 10.0.0.9"], "10.0.0.5"),
        # A proxy that is trusted only as an exact address.
        ("192.0.2.1", ["198.51.100.7"], "198.51.100.7"),
        ("192.0.2.2", ["198.51.100.7"], "192.0.2.2"),
        # Garbage where an address should be: the last address we could believe.
        ("10.0.0.2", ["unknown"], "10.0.0.2"),
        ("10.0.0.2", ["198.51.100.7, garbage, 10.0.0.9"], "10.0.0.9"),
        # Ports, brackets and IPv4-mapped IPv6, as some proxies and dual-stack sockets write them.
        ("10.0.0.2", ["198.51.100.7:5555"], "198.51.100.7"),
        ("::ffff:10.0.0.2", ["[2001:DB8::1]:443"], "2001:db8::1"),
        (None, ["198.51.100.7"], "unknown"),
    ],
)
def test_client_address(
    settings: Settings, peer: str | None, forwarded_for: list[str], expected: str
) -> None:
    trusting = settings.model_copy(update={"TRUSTED_PROXIES": TRUSTED})
    assert client_address(request_from(peer, *forwarded_for), trusting) == expected


@pytest.mark.anyio
async def test_forwarded_for_from_an_untrusted_peer_changes_nothing(
    app: Any, client: httpx2.AsyncClient, use_throttle: ThrottleMaker
) -> None:
    use_throttle(THROTTLE_SIGNUP_PER_ADDRESS="2/hour")
    async with peer_client(app, "203.0.113.9") as attacker:
        for n in range(2):
            response = await signup(
                attacker, f"spoof{n}@example.com", **{"X-Forwarded-For": f"198.51.100.{n}"}
            )
            assert response.status_code == 201
        response = await signup(
            attacker, "spoof-more@example.com", **{"X-Forwarded-For": "198.51.100.99"}
        )
        assert response.status_code == 429


@pytest.mark.anyio
async def test_forwarded_for_from_a_trusted_proxy_is_the_address(
    app: Any,
    client: httpx2.AsyncClient,
    use_throttle: ThrottleMaker,
    override_settings: Callable[..., Settings],
) -> None:
    use_throttle(THROTTLE_SIGNUP_PER_ADDRESS="1/hour")
    override_settings(TRUSTED_PROXIES=["10.0.0.0/8"])
    async with peer_client(app, "10.1.2.3") as proxy:
        behind = {"X-Forwarded-For": "203.0.113.20"}
        assert (await signup(proxy, "behind@example.com", **behind)).status_code == 201
        assert (await signup(proxy, "behind-again@example.com", **behind)).status_code == 429
        # The same client cannot escape by prepending addresses: the proxy appends the real one.
        spoofed = {"X-Forwarded-For": "198.51.100.1, 203.0.113.20"}
        assert (await signup(proxy, "behind-spoofed@example.com", **spoofed)).status_code == 429
        # Another client behind the same proxy has its own limit.
        other = {"X-Forwarded-For": "203.0.113.21"}
        assert (await signup(proxy, "behind-other@example.com", **other)).status_code == 201


# --- settings ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["lots", "10/minute;20/hour", "0/hour", "", "10/fortnight"])
def test_a_bad_limit_is_refused_at_settings_time(value: str) -> None:
    with pytest.raises(ValidationError, match="THROTTLE_SIGNUP_PER_ADDRESS"):
        Settings(_env_file=None, THROTTLE_SIGNUP_PER_ADDRESS=value)


def test_limits_and_proxies_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THROTTLE_REFRESH_PER_SESSION", "5 per minute")
    monkeypatch.setenv("TRUSTED_PROXIES", "10.0.0.0/8, 192.0.2.1,2001:db8::/32")
    monkeypatch.setenv("REDIS_URL", "")
    settings = Settings(_env_file=None)
    assert settings.REDIS_URL is None
    assert settings.THROTTLE_REFRESH_PER_SESSION == "5 per minute"
    assert settings.TRUSTED_PROXIES == ["10.0.0.0/8", "192.0.2.1", "2001:db8::/32"]


@pytest.mark.parametrize(
    ("name", "value"),
    [("TRUSTED_PROXIES", "10.0.0.0/8,proxy.internal"), ("REDIS_URL", "http://127.0.0.1:6379")],
)
def test_bad_proxies_and_redis_urls_are_refused(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=name):
        Settings(_env_file=None)


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
