"""The benchmark's database: created and migrated, never emptied, and seeded once.

Seeding a million items takes a while, so it is kept between runs: each seeded user's items are
counted first and inserted (bulk SQL) only when the count is not what it should be. The writer's
items (POST and PATCH land there) are put back to their seed at each call of `reset_writer`.
"""

import uuid
from dataclasses import dataclass

from sqlalchemy import delete, func, insert, inspect, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.core.security import Passwords
from app.items.models import Item
from app.users.models import User

PASSWORD = "bench-user-password"  # noqa: S105 - a throwaway account of a throwaway database
SIZES = {"1k": 1_000, "100k": 100_000, "1M": 1_000_000}
WRITER = "bench-writer@example.com"
WRITER_ITEMS = 1_000
LOGIN_USERS = 8
DEEP = 100_000
"""How deep the deep page is: `skip=100000`, and the keyset cursor of the row just before it."""

PG_BULK = """
INSERT INTO items (id, owner_id, title, description, created_at, version)
SELECT gen_random_uuid(), CAST(:owner AS uuid), 'item ' || g, 'seeded',
       now() - make_interval(secs => g), 1
FROM generate_series(1, CAST(:count AS integer)) AS g
"""
SQLITE_BULK = """
WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < :count)
INSERT INTO items (id, owner_id, title, description, created_at, version)
SELECT lower(hex(randomblob(16))), :owner, 'item ' || n, 'seeded',
       strftime('%Y-%m-%d %H:%M:%S', 'now', '-' || n || ' seconds') || '.000000', 1
FROM g
"""
SYNC_COUNTS = """
INSERT INTO item_counts (owner_id, count)
SELECT owner_id, count(*) FROM items GROUP BY owner_id
ON CONFLICT (owner_id) DO UPDATE SET count = EXCLUDED.count
"""


def sized_email(size: str) -> str:
    return f"bench-items-{size.lower()}@example.com"


def login_email(number: int) -> str:
    return f"bench-login-{number}@example.com"


@dataclass(frozen=True)
class Seeded:
    users: dict[str, uuid.UUID]
    """Email -> id, of every bench user."""
    inserted: int
    """Items inserted by this call (0: everything was already there)."""


def _owner(connection: AsyncConnection, user_id: uuid.UUID) -> object:
    return user_id.hex if connection.dialect.name == "sqlite" else str(user_id)


async def _user(connection: AsyncConnection, email: str, hashed: str) -> uuid.UUID:
    found = await connection.scalar(select(User.id).where(User.email == email))
    if found is not None:
        return found
    user_id = uuid.uuid4()
    await connection.execute(
        insert(User).values(
            id=user_id, email=email, hashed_password=hashed, full_name="Bench", is_active=True
        )
    )
    return user_id


async def _fill(connection: AsyncConnection, user_id: uuid.UUID, count: int) -> int:
    """Give the user exactly `count` seeded items, unless they have `count` already."""
    have = await connection.scalar(select(func.count()).where(Item.owner_id == user_id))
    if have == count:
        return 0
    print(f"seeding {count:,} items (kept for later runs)", flush=True)
    await connection.execute(delete(Item).where(Item.owner_id == user_id))
    bulk = SQLITE_BULK if connection.dialect.name == "sqlite" else PG_BULK
    await connection.execute(text(bulk), {"owner": _owner(connection, user_id), "count": count})
    return count


async def _after_bulk(connection: AsyncConnection) -> None:
    """Keep the exact per-owner counter (branch `pages`) true, and the planner informed."""
    if await connection.run_sync(lambda sync: inspect(sync).has_table("item_counts")):
        await connection.execute(text(SYNC_COUNTS))
    await connection.execute(text("ANALYZE items"))


async def seed(engine: AsyncEngine, hashed: str) -> Seeded:
    users: dict[str, uuid.UUID] = {}
    inserted = 0
    async with engine.begin() as connection:
        for number in range(LOGIN_USERS):
            users[login_email(number)] = await _user(connection, login_email(number), hashed)
        for email, count in [*((sized_email(s), n) for s, n in SIZES.items()), (WRITER, 0)]:
            users[email] = user_id = await _user(connection, email, hashed)
            if count:
                inserted += await _fill(connection, user_id, count)
    if inserted:
        async with engine.begin() as connection:
            await _after_bulk(connection)
        if engine.dialect.name == "postgresql":
            # What autovacuum does to a table after a bulk load: the visibility map is set, so
            # the planner prices index-only scans as it would in production.
            async with engine.connect() as connection:
                outside = await connection.execution_options(isolation_level="AUTOCOMMIT")
                await outside.execute(text("VACUUM ANALYZE items"))
    return Seeded(users=users, inserted=inserted)


async def reset_writer(engine: AsyncEngine, writer_id: uuid.UUID) -> None:
    """The writer back to its `WRITER_ITEMS` seeded items (POST and PATCH runs add and bump)."""
    async with engine.begin() as connection:
        await connection.execute(delete(Item).where(Item.owner_id == writer_id))
        bulk = SQLITE_BULK if connection.dialect.name == "sqlite" else PG_BULK
        owner = _owner(connection, writer_id)
        await connection.execute(text(bulk), {"owner": owner, "count": WRITER_ITEMS})
        await _after_bulk(connection)


async def item_ids(engine: AsyncEngine, user_id: uuid.UUID, limit: int = 1000) -> list[str]:
    """Up to `limit` of the user's item ids, for the Lua script's ids file."""
    query = select(Item.id).where(Item.owner_id == user_id).limit(limit)
    async with engine.connect() as connection:
        return [str(item_id) for item_id in (await connection.scalars(query)).all()]


async def deep_row(engine: AsyncEngine, user_id: uuid.UUID) -> tuple[object, uuid.UUID] | None:
    """`(created_at, id)` of the 100,000th item newest first (None when there are fewer): the
    keyset page after it is the page `skip=100000` shows."""
    query = (
        select(Item.created_at, Item.id)
        .where(Item.owner_id == user_id)
        .order_by(Item.created_at.desc(), Item.id.desc())
        .offset(DEEP - 1)
        .limit(1)
    )
    async with engine.connect() as connection:
        row = (await connection.execute(query)).first()
    return None if row is None else (row[0], row[1])


def hashed_password(time_cost: int, memory_cost: int, parallelism: int) -> str:
    """The bench users' password, hashed as the server will verify it (no upgrade on login)."""
    hasher = Passwords(time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism)
    return hasher.hash_sync(PASSWORD)
