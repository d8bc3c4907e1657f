"""Database access for items. Flushes, never commits; raises domain errors, never HTTP ones."""

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.items.models import Item


async def get_visible(
    session: AsyncSession, item_id: uuid.UUID, *, owner_id: uuid.UUID | None
) -> Item | None:
    """The item, when it exists and belongs to `owner_id` (None: anyone's); otherwise None."""
    query = select(Item).where(Item.id == item_id)
    if owner_id is not None:
        query = query.where(Item.owner_id == owner_id)
    return await session.scalar(query)


async def list_page(
    session: AsyncSession, *, owner_id: uuid.UUID | None, skip: int, limit: int
) -> tuple[Sequence[Item], int]:
    """One page of items of `owner_id` (None: everyone's), newest first, and the total count."""
    count_query = select(func.count()).select_from(Item)
    query = select(Item).order_by(Item.created_at.desc(), Item.id.desc())
    if owner_id is not None:
        count_query = count_query.where(Item.owner_id == owner_id)
        query = query.where(Item.owner_id == owner_id)
    count = await session.scalar(count_query)
    items = await session.scalars(query.offset(skip).limit(limit))
    return items.all(), count or 0


async def create(
    session: AsyncSession, *, owner_id: uuid.UUID, title: str, description: str | None
) -> Item:
    """Insert an item owned by `owner_id`."""
    item = Item(owner_id=owner_id, title=title, description=description)
    session.add(item)
    await session.flush()
    return item


async def update(session: AsyncSession, item: Item, *, changes: dict[str, Any]) -> Item:
    """Apply column changes."""
    for field, value in changes.items():
        setattr(item, field, value)
    await session.flush()
    return item


async def delete(session: AsyncSession, item: Item) -> None:
    await session.delete(item)
    await session.flush()
