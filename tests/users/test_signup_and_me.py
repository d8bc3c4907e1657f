from collections.abc import Callable
from typing import Any

import httpx2
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.items.models import Item
from app.users.models import User
from tests.helpers import assert_problem, assert_unauthorized, change_password, login
from tests.items.factories import ItemFactory
from tests.users.factories import DEFAULT_PASSWORD, UserFactory

pytestmark = pytest.mark.anyio

USER_FIELDS = {"id", "email", "full_name", "is_active", "is_superuser", "created_at"}


# --- signup -------------------------------------------------------------------------------


async def test_signup_creates_a_normal_active_user(
    client: httpx2.AsyncClient, session: AsyncSession
) -> None:
    response = await client.post(
        "/users/signup",
        json={"email": "New.Person@Example.com", "password": "s3cret-pass", "full_name": "New"},
    )

    assert response.status_code == 201
    body = response.json()
    assert set(body) == USER_FIELDS
    assert body["email"] == "new.person@example.com"
    assert body["is_active"] is True
    assert body["is_superuser"] is False
    assert body["created_at"].endswith("Z") or body["created_at"].endswith("+00:00")
    stored = await session.scalar(select(User).where(User.email == "new.person@example.com"))
    assert stored is not None
    assert stored.hashed_password.startswith("$argon2id$")
    assert (await login(client, "new.person@example.com", "s3cret-pass")).status_code == 200


async def test_signup_with_a_registered_email_is_409_whatever_the_case(
    client: httpx2.AsyncClient, user: User
) -> None:
    response = await client.post(
        "/users/signup", json={"email": user.email.upper(), "password": "s3cret-pass"}
    )
    body = assert_problem(response, 409, type_="urn:problem:email-already-registered")
    assert body["detail"] == "The user with this email already exists in the system"


async def test_signup_can_be_switched_off(
    client: httpx2.AsyncClient, override_settings: Callable[..., Any], session: AsyncSession
) -> None:
    override_settings(USERS_OPEN_REGISTRATION=False)
    response = await client.post(
        "/users/signup", json={"email": "closed@example.com", "password": "s3cret-pass"}
    )
    assert_problem(response, 403, type_="urn:problem:registration-closed")
    assert await session.scalar(select(User).where(User.email == "closed@example.com")) is None


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"email": "not-an-email", "password": "s3cret-pass"}, "email"),
        ({"email": "a@example.com", "password": "short"}, "password"),
        ({"email": "a@example.com", "password": "x" * 129}, "password"),
        (
            {"email": "a@example.com", "password": "s3cret-pass", "full_name": "x" * 256},
            "full_name",
        ),
        ({"password": "s3cret-pass"}, "email"),
        (
            {"email": "a@example.com", "password": "s3cret-pass", "is_superuser": True},
            "is_superuser",
        ),
        ({"email": "a@example.com", "password": "s3cret-pass", "is_active": False}, "is_active"),
    ],
)
async def test_signup_rejects_bad_input_with_field_errors(
    client: httpx2.AsyncClient, session: AsyncSession, payload: dict[str, Any], field: str
) -> None:
    body = assert_problem(await client.post("/users/signup", json=payload), 422)
    assert ["body", field] in [e["loc"] for e in body["errors"]]
    assert field in body["detail"]
    assert await session.scalar(select(func.count()).select_from(User)) == 0


async def test_signup_with_a_malformed_json_body_is_422(client: httpx2.AsyncClient) -> None:
    response = await client.post(
        "/users/signup", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert_problem(response, 422)


async def test_passwords_are_never_echoed_in_validation_errors(client: httpx2.AsyncClient) -> None:
    response = await client.post("/users/signup", json={"email": "bad", "password": "Qz7!x"})
    assert_problem(response, 422)
    assert "Qz7!x" not in response.text


# --- /users/me ----------------------------------------------------------------------------


async def test_read_me(
    client: httpx2.AsyncClient, user: User, user_headers: dict[str, str]
) -> None:
    response = await client.get("/users/me", headers=user_headers)
    assert response.status_code == 200
    assert response.json()["id"] == str(user.id)
    assert set(response.json()) == USER_FIELDS


async def test_me_requires_a_token(client: httpx2.AsyncClient) -> None:
    assert_unauthorized(await client.get("/users/me"))
    assert_unauthorized(await client.patch("/users/me", json={"full_name": "x"}))
    assert_unauthorized(await client.delete("/users/me"))
    assert_unauthorized(await client.patch("/users/me/password", json={}))


async def test_update_me_changes_name_and_email(
    client: httpx2.AsyncClient, user: User, user_headers: dict[str, str], session: AsyncSession
) -> None:
    response = await client.patch(
        "/users/me", headers=user_headers, json={"full_name": "Renamed", "email": "NEW@example.com"}
    )

    assert response.status_code == 200
    assert response.json()["full_name"] == "Renamed"
    assert response.json()["email"] == "new@example.com"
    await session.refresh(user)
    assert (user.full_name, user.email) == ("Renamed", "new@example.com")


async def test_update_me_leaves_fields_not_sent(
    client: httpx2.AsyncClient, user: User, user_headers: dict[str, str]
) -> None:
    response = await client.patch("/users/me", headers=user_headers, json={"full_name": "Only"})
    assert response.json()["email"] == user.email


async def test_update_me_can_clear_the_name_but_not_the_email(
    client: httpx2.AsyncClient, user_headers: dict[str, str]
) -> None:
    cleared = await client.patch("/users/me", headers=user_headers, json={"full_name": None})
    assert cleared.status_code == 200
    assert cleared.json()["full_name"] is None
    assert_problem(await client.patch("/users/me", headers=user_headers, json={"email": None}), 422)


async def test_update_me_to_a_taken_email_is_409_and_changes_nothing(
    client: httpx2.AsyncClient,
    user: User,
    other_user: User,
    user_headers: dict[str, str],
    session: AsyncSession,
) -> None:
    response = await client.patch(
        "/users/me", headers=user_headers, json={"full_name": "Changed", "email": other_user.email}
    )
    assert_problem(response, 409)
    await session.refresh(user)
    assert user.full_name == "Normal User"


@pytest.mark.parametrize(
    "payload",
    [{"is_superuser": True}, {"is_active": False}, {"password": "new-password-1"}, {"id": "x"}],
)
async def test_update_me_cannot_touch_privileged_fields(
    client: httpx2.AsyncClient,
    user: User,
    user_headers: dict[str, str],
    session: AsyncSession,
    payload: dict[str, Any],
) -> None:
    assert_problem(await client.patch("/users/me", headers=user_headers, json=payload), 422)
    await session.refresh(user)
    assert user.is_superuser is False
    assert user.is_active is True


# --- /users/me/password -------------------------------------------------------------------


async def test_change_password(
    client: httpx2.AsyncClient, user: User, user_headers: dict[str, str]
) -> None:
    response = await change_password(client, user_headers, DEFAULT_PASSWORD, "brand-new-pass")

    assert response.status_code == 200
    assert response.json() == {"message": "Password updated successfully"}
    assert (await login(client, user.email, "brand-new-pass")).status_code == 200
    assert (await login(client, user.email, DEFAULT_PASSWORD)).status_code == 400


async def test_change_password_with_wrong_current_is_400(
    client: httpx2.AsyncClient, user: User, user_headers: dict[str, str]
) -> None:
    response = await change_password(client, user_headers, "wrong-password", "brand-new-pass")
    assert_problem(response, 400, type_="urn:problem:incorrect-password")
    assert (await login(client, user.email, DEFAULT_PASSWORD)).status_code == 200


async def test_change_password_to_the_same_is_400(
    client: httpx2.AsyncClient, user_headers: dict[str, str]
) -> None:
    response = await change_password(client, user_headers, DEFAULT_PASSWORD, DEFAULT_PASSWORD)
    assert_problem(response, 400, type_="urn:problem:password-unchanged")


async def test_change_password_validates_the_new_one(
    client: httpx2.AsyncClient, user_headers: dict[str, str]
) -> None:
    response = await change_password(client, user_headers, DEFAULT_PASSWORD, "short")
    body = assert_problem(response, 422)
    assert body["errors"][0]["loc"] == ["body", "new_password"]


# --- DELETE /users/me ---------------------------------------------------------------------


async def test_delete_me_deletes_the_user_and_their_items(
    client: httpx2.AsyncClient,
    user: User,
    other_user: User,
    user_headers: dict[str, str],
    session: AsyncSession,
) -> None:
    await ItemFactory.persist_batch(session, 2, owner_id=user.id)
    kept = await ItemFactory.persist(session, owner_id=other_user.id)

    response = await client.delete("/users/me", headers=user_headers)

    assert response.status_code == 200
    assert response.json() == {"message": "User deleted successfully"}
    session.expunge_all()
    assert await session.get(User, user.id) is None
    remaining = (await session.scalars(select(Item.id))).all()
    assert remaining == [kept.id]
    assert_unauthorized(await client.get("/users/me", headers=user_headers))


async def test_superuser_cannot_delete_themself(
    client: httpx2.AsyncClient,
    superuser: User,
    superuser_headers: dict[str, str],
    session: AsyncSession,
) -> None:
    assert_problem(await client.delete("/users/me", headers=superuser_headers), 403)
    session.expunge_all()
    assert await session.get(User, superuser.id) is not None


async def test_factory_users_can_log_in(client: httpx2.AsyncClient, session: AsyncSession) -> None:
    # Guards the fixtures themselves: the factory's hash must match the app's hashing.
    created = await UserFactory.persist(session, password="factory-pass")
    assert (await login(client, created.email, "factory-pass")).status_code == 200


async def test_nul_in_the_name_is_refused(
    client: httpx2.AsyncClient, user_headers: dict[str, str]
) -> None:
    response = await client.patch("/users/me", headers=user_headers, json={"full_name": "a\x00"})
    assert_problem(response, 422)
