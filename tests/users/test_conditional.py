"""ETags, If-Match and If-None-Match on accounts: a superuser's (or your own) change based on an
old read is refused with 412 instead of undoing a newer one."""

import httpx2
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.users.models import User
from tests.helpers import assert_problem

pytestmark = pytest.mark.anyio


async def stored(session: AsyncSession, user: User) -> User | None:
    return await session.scalar(
        select(User).where(User.id == user.id).execution_options(populate_existing=True)
    )


def assert_stale(response: httpx2.Response, current: str) -> None:
    assert_problem(response, 412, type_="urn:problem:precondition-failed")
    assert response.headers["etag"] == current


async def test_reads_and_writes_of_an_account_carry_its_current_etag(
    client: httpx2.AsyncClient,
    user: User,
    user_headers: dict[str, str],
    superuser_headers: dict[str, str],
) -> None:
    etag = f'"{user.version}"'
    assert (await client.get("/users/me", headers=user_headers)).headers["etag"] == etag
    by_id = await client.get(f"/users/{user.id}", headers=superuser_headers)
    assert by_id.headers["etag"] == etag

    mine = await client.patch("/users/me", headers=user_headers, json={"full_name": "Me"})
    assert mine.headers["etag"] == f'"{user.version + 1}"'
    admin = await client.patch(
        f"/users/{user.id}", headers=superuser_headers, json={"full_name": "Admin's"}
    )
    assert admin.headers["etag"] == f'"{user.version + 2}"'
    assert (await client.get("/users/me", headers=user_headers)).headers["etag"] == admin.headers[
        "etag"
    ]


async def test_created_accounts_carry_their_etag(
    client: httpx2.AsyncClient, superuser_headers: dict[str, str]
) -> None:
    signup = await client.post(
        "/users/signup", json={"email": "new@example.com", "password": "password-1"}
    )
    assert signup.headers["etag"] == '"1"'
    created = await client.post(
        "/users/",
        headers=superuser_headers,
        json={"email": "made@example.com", "password": "password-1"},
    )
    assert created.headers["etag"] == '"1"'


@pytest.mark.parametrize("path", ["/users/me", "/users/{id}"])
async def test_if_none_match_with_the_current_etag_is_a_304(
    client: httpx2.AsyncClient, user: User, user_headers: dict[str, str], path: str
) -> None:
    url = path.format(id=user.id)
    etag = f'"{user.version}"'
    unchanged = await client.get(url, headers={**user_headers, "If-None-Match": etag})
    assert unchanged.status_code == 304
    assert unchanged.content == b""
    assert unchanged.headers["etag"] == etag
    changed = await client.get(url, headers={**user_headers, "If-None-Match": '"999"'})
    assert changed.status_code == 200
    assert changed.json()["id"] == str(user.id)


async def test_admin_update_with_a_stale_etag_is_a_412_and_changes_nothing(
    client: httpx2.AsyncClient,
    user: User,
    superuser_headers: dict[str, str],
    session: AsyncSession,
) -> None:
    read = await client.get(f"/users/{user.id}", headers=superuser_headers)
    # Someone else deactivates the account meanwhile.
    first = await client.patch(
        f"/users/{user.id}",
        headers={**superuser_headers, "If-Match": read.headers["etag"]},
        json={"is_active": False},
    )
    assert first.status_code == 200

    second = await client.patch(
        f"/users/{user.id}",
        headers={**superuser_headers, "If-Match": read.headers["etag"]},
        json={"full_name": "Renamed"},
    )

    assert_stale(second, first.headers["etag"])
    saved = await stored(session, user)
    assert saved is not None
    assert (saved.full_name, saved.is_active) == ("Normal User", False)


async def test_admin_delete_with_a_stale_etag_is_a_412_and_deletes_nothing(
    client: httpx2.AsyncClient,
    user: User,
    user_headers: dict[str, str],
    superuser_headers: dict[str, str],
    session: AsyncSession,
) -> None:
    read = await client.get(f"/users/{user.id}", headers=superuser_headers)
    await client.patch("/users/me", headers=user_headers, json={"full_name": "Changed"})

    stale = await client.delete(
        f"/users/{user.id}", headers={**superuser_headers, "If-Match": read.headers["etag"]}
    )

    assert_stale(stale, f'"{user.version + 1}"')
    assert await stored(session, user) is not None
    current = await client.delete(
        f"/users/{user.id}", headers={**superuser_headers, "If-Match": stale.headers["etag"]}
    )
    assert current.status_code == 200
    assert await stored(session, user) is None


async def test_own_update_with_a_stale_etag_is_a_412(
    client: httpx2.AsyncClient, user: User, user_headers: dict[str, str], session: AsyncSession
) -> None:
    response = await client.patch(
        "/users/me",
        headers={**user_headers, "If-Match": f'W/"{user.version}"'},  # weak: never matches
        json={"full_name": "Changed"},
    )
    assert_stale(response, f'"{user.version}"')
    ok = await client.patch(
        "/users/me", headers={**user_headers, "If-Match": "*"}, json={"full_name": "Changed"}
    )
    assert ok.status_code == 200
    saved = await stored(session, user)
    assert saved is not None
    assert saved.full_name == "Changed"
