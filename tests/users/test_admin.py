"""Superuser administration of accounts, and who may read whom."""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx2
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.items.models import Item
from app.users.models import User
from tests.helpers import assert_problem, assert_unauthorized, login
from tests.items.factories import ItemFactory
from tests.users.factories import DEFAULT_PASSWORD, UserFactory

pytestmark = pytest.mark.anyio


# --- list ---------------------------------------------------------------------------------


async def test_list_users_newest_first_with_count(
    client: httpx2.AsyncClient,
    superuser: User,
    superuser_headers: dict[str, str],
    session: AsyncSession,
) -> None:
    base = datetime(2030, 1, 1, tzinfo=UTC)
    created = [
        await UserFactory.persist(session, created_at=base + timedelta(minutes=i)) for i in range(3)
    ]

    response = await client.get("/users/", headers=superuser_headers)

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 4
    ids = [u["id"] for u in body["data"]]
    assert ids[:3] == [str(u.id) for u in reversed(created)]
    assert ids[3] == str(superuser.id)
    assert all("hashed_password" not in u for u in body["data"])


async def test_the_users_list_pages_by_cursor_too(
    client: httpx2.AsyncClient, superuser_headers: dict[str, str], session: AsyncSession
) -> None:
    for n in range(4):
        await UserFactory.persist(
            session, created_at=datetime(2020, 1, 1, tzinfo=UTC) + timedelta(minutes=n // 2)
        )

    first = (await client.get("/users/?limit=3", headers=superuser_headers)).json()
    rest = (
        await client.get(
            f"/users/?limit=3&cursor={first['next_cursor']}", headers=superuser_headers
        )
    ).json()
    everyone = (await client.get("/users/", headers=superuser_headers)).json()

    assert [u["id"] for u in first["data"] + rest["data"]] == [u["id"] for u in everyone["data"]]
    assert (first["count"], len(rest["data"]), rest["next_cursor"]) == (5, 2, None)


async def test_list_users_pages_with_skip_and_limit(
    client: httpx2.AsyncClient, superuser_headers: dict[str, str], session: AsyncSession
) -> None:
    base = datetime(2030, 1, 1, tzinfo=UTC)
    created = [
        await UserFactory.persist(session, created_at=base + timedelta(minutes=i)) for i in range(5)
    ]

    response = await client.get("/users/?skip=1&limit=2", headers=superuser_headers)

    body = response.json()
    assert body["count"] == 6
    assert [u["id"] for u in body["data"]] == [str(created[3].id), str(created[2].id)]


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "skip=-1", "limit=abc", "skip=1e99"])
async def test_list_users_rejects_bad_paging(
    client: httpx2.AsyncClient, superuser_headers: dict[str, str], query: str
) -> None:
    assert_problem(await client.get(f"/users/?{query}", headers=superuser_headers), 422)


async def test_list_users_is_for_superusers_only(
    client: httpx2.AsyncClient, user_headers: dict[str, str]
) -> None:
    assert_unauthorized(await client.get("/users/"))
    assert_problem(await client.get("/users/", headers=user_headers), 403)


# --- create -------------------------------------------------------------------------------


async def test_superuser_creates_a_user_with_any_flags(
    client: httpx2.AsyncClient, superuser_headers: dict[str, str]
) -> None:
    response = await client.post(
        "/users/",
        headers=superuser_headers,
        json={"email": "admin2@example.com", "password": "admin2-pass", "is_superuser": True},
    )

    assert response.status_code == 201
    assert response.json()["is_superuser"] is True
    assert (await login(client, "admin2@example.com", "admin2-pass")).status_code == 200


async def test_create_user_with_a_taken_email_is_409(
    client: httpx2.AsyncClient, user: User, superuser_headers: dict[str, str]
) -> None:
    response = await client.post(
        "/users/", headers=superuser_headers, json={"email": user.email, "password": "s3cret-pw"}
    )
    assert_problem(response, 409)


async def test_normal_user_cannot_create_users(
    client: httpx2.AsyncClient, user_headers: dict[str, str], session: AsyncSession
) -> None:
    response = await client.post(
        "/users/", headers=user_headers, json={"email": "x@example.com", "password": "s3cret-pw"}
    )
    assert_problem(response, 403)
    assert await session.scalar(select(User).where(User.email == "x@example.com")) is None


# --- read one -----------------------------------------------------------------------------


async def test_user_reads_themself_by_id(
    client: httpx2.AsyncClient, user: User, user_headers: dict[str, str]
) -> None:
    response = await client.get(f"/users/{user.id}", headers=user_headers)
    assert response.status_code == 200
    assert response.json()["email"] == user.email


async def test_user_cannot_read_others_existing_or_not(
    client: httpx2.AsyncClient, other_user: User, user_headers: dict[str, str]
) -> None:
    assert_problem(await client.get(f"/users/{other_user.id}", headers=user_headers), 403)
    assert_problem(await client.get(f"/users/{uuid.uuid4()}", headers=user_headers), 403)


async def test_superuser_reads_anyone_and_gets_404_for_nobody(
    client: httpx2.AsyncClient, user: User, superuser_headers: dict[str, str]
) -> None:
    response = await client.get(f"/users/{user.id}", headers=superuser_headers)
    assert response.json()["id"] == str(user.id)
    assert_problem(
        await client.get(f"/users/{uuid.uuid4()}", headers=superuser_headers),
        404,
        type_="urn:problem:user-not-found",
    )


@pytest.mark.parametrize("bad_id", ["not-a-uuid", "1", "9" * 400])
async def test_malformed_user_id_is_404(
    client: httpx2.AsyncClient, superuser_headers: dict[str, str], bad_id: str
) -> None:
    assert_problem(await client.get(f"/users/{bad_id}", headers=superuser_headers), 404)


# --- update -------------------------------------------------------------------------------


async def test_superuser_updates_a_user(
    client: httpx2.AsyncClient, user: User, superuser_headers: dict[str, str]
) -> None:
    response = await client.patch(
        f"/users/{user.id}",
        headers=superuser_headers,
        json={"email": "moved@example.com", "password": "reset-pass-1", "full_name": "Moved"},
    )

    assert response.status_code == 200
    assert response.json()["email"] == "moved@example.com"
    assert response.json()["is_active"] is True
    assert (await login(client, "moved@example.com", "reset-pass-1")).status_code == 200


async def test_superuser_deactivates_a_user_who_then_cannot_log_in(
    client: httpx2.AsyncClient,
    user: User,
    user_headers: dict[str, str],
    superuser_headers: dict[str, str],
) -> None:
    response = await client.patch(
        f"/users/{user.id}", headers=superuser_headers, json={"is_active": False}
    )
    assert response.json()["is_active"] is False
    # Deactivation ends every session of the account: its tokens are refused for good.
    assert_unauthorized(await client.get("/users/me", headers=user_headers))
    refused = assert_problem(await login(client, user.email, DEFAULT_PASSWORD), 400)
    assert refused["detail"] == "Inactive user"


async def test_update_user_to_a_taken_email_is_409(
    client: httpx2.AsyncClient, user: User, other_user: User, superuser_headers: dict[str, str]
) -> None:
    response = await client.patch(
        f"/users/{user.id}", headers=superuser_headers, json={"email": other_user.email}
    )
    assert_problem(response, 409)


async def test_update_missing_user_is_404(
    client: httpx2.AsyncClient, superuser_headers: dict[str, str]
) -> None:
    response = await client.patch(
        f"/users/{uuid.uuid4()}", headers=superuser_headers, json={"full_name": "x"}
    )
    assert_problem(response, 404)


@pytest.mark.parametrize("payload", [{"is_superuser": False}, {"is_active": False}])
async def test_superuser_cannot_demote_or_deactivate_themself(
    client: httpx2.AsyncClient,
    superuser: User,
    superuser_headers: dict[str, str],
    session: AsyncSession,
    payload: dict[str, bool],
) -> None:
    response = await client.patch(f"/users/{superuser.id}", headers=superuser_headers, json=payload)
    assert_problem(response, 403, type_="urn:problem:cannot-change-self")
    await session.refresh(superuser)
    assert superuser.is_superuser is True
    assert superuser.is_active is True


@pytest.mark.parametrize("field", ["email", "password", "is_active", "is_superuser"])
async def test_update_user_rejects_null_for_required_fields(
    client: httpx2.AsyncClient, user: User, superuser_headers: dict[str, str], field: str
) -> None:
    response = await client.patch(
        f"/users/{user.id}", headers=superuser_headers, json={field: None}
    )
    body = assert_problem(response, 422)
    assert body["errors"][0]["loc"] == ["body", field]


async def test_normal_user_cannot_update_anyone_by_id(
    client: httpx2.AsyncClient, user: User, other_user: User, user_headers: dict[str, str]
) -> None:
    for target in (user, other_user):
        response = await client.patch(
            f"/users/{target.id}", headers=user_headers, json={"is_superuser": True}
        )
        assert_problem(response, 403)


# --- delete -------------------------------------------------------------------------------


async def test_superuser_deletes_a_user_and_their_items(
    client: httpx2.AsyncClient, user: User, superuser_headers: dict[str, str], session: AsyncSession
) -> None:
    await ItemFactory.persist_batch(session, 3, owner_id=user.id)

    response = await client.delete(f"/users/{user.id}", headers=superuser_headers)

    assert response.status_code == 200
    assert response.json() == {"message": "User deleted successfully"}
    session.expunge_all()
    assert await session.get(User, user.id) is None
    assert await session.scalar(select(func.count()).select_from(Item)) == 0


async def test_superuser_cannot_delete_themself_by_id(
    client: httpx2.AsyncClient, superuser: User, superuser_headers: dict[str, str]
) -> None:
    assert_problem(await client.delete(f"/users/{superuser.id}", headers=superuser_headers), 403)


async def test_delete_missing_user_is_404(
    client: httpx2.AsyncClient, superuser_headers: dict[str, str]
) -> None:
    assert_problem(await client.delete(f"/users/{uuid.uuid4()}", headers=superuser_headers), 404)


async def test_normal_user_cannot_delete_others(
    client: httpx2.AsyncClient,
    other_user: User,
    user_headers: dict[str, str],
    session: AsyncSession,
) -> None:
    assert_problem(await client.delete(f"/users/{other_user.id}", headers=user_headers), 403)
    session.expunge_all()
    assert await session.get(User, other_user.id) is not None


@pytest.mark.parametrize("flag", ["is_superuser", "is_active"])
@pytest.mark.parametrize("value", [0, 1, "true", "false", None])
async def test_privilege_flags_must_be_real_booleans(
    client: httpx2.AsyncClient, user: User, superuser_headers: dict[str, str], flag: str, value: Any
) -> None:
    response = await client.patch(
        f"/users/{user.id}", headers=superuser_headers, json={flag: value}
    )
    assert_problem(response, 422)
