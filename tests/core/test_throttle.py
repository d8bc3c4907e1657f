"""Request limits: the 429 and its `Retry-After`, per address, who is believed about the address,
keys that hold no emails. Redis storage, a Redis that is down or slow and two processes sharing
one are in test_throttle_redis.py."""

from collections.abc import Callable
from typing import Any

import httpx2
import pytest
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request

from app.core.config import Settings
from app.core.throttle import (
    TooManyRequests,
    client_address,
)
from app.emails.models import OutboxEmail
from tests.core.throttling import (
    ThrottleMaker,
    count_users,
    peer_client,
    signup,
)
from tests.helpers import assert_problem

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
