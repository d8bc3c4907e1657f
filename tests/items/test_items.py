import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx2
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.items.models import Item
from app.users.models import User
from tests.helpers import assert_problem, assert_unauthorized
from tests.items.factories import ItemFactory

pytestmark = pytest.mark.anyio

ITEM_FIELDS = {"id", "title", "description", "owner_id", "created_at"}


@pytest.fixture
async def item(session: AsyncSession, user: User) -> Item:
    return await ItemFactory.persist(session, owner_id=user.id, title="Mine", description="desc")


async def stored(session: AsyncSession, item_id: uuid.UUID) -> Item | None:
    return await session.scalar(
        select(Item).where(Item.id == item_id).execution_options(populate_existing=True)
    )


# --- create -------------------------------------------------------------------------------


async def test_create_item_belongs_to_the_caller(
    client: httpx2.AsyncClient, user: User, user_headers: dict[str, str], session: AsyncSession
) -> None:
    response = await client.post(
        "/items/", headers=user_headers, json={"title": "Groceries", "description": "milk"}
    )

    assert response.status_code == 201
    body = response.json()
    assert set(body) == ITEM_FIELDS
    assert body["title"] == "Groceries"
    assert body["owner_id"] == str(user.id)
    saved = await stored(session, uuid.UUID(body["id"]))
    assert saved is not None
    assert (saved.title, saved.description, saved.owner_id) == ("Groceries", "milk", user.id)


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "title"),
        ({"title": ""}, "title"),
        ({"title": "x" * 256}, "title"),
        ({"title": " " + "x" * 255}, "title"),
        ({"title": None}, "title"),
        ({"title": "ok", "description": "x" * 256}, "description"),
        ({"title": "ok", "owner_id": str(uuid.uuid4())}, "owner_id"),
        ({"title": "ok", "id": str(uuid.uuid4())}, "id"),
    ],
)
async def test_create_item_rejects_bad_input(
    client: httpx2.AsyncClient,
    user_headers: dict[str, str],
    session: AsyncSession,
    payload: dict[str, Any],
    field: str,
) -> None:
    body = assert_problem(await client.post("/items/", headers=user_headers, json=payload), 422)
    assert ["body", field] in [e["loc"] for e in body["errors"]]
    assert (await session.scalars(select(Item))).all() == []


async def test_title_and_description_of_exactly_255_are_accepted(
    client: httpx2.AsyncClient, user_headers: dict[str, str]
) -> None:
    payload = {"title": "t" * 255, "description": "d" * 255}
    response = await client.post("/items/", headers=user_headers, json=payload)
    assert response.status_code == 201


# --- list ---------------------------------------------------------------------------------


async def test_list_shows_only_my_items_newest_first(
    client: httpx2.AsyncClient,
    user: User,
    other_user: User,
    user_headers: dict[str, str],
    session: AsyncSession,
) -> None:
    base = datetime(2030, 1, 1, tzinfo=UTC)
    mine = [
        await ItemFactory.persist(session, owner_id=user.id, created_at=base + timedelta(hours=i))
        for i in range(3)
    ]
    await ItemFactory.persist(session, owner_id=other_user.id)

    response = await client.get("/items/", headers=user_headers)

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 3
    assert [i["id"] for i in body["data"]] == [str(i.id) for i in reversed(mine)]


async def test_superuser_lists_everyone_s_items(
    client: httpx2.AsyncClient,
    user: User,
    other_user: User,
    superuser_headers: dict[str, str],
    session: AsyncSession,
) -> None:
    await ItemFactory.persist(session, owner_id=user.id)
    await ItemFactory.persist(session, owner_id=other_user.id)

    body = (await client.get("/items/", headers=superuser_headers)).json()

    assert body["count"] == 2
    assert {i["owner_id"] for i in body["data"]} == {str(user.id), str(other_user.id)}


async def test_list_pages_and_counts_all(
    client: httpx2.AsyncClient, user: User, user_headers: dict[str, str], session: AsyncSession
) -> None:
    base = datetime(2030, 1, 1, tzinfo=UTC)
    items = [
        await ItemFactory.persist(session, owner_id=user.id, created_at=base + timedelta(hours=i))
        for i in range(5)
    ]

    body = (await client.get("/items/?skip=3&limit=5", headers=user_headers)).json()

    assert body["count"] == 5
    assert [i["id"] for i in body["data"]] == [str(items[1].id), str(items[0].id)]
    beyond = (await client.get("/items/?skip=50", headers=user_headers)).json()
    assert beyond == {"data": [], "count": 5, "next_cursor": None}


async def test_list_default_limit_is_100(
    client: httpx2.AsyncClient, user: User, user_headers: dict[str, str], session: AsyncSession
) -> None:
    await ItemFactory.persist_batch(session, 101, owner_id=user.id)
    body = (await client.get("/items/", headers=user_headers)).json()
    assert (len(body["data"]), body["count"]) == (100, 101)


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "skip=-1", "skip=x"])
async def test_list_rejects_bad_paging(
    client: httpx2.AsyncClient, user_headers: dict[str, str], query: str
) -> None:
    assert_problem(await client.get(f"/items/?{query}", headers=user_headers), 422)


# --- read, replace, update, delete --------------------------------------------------------


async def test_read_own_item(
    client: httpx2.AsyncClient, item: Item, user_headers: dict[str, str]
) -> None:
    response = await client.get(f"/items/{item.id}", headers=user_headers)
    assert response.status_code == 200
    assert response.json()["title"] == "Mine"


async def test_someone_else_s_item_looks_exactly_like_a_missing_one(
    client: httpx2.AsyncClient, item: Item, other_headers: dict[str, str]
) -> None:
    theirs = assert_problem(await client.get(f"/items/{item.id}", headers=other_headers), 404)
    missing = assert_problem(await client.get(f"/items/{uuid.uuid4()}", headers=other_headers), 404)
    for body in (theirs, missing):
        body.pop("request_id")
        body.pop("instance")
    assert theirs == missing


async def test_put_replaces_the_whole_item(
    client: httpx2.AsyncClient, item: Item, user_headers: dict[str, str], session: AsyncSession
) -> None:
    response = await client.put(f"/items/{item.id}", headers=user_headers, json={"title": "New"})

    assert response.status_code == 200
    assert response.json()["title"] == "New"
    assert response.json()["description"] is None
    saved = await stored(session, item.id)
    assert saved is not None
    assert (saved.title, saved.description) == ("New", None)


async def test_put_requires_a_title(
    client: httpx2.AsyncClient, item: Item, user_headers: dict[str, str]
) -> None:
    response = await client.put(
        f"/items/{item.id}", headers=user_headers, json={"description": "x"}
    )
    assert_problem(response, 422)


async def test_patch_changes_only_what_is_sent(
    client: httpx2.AsyncClient, item: Item, user_headers: dict[str, str], session: AsyncSession
) -> None:
    response = await client.patch(
        f"/items/{item.id}", headers=user_headers, json={"description": "updated"}
    )

    assert response.status_code == 200
    saved = await stored(session, item.id)
    assert saved is not None
    assert (saved.title, saved.description) == ("Mine", "updated")


@pytest.mark.parametrize(
    "payload", [{"title": None}, {"title": ""}, {"owner_id": str(uuid.uuid4())}]
)
async def test_patch_rejects_bad_input(
    client: httpx2.AsyncClient, item: Item, user_headers: dict[str, str], payload: dict[str, Any]
) -> None:
    assert_problem(await client.patch(f"/items/{item.id}", headers=user_headers, json=payload), 422)


async def test_patch_can_clear_the_description(
    client: httpx2.AsyncClient, item: Item, user_headers: dict[str, str]
) -> None:
    response = await client.patch(
        f"/items/{item.id}", headers=user_headers, json={"description": None}
    )
    assert response.json()["description"] is None


async def test_delete_own_item(
    client: httpx2.AsyncClient, item: Item, user_headers: dict[str, str], session: AsyncSession
) -> None:
    response = await client.delete(f"/items/{item.id}", headers=user_headers)

    assert response.status_code == 200
    assert response.json() == {"message": "Item deleted successfully"}
    assert await stored(session, item.id) is None
    assert_problem(await client.get(f"/items/{item.id}", headers=user_headers), 404)


async def test_malformed_item_id_is_404(
    client: httpx2.AsyncClient, user_headers: dict[str, str]
) -> None:
    # Ids are UUIDs; anything else names no item, like an id that does not exist.
    assert_problem(await client.get("/items/42", headers=user_headers), 404)


# --- the permission matrix ----------------------------------------------------------------

CALLERS = ["anonymous", "owner", "other", "superuser"]
EXPECTED = {"anonymous": 401, "owner": 200, "other": 404, "superuser": 200}


@pytest.fixture
def headers_of(
    user_headers: dict[str, str],
    other_headers: dict[str, str],
    superuser_headers: dict[str, str],
) -> dict[str, dict[str, str]]:
    return {
        "anonymous": {},
        "owner": user_headers,
        "other": other_headers,
        "superuser": superuser_headers,
    }


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize(
    ("method", "payload"),
    [
        ("GET", None),
        ("PUT", {"title": "Replaced"}),
        ("PATCH", {"title": "Patched"}),
        ("DELETE", None),
    ],
)
async def test_who_may_touch_an_item(
    client: httpx2.AsyncClient,
    item: Item,
    headers_of: dict[str, dict[str, str]],
    session: AsyncSession,
    caller: str,
    method: str,
    payload: dict[str, str] | None,
) -> None:
    response = await client.request(
        method, f"/items/{item.id}", headers=headers_of[caller], json=payload
    )

    expected = EXPECTED[caller]
    if expected == 401:
        assert_unauthorized(response)
    elif expected == 404:
        assert_problem(response, 404, type_="urn:problem:item-not-found")
    else:
        assert response.status_code == expected, response.text
    saved = await stored(session, item.id)
    if expected != 200:
        # Refused requests change nothing.
        assert saved is not None
        assert saved.title == "Mine"
    elif method == "DELETE":
        assert saved is None
    elif payload:
        assert saved is not None
        assert saved.title == payload["title"]


@pytest.mark.parametrize("caller", CALLERS)
async def test_who_may_list_and_create(
    client: httpx2.AsyncClient, headers_of: dict[str, dict[str, str]], caller: str
) -> None:
    listed = await client.get("/items/", headers=headers_of[caller])
    created = await client.post("/items/", headers=headers_of[caller], json={"title": "t"})
    if caller == "anonymous":
        assert_unauthorized(listed)
        assert_unauthorized(created)
    else:
        assert listed.status_code == 200
        assert created.status_code == 201


@pytest.mark.parametrize("field", ["title", "description"])
async def test_nul_characters_are_refused_on_every_database(
    client: httpx2.AsyncClient, user_headers: dict[str, str], field: str
) -> None:
    # PostgreSQL cannot store NUL in text (a 500 before); SQLite could: both now say 422.
    payload = {"title": "ok", field: "a\x00b"}
    body = assert_problem(await client.post("/items/", headers=user_headers, json=payload), 422)
    assert body["errors"][0]["loc"] == ["body", field]
