"""Database access for items. Flushes, never commits; raises domain errors, never HTTP ones.

Updates and deletes are the shared compare-and-set helpers of `app.core.crud`
(`update_versioned`, `delete_versioned`): nothing about them is item-specific.
"""

import uuid

from sqlalchemy import ARRAY, BigInteger, Uuid, any_, bindparam, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.pagination import PageParams, Rows, paginate
from app.items.models import Item, ItemCount


async def get_visible(
    session: AsyncSession, item_id: uuid.UUID, *, owner_id: uuid.UUID | None
) -> Item | None:
    """The item, when it exists and belongs to `owner_id` (None: anyone's); otherwise None."""
    if owner_id is None:
        return await session.scalar(_ANYONES_ITEM, {"item_id": item_id})
    return await session.scalar(_OWNED_ITEM, {"item_id": item_id, "owner_id": owner_id})


# Built once (the hot path of every route with an {id}); the values are bound per call.
_ANYONES_ITEM = select(Item).where(Item.id == bindparam("item_id"))
_OWNED_ITEM = _ANYONES_ITEM.where(Item.owner_id == bindparam("owner_id"))


async def list_page(
    session: AsyncSession, *, owner_id: uuid.UUID | None, page: PageParams
) -> Rows[Item]:
    """One page of items of `owner_id` (None: everyone's), newest first, and the total count.

    The count comes from `item_counts`: one row for a user; for everyone's, a sum over one row
    per user who has items (it grows with the users, not with their items).
    """
    keys = (Item.created_at, Item.id)
    if owner_id is None:
        return await paginate(session, _EVERYONES, page, keys=keys, count=_EVERYONES_COUNT)
    params = {"owner_id": owner_id, "owner_ids": [owner_id]}
    owners = _OWNERS_PG if session.get_bind().dialect.name == "postgresql" else _OWNERS
    return await paginate(session, owners, page, keys=keys, count=_OWNERS_COUNT, params=params)


# Built once, bound per request (see `paginate`).
_EVERYONES = select(Item)
_OWNERS = select(Item).where(Item.owner_id == bindparam("owner_id"))
# The same rows on PostgreSQL, in a form only the owner index can serve. Both indexes give the
# order `created_at DESC, id DESC` for one owner, and the planner picks between them by
# estimates that assume an owner's rows are spread evenly over time. For an owner of most of the
# table whose items are older than the others' newest, walking the index of all items means
# filtering out every newer item of everyone else first (seen in `make bench`: 32 ms instead of
# 0.05 for a first page). Ordered by `owner_id` first, only the owner index gives the order;
# `= ANY(ARRAY[owner])` rather than `=`, because PostgreSQL drops a sort key that a `=` makes
# constant, and the choice would be back to the estimates.
_OWNERS_PG = (
    select(Item)
    .where(Item.owner_id == any_(bindparam("owner_ids", type_=ARRAY(Uuid))))
    .order_by(Item.owner_id.desc())
)
_OWNERS_COUNT = select(
    func.coalesce(
        select(ItemCount.count)
        .where(ItemCount.owner_id == bindparam("owner_id"))
        .scalar_subquery(),
        0,
    )
)
# PostgreSQL sums a bigint into a numeric: back to an integer.
_EVERYONES_COUNT = select(cast(func.coalesce(func.sum(ItemCount.count), 0), BigInteger))


async def create(
    session: AsyncSession, *, owner_id: uuid.UUID, title: str, description: str | None
) -> Item:
    """Insert an item owned by `owner_id`."""
    item = Item(owner_id=owner_id, title=title, description=description)
    session.add(item)
    await session.flush()
    return item
