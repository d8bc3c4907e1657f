"""Paging the items list: `cursor` (keyset) beside `skip`, `next_cursor`, and bad cursors."""

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx2
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.pagination import encode_cursor
from app.items.models import Item
from app.users.models import User
from tests.helpers import assert_problem
from tests.items.factories import ItemFactory

pytestmark = pytest.mark.anyio

# In the past, so that items created during a test (now) are newer than all of them.
BASE = datetime(2020, 1, 1, tzinfo=UTC)


async def _seed(session: AsyncSession, owner: User, count: int) -> list[Item]:
    """`count` items of `owner`, newest first as the list orders them. Every third shares its
    `created_at` with the next, so the walk depends on the `id` tie-break."""
    items = [
        await ItemFactory.persist(
            session, owner_id=owner.id, created_at=BASE + timedelta(minutes=n - n % 3 // 2)
        )
        for n in range(count)
    ]
    assert len({item.created_at for item in items}) < count  # there are ties
    return sorted(items, key=lambda item: (item.created_at, item.id), reverse=True)


async def _walk(
    client: httpx2.AsyncClient, headers: dict[str, str], first: str, **between: Any
) -> tuple[list[str], list[dict[str, Any]]]:
    """Follow `next_cursor` from the page at `first` to the end: the ids seen, and each body."""
    bodies: list[dict[str, Any]] = []
    url: str | None = first
    while url is not None:
        response = await client.get(url, headers=headers)
        assert response.status_code == 200, response.text
        bodies.append(response.json())
        if (callback := between.get("after_each_page")) is not None:
            await callback()
        cursor = bodies[-1]["next_cursor"]
        url = None if cursor is None else f"/items/?limit=5&cursor={cursor}"
        assert len(bodies) < 50, "the walk does not end"
    return [item["id"] for body in bodies for item in body["data"]], bodies


async def test_a_cursor_walk_visits_every_item_once_newest_first(
    client: httpx2.AsyncClient,
    user: User,
    other_user: User,
    user_headers: dict[str, str],
    session: AsyncSession,
) -> None:
    mine = await _seed(session, user, 23)
    await _seed(session, other_user, 4)

    seen, bodies = await _walk(client, user_headers, "/items/?limit=5")

    assert seen == [str(item.id) for item in mine]
    assert [len(body["data"]) for body in bodies] == [5, 5, 5, 5, 3]
    assert all(body["count"] == 23 for body in bodies)
    assert bodies[-1]["next_cursor"] is None


async def test_a_last_page_that_is_exactly_full_has_no_next_cursor(
    client: httpx2.AsyncClient, user: User, user_headers: dict[str, str], session: AsyncSession
) -> None:
    await _seed(session, user, 10)

    seen, bodies = await _walk(client, user_headers, "/items/?limit=5")

    assert len(seen) == 10
    assert [len(body["data"]) for body in bodies] == [5, 5]
    assert bodies[-1]["next_cursor"] is None


async def test_a_walk_with_writes_meanwhile_shows_each_remaining_item_once(
    client: httpx2.AsyncClient, user: User, user_headers: dict[str, str], session: AsyncSession
) -> None:
    mine = await _seed(session, user, 12)
    # After each page: one item created (newer than all), and, after the first two, the oldest
    # not yet seen deleted.
    deleted: list[str] = []

    async def write() -> None:
        response = await client.post("/items/", headers=user_headers, json={"title": "New"})
        assert response.status_code == 201
        if len(deleted) == 2:
            return
        doomed = str(mine[-1 - len(deleted)].id)
        assert (await client.delete(f"/items/{doomed}", headers=user_headers)).status_code == 200
        deleted.append(doomed)

    seen, bodies = await _walk(client, user_headers, "/items/?limit=5", after_each_page=write)

    # Under skip, each new item would push an old one onto the next page twice, and each delete
    # pull one back past the page boundary, unseen.
    assert seen == [str(item.id) for item in mine if str(item.id) not in deleted]
    assert len(seen) == 10
    assert [body["count"] for body in bodies] == [12, 12, 12]


async def test_a_skip_page_gives_the_cursor_to_go_on_with(
    client: httpx2.AsyncClient, user: User, user_headers: dict[str, str], session: AsyncSession
) -> None:
    mine = await _seed(session, user, 12)

    by_skip = (await client.get("/items/?skip=3&limit=4", headers=user_headers)).json()
    cursor = by_skip["next_cursor"]
    after = (await client.get(f"/items/?limit=4&cursor={cursor}", headers=user_headers)).json()

    expected = [str(item.id) for item in mine]
    assert [i["id"] for i in by_skip["data"]] == expected[3:7]
    assert [i["id"] for i in after["data"]] == expected[7:11]
    assert after["count"] == 12
    # The cursor is the documented encoding of the last row's sort key.
    assert cursor == encode_cursor(mine[6].created_at, mine[6].id)


async def test_a_cursor_built_for_a_row_starts_right_after_it(
    client: httpx2.AsyncClient, user: User, user_headers: dict[str, str], session: AsyncSession
) -> None:
    # What the benchmark does for "the page 100,000 deep": encode the row's key itself.
    mine = await _seed(session, user, 9)
    cursor = encode_cursor(mine[4].created_at, mine[4].id)

    body = (await client.get(f"/items/?limit=3&cursor={cursor}", headers=user_headers)).json()

    assert [i["id"] for i in body["data"]] == [str(item.id) for item in mine[5:8]]
    assert body["next_cursor"] == encode_cursor(mine[7].created_at, mine[7].id)


async def test_someone_else_s_cursor_still_lists_only_your_items(
    client: httpx2.AsyncClient,
    user: User,
    other_user: User,
    user_headers: dict[str, str],
    other_headers: dict[str, str],
    session: AsyncSession,
) -> None:
    mine = await _seed(session, user, 6)
    await _seed(session, other_user, 6)
    theirs = (await client.get("/items/?limit=2", headers=other_headers)).json()

    body = (
        await client.get(f"/items/?cursor={theirs['next_cursor']}", headers=user_headers)
    ).json()

    assert body["data"]
    assert {i["owner_id"] for i in body["data"]} == {str(user.id)}
    assert {i["id"] for i in body["data"]} <= {str(item.id) for item in mine}
    assert body["count"] == 6


async def test_a_superuser_walks_everyone_s_items(
    client: httpx2.AsyncClient,
    user: User,
    other_user: User,
    superuser_headers: dict[str, str],
    session: AsyncSession,
) -> None:
    everyone = sorted(
        [*await _seed(session, user, 7), *await _seed(session, other_user, 6)],
        key=lambda item: (item.created_at, item.id),
        reverse=True,
    )

    seen, bodies = await _walk(client, superuser_headers, "/items/?limit=5")

    assert seen == [str(item.id) for item in everyone]
    assert all(body["count"] == 13 for body in bodies)


def _b64(payload: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()


GOOD = encode_cursor(BASE, uuid.UUID(int=7))


@pytest.mark.parametrize(
    "cursor",
    [
        "not-a-cursor",
        "",
        "%00",
        GOOD[:-3],  # cut short
        GOOD[:10] + ("A" if GOOD[10] != "A" else "B") + GOOD[11:],  # a character changed
        _b64([1, [["t", "2020-01-01T00:00:00+00:00"]]]),  # not the object
        _b64({"v": 2, "k": [["t", "2020-01-01T00:00:00+00:00"]]}),  # a future version
        _b64({"v": 1, "k": []}),
        _b64({"v": 1, "k": [["x", "1"]]}),  # an unknown type
        _b64({"v": 1, "k": [["t", "yesterday"], ["u", str(uuid.UUID(int=7))]]}),
        _b64({"v": 1, "k": [["t", "2020-01-01T00:00:00"], ["u", str(uuid.UUID(int=7))]]}),
        _b64({"v": 1, "k": [["u", "not-a-uuid"]]}),
        _b64({"v": 1, "k": [["i", 5]]}),  # values are strings
        _b64({"v": 1, "k": [[["t"], "x"]]}),
        "A" * 1025,
    ],
)
async def test_a_malformed_cursor_is_a_422_naming_cursor(
    client: httpx2.AsyncClient, user_headers: dict[str, str], cursor: str
) -> None:
    response = await client.get("/items/", headers=user_headers, params={"cursor": cursor})

    body = assert_problem(response, 422, type_="urn:problem:validation-error")
    assert "cursor" in body["detail"]
    assert [error["loc"] for error in body["errors"]] == [["query", "cursor"]]


@pytest.mark.parametrize(
    "cursor",
    [
        encode_cursor(uuid.UUID(int=7), BASE),  # the keys swapped
        encode_cursor(BASE),  # too few
        encode_cursor(BASE, uuid.UUID(int=7), 3),  # too many
        encode_cursor("2020-01-01", "x"),
    ],
)
async def test_a_cursor_of_another_shape_is_a_422_naming_cursor(
    client: httpx2.AsyncClient, user_headers: dict[str, str], cursor: str
) -> None:
    response = await client.get("/items/", headers=user_headers, params={"cursor": cursor})

    body = assert_problem(response, 422, type_="urn:problem:invalid-cursor")
    assert "cursor" in body["detail"]


async def test_cursor_and_skip_do_not_combine(
    client: httpx2.AsyncClient, user_headers: dict[str, str]
) -> None:
    response = await client.get(f"/items/?skip=5&cursor={GOOD}", headers=user_headers)

    body = assert_problem(response, 422, type_="urn:problem:validation-error")
    assert "cursor" in body["detail"]
    assert "skip" in body["detail"]
    # skip=0 is the default, not a combination.
    assert (await client.get(f"/items/?skip=0&cursor={GOOD}", headers=user_headers)).is_success
