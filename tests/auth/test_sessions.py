"""Sessions and their tokens through HTTP and the database: short access tokens, rotating
refresh tokens with reuse detection, logout of one or every session, and the changes that end
every session of an account for good."""

import asyncio
import hashlib
from datetime import timedelta
from typing import Any

import httpx2
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import RefreshToken
from app.core.db import utcnow
from app.users.models import User, UserSession
from tests.core.test_database import committing_app, committing_client  # noqa: F401 - fixtures
from tests.helpers import assert_problem, assert_unauthorized, change_password, login
from tests.users.factories import DEFAULT_PASSWORD, UserFactory

pytestmark = pytest.mark.anyio


async def sign_in(client: httpx2.AsyncClient, user: User) -> dict[str, Any]:
    response = await login(client, user.email, DEFAULT_PASSWORD)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def bearer(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


async def refresh(client: httpx2.AsyncClient, token: str) -> httpx2.Response:
    return await client.post("/login/refresh", json={"refresh_token": token})


async def sessions_of(session: AsyncSession, user: User) -> list[UserSession]:
    rows = await session.scalars(
        select(UserSession)
        .where(UserSession.user_id == user.id)
        .order_by(UserSession.created_at)
        .execution_options(populate_existing=True)
    )
    return list(rows)


async def test_login_opens_a_session_with_a_short_access_token_and_a_refresh_token(
    client: httpx2.AsyncClient, user: User, session: AsyncSession
) -> None:
    response = await login(client, user.email, DEFAULT_PASSWORD)

    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    tokens = response.json()
    assert tokens["token_type"] == "bearer"
    assert tokens["expires_in"] == 15 * 60
    assert len(tokens["refresh_token"]) >= 40
    [opened] = await sessions_of(session, user)
    assert opened.ended_at is None
    stored = (await session.scalars(select(RefreshToken))).all()
    # Stored as its SHA-256 only.
    assert [row.token_hash for row in stored] == [
        hashlib.sha256(tokens["refresh_token"].encode()).hexdigest()
    ]
    assert (await client.get("/users/me", headers=bearer(tokens))).status_code == 200


async def test_a_refresh_rotates_the_pair(
    client: httpx2.AsyncClient, user: User, session: AsyncSession
) -> None:
    first = await sign_in(client, user)
    response = await refresh(client, first["refresh_token"])

    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    second = response.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert (await client.get("/users/me", headers=bearer(second))).status_code == 200
    assert len(await sessions_of(session, user)) == 1  # the same session, renewed


async def test_a_reused_refresh_token_ends_the_whole_session(
    client: httpx2.AsyncClient, user: User, session: AsyncSession
) -> None:
    first = await sign_in(client, user)
    second = (await refresh(client, first["refresh_token"])).json()
    # Rotated longer ago than a client's own race could explain.
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.rotated_at.is_not(None))
        .values(rotated_at=utcnow() - timedelta(seconds=30))
    )

    # Whoever presents the rotated token again copied it: the legitimate holder's newer tokens
    # die with the session too.
    reused = await refresh(client, first["refresh_token"])

    assert "already used" in assert_unauthorized(reused)["detail"]
    assert_unauthorized(await refresh(client, second["refresh_token"]))
    assert_unauthorized(await client.get("/users/me", headers=bearer(second)))
    [ended] = await sessions_of(session, user)
    assert ended.ended_reason == "refresh-reuse"


async def test_two_refreshes_racing_with_one_token_give_one_pair(
    committing_client: httpx2.AsyncClient,  # noqa: F811 - the imported fixture
) -> None:
    email = f"committed-race-{id(committing_client)}@example.com"
    signup = await committing_client.post(
        "/users/signup", json={"email": email, "password": "committed-1"}
    )
    assert signup.status_code == 201
    tokens = (await login(committing_client, email, "committed-1")).json()

    responses = await asyncio.gather(
        *(refresh(committing_client, tokens["refresh_token"]) for _ in range(4))
    )

    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200, 401, 401, 401]
    winner = next(r for r in responses if r.status_code == 200).json()
    # The race is no theft: the winner's new pair keeps working.
    assert (await committing_client.get("/users/me", headers=bearer(winner))).status_code == 200
    assert (await refresh(committing_client, winner["refresh_token"])).status_code == 200


async def test_a_reuse_within_the_grace_period_is_refused_but_ends_nothing(
    client: httpx2.AsyncClient, user: User, session: AsyncSession
) -> None:
    first = await sign_in(client, user)
    second = (await refresh(client, first["refresh_token"])).json()
    assert_unauthorized(await refresh(client, first["refresh_token"]))
    assert (await client.get("/users/me", headers=bearer(second))).status_code == 200
    [alive] = await sessions_of(session, user)
    assert alive.ended_at is None


@pytest.mark.parametrize(
    "token", ["", "x", "not-a-real-refresh-token-but-long-enough-to-look-like-one"]
)
async def test_an_unknown_refresh_token_is_a_401(client: httpx2.AsyncClient, token: str) -> None:
    response = await refresh(client, token)
    assert response.status_code in (401, 422)
    assert_problem(response, response.status_code)


async def test_no_refresh_token_at_all_is_a_401(client: httpx2.AsyncClient) -> None:
    assert_unauthorized(await client.post("/login/refresh"))


async def test_an_expired_refresh_token_is_a_401(
    client: httpx2.AsyncClient, user: User, session: AsyncSession
) -> None:
    tokens = await sign_in(client, user)
    await session.execute(update(RefreshToken).values(expires_at=utcnow() - timedelta(seconds=1)))
    response = await refresh(client, tokens["refresh_token"])
    assert "expired" in assert_unauthorized(response)["detail"]


async def test_a_refresh_token_is_no_access_token_and_the_other_way_round(
    client: httpx2.AsyncClient, user: User
) -> None:
    tokens = await sign_in(client, user)
    refresh_as_access = {"Authorization": f"Bearer {tokens['refresh_token']}"}
    assert_unauthorized(await client.get("/users/me", headers=refresh_as_access))
    # Longer than any refresh token: refused by validation before it is even looked up.
    as_refresh = await refresh(client, tokens["access_token"])
    assert_problem(as_refresh, as_refresh.status_code)
    assert as_refresh.status_code in (401, 422)


async def test_logout_ends_this_session_only(
    client: httpx2.AsyncClient, user: User, session: AsyncSession
) -> None:
    here = await sign_in(client, user)
    elsewhere = await sign_in(client, user)

    response = await client.post("/logout", headers=bearer(here))

    assert response.status_code == 200
    assert_unauthorized(await client.get("/users/me", headers=bearer(here)))
    assert_unauthorized(await refresh(client, here["refresh_token"]))
    assert (await client.get("/users/me", headers=bearer(elsewhere))).status_code == 200
    assert (await refresh(client, elsewhere["refresh_token"])).status_code == 200
    reasons = [s.ended_reason for s in await sessions_of(session, user)]
    assert reasons == ["logout", None]


async def test_logout_all_ends_every_session(
    client: httpx2.AsyncClient, user: User, session: AsyncSession
) -> None:
    sessions = [await sign_in(client, user) for _ in range(3)]

    assert (await client.post("/logout/all", headers=bearer(sessions[0]))).status_code == 200

    for tokens in sessions:
        assert_unauthorized(await client.get("/users/me", headers=bearer(tokens)))
        assert_unauthorized(await refresh(client, tokens["refresh_token"]))
    assert all(s.ended_at is not None for s in await sessions_of(session, user))
    assert (await sign_in(client, user))["access_token"]  # and one can sign in again


async def test_logout_needs_a_valid_session(client: httpx2.AsyncClient) -> None:
    assert_unauthorized(await client.post("/logout"))
    assert_unauthorized(await client.post("/logout/all"))


async def test_a_password_change_ends_every_session(client: httpx2.AsyncClient, user: User) -> None:
    other = await sign_in(client, user)
    here = await sign_in(client, user)
    changed = await change_password(client, bearer(here), DEFAULT_PASSWORD, "a-new-password-1")
    assert changed.status_code == 200
    for tokens in (here, other):
        assert_unauthorized(await client.get("/users/me", headers=bearer(tokens)))
        assert_unauthorized(await refresh(client, tokens["refresh_token"]))


@pytest.mark.parametrize(
    ("change", "undo"),
    [
        ({"is_active": False}, {"is_active": True}),
        ({"is_superuser": False}, {"is_superuser": True}),
        ({"password": "set-by-the-admin-1"}, None),
    ],
    ids=["deactivation", "demotion", "password"],
)
async def test_an_admin_change_ends_every_session_for_good(
    client: httpx2.AsyncClient,
    session: AsyncSession,
    superuser_headers: dict[str, str],
    change: dict[str, Any],
    undo: dict[str, Any] | None,
) -> None:
    target = await UserFactory.persist(session, is_superuser=True)
    tokens = await sign_in(client, target)

    changed = await client.patch(f"/users/{target.id}", headers=superuser_headers, json=change)
    assert changed.status_code == 200, changed.text
    if undo is not None:  # reactivated, promoted again: the old tokens stay dead
        restored = await client.patch(f"/users/{target.id}", headers=superuser_headers, json=undo)
        assert restored.status_code == 200

    assert_unauthorized(await client.get("/users/me", headers=bearer(tokens)))
    assert_unauthorized(await refresh(client, tokens["refresh_token"]))


async def test_an_unrelated_admin_change_ends_no_session(
    client: httpx2.AsyncClient, user: User, superuser_headers: dict[str, str]
) -> None:
    tokens = await sign_in(client, user)
    renamed = await client.patch(
        f"/users/{user.id}", headers=superuser_headers, json={"full_name": "Renamed"}
    )
    assert renamed.status_code == 200
    assert (await client.get("/users/me", headers=bearer(tokens))).status_code == 200


async def test_deleting_the_account_ends_its_sessions(
    client: httpx2.AsyncClient, user: User, session: AsyncSession
) -> None:
    tokens = await sign_in(client, user)
    assert (await client.delete("/users/me", headers=bearer(tokens))).status_code == 200
    assert_unauthorized(await refresh(client, tokens["refresh_token"]))
    assert await sessions_of(session, user) == []


# --- cookie mode --------------------------------------------------------------------------


async def test_cookie_mode_keeps_the_refresh_token_out_of_reach_of_scripts(
    client: httpx2.AsyncClient, user: User, override_settings: Any
) -> None:
    override_settings(REFRESH_TOKEN_COOKIE=True)
    response = await login(client, user.email, DEFAULT_PASSWORD)

    assert response.status_code == 200
    assert response.json()["refresh_token"] is None
    cookies = {c.split("=", 1)[0]: c for c in response.headers.get_list("set-cookie")}
    refresh_cookie = cookies["refresh_token"].lower()
    for attribute in ("httponly", "secure", "samesite=strict", "path=/api/v1/login/refresh"):
        assert attribute in refresh_cookie
    assert "httponly" not in cookies["csrf_token"].lower()

    token = response.headers["set-cookie"].split("refresh_token=", 1)[1].split(";", 1)[0]
    csrf = cookies["csrf_token"].split("=", 1)[1].split(";", 1)[0]
    jar = f"refresh_token={token}; csrf_token={csrf}"
    # A cross-site request carries the cookie but cannot read the CSRF cookie to echo it.
    forged = await client.post("/login/refresh", headers={"Cookie": jar})
    assert_problem(forged, 403)
    wrong = await client.post("/login/refresh", headers={"Cookie": jar, "X-CSRF-Token": "guess"})
    assert_problem(wrong, 403)

    renewed = await client.post("/login/refresh", headers={"Cookie": jar, "X-CSRF-Token": csrf})
    assert renewed.status_code == 200, renewed.text
    assert "refresh_token=" in renewed.headers["set-cookie"]
    logout = await client.post(
        "/logout", headers={"Authorization": f"Bearer {renewed.json()['access_token']}"}
    )
    assert (
        'refresh_token=""' in logout.headers["set-cookie"]
        or "Max-Age=0" in logout.headers["set-cookie"]
    )
