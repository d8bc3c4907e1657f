"""The list's `count` from `item_counts`: exact after every kind of write, and the plans that keep
the list flat at any size (PostgreSQL)."""

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx2
import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy import event, func, select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from app.core.config import Settings
from app.core.pagination import encode_cursor
from app.items.models import Item, ItemCount
from app.users.models import User
from tests.conftest import alembic_config
from tests.items.factories import ItemFactory

pytestmark = pytest.mark.anyio


async def _counted(session: AsyncSession, owner: User) -> int | None:
    return await session.scalar(
        select(ItemCount.count)
        .where(ItemCount.owner_id == owner.id)
        .execution_options(populate_existing=True)
    )


async def _rows(session: AsyncSession, owner: User) -> int:
    query = select(func.count()).select_from(Item).where(Item.owner_id == owner.id)
    return await session.scalar(query) or 0


async def _listed_count(client: httpx2.AsyncClient, headers: dict[str, str]) -> int:
    response = await client.get("/items/?limit=1", headers=headers)
    assert response.status_code == 200, response.text
    return int(response.json()["count"])


async def test_the_count_follows_creates_and_deletes_through_the_api(
    client: httpx2.AsyncClient, user: User, user_headers: dict[str, str], session: AsyncSession
) -> None:
    assert await _listed_count(client, user_headers) == 0
    assert await _counted(session, user) is None  # no row until the first item

    ids = []
    for n in range(3):
        created = await client.post("/items/", headers=user_headers, json={"title": f"T{n}"})
        ids.append(created.json()["id"])
    assert await _listed_count(client, user_headers) == 3
    assert (await client.delete(f"/items/{ids[0]}", headers=user_headers)).status_code == 200
    assert (await client.delete(f"/items/{ids[0]}", headers=user_headers)).status_code == 404

    assert await _listed_count(client, user_headers) == 2
    assert await _counted(session, user) == await _rows(session, user) == 2


async def test_factory_and_bulk_inserts_are_counted(
    client: httpx2.AsyncClient,
    user: User,
    other_user: User,
    user_headers: dict[str, str],
    superuser_headers: dict[str, str],
    session: AsyncSession,
) -> None:
    await ItemFactory.persist_batch(session, 4, owner_id=user.id)
    await ItemFactory.persist(session, owner_id=other_user.id)
    # One statement of several rows, as a seed script writes them.
    now = datetime.now(UTC)
    await session.execute(
        sa.insert(Item),
        [
            {"id": uuid.uuid4(), "title": f"bulk {n}", "owner_id": user.id, "created_at": now}
            for n in range(5)
        ],
    )
    await session.execute(sa.delete(Item).where(Item.title == "bulk 0"))

    assert await _counted(session, user) == await _rows(session, user) == 8
    assert await _listed_count(client, user_headers) == 8
    # Everyone's: the sum over owners.
    assert await _listed_count(client, superuser_headers) == 9


async def test_an_item_moved_to_another_owner_moves_its_count(
    user: User, other_user: User, session: AsyncSession
) -> None:
    # No route does this; the counts must follow anyway.
    items = await ItemFactory.persist_batch(session, 2, owner_id=user.id)
    await session.execute(
        sa.update(Item).where(Item.id == items[0].id).values(owner_id=other_user.id)
    )
    await session.execute(sa.update(Item).where(Item.id == items[1].id).values(title="same owner"))

    assert (await _counted(session, user), await _counted(session, other_user)) == (1, 1)


async def test_deleting_the_user_deletes_their_items_and_count(
    client: httpx2.AsyncClient,
    user: User,
    other_user: User,
    superuser_headers: dict[str, str],
    session: AsyncSession,
) -> None:
    await ItemFactory.persist_batch(session, 3, owner_id=user.id)
    await ItemFactory.persist_batch(session, 2, owner_id=other_user.id)

    response = await client.delete(f"/users/{user.id}", headers=superuser_headers)

    assert response.status_code == 200, response.text
    assert await _counted(session, user) is None
    assert await _counted(session, other_user) == 2
    assert await _listed_count(client, superuser_headers) == 2


USER_COLUMNS: dict[str, Any] = {
    "id": sa.Uuid(),
    "email": sa.String(),
    "hashed_password": sa.String(),
    "is_active": sa.Boolean(),
    "is_superuser": sa.Boolean(),
    "created_at": sa.DateTime(timezone=True),
}


def _downgrade_seed_and_upgrade(connection: Connection) -> dict[uuid.UUID, int]:
    config = alembic_config(connection)
    command.downgrade(config, "0006")
    owners = [uuid.uuid4(), uuid.uuid4()]
    # Tables as they are at 0006, not as the models say.
    users = sa.table(
        "users",
        *(sa.column(name, type_) for name, type_ in USER_COLUMNS.items()),
    )
    connection.execute(
        sa.insert(users),
        [
            {
                "id": owner,
                "email": f"backfill{n}@example.com",
                "hashed_password": "x",
                "is_active": True,
                "is_superuser": False,
                "created_at": datetime.now(UTC),
            }
            for n, owner in enumerate(owners)
        ],
    )
    items = sa.table(
        "items",
        sa.column("id", sa.Uuid()),
        sa.column("title", sa.String()),
        sa.column("owner_id", sa.Uuid()),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    connection.execute(
        sa.insert(items),
        [
            {"id": uuid.uuid4(), "title": "old", "owner_id": owner, "created_at": datetime.now(UTC)}
            for owner, n in ((owners[0], 3), (owners[1], 1))
            for _ in range(n)
        ],
    )
    command.upgrade(config, "head")
    counts = connection.execute(sa.text("SELECT owner_id, count FROM item_counts")).all()
    return {uuid.UUID(str(owner)): count for owner, count in counts}


async def test_the_migration_counts_the_items_that_exist(connection: AsyncConnection) -> None:
    counts = await connection.run_sync(_downgrade_seed_and_upgrade)
    assert sorted(counts.values()) == [1, 3]


# --- the plans (PostgreSQL) ------------------------------------------------------------------


def _nodes(plan: dict[str, Any]) -> list[str]:
    """Each node's type, with the index it reads (`Index Only Scan on ix_...`)."""
    node = plan["Node Type"] + (f" on {plan['Index Name']}" if "Index Name" in plan else "")
    return [node, *(n for child in plan.get("Plans", []) for n in _nodes(child))]


async def _explain_requests(
    engine: AsyncEngine,
    connection: AsyncConnection,
    client: httpx2.AsyncClient,
    headers: dict[str, str],
    urls: list[str],
) -> list[list[str]]:
    """The plan nodes of the query each request runs to read its page of items."""
    captured: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "FROM items" in statement and "ORDER BY" in statement:
            captured.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", capture)
    try:
        for url in urls:
            response = await client.get(url, headers=headers)
            assert response.status_code == 200, response.text
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", capture)
    assert len(captured) == len(urls)
    plans = []
    for statement, parameters in captured:
        explained = await connection.exec_driver_sql(
            f"EXPLAIN (FORMAT JSON) {statement}", parameters
        )
        plans.append(_nodes(explained.scalar_one()[0]["Plan"]))
    return plans


async def _seed(connection: AsyncConnection, owner: User, count: int, *, start: datetime) -> None:
    """`count` items of `owner`, one second apart from `start` on (bulk SQL: thousands of rows)."""
    await connection.execute(
        sa.text(
            "INSERT INTO items (id, title, owner_id, created_at) "
            "SELECT gen_random_uuid(), 'seeded', :owner, "
            "CAST(:start AS timestamptz) + n * interval '1 second' "
            "FROM generate_series(1, :count) AS n"
        ),
        {"owner": owner.id, "count": count, "start": start},
    )


async def _cursor_at(connection: AsyncConnection, owner: User, offset: int) -> str:
    """The cursor after the `offset`-th newest item of `owner`."""
    deep = await connection.execute(
        sa.text(
            "SELECT created_at, id FROM items WHERE owner_id = :owner "
            "ORDER BY created_at DESC, id DESC OFFSET :offset LIMIT 1"
        ),
        {"owner": owner.id, "offset": offset},
    )
    return encode_cursor(*deep.one())


async def test_pages_are_index_ranges_with_no_sort_and_no_seq_scan(
    engine: AsyncEngine,
    connection: AsyncConnection,
    client: httpx2.AsyncClient,
    settings: Settings,
    user: User,
    other_user: User,
    user_headers: dict[str, str],
    superuser_headers: dict[str, str],
) -> None:
    if settings.is_sqlite:
        pytest.skip("PostgreSQL's plans")
    # Enough rows that reading them all would cost more than a range of the index, and fresh
    # statistics, so the planner decides on what it will meet in production.
    for owner, count in ((user, 6000), (other_user, 3000)):
        await _seed(connection, owner, count, start=datetime(2020, 1, 1, tzinfo=UTC))
    await connection.exec_driver_sql("ANALYZE items")
    await connection.exec_driver_sql("ANALYZE item_counts")
    cursor = await _cursor_at(connection, user, 4000)

    mine = await _explain_requests(
        engine,
        connection,
        client,
        user_headers,
        ["/items/?limit=20", f"/items/?limit=20&cursor={cursor}"],
    )
    everyone = await _explain_requests(
        engine,
        connection,
        client,
        superuser_headers,
        ["/items/?limit=20", f"/items/?limit=20&cursor={cursor}"],
    )

    for nodes in [*mine, *everyone]:
        assert nodes[0] == "Limit", nodes
        assert any(node.startswith("Index") for node in nodes), nodes
        assert "Sort" not in nodes, nodes
        assert "Incremental Sort" not in nodes, nodes
        assert "Seq Scan" not in nodes, nodes
    assert await _listed_count(client, user_headers) == 6000
    assert await _listed_count(client, superuser_headers) == 9000


async def test_a_heavy_owners_page_reads_their_index_when_others_wrote_since(
    engine: AsyncEngine,
    connection: AsyncConnection,
    client: httpx2.AsyncClient,
    settings: Settings,
    user: User,
    other_user: User,
    user_headers: dict[str, str],
) -> None:
    """An owner of most of the table, whose items are older than everyone else's: walking the
    index of all items newest first, PostgreSQL would filter out every newer item of the others
    before reaching theirs (seen in `make bench`: 18,777 rows, 32 ms instead of 0.05). Its
    estimate assumes the owner's rows are spread evenly over time, so the page must not leave
    the choice to it."""
    if settings.is_sqlite:
        pytest.skip("PostgreSQL's plans")
    older, newer = datetime(2020, 1, 1, tzinfo=UTC), datetime(2024, 1, 1, tzinfo=UTC)
    for owner, count, start in ((user, 20000, older), (other_user, 2000, newer)):
        await _seed(connection, owner, count, start=start)
    await connection.exec_driver_sql("ANALYZE items")
    cursor = await _cursor_at(connection, user, 10000)
    pages = await _explain_requests(
        engine,
        connection,
        client,
        user_headers,
        ["/items/?limit=20", f"/items/?limit=20&cursor={cursor}", "/items/?skip=40&limit=20"],
    )
    for nodes in pages:
        assert any(node.endswith(" on ix_items_owner_id_created_at_id") for node in nodes), nodes
        assert "Sort" not in nodes, nodes
