"""`Idempotency-Key` on `POST /items/` and `POST /users/`: a retry gets the first answer again and
creates nothing; the key is per user and per route, refuses another body, and expires."""

import uuid
from datetime import timedelta
from typing import Any

import httpx2
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import utcnow
from app.emails.models import OutboxEmail
from app.idempotency.models import IdempotencyKey
from app.idempotency.service import PURGE_BATCH
from app.items.models import Item
from app.users.models import User
from tests.helpers import assert_problem

pytestmark = pytest.mark.anyio

REPLAYED = "idempotent-replayed"


async def items_of(session: AsyncSession, user: User) -> int:
    query = select(func.count()).select_from(Item).where(Item.owner_id == user.id)
    return int(await session.scalar(query) or 0)


async def keys_of(session: AsyncSession, user: User) -> list[IdempotencyKey]:
    query = select(IdempotencyKey).where(IdempotencyKey.user_id == user.id)
    return list((await session.scalars(query.execution_options(populate_existing=True))).all())


def post_item(
    client: httpx2.AsyncClient, headers: dict[str, str], key: str | None, body: dict[str, Any]
) -> Any:
    extra = {} if key is None else {"Idempotency-Key": key}
    return client.post("/items/", headers={**headers, **extra}, json=body)


async def test_a_retry_gets_the_first_answer_and_creates_nothing(
    client: httpx2.AsyncClient, user: User, user_headers: dict[str, str], session: AsyncSession
) -> None:
    body = {"title": "Once", "description": "only once"}
    first = await post_item(client, user_headers, "key-1", body)
    assert first.status_code == 201
    assert REPLAYED not in first.headers

    again = await post_item(client, user_headers, "key-1", body)

    assert again.status_code == 201
    assert again.json() == first.json()
    assert again.headers[REPLAYED] == "true"
    assert again.headers["etag"] == first.headers["etag"] == '"1"'
    assert again.headers["content-type"] == "application/json"
    assert await items_of(session, user) == 1
    (key,) = await keys_of(session, user)
    assert (key.key, key.scope, key.status_code) == ("key-1", "POST /items/", 201)


async def test_the_same_body_in_another_order_or_spacing_is_the_same_request(
    client: httpx2.AsyncClient, user: User, user_headers: dict[str, str], session: AsyncSession
) -> None:
    headers = {**user_headers, "Idempotency-Key": "k", "Content-Type": "application/json"}
    first = await client.post(
        "/items/", headers=headers, content=b'{"title":"A","description":"B"}'
    )
    again = await client.post(
        "/items/", headers=headers, content=b'{ "description": "B",  "title": "A" }'
    )
    assert again.headers[REPLAYED] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert await items_of(session, user) == 1


@pytest.mark.parametrize("other", [{"title": "Other"}, {"title": "Once", "description": "x"}])
async def test_the_same_key_with_another_body_is_a_422(
    client: httpx2.AsyncClient,
    user: User,
    user_headers: dict[str, str],
    session: AsyncSession,
    other: dict[str, str],
) -> None:
    await post_item(client, user_headers, "key-1", {"title": "Once"})

    response = await post_item(client, user_headers, "key-1", other)

    body = assert_problem(response, 422, type_="urn:problem:idempotency-key-reused")
    assert "different request body" in body["detail"]
    assert await items_of(session, user) == 1


async def test_without_a_key_every_post_creates(
    client: httpx2.AsyncClient, user: User, user_headers: dict[str, str], session: AsyncSession
) -> None:
    for _ in range(2):
        assert (await post_item(client, user_headers, None, {"title": "t"})).status_code == 201
    assert await items_of(session, user) == 2
    assert await keys_of(session, user) == []


async def test_keys_are_per_user(
    client: httpx2.AsyncClient,
    user: User,
    other_user: User,
    user_headers: dict[str, str],
    other_headers: dict[str, str],
    session: AsyncSession,
) -> None:
    mine = await post_item(client, user_headers, "shared", {"title": "t"})
    theirs = await post_item(client, other_headers, "shared", {"title": "t"})
    assert theirs.status_code == 201
    assert REPLAYED not in theirs.headers
    assert theirs.json()["id"] != mine.json()["id"]
    assert theirs.json()["owner_id"] == str(other_user.id)
    assert (await items_of(session, user), await items_of(session, other_user)) == (1, 1)


async def test_keys_are_per_route(
    client: httpx2.AsyncClient,
    superuser: User,
    superuser_headers: dict[str, str],
    session: AsyncSession,
) -> None:
    headers = {**superuser_headers, "Idempotency-Key": "same"}
    item = await client.post("/items/", headers=headers, json={"title": "t"})
    account = await client.post(
        "/users/", headers=headers, json={"email": "made@example.com", "password": "password-1"}
    )
    assert (item.status_code, account.status_code) == (201, 201)
    assert REPLAYED not in account.headers
    assert {key.scope for key in await keys_of(session, superuser)} == {
        "POST /items/",
        "POST /users/",
    }


async def test_a_retried_account_creation_creates_one_account_and_sends_one_email(
    client: httpx2.AsyncClient, superuser_headers: dict[str, str], session: AsyncSession
) -> None:
    headers = {**superuser_headers, "Idempotency-Key": "new-account"}
    body = {"email": "made@example.com", "password": "password-1", "full_name": "Made"}
    first = await client.post("/users/", headers=headers, json=body)
    again = await client.post("/users/", headers=headers, json=body)

    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert again.headers[REPLAYED] == "true"
    assert again.headers["etag"] == first.headers["etag"]
    made = select(func.count()).select_from(User).where(User.email == "made@example.com")
    assert await session.scalar(made) == 1
    emails = (
        select(func.count())
        .select_from(OutboxEmail)
        .where(OutboxEmail.recipient == "made@example.com")
    )
    assert await session.scalar(emails) == 1
    other = await client.post("/users/", headers=headers, json={**body, "password": "password-2"})
    assert_problem(other, 422, type_="urn:problem:idempotency-key-reused")


async def test_a_failed_request_does_not_use_up_its_key(
    client: httpx2.AsyncClient,
    superuser: User,
    superuser_headers: dict[str, str],
    session: AsyncSession,
) -> None:
    headers = {**superuser_headers, "Idempotency-Key": "retry-me"}
    taken = {"email": superuser.email, "password": "password-1"}
    first = await client.post("/users/", headers=headers, json=taken)
    assert_problem(first, 409)
    assert await keys_of(session, superuser) == []

    # Same key, same body: done again (not a replay of the 409).
    again = await client.post("/users/", headers=headers, json=taken)
    assert_problem(again, 409)
    assert REPLAYED not in again.headers


async def test_an_invalid_body_stores_no_key(
    client: httpx2.AsyncClient, user: User, user_headers: dict[str, str], session: AsyncSession
) -> None:
    response = await post_item(client, user_headers, "k", {"title": ""})
    assert_problem(response, 422, type_="urn:problem:validation-error")
    assert await keys_of(session, user) == []
    assert (await post_item(client, user_headers, "k", {"title": "ok"})).status_code == 201


@pytest.mark.parametrize("key", ["", "x" * 256, "tab\there", "bell\x07", "del\x7f"])
async def test_a_malformed_key_is_a_422_that_names_it(
    client: httpx2.AsyncClient,
    user: User,
    user_headers: dict[str, str],
    session: AsyncSession,
    key: str,
) -> None:
    response = await post_item(client, user_headers, key, {"title": "t"})
    body = assert_problem(response, 422, type_="urn:problem:validation-error")
    assert ["header", "Idempotency-Key"] in [error["loc"] for error in body["errors"]]
    assert await items_of(session, user) == 0


async def test_a_key_of_255_printable_characters_is_accepted(
    client: httpx2.AsyncClient, user_headers: dict[str, str]
) -> None:
    key = ("~ !" * 85)[:255]
    first = await post_item(client, user_headers, key, {"title": "t"})
    again = await post_item(client, user_headers, key, {"title": "t"})
    assert (first.status_code, again.headers[REPLAYED]) == (201, "true")


async def _age(session: AsyncSession, user: User, hours: float) -> None:
    await session.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.user_id == user.id)
        .values(created_at=utcnow() - timedelta(hours=hours))
    )


async def test_a_key_is_remembered_for_the_ttl(
    client: httpx2.AsyncClient,
    user: User,
    user_headers: dict[str, str],
    session: AsyncSession,
    override_settings: Any,
) -> None:
    override_settings(IDEMPOTENCY_KEY_TTL_HOURS=2)
    first = await post_item(client, user_headers, "k", {"title": "t"})
    await _age(session, user, 1.9)

    again = await post_item(client, user_headers, "k", {"title": "t"})

    assert again.headers[REPLAYED] == "true"
    assert again.json()["id"] == first.json()["id"]


async def test_an_expired_key_is_new_again(
    client: httpx2.AsyncClient,
    user: User,
    user_headers: dict[str, str],
    session: AsyncSession,
    override_settings: Any,
) -> None:
    override_settings(IDEMPOTENCY_KEY_TTL_HOURS=2)
    first = await post_item(client, user_headers, "k", {"title": "t"})
    await _age(session, user, 2.1)

    # Even with another body: the old request is forgotten.
    again = await post_item(client, user_headers, "k", {"title": "new"})

    assert again.status_code == 201
    assert REPLAYED not in again.headers
    assert again.json()["id"] != first.json()["id"]
    assert await items_of(session, user) == 2
    (key,) = await keys_of(session, user)
    assert key.created_at > utcnow() - timedelta(minutes=5)
    assert key.body is not None
    assert again.json()["id"] in key.body


async def test_expired_keys_are_deleted_a_bounded_batch_per_claim(
    client: httpx2.AsyncClient,
    user: User,
    other_user: User,
    user_headers: dict[str, str],
    session: AsyncSession,
) -> None:
    old = utcnow() - timedelta(hours=25)
    session.add_all(
        IdempotencyKey(
            user_id=other_user.id,
            scope="POST /items/",
            key=f"old-{n}",
            fingerprint="0" * 64,
            status_code=201,
            body="{}",
            headers={},
            created_at=old,
        )
        for n in range(PURGE_BATCH + 5)
    )
    live = IdempotencyKey(
        user_id=other_user.id,
        scope="POST /items/",
        key="live",
        fingerprint="0" * 64,
        status_code=201,
        body="{}",
        headers={},
    )
    session.add(live)
    await session.flush()

    await post_item(client, user_headers, "k", {"title": "t"})
    assert len(await keys_of(session, other_user)) == 5 + 1
    await post_item(client, user_headers, "k2", {"title": "t"})

    assert [key.key for key in await keys_of(session, other_user)] == ["live"]
    # Requests without a key do no such work.
    assert (await post_item(client, user_headers, None, {"title": "t"})).status_code == 201


async def test_the_header_and_the_replay_are_in_the_openapi_document(
    client: httpx2.AsyncClient,
) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    for path in ("/api/v1/items/", "/api/v1/users/"):
        post = paths[path]["post"]
        (header,) = [p for p in post["parameters"] if p["name"] == "Idempotency-Key"]
        assert header["in"] == "header"
        assert not header.get("required", False)
        assert header["schema"]["anyOf"][0]["maxLength"] == 255
        assert {"ETag", "Idempotent-Replayed"} <= set(post["responses"]["201"]["headers"])
        assert "application/problem+json" in post["responses"]["422"]["content"]


async def test_an_unknown_key_on_a_route_that_takes_none_is_ignored(
    client: httpx2.AsyncClient, user_headers: dict[str, str]
) -> None:
    # Only the create routes take keys; elsewhere the header means nothing.
    headers = {**user_headers, "Idempotency-Key": "k"}
    assert (await client.get("/items/", headers=headers)).status_code == 200
    assert uuid.UUID((await post_item(client, user_headers, "k", {"title": "t"})).json()["id"])
