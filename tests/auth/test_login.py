import httpx2
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.core.security import Passwords, decode_access_token
from app.users.models import User
from tests.helpers import assert_problem, assert_unauthorized, login
from tests.users.factories import DEFAULT_PASSWORD, UserFactory

pytestmark = pytest.mark.anyio


async def test_login_returns_a_bearer_token_for_the_user(
    client: httpx2.AsyncClient, user: User, settings: Settings
) -> None:
    response = await login(client, user.email, DEFAULT_PASSWORD)

    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == settings.ACCESS_TOKEN_EXPIRE_MINUTES * 60
    assert decode_access_token(body["access_token"], settings).subject == str(user.id)
    me = await client.get("/users/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.json()["id"] == str(user.id)


async def test_login_email_is_case_insensitive(client: httpx2.AsyncClient, user: User) -> None:
    response = await login(client, user.email.upper(), DEFAULT_PASSWORD)
    assert response.status_code == 200


async def test_wrong_password_and_unknown_email_get_the_same_400(
    client: httpx2.AsyncClient, user: User
) -> None:
    wrong_password = assert_problem(await login(client, user.email, "not-the-password"), 400)
    unknown_email = assert_problem(await login(client, "nobody@example.com", "whatever1"), 400)

    for body in (wrong_password, unknown_email):
        body.pop("request_id")
    assert wrong_password == unknown_email
    assert wrong_password["detail"] == "Incorrect email or password"


async def test_unknown_email_still_costs_a_password_verification(
    client: httpx2.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Response time must not tell which emails are registered.
    verified: list[str] = []
    original = Passwords._verify_and_update

    def counting(
        self: Passwords, password: str, hashed: str, **options: bool
    ) -> tuple[bool, str | None]:
        verified.append(password)
        return original(self, password, hashed, **options)

    monkeypatch.setattr(Passwords, "_verify_and_update", counting)
    assert_problem(await login(client, "nobody@example.com", "guess-1234"), 400)
    assert verified == ["guess-1234"]


async def test_inactive_user_cannot_log_in(
    client: httpx2.AsyncClient, session: AsyncSession
) -> None:
    inactive = await UserFactory.persist(session, is_active=False)
    body = assert_problem(await login(client, inactive.email, DEFAULT_PASSWORD), 400)
    assert body["detail"] == "Inactive user"


async def test_inactive_user_with_wrong_password_learns_nothing_about_the_account(
    client: httpx2.AsyncClient, session: AsyncSession
) -> None:
    inactive = await UserFactory.persist(session, is_active=False)
    body = assert_problem(await login(client, inactive.email, "wrong-password"), 400)
    assert body["detail"] == "Incorrect email or password"


async def test_login_form_fields_are_required(client: httpx2.AsyncClient) -> None:
    body = assert_problem(await client.post("/login/access-token", data={"username": "x"}), 422)
    assert [e["loc"] for e in body["errors"]] == [["body", "password"]]


async def test_login_does_not_accept_json(client: httpx2.AsyncClient, user: User) -> None:
    response = await client.post(
        "/login/access-token", json={"username": user.email, "password": DEFAULT_PASSWORD}
    )
    assert_problem(response, 422)


async def test_bcrypt_hash_verifies_and_is_upgraded_to_argon2(
    client: httpx2.AsyncClient, session: AsyncSession
) -> None:
    import bcrypt

    legacy_hash = bcrypt.hashpw(b"legacy-password", bcrypt.gensalt(rounds=4)).decode()
    legacy = await UserFactory.persist(session, hashed_password=legacy_hash)

    assert (await login(client, legacy.email, "legacy-password")).status_code == 200

    stored = await session.scalar(
        select(User.hashed_password)
        .where(User.id == legacy.id)
        .execution_options(populate_existing=True)
    )
    assert stored is not None
    assert stored.startswith("$argon2id$")
    assert (await login(client, legacy.email, "legacy-password")).status_code == 200
    assert_problem(await login(client, legacy.email, "wrong-password"), 400)


async def test_test_token_returns_the_current_user(
    client: httpx2.AsyncClient, user: User, user_headers: dict[str, str]
) -> None:
    response = await client.post("/login/test-token", headers=user_headers)
    assert response.status_code == 200
    assert response.json()["email"] == user.email
    assert "hashed_password" not in response.json()


async def test_test_token_without_token_is_401(client: httpx2.AsyncClient) -> None:
    response = await client.post("/login/test-token")
    assert_unauthorized(response)
    assert response.headers["www-authenticate"] == "Bearer"


async def test_a_corrupt_stored_hash_fails_the_login_instead_of_crashing(
    client: httpx2.AsyncClient, session: AsyncSession
) -> None:
    broken = await UserFactory.persist(session, hashed_password="not-a-known-hash-format")
    assert_problem(await login(client, broken.email, "anything-at-all"), 400)


async def test_nul_in_the_login_form_is_a_failed_login(client: httpx2.AsyncClient) -> None:
    assert_problem(await login(client, "a\x00@example.com", "pass\x00word"), 400)


async def test_nul_in_a_password_against_a_bcrypt_hash_is_a_failed_login(
    client: httpx2.AsyncClient, session: AsyncSession
) -> None:
    import bcrypt

    legacy_hash = bcrypt.hashpw(b"legacy-password", bcrypt.gensalt(rounds=4)).decode()
    legacy = await UserFactory.persist(session, hashed_password=legacy_hash)
    assert_problem(await login(client, legacy.email, "legacy\x00password"), 400)
