"""Failed logins are limited per account and per address, refreshes per session: over the limit
a 429 with Retry-After, answered before any password is hashed."""

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx2
import pytest

from app.core.config import Settings
from app.core.security import Passwords
from app.core.throttle import Throttle
from app.users.models import User
from tests.helpers import assert_problem, login
from tests.users.factories import DEFAULT_PASSWORD

pytestmark = pytest.mark.anyio

WRONG = "not-the-password-1"


@pytest.fixture
async def limits(app: Any, settings: Settings) -> AsyncIterator[Callable[..., None]]:
    """Install a Throttle with these limits for one test: `limits(THROTTLE_...="3/hour")`."""
    original = app.state.throttle
    created: list[Throttle] = []

    def install(**changes: str) -> None:
        throttle = Throttle(settings.model_copy(update=changes))
        created.append(throttle)
        app.state.throttle = throttle

    yield install
    app.state.throttle = original
    for throttle in created:
        await throttle.aclose()


@pytest.fixture
def hashes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every password verification, as it happens."""
    seen: list[str] = []
    original = Passwords._verify_and_update

    def recording(
        self: Passwords, password: str, hashed: str, **options: bool
    ) -> tuple[bool, str | None]:
        seen.append(password)
        return original(self, password, hashed, **options)

    monkeypatch.setattr(Passwords, "_verify_and_update", recording)
    return seen


async def test_failed_logins_lock_the_account_before_any_hashing(
    client: httpx2.AsyncClient, user: User, limits: Callable[..., None], hashes: list[str]
) -> None:
    limits(THROTTLE_LOGIN_FAILURES_PER_ACCOUNT="3/15 minutes")
    for _ in range(3):
        assert_problem(await login(client, user.email, WRONG), 400)
    assert len(hashes) == 3

    # Even the right password, even in another case: the account's limit is reached.
    blocked = await login(client, user.email.upper(), DEFAULT_PASSWORD)

    body = assert_problem(blocked, 429)
    assert 0 < int(blocked.headers["retry-after"]) <= 15 * 60
    assert "retry in" in body["detail"]
    assert len(hashes) == 3  # refused without hashing


async def test_successful_logins_do_not_count(
    client: httpx2.AsyncClient, user: User, limits: Callable[..., None]
) -> None:
    limits(THROTTLE_LOGIN_FAILURES_PER_ACCOUNT="2/15 minutes")
    for _ in range(4):
        assert (await login(client, user.email, DEFAULT_PASSWORD)).status_code == 200


async def test_failed_logins_lock_the_address_across_accounts(
    client: httpx2.AsyncClient,
    user: User,
    other_user: User,
    limits: Callable[..., None],
    hashes: list[str],
) -> None:
    limits(THROTTLE_LOGIN_FAILURES_PER_ADDRESS="3/15 minutes")
    for account in (user, other_user, user):
        assert_problem(await login(client, account.email, WRONG), 400)
    assert_problem(await login(client, other_user.email, DEFAULT_PASSWORD), 429)
    assert_problem(await login(client, "nobody@example.com", WRONG), 429)
    assert len(hashes) == 3


async def test_refreshes_are_limited_per_session(
    client: httpx2.AsyncClient, user: User, limits: Callable[..., None]
) -> None:
    limits(THROTTLE_REFRESH_PER_SESSION="2/minute")
    tokens = (await login(client, user.email, DEFAULT_PASSWORD)).json()
    other_session = (await login(client, user.email, DEFAULT_PASSWORD)).json()
    for _ in range(2):
        response = await client.post(
            "/login/refresh", json={"refresh_token": tokens["refresh_token"]}
        )
        assert response.status_code == 200, response.text
        tokens = response.json()

    limited = await client.post("/login/refresh", json={"refresh_token": tokens["refresh_token"]})

    assert_problem(limited, 429)
    assert int(limited.headers["retry-after"]) <= 60
    # The token was not spent by the refused attempt, and other sessions are not limited.
    other = await client.post(
        "/login/refresh", json={"refresh_token": other_session["refresh_token"]}
    )
    assert other.status_code == 200
