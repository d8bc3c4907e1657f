"""Password recovery through HTTP and the database: the request queues an email (and says the same
for every address), the reset link's token works once, expires, and ends every session."""

import re
import time
import uuid
from typing import Any

import httpx2
import pytest
from joserfc import jwt
from joserfc.jwk import OctKey
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.core.security import create_reset_token, credential_fingerprint
from app.emails.models import OutboxEmail
from app.users.models import User
from tests.conftest import TEST_SECRET, auth_headers
from tests.helpers import assert_problem, assert_unauthorized, change_password, login
from tests.users.factories import DEFAULT_PASSWORD, UserFactory

pytestmark = pytest.mark.anyio

RECOVERY_MESSAGE = "If that email is registered, we sent a password recovery link"
NEW_PASSWORD = "a-brand-new-password"


def reset_token(user: User, settings: Settings) -> str:
    credential = credential_fingerprint(user.hashed_password, settings)
    return create_reset_token(str(user.id), settings, credential=credential)


async def outbox(session: AsyncSession) -> list[tuple[str, str]]:
    rows = await session.scalars(select(OutboxEmail).order_by(OutboxEmail.created_at))
    return [(row.kind, row.recipient) for row in rows]


async def reset(client: httpx2.AsyncClient, token: str, **extra: Any) -> httpx2.Response:
    return await client.post(
        "/reset-password/", json={"token": token, "new_password": NEW_PASSWORD, **extra}
    )


# --- the request --------------------------------------------------------------------------


async def test_recovery_answers_alike_and_queues_for_any_address(
    client: httpx2.AsyncClient, user: User, session: AsyncSession
) -> None:
    registered = await client.post(f"/password-recovery/{user.email.upper()}")
    unknown = await client.post("/password-recovery/nobody@example.com")

    assert registered.status_code == unknown.status_code == 200
    assert registered.json() == unknown.json() == {"message": RECOVERY_MESSAGE}
    # The same work for both: one queued email each; the sender decides who gets one.
    assert await outbox(session) == [
        ("auth.password_recovery", user.email),
        ("auth.password_recovery", "nobody@example.com"),
    ]


async def test_an_address_with_a_slash_is_an_address(
    client: httpx2.AsyncClient, session: AsyncSession
) -> None:
    # `/` is valid in a local part and arrives decoded in the path (found by `make contract`).
    response = await client.post("/password-recovery/a%2Fb@example.com")
    assert response.status_code == 200, response.text
    assert await outbox(session) == [("auth.password_recovery", "a/b@example.com")]


@pytest.mark.parametrize("address", ["not-an-email", "a@b", "x@localhost"])
async def test_recovery_of_a_malformed_address_is_a_422(
    client: httpx2.AsyncClient, session: AsyncSession, address: str
) -> None:
    assert_problem(await client.post(f"/password-recovery/{address}"), 422)
    assert await outbox(session) == []


# --- the reset ----------------------------------------------------------------------------


async def test_reset_sets_the_password_and_ends_every_session(
    client: httpx2.AsyncClient, user: User, settings: Settings, session: AsyncSession
) -> None:
    old_session = await auth_headers(session, user, settings)
    response = await reset(client, reset_token(user, settings), confirm_password=NEW_PASSWORD)

    assert response.status_code == 200, response.text
    assert response.json() == {"message": "Password updated successfully"}
    assert (await login(client, user.email, NEW_PASSWORD)).status_code == 200
    assert_problem(await login(client, user.email, DEFAULT_PASSWORD), 400)
    assert_unauthorized(await client.get("/users/me", headers=old_session))


async def test_a_reset_link_works_once(
    client: httpx2.AsyncClient, user: User, settings: Settings
) -> None:
    token = reset_token(user, settings)
    assert (await reset(client, token)).status_code == 200
    again = await client.post(
        "/reset-password/", json={"token": token, "new_password": "third-1234"}
    )
    assert assert_problem(again, 400)["detail"] == "Invalid token"
    assert (await login(client, user.email, NEW_PASSWORD)).status_code == 200


async def test_a_reset_link_dies_with_a_later_password_change(
    client: httpx2.AsyncClient, user: User, user_headers: dict[str, str], settings: Settings
) -> None:
    token = reset_token(user, settings)
    changed = await change_password(client, user_headers, DEFAULT_PASSWORD, "changed-meanwhile")
    assert changed.status_code == 200
    assert assert_problem(await reset(client, token), 400)["detail"] == "Invalid token"


def _forged(user: User, settings: Settings, **overrides: Any) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": str(user.id),
        "cred": credential_fingerprint(user.hashed_password, settings),
        "iat": now,
        "exp": now + 600,
        "jti": uuid.uuid4().hex,
        "type": "password-reset",
        **overrides,
    }
    return jwt.encode({"alg": "HS256"}, claims, OctKey.import_key(TEST_SECRET))


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"exp": int(time.time()) - 3600}, id="expired"),
        pytest.param({"type": "access"}, id="an access token"),
        pytest.param({"sub": str(uuid.uuid4())}, id="an unknown user"),
        pytest.param({"sub": "not-a-uuid"}, id="a malformed subject"),
        pytest.param({"cred": "stale"}, id="another password"),
    ],
)
async def test_a_bad_reset_token_is_refused(
    client: httpx2.AsyncClient, user: User, settings: Settings, overrides: dict[str, Any]
) -> None:
    response = await reset(client, _forged(user, settings, **overrides))
    assert assert_problem(response, 400)["detail"] == "Invalid token"
    assert (await login(client, user.email, DEFAULT_PASSWORD)).status_code == 200


@pytest.mark.parametrize("token", ["", "garbage", "a.b.c", "x" * 3000])
async def test_a_malformed_reset_token_is_refused(client: httpx2.AsyncClient, token: str) -> None:
    response = await reset(client, token)
    assert response.status_code in (400, 422)
    assert_problem(response, response.status_code)


async def test_an_access_token_is_no_reset_token(
    client: httpx2.AsyncClient, user_headers: dict[str, str]
) -> None:
    access = user_headers["Authorization"].removeprefix("Bearer ")
    assert assert_problem(await reset(client, access), 400)["detail"] == "Invalid token"


async def test_a_reset_token_is_no_access_token(
    client: httpx2.AsyncClient, user: User, settings: Settings
) -> None:
    token = reset_token(user, settings)
    assert_unauthorized(await client.get("/users/me", headers={"Authorization": f"Bearer {token}"}))


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"new_password": "short"}, "new_password"),
        ({"confirm_password": "something-else"}, "confirm_password"),
        ({"unknown": "x"}, "unknown"),
    ],
)
async def test_a_bad_reset_body_is_a_422_and_changes_nothing(
    client: httpx2.AsyncClient, user: User, settings: Settings, extra: dict[str, str], field: str
) -> None:
    body = {"token": reset_token(user, settings), "new_password": NEW_PASSWORD, **extra}
    problem = assert_problem(await client.post("/reset-password/", json=body), 422)
    assert ["body", field] in [error["loc"] for error in problem["errors"]]
    assert (await login(client, user.email, DEFAULT_PASSWORD)).status_code == 200


async def test_an_inactive_user_cannot_reset(
    client: httpx2.AsyncClient, session: AsyncSession, settings: Settings
) -> None:
    inactive = await UserFactory.persist(session, is_active=False)
    response = await reset(client, reset_token(inactive, settings))
    assert assert_problem(response, 400)["detail"] == "Inactive user"


# --- the email's HTML, and the test email (superuser) -------------------------------------


async def test_a_superuser_sees_the_recovery_email_and_its_link_works(
    client: httpx2.AsyncClient, user: User, superuser_headers: dict[str, str], settings: Settings
) -> None:
    response = await client.post(
        f"/password-recovery-html-content/{user.email}", headers=superuser_headers
    )

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["subject"] == (
        f"{settings.PROJECT_NAME} - Password recovery for user {user.email}"
    )
    link = re.search(r'href="([^"]+)"', response.text)
    assert link is not None
    prefix = f"{settings.FRONTEND_HOST}/reset-password?token="
    assert link.group(1).startswith(prefix)
    assert (await reset(client, link.group(1).removeprefix(prefix))).status_code == 200


async def test_the_recovery_email_html_is_for_superusers_of_existing_users(
    client: httpx2.AsyncClient,
    user: User,
    user_headers: dict[str, str],
    superuser_headers: dict[str, str],
) -> None:
    assert_problem(
        await client.post(f"/password-recovery-html-content/{user.email}", headers=user_headers),
        403,
    )
    assert_problem(
        await client.post(
            "/password-recovery-html-content/nobody@example.com", headers=superuser_headers
        ),
        404,
    )


async def test_the_test_email_is_queued_for_superusers_only(
    client: httpx2.AsyncClient,
    session: AsyncSession,
    user_headers: dict[str, str],
    superuser_headers: dict[str, str],
) -> None:
    url = "/utils/test-email/"
    sent = await client.post(url, params={"email_to": "ops@example.com"}, headers=superuser_headers)
    assert sent.status_code == 201
    assert sent.json() == {"message": "Test email sent"}
    assert_problem(
        await client.post(url, params={"email_to": "x@example.com"}, headers=user_headers), 403
    )
    assert_problem(
        await client.post(url, params={"email_to": "nope"}, headers=superuser_headers), 422
    )
    assert await outbox(session) == [("emails.test", "ops@example.com")]


async def test_an_account_created_by_a_superuser_gets_an_email_signup_does_not(
    client: httpx2.AsyncClient, session: AsyncSession, superuser_headers: dict[str, str]
) -> None:
    created = await client.post(
        "/users/",
        headers=superuser_headers,
        json={"email": "new@example.com", "password": "a-password-1"},
    )
    signed_up = await client.post(
        "/users/signup", json={"email": "self@example.com", "password": "a-password-1"}
    )
    assert created.status_code == signed_up.status_code == 201
    assert await outbox(session) == [("users.new_account", "new@example.com")]


async def test_a_refused_change_queues_no_email(
    client: httpx2.AsyncClient, session: AsyncSession, user: User, superuser_headers: dict[str, str]
) -> None:
    # The email is written in the transaction of the change: a 409 rolls both back.
    duplicate = await client.post(
        "/users/", headers=superuser_headers, json={"email": user.email, "password": "a-password-1"}
    )
    assert_problem(duplicate, 409)
    assert await outbox(session) == []
