"""No lost updates, no double deletes and an exact list count on items, under real concurrency.

Real commits (`committing_app`) and concurrent requests (`asyncio.gather`). A barrier holds each
write until every request has read the item, so that on PostgreSQL they all race with the same
version and the compare-and-set statement itself decides (the first writer's row lock makes the
others wait, then find the version changed or the row gone). On SQLite a request holds the one
connection from its first read to its commit, so the requests run one after the other and the
later ones are refused by the check before the write; the answers must be the same.
"""

import asyncio
import uuid
from typing import Any

import httpx2
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.core import crud as core_crud
from app.core.config import Settings
from app.items import crud as items_crud
from app.items.models import Item
from tests.core.test_database import (  # noqa: F401 - fixtures
    committing_app,
    committing_client,
    signup_and_login,
)
from tests.helpers import assert_problem
from tests.users.test_concurrency import N, Race

pytestmark = pytest.mark.anyio


def _race_writes(monkeypatch: pytest.MonkeyPatch, settings: Settings, name: str) -> Race:
    """Hold every `core_crud.<name>` until N requests have read (one on SQLite, see above)."""
    race = Race(parties=1 if settings.is_sqlite else N)
    write = getattr(core_crud, name)

    async def racing(session: AsyncSession, obj: Any, **options: Any) -> Any:
        await race.arrive(str(len(race.read)), obj.version)
        return await write(session, obj, **options)

    monkeypatch.setattr(core_crud, name, racing)
    return race


async def _item(client: httpx2.AsyncClient) -> tuple[dict[str, str], str]:
    headers = await signup_and_login(client, f"committed-{uuid.uuid4().hex[:8]}@example.com")
    created = await client.post("/items/", headers=headers, json={"title": "Original"})
    assert created.status_code == 201
    return headers, f"/items/{created.json()['id']}"


async def _stored(engine: AsyncEngine, url: str) -> Item | None:
    async with AsyncSession(engine) as session:
        return await session.scalar(select(Item).where(Item.id == uuid.UUID(url.split("/")[-1])))


async def _counts(
    client: httpx2.AsyncClient, engine: AsyncEngine, headers: dict[str, str]
) -> tuple[int, int]:
    """The count the list gives, and the items actually stored, both committed."""
    listed = await client.get("/items/?limit=1", headers=headers)
    assert listed.status_code == 200, listed.text
    me = (await client.get("/users/me", headers=headers)).json()["id"]
    async with AsyncSession(engine) as session:
        rows = await session.scalar(
            select(func.count()).select_from(Item).where(Item.owner_id == uuid.UUID(me))
        )
    return listed.json()["count"], rows or 0


def _raced(race: Race, settings: Settings) -> None:
    if not settings.is_sqlite:
        # The race happened: every request read version 1 before any wrote.
        assert list(race.read.values()) == [1] * N


async def test_concurrent_deletes_one_succeeds_the_others_find_nothing(
    committing_client: httpx2.AsyncClient,  # noqa: F811
    engine: AsyncEngine,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    headers, url = await _item(committing_client)
    for _ in range(2):
        await committing_client.post("/items/", headers=headers, json={"title": "kept"})
    race = _race_writes(monkeypatch, settings, "delete_versioned")

    responses = await asyncio.gather(
        *(committing_client.delete(url, headers=headers) for _ in range(N))
    )

    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200] + [404] * (N - 1), statuses
    for response in responses:
        if response.status_code == 404:
            assert_problem(response, 404, type_="urn:problem:item-not-found")
    _raced(race, settings)
    assert await _stored(engine, url) is None
    # The count lost the one item that was deleted, once.
    assert await _counts(committing_client, engine, headers) == (2, 2)


@pytest.mark.parametrize("method", ["PATCH", "PUT"])
async def test_concurrent_writes_with_one_if_match_one_is_stored_the_others_get_412(
    committing_client: httpx2.AsyncClient,  # noqa: F811
    engine: AsyncEngine,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    method: str,
) -> None:
    headers, url = await _item(committing_client)
    race = _race_writes(monkeypatch, settings, "update_versioned")
    titles = [f"Title {n}" for n in range(N)]

    responses = await asyncio.gather(
        *(
            committing_client.request(
                method, url, headers={**headers, "If-Match": '"1"'}, json={"title": title}
            )
            for title in titles
        )
    )

    statuses = [response.status_code for response in responses]
    assert sorted(statuses) == [200] + [412] * (N - 1), statuses
    winner = responses[statuses.index(200)]
    assert winner.headers["etag"] == '"2"'
    for response in responses:
        if response.status_code == 412:
            assert_problem(response, 412, type_="urn:problem:precondition-failed")
            assert response.headers["etag"] == '"2"'  # the winner's: read it, then retry
    _raced(race, settings)
    saved = await _stored(engine, url)
    assert saved is not None
    assert (saved.title, saved.version) == (winner.json()["title"], 2)


async def test_an_update_that_races_a_delete_finds_nothing(
    committing_client: httpx2.AsyncClient,  # noqa: F811
    engine: AsyncEngine,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    headers, url = await _item(committing_client)
    patch = committing_client.patch(url, headers={**headers, "If-Match": "*"}, json={"title": "x"})
    if settings.is_sqlite:
        # One connection: the update cannot hold its read while the delete runs.
        removed = await committing_client.delete(url, headers=headers)
        patched = await patch
    else:
        # The update reads version 1, then waits until the delete has committed.
        read, deleted = asyncio.Event(), asyncio.Event()
        update = core_crud.update_versioned

        async def update_after_the_delete(session: AsyncSession, obj: Any, **options: Any) -> Any:
            read.set()
            await asyncio.wait_for(deleted.wait(), 20)
            return await update(session, obj, **options)

        monkeypatch.setattr(core_crud, "update_versioned", update_after_the_delete)

        async def delete_after_the_read() -> httpx2.Response:
            await asyncio.wait_for(read.wait(), 20)
            response = await committing_client.delete(url, headers=headers)
            deleted.set()
            return response

        patched, removed = await asyncio.gather(patch, delete_after_the_read())

    assert removed.status_code == 200
    assert_problem(patched, 404, type_="urn:problem:item-not-found")
    assert await _stored(engine, url) is None


async def test_concurrent_writes_without_if_match_never_lose_an_acknowledged_one(
    committing_client: httpx2.AsyncClient,  # noqa: F811
    engine: AsyncEngine,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Without If-Match the last write wins, but two writes in flight at once on one item do not
    # silently undo each other: on PostgreSQL all read version 1, one is stored and the others
    # are 409s (read again, retry); on SQLite they run one after the other and all are stored.
    headers, url = await _item(committing_client)
    race = _race_writes(monkeypatch, settings, "update_versioned")

    responses = await asyncio.gather(
        *(
            committing_client.patch(url, headers=headers, json={"title": f"Title {n}"})
            for n in range(N)
        )
    )

    statuses = [response.status_code for response in responses]
    saved = await _stored(engine, url)
    assert saved is not None
    if settings.is_sqlite:
        assert statuses == [200] * N
        assert saved.version == 1 + N
    else:
        _raced(race, settings)
        assert sorted(statuses) == [200] + [409] * (N - 1), statuses
        for response in responses:
            if response.status_code == 409:
                assert_problem(response, 409, type_="urn:problem:concurrent-update")
        assert saved.version == 2
    last = max(
        (r for r in responses if r.status_code == 200), key=lambda r: int(r.headers["etag"][1:-1])
    )
    assert saved.title == last.json()["title"]


# --- the list's count under concurrent writes ------------------------------------------------


async def test_concurrent_creates_and_deletes_keep_the_count_exact(
    committing_client: httpx2.AsyncClient,  # noqa: F811
    engine: AsyncEngine,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    headers, _ = await _item(committing_client)
    others, _ = await _item(committing_client)
    doomed = [
        (await committing_client.post("/items/", headers=headers, json={"title": "x"})).json()["id"]
        for _ in range(N)
    ]
    # On PostgreSQL every create waits until all have begun, then all insert at once: the count
    # row's upsert is what they race on.
    race = Race(parties=1 if settings.is_sqlite else 2 * N)
    create = items_crud.create

    async def racing(session: AsyncSession, **fields: Any) -> Item:
        await race.arrive(str(len(race.read)), None)
        return await create(session, **fields)

    monkeypatch.setattr(items_crud, "create", racing)

    responses = await asyncio.gather(
        *(
            committing_client.post("/items/", headers=headers, json={"title": "new"})
            for _ in range(N)
        ),
        *(
            committing_client.post("/items/", headers=others, json={"title": "new"})
            for _ in range(N)
        ),
        *(committing_client.delete(f"/items/{item_id}", headers=headers) for item_id in doomed),
    )

    assert sorted(r.status_code for r in responses) == [200] * N + [201] * 2 * N
    if not settings.is_sqlite:
        assert len(race.read) == 2 * N
    # Mine: the first one, N created, N created and deleted again.
    assert await _counts(committing_client, engine, headers) == (1 + N, 1 + N)
    assert await _counts(committing_client, engine, others) == (1 + N, 1 + N)
